/* Copyright (c) 2025 keybroker authors. GPL-2.0 (see plugin.c). */
#define _GNU_SOURCE
#include "rotation.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker_link.h"
#include "fetch.h"
#include "messages.h"
#include "refresher.h"

#define MAX_ROTATED 8192  /* more than one 64 KiB answer can hold */
#define FAILED_LINES 10   /* per statement; the statement's warning gives the total */

/* Bytes first, then the latest version: InnoDB never sees a version whose bytes are missing. */
static int learn_version(unsigned key_id, unsigned version, long long deadline,
                         struct broker_error *err)
{
  unsigned char key[BROKER_MAX_KEY_LENGTH];
  unsigned length= sizeof key;
  int rc= link_get(LANE_LOOKUPS, key_id, version, deadline, key, &length, err);
  if (rc == 0 && accept_latest(key_id, version, key, length) < 0)
    rc= broker_fail(err, BROKER_FAILED_INVALID, 0, "a version that contradicts the cache");
  explicit_bzero(key, sizeof key);
  return rc;
}

static void report_failure(int requested, const char *what, const struct broker_error *err)
{
  char text[1024], cause[320];
  if (err->sent && (err->failure != BROKER_FAILED_STATUS || err->status == BROKER_UNAVAILABLE))
  {
    statement_warning("unknown outcome of %s: the request reached the broker, but %s — check "
                      "`keybrokerctl status` before trying again", what,
                      broker_error_text(err, cause, sizeof cause));
    refresher_want_refresh();  /* whatever happened, the refresher learns it */
  }
  else if (err->failure == BROKER_FAILED_STATUS && err->status == BROKER_NOT_FOUND &&
           requested != -1)
    statement_warning("cannot rotate key %d: it does not exist in instance \"%s\" (broker: %s)",
                      requested, config.instance, err->message);
  else
    statement_warning("%s", failure_text(text, sizeof text, what, err));
}

void rotate_keys(int requested)
{
  const long long deadline= broker_now_ms() + request_timeout_ms();
  struct broker_rotation rotation= { .keys= calloc(MAX_ROTATED, sizeof *rotation.keys),
                                     .capacity= MAX_ROTATED };
  struct broker_error err;
  char what[48];
  if (requested == -1)
    snprintf(what, sizeof what, "the rotation of every key");
  else
    snprintf(what, sizeof what, "the rotation of key %d", requested);
  if (!rotation.keys)
  {
    statement_warning("cannot start %s: out of memory", what);
    return;
  }
  if (link_rotate(requested == -1 ? BROKER_ALL_KEYS : (unsigned) requested, deadline, &rotation,
                  &err))
  {
    report_failure(requested, what, &err);
    free(rotation.keys);
    return;
  }
  size_t rotated= 0, failed= 0, unlearnt= 0;
  const size_t n= rotation.count < rotation.capacity ? rotation.count : rotation.capacity;
  for (size_t i= 0; i < n; i++)
  {
    const struct broker_rotated *k= &rotation.keys[i];
    if (k->status != BROKER_OK)
    {
      if (failed++ < FAILED_LINES)
        log_line(SEVERITY_WARNING, "key %u was not rotated: %s", k->key_id,
                 broker_status_name(k->status));
      continue;
    }
    rotated++;
    log_line(SEVERITY_NOTE, "rotated key %u to version %u", k->key_id, k->version);
    /* Keys this server never used are learnt when first asked for. */
    if (!key_cache_latest(cache, k->key_id) && (unsigned) requested != k->key_id)
      continue;
    if (broker_now_ms() >= deadline || unlearnt)
      unlearnt++;  /* out of time, or the broker stopped answering: the refresher goes on */
    else if (learn_version(k->key_id, k->version, deadline, &err))
    {
      char version[48], text[1024];
      snprintf(version, sizeof version, "key %u, version %u", k->key_id, k->version);
      log_line(SEVERITY_WARNING, "%s; the refresher learns it later",
               failure_text(text, sizeof text, version, &err));
      unlearnt++;
    }
  }
  if (unlearnt)
    refresher_want_refresh();
  if (rotation.partial || failed)
    statement_warning("rotated %zu keys; %zu could not be rotated (broker: %s) — the error log "
                      "names them", rotated, failed, rotation.message);
  free(rotation.keys);
}
