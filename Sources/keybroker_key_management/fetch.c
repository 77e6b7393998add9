/* Copyright (c) 2025 keybroker authors. GPL-2.0 (see plugin.c). */
#define _GNU_SOURCE
#include "fetch.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mysql/plugin_encryption.h>

#include "broker_link.h"
#include "messages.h"
#include "refresher.h"

struct key_cache *cache;
atomic_ullong answers_refused;

/* One request to the broker that several missing threads wait for. */
struct flight
{
  struct flight *next;
  unsigned key_id, version;  /* version 0: the latest */
  int refs;
  bool done;
  int rc;
  struct broker_error err;
};

static pthread_mutex_t flights_lock= PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t flight_landed;  /* on CLOCK_MONOTONIC */
static struct flight *flights;
static atomic_int misses_inside;
static atomic_bool stopping;
static atomic_bool warned_lower, warned_changed, warned_memory, warned_invalid;
static atomic_llong last_fast_line;
static atomic_ullong fast_unlogged;

void fetch_start(void)
{
  broker_cond_init(&flight_landed);
  atomic_store(&stopping, false);
  atomic_store(&warned_lower, false);
  atomic_store(&warned_changed, false);
  atomic_store(&warned_memory, false);
  atomic_store(&warned_invalid, false);
  atomic_store(&answers_refused, 0);
}

void fetch_stop(void)
{
  atomic_store(&stopping, true);
  pthread_mutex_lock(&flights_lock);
  pthread_cond_broadcast(&flight_landed);
  pthread_mutex_unlock(&flights_lock);
}

int fetch_wait_idle(long long deadline)
{
  while (atomic_load(&misses_inside) > 0)
  {
    if (broker_now_ms() >= deadline)
      return -1;
    const struct timespec ms= { 0, 1000000 };
    nanosleep(&ms, NULL);
  }
  return 0;
}

/* ---- every answer on its way in ----------------------------------------------------------- */

static void refused(atomic_bool *warned, const char *format, ...)
  __attribute__((format(printf, 2, 3)));

/* One line per kind and plugin load: a broker whose state was replaced would otherwise write
   one per key and refresh. The status variable answers_refused counts them all. */
static void refused(atomic_bool *warned, const char *format, ...)
{
  atomic_fetch_add(&answers_refused, 1);
  if (atomic_exchange(warned, true))
    return;
  char text[768];
  va_list ap;
  va_start(ap, format);
  vsnprintf(text, sizeof text, format, ap);
  va_end(ap);
  log_line(SEVERITY_ERROR, "%s (further answers like it are refused without a line; see "
           "Keybroker_key_management_answers_refused)", text);
}

int accept_key(unsigned key_id, unsigned version, const unsigned char *key, unsigned length)
{
  switch (key_cache_put_key(cache, key_id, version, key, length))
  {
  case KEY_CACHE_ADDED:
    log_line(SEVERITY_NOTE, "loaded key %u, version %u, key length %u bit", key_id, version,
             length * 8);
    return 0;
  case KEY_CACHE_PRESENT:
    return 0;
  case KEY_CACHE_CONFLICT:
    refused(&warned_changed, "key broker at %s returned other bytes for key %u, version %u "
            "than it did before — was the master key of instance \"%s\" replaced? The cached "
            "bytes stay in use", config.socket_path, key_id, version, config.instance);
    return -1;
  default:
    if (!atomic_exchange(&warned_memory, true))
      log_line(SEVERITY_ERROR, "cannot grow the key cache for key %u, version %u: %s — the "
               "lookup fails; keys already cached stay in use", key_id, version,
               strerror(errno));
    return -1;
  }
}

int accept_latest(unsigned key_id, unsigned version, const unsigned char *key, unsigned length)
{
  const unsigned cached= key_cache_latest(cache, key_id);
  if (version < cached)
  {
    refused(&warned_lower, "key broker at %s reports version %u as the latest of key %u, but "
            "this server already uses version %u — was the broker's state_dir of instance "
            "\"%s\" replaced? Cached keys stay in use", config.socket_path, version, key_id,
            cached, config.instance);
    return -1;
  }
  if (accept_key(key_id, version, key, length))
    return -1;
  switch (key_cache_put_latest(cache, key_id, version))
  {
  case KEY_CACHE_ADDED:
    if (version > 1)
      refresher_want_warm_up();  /* older versions are still on disk */
    return 1;
  case KEY_CACHE_PRESENT:
  case KEY_CACHE_CONFLICT:  /* raised meanwhile by another thread */
    return 0;
  default:
    if (!atomic_exchange(&warned_memory, true))
      log_line(SEVERITY_ERROR, "cannot grow the key cache for key %u: %s — the lookup fails; "
               "keys already cached stay in use", key_id, strerror(errno));
    return -1;
  }
}

/* ---- misses ------------------------------------------------------------------------------- */

void report_refused(const char *what, const struct broker_error *err)
{
  char text[320];
  refused(&warned_invalid, "key broker at %s sent an %s for %s; refused — cached keys stay in "
          "use", config.socket_path, broker_error_text(err, text, sizeof text), what);
}

static int refuse_answer(struct broker_error *err, const char *what)
{
  return broker_fail(err, BROKER_FAILED_INVALID, 0, "%s", what);
}

static int ask_latest(unsigned key_id, unsigned version, long long deadline,
                      struct broker_error *err)
{
  unsigned char key[BROKER_MAX_KEY_LENGTH];
  unsigned length= sizeof key, answered;
  (void) version;
  int rc= link_latest(LANE_LOOKUPS, key_id, deadline, &answered, key, &length, err);
  if (rc == 0 && accept_latest(key_id, answered, key, length) < 0)
    rc= refuse_answer(err, "an answer that contradicts the cache");
  explicit_bzero(key, sizeof key);
  return rc;
}

static int ask_key(unsigned key_id, unsigned version, long long deadline,
                   struct broker_error *err)
{
  unsigned char key[BROKER_MAX_KEY_LENGTH];
  unsigned length= sizeof key;
  int rc= link_get(LANE_LOOKUPS, key_id, version, deadline, key, &length, err);
  if (rc == 0 && accept_key(key_id, version, key, length))
    rc= refuse_answer(err, "an answer that contradicts the cache");
  explicit_bzero(key, sizeof key);
  return rc;
}

typedef int (*ask_func)(unsigned, unsigned, long long, struct broker_error *);

/* Asks once for every thread that misses (key_id, version) meanwhile. *leader tells whether
   this thread asked, and so reports the failure. */
static int ask_shared(unsigned key_id, unsigned version, long long deadline, ask_func ask,
                      struct broker_error *err, bool *leader)
{
  pthread_mutex_lock(&flights_lock);
  struct flight *f;
  for (f= flights; f && (f->key_id != key_id || f->version != version); f= f->next) {}
  *leader= !f;
  if (f)
  {
    const struct timespec until= { deadline / 1000, (deadline % 1000) * 1000000 };
    f->refs++;
    while (!f->done && !atomic_load(&stopping) &&
           pthread_cond_timedwait(&flight_landed, &flights_lock, &until) != ETIMEDOUT) {}
    int rc= -1;
    if (f->done)
    {
      rc= f->rc;
      *err= f->err;
    }
    else if (atomic_load(&stopping))
      broker_fail(err, BROKER_FAILED_CANCELLED, 0, NULL);
    else
      broker_fail(err, BROKER_FAILED_TIMEOUT, 0, "another lookup's request for it");
    if (--f->refs == 0)
      free(f);
    pthread_mutex_unlock(&flights_lock);
    return rc;
  }
  f= calloc(1, sizeof *f);
  if (f)
  {
    *f= (struct flight) { flights, key_id, version, 1, false, 0, { 0 } };
    flights= f;
  }
  pthread_mutex_unlock(&flights_lock);

  const int rc= ask(key_id, version, deadline, err);
  if (!f)
    return rc;  /* no memory to share the request: asked alone */
  pthread_mutex_lock(&flights_lock);
  f->done= true;
  f->rc= rc;
  f->err= *err;
  for (struct flight **p= &flights; *p; p= &(*p)->next)
    if (*p == f)
    {
      *p= f->next;
      break;
    }
  pthread_cond_broadcast(&flight_landed);
  if (--f->refs == 0)
    free(f);
  pthread_mutex_unlock(&flights_lock);
  return rc;
}

/* A failure that did not even reach the broker (it is away) is logged at most once a second. */
static void report_miss(const char *what, const struct broker_error *err)
{
  if (err->fast)
  {
    const long long now= broker_now_ms(), last= atomic_load(&last_fast_line);
    if (now - last < 1000 || !atomic_compare_exchange_strong(&last_fast_line, &(long long){ last }, now))
    {
      atomic_fetch_add(&fast_unlogged, 1);
      return;
    }
    const unsigned long long more= atomic_exchange(&fast_unlogged, 0);
    if (more)
    {
      char text[1024];
      log_line(SEVERITY_ERROR, "%s; %llu more lookups failed the same way since the last line",
               failure_text(text, sizeof text, what, err), more);
      return;
    }
  }
  log_failure(what, err);
}

/* Counts the thread in, so that unloading waits for it; refuses once unloading started. */
static bool enter(void)
{
  atomic_fetch_add(&misses_inside, 1);
  if (!atomic_load(&stopping))
    return true;
  atomic_fetch_sub(&misses_inside, 1);
  return false;
}

unsigned fetch_latest_key_version(unsigned key_id)
{
  if (!enter())
    return ENCRYPTION_KEY_VERSION_INVALID;
  const long long deadline= broker_now_ms() + request_timeout_ms();
  struct broker_error err;
  bool leader;
  unsigned version= key_cache_latest(cache, key_id);  /* fetched meanwhile? */
  if (!version && ask_shared(key_id, 0, deadline, ask_latest, &err, &leader) == 0)
    version= key_cache_latest(cache, key_id);
  else if (!version && leader)
  {
    char what[32];
    snprintf(what, sizeof what, "key %u", key_id);
    report_miss(what, &err);
  }
  atomic_fetch_sub(&misses_inside, 1);
  return version ? version : ENCRYPTION_KEY_VERSION_INVALID;
}

unsigned fetch_key(unsigned key_id, unsigned version, unsigned char *dst, unsigned *buflen)
{
  if (!enter())
    return ENCRYPTION_KEY_VERSION_INVALID;
  const long long deadline= broker_now_ms() + request_timeout_ms();
  struct broker_error err;
  bool leader;
  unsigned result= ENCRYPTION_KEY_VERSION_INVALID;
  int copied= key_cache_get(cache, key_id, version, dst, buflen);
  if (copied < 0 && ask_shared(key_id, version, deadline, ask_key, &err, &leader) == 0)
    copied= key_cache_get(cache, key_id, version, dst, buflen);
  else if (copied < 0 && leader)
  {
    char what[48];
    snprintf(what, sizeof what, "key %u, version %u", key_id, version);
    report_miss(what, &err);
  }
  if (copied >= 0)
    result= copied ? ENCRYPTION_KEY_BUFFER_TOO_SMALL : 0;
  atomic_fetch_sub(&misses_inside, 1);
  return result;
}
