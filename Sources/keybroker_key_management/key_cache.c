/* Copyright (c) 2025 keybroker authors. GPL-2.0 (see plugin.c). */
#define _GNU_SOURCE
#include "key_cache.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#define LATEST_SLOTS 1024  /* key ids; at most 3/4 used so probes stay short */
#define KEY_SLOTS    4096  /* (id, version) pairs */

struct key_slot
{
  _Atomic uint64_t tag;  /* 0 = empty, else id << 32 | version; stored last, with release */
  uint32_t length;
  unsigned char bytes[KEY_CACHE_MAX_KEY_LENGTH];
};

struct key_cache
{
  _Atomic uint64_t latest[LATEST_SLOTS];  /* 0 = empty, else id << 32 | version */
  struct key_slot keys[KEY_SLOTS];
  atomic_ullong key_count;
  unsigned latest_count;                 /* writers only, under write_lock */
  pthread_mutex_t write_lock;
};

static inline uint64_t tag_of(unsigned key_id, unsigned version)
{
  return (uint64_t) key_id << 32 | version;
}

/* Fibonacci hashing: ids are small and dense, this spreads them over the table. */
static inline size_t slot_of(uint64_t x, size_t slots)
{
  return (size_t) ((x * 0x9E3779B97F4A7C15ull) >> 32) & (slots - 1);
}

struct key_cache *key_cache_open(int *mlock_errno)
{
  struct key_cache *cache= mmap(NULL, sizeof *cache, PROT_READ | PROT_WRITE,
                                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (cache == MAP_FAILED)
    return NULL;
  /* Key bytes must never reach swap or a core file. */
  *mlock_errno= mlock(cache, sizeof *cache) ? errno : 0;
  (void) madvise(cache, sizeof *cache, MADV_DONTDUMP);
  pthread_mutex_init(&cache->write_lock, NULL);
  return cache;  /* an anonymous mapping is zero-filled: every slot starts empty */
}

void key_cache_close(struct key_cache *cache)
{
  if (!cache)
    return;
  pthread_mutex_destroy(&cache->write_lock);
  explicit_bzero(cache, sizeof *cache);
  munlock(cache, sizeof *cache);
  munmap(cache, sizeof *cache);
}

unsigned key_cache_latest(const struct key_cache *cache, unsigned key_id)
{
  size_t i= slot_of(key_id, LATEST_SLOTS);
  for (size_t probes= 0; probes < LATEST_SLOTS; probes++, i= (i + 1) & (LATEST_SLOTS - 1))
  {
    uint64_t entry= atomic_load_explicit(&cache->latest[i], memory_order_acquire);
    if (entry == 0)
      return 0;
    if ((unsigned) (entry >> 32) == key_id)
      return (unsigned) entry;
  }
  return 0;
}

int key_cache_key(const struct key_cache *cache, unsigned key_id, unsigned version,
                  const unsigned char **bytes, unsigned *length)
{
  const uint64_t tag= tag_of(key_id, version);
  size_t i= slot_of(tag, KEY_SLOTS);
  for (size_t probes= 0; probes < KEY_SLOTS; probes++, i= (i + 1) & (KEY_SLOTS - 1))
  {
    const struct key_slot *slot= &cache->keys[i];
    uint64_t t= atomic_load_explicit(&slot->tag, memory_order_acquire);
    if (t == 0)
      return 0;
    if (t == tag)
    {
      *bytes= slot->bytes;
      *length= slot->length;
      return 1;
    }
  }
  return 0;
}

int key_cache_put_key(struct key_cache *cache, unsigned key_id, unsigned version,
                      const unsigned char *bytes, unsigned length)
{
  if (length == 0 || length > KEY_CACHE_MAX_KEY_LENGTH || key_id == 0 || version == 0)
    return -1;
  const uint64_t tag= tag_of(key_id, version);
  int result= -1;
  pthread_mutex_lock(&cache->write_lock);
  if (atomic_load_explicit(&cache->key_count, memory_order_relaxed) < KEY_SLOTS / 4 * 3)
  {
    size_t i= slot_of(tag, KEY_SLOTS);
    for (;; i= (i + 1) & (KEY_SLOTS - 1))
    {
      struct key_slot *slot= &cache->keys[i];
      uint64_t t= atomic_load_explicit(&slot->tag, memory_order_relaxed);
      if (t == tag)
      {
        result= 0;
        break;
      }
      if (t == 0)
      {
        memcpy(slot->bytes, bytes, length);
        slot->length= length;
        atomic_store_explicit(&slot->tag, tag, memory_order_release);
        atomic_fetch_add_explicit(&cache->key_count, 1, memory_order_relaxed);
        result= 1;
        break;
      }
    }
  }
  pthread_mutex_unlock(&cache->write_lock);
  return result;
}

int key_cache_put_latest(struct key_cache *cache, unsigned key_id, unsigned version)
{
  if (key_id == 0 || version == 0)
    return -1;
  int result= -1;
  pthread_mutex_lock(&cache->write_lock);
  size_t i= slot_of(key_id, LATEST_SLOTS);
  for (size_t probes= 0; probes < LATEST_SLOTS; probes++, i= (i + 1) & (LATEST_SLOTS - 1))
  {
    uint64_t entry= atomic_load_explicit(&cache->latest[i], memory_order_relaxed);
    if (entry != 0 && (unsigned) (entry >> 32) == key_id)
    {
      if ((unsigned) entry < version)
        atomic_store_explicit(&cache->latest[i], tag_of(key_id, version), memory_order_release);
      result= 0;
      break;
    }
    if (entry == 0)
    {
      if (cache->latest_count < LATEST_SLOTS / 4 * 3)
      {
        atomic_store_explicit(&cache->latest[i], tag_of(key_id, version), memory_order_release);
        cache->latest_count++;
        result= 0;
      }
      break;
    }
  }
  pthread_mutex_unlock(&cache->write_lock);
  return result;
}

size_t key_cache_key_ids(const struct key_cache *cache, unsigned *ids, size_t max)
{
  size_t n= 0;
  for (size_t i= 0; i < LATEST_SLOTS && n < max; i++)
  {
    uint64_t entry= atomic_load_explicit(&cache->latest[i], memory_order_acquire);
    if (entry != 0)
      ids[n++]= (unsigned) (entry >> 32);
  }
  return n;
}

unsigned long long key_cache_count(const struct key_cache *cache)
{
  return atomic_load_explicit(&cache->key_count, memory_order_relaxed);
}
