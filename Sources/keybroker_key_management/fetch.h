/* Copyright (c) 2025 keybroker authors. GPL-2.0 (see plugin.c). */
#ifndef KEYBROKER_FETCH_H
#define KEYBROKER_FETCH_H

/*
  What the cache does not have yet: lookups that miss, and every answer of the broker on its way
  into the cache.

  A miss waits at most request_timeout from the moment it starts, and threads missing the same
  (id, version) share one request and its result. Every answer is checked before it is cached:
  a latest version lower than the one published, other bytes for a cached (id, version), a
  version whose bytes could not be cached — each is refused with a line naming the broker, and
  never reaches InnoDB.
*/

#include <stdatomic.h>

#include "broker_client.h"
#include "key_cache.h"

extern struct key_cache *cache;
extern atomic_ullong answers_refused;  /* status variable */

void fetch_start(void);

/* New misses fail at once; waiting ones return. */
void fetch_stop(void);

/* After fetch_stop: 0 once no miss is inside, -1 if one still is at deadline. */
int fetch_wait_idle(long long deadline);

/* The lookups' slow paths: the plugin API's return values. */
unsigned fetch_latest_key_version(unsigned key_id);
unsigned fetch_key(unsigned key_id, unsigned version, unsigned char *dst, unsigned *buflen);

/* Caches the broker's bytes for (id, version). 0 when they are cached (new or the same as
   before), -1 when refused or out of memory (logged). */
int accept_key(unsigned key_id, unsigned version, const unsigned char *key, unsigned length);

/* The broker says version is key_id's latest, with these bytes. 1 when InnoDB now sees a newer
   version, 0 when nothing changed, -1 when refused (logged). */
int accept_latest(unsigned key_id, unsigned version, const unsigned char *key, unsigned length);

/* A well-formed but impossible answer met in the background (err: BROKER_FAILED_INVALID). */
void report_refused(const char *what, const struct broker_error *err);

#endif
