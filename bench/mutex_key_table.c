/* See mutex_key_table.h. */
#include "mutex_key_table.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define VERSION_INVALID (~0u)         /* ENCRYPTION_KEY_VERSION_INVALID */
#define BUFFER_TOO_SMALL 100u         /* ENCRYPTION_KEY_BUFFER_TOO_SMALL */

struct latest { unsigned id, version; };
struct key { unsigned long long tag; unsigned length; unsigned char bytes[32]; };

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct latest *latest;
static struct key *keys;
static size_t latest_count, key_count, capacity;
static unsigned *null_versions;
static unsigned char (*null_bytes)[32];

static int by_id(const void *a, const void *b) {
    unsigned x = ((const struct latest *)a)->id, y = ((const struct latest *)b)->id;
    return (x > y) - (x < y);
}

static int by_tag(const void *a, const void *b) {
    unsigned long long x = ((const struct key *)a)->tag, y = ((const struct key *)b)->tag;
    return (x > y) - (x < y);
}

int mutex_key_table_reserve(unsigned count) {
    capacity = (size_t)count + 1;
    latest = calloc(capacity, sizeof *latest);
    keys = calloc(capacity, sizeof *keys);
    null_versions = calloc(capacity, sizeof *null_versions);
    null_bytes = calloc(capacity, sizeof *null_bytes);
    return latest && keys && null_versions && null_bytes ? 0 : -1;
}

int mutex_key_table_add(unsigned key_id, unsigned version, const unsigned char *bytes, unsigned length) {
    if (length != 32 || key_count == capacity || key_id >= capacity) return -1;
    if (null_versions[key_id] < version) {
        null_versions[key_id] = version;
        memcpy(null_bytes[key_id], bytes, 32);
    }
    pthread_mutex_lock(&lock);
    /* one version per id here: the latest is the one added */
    latest[latest_count++] = (struct latest){key_id, version};
    keys[key_count].tag = (unsigned long long)key_id << 32 | version;
    keys[key_count].length = length;
    memcpy(keys[key_count].bytes, bytes, length);
    key_count++;
    pthread_mutex_unlock(&lock);
    return 0;
}

void mutex_key_table_seal(void) {
    pthread_mutex_lock(&lock);
    qsort(latest, latest_count, sizeof *latest, by_id);
    qsort(keys, key_count, sizeof *keys, by_tag);
    pthread_mutex_unlock(&lock);
}

unsigned mutex_key_table_latest(unsigned key_id) {
    unsigned version = VERSION_INVALID;
    pthread_mutex_lock(&lock);
    size_t lo = 0, hi = latest_count;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (latest[mid].id < key_id) lo = mid + 1; else hi = mid;
    }
    if (lo < latest_count && latest[lo].id == key_id) version = latest[lo].version;
    pthread_mutex_unlock(&lock);
    return version;
}

unsigned mutex_key_table_get_key(unsigned key_id, unsigned version, unsigned char *dst, unsigned *buflen) {
    const unsigned long long tag = (unsigned long long)key_id << 32 | version;
    unsigned rc = VERSION_INVALID;
    pthread_mutex_lock(&lock);
    size_t lo = 0, hi = key_count;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (keys[mid].tag < tag) lo = mid + 1; else hi = mid;
    }
    if (lo < key_count && keys[lo].tag == tag) {
        if (*buflen < keys[lo].length) {
            *buflen = keys[lo].length;
            rc = BUFFER_TOO_SMALL;
        } else {
            *buflen = keys[lo].length;
            if (dst) memcpy(dst, keys[lo].bytes, keys[lo].length);
            rc = 0;
        }
    }
    pthread_mutex_unlock(&lock);
    return rc;
}

unsigned null_key_table_latest(unsigned key_id) {
    return key_id < capacity ? null_versions[key_id] : VERSION_INVALID;
}

unsigned null_key_table_get_key(unsigned key_id, unsigned version, unsigned char *dst, unsigned *buflen) {
    if (key_id >= capacity || null_versions[key_id] != version) return VERSION_INVALID;
    if (*buflen < 32) { *buflen = 32; return BUFFER_TOO_SMALL; }
    *buflen = 32;
    if (dst) memcpy(dst, null_bytes[key_id], 32);
    return 0;
}
