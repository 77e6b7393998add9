/* Copyright (c) 2025 keybroker authors. GPL-2.0 (see plugin.c). */
#define _GNU_SOURCE
#include "broker_link.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "broker_wire.h"
#include "messages.h"

#define BACKOFF_FIRST_MS 100
#define BACKOFF_MAX_MS 5000
#define RETRY_FIRST_MS 50     /* UNAVAILABLE, within one call's deadline */
#define RETRY_MAX_MS 1000

struct broker_stats broker_stats;

static struct
{
  struct lane
  {
    /* A lock that can be waited for until a deadline: busy, under guard, with freed signalled
       (pthread_mutex_clocklock would do, but ThreadSanitizer cannot see it). */
    pthread_mutex_t guard;
    pthread_cond_t freed;   /* on CLOCK_MONOTONIC */
    bool busy;
    struct broker_client *client;
  } lanes[LANES];
  bool opened;
  int cancel_fd;
  atomic_bool cancelled;
  atomic_int calls;             /* callers inside link_* */
  atomic_bool up;

  pthread_mutex_t health_lock;  /* the rest */
  bool down, announced;
  long long down_since, next_attempt, backoff_ms;
  struct broker_error last_error;
  unsigned seed;
  void (*on_outage)(void);
} broker;

/* ---- health ---------------------------------------------------------------------------------- */

/* Half the backoff plus a random part of it, so that many servers do not retry in step. */
static long long jittered(long long ms)
{
  broker.seed= broker.seed * 1103515245u + 12345u;
  return ms / 2 + (long long) ((broker.seed >> 8) % (unsigned) (ms / 2 + 1));
}

/* The broker is away and the next attempt is not due: *err is the last error. A caller that
   finds an attempt due claims it, so that one attempt is made per period. */
static bool known_down(struct broker_error *err)
{
  bool fast= false;
  pthread_mutex_lock(&broker.health_lock);
  if (broker.down)
  {
    const long long now= broker_now_ms();
    if (now < broker.next_attempt)
    {
      *err= broker.last_error;
      err->fast= 1;
      err->sent= 0;
      fast= true;
    }
    else
      broker.next_attempt= now + jittered(broker.backoff_ms);
  }
  pthread_mutex_unlock(&broker.health_lock);
  return fast;
}

static void note_failure(const struct broker_error *err)
{
  char text[320];
  pthread_mutex_lock(&broker.health_lock);
  const long long now= broker_now_ms();
  const bool went_down= !broker.down;
  const bool key_set_news= err->failure == BROKER_FAILED_KEY_SET &&
                           (went_down || broker.last_error.failure != err->failure);
  if (went_down)
  {
    broker.down= true;
    broker.down_since= now;
    broker.backoff_ms= BACKOFF_FIRST_MS;
    atomic_store(&broker.up, false);
    if (!key_set_news)
      log_line(SEVERITY_WARNING, "lost connection to key broker at %s: %s — using cached keys "
               "until it is back", config.socket_path, broker_error_text(err, text, sizeof text));
  }
  if (key_set_news)
    log_line(SEVERITY_ERROR, "key broker at %s is back with another key set (%s) — not used: "
             "cached keys stay in use, new keys fail until it serves this datadir's key set "
             "again", config.socket_path, err->message);
  broker.next_attempt= now + jittered(broker.backoff_ms);
  broker.backoff_ms= broker.backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : broker.backoff_ms * 2;
  broker.last_error= *err;
  pthread_mutex_unlock(&broker.health_lock);
  if (went_down && broker.on_outage)
    broker.on_outage();  /* outside health_lock: the refresher takes its own lock, then this one */
}

static void note_connected(const struct broker_client *client)
{
  pthread_mutex_lock(&broker.health_lock);
  if (broker.down)
    log_line(SEVERITY_NOTE, "reconnected to key broker at %s after %.1f s (instance \"%s\", "
             "server \"%s\")", config.socket_path, (broker_now_ms() - broker.down_since) / 1000.0,
             config.instance, broker_server_name(client));
  else if (!broker.announced)
    log_line(SEVERITY_NOTE, "connected to key broker at %s (instance \"%s\", protocol 1, "
             "server \"%s\")", config.socket_path, config.instance, broker_server_name(client));
  broker.announced= true;
  broker.down= false;
  broker.backoff_ms= BACKOFF_FIRST_MS;
  atomic_store(&broker.up, true);
  pthread_mutex_unlock(&broker.health_lock);
}

/* ---- lanes ----------------------------------------------------------------------------------- */

static int lock_until(struct lane *lane, long long deadline)
{
  const struct timespec until= { deadline / 1000, (deadline % 1000) * 1000000 };
  int rc= 0;
  pthread_mutex_lock(&lane->guard);
  while (lane->busy && rc != ETIMEDOUT)
    rc= pthread_cond_timedwait(&lane->freed, &lane->guard, &until);
  if (!lane->busy)
  {
    lane->busy= true;
    rc= 0;
  }
  pthread_mutex_unlock(&lane->guard);
  return rc;
}

static void unlock(struct lane *lane)
{
  pthread_mutex_lock(&lane->guard);
  lane->busy= false;
  pthread_cond_signal(&lane->freed);
  pthread_mutex_unlock(&lane->guard);
}

static int busy(struct broker_error *err)
{
  return broker_fail(err, BROKER_FAILED_TIMEOUT, 0, "another request held the connection");
}

enum request_kind { REQUEST_NONE, REQUEST_LATEST, REQUEST_GET, REQUEST_ROTATE, REQUEST_INFO };

struct request
{
  enum request_kind kind;
  unsigned key_id, version, *version_out, *key_length;
  unsigned char *key;
  struct broker_rotation *rotation;
  struct broker_info *info;
};

static int send_request(struct broker_client *c, const struct request *r, long long deadline,
                        struct broker_error *err)
{
  switch (r->kind)
  {
  case REQUEST_LATEST:
    return broker_latest_key(c, r->key_id, deadline, r->version_out, r->key, r->key_length, err);
  case REQUEST_GET:
    return broker_get_key(c, r->key_id, r->version, deadline, r->key, r->key_length, err);
  case REQUEST_ROTATE:
    return broker_rotate(c, r->key_id, deadline, r->rotation, err);
  case REQUEST_INFO:
    return broker_info(c, deadline, r->info, err);
  default:
    return 0;
  }
}

static int with_broker(enum broker_lane which, const struct request *r, long long deadline,
                       struct broker_error *err)
{
  struct lane *lane= &broker.lanes[which];
  const bool idempotent= r->kind != REQUEST_ROTATE;
  long long retry_ms= RETRY_FIRST_MS;
  struct broker_error answered;   /* the last UNAVAILABLE or LOCKED, when it was retried */
  bool retried= false;
  int rc= -1;
  atomic_fetch_add(&broker.calls, 1);
  err->sent= 0;
  if (atomic_load(&broker.cancelled))
  {
    broker_fail(err, BROKER_FAILED_CANCELLED, 0, NULL);
    goto out;
  }
  if (known_down(err))
    goto out;
  if (lock_until(lane, deadline))
  {
    busy(err);
    goto out;
  }
  if (r->kind == REQUEST_NONE)
    broker_disconnect(lane->client);  /* a reconnect attempt tests the broker for real */
  for (bool stale_retry= true;;)
  {
    const bool was_connected= broker_is_connected(lane->client);
    if (!was_connected)
    {
      if (broker_connect(lane->client, deadline, err))
      {
        if (err->failure != BROKER_FAILED_CANCELLED)
          note_failure(err);
        break;
      }
      note_connected(lane->client);
    }
    if ((rc= send_request(lane->client, r, deadline, err)) == 0)
    {
      note_connected(lane->client);  /* an answer: the broker is back, if it was away */
      break;
    }
    if (err->failure == BROKER_FAILED_CANCELLED)
      break;
    /* The broker closed the connection while it was idle (idle_timeout_ms, a restart). */
    if (was_connected && stale_retry && err->failure == BROKER_FAILED_IO &&
        (idempotent || !err->sent))
    {
      stale_retry= false;
      continue;
    }
    if (broker_error_is_connection(err))
    {
      broker_disconnect(lane->client);
      note_failure(err);
      /* A retry that ran out of time: the broker's own answer says more than our deadline. */
      if (retried && err->failure == BROKER_FAILED_TIMEOUT)
        *err= answered;
      break;
    }
    /* INFO's caller waits for an unlock itself, saying so; a key request waits here. */
    if (!idempotent || r->kind == REQUEST_INFO || err->failure != BROKER_FAILED_STATUS ||
        (err->status != BROKER_UNAVAILABLE && err->status != BROKER_LOCKED))
      break;
    /* The broker's KMS or storage failed for now, or the instance awaits its unlock: again with
       backoff, the lane free meanwhile. */
    const long long wake= broker_now_ms() + retry_ms;
    retry_ms= retry_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : retry_ms * 2;
    if (wake >= deadline)
      break;
    answered= *err;
    retried= true;
    unlock(lane);
    if (broker_sleep_until(broker.cancel_fd, wake))
    {
      broker_fail(err, BROKER_FAILED_CANCELLED, 0, NULL);
      goto out;
    }
    if (lock_until(lane, deadline))
    {
      *err= answered;  /* the lane stayed busy until the deadline: the last answer stands */
      goto out;
    }
  }
  unlock(lane);
out:
  atomic_fetch_sub(&broker.calls, 1);
  return rc;
}

/* ---- the interface --------------------------------------------------------------------------- */

int link_open(const char *socket_path, const char *instance, const char *client_name,
              void (*on_outage)(void))
{
  memset(&broker, 0, sizeof broker);
  broker.on_outage= on_outage;
  broker.opened= true;
  broker.cancel_fd= eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (broker.cancel_fd < 0)
    return -1;
  broker.seed= (unsigned) getpid() ^ (unsigned) broker_now_ms();
  pthread_mutex_init(&broker.health_lock, NULL);
  for (int i= 0; i < LANES; i++)
  {
    broker_cond_init(&broker.lanes[i].freed);
    pthread_mutex_init(&broker.lanes[i].guard, NULL);
    broker.lanes[i].client= broker_client_new(socket_path, instance, client_name, broker.cancel_fd,
                                            &broker_stats);
    if (!broker.lanes[i].client)
      return -1;  /* link_close frees what was made */
  }
  return 0;
}

int link_start(long long deadline, struct broker_error *err)
{
  struct lane *lane= &broker.lanes[LANE_LOOKUPS];
  long long delay= 50;
  int rc;
  lock_until(lane, LLONG_MAX / 2);
  while ((rc= broker_connect(lane->client, broker_now_ms() + request_timeout_ms(), err)) &&
         broker_error_is_transient(err) && broker_now_ms() < deadline)
  {
    if (delay == 50)
    {
      char cause[320];
      log_line(SEVERITY_NOTE, "key broker at %s is not available yet (%s); waiting up to "
               "%lld s", config.socket_path, broker_error_text(err, cause, sizeof cause),
               (deadline - broker_now_ms() + 999) / 1000);
    }
    const long long wake= broker_now_ms() + delay;
    delay= delay * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : delay * 2;
    if (broker_sleep_until(broker.cancel_fd, wake < deadline ? wake : deadline))
      break;
  }
  if (rc == 0)
    note_connected(lane->client);
  unlock(lane);
  return rc;
}

void link_expect_key_set(const char *key_set)
{
  for (int i= 0; i < LANES; i++)
    broker_expect_key_set(broker.lanes[i].client, key_set);
}

void link_cancel(void)
{
  atomic_store(&broker.cancelled, true);
  if (broker.opened && broker.cancel_fd >= 0)
  {
    const uint64_t one= 1;
    (void) !write(broker.cancel_fd, &one, sizeof one);
  }
}

int link_close(long long deadline)
{
  if (!broker.opened)
    return 0;
  while (atomic_load(&broker.calls) > 0)
  {
    if (broker_now_ms() >= deadline)
      return -1;
    const struct timespec ms= { 0, 1000000 };
    nanosleep(&ms, NULL);
  }
  for (int i= 0; i < LANES; i++)
  {
    broker_client_free(broker.lanes[i].client);
    broker.lanes[i].client= NULL;
    pthread_mutex_destroy(&broker.lanes[i].guard);
    pthread_cond_destroy(&broker.lanes[i].freed);
  }
  pthread_mutex_destroy(&broker.health_lock);
  if (broker.cancel_fd >= 0)
    close(broker.cancel_fd);
  broker.cancel_fd= -1;
  atomic_store(&broker.up, false);
  broker.opened= false;
  return 0;
}

int link_latest(enum broker_lane lane, unsigned key_id, long long deadline, unsigned *version,
                unsigned char *key, unsigned *key_length, struct broker_error *err)
{
  const struct request r= { .kind= REQUEST_LATEST, .key_id= key_id, .version_out= version,
                            .key= key, .key_length= key_length };
  return with_broker(lane, &r, deadline, err);
}

int link_get(enum broker_lane lane, unsigned key_id, unsigned version, long long deadline,
             unsigned char *key, unsigned *key_length, struct broker_error *err)
{
  const struct request r= { .kind= REQUEST_GET, .key_id= key_id, .version= version, .key= key,
                            .key_length= key_length };
  return with_broker(lane, &r, deadline, err);
}

int link_rotate(unsigned key_id, long long deadline, struct broker_rotation *rotation,
                struct broker_error *err)
{
  const struct request r= { .kind= REQUEST_ROTATE, .key_id= key_id, .rotation= rotation };
  return with_broker(LANE_LOOKUPS, &r, deadline, err);
}

int link_info(enum broker_lane lane, long long deadline, struct broker_info *info,
              struct broker_error *err)
{
  const struct request r= { .kind= REQUEST_INFO, .info= info };
  return with_broker(lane, &r, deadline, err);
}

int link_sleep_until(long long deadline)
{
  return broker_sleep_until(broker.cancel_fd, deadline);
}

const char *link_server_name(enum broker_lane lane)
{
  return broker_server_name(broker.lanes[lane].client);
}

int link_reconnect(long long deadline, struct broker_error *err)
{
  const struct request r= { .kind= REQUEST_NONE };
  return with_broker(LANE_BACKGROUND, &r, deadline, err);
}

long long link_next_attempt(void)
{
  pthread_mutex_lock(&broker.health_lock);
  const long long next= broker.down ? broker.next_attempt : 0;
  pthread_mutex_unlock(&broker.health_lock);
  return next;
}

bool link_connected(void)
{
  return atomic_load(&broker.up);
}

bool link_cancelled(void)
{
  return atomic_load(&broker.cancelled);
}
