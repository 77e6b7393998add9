/* Copyright (c) 2025 keybroker authors. GPL-2.0 (see plugin.c). */
#define _GNU_SOURCE
#include "refresher.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "broker_link.h"
#include "fetch.h"
#include "messages.h"
#include "startup.h"

#define RETRY_FIRST_MS 100
#define RETRY_MAX_MS 5000

static pthread_t thread;
static bool started;
static pthread_mutex_t lock= PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake;   /* on CLOCK_MONOTONIC */
static bool stopping, warm_up_pending, refresh_pending, new_period, ended;  /* under lock */

enum pass_result { PASS_DONE, PASS_BROKER_UNWELL, PASS_STOPPED };

static long long deadline_from_now(void)
{
  return broker_now_ms() + request_timeout_ms();
}

static bool should_stop(void)
{
  pthread_mutex_lock(&lock);
  const bool stop= stopping;
  pthread_mutex_unlock(&lock);
  return stop;
}

/* A failure that ends a pass: the broker is away, refuses us, or its KMS is failing. */
static bool unwell(const struct broker_error *err)
{
  return err->failure != BROKER_FAILED_STATUS || err->status == BROKER_UNAVAILABLE ||
         err->status == BROKER_DENIED;
}

/* Re-asks the latest version of every cached key id. */
static enum pass_result refresh_versions(void)
{
  struct key_cache_cursor cursor;
  unsigned key_id;
  key_cache_ids_begin(cache, &cursor);
  while (key_cache_ids_next(&cursor, &key_id))
  {
    unsigned char key[BROKER_MAX_KEY_LENGTH];
    unsigned length= sizeof key, version;
    struct broker_error err;
    if (should_stop())
      return PASS_STOPPED;
    const int rc= link_latest(LANE_BACKGROUND, key_id, deadline_from_now(), &version, key,
                              &length, &err);
    if (rc == 0)
      (void) accept_latest(key_id, version, key, length);
    explicit_bzero(key, sizeof key);
    if (rc && err.failure == BROKER_FAILED_INVALID)
    {
      char what[32];
      snprintf(what, sizeof what, "key %u", key_id);
      report_refused(what, &err);
    }
    else if (rc && unwell(&err))
      return err.failure == BROKER_FAILED_CANCELLED ? PASS_STOPPED : PASS_BROKER_UNWELL;
  }
  return PASS_DONE;
}

/* Caches the older versions of every key id, newest first, down to the first the broker does
   not have. */
static enum pass_result warm_up_older_versions(void)
{
  struct key_cache_cursor cursor;
  unsigned key_id;
  key_cache_ids_begin(cache, &cursor);
  while (key_cache_ids_next(&cursor, &key_id))
    for (unsigned version= key_cache_latest(cache, key_id); version-- > 1;)
    {
      unsigned char key[BROKER_MAX_KEY_LENGTH];
      unsigned length= sizeof key;
      struct broker_error err;
      if (key_cache_length(cache, key_id, version))
        continue;
      if (should_stop())
        return PASS_STOPPED;
      const int rc= link_get(LANE_BACKGROUND, key_id, version, deadline_from_now(), key,
                             &length, &err);
      const int cached= rc == 0 ? accept_key(key_id, version, key, length) : -1;
      explicit_bzero(key, sizeof key);
      if (rc && err.failure == BROKER_FAILED_CANCELLED)
        return PASS_STOPPED;
      if (rc && err.failure == BROKER_FAILED_INVALID)
      {
        char what[48];
        snprintf(what, sizeof what, "key %u, version %u", key_id, version);
        report_refused(what, &err);
      }
      else if (rc && unwell(&err))
        return PASS_BROKER_UNWELL;
      if (cached)
        break;  /* NOT_FOUND (InnoDB will ask, and hear, if it needs it), or refused */
    }
  return PASS_DONE;
}

static struct timespec timespec_of(long long ms)
{
  return (struct timespec) { ms / 1000, (ms % 1000) * 1000000 };
}

static void *refresher_main(void *arg)
{
  (void) arg;
  long long next_refresh= broker_now_ms() + atomic_load(&config.version_ttl_ms);
  long long retry_at= 0, retry_ms= RETRY_FIRST_MS;
  pthread_mutex_lock(&lock);
  while (!stopping)
  {
    const long long now= broker_now_ms(), reconnect_at= link_next_attempt();
    if (new_period)
    {
      next_refresh= now + atomic_load(&config.version_ttl_ms);
      new_period= false;
    }
    if (refresh_pending)
      next_refresh= now;
    long long due= reconnect_at ? reconnect_at
                   : warm_up_pending ? now : next_refresh;
    if (!reconnect_at && retry_at > due)
      due= retry_at;  /* the broker answered UNAVAILABLE lately: back off */
    if (due > now)
    {
      const struct timespec until= timespec_of(due);
      pthread_cond_timedwait(&wake, &lock, &until);
      continue;  /* whatever woke us, look again */
    }
    const bool refresh= !reconnect_at && now >= next_refresh;
    const bool warm_up= !reconnect_at && !refresh && warm_up_pending;
    if (refresh)
      refresh_pending= false;
    if (warm_up)
      warm_up_pending= false;
    pthread_mutex_unlock(&lock);

    enum pass_result result= PASS_DONE;
    struct broker_error err;
    if (reconnect_at)
    {
      if (link_reconnect(deadline_from_now(), &err) == 0)
        next_refresh= 0;  /* rotations may have happened while the broker was away */
      else if (err.failure == BROKER_FAILED_CANCELLED)
        result= PASS_STOPPED;
    }
    else if (refresh)
    {
      result= refresh_versions();
      if (result == PASS_DONE)  /* a reload or a restart may have changed the instance */
        startup_describe_again(deadline_from_now());
      next_refresh= broker_now_ms() + atomic_load(&config.version_ttl_ms);
    }
    else if (warm_up)
      result= warm_up_older_versions();

    pthread_mutex_lock(&lock);
    if (result == PASS_BROKER_UNWELL)
    {
      if (warm_up)
        warm_up_pending= true;
      if (refresh)
        next_refresh= broker_now_ms();  /* again after the backoff */
      retry_at= broker_now_ms() + retry_ms;
      retry_ms= retry_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : retry_ms * 2;
    }
    else if (result == PASS_DONE && !reconnect_at)
    {
      retry_at= 0;
      retry_ms= RETRY_FIRST_MS;
    }
  }
  ended= true;
  pthread_cond_broadcast(&wake);
  pthread_mutex_unlock(&lock);
  return NULL;
}

int refresher_start(void)
{
  broker_cond_init(&wake);
  stopping= warm_up_pending= refresh_pending= new_period= ended= false;
  const int rc= pthread_create(&thread, NULL, refresher_main, NULL);
  started= rc == 0;
  return rc;
}

static void poke(bool *flag)
{
  pthread_mutex_lock(&lock);
  *flag= true;
  pthread_cond_signal(&wake);
  pthread_mutex_unlock(&lock);
}

void refresher_wake(void)
{
  poke(&new_period);
}

void refresher_want_warm_up(void)
{
  poke(&warm_up_pending);
}

void refresher_want_refresh(void)
{
  poke(&refresh_pending);
}

int refresher_stop(long long deadline)
{
  int rc= 0;
  if (started)
  {
    poke(&stopping);
    /* A join bounded by the deadline (pthread_clockjoin_np would do, but ThreadSanitizer
       cannot see it): the thread says when it has ended. */
    const struct timespec until= timespec_of(deadline);
    pthread_mutex_lock(&lock);
    while (!ended && pthread_cond_timedwait(&wake, &lock, &until) != ETIMEDOUT) {}
    const bool joinable= ended;
    pthread_mutex_unlock(&lock);
    if (joinable)
      pthread_join(thread, NULL);
    else
    {
      pthread_detach(thread);
      started= false;
      return -1;  /* it still uses `wake` */
    }
    started= false;
  }
  pthread_cond_destroy(&wake);
  return rc;
}
