/* Copyright (c) 2025 keybroker authors. GPL-2.0 (see plugin.c). */
#ifndef KEYBROKER_BROKER_CLIENT_H
#define KEYBROKER_BROKER_CLIENT_H

/*
  A client for keybroker wire protocol v1 (docs/protocol.md) over one Unix socket.

      frame    = length:u32 payload[length]          1 <= length <= 65536, big-endian
      request  = op:u8 request_id:u32 body
      response = op:u8 request_id:u32 status:u8 body

  Every call takes a deadline (CLOCK_MONOTONIC milliseconds) and never blocks past it: the socket
  is non-blocking and every wait is a poll() bounded by the deadline. With BROKER_RETRY a call
  reconnects (saying HELLO again) and retries with backoff until the deadline when the broker is
  away or answers UNAVAILABLE; ROTATE is never re-sent once its frame went out.

  Not thread-safe: the plugin serializes callers with its own mutex.
*/

#include <stdatomic.h>
#include <stddef.h>

enum broker_status
{
  BROKER_OK= 0, BROKER_NOT_FOUND= 1, BROKER_UNAVAILABLE= 2, BROKER_DENIED= 3,
  BROKER_BAD_REQUEST= 4, BROKER_INTERNAL= 5, BROKER_UNSUPPORTED= 6
};

enum broker_failure
{
  BROKER_FAILED_CONNECT= 1,  /* socket() or connect() failed; sys_errno says why */
  BROKER_FAILED_IO,          /* send/recv failed (sys_errno) or the broker closed (sys_errno 0) */
  BROKER_FAILED_TIMEOUT,     /* the deadline passed */
  BROKER_FAILED_PROTOCOL,    /* the answer broke the format; message says how */
  BROKER_FAILED_STATUS       /* the broker answered status != OK; message is its sentence */
};

struct broker_error
{
  enum broker_failure failure;
  int sys_errno;
  unsigned status;
  char message[256];
};

struct broker_counters
{
  atomic_ullong requests;  /* request frames sent, HELLO included */
  atomic_ullong errors;    /* calls that failed: I/O, timeout, bad answer, non-OK status */
  atomic_ullong connects;  /* successful HELLOs */
};

/* severity: 0 note, 1 warning, 2 error. The message has no prefix and no newline. */
typedef void (*broker_log_func)(int severity, const char *format, ...)
  __attribute__((format(printf, 2, 3)));

#define BROKER_RETRY 1
#define BROKER_MAX_KEY_LENGTH 32
#define BROKER_ALL_KEYS 0xFFFFFFFFu

struct broker_client;

struct broker_client *broker_client_new(const char *socket_path, const char *instance,
                                        const char *client_name,
                                        struct broker_counters *counters, broker_log_func log);
void broker_client_free(struct broker_client *client);

long long broker_now_ms(void);

int broker_is_connected(const struct broker_client *client);
const char *broker_server_name(const struct broker_client *client);

/* Connects and says HELLO unless already connected. 0, or -1 with *err filled. */
int broker_connect(struct broker_client *client, long long deadline, int flags,
                   struct broker_error *err);

/* LATEST_KEY: *version and the key (key_length in: capacity, out: length). 0 or -1. */
int broker_latest_key(struct broker_client *client, unsigned key_id, long long deadline,
                      int flags, unsigned *version, unsigned char *key, unsigned *key_length,
                      struct broker_error *err);

/* GET_KEY. 0 or -1. */
int broker_get_key(struct broker_client *client, unsigned key_id, unsigned version,
                   long long deadline, int flags, unsigned char *key, unsigned *key_length,
                   struct broker_error *err);

/* ROTATE key_id or BROKER_ALL_KEYS: up to max (key id, new version) pairs. 0 or -1. */
int broker_rotate(struct broker_client *client, unsigned key_id, long long deadline,
                  unsigned (*rotated)[2], size_t max, size_t *count, struct broker_error *err);

/* Whether err may go away by itself: the broker is not there yet, restarting, or its KMS failed. */
int broker_error_is_transient(const struct broker_error *err);

/* A readable description of err, e.g. "No such file or directory", "timed out". */
const char *broker_error_text(const struct broker_error *err, char *buf, size_t size);

#endif
