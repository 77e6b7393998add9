/* Copyright (c) 2025 keybroker authors. GPL-2.0 (see plugin.c). */
#ifndef KEYBROKER_BROKER_LINK_H
#define KEYBROKER_BROKER_LINK_H

/*
  The plugin's way to the broker, shared by every thread: two connections (lanes), so that the
  background refresh never holds up a lookup, each used by one thread at a time; and one view of
  the broker's health.

  - A caller waits for a lane at most until its own deadline (lock wait included).
  - While the broker is known to be away, a call fails at once with the last error (err->fast)
    until the next reconnect attempt is due; attempts back off from 100 ms to 5 s, jittered.
    One line says the broker went away, one that it is back.
  - A connection the broker closed while idle is replaced at once, quietly. Idempotent requests
    are retried after UNAVAILABLE until the deadline; ROTATE is sent at most once.
  - link_cancel makes every wait return (poll on an eventfd), so that unloading is bounded.
*/

#include <stdbool.h>

#include "broker_client.h"

enum broker_lane
{
  LANE_LOOKUPS,     /* misses and rotations: a server thread waits */
  LANE_BACKGROUND,  /* the refresher */
  LANES
};

extern struct broker_stats broker_stats;

/* -1 with errno (ENAMETOOLONG for a path or name that does not fit: never truncated).
   on_outage is called (with no lock held) when the broker is found away. */
int link_open(const char *socket_path, const char *instance, const char *client_name,
              void (*on_outage)(void));

/* Connects the lookup lane; when the broker is not there yet, says so and retries until the
   deadline. 0 or -1. */
int link_start(long long deadline, struct broker_error *err);

/* INFO, sent once (LOCKED is the caller's to wait for). 0 or -1. */
int link_info(enum broker_lane lane, long long deadline, struct broker_info *info,
              struct broker_error *err);

/* Sleeps until deadline unless the plugin is unloading: 0, or -1 when cancelled. */
int link_sleep_until(long long deadline);

/* The broker's name from the lane's last HELLO ("" before one); only by the lane's one user
   (init for the lookups lane, at start; the refresher for the background lane). */
const char *link_server_name(enum broker_lane lane);

/* Before other threads use the link: from now on a connection to a broker that serves another
   key set in INFO is refused (BROKER_FAILED_KEY_SET), so the broker counts as away and cached keys stay
   in use. */
void link_expect_key_set(const char *key_set);

/* Every wait returns, every later call fails at once. */
void link_cancel(void);

/* After link_cancel: waits until deadline for calls to leave, then frees the connections.
   -1 when a call is still inside (its memory is then kept). */
int link_close(long long deadline);

int link_latest(enum broker_lane lane, unsigned key_id, long long deadline, unsigned *version,
                unsigned char *key, unsigned *key_length, struct broker_error *err);
int link_get(enum broker_lane lane, unsigned key_id, unsigned version, long long deadline,
             unsigned char *key, unsigned *key_length, struct broker_error *err);
int link_rotate(unsigned key_id, long long deadline, struct broker_rotation *rotation,
                struct broker_error *err);

/* The background lane connects if it is not connected (an attempt counts against the backoff). */
int link_reconnect(long long deadline, struct broker_error *err);

/* 0 while the broker is believed up; else the monotonic ms when the next attempt is due. */
long long link_next_attempt(void);

bool link_connected(void);
bool link_cancelled(void);

#endif
