/*
 * keybench: the C half of `make bench` (bench/run.py drives it).
 *
 *   keybench lookups PLUGIN_SO BROKER_SOCKET KEYS REPS MILLISECONDS THREADS...
 *
 *     Loads the real keybroker_key_management.so with dlopen, as mariadbd does (service pointers,
 *     system variables, init against a running broker), caches KEYS key ids (1..KEYS, a power of
 *     two), copies the same keys into the mutex baseline and the lock-free null table
 *     (mutex_key_table.c), then REPS times, for each thread count, each lookup and each of the
 *     three (in rotating order) calls the lookup from that many threads for MILLISECONDS. Every
 *     answer is checked. Prints one JSON object.
 *
 *   keybench roundtrip MILLISECONDS plugin|raw:SOCKET...
 *
 *     One connection per target, then LATEST_KEY and GET_KEY of key 1 in turn, one at a time,
 *     for MILLISECONDS; the targets take turns every 100 round trips, so that all of them see the
 *     same machine. `plugin` goes through the plugin's own client (broker_client.c, compiled in
 *     unchanged: the code a cache miss runs); `raw` is the floor, a blocking write and read.
 *     Prints one JSON object with the mean and percentiles of a round trip per target.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
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

#include <mysql/plugin_encryption.h>

#include "wire.h"

#include "broker_client.h"
#include "mutex_key_table.h"
#include "plugin_host.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *format, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *format, ...) {
    va_list ap;
    va_start(ap, format);
    fputs("keybench: ", stderr);
    vfprintf(stderr, format, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

/* ---- the plugin, loaded as the server loads it (plugin_host.h) ---------------------------- */

static struct st_maria_plugin *load_plugin(const char *so, const char *socket_path) {
    struct st_maria_plugin *plugin = host_load_plugin(so);
    if (!plugin) die("cannot load %s", so);
    host_set_var(plugin, "socket", socket_path);
    if (plugin->init(NULL)) die("plugin init failed");
    return plugin;
}

/* ---- lookups ------------------------------------------------------------------------------ */

typedef unsigned (*latest_fn)(unsigned);
typedef unsigned (*get_key_fn)(unsigned, unsigned, unsigned char *, unsigned *);

struct implementation { const char *name; latest_fn latest; get_key_fn get_key; };

#define MAX_KEYS (1u << 20)
static unsigned keys_mask;
static unsigned *versions;                 /* [keys + 1] */
static unsigned char (*key_bytes)[32];     /* [keys + 1] */

static atomic_int go, stop;

struct run {
    const struct implementation *impl;
    int get_key;   /* 0: get_latest_key_version, 1: get_key */
    pthread_t thread;
    unsigned seed;
    unsigned long long calls, errors;
};

static void *lookup_thread(void *arg) {
    struct run *r = arg;
    const latest_fn latest = r->impl->latest;
    const get_key_fn get_key = r->impl->get_key;
    unsigned long long calls = 0, errors = 0;
    unsigned i = r->seed;
    unsigned char buf[32];
    while (!atomic_load_explicit(&go, memory_order_acquire)) {}
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        if (r->get_key)
            for (int n = 0; n < 1024; n++, i++) {
                const unsigned id = 1 + (i & keys_mask);
                unsigned len = sizeof buf;
                errors += get_key(id, versions[id], buf, &len) != 0 || buf[0] != key_bytes[id][0];
            }
        else
            for (int n = 0; n < 1024; n++, i++) {
                const unsigned id = 1 + (i & keys_mask);
                errors += latest(id) != versions[id];
            }
        calls += 1024;
    }
    r->calls = calls;
    r->errors = errors;
    return NULL;
}

/* Calls per second from `threads` threads over `ms` milliseconds. */
static double measure(const struct implementation *impl, int get_key, int threads, int ms, unsigned long long *errors) {
    struct run runs[64];
    atomic_store(&go, 0);
    atomic_store(&stop, 0);
    for (int t = 0; t < threads; t++) {
        runs[t] = (struct run){.impl = impl, .get_key = get_key, .seed = (unsigned)t * 7919u};
        if (pthread_create(&runs[t].thread, NULL, lookup_thread, &runs[t])) die("pthread_create");
    }
    usleep(20000);  /* every thread started */
    const double t0 = now();
    atomic_store_explicit(&go, 1, memory_order_release);
    usleep((useconds_t)ms * 1000);
    atomic_store(&stop, 1);
    unsigned long long calls = 0;
    for (int t = 0; t < threads; t++) {
        pthread_join(runs[t].thread, NULL);
        calls += runs[t].calls;
        *errors += runs[t].errors;
    }
    return (double)calls / (now() - t0);
}

static int lookups(int argc, char **argv) {
    if (argc < 6) die("usage: keybench lookups PLUGIN_SO BROKER_SOCKET KEYS REPS MILLISECONDS THREADS...");
    const unsigned keys = (unsigned)atoi(argv[2]);
    const int reps = atoi(argv[3]), ms = atoi(argv[4]);
    if (keys < 1 || keys > MAX_KEYS || (keys & (keys - 1)) || reps < 1 || ms < 1) die("bad arguments");
    keys_mask = keys - 1;
    versions = calloc(keys + 1, sizeof *versions);
    key_bytes = calloc(keys + 1, sizeof *key_bytes);
    if (!versions || !key_bytes || mutex_key_table_reserve(keys)) die("out of memory");

    struct st_maria_plugin *plugin = load_plugin(argv[0], argv[1]);
    struct st_mariadb_encryption *enc = plugin->info;
    for (unsigned id = 1; id <= keys; id++) {
        unsigned len = 32;
        versions[id] = enc->get_latest_key_version(id);
        if (versions[id] == ENCRYPTION_KEY_VERSION_INVALID || enc->get_key(id, versions[id], key_bytes[id], &len) || len != 32)
            die("key %u: no key from the broker", id);
        if (mutex_key_table_add(id, versions[id], key_bytes[id], len)) die("mutex table full");
    }
    mutex_key_table_seal();
    const struct implementation impls[3] = {
        {"mutex_table", mutex_key_table_latest, mutex_key_table_get_key},
        {"plugin", enc->get_latest_key_version, enc->get_key},
        {"null", null_key_table_latest, null_key_table_get_key},
    };
    static const char *functions[2] = {"get_latest_key_version", "get_key"};

    unsigned long long errors = 0;
    printf("{\"keys\": %u, \"milliseconds\": %d, \"samples\": [", keys, ms);
    const char *sep = "";
    for (int a = 5; a < argc; a++)
        if (atoi(argv[a]) < 1 || atoi(argv[a]) > 64) die("threads: 1..64");
    /* An implementation's thread counts run back to back, so a scaling ratio compares two runs a
       moment apart: on a VM whose speed drifts by tens of percent over seconds, runs of one thread
       count taken one after another for every implementation first made the ratios noise. */
    for (int rep = 0; rep < reps; rep++)
        for (int f = 0; f < 2; f++)
            for (int k = 0; k < 3; k++)
                for (int a = 5; a < argc; a++) {
                    const struct implementation *impl = &impls[(k + rep) % 3];  /* rotate who goes first */
                    const int threads = atoi(argv[(rep % 2) ? argc + 4 - a : a]);  /* and which count */
                    const double cps = measure(impl, f, threads, ms, &errors);
                    printf("%s\n  {\"impl\": \"%s\", \"function\": \"%s\", \"threads\": %d, \"rep\": %d, \"calls_per_second\": %.0f}",
                           sep, impl->name, functions[f], threads, rep, cps);
                    sep = ",";
                    fflush(stdout);
                }
    printf("\n], \"errors\": %llu}\n", errors);
    plugin->deinit(NULL);
    return errors ? 1 : 0;
}

/* ---- round trips -------------------------------------------------------------------------- */

/* The floor client: one blocking socket, one write per request, header then payload read. */
struct raw_client { int fd; uint32_t rid; uint8_t buf[65536]; };

static int raw_call(struct raw_client *c, uint8_t op, const uint8_t *body, size_t n, uint8_t **answer, size_t *length) {
    uint8_t req[4 + 5 + 300];
    const uint32_t rid = ++c->rid;
    put32(req, (uint32_t)(5 + n));
    req[4] = op;
    put32(req + 5, rid);
    memcpy(req + 9, body, n);
    uint8_t h[4];
    if (write_all(c->fd, req, 9 + n) || read_all(c->fd, h, 4)) return -1;
    const uint32_t len = get32(h);
    if (len < 6 || len > sizeof c->buf || read_all(c->fd, c->buf, len)) return -1;
    if (c->buf[0] != op || get32(c->buf + 1) != rid || c->buf[5] != 0) return -1;
    *answer = c->buf + 6;
    *length = len - 6;
    return 0;
}

static int raw_connect(struct raw_client *c, const char *path) {
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    strncpy(addr.sun_path, path, sizeof addr.sun_path - 1);
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&addr, sizeof addr)) return -1;
    static const uint8_t hello[] = {0, 1, 0, 7, 'd', 'e', 'f', 'a', 'u', 'l', 't', 0, 8, 'k', 'e', 'y', 'b', 'e', 'n', 'c', 'h'};
    uint8_t *answer;
    size_t length;
    return raw_call(c, 1, hello, sizeof hello, &answer, &length);
}

static int compare_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* One client of one server: the plugin's broker_client or the raw floor client. */
struct target {
    const char *spec;
    int plugin;
    struct broker_client *client;
    struct raw_client *raw;
    unsigned version;
    double *samples;
    size_t n;
    unsigned long long errors;
};

static void target_open(struct target *t, char *spec, size_t cap) {
    static struct broker_stats stats;
    struct broker_error err;
    unsigned char key[32];
    char *colon = strchr(spec, ':');
    if (!colon) die("target: plugin:SOCKET or raw:SOCKET");
    t->spec = strdup(spec);
    *colon = 0;
    const char *path = colon + 1;
    t->plugin = !strcmp(spec, "plugin");
    if (!t->plugin && strcmp(spec, "raw")) die("client: plugin or raw");
    if (t->plugin) {
        unsigned len = sizeof key;
        t->client = broker_client_new(path, "default", "keybench", -1, &stats);
        if (!t->client || broker_connect(t->client, broker_now_ms() + 5000, &err) ||
            broker_latest_key(t->client, 1, broker_now_ms() + 5000, &t->version, key, &len, &err))
            die("cannot reach %s through broker_client", path);
    } else {
        t->raw = calloc(1, sizeof *t->raw);
        if (!t->raw || raw_connect(t->raw, path)) die("cannot reach %s", path);
        t->version = 1;
    }
    t->samples = malloc(cap * sizeof *t->samples);
    if (!t->samples) die("out of memory");
}

/* One round trip, LATEST_KEY and GET_KEY in turn; returns its seconds. */
static double target_call(struct target *t) {
    unsigned char key[32];
    struct broker_error err;
    const int get = t->n & 1;
    int rc;
    const double t0 = now();
    if (t->plugin) {
        unsigned len = sizeof key, v;
        rc = get ? broker_get_key(t->client, 1, t->version, broker_now_ms() + 5000, key, &len, &err)
                 : broker_latest_key(t->client, 1, broker_now_ms() + 5000, &v, key, &len, &err);
    } else {
        uint8_t body[8], *answer;
        size_t length;
        put32(body, 1);
        put32(body + 4, t->version);
        rc = raw_call(t->raw, get ? 3 : 2, body, get ? 8 : 4, &answer, &length);
    }
    t->errors += rc != 0;
    return now() - t0;
}

/* Targets take turns in blocks of BLOCK round trips, so that each sees the same machine. */
static int roundtrip(int argc, char **argv) {
    enum { BLOCK = 100, MAX_TARGETS = 8 };
    if (argc < 2 || argc - 1 > MAX_TARGETS) die("usage: keybench roundtrip MILLISECONDS plugin|raw:SOCKET...");
    const double seconds = atoi(argv[0]) / 1000.0;
    const size_t cap = 1 << 20;
    struct target targets[MAX_TARGETS] = {{0}};
    const int count = argc - 1;
    for (int i = 0; i < count; i++) target_open(&targets[i], argv[i + 1], cap);

    const double start = now();
    while (now() - start < seconds) {
        for (int i = 0; i < count; i++) {
            struct target *t = &targets[i];
            for (int k = 0; k < BLOCK && t->n < cap; k++) {
                const double dt = target_call(t);
                t->samples[t->n++] = dt;
            }
        }
    }
    unsigned long long errors = 0;
    printf("{\"milliseconds\": %d, \"targets\": [", atoi(argv[0]));
    for (int i = 0; i < count; i++) {
        struct target *t = &targets[i];
        double sum = 0;
        for (size_t k = 0; k < t->n; k++) sum += t->samples[k];
        qsort(t->samples, t->n, sizeof *t->samples, compare_double);
        printf("%s\n  {\"target\": \"%s\", \"round_trips\": %zu, \"errors\": %llu, \"mean_us\": %.2f, \"p50_us\": %.2f, \"p99_us\": %.2f}",
               i ? "," : "", t->spec, t->n, t->errors, sum / (double)t->n * 1e6, t->samples[t->n / 2] * 1e6,
               t->samples[t->n * 99 / 100] * 1e6);
        errors += t->errors;
        if (t->client) broker_client_free(t->client);
    }
    printf("\n]}\n");
    return errors ? 1 : 0;
}

int main(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "lookups")) return lookups(argc - 2, argv + 2);
    if (argc >= 2 && !strcmp(argv[1], "roundtrip")) return roundtrip(argc - 2, argv + 2);
    fprintf(stderr, "usage: keybench lookups PLUGIN_SO BROKER_SOCKET KEYS REPS MILLISECONDS THREADS...\n"
                    "       keybench roundtrip MILLISECONDS plugin|raw:SOCKET...\n");
    return 2;
}
