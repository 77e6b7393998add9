/* Copyright (c) 2025 keybroker authors. GPL-2.0 (see plugin.c). */
#define _GNU_SOURCE
#include "key_cache_tables.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

struct key_cache *key_cache_open(void)
{
  struct key_cache *cache= calloc(1, sizeof *cache);
  if (!cache)
    return NULL;
  pthread_mutex_init(&cache->write_lock, NULL);
  struct latest_table *latest= new_latest_table(FIRST_LATEST_SLOTS);
  struct key_table *keys= new_key_table(FIRST_KEY_SLOTS);
  atomic_init(&cache->latest, latest ? WORD_OF(latest) : 0);
  atomic_init(&cache->keys, keys ? WORD_OF(keys) : 0);
  /* The first chunk now, so that a refused mlock is reported when the plugin starts. */
  if (!latest || !keys || !add_chunk(cache, FIRST_CHUNK_RECORDS))
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
  UNMAP_TABLES((struct latest_table *) TABLE_OF(atomic_load(&cache->latest)));
  UNMAP_TABLES((struct key_table *) TABLE_OF(atomic_load(&cache->keys)));
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
  const uintptr_t word= atomic_load_explicit(&cache->latest, memory_order_acquire);
  const struct latest_table *t= TABLE_OF(word);
  const size_t mask= ((size_t) 1 << BITS_OF(word)) - 1;
  /* At most 3/4 full: the probe meets an empty slot. */
  for (size_t i= latest_slot(key_id, 64 - BITS_OF(word) + LATEST_GROUP_BITS);; i= (i + 1) & mask)
  {
    const uint64_t entry= atomic_load_explicit(&t->slots[i], memory_order_acquire);
    if (entry == 0)
      return 0;
    if ((unsigned) (entry >> 32) == key_id)
      return (unsigned) entry;
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

void key_cache_ids_begin(const struct key_cache *cache, struct key_cache_cursor *cursor)
{
  cursor->table= TABLE_OF(atomic_load_explicit(&cache->latest, memory_order_acquire));
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
