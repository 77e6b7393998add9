/* Copyright (c) 2025 keybroker authors. GPL-2.0 (see plugin.c). */
#ifndef KEYBROKER_KEY_CACHE_H
#define KEYBROKER_KEY_CACHE_H

/*
  The plugin's key cache: what InnoDB reads on every encrypted page write.

  Two fixed open-addressing tables in one anonymous mapping that is mlock'ed and excluded from
  core dumps:
    latest  key id -> latest version      (a slot is one 64-bit word: id << 32 | version)
    keys    (id, version) -> key bytes    (a slot is published by storing its tag last)

  Readers take no lock, make no system call and allocate nothing: they probe with acquire loads.
  Writers (the broker side of the plugin) serialize on a mutex that is never held across a broker
  round trip. Entries are never removed while the plugin is loaded: key bytes for (id, version)
  never change, and a latest version only grows.
*/

#include <stddef.h>

#define KEY_CACHE_MAX_KEY_LENGTH 32  /* AES-256; the server's MY_AES_MAX_KEY_LENGTH */

struct key_cache;

/* Maps and locks the tables. *mlock_errno is 0, or the errno of a failed mlock (the cache
   still works; the plugin logs a warning). Returns NULL when the mapping fails (errno set). */
struct key_cache *key_cache_open(int *mlock_errno);

/* Zeroes every key byte and unmaps. No reader may be running. */
void key_cache_close(struct key_cache *cache);

/* Latest cached version of key_id, or 0 when key_id was never seen. Lock-free. */
unsigned key_cache_latest(const struct key_cache *cache, unsigned key_id);

/* Cached key bytes for (key_id, version): 1 with *bytes and *length set, or 0. Lock-free.
   The bytes stay valid until key_cache_close. */
int key_cache_key(const struct key_cache *cache, unsigned key_id, unsigned version,
                  const unsigned char **bytes, unsigned *length);

/* Publishes key bytes. 1 when added, 0 when already present, -1 when the table is full
   or length is out of range. */
int key_cache_put_key(struct key_cache *cache, unsigned key_id, unsigned version,
                      const unsigned char *bytes, unsigned length);

/* Raises key_id's latest version to version (never lowers it). 0, or -1 when full. */
int key_cache_put_latest(struct key_cache *cache, unsigned key_id, unsigned version);

/* Copies up to max key ids that have a latest version; returns how many. */
size_t key_cache_key_ids(const struct key_cache *cache, unsigned *ids, size_t max);

/* Number of (id, version) entries holding key bytes. */
unsigned long long key_cache_count(const struct key_cache *cache);

#endif
