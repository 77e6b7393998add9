#define _GNU_SOURCE
#include "CKeybrokerSystem.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
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

void *CKB_locked_pages_alloc(size_t bytes, int *lock_errno) {
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    (void)madvise(p, bytes, MADV_DONTDUMP);
    (void)madvise(p, bytes, MADV_WIPEONFORK);
    *lock_errno = mlock(p, bytes) == 0 ? 0 : errno;
    return p;
}

long long CKB_memlock_limit(void) {
    struct rlimit limit;
    if (getrlimit(RLIMIT_MEMLOCK, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) return -1;
    return (long long)limit.rlim_cur;
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

// A Unix stream socket and the address of `path`: the fd, or -errno.
static int unix_socket_for(const char *path, struct sockaddr_un *addr) {
    memset(addr, 0, sizeof(*addr));
    addr->sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(addr->sun_path)) return -ENAMETOOLONG;
    strcpy(addr->sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    return fd < 0 ? -errno : fd;
}

int CKB_unix_bind(const char *path, unsigned mode) {
    struct sockaddr_un addr;
    int fd = unix_socket_for(path, &addr);
    if (fd < 0) return fd;
    // Linux gives the new name the socket inode's mode minus the umask: set both, bind, restore.
    // Every file keybrokerd creates names its own mode, so the brief umask does not widen them.
    if (fchmod(fd, (mode_t)mode) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    mode_t previous = umask((mode_t)(~mode & 0777));
    int bound = bind(fd, (struct sockaddr *)&addr, sizeof(addr));
    int e = errno;
    umask(previous);
    if (bound != 0) {
        close(fd);
        return -e;
    }
    return fd;
}

int CKB_accept(int fd) {
    int client = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    return client < 0 ? -errno : client;
}

long CKB_send_nonblocking(int fd, const void *bytes, size_t count) {
    for (;;) {
        ssize_t sent = send(fd, bytes, count, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (sent >= 0) return (long)sent;
        if (errno == EINTR) continue;
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    }
}

int CKB_set_nonblocking(int fd) {
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) return -errno;
    return 0;
}

int CKB_pipe(int fds[2]) {
    return pipe2(fds, O_CLOEXEC | O_NONBLOCK) == 0 ? 0 : -errno;
}

int CKB_unix_connect(const char *path) {
    struct sockaddr_un addr;
    int fd = unix_socket_for(path, &addr);
    if (fd < 0) return fd;
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

// What CKB_lock_file returns for a lock path that is not a regular file.
#define EFTYPE_NOT_REGULAR EINVAL

int CKB_lock_file(const char *path) {
    // Held read-only: a descriptor open for writing would keep the file system from being
    // remounted read-only under the daemon. flock needs no write access.
    int fd = open(path, O_RDONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0600);
    if (fd < 0) return -errno;
    struct stat info;
    if (fstat(fd, &info) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    if (!S_ISREG(info.st_mode)) {
        close(fd);
        return -EFTYPE_NOT_REGULAR;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

int CKB_write_small_file(const char *path, const char *text, size_t length) {
    int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) return -errno;
    ssize_t written = write(fd, text, length);
    int e = errno;
    close(fd);
    if (written < 0) return -e;
    return written == (ssize_t)length ? 0 : -EIO;
}

int CKB_stat_entry(int dirfd, const char *name, unsigned *mode, unsigned *uid) {
    struct stat info;
    if (fstatat(dirfd, name, &info, AT_SYMLINK_NOFOLLOW) != 0) return -errno;
    *mode = (unsigned)info.st_mode;
    *uid = (unsigned)info.st_uid;
    return 0;
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
