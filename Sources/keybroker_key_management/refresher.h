/* Copyright (c) 2025 keybroker authors. GPL-2.0 (see plugin.c). */
#ifndef KEYBROKER_REFRESHER_H
#define KEYBROKER_REFRESHER_H

/*
  The background thread, on its own connection to the broker:
  - every version_ttl it re-asks the latest version of every cached key id (a rotation made
    with keybrokerctl reaches InnoDB this way);
  - after a key with older versions is first seen, it caches those versions too (InnoDB reads
    a page with the version it was written with), walking down from the latest and stopping at
    the first version the broker does not have;
  - while the broker is away it makes the reconnect attempts, on the backoff of broker_link.c.
  A pass stops at the first sign of an unwell broker and is tried again after a backoff; it
  looks at `stopping` between any two requests, and its requests end when the plugin unloads.
*/

int refresher_start(void);  /* 0, or pthread_create's error */

/* version_ttl changed: a new period starts now. */
void refresher_wake(void);

/* Some key has versions older than its latest that are not cached yet. */
void refresher_want_warm_up(void);

/* Versions may have changed behind the cache's back (a rotation with an unknown outcome). */
void refresher_want_refresh(void);

/* Stops and joins the thread by deadline; -1 when it did not end in time (then detached). */
int refresher_stop(long long deadline);

#endif
