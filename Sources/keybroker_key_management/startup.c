/* Copyright (c) 2025 keybroker authors. GPL-2.0 (see plugin.c). */
#define _GNU_SOURCE
#include "startup.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "broker_link.h"
#include "messages.h"

#define POLL_FIRST_MS 100
#define POLL_MAX_MS 1000

static pthread_mutex_t lock= PTHREAD_MUTEX_INITIALIZER;
static struct plugin_description description;  /* under lock */
static atomic_bool broker_has_info;             /* INFO answered at start: worth asking again */

static void describe(enum broker_lane lane, const struct broker_info *info)
{
  struct plugin_description d;
  memset(&d, 0, sizeof d);
  snprintf(d.broker_version, sizeof d.broker_version, "%s", link_server_name(lane));
  if (info)
  {
    snprintf(d.provider, sizeof d.provider, "%s%s%s%s%s", info->provider,
             info->master_key[0] ? " " : "", info->master_key, info->location[0] ? " " : "",
             info->location);
    snprintf(d.master_key, sizeof d.master_key, "%s", info->master_key);
    snprintf(d.key_set, sizeof d.key_set, "%s", info->key_set);
  }
  pthread_mutex_lock(&lock);
  description= d;
  pthread_mutex_unlock(&lock);
}

void startup_description(struct plugin_description *out)
{
  pthread_mutex_lock(&lock);
  *out= description;
  pthread_mutex_unlock(&lock);
}

void startup_forget(void)
{
  pthread_mutex_lock(&lock);
  memset(&description, 0, sizeof description);
  pthread_mutex_unlock(&lock);
}

static bool is_status(const struct broker_error *err, unsigned status)
{
  return err->failure == BROKER_FAILED_STATUS && err->status == status;
}

int startup_connect(unsigned startup_timeout_s)
{
  const long long start= broker_now_ms(), deadline= start + startup_timeout_s * 1000LL;
  struct broker_error err;
  struct broker_info info;
  bool waiting= false;
  atomic_store(&broker_has_info, false);
  if (link_start(deadline, &err))
  {
    log_failure("the connection", &err);
    return -1;
  }
  for (long long delay= POLL_FIRST_MS;; delay= delay * 2 > POLL_MAX_MS ? POLL_MAX_MS : delay * 2)
  {
    const long long now= broker_now_ms();
    const long long attempt= now + request_timeout_ms();
    if (link_info(LANE_LOOKUPS, waiting && attempt > deadline ? deadline : attempt, &info,
                  &err) == 0)
    {
      if (waiting)
        log_line(SEVERITY_NOTE, "instance \"%s\" was unlocked on the broker after %.1f s; "
                 "starting", config.instance, (broker_now_ms() - start) / 1000.0);
      describe(LANE_LOOKUPS, &info);
      atomic_store(&broker_has_info, true);
      return 0;
    }
    if (is_status(&err, BROKER_UNSUPPORTED))
    {
      describe(LANE_LOOKUPS, NULL);  /* a broker from before INFO: nothing to wait for, less to show */
      return 0;
    }
    if (is_status(&err, BROKER_LOCKED))
    {
      if (!waiting)
        log_line(SEVERITY_NOTE, "instance \"%s\" is locked (two-factor start): waiting for "
                 "`keybrokerctl unlock` on the broker, up to %lld s", config.instance,
                 (deadline - now + 999) / 1000 > 0 ? (deadline - now + 999) / 1000 : 0);
      waiting= true;
    }
    else if (!waiting || !broker_error_is_transient(&err))
    {
      /* Not a reason to refuse to start: keys are asked for on their own. */
      char text[320];
      log_line(SEVERITY_WARNING, "cannot ask the broker about instance \"%s\" (%s); the status "
               "variables stay empty", config.instance, broker_error_text(&err, text, sizeof text));
      describe(LANE_LOOKUPS, NULL);
      return 0;
    }
    if (broker_now_ms() >= deadline)
    {
      log_line(SEVERITY_ERROR, "instance \"%s\" is still locked on the broker after %u s: "
               "nobody ran `keybrokerctl unlock` (two-factor start) — run keybrokerctl unlock "
               "--instance %s --token-code NNNNNN on the broker's host and start mariadbd "
               "again, or raise keybroker_key_management_startup_timeout", config.instance,
               startup_timeout_s, config.instance);
      return -1;
    }
    const long long wake= broker_now_ms() + delay;
    if (link_sleep_until(wake < deadline ? wake : deadline))
      return -1;
  }
}

void startup_describe_again(long long deadline)
{
  struct broker_info info;
  struct broker_error err;
  if (!atomic_load(&broker_has_info))
    return;  /* a broker without INFO would close the connection every time */
  if (link_info(LANE_BACKGROUND, deadline, &info, &err) == 0)
    describe(LANE_BACKGROUND, &info);
  else if (is_status(&err, BROKER_UNSUPPORTED))
    atomic_store(&broker_has_info, false);  /* replaced by an older broker */
}
