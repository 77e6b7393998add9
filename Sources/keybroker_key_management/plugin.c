/* Copyright (c) 2025 keybroker authors

   This program is free software; you can redistribute it and/or modify
   it under the terms of the GNU General Public License as published by
   the Free Software Foundation; version 2 of the License.

   This program is distributed in the hope that it will be useful,
   but WITHOUT ANY WARRANTY; without even the implied warranty of
   MERCHANTABILITY or FITNESS FOR A PARTICULAR PURPOSE.  See the
   GNU General Public License for more details.

   You should have received a copy of the GNU General Public License
   along with this program; if not, write to the Free Software
   Foundation, Inc., 51 Franklin St, Fifth Floor, Boston, MA 02110-1335  USA */

/*
  keybroker_key_management: an encryption plugin that takes its keys from keybrokerd.

  The plugin supplies keys only; the server encrypts with its own functions. InnoDB asks for the
  latest key version on every encrypted page write and treats ENCRYPTION_KEY_VERSION_INVALID as
  fatal, so every key seen once is answered from process memory (key_cache.c) without a lock,
  a system call or an allocation. Only a key never seen goes to the broker (broker_client.c),
  and only such a key can fail. A background thread re-asks the latest versions every
  version_ttl and reconnects with backoff; while the broker is away, cached versions stay in use.
*/

#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mysql/plugin_encryption.h>
#include <mysqld_error.h>

#include "broker_client.h"
#include "key_cache.h"

#define PLUGIN_VERSION "1.0"
#define LOG_PREFIX "keybroker_key_management: "

static char *socket_path;
static char *instance;
static unsigned request_timeout;  /* milliseconds */
static unsigned startup_timeout;  /* seconds */
static unsigned version_ttl;      /* milliseconds */
static int rotate_key;

static struct key_cache *cache;
static struct broker_client *broker;
/* Serializes every use of `broker`. A lookup answered from the cache never takes it. */
static pthread_mutex_t broker_lock= PTHREAD_MUTEX_INITIALIZER;
static struct broker_counters counters;
/* Hits are counted on every encrypted page read and write: one shared counter would have every
   core fight over its cache line (measured by make bench: 92% of a lookup's time at 8 threads).
   Each thread adds to one of several padded stripes, picked by hashing its thread pointer
   (pthread_self() reads a register: no system call, no TLS allocation in a dlopen'ed library). */
#define HIT_STRIPES 32
static struct { _Alignas(64) atomic_ullong n; } cache_hits[HIT_STRIPES];
static atomic_ullong cache_misses;

static inline void count_hit(void)
{
  const uint64_t h= (uint64_t) (uintptr_t) pthread_self() * 0x9E3779B97F4A7C15ull;
  atomic_fetch_add_explicit(&cache_hits[h >> 59].n, 1, memory_order_relaxed);
}

static unsigned long long sum_cache_hits(void)
{
  unsigned long long total= 0;
  for (int i= 0; i < HIT_STRIPES; i++)
    total+= atomic_load_explicit(&cache_hits[i].n, memory_order_relaxed);
  return total;
}
static atomic_bool broker_connected;

static pthread_t refresher;
static bool refresher_started;
static pthread_mutex_t refresher_lock= PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t refresher_wake;  /* on CLOCK_MONOTONIC, set up by keybroker_init */
static atomic_bool stopping;
static bool warm_up_pending;      /* under refresher_lock */
static bool broker_state_warned;  /* refresher thread only */

static void update_version_ttl(MYSQL_THD, struct st_mysql_sys_var *, void *, const void *);
static int check_rotate_key(MYSQL_THD, struct st_mysql_sys_var *, void *, struct st_mysql_value *);
static void update_rotate_key(MYSQL_THD, struct st_mysql_sys_var *, void *, const void *);

static MYSQL_SYSVAR_STR(socket, socket_path,
  PLUGIN_VAR_RQCMDARG | PLUGIN_VAR_READONLY,
  "Path of keybrokerd's Unix socket",
  NULL, NULL, "/run/keybroker/keybroker.sock");

static MYSQL_SYSVAR_STR(instance, instance,
  PLUGIN_VAR_RQCMDARG | PLUGIN_VAR_READONLY,
  "Broker instance whose keys this server uses",
  NULL, NULL, "default");

static MYSQL_SYSVAR_UINT(request_timeout, request_timeout,
  PLUGIN_VAR_RQCMDARG,
  "Milliseconds a request for a key not yet cached may wait for the broker",
  NULL, NULL, 10000, 100, 600000, 0);

static MYSQL_SYSVAR_UINT(startup_timeout, startup_timeout,
  PLUGIN_VAR_RQCMDARG | PLUGIN_VAR_READONLY,
  "Seconds plugin initialization waits for the broker to appear",
  NULL, NULL, 30, 0, 3600, 0);

static MYSQL_SYSVAR_UINT(version_ttl, version_ttl,
  PLUGIN_VAR_RQCMDARG,
  "Milliseconds a cached latest key version is trusted before the broker is asked again; "
  "while the broker is unreachable the cached version stays in use",
  NULL, update_version_ttl, 60000, 100, 86400000, 0);

static MYSQL_SYSVAR_INT(rotate_key, rotate_key,
  PLUGIN_VAR_RQCMDARG,
  "Set to a key id to rotate that key through the broker, or to -1 to rotate every key",
  check_rotate_key, update_rotate_key, 0, -1, INT_MAX, 0);

static struct st_mysql_sys_var *settings[]= {
  MYSQL_SYSVAR(socket),
  MYSQL_SYSVAR(instance),
  MYSQL_SYSVAR(request_timeout),
  MYSQL_SYSVAR(startup_timeout),
  MYSQL_SYSVAR(version_ttl),
  MYSQL_SYSVAR(rotate_key),
  NULL
};

/* ---- logging ------------------------------------------------------------------------------ */

/* mariadb-backup loads the plugin too (--backup, --prepare) but drops notes and error-log-only
   messages; there the lines go to stderr, where the DBA running the backup reads them. */
static bool in_server;

/* Formats with the C library (the server's my_snprintf knows fewer conversions). */
static void log_line(int severity, const char *format, ...) __attribute__((format(printf, 2, 3)));

static void log_line(int severity, const char *format, ...)
{
  char line[1024];
  va_list ap;
  va_start(ap, format);
  vsnprintf(line, sizeof line, format, ap);
  va_end(ap);
  if (in_server)
    my_printf_error(ER_UNKNOWN_ERROR, LOG_PREFIX "%s",
                    ME_ERROR_LOG_ONLY | (severity == 0 ? ME_NOTE : severity == 1 ? ME_WARNING : 0),
                    line);
  else
  {
    char stamp[32];
    const time_t now= time(NULL);
    struct tm tm;
    strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", localtime_r(&now, &tm));
    fprintf(stderr, "%s 0 [%s] " LOG_PREFIX "%s\n", stamp,
            severity == 0 ? "Note" : severity == 1 ? "Warning" : "ERROR", line);
  }
}

/* One sentence for a failed broker call: the cause, then a hint. */
static const char *failure_text(char *buf, size_t size, const char *what,
                                const struct broker_error *err)
{
  char cause[320];
  broker_error_text(err, cause, sizeof cause);
  switch (err->failure)
  {
  case BROKER_FAILED_CONNECT:
    if (err->sys_errno == EACCES)
      snprintf(buf, size, "cannot reach key broker at %s: %s — mariadbd's user needs write "
               "access to the socket (SocketGroup= of keybroker.socket)", socket_path,
               strerror(err->sys_errno));
    else
      snprintf(buf, size, "cannot reach key broker at %s: %s — is keybroker.socket active?",
               socket_path, strerror(err->sys_errno));
    break;
  case BROKER_FAILED_TIMEOUT:
    snprintf(buf, size, "key broker at %s did not answer for %s within %u ms — check "
             "keybrokerd, or raise keybroker_key_management_request_timeout", socket_path, what,
             request_timeout);
    break;
  case BROKER_FAILED_IO:
    snprintf(buf, size, "lost connection to key broker at %s while asking for %s: %s",
             socket_path, what, cause);
    break;
  case BROKER_FAILED_PROTOCOL:
    snprintf(buf, size, "key broker at %s sent a %s for %s — are keybrokerd and the plugin "
             "from the same release?", socket_path, cause, what);
    break;
  case BROKER_FAILED_STATUS:
    switch (err->status)
    {
    case BROKER_DENIED:
      snprintf(buf, size, "broker denied instance \"%s\" to uid %u — add the user to clients "
               "(broker: %s)", instance, (unsigned) geteuid(), err->message);
      break;
    case BROKER_NOT_FOUND:
      snprintf(buf, size, "%s does not exist in instance \"%s\" and cannot be created — check "
               "auto_create and the master key of the instance (broker: %s)", what, instance,
               err->message);
      break;
    case BROKER_UNAVAILABLE:
      snprintf(buf, size, "broker could not provide %s within %u ms (broker: %s) — see "
               "keybrokerd's log for the KMS or storage error", what, request_timeout,
               err->message);
      break;
    case BROKER_UNSUPPORTED:
      snprintf(buf, size, "key broker at %s does not support this request (broker: %s) — "
               "upgrade keybrokerd", socket_path, err->message);
      break;
    default:
      snprintf(buf, size, "broker refused %s: %s", what, cause);
    }
    break;
  default:
    snprintf(buf, size, "request for %s failed: %s", what, cause);
  }
  return buf;
}

static void log_failure(const char *what, const struct broker_error *err)
{
  char text[1024];
  log_line(2, "%s", failure_text(text, sizeof text, what, err));
}

/* ---- the cache, filled from the broker ------------------------------------------------------ */

static long long request_deadline(void)
{
  return broker_now_ms() + request_timeout;
}

/* Called with broker_lock held, after the broker call, so no reader waits on it. */
static int publish_key(unsigned key_id, unsigned version, const unsigned char *key,
                       unsigned length)
{
  if (length != 16 && length != 24 && length != 32)
  {
    log_line(2, "broker sent a key of %u bytes for key %u, version %u; AES keys have 16, 24 or "
             "32 bytes — check key_spec of instance \"%s\"", length, key_id, version, instance);
    return -1;
  }
  int added= key_cache_put_key(cache, key_id, version, key, length);
  if (added > 0)
    log_line(0, "loaded key %u, version %u, key length %u bit", key_id, version, length * 8);
  else if (added < 0)
    log_line(1, "key cache is full; key %u, version %u is fetched from the broker on every use",
             key_id, version);
  return 0;
}

static void wake_refresher(void);
static void request_warm_up(void);

/* Called with broker_lock held after every broker call. A connection lost by a lookup wakes the
   refresher, which reconnects with backoff so that the broker's return is noticed. */
static void after_broker_call(void)
{
  const bool up= broker_is_connected(broker);
  if (atomic_exchange_explicit(&broker_connected, up, memory_order_relaxed) && !up)
    wake_refresher();
}

static unsigned copy_key(const unsigned char *key, unsigned length, unsigned char *dst,
                         unsigned *buflen)
{
  if (*buflen < length)
  {
    *buflen= length;
    return ENCRYPTION_KEY_BUFFER_TOO_SMALL;
  }
  *buflen= length;
  if (dst)
    memcpy(dst, key, length);
  return 0;
}

/* A key id never seen: ask the broker, which creates version 1 when the instance allows. */
static unsigned fetch_latest_key_version(unsigned key_id)
{
  unsigned char key[BROKER_MAX_KEY_LENGTH];
  unsigned length= sizeof key, version;
  struct broker_error err;

  pthread_mutex_lock(&broker_lock);
  version= key_cache_latest(cache, key_id);  /* another thread may have fetched it meanwhile */
  if (!version)
  {
    if (broker_latest_key(broker, key_id, request_deadline(), BROKER_RETRY, &version, key,
                          &length, &err))
    {
      char what[32];
      snprintf(what, sizeof what, "key %u", key_id);
      log_failure(what, &err);
      version= ENCRYPTION_KEY_VERSION_INVALID;
    }
    else if (publish_key(key_id, version, key, length))
      version= ENCRYPTION_KEY_VERSION_INVALID;
    else
    {
      key_cache_put_latest(cache, key_id, version);
      if (version > 1)
        request_warm_up();
    }
    explicit_bzero(key, sizeof key);
    after_broker_call();
  }
  pthread_mutex_unlock(&broker_lock);
  return version;
}

static unsigned fetch_key(unsigned key_id, unsigned version, unsigned char *dst,
                          unsigned *buflen)
{
  unsigned char key[BROKER_MAX_KEY_LENGTH];
  unsigned length= sizeof key, result;
  const unsigned char *cached;
  struct broker_error err;

  pthread_mutex_lock(&broker_lock);
  if (key_cache_key(cache, key_id, version, &cached, &length))
    result= copy_key(cached, length, dst, buflen);
  else if (broker_get_key(broker, key_id, version, request_deadline(), BROKER_RETRY, key,
                          &length, &err))
  {
    char what[48];
    snprintf(what, sizeof what, "key %u, version %u", key_id, version);
    log_failure(what, &err);
    result= ENCRYPTION_KEY_VERSION_INVALID;
  }
  else if (publish_key(key_id, version, key, length))
    result= ENCRYPTION_KEY_VERSION_INVALID;
  else
    result= copy_key(key, length, dst, buflen);
  explicit_bzero(key, sizeof key);
  after_broker_call();
  pthread_mutex_unlock(&broker_lock);
  return result;
}

/* ---- the lookups: InnoDB's hot path ----------------------------------------------------------- */

static unsigned get_latest_key_version(unsigned key_id)
{
  unsigned version= key_cache_latest(cache, key_id);
  if (version)
  {
    count_hit();
    return version;
  }
  atomic_fetch_add_explicit(&cache_misses, 1, memory_order_relaxed);
  if (key_id == 0)
    return ENCRYPTION_KEY_VERSION_INVALID;
  return fetch_latest_key_version(key_id);
}

static unsigned get_key(unsigned key_id, unsigned version, unsigned char *dst, unsigned *buflen)
{
  const unsigned char *key;
  unsigned length;
  if (key_cache_key(cache, key_id, version, &key, &length))
  {
    count_hit();
    return copy_key(key, length, dst, buflen);
  }
  atomic_fetch_add_explicit(&cache_misses, 1, memory_order_relaxed);
  if (key_id == 0 || version == 0 || version == ENCRYPTION_KEY_VERSION_INVALID)
    return ENCRYPTION_KEY_VERSION_INVALID;
  return fetch_key(key_id, version, dst, buflen);
}

/* ---- rotation and refresh --------------------------------------------------------------------- */

/* A version becomes InnoDB's latest only once its bytes are in the cache: a latest version whose
   bytes would have to come from the broker on every page write turns a broker outage into
   INVALID for a key already in use, which InnoDB does not survive. */
static bool bytes_cached(unsigned key_id, unsigned version)
{
  const unsigned char *bytes;
  unsigned length;
  return key_cache_key(cache, key_id, version, &bytes, &length);
}

/* The broker made version `version` of key_id: cache its bytes, then let InnoDB see it. */
static int learn_version(unsigned key_id, unsigned version, long long deadline,
                         struct broker_error *err)
{
  unsigned char key[BROKER_MAX_KEY_LENGTH];
  unsigned length= sizeof key;
  int result= -1;
  if (broker_get_key(broker, key_id, version, deadline, BROKER_RETRY, key, &length, err) == 0 &&
      publish_key(key_id, version, key, length) == 0 && bytes_cached(key_id, version))
    result= key_cache_put_latest(cache, key_id, version);
  explicit_bzero(key, sizeof key);
  if (result == 0 && version > 1)
    request_warm_up();
  return result;
}

/* Refuses what the server would otherwise clamp: -2 must not become -1, "rotate every key". */
static int check_rotate_key(MYSQL_THD thd, struct st_mysql_sys_var *var, void *save,
                            struct st_mysql_value *value)
{
  (void) thd; (void) var;
  long long v;
  if (value->val_int(value, &v) || (value->is_unsigned(value) && v < 0) || v < -1 ||
      v > INT_MAX)
    return 1;
  *(int *) save= (int) v;
  return 0;
}

static void update_rotate_key(MYSQL_THD thd, struct st_mysql_sys_var *var, void *var_ptr,
                              const void *save)
{
  (void) thd; (void) var; (void) var_ptr;
  const int requested= *(const int *) save;
  if (requested == 0)
    return;

  enum { MAX_ROTATED= 8191 };  /* what one 64 KiB answer can hold */
  unsigned (*rotated)[2]= malloc(sizeof *rotated * MAX_ROTATED);
  size_t count= 0;
  struct broker_error err;
  char what[48], text[1024];
  if (requested == -1)
    snprintf(what, sizeof what, "the rotation of every key");
  else
    snprintf(what, sizeof what, "the rotation of key %d", requested);

  /* One deadline for the whole statement: the server holds LOCK_global_system_variables while
     this runs, so a broker that goes away must not cost a timeout per key. */
  const long long deadline= request_deadline();
  pthread_mutex_lock(&broker_lock);
  if (!rotated)
    my_printf_error(ER_UNKNOWN_ERROR, LOG_PREFIX "out of memory", ME_WARNING);
  else if (broker_rotate(broker, requested == -1 ? BROKER_ALL_KEYS : (unsigned) requested,
                         deadline, rotated, MAX_ROTATED, &count, &err))
  {
    if (err.failure == BROKER_FAILED_STATUS && err.status == BROKER_NOT_FOUND)
      snprintf(text, sizeof text, "cannot rotate key %d: it does not exist in instance \"%s\" "
               "(broker: %s)", requested, instance, err.message);
    else
      failure_text(text, sizeof text, what, &err);
    my_printf_error(ER_UNKNOWN_ERROR, LOG_PREFIX "%s", ME_WARNING | ME_ERROR_LOG, text);
  }
  else
    for (size_t i= 0; i < count; i++)
    {
      const unsigned key_id= rotated[i][0], version= rotated[i][1];
      log_line(0, "rotated key %u to version %u", key_id, version);
      /* Keys this server never used are learnt when first asked for. */
      if ((key_cache_latest(cache, key_id) || (unsigned) requested == key_id) &&
          learn_version(key_id, version, deadline, &err))
      {
        snprintf(what, sizeof what, "key %u, version %u", key_id, version);
        my_printf_error(ER_UNKNOWN_ERROR, LOG_PREFIX "%s", ME_WARNING | ME_ERROR_LOG,
                        failure_text(text, sizeof text, what, &err));
        /* The broker is gone or the deadline passed: the refresher learns the rest later. */
        if (err.failure != BROKER_FAILED_STATUS)
          break;
      }
    }
  after_broker_call();
  pthread_mutex_unlock(&broker_lock);
  free(rotated);
}

/*
  The broker's answer must agree with what this server already uses: a lower latest version, or
  other bytes for a cached version, means its state was replaced (a restored or lost state_dir,
  another master key) and data written from now on could not be read after a restart. The cache
  keeps serving the keys it has; the DBA is told, once per plugin load.
*/
static void check_broker_state(unsigned key_id, unsigned cached, unsigned version,
                               const unsigned char *key, unsigned length)
{
  const unsigned char *bytes;
  unsigned cached_length;
  if (broker_state_warned)
    return;
  if (version < cached)
    log_line(2, "broker reports version %u as the latest of key %u, but this server already "
             "uses version %u — was the broker's state_dir of instance \"%s\" replaced? Cached "
             "keys stay in use", version, key_id, cached, instance);
  else if (key_cache_key(cache, key_id, version, &bytes, &cached_length) &&
           (cached_length != length || memcmp(bytes, key, length)))
    log_line(2, "broker returned other bytes for key %u, version %u than it did before — was "
             "the master key of instance \"%s\" replaced? Cached keys stay in use", key_id,
             version, instance);
  else
    return;
  broker_state_warned= true;
}

/* Re-asks the latest version of every cached key id. 0 while the broker answers, else -1;
   *learnt tells whether a version was new. */
static int refresh_versions(bool *learnt)
{
  static unsigned ids[1024];  /* only this thread uses it */
  const size_t n= key_cache_key_ids(cache, ids, sizeof ids / sizeof *ids);
  struct broker_error err;
  int result= 0;

  pthread_mutex_lock(&broker_lock);
  if (!broker_is_connected(broker) && broker_connect(broker, request_deadline(), 0, &err))
    result= -1;
  after_broker_call();
  pthread_mutex_unlock(&broker_lock);

  for (size_t i= 0; i < n && result == 0; i++)
  {
    unsigned char key[BROKER_MAX_KEY_LENGTH];
    unsigned length= sizeof key, version;
    pthread_mutex_lock(&broker_lock);  /* per key, so that a lookup miss waits for one at most */
    if (broker_latest_key(broker, ids[i], request_deadline(), 0, &version, key, &length,
                          &err) == 0)
    {
      const unsigned cached= key_cache_latest(cache, ids[i]);
      if (version > cached && publish_key(ids[i], version, key, length) == 0 &&
          bytes_cached(ids[i], version))
      {
        key_cache_put_latest(cache, ids[i], version);
        *learnt= true;
      }
      else if (version <= cached)
        check_broker_state(ids[i], cached, version, key, length);
    }
    else if (err.failure != BROKER_FAILED_STATUS || err.status == BROKER_DENIED)
      result= -1;  /* the connection is gone; cached versions stay in use */
    explicit_bzero(key, sizeof key);
    after_broker_call();
    pthread_mutex_unlock(&broker_lock);
  }
  return result;
}

static void wake_refresher(void)
{
  pthread_mutex_lock(&refresher_lock);
  pthread_cond_signal(&refresher_wake);
  pthread_mutex_unlock(&refresher_lock);
}

/* Every version_ttl while connected; with backoff from 100 ms to 5 s while not. A wake-up
   (new TTL, lost connection) starts a new period. */
/*
  Caches every older version of every key id in use. InnoDB reads a page with the key version it
  was written with, and pages wait for re-encryption long after a rotation; a page whose key
  cannot be had marks its table corrupted until the server restarts. With every version cached
  soon after a key id is first seen, the broker may then be away without harm. 0, or -1 when the
  broker stopped answering.
*/
static int warm_up_older_versions(void)
{
  static unsigned ids[1024];  /* only this thread uses it */
  const size_t n= key_cache_key_ids(cache, ids, sizeof ids / sizeof *ids);
  for (size_t i= 0; i < n; i++)
    for (unsigned version= key_cache_latest(cache, ids[i]); version-- > 1;)
    {
      const unsigned char *cached;
      unsigned char key[BROKER_MAX_KEY_LENGTH];
      unsigned length= sizeof key;
      struct broker_error err;
      int result= 0;
      if (atomic_load(&stopping))
        return 0;
      if (key_cache_key(cache, ids[i], version, &cached, &length))
        continue;
      pthread_mutex_lock(&broker_lock);
      length= sizeof key;
      if (broker_get_key(broker, ids[i], version, request_deadline(), 0, key, &length, &err) == 0)
      {
        unsigned cached_length;
        if (publish_key(ids[i], version, key, length) == 0 &&
            !key_cache_key(cache, ids[i], version, &cached, &cached_length))
          result= -2;  /* the cache is full */
      }
      else if (err.failure != BROKER_FAILED_STATUS)
        result= -1;  /* NOT_FOUND and friends: InnoDB will ask, and hear, if it needs it */
      explicit_bzero(key, sizeof key);
      after_broker_call();
      pthread_mutex_unlock(&broker_lock);
      if (result == -1)
        return -1;
      if (result == -2)
        return 0;  /* the cache is full */
    }
  return 0;
}

static void request_warm_up(void)
{
  pthread_mutex_lock(&refresher_lock);
  warm_up_pending= true;
  pthread_cond_signal(&refresher_wake);
  pthread_mutex_unlock(&refresher_lock);
}

static void *refresher_main(void *arg)
{
  (void) arg;
  long long reconnect_delay= 100;
  pthread_mutex_lock(&refresher_lock);
  while (!atomic_load(&stopping))
  {
    const bool up= atomic_load_explicit(&broker_connected, memory_order_relaxed);
    const long long wait_ms= up ? version_ttl : reconnect_delay;
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec+= wait_ms / 1000;
    until.tv_nsec+= (wait_ms % 1000) * 1000000;
    if (until.tv_nsec >= 1000000000)
    {
      until.tv_sec++;
      until.tv_nsec-= 1000000000;
    }
    /* A warm-up asked for before this thread waited must not wait for the next period. */
    const bool due= !warm_up_pending &&
                    pthread_cond_timedwait(&refresher_wake, &refresher_lock, &until) == ETIMEDOUT;
    bool warm_up= warm_up_pending;
    warm_up_pending= false;
    if (atomic_load(&stopping))
      break;
    if (!due && !warm_up)
      continue;  /* a new TTL, or a lost connection: start a new period */
    pthread_mutex_unlock(&refresher_lock);
    bool ok= !due || refresh_versions(&warm_up) == 0;
    if (ok && warm_up)
      ok= warm_up_older_versions() == 0;
    pthread_mutex_lock(&refresher_lock);
    if (!ok && warm_up)
      warm_up_pending= true;  /* again once the broker answers */
    reconnect_delay= ok ? 100 : (reconnect_delay * 2 > 5000 ? 5000 : reconnect_delay * 2);
  }
  pthread_mutex_unlock(&refresher_lock);
  return NULL;
}

static void update_version_ttl(MYSQL_THD thd, struct st_mysql_sys_var *var, void *var_ptr,
                               const void *save)
{
  (void) thd; (void) var;
  *(unsigned *) var_ptr= *(const unsigned *) save;
  wake_refresher();
}

/* ---- status variables ------------------------------------------------------------------------ */

enum { STATUS_COUNTERS= 6 };

/* Laid out in the server's buffer: the variables, then the values they point to. */
struct status_snapshot
{
  struct st_mysql_show_var vars[STATUS_COUNTERS + 2];
  unsigned long long values[STATUS_COUNTERS];
  bool connected;
};

/* Shown as keybroker_key_management_<name>: the server prefixes the array's own name. */
static int show_status(MYSQL_THD thd, struct st_mysql_show_var *var, void *buff,
                       struct system_status_var *status, enum enum_var_type scope)
{
  (void) thd; (void) status; (void) scope;
  _Static_assert(sizeof(struct status_snapshot) <= SHOW_VAR_FUNC_BUFF_SIZE, "status buffer");
  static const char *names[STATUS_COUNTERS]= {
    "cache_hits", "cache_misses", "broker_requests", "broker_errors", "reconnects", "keys_cached"
  };
  struct status_snapshot *s= buff;
  const unsigned long long connects= atomic_load(&counters.connects);
  s->values[0]= sum_cache_hits();
  s->values[1]= atomic_load(&cache_misses);
  s->values[2]= atomic_load(&counters.requests);
  s->values[3]= atomic_load(&counters.errors);
  s->values[4]= connects > 1 ? connects - 1 : 0;  /* every HELLO after the first */
  s->values[5]= cache ? key_cache_count(cache) : 0;
  s->connected= atomic_load(&broker_connected);
  for (size_t i= 0; i < STATUS_COUNTERS; i++)
    s->vars[i]= (struct st_mysql_show_var) { names[i], &s->values[i], SHOW_ULONGLONG };
  s->vars[STATUS_COUNTERS]= (struct st_mysql_show_var) { "connected", &s->connected, SHOW_BOOL };
  s->vars[STATUS_COUNTERS + 1]= (struct st_mysql_show_var) { NULL, NULL, SHOW_UNDEF };
  var->type= SHOW_ARRAY;
  var->value= s->vars;
  return 0;
}

static struct st_mysql_show_var status_variables[]= {
  { "keybroker_key_management", (void *) &show_status, SHOW_FUNC },
  { NULL, NULL, SHOW_UNDEF }
};

/* ---- the plugin ------------------------------------------------------------------------------- */

struct st_mariadb_encryption keybroker_key_management_plugin= {
  MariaDB_ENCRYPTION_INTERFACE_VERSION,
  get_latest_key_version,
  get_key,
  NULL, NULL, NULL, NULL, NULL  /* the server's own AES functions */
};

static int keybroker_deinit(void *p)
{
  (void) p;
  if (refresher_started)
  {
    pthread_mutex_lock(&refresher_lock);
    atomic_store(&stopping, true);
    pthread_cond_signal(&refresher_wake);
    pthread_mutex_unlock(&refresher_lock);
    pthread_join(refresher, NULL);
    refresher_started= false;
  }
  pthread_cond_destroy(&refresher_wake);
  broker_client_free(broker);
  broker= NULL;
  key_cache_close(cache);  /* zeroes the key bytes */
  cache= NULL;
  atomic_store(&broker_connected, false);
  return 0;
}

static int keybroker_init(void *p)
{
  int mlock_errno;
  char client_name[128];
  struct broker_error err;
  int rc;

  in_server= !strcmp(program_invocation_short_name, "mariadbd") ||
             !strcmp(program_invocation_short_name, "mysqld");
  pthread_condattr_t attr;
  pthread_condattr_init(&attr);
  pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
  pthread_cond_init(&refresher_wake, &attr);
  pthread_condattr_destroy(&attr);
  atomic_store(&stopping, false);
  warm_up_pending= false;
  broker_state_warned= false;
  atomic_store(&counters.connects, 0);
  atomic_store(&counters.requests, 0);
  atomic_store(&counters.errors, 0);
  for (int i= 0; i < HIT_STRIPES; i++)
    atomic_store(&cache_hits[i].n, 0);
  atomic_store(&cache_misses, 0);
  cache= key_cache_open(&mlock_errno);
  if (!cache)
  {
    log_line(2, "cannot map memory for the key cache: %s", strerror(errno));
    goto fail;
  }
  if (mlock_errno)
    log_line(1, "cannot lock the key cache in memory: %s — keys could reach swap; raise "
             "LimitMEMLOCK= of mariadb.service", strerror(mlock_errno));

  if (!socket_path || !*socket_path || !instance || !*instance)
  {
    log_line(2, "keybroker_key_management_socket and keybroker_key_management_instance must "
             "not be empty");
    goto fail;
  }
  snprintf(client_name, sizeof client_name, "keybroker_key_management/" PLUGIN_VERSION
           " (mariadbd pid %ld)", (long) getpid());
  broker= broker_client_new(socket_path, instance, client_name, &counters, log_line);
  if (!broker)
  {
    log_line(2, "cannot allocate the broker client: %s", strerror(errno));
    goto fail;
  }

  /* mariadbd may start before keybrokerd: wait for it, but not forever. */
  pthread_mutex_lock(&broker_lock);
  rc= broker_connect(broker, request_deadline(), 0, &err);
  if (rc && startup_timeout > 0 && broker_error_is_transient(&err))
  {
    char cause[320];
    log_line(0, "key broker at %s is not available yet (%s); waiting up to %u s",
             socket_path, broker_error_text(&err, cause, sizeof cause), startup_timeout);
    rc= broker_connect(broker, broker_now_ms() + startup_timeout * 1000LL, BROKER_RETRY, &err);
  }
  after_broker_call();
  pthread_mutex_unlock(&broker_lock);
  if (rc)
  {
    log_failure("the connection", &err);
    goto fail;
  }

  if ((rc= pthread_create(&refresher, NULL, refresher_main, NULL)))
  {
    log_line(2, "cannot start the key refresh thread: %s", strerror(rc));
    goto fail;
  }
  refresher_started= true;
  return 0;

fail:
  keybroker_deinit(p);
  return 1;
}

maria_declare_plugin(keybroker_key_management)
{
  MariaDB_ENCRYPTION_PLUGIN,
  &keybroker_key_management_plugin,
  "keybroker_key_management",
  "keybroker authors",
  "Encryption keys from keybrokerd (AWS KMS or local master key) over a Unix socket",
  PLUGIN_LICENSE_GPL,
  keybroker_init,
  keybroker_deinit,
  0x0100 /* 1.0 */,
  status_variables,
  settings,
  PLUGIN_VERSION,
  MariaDB_PLUGIN_MATURITY_STABLE
}
maria_declare_plugin_end;
