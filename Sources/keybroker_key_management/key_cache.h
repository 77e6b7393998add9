/* Copyright (c) 2025 keybroker authors. GPL-2.0 (see plugin.c). */
#ifndef KEYBROKER_KEY_CACHE_H
#define KEYBROKER_KEY_CACHE_H

/*
  The plugin's key cache: what InnoDB reads on every encrypted page write.

    latest  key id -> latest version       open addressing, a slot is one word: id << 32 | version
    keys    (id, version) -> key record    open addressing, a slot is tag + record pointer
    records the key bytes                  chunks that are mlock'ed and left out of core dumps

  Readers take no lock, make no system call and allocate nothing: they load a table pointer and
  probe with acquire loads. Writers serialize on a mutex that is never held across a broker round
  trip. A table that fills to 3/4 is replaced by one twice its size, published with one release
  store; the old table stays mapped (a reader may still be probing it) until the cache is freed.
  Records never move. Nothing is ever removed: key bytes for (id, version) never change, and a
  latest version only grows and is published only once its bytes are in the cache.
*/

#include <stddef.h>

#define KEY_CACHE_MAX_KEY_LENGTH 32  /* AES-256; the server's MY_AES_MAX_KEY_LENGTH */

struct key_cache;

enum key_cache_result
{
  KEY_CACHE_ADDED,     /* the entry is new */
  KEY_CACHE_PRESENT,   /* already there, same bytes (put_key) or same or higher version (put_latest) */
  KEY_CACHE_CONFLICT,  /* put_key: other bytes are cached for (id, version), which are kept;
                          put_latest: a higher version is already published, which is kept */
  KEY_CACHE_NO_BYTES,  /* put_latest: the version's bytes are not cached, so it is not published */
  KEY_CACHE_NO_MEMORY  /* a table or record chunk could not be mapped (errno set); nothing changed */
};

/* A cache with small tables. NULL when memory cannot be had (errno set). */
struct key_cache *key_cache_open(void);

/* errno of the first mlock that failed (the cache still works; keys could reach swap), or 0. */
int key_cache_mlock_errno(const struct key_cache *cache);

/* Zeroes every key byte; from then on key_cache_get answers nothing, even to a reader that was
   half-way through a copy. The memory stays mapped for readers still in flight. */
void key_cache_retire(struct key_cache *cache);

/* Unmaps a retired cache. No reader may be running (the library's destructor calls it). */
void key_cache_free(struct key_cache *cache);

/* Latest cached version of key_id, or 0 when key_id was never seen. Lock-free. */
unsigned key_cache_latest(const struct key_cache *cache, unsigned key_id);

/* The plugin's get_key contract for a cached (id, version): -1 when not cached (or retired);
   else *buflen is set to the key length, and 1 when the buffer is too small, 0 when the bytes
   were copied to dst (or dst is NULL). Lock-free. */
int key_cache_get(const struct key_cache *cache, unsigned key_id, unsigned version,
                  unsigned char *dst, unsigned *buflen);

/* Length of the cached key (id, version), or 0 when it is not cached. */
unsigned key_cache_length(const struct key_cache *cache, unsigned key_id, unsigned version);

/* Publishes key bytes; length must be 16, 24 or 32. ADDED, PRESENT, CONFLICT or NO_MEMORY. */
enum key_cache_result key_cache_put_key(struct key_cache *cache, unsigned key_id,
                                        unsigned version, const unsigned char *bytes,
                                        unsigned length);

/* Raises key_id's latest version to version, never lowers it, and only when the version's
   bytes are cached. ADDED (new id or raised), PRESENT, CONFLICT, NO_BYTES or NO_MEMORY. */
enum key_cache_result key_cache_put_latest(struct key_cache *cache, unsigned key_id,
                                           unsigned version);

/* Walks the key ids that have a latest version, without a lock and without a limit: ids added
   during the walk may be missed, none is repeated. */
struct key_cache_cursor
{
  const void *table;
  size_t next;
};
void key_cache_ids_begin(const struct key_cache *cache, struct key_cache_cursor *cursor);
int key_cache_ids_next(struct key_cache_cursor *cursor, unsigned *key_id);

/* Number of key ids with a latest version, and of (id, version) entries holding key bytes. */
unsigned long long key_cache_id_count(const struct key_cache *cache);
unsigned long long key_cache_count(const struct key_cache *cache);

#endif
