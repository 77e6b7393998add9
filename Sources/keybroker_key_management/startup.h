/* Copyright (c) 2025 keybroker authors. GPL-2.0 (see plugin.c). */
#ifndef KEYBROKER_STARTUP_H
#define KEYBROKER_STARTUP_H

/*
  Plugin start, within one deadline (startup_timeout from the call): wait for the broker to
  accept HELLO (mariadbd may start before keybrokerd), then ask what the instance is (INFO). An
  instance that waits for `keybrokerctl unlock` (two-factor start) answers LOCKED: the plugin
  says so once, keeps asking until it is unlocked or the deadline passes, and says when it is
  unlocked. What INFO told is kept for the status variables.
*/

#include <stddef.h>

#include "broker_client.h"

/* What SHOW STATUS shows of the broker and the instance; "" for what was not told. */
struct plugin_description
{
  char broker_version[256];  /* the broker's name from HELLO, e.g. "keybrokerd 0.1.0" */
  char provider[320];        /* "aws alias/mariadb-encryption eu-west-1" */
  char master_key[128];      /* "alias/mariadb-encryption" */
  char key_set[BROKER_MAX_KEY_SET + 1];  /* the instance's key-set identity (key_set.c) */
};

/* 0 when the plugin may serve keys; -1 after an error line. */
int startup_connect(unsigned startup_timeout_s);

/* A copy of the description (taken under a lock: SHOW STATUS may run while it changes). */
void startup_description(struct plugin_description *out);

/* After each refresh of the latest versions (every version_ttl, and at once after an outage):
   asks INFO again on the background lane, since a reload or a restart of the broker may have
   changed the instance, and keeps the answer; keeps the old description when there is none
   (LOCKED, an error). Not asked of a broker that did not answer INFO at start. Refresher only. */
void startup_describe_again(long long deadline);

/* Forgets the description (plugin unload). */
void startup_forget(void);

#endif
