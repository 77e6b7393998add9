/* The key cache at its limits, without a broker: 100,000 key ids × 10 versions (1,000,000 key
   entries) published by one writer while readers look up everything published so far. Growth
   must never hide an entry from a reader, a latest version must never be published without its
   bytes, and no entry may read back other bytes. Prints "ok IDS ENTRIES" or the first problem.

     key_cache_test [IDS [VERSIONS [READERS]]]
*/
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "key_cache.h"

static struct key_cache *cache;
static unsigned ids = 100000, versions = 10;
static atomic_uint published_ids;   /* ids 1..n have every version and their latest published */
static atomic_int done;
static atomic_ullong problems, lookups;

static void key_of(unsigned id, unsigned version, unsigned char key[32])
{
  for (int i = 0; i < 32; i++)
    key[i] = (unsigned char) (id * 31u + version * 7u + (unsigned) i);
}

static void *reader(void *arg)
{
  unsigned seed = (unsigned) (size_t) arg;
  while (!atomic_load(&done))
  {
    const unsigned n = atomic_load(&published_ids);
    if (!n)
      continue;
    seed = seed * 1103515245u + 12345u;
    const unsigned id = 1 + (seed >> 4) % n, version = 1 + (seed >> 20) % versions;
    unsigned char key[32], expected[32];
    unsigned len = sizeof key;
    const unsigned latest = key_cache_latest(cache, id);
    key_of(id, version, expected);
    if (latest != versions || key_cache_get(cache, id, version, key, &len) != 0 || len != 32 ||
        memcmp(key, expected, 32) || key_cache_length(cache, id, latest) != 32)
      atomic_fetch_add(&problems, 1);
    atomic_fetch_add_explicit(&lookups, 1, memory_order_relaxed);
  }
  return NULL;
}

int main(int argc, char **argv)
{
  if (argc > 1) ids = (unsigned) atoi(argv[1]);
  if (argc > 2) versions = (unsigned) atoi(argv[2]);
  const int readers = argc > 3 ? atoi(argv[3]) : 3;
  if (!(cache = key_cache_open()))
    return perror("key_cache_open"), 1;
  pthread_t t[16];
  for (int i = 0; i < readers && i < 16; i++)
    pthread_create(&t[i], NULL, reader, (void *) (size_t) (i + 1));
  unsigned char key[32];
  for (unsigned id = 1; id <= ids; id++)
  {
    if (key_cache_put_latest(cache, id, 1) != KEY_CACHE_NO_BYTES)
      return fprintf(stderr, "key %u: a latest version without bytes was published\n", id), 1;
    for (unsigned v = 1; v <= versions; v++)
    {
      key_of(id, v, key);
      if (key_cache_put_key(cache, id, v, key, 32) != KEY_CACHE_ADDED)
        return fprintf(stderr, "key %u version %u not added\n", id, v), 1;
      if (key_cache_put_latest(cache, id, v) != KEY_CACHE_ADDED)
        return fprintf(stderr, "key %u version %u: latest not raised\n", id, v), 1;
    }
    key[0] ^= 1;
    if (key_cache_put_key(cache, id, versions, key, 32) != KEY_CACHE_CONFLICT ||
        key_cache_put_latest(cache, id, versions - 1) != (versions > 1 ? KEY_CACHE_CONFLICT : KEY_CACHE_PRESENT))
      return fprintf(stderr, "key %u: other bytes or a lower version were accepted\n", id), 1;
    atomic_store(&published_ids, id);
  }
  atomic_store(&done, 1);
  for (int i = 0; i < readers && i < 16; i++)
    pthread_join(t[i], NULL);
  struct key_cache_cursor cursor;
  unsigned id, walked = 0;
  key_cache_ids_begin(cache, &cursor);
  while (key_cache_ids_next(&cursor, &id))
    walked++;
  if (atomic_load(&problems) || walked != ids || key_cache_id_count(cache) != ids ||
      key_cache_count(cache) != (unsigned long long) ids * versions)
    return fprintf(stderr, "%llu lookups went wrong of %llu; %u ids walked\n", atomic_load(&problems),
                   atomic_load(&lookups), walked), 1;
  key_cache_retire(cache);
  unsigned len = 32;
  if (key_cache_get(cache, 1, 1, key, &len) != -1)
    return fprintf(stderr, "a retired cache still answers\n"), 1;
  key_cache_free(cache);
  printf("ok %u %llu %llu\n", ids, (unsigned long long) ids * versions, atomic_load(&lookups));
  return 0;
}
