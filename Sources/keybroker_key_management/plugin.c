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
  a system call or an allocation. Only a key never seen goes to the broker (fetch.c, over
  broker_link.c and broker_client.c), and only such a key can fail. A background thread
  (refresher.c) re-asks the latest versions every version_ttl, caches older versions and
  reconnects with backoff; while the broker is away, cached versions stay in use. Every line the
  plugin writes is in messages.c.
*/

#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/rseq.h>

#include <mysql/plugin_encryption.h>

#include "broker_link.h"
#include "fetch.h"
#include "key_cache.h"
#include "key_set.h"
#include "messages.h"
#include "refresher.h"
#include "rotation.h"
#include "startup.h"

#define PLUGIN_VERSION "1.0"
#define SUN_PATH_MAX 107  /* sizeof sockaddr_un.sun_path, less the terminating NUL */

static char *socket_path;
static char *instance;
static unsigned request_timeout;  /* milliseconds */
static unsigned startup_timeout;  /* seconds */
static unsigned version_ttl;      /* milliseconds */
static int rotate_key;
static char *adopt_key_set;

/* Hits are counted on every encrypted page read and write: one shared counter would have every
   core fight over its cache line (measured by make bench: 92% of a lookup's time at 8 threads).
   Each thread adds to the stripe of the CPU it runs on, read from the rseq area that glibc (2.35
   and later) registers for every thread and the kernel keeps current: one load, no system call
   (sched_getcpu() took 5 ns here, the lookup itself 9). Two threads running at the same moment
   then never share a stripe, which a hash of the thread cannot promise: keybench's 8 threads
   hashed to stripes 27, 16, 27, 17, 26, 16, 5 and 6. Without rseq (glibc.pthread.rseq=0) the
   hash is the fallback. A stripe is 128 bytes, as Intel's adjacent-line prefetcher moves 64-byte
   lines in pairs. */
#define HIT_STRIPES 64
static struct { _Alignas(128) atomic_ullong n; } cache_hits[HIT_STRIPES];
static atomic_ullong cache_misses;

static inline unsigned hit_stripe(void)
{
  if (__rseq_size > 0)
  {
    const struct rseq *area=
        (const struct rseq *) ((const char *) __builtin_thread_pointer() + __rseq_offset);
    return __atomic_load_n(&area->cpu_id, __ATOMIC_RELAXED) % HIT_STRIPES;
  }
  return (unsigned) (((uint64_t) (uintptr_t) pthread_self() * 0x9E3779B97F4A7C15ull) >> 58) % HIT_STRIPES;
}

static inline void count_hit(void)
{
  atomic_fetch_add_explicit(&cache_hits[hit_stripe()].n, 1, memory_order_relaxed);
}

/* ---- system variables ------------------------------------------------------------------------ */

/* The server stores a new value under its own lock; other threads read the copy in `config`. */
static void update_request_timeout(MYSQL_THD thd, struct st_mysql_sys_var *var, void *var_ptr,
                                   const void *save)
{
  (void) thd; (void) var;
  *(unsigned *) var_ptr= *(const unsigned *) save;
  atomic_store(&config.request_timeout_ms, *(const unsigned *) save);
}

static void update_version_ttl(MYSQL_THD thd, struct st_mysql_sys_var *var, void *var_ptr,
                               const void *save)
{
  (void) thd; (void) var;
  *(unsigned *) var_ptr= *(const unsigned *) save;
  atomic_store(&config.version_ttl_ms, *(const unsigned *) save);
  refresher_wake();
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
  (void) thd; (void) var; (void) var_ptr;  /* reads back 0 */
  if (*(const int *) save)
    rotate_keys(*(const int *) save);
}

static MYSQL_SYSVAR_STR(socket, socket_path,
  PLUGIN_VAR_RQCMDARG | PLUGIN_VAR_READONLY,
  "Path of keybrokerd's Unix socket (at most 107 bytes)",
  NULL, NULL, "/run/keybroker/keybroker.sock");

static MYSQL_SYSVAR_STR(instance, instance,
  PLUGIN_VAR_RQCMDARG | PLUGIN_VAR_READONLY,
  "Broker instance whose keys this server uses (at most 255 bytes)",
  NULL, NULL, "default");

static MYSQL_SYSVAR_UINT(request_timeout, request_timeout,
  PLUGIN_VAR_RQCMDARG,
  "Milliseconds a lookup of a key not yet cached, or a rotation, may wait for the broker",
  NULL, update_request_timeout, 10000, 100, 600000, 0);

static MYSQL_SYSVAR_UINT(startup_timeout, startup_timeout,
  PLUGIN_VAR_RQCMDARG | PLUGIN_VAR_READONLY,
  "Seconds plugin initialization waits for the broker to appear and for the instance to be "
  "unlocked (two-factor start, keybrokerctl unlock)",
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

static MYSQL_SYSVAR_STR(adopt_key_set, adopt_key_set,
  PLUGIN_VAR_RQCMDARG | PLUGIN_VAR_READONLY,
  "Key-set identity this datadir adopts when the broker serves it instead of the one recorded in "
  "the datadir (a planned move to another key set); empty: a different key set stops the start",
  NULL, NULL, "");

static struct st_mysql_sys_var *settings[]= {
  MYSQL_SYSVAR(socket),
  MYSQL_SYSVAR(instance),
  MYSQL_SYSVAR(request_timeout),
  MYSQL_SYSVAR(startup_timeout),
  MYSQL_SYSVAR(version_ttl),
  MYSQL_SYSVAR(rotate_key),
  MYSQL_SYSVAR(adopt_key_set),
  NULL
};

/* ---- status variables ------------------------------------------------------------------------ */

enum { STATUS_COUNTERS= 8, STATUS_TEXTS= 5 };

/* Laid out in the server's buffer: the variables, then the values they point to. */
struct status_snapshot
{
  struct st_mysql_show_var vars[STATUS_COUNTERS + 1 + STATUS_TEXTS + 1];
  unsigned long long values[STATUS_COUNTERS];
  struct plugin_description description;
  char instance[BROKER_MAX_NAME + 1];
  bool connected;
};

/* Shown as keybroker_key_management_<name>: the server prefixes the array's own name. */
static int show_status(MYSQL_THD thd, struct st_mysql_show_var *var, void *buff,
                       struct system_status_var *status, enum enum_var_type scope)
{
  (void) thd; (void) status; (void) scope;
  _Static_assert(sizeof(struct status_snapshot) <= SHOW_VAR_FUNC_BUFF_SIZE, "status buffer");
  static const char *names[STATUS_COUNTERS]= {
    "cache_hits", "cache_misses", "broker_requests", "broker_errors", "reconnects",
    "keys_cached", "key_ids_cached", "answers_refused"
  };
  struct status_snapshot *s= buff;
  unsigned long long hits= 0;
  for (int i= 0; i < HIT_STRIPES; i++)
    hits+= atomic_load_explicit(&cache_hits[i].n, memory_order_relaxed);
  s->values[0]= hits;
  s->values[1]= atomic_load(&cache_misses);
  s->values[2]= atomic_load(&broker_stats.requests);
  s->values[3]= atomic_load(&broker_stats.errors);
  s->values[4]= atomic_load(&broker_stats.reconnects);
  s->values[5]= cache ? key_cache_count(cache) : 0;
  s->values[6]= cache ? key_cache_id_count(cache) : 0;
  s->values[7]= atomic_load(&answers_refused);
  s->connected= link_connected();
  startup_description(&s->description);
  snprintf(s->instance, sizeof s->instance, "%s", instance ? instance : "");
  size_t n= 0;
  for (; n < STATUS_COUNTERS; n++)
    s->vars[n]= (struct st_mysql_show_var) { names[n], &s->values[n], SHOW_ULONGLONG };
  s->vars[n++]= (struct st_mysql_show_var) { "connected", &s->connected, SHOW_BOOL };
  s->vars[n++]= (struct st_mysql_show_var) { "broker_version", s->description.broker_version,
                                             SHOW_CHAR };
  s->vars[n++]= (struct st_mysql_show_var) { "instance", s->instance, SHOW_CHAR };
  s->vars[n++]= (struct st_mysql_show_var) { "provider", s->description.provider, SHOW_CHAR };
  s->vars[n++]= (struct st_mysql_show_var) { "master_key", s->description.master_key,
                                             SHOW_CHAR };
  s->vars[n++]= (struct st_mysql_show_var) { "key_set", s->description.key_set, SHOW_CHAR };
  s->vars[n]= (struct st_mysql_show_var) { NULL, NULL, SHOW_UNDEF };
  var->type= SHOW_ARRAY;
  var->value= s->vars;
  return 0;
}

static struct st_mysql_show_var status_variables[]= {
  { "keybroker_key_management", (void *) &show_status, SHOW_FUNC },
  { NULL, NULL, SHOW_UNDEF }
};

/* ---- the lookups: InnoDB's hot path ---------------------------------------------------------- */

static unsigned get_latest_key_version(unsigned key_id)
{
  const unsigned version= key_cache_latest(cache, key_id);
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
  const int copied= key_cache_get(cache, key_id, version, dst, buflen);
  if (copied >= 0)
  {
    count_hit();
    return copied ? ENCRYPTION_KEY_BUFFER_TOO_SMALL : 0;
  }
  atomic_fetch_add_explicit(&cache_misses, 1, memory_order_relaxed);
  if (key_id == 0 || version == 0 || version == ENCRYPTION_KEY_VERSION_INVALID)
    return ENCRYPTION_KEY_VERSION_INVALID;
  return fetch_key(key_id, version, dst, buflen);
}

struct st_mariadb_encryption keybroker_key_management_plugin= {
  MariaDB_ENCRYPTION_INTERFACE_VERSION,
  get_latest_key_version,
  get_key,
  NULL, NULL, NULL, NULL, NULL  /* the server's own AES functions */
};

/* ---- init and deinit ------------------------------------------------------------------------- */

/* Caches of earlier plugin lives: zeroed, kept mapped for lookups that may still be running,
   unmapped when the library is (the current one is left to the process's end). */
static struct retired_cache { struct retired_cache *next; struct key_cache *cache; } *retired;

__attribute__((destructor)) static void free_retired_caches(void)
{
  for (struct retired_cache *r= retired, *next; r; r= next)
  {
    next= r->next;
    if (r->cache != cache)
      key_cache_free(r->cache);
    free(r);
  }
  retired= NULL;
}

/* Bounded: request_timeout + 1 s, even with lookups in flight (they are woken and leave). */
static int keybroker_deinit(void *p)
{
  (void) p;
  const long long deadline= broker_now_ms() + request_timeout_ms() + 1000;
  fetch_stop();
  link_cancel();
  const bool refresher_ended= refresher_stop(deadline) == 0;
  startup_forget();
  const bool idle= fetch_wait_idle(deadline) == 0;
  if (!refresher_ended || !idle || link_close(deadline))
    log_line(SEVERITY_WARNING, "a request to the broker did not end within %u ms of unloading; "
             "its memory is left allocated", request_timeout_ms() + 1000);
  if (cache)
  {
    key_cache_retire(cache);  /* zeroes the key bytes */
    struct retired_cache *r= malloc(sizeof *r);
    if (r)
    {
      *r= (struct retired_cache) { retired, cache };
      retired= r;
    }
  }
  return 0;
}

static int keybroker_init(void *p)
{
  char client_name[128];
  struct plugin_description description;
  int rc;

  messages_init();
  config.socket_path= socket_path;
  config.instance= instance;
  atomic_store(&config.request_timeout_ms, request_timeout);
  atomic_store(&config.version_ttl_ms, version_ttl);
  for (int i= 0; i < HIT_STRIPES; i++)
    atomic_store(&cache_hits[i].n, 0);
  atomic_store(&cache_misses, 0);
  memset(&broker_stats, 0, sizeof broker_stats);
  fetch_start();

  if (!socket_path || !*socket_path || !instance || !*instance)
  {
    log_line(SEVERITY_ERROR, "keybroker_key_management_socket and "
             "keybroker_key_management_instance must not be empty");
    goto fail;
  }
  if (strlen(socket_path) > SUN_PATH_MAX || strlen(instance) > BROKER_MAX_NAME)
  {
    log_line(SEVERITY_ERROR, "keybroker_key_management_%s is %zu bytes long; at most %d fit "
             "(%s) — the plugin does not start rather than use a shortened one",
             strlen(socket_path) > SUN_PATH_MAX ? "socket" : "instance",
             strlen(strlen(socket_path) > SUN_PATH_MAX ? socket_path : instance),
             strlen(socket_path) > SUN_PATH_MAX ? SUN_PATH_MAX : BROKER_MAX_NAME,
             strlen(socket_path) > SUN_PATH_MAX ? "a Unix socket path" : "an instance name");
    goto fail;
  }
  if (!(cache= key_cache_open()))
  {
    log_line(SEVERITY_ERROR, "cannot map memory for the key cache: %s", strerror(errno));
    goto fail;
  }
  if (key_cache_mlock_errno(cache))
    log_line(SEVERITY_WARNING, "cannot lock the key cache in memory: %s — keys could reach "
             "swap; raise LimitMEMLOCK= of mariadb.service", strerror(key_cache_mlock_errno(cache)));

  snprintf(client_name, sizeof client_name, "keybroker_key_management/" PLUGIN_VERSION
           " (mariadbd pid %ld)", (long) getpid());
  if (link_open(socket_path, instance, client_name, refresher_want_refresh))
  {
    log_line(SEVERITY_ERROR, "cannot set up the broker connection: %s", strerror(errno));
    goto fail;
  }
  /* mariadbd may start before keybrokerd, or before its instance is unlocked: wait, but not
     for longer than startup_timeout. */
  if (startup_connect(startup_timeout))
    goto fail;
  startup_description(&description);
  if (key_set_guard(description.key_set, adopt_key_set && *adopt_key_set ? adopt_key_set : NULL))
    goto fail;
  if (description.key_set[0])
    link_expect_key_set(description.key_set);
  if ((rc= refresher_start()))
  {
    log_line(SEVERITY_ERROR, "cannot start the key refresh thread: %s", strerror(rc));
    goto fail;
  }
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
  "Encryption keys from keybrokerd (AWS KMS, KMIP or a local master key) over a Unix socket",
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
