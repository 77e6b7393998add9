#define _GNU_SOURCE
#include "CKeybrokerSystem.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int CKB_sol_socket(void) { return SOL_SOCKET; }
int CKB_so_peercred(void) { return SO_PEERCRED; }

int CKB_get_peer_credentials(int fd, CKB_peer_credentials *out) {
    struct ucred cred;
    socklen_t len = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return -errno;
    out->pid = cred.pid;
    out->uid = cred.uid;
    out->gid = cred.gid;
    return 0;
}

int CKB_harden_process(void) {
    struct rlimit none = {0, 0};
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) return -errno;
    if (setrlimit(RLIMIT_CORE, &none) != 0) return -errno;
    return 0;
}

long CKB_raise_open_files_limit(void) {
    struct rlimit files;
    if (getrlimit(RLIMIT_NOFILE, &files) != 0) return -errno;
    if (files.rlim_cur < files.rlim_max) {
        files.rlim_cur = files.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &files) != 0) return -errno;
    }
    return (long)files.rlim_cur;
}

void *CKB_locked_pages_alloc(size_t bytes, int *locked) {
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    (void)madvise(p, bytes, MADV_DONTDUMP);
    (void)madvise(p, bytes, MADV_WIPEONFORK);
    *locked = mlock(p, bytes) == 0 ? 1 : errno;
    return p;
}

void CKB_locked_pages_free(void *ptr, size_t bytes) {
    explicit_bzero(ptr, bytes);
    (void)munlock(ptr, bytes);
    (void)munmap(ptr, bytes);
}

size_t CKB_page_size(void) {
    long n = sysconf(_SC_PAGESIZE);
    return n > 0 ? (size_t)n : 4096;
}

int CKB_unix_connect(const char *path) {
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof(addr));
    addr.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(addr.sun_path)) return -ENAMETOOLONG;
    strcpy(addr.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

int CKB_create_exclusive(const char *path, unsigned mode) {
    int fd = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, (mode_t)mode);
    return fd < 0 ? -errno : fd;
}

int CKB_open_read(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    return fd < 0 ? -errno : fd;
}

int CKB_open_directory(const char *path) {
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int CKB_socket_path(int fd, char *path, size_t size) {
    struct sockaddr_un addr;
    socklen_t len = sizeof(addr);
    memset(&addr, 0, sizeof(addr));
    if (getsockname(fd, (struct sockaddr *)&addr, &len) != 0) return -errno;
    if (addr.sun_family != AF_UNIX || addr.sun_path[0] == '\0') return -EINVAL;
    if (strlen(addr.sun_path) >= size) return -ENAMETOOLONG;
    strcpy(path, addr.sun_path);
    return 0;
}
