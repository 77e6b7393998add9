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
/// `*lock_errno` is set to 0 when mlock succeeded, else to the errno of the failure (EPERM is 1,
/// so success is never told apart by a truthy value).
void *CKB_locked_pages_alloc(size_t bytes, int *lock_errno);

/// RLIMIT_MEMLOCK's soft limit in bytes, or -1 when unlimited (or unreadable).
long long CKB_memlock_limit(void);
void CKB_locked_pages_free(void *ptr, size_t bytes);
size_t CKB_page_size(void);

/// A Unix stream socket bound to `path` whose file gets exactly `mode`: the mode is set on the
/// descriptor (and the umask opened to it) before bind gives the socket its name, so no one can
/// find the name with another mode, and nothing is ever changed by path. Returns the fd (close
/// on exec, not yet listening) or -errno; -ENAMETOOLONG for a path longer than 107 bytes.
int CKB_unix_bind(const char *path, unsigned mode);

/// accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK). Returns the new fd or -errno.
int CKB_accept(int fd);

/// send(fd, bytes, count, MSG_DONTWAIT | MSG_NOSIGNAL), retried on EINTR: a peer that has gone
/// gives -EPIPE, never SIGPIPE. Returns the bytes the socket took (possibly fewer than `count`),
/// -EAGAIN when it took none, or -errno.
long CKB_send_nonblocking(int fd, const void *bytes, size_t count);

/// Sets O_NONBLOCK on `fd`. Returns 0 or -errno.
int CKB_set_nonblocking(int fd);

/// pipe2(fds, O_CLOEXEC | O_NONBLOCK). Returns 0 or -errno.
int CKB_pipe(int fds[2]);

/// Connects to a Unix stream socket. Returns the fd or -errno. -ENAMETOOLONG for a long path.
int CKB_unix_connect(const char *path);

/// The file-system path a Unix socket is bound to. Returns 0, or -EINVAL for an abstract or
/// unnamed socket, or -errno.
int CKB_socket_path(int fd, char *path, size_t size);

/// Creates a file with O_CREAT|O_EXCL|O_WRONLY|O_CLOEXEC|O_NOFOLLOW. Returns fd or -errno.
int CKB_create_exclusive(const char *path, unsigned mode);

/// Opens (creating with mode 0600) a lock file read-only with O_NOFOLLOW|O_NONBLOCK|O_CLOEXEC and
/// takes an exclusive flock without waiting. Returns the fd, or -EWOULDBLOCK when another process
/// holds the lock, -EINVAL when the path is not a regular file, or -errno.
int CKB_lock_file(const char *path);

/// Replaces the contents of an existing file (O_WRONLY|O_TRUNC|O_NOFOLLOW|O_NONBLOCK). Returns 0
/// or -errno.
int CKB_write_small_file(const char *path, const char *text, size_t length);

/// Type, owner and mode of `name` in the directory `dirfd` without following a symbolic link.
/// Returns 0 or -errno.
int CKB_stat_entry(int dirfd, const char *name, unsigned *mode, unsigned *uid);

/// Opens a directory (O_DIRECTORY|O_RDONLY) for fsync. Returns fd or -errno.
int CKB_open_directory(const char *path);

#endif
