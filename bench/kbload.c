/*
 * kbload: drives a keybroker socket with many concurrent clients and checks every answer.
 *
 *   kbload SOCKET INSTANCE CLIENTS TOTAL_REQUESTS KEY_IDS [DEPTH] [ROTATE_PER_MILLION] [FIRST_KEY_ID]
 *
 * Each client opens one connection, says HELLO, then sends batches of DEPTH pipelined requests
 * (LATEST_KEY and GET_KEY of versions it has seen, now and then ROTATE) and reads the answers,
 * matching them by request id. Every (key id, version) it sees is remembered with its bytes; a
 * later answer with other bytes, a version going backwards, a wrong id or a non-OK status counts as
 * an error. At the end the clients' memories are compared with each other. Prints one JSON line.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "wire.h"

#define MAX_VERSIONS 64
#define MAX_DEPTH 256

typedef struct {
    uint8_t seen[MAX_VERSIONS];
    uint8_t key_len[MAX_VERSIONS];
    uint8_t bytes[MAX_VERSIONS][32];
    uint32_t latest;
} key_memory;

typedef struct {
    int index;
    uint64_t requests;
    key_memory *keys;
    uint64_t done, errors, wrong, rotations;
    char first_error[200];
} client;

static const char *socket_path, *instance;
static int key_ids = 16, depth = 32, rotate_per_million = 0;
static uint32_t first_key = 1;

static void note(client *c, int wrong, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void note(client *c, int wrong, const char *fmt, ...) {
    va_list ap;
    if (wrong) c->wrong++; else c->errors++;
    if (c->first_error[0]) return;
    va_start(ap, fmt);
    vsnprintf(c->first_error, sizeof(c->first_error), fmt, ap);
    va_end(ap);
}

/* Reads one response into buf (payload only); returns its length or -1. */
static int read_response(int fd, uint8_t *buf, size_t cap) {
    uint8_t h[4];
    if (read_all(fd, h, 4) != 0) return -1;
    uint32_t n = get32(h);
    if (n < 6 || n > cap) return -1;
    if (read_all(fd, buf, n) != 0) return -1;
    return (int)n;
}

static int connect_and_hello(client *c) {
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    strncpy(addr.sun_path, socket_path, sizeof(addr.sun_path) - 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
        note(c, 0, "connect: %s", strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    uint8_t req[300];
    size_t il = strlen(instance);
    size_t n = 1 + 4 + 2 + 2 + il + 2 + 6;
    put32(req, (uint32_t)n);
    req[4] = 1; put32(req + 5, 0); req[9] = 0; req[10] = 1;
    req[11] = (uint8_t)(il >> 8); req[12] = (uint8_t)il; memcpy(req + 13, instance, il);
    req[13 + il] = 0; req[14 + il] = 6; memcpy(req + 15 + il, "kbload", 6);
    uint8_t resp[1024];
    if (write_all(fd, req, n + 4) != 0 || read_response(fd, resp, sizeof(resp)) < 0 || resp[5] != 0) {
        note(c, 0, "HELLO refused or failed");
        close(fd);
        return -1;
    }
    return fd;
}

static uint64_t next_random(uint64_t *s) {
    *s ^= *s << 13; *s ^= *s >> 7; *s ^= *s << 17;
    return *s;
}

typedef struct { uint8_t op; uint32_t key; uint32_t version; } pending;

static void check_key(client *c, uint32_t key, uint32_t version, const uint8_t *bytes, uint16_t len) {
    key_memory *m = &c->keys[key - first_key];
    if (version == 0 || version >= MAX_VERSIONS || len == 0 || len > 32) {
        note(c, 1, "key %u: version %u with %u bytes", key, version, len);
        return;
    }
    if (!m->seen[version]) {
        m->seen[version] = 1;
        m->key_len[version] = (uint8_t)len;
        memcpy(m->bytes[version], bytes, len);
    } else if (m->key_len[version] != len || memcmp(m->bytes[version], bytes, len) != 0) {
        note(c, 1, "key %u version %u: bytes changed", key, version);
    }
}

static void *run_client(void *arg) {
    client *c = arg;
    uint64_t rng = 0x9E3779B97F4A7C15ull * (uint64_t)(c->index + 1);
    int fd = connect_and_hello(c);
    if (fd < 0) return NULL;
    uint8_t out[MAX_DEPTH * 16], resp[65536 + 8];
    pending sent[MAX_DEPTH];
    uint32_t rid_base = 1;
    while (c->done < c->requests) {
        int batch = depth;
        if ((uint64_t)batch > c->requests - c->done) batch = (int)(c->requests - c->done);
        size_t off = 0;
        for (int i = 0; i < batch; i++) {
            uint32_t key = first_key + (uint32_t)(next_random(&rng) % (uint64_t)key_ids);
            key_memory *m = &c->keys[key - first_key];
            uint64_t dice = next_random(&rng) % 1000000;
            pending p = {2, key, 0};
            if (rotate_per_million > 0 && dice < (uint64_t)rotate_per_million) p.op = 4;
            else if (m->latest > 0 && (dice & 1)) { p.op = 3; p.version = 1 + (uint32_t)(next_random(&rng) % m->latest); }
            sent[i] = p;
            uint32_t rid = rid_base + (uint32_t)i;
            uint32_t len = p.op == 3 ? 13 : 9;
            put32(out + off, len); out[off + 4] = p.op; put32(out + off + 5, rid); put32(out + off + 9, key);
            if (p.op == 3) put32(out + off + 13, p.version);
            off += 4 + len;
        }
        if (write_all(fd, out, off) != 0) { note(c, 0, "send failed"); break; }
        for (int i = 0; i < batch; i++) {
            int n = read_response(fd, resp, sizeof(resp));
            if (n < 0) { note(c, 0, "connection lost after %" PRIu64 " requests", c->done); close(fd); return NULL; }
            uint32_t rid = get32(resp + 1);
            if (rid < rid_base || rid >= rid_base + (uint32_t)batch) { note(c, 1, "unknown request id %u", rid); continue; }
            pending *p = &sent[rid - rid_base];
            if (resp[0] != p->op) { note(c, 1, "op %u answered as %u", p->op, resp[0]); continue; }
            if (resp[5] != 0) {
                uint16_t ml = n >= 8 ? get16(resp + 6) : 0;
                note(c, 0, "op %u key %u: status %u: %.*s", p->op, p->key, resp[5], (int)(ml < n - 8 ? ml : n - 8), resp + 8);
                continue;
            }
            key_memory *m = &c->keys[p->key - first_key];
            if (p->op == 2) {
                uint32_t version = get32(resp + 6);
                uint16_t kl = get16(resp + 10);
                if (n != 12 + kl) { note(c, 1, "LATEST_KEY length"); continue; }
                check_key(c, p->key, version, resp + 12, kl);
                if (version > m->latest) m->latest = version;
            } else if (p->op == 3) {
                uint16_t kl = get16(resp + 6);
                if (n != 8 + kl) { note(c, 1, "GET_KEY length"); continue; }
                check_key(c, p->key, p->version, resp + 8, kl);
            } else {
                c->rotations++;
                if (get32(resp + 6) != 1 || get32(resp + 10) != p->key) note(c, 1, "ROTATE answer");
            }
        }
        c->done += (uint64_t)batch;
        rid_base += (uint32_t)batch;
    }
    close(fd);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: kbload SOCKET INSTANCE CLIENTS TOTAL_REQUESTS KEY_IDS [DEPTH] [ROTATE_PER_MILLION] [FIRST_KEY_ID]\n");
        return 2;
    }
    socket_path = argv[1];
    instance = argv[2];
    int clients = atoi(argv[3]);
    uint64_t total = strtoull(argv[4], NULL, 10);
    key_ids = atoi(argv[5]);
    if (argc > 6) depth = atoi(argv[6]);
    if (argc > 7) rotate_per_million = atoi(argv[7]);
    if (argc > 8) first_key = (uint32_t)strtoul(argv[8], NULL, 10);
    if (clients < 1 || key_ids < 1 || depth < 1 || depth > MAX_DEPTH || first_key == 0) {
        fprintf(stderr, "kbload: bad arguments\n");
        return 2;
    }
    client *cs = calloc((size_t)clients, sizeof(client));
    pthread_t *ts = calloc((size_t)clients, sizeof(pthread_t));
    if (!cs || !ts) return 1;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < clients; i++) {
        cs[i].index = i;
        cs[i].requests = total / (uint64_t)clients + ((uint64_t)i < total % (uint64_t)clients);
        cs[i].keys = calloc((size_t)key_ids, sizeof(key_memory));
        if (!cs[i].keys) return 1;
        pthread_create(&ts[i], NULL, run_client, &cs[i]);
    }
    for (int i = 0; i < clients; i++) pthread_join(ts[i], NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    uint64_t done = 0, errors = 0, wrong = 0, rotations = 0;
    const char *first = "";
    for (int i = 0; i < clients; i++) {
        done += cs[i].done; errors += cs[i].errors; wrong += cs[i].wrong; rotations += cs[i].rotations;
        if (!first[0] && cs[i].first_error[0]) first = cs[i].first_error;
    }
    /* Every client must have seen the same bytes for the same (key, version). */
    for (int k = 0; k < key_ids; k++)
        for (int v = 1; v < MAX_VERSIONS; v++) {
            const key_memory *ref = NULL;
            for (int i = 0; i < clients; i++) {
                const key_memory *m = &cs[i].keys[k];
                if (!m->seen[v]) continue;
                if (!ref) { ref = m; continue; }
                if (ref->key_len[v] != m->key_len[v] || memcmp(ref->bytes[v], m->bytes[v], m->key_len[v]) != 0) {
                    wrong++;
                    if (!first[0]) first = "two clients saw different bytes for one version";
                }
            }
        }
    double seconds = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("{\"clients\": %d, \"requests\": %" PRIu64 ", \"errors\": %" PRIu64 ", \"wrong\": %" PRIu64
           ", \"rotations\": %" PRIu64 ", \"seconds\": %.3f, \"requests_per_second\": %.0f, \"first_error\": \"%s\"}\n",
           clients, done, errors, wrong, rotations, seconds, seconds > 0 ? (double)done / seconds : 0.0, first);
    return (errors || wrong || done != total) ? 1 : 0;
}
