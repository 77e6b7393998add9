/* Copyright (c) 2025 keybroker authors. GPL-2.0 (see plugin.c). */
#define _GNU_SOURCE
#include "key_cache.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define FIRST_LATEST_SLOTS 1024   /* key ids; tables double when 3/4 full */
#define FIRST_KEY_SLOTS    4096   /* (id, version) pairs */
#define FIRST_CHUNK_RECORDS 1024
#define MAX_CHUNK_RECORDS  65536
#define KEY_WORDS (KEY_CACHE_MAX_KEY_LENGTH / 8)

/* Key bytes as words that readers load and retire() zeroes atomically: a reader racing with
   the zeroing sees the retired flag afterwards (see key_cache_get). */
struct key_record
{
  _Atomic uint64_t words[KEY_WORDS];
  uint32_t length;
};

struct record_chunk
{
  struct record_chunk *next;
  size_t mapped, capacity, used;
  struct key_record records[];
};

struct latest_table
{
  struct latest_table *older;  /* kept mapped for readers that loaded it before it was replaced */
  size_t mapped, mask;
  unsigned shift;
  _Atomic uint64_t slots[];    /* 0 = empty, else id << 32 | version */
};

struct key_slot
{
  _Atomic uint64_t tag;        /* 0 = empty, else id << 32 | version; stored last, with release */
  const struct key_record *record;
};

struct key_table
{
  struct key_table *older;
  size_t mapped, mask;
  unsigned shift;
  struct key_slot slots[];
};

struct key_cache
{
  _Atomic(struct latest_table *) latest;
  _Atomic(struct key_table *) keys;
  atomic_bool retired;
  atomic_ullong id_count, key_count;
  struct record_chunk *chunks;  /* writers only, under write_lock; newest first */
  int mlock_errno;
  pthread_mutex_t write_lock;
};

static inline uint64_t tag_of(unsigned key_id, unsigned version)
{
  return (uint64_t) key_id << 32 | version;
}

/*
  Slots come in groups: 8 latest versions (one cache line), 8 key slots (two). Consecutive ids
  fill a group, so servers whose key ids are dense (the usual case) read one line for 8
  neighbouring ids; groups are spread by Fibonacci hashing, so ids that share low bits or a stride
  still scatter over the table.
*/
#define LATEST_GROUP_BITS 3
#define KEY_GROUP_BITS 3
#define FIBONACCI 0x9E3779B97F4A7C15ull

static inline size_t latest_slot(unsigned key_id, unsigned shift)
{
  const uint64_t group= (uint64_t) (key_id >> LATEST_GROUP_BITS) * FIBONACCI;
  return (size_t) (group >> shift) << LATEST_GROUP_BITS | (key_id & ((1u << LATEST_GROUP_BITS) - 1));
}

static inline size_t key_slot_of(uint64_t tag, unsigned shift)
{
  const uint32_t key_id= (uint32_t) (tag >> 32);
  const uint64_t group= ((uint64_t) (key_id >> KEY_GROUP_BITS) | tag << 32) * FIBONACCI;
  return (size_t) (group >> shift) << KEY_GROUP_BITS | (key_id & ((1u << KEY_GROUP_BITS) - 1));
}

static unsigned log2_of(size_t slots)  /* slots is a power of two */
{
  return (unsigned) __builtin_ctzll(slots);
}

static void *map_zeroed(size_t bytes)
{
  void *p= mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? NULL : p;
}

/* Both tables start with older, mapped, mask and shift, in that order. shift picks a group. */
static void *new_table(size_t header, size_t slot_size, size_t slots, unsigned group_bits)
{
  const size_t bytes= header + slots * slot_size;
  struct latest_table *t= map_zeroed(bytes);
  if (t)
  {
    t->mapped= bytes;
    t->mask= slots - 1;
    t->shift= 64 - (log2_of(slots) - group_bits);
  }
  return t;
}

static struct latest_table *new_latest_table(size_t slots)
{
  return new_table(sizeof(struct latest_table), sizeof(uint64_t), slots, LATEST_GROUP_BITS);
}

static struct key_table *new_key_table(size_t slots)
{
  return new_table(sizeof(struct key_table), sizeof(struct key_slot), slots, KEY_GROUP_BITS);
}

/* Key bytes must never reach swap or a core file. Under write_lock (or before publishing). */
static struct record_chunk *add_chunk(struct key_cache *cache, size_t capacity)
{
  const size_t bytes= sizeof(struct record_chunk) + capacity * sizeof(struct key_record);
  struct record_chunk *c= map_zeroed(bytes);
  if (!c)
    return NULL;
  if (mlock(c, bytes) && !cache->mlock_errno)
    cache->mlock_errno= errno;
  (void) madvise(c, bytes, MADV_DONTDUMP);
  c->mapped= bytes;
  c->capacity= capacity;
  c->next= cache->chunks;
  return cache->chunks= c;
}

struct key_cache *key_cache_open(void)
{
  struct key_cache *cache= calloc(1, sizeof *cache);
  if (!cache)
    return NULL;
  pthread_mutex_init(&cache->write_lock, NULL);
  atomic_init(&cache->latest, new_latest_table(FIRST_LATEST_SLOTS));
  atomic_init(&cache->keys, new_key_table(FIRST_KEY_SLOTS));
  /* The first chunk now, so that a refused mlock is reported when the plugin starts. */
  if (!atomic_load(&cache->latest) || !atomic_load(&cache->keys) ||
      !add_chunk(cache, FIRST_CHUNK_RECORDS))
  {
    const int e= errno;
    key_cache_free(cache);
    errno= e;
    return NULL;
  }
  return cache;
}

int key_cache_mlock_errno(const struct key_cache *cache)
{
  return cache->mlock_errno;
}

void key_cache_retire(struct key_cache *cache)
{
  if (!cache)
    return;
  pthread_mutex_lock(&cache->write_lock);
  atomic_store_explicit(&cache->retired, 1, memory_order_relaxed);
  atomic_thread_fence(memory_order_release);
  for (struct record_chunk *c= cache->chunks; c; c= c->next)
    for (size_t i= 0; i < c->used; i++)
      for (size_t w= 0; w < KEY_WORDS; w++)
        atomic_store_explicit(&c->records[i].words[w], 0, memory_order_relaxed);
  pthread_mutex_unlock(&cache->write_lock);
}

void key_cache_free(struct key_cache *cache)
{
  if (!cache)
    return;
#define UNMAP_TABLES(newest) \
  for (__typeof__(newest) t= (newest), older; t; t= older) { older= t->older; munmap(t, t->mapped); }
  UNMAP_TABLES(atomic_load(&cache->latest));
  UNMAP_TABLES(atomic_load(&cache->keys));
  for (struct record_chunk *c= cache->chunks, *next; c; c= next)
  {
    next= c->next;
    munlock(c, c->mapped);
    munmap(c, c->mapped);
  }
  pthread_mutex_destroy(&cache->write_lock);
  free(cache);
}

unsigned key_cache_latest(const struct key_cache *cache, unsigned key_id)
{
  const struct latest_table *t= atomic_load_explicit(&cache->latest, memory_order_acquire);
  /* At most 3/4 full: the probe meets an empty slot. */
  for (size_t i= latest_slot(key_id, t->shift);; i= (i + 1) & t->mask)
  {
    const uint64_t entry= atomic_load_explicit(&t->slots[i], memory_order_acquire);
    if (entry == 0)
      return 0;
    if ((unsigned) (entry >> 32) == key_id)
      return (unsigned) entry;
  }
}

static const struct key_record *find_record(const struct key_cache *cache, uint64_t tag)
{
  const struct key_table *t= atomic_load_explicit(&cache->keys, memory_order_acquire);
  for (size_t i= key_slot_of(tag, t->shift);; i= (i + 1) & t->mask)
  {
    const uint64_t found= atomic_load_explicit(&t->slots[i].tag, memory_order_acquire);
    if (found == tag)
      return t->slots[i].record;
    if (found == 0)
      return NULL;
  }
}

int key_cache_get(const struct key_cache *cache, unsigned key_id, unsigned version,
                  unsigned char *dst, unsigned *buflen)
{
  const struct key_record *r= find_record(cache, tag_of(key_id, version));
  if (!r)
    return -1;
  const unsigned length= r->length;
  if (*buflen < length)
  {
    *buflen= length;
    return 1;
  }
  *buflen= length;
  if (!dst)
    return 0;
  for (unsigned w= 0; w < length / 8; w++)
  {
    const uint64_t word= atomic_load_explicit(&r->words[w], memory_order_relaxed);
    memcpy(dst + 8 * w, &word, 8);
  }
  /* Pairs with the release fence in key_cache_retire: a copy that saw zeroed words sees the
     flag, and zero bytes never reach the caller as a key. */
  atomic_thread_fence(memory_order_acquire);
  if (atomic_load_explicit(&cache->retired, memory_order_relaxed))
  {
    memset(dst, 0, length);
    return -1;
  }
  return 0;
}

unsigned key_cache_length(const struct key_cache *cache, unsigned key_id, unsigned version)
{
  const struct key_record *r= find_record(cache, tag_of(key_id, version));
  return r ? r->length : 0;
}

/* A record slot for new key bytes; chunks double up to MAX_CHUNK_RECORDS. Under write_lock. */
static struct key_record *new_record(struct key_cache *cache)
{
  struct record_chunk *c= cache->chunks;
  if (c->used == c->capacity &&
      !(c= add_chunk(cache, c->capacity * 2 > MAX_CHUNK_RECORDS ? MAX_CHUNK_RECORDS
                                                                 : c->capacity * 2)))
    return NULL;
  return &c->records[c->used++];
}

/* Doubles the key table when one more entry would fill it past 3/4. Under write_lock. */
static struct key_table *key_table_with_room(struct key_cache *cache)
{
  struct key_table *t= atomic_load_explicit(&cache->keys, memory_order_relaxed);
  const unsigned long long count= atomic_load_explicit(&cache->key_count, memory_order_relaxed);
  if ((count + 1) * 4 <= (t->mask + 1) * 3)
    return t;
  struct key_table *bigger= new_key_table((t->mask + 1) * 2);
  if (!bigger)
    return NULL;
  for (size_t i= 0; i <= t->mask; i++)
  {
    const uint64_t tag= atomic_load_explicit(&t->slots[i].tag, memory_order_relaxed);
    if (!tag)
      continue;
    size_t j= key_slot_of(tag, bigger->shift);
    while (atomic_load_explicit(&bigger->slots[j].tag, memory_order_relaxed))
      j= (j + 1) & bigger->mask;
    bigger->slots[j].record= t->slots[i].record;
    atomic_store_explicit(&bigger->slots[j].tag, tag, memory_order_relaxed);
  }
  bigger->older= t;
  atomic_store_explicit(&cache->keys, bigger, memory_order_release);
  return bigger;
}

enum key_cache_result key_cache_put_key(struct key_cache *cache, unsigned key_id,
                                        unsigned version, const unsigned char *bytes,
                                        unsigned length)
{
  if ((length != 16 && length != 24 && length != 32) || key_id == 0 || version == 0)
  {
    errno= EINVAL;
    return KEY_CACHE_NO_MEMORY;
  }
  const uint64_t tag= tag_of(key_id, version);
  enum key_cache_result result= KEY_CACHE_NO_MEMORY;
  pthread_mutex_lock(&cache->write_lock);
  const struct key_record *old= find_record(cache, tag);
  if (old)
  {
    unsigned char cached[KEY_CACHE_MAX_KEY_LENGTH];
    for (unsigned w= 0; w < old->length / 8; w++)
    {
      const uint64_t word= atomic_load_explicit(&old->words[w], memory_order_relaxed);
      memcpy(cached + 8 * w, &word, 8);
    }
    result= old->length == length && !memcmp(cached, bytes, length) ? KEY_CACHE_PRESENT
                                                                     : KEY_CACHE_CONFLICT;
    explicit_bzero(cached, sizeof cached);
  }
  else
  {
    struct key_table *t= key_table_with_room(cache);
    struct key_record *r= t ? new_record(cache) : NULL;
    if (r)
    {
      for (unsigned w= 0; w < length / 8; w++)
      {
        uint64_t word;
        memcpy(&word, bytes + 8 * w, 8);
        atomic_store_explicit(&r->words[w], word, memory_order_relaxed);
      }
      r->length= length;
      size_t i= key_slot_of(tag, t->shift);
      while (atomic_load_explicit(&t->slots[i].tag, memory_order_relaxed))
        i= (i + 1) & t->mask;
      t->slots[i].record= r;
      atomic_store_explicit(&t->slots[i].tag, tag, memory_order_release);
      atomic_fetch_add_explicit(&cache->key_count, 1, memory_order_relaxed);
      result= KEY_CACHE_ADDED;
    }
  }
  pthread_mutex_unlock(&cache->write_lock);
  return result;
}

static struct latest_table *latest_table_with_room(struct key_cache *cache)
{
  struct latest_table *t= atomic_load_explicit(&cache->latest, memory_order_relaxed);
  const unsigned long long count= atomic_load_explicit(&cache->id_count, memory_order_relaxed);
  if ((count + 1) * 4 <= (t->mask + 1) * 3)
    return t;
  struct latest_table *bigger= new_latest_table((t->mask + 1) * 2);
  if (!bigger)
    return NULL;
  for (size_t i= 0; i <= t->mask; i++)
  {
    const uint64_t entry= atomic_load_explicit(&t->slots[i], memory_order_relaxed);
    if (!entry)
      continue;
    size_t j= latest_slot((unsigned) (entry >> 32), bigger->shift);
    while (atomic_load_explicit(&bigger->slots[j], memory_order_relaxed))
      j= (j + 1) & bigger->mask;
    atomic_store_explicit(&bigger->slots[j], entry, memory_order_relaxed);
  }
  bigger->older= t;
  atomic_store_explicit(&cache->latest, bigger, memory_order_release);
  return bigger;
}

enum key_cache_result key_cache_put_latest(struct key_cache *cache, unsigned key_id,
                                           unsigned version)
{
  if (key_id == 0 || version == 0 || version == 0xFFFFFFFFu)
  {
    errno= EINVAL;
    return KEY_CACHE_NO_MEMORY;
  }
  enum key_cache_result result;
  pthread_mutex_lock(&cache->write_lock);
  if (!find_record(cache, tag_of(key_id, version)))
    result= KEY_CACHE_NO_BYTES;
  else
  {
    struct latest_table *t= atomic_load_explicit(&cache->latest, memory_order_relaxed);
    size_t i= latest_slot(key_id, t->shift);
    uint64_t entry;
    while ((entry= atomic_load_explicit(&t->slots[i], memory_order_relaxed)) &&
           (unsigned) (entry >> 32) != key_id)
      i= (i + 1) & t->mask;
    if (entry)
    {
      result= (unsigned) entry == version ? KEY_CACHE_PRESENT
              : (unsigned) entry > version ? KEY_CACHE_CONFLICT : KEY_CACHE_ADDED;
      if (result == KEY_CACHE_ADDED)
        atomic_store_explicit(&t->slots[i], tag_of(key_id, version), memory_order_release);
    }
    else if (!(t= latest_table_with_room(cache)))
      result= KEY_CACHE_NO_MEMORY;
    else
    {
      for (i= latest_slot(key_id, t->shift); atomic_load_explicit(&t->slots[i], memory_order_relaxed);)
        i= (i + 1) & t->mask;
      atomic_store_explicit(&t->slots[i], tag_of(key_id, version), memory_order_release);
      atomic_fetch_add_explicit(&cache->id_count, 1, memory_order_relaxed);
      result= KEY_CACHE_ADDED;
    }
  }
  pthread_mutex_unlock(&cache->write_lock);
  return result;
}

void key_cache_ids_begin(const struct key_cache *cache, struct key_cache_cursor *cursor)
{
  cursor->table= atomic_load_explicit(&cache->latest, memory_order_acquire);
  cursor->next= 0;
}

int key_cache_ids_next(struct key_cache_cursor *cursor, unsigned *key_id)
{
  const struct latest_table *t= cursor->table;
  while (cursor->next <= t->mask)
  {
    const uint64_t entry= atomic_load_explicit(&t->slots[cursor->next++], memory_order_acquire);
    if (entry)
    {
      *key_id= (unsigned) (entry >> 32);
      return 1;
    }
  }
  return 0;
}

unsigned long long key_cache_id_count(const struct key_cache *cache)
{
  return atomic_load_explicit(&cache->id_count, memory_order_relaxed);
}

unsigned long long key_cache_count(const struct key_cache *cache)
{
  return atomic_load_explicit(&cache->key_count, memory_order_relaxed);
}
