/* Copyright (c) 2025 keybroker authors. GPL-2.0 (see plugin.c). */
#ifndef KEYBROKER_ROTATION_H
#define KEYBROKER_ROTATION_H

/*
  SET GLOBAL keybroker_key_management_rotate_key = N | -1. The server holds its variables lock
  while this runs, so the whole statement has one deadline, request_timeout from its start.
  ROTATE is sent once: an answer lost after sending, or UNAVAILABLE, is an unknown outcome and
  said so. New versions are learnt (bytes first, then the latest version) until the deadline;
  the refresher learns the rest.
*/

void rotate_keys(int requested);

#endif
