/*
 * floor_server: the least a keybroker server can do — the floor `make bench` measures
 * keybrokerd against.
 *
 *   floor_server SOCKET KEY_IDS [THREADS]
 *
 * Serves wire protocol v1 (docs/protocol.md) HELLO, LATEST_KEY and GET_KEY over a Unix socket
 * from an in-memory, read-only table: key ids 1..KEY_IDS, each with version 1 and 32 fixed
 * bytes. No files, no KMS, no peer checks, no locks. The main thread accepts; THREADS workers
 * (default: the number of CPUs) each run an epoll loop over their share of the connections,
 * answer every complete frame a read brought in, and send the answers with one write.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "wire.h"

#define MAX_FRAME 65536
#define KEY_LENGTH 32

enum { OP_HELLO = 1, OP_LATEST_KEY = 2, OP_GET_KEY = 3 };
enum { OK = 0, NOT_FOUND = 1, BAD_REQUEST = 4, UNSUPPORTED = 6 };

typedef struct {
    int fd;
    int said_hello;
    size_t have;                       /* bytes of unparsed input in `in` */
    uint8_t in[2 * (MAX_FRAME + 4)];
} connection;

typedef struct {
    int epfd;
    pthread_t thread;
} worker;

static uint32_t key_ids;
static uint8_t (*keys)[KEY_LENGTH];  /* keys[id - 1] */

/* Appends one response frame to out; returns its size. body may be NULL for an empty body. */
static size_t respond(uint8_t *out, unsigned op, uint32_t rid, unsigned status, const uint8_t *body, size_t n) {
    put32(out, (uint32_t)(6 + n));
    out[4] = (uint8_t)op;
    put32(out + 5, rid);
    out[9] = (uint8_t)status;
    if (n) memcpy(out + 10, body, n);
    return 10 + n;
}

static size_t respond_message(uint8_t *out, unsigned op, uint32_t rid, unsigned status, const char *message) {
    uint8_t body[128];
    size_t n = strlen(message);
    put16(body, (unsigned)n);
    memcpy(body + 2, message, n);
    return respond(out, op, rid, status, body, n + 2);
}

/* Answers one request payload into out. Returns the bytes written, or 0 to close after sending
   what is already in out (a format error, whose BAD_REQUEST is written first). */
static size_t answer(connection *c, const uint8_t *p, size_t n, uint8_t *out, int *close_after) {
    *close_after = 0;
    if (n < 5) { *close_after = 1; return 0; }
    unsigned op = p[0];
    uint32_t rid = get32(p + 1);
    const uint8_t *body = p + 5;
    size_t len = n - 5;
    if (!c->said_hello && op != OP_HELLO) {
        *close_after = 1;
        return respond_message(out, op, rid, BAD_REQUEST, "the first request must be HELLO");
    }
    switch (op) {
    case OP_HELLO: {
        if (len < 6 || get16(body) != 1) {
            *close_after = 1;
            return respond_message(out, op, rid, UNSUPPORTED, "protocol 1 only");
        }
        c->said_hello = 1;
        static const char name[] = "floor_server";
        uint8_t b[2 + 2 + sizeof name];
        put16(b, 1);
        put16(b + 2, sizeof name - 1);
        memcpy(b + 4, name, sizeof name - 1);
        return respond(out, op, rid, OK, b, 4 + sizeof name - 1);
    }
    case OP_LATEST_KEY:
    case OP_GET_KEY: {
        if (len != (op == OP_LATEST_KEY ? 4u : 8u)) {
            *close_after = 1;
            return respond_message(out, op, rid, BAD_REQUEST, "body length");
        }
        uint32_t id = get32(body);
        uint32_t version = op == OP_GET_KEY ? get32(body + 4) : 1;
        if (id == 0 || id > key_ids || version != 1)
            return respond_message(out, op, rid, NOT_FOUND, "no such key");
        uint8_t b[4 + 2 + KEY_LENGTH];
        size_t off = 0;
        if (op == OP_LATEST_KEY) { put32(b, 1); off = 4; }
        put16(b + off, KEY_LENGTH);
        memcpy(b + off + 2, keys[id - 1], KEY_LENGTH);
        return respond(out, op, rid, OK, b, off + 2 + KEY_LENGTH);
    }
    default:
        return respond_message(out, op, rid, UNSUPPORTED, "not served by the floor server");
    }
}

static void drop(worker *w, connection *c) {
    epoll_ctl(w->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c);
}

/* Reads what is there, answers every complete frame, sends the answers at once. */
static void serve(worker *w, connection *c, uint8_t *out, size_t out_cap) {
    ssize_t r = recv(c->fd, c->in + c->have, sizeof c->in - c->have, 0);
    if (r < 0 && errno == EINTR) return;
    if (r <= 0) { drop(w, c); return; }
    c->have += (size_t)r;
    size_t pos = 0, o = 0;
    int close_after = 0;
    while (c->have - pos >= 4 && !close_after) {
        uint32_t n = get32(c->in + pos);
        if (n < 1 || n > MAX_FRAME) { close_after = 1; break; }
        if (c->have - pos - 4 < n) break;
        if (out_cap - o < 256) {  /* flush: the next answer might not fit */
            if (write_all(c->fd, out, o) != 0) { drop(w, c); return; }
            o = 0;
        }
        o += answer(c, c->in + pos + 4, n, out + o, &close_after);
        pos += 4 + n;
    }
    if (o && write_all(c->fd, out, o) != 0) close_after = 1;
    if (close_after) { drop(w, c); return; }
    memmove(c->in, c->in + pos, c->have - pos);
    c->have -= pos;
}

static void *worker_main(void *arg) {
    worker *w = arg;
    enum { OUT = 1 << 16 };
    uint8_t *out = malloc(OUT);
    struct epoll_event events[64];
    if (!out) return NULL;
    for (;;) {
        int n = epoll_wait(w->epfd, events, 64, -1);
        for (int i = 0; i < n; i++) serve(w, events[i].data.ptr, out, OUT);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: floor_server SOCKET KEY_IDS [THREADS]\n");
        return 2;
    }
    const char *path = argv[1];
    key_ids = (uint32_t)strtoul(argv[2], NULL, 10);
    long threads = argc > 3 ? atol(argv[3]) : sysconf(_SC_NPROCESSORS_ONLN);
    if (key_ids < 1 || threads < 1 || strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
        fprintf(stderr, "floor_server: bad arguments\n");
        return 2;
    }
    keys = malloc((size_t)key_ids * KEY_LENGTH);
    if (!keys) return 1;
    uint64_t s = 0x9E3779B97F4A7C15ull;
    for (uint32_t i = 0; i < key_ids; i++)
        for (int j = 0; j < KEY_LENGTH; j++) {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            keys[i][j] = (uint8_t)s;
        }
    signal(SIGPIPE, SIG_IGN);

    int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    memcpy(addr.sun_path, path, strlen(path) + 1);
    unlink(path);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(lfd, 512) != 0) {
        fprintf(stderr, "floor_server: cannot listen on %s: %s\n", path, strerror(errno));
        return 1;
    }
    chmod(path, 0666);

    worker *workers = calloc((size_t)threads, sizeof *workers);
    if (!workers) return 1;
    for (long i = 0; i < threads; i++) {
        workers[i].epfd = epoll_create1(EPOLL_CLOEXEC);
        if (workers[i].epfd < 0 || pthread_create(&workers[i].thread, NULL, worker_main, &workers[i])) {
            fprintf(stderr, "floor_server: cannot start worker: %s\n", strerror(errno));
            return 1;
        }
    }
    for (unsigned long next = 0;; next++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE || errno == ENFILE) continue;
            fprintf(stderr, "floor_server: accept: %s\n", strerror(errno));
            return 1;
        }
        connection *c = calloc(1, sizeof *c);
        if (!c) { close(fd); continue; }
        c->fd = fd;
        worker *w = &workers[next % (unsigned long)threads];
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) { close(fd); free(c); }
    }
}
