// Thin wrappers over Linux system calls that Swift cannot call directly (variadic, or structs that
// need _GNU_SOURCE). Only prefixed names leave this module.
#ifndef CKEYBROKER_SYSTEM_H
#define CKEYBROKER_SYSTEM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/// Same layout as Linux's `struct ucred`, for SO_PEERCRED.
typedef struct {
    int32_t pid;
    uint32_t uid;
    uint32_t gid;
} CKB_peer_credentials;

int CKB_sol_socket(void);
int CKB_so_peercred(void);

/// Returns the peer credentials of a connected Unix socket, 0 on success or -errno.
int CKB_get_peer_credentials(int fd, CKB_peer_credentials *out);

/// Marks the process non-dumpable (no core file, no ptrace by the same uid, /proc/pid/mem closed)
/// and sets RLIMIT_CORE to zero. Returns 0 or -errno.
int CKB_harden_process(void);

/// Raises the soft limit of open files to the hard limit (each connection is a descriptor).
/// Returns the new soft limit or -errno.
long CKB_raise_open_files_limit(void);

/// Anonymous private pages, excluded from core dumps and locked in memory when allowed.
/// `*locked` is set to 1 when mlock succeeded, else to the errno of the failure.
void *CKB_locked_pages_alloc(size_t bytes, int *locked);
void CKB_locked_pages_free(void *ptr, size_t bytes);
size_t CKB_page_size(void);

/// Connects to a Unix stream socket. Returns the fd or -errno. -ENAMETOOLONG for a long path.
int CKB_unix_connect(const char *path);

/// The file-system path a Unix socket is bound to. Returns 0, or -EINVAL for an abstract or
/// unnamed socket, or -errno.
int CKB_socket_path(int fd, char *path, size_t size);

/// Creates a file with O_CREAT|O_EXCL|O_WRONLY|O_CLOEXEC|O_NOFOLLOW. Returns fd or -errno.
int CKB_create_exclusive(const char *path, unsigned mode);

/// Opens for reading with O_NOFOLLOW|O_CLOEXEC. Returns fd or -errno.
int CKB_open_read(const char *path);

/// Opens a directory (O_DIRECTORY|O_RDONLY) for fsync. Returns fd or -errno.
int CKB_open_directory(const char *path);

#endif
