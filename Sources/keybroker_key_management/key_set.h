/* Copyright (c) 2025 keybroker authors. GPL-2.0 (see plugin.c). */
#ifndef KEYBROKER_KEY_SET_H
#define KEYBROKER_KEY_SET_H

/*
  The wrong-key-set guard. Every broker instance's store has an identity (its key set); the
  datadir records the one its data was encrypted with, in `keybroker_key_set` (mariadbd runs in
  its datadir). On the first start the broker's identity is recorded; on every later start a
  different one stops the plugin with one error line naming both, instead of letting the broker
  create new keys for data encrypted with old ones (a lost state_dir, a restore on a host whose
  broker has another store, a wrong instance). `adopt` (keybroker_key_management_adopt_key_set)
  names a new identity that is accepted on purpose, once recorded. Runs at init only: it reads
  and writes files, which the cached path never does.
*/

/* 0 when the plugin may start with the key set `served` (INFO's key_set; "" when the broker did
   not name one); -1 after one error line. */
int key_set_guard(const char *served, const char *adopt);

/* The datadir file, relative to mariadbd's working directory. */
#define KEY_SET_RECORD "keybroker_key_set"

#endif
