/* Copyright (c) 2025 keybroker authors. GPL-2.0 (see plugin.c). */
#ifndef KEYBROKER_KEY_CACHE_TABLES_H
#define KEYBROKER_KEY_CACHE_TABLES_H

/* The key cache's memory layout, private to key_cache.c (readers, life cycle) and
   key_cache_write.c (writers, growth). See key_cache.h for the design. */

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "key_cache.h"

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
  /* The tables, each published as one word: its address (page-aligned) | log2 of its slots, so
     that a lookup needs one load to find the table and its size. */
  _Atomic uintptr_t latest, keys;
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

#define TABLE_OF(word) ((void *) ((word) & ~(uintptr_t) 4095))
#define BITS_OF(word) ((unsigned) ((word) & 4095))
#define WORD_OF(table) ((uintptr_t) (table) | log2_of((table)->mask + 1))

static inline const struct key_record *find_record(const struct key_cache *cache, uint64_t tag)
{
  const uintptr_t word= atomic_load_explicit(&cache->keys, memory_order_acquire);
  const struct key_table *t= TABLE_OF(word);
  const size_t mask= ((size_t) 1 << BITS_OF(word)) - 1;
  for (size_t i= key_slot_of(tag, 64 - BITS_OF(word) + KEY_GROUP_BITS);; i= (i + 1) & mask)
  {
    const uint64_t found= atomic_load_explicit(&t->slots[i].tag, memory_order_acquire);
    if (found == tag)
      return t->slots[i].record;
    if (found == 0)
      return NULL;
  }
}

/* New zeroed tables, and record chunks that are mlock'ed and left out of core dumps. NULL when
   memory cannot be had (errno set). */
struct latest_table *new_latest_table(size_t slots);
struct key_table *new_key_table(size_t slots);
struct record_chunk *add_chunk(struct key_cache *cache, size_t capacity);

#endif
