/* Copyright (c) 2025 keybroker authors. GPL-2.0 (see plugin.c). */
/* The key cache's writers: they serialize on write_lock, grow a table by publishing one twice its
   size, and never move an entry a reader may be reading. */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "key_cache_tables.h"

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

struct latest_table *new_latest_table(size_t slots)
{
  return new_table(sizeof(struct latest_table), sizeof(uint64_t), slots, LATEST_GROUP_BITS);
}

struct key_table *new_key_table(size_t slots)
{
  return new_table(sizeof(struct key_table), sizeof(struct key_slot), slots, KEY_GROUP_BITS);
}

/* Key bytes must never reach swap or a core file. Under write_lock (or before publishing). */
struct record_chunk *add_chunk(struct key_cache *cache, size_t capacity)
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
  struct key_table *t= TABLE_OF(atomic_load_explicit(&cache->keys, memory_order_relaxed));
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
  atomic_store_explicit(&cache->keys, WORD_OF(bigger), memory_order_release);
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
  struct latest_table *t= TABLE_OF(atomic_load_explicit(&cache->latest, memory_order_relaxed));
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
  atomic_store_explicit(&cache->latest, WORD_OF(bigger), memory_order_release);
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
    struct latest_table *t= TABLE_OF(atomic_load_explicit(&cache->latest, memory_order_relaxed));
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
