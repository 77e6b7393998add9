/* Copyright (c) 2025 keybroker authors. GPL-2.0 (see plugin.c). */
#ifndef KEYBROKER_BROKER_CLIENT_H
#define KEYBROKER_BROKER_CLIENT_H

/*
  A client for keybroker wire protocol v1 (docs/protocol.md) over one Unix socket.

      frame    = length:u32 payload[length]          1 <= length <= 65536, big-endian
      request  = op:u8 request_id:u32 body
      response = op:u8 request_id:u32 status:u8 body

  Every call takes a deadline (CLOCK_MONOTONIC milliseconds) and never blocks past it: the socket
  is non-blocking and every wait is a poll() bounded by the deadline, which also returns when the
  cancel descriptor becomes readable (the plugin is unloading). A call makes one attempt: retry
  and reconnect policy belong to the caller (broker_link.c). Answers are checked like any outside
  input: a frame that breaks the format drops the connection; a well-formed answer that cannot be
  true (version 0 or 0xFFFFFFFF, a key length that is not AES's, an answer to a request never
  sent) is refused.

  Not thread-safe: one thread at a time per client.
*/

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>

enum broker_status
{
  BROKER_OK= 0, BROKER_NOT_FOUND= 1, BROKER_UNAVAILABLE= 2, BROKER_DENIED= 3,
  BROKER_BAD_REQUEST= 4, BROKER_INTERNAL= 5, BROKER_UNSUPPORTED= 6,
  BROKER_PARTIAL= 7,  /* ROTATE of every key: some were rotated, some not (per-key results) */
  BROKER_REFUSED= 8,  /* the key service refused: service_code and service_key say more */
  BROKER_LOCKED= 9    /* the instance waits for `keybrokerctl unlock` (two-factor start) */
};

enum broker_failure
{
  BROKER_FAILED_CONNECT= 1,  /* socket() or connect() failed; sys_errno says why */
  BROKER_FAILED_IO,          /* send/recv failed (sys_errno) or the broker closed (sys_errno 0) */
  BROKER_FAILED_TIMEOUT,     /* the deadline passed */
  BROKER_FAILED_PROTOCOL,    /* the answer broke the format; message says how */
  BROKER_FAILED_INVALID,     /* a well-formed answer that cannot be true; message says why */
  BROKER_FAILED_STATUS,      /* the broker answered status != OK; message is its sentence */
  BROKER_FAILED_CANCELLED,   /* the plugin is unloading */
  BROKER_FAILED_KEY_SET      /* the broker serves another key set than expected; message names both */
};

struct broker_error
{
  enum broker_failure failure;
  int sys_errno;
  unsigned status;
  int sent;           /* the request went out (a ROTATE that failed after this has an unknown outcome) */
  int fast;           /* not attempted: the broker is known to be away (broker_link.c) */
  char message[256];  /* every text from the broker: cut at a character, control bytes escaped */
  char service_code[64];   /* REFUSED: the key service's error code, e.g. DisabledException */
  char service_key[128];   /* REFUSED: the master key concerned, as the broker names it */
};

#define BROKER_MAX_KEY_SET 64      /* a key-set identity: 1 to 64 of [A-Za-z0-9._-] */

/* Whether s[0..n) is a key-set identity: what INFO may carry and the datadir's record may hold. */
int broker_valid_key_set(const unsigned char *s, size_t n);

/* What the broker says the instance is (INFO); every field cut and escaped, "" when not told. */
struct broker_info
{
  char provider[32];       /* aws, kmip, local */
  char master_key[128];    /* alias/mariadb-encryption, a KMIP identifier, a key file */
  char location[128];      /* the AWS region, the KMIP servers */
  char key_set[BROKER_MAX_KEY_SET + 1];  /* the instance's key-set identity, exact (never cut) */
};

struct broker_stats
{
  atomic_ullong requests;    /* request frames sent, HELLO included */
  atomic_ullong errors;      /* calls that failed: I/O, timeout, bad answer, non-OK status */
  atomic_ullong connects;    /* successful HELLOs */
  atomic_ullong reconnects;  /* HELLOs on a client that had been connected before */
};

#define BROKER_MAX_KEY_LENGTH 32
#define BROKER_ALL_KEYS 0xFFFFFFFFu
#define BROKER_MAX_NAME 255        /* instance and client names: string's u16 length, our limit */

/* One key's result in a ROTATE answer: status BROKER_OK with its new version, or why not. */
struct broker_rotated
{
  unsigned key_id, version, status;
};

struct broker_rotation
{
  struct broker_rotated *keys;  /* capacity entries, given by the caller */
  size_t capacity, count;
  int partial;                  /* PARTIAL: message says what failed */
  char message[256];
};

struct broker_client;

/* NULL with errno: ENAMETOOLONG when socket_path does not fit sun_path or a name is longer than
   BROKER_MAX_NAME bytes (never truncated), ENOMEM. cancel_fd may be -1. */
struct broker_client *broker_client_new(const char *socket_path, const char *instance,
                                        const char *client_name, int cancel_fd,
                                        struct broker_stats *stats);
void broker_client_free(struct broker_client *client);

long long broker_now_ms(void);

/* A condition variable whose timed waits take CLOCK_MONOTONIC deadlines, as every wait here does. */
void broker_cond_init(pthread_cond_t *cond);

/* Sleeps until deadline or until the cancel descriptor is readable: 0, or -1 when cancelled. */
int broker_sleep_until(int cancel_fd, long long deadline);

int broker_is_connected(const struct broker_client *client);
const char *broker_server_name(const struct broker_client *client);
void broker_disconnect(struct broker_client *client);

/* One attempt: socket, connect, HELLO; once a key set is expected, INFO too. 0, or -1 with *err
   filled: BROKER_FAILED_KEY_SET when the broker serves another key set than the expected one. */
int broker_connect(struct broker_client *client, long long deadline, struct broker_error *err);

/* From now on a connection is refused when the broker's INFO names another key set than key_set
   (a broker that names none, older than key sets, is not refused). */
void broker_expect_key_set(struct broker_client *client, const char *key_set);

/* LATEST_KEY on a connected client: *version and the key (key_length in: capacity, out:
   length). 0 or -1. */
int broker_latest_key(struct broker_client *client, unsigned key_id, long long deadline,
                      unsigned *version, unsigned char *key, unsigned *key_length,
                      struct broker_error *err);

/* GET_KEY. 0 or -1. */
int broker_get_key(struct broker_client *client, unsigned key_id, unsigned version,
                   long long deadline, unsigned char *key, unsigned *key_length,
                   struct broker_error *err);

/* ROTATE key_id or BROKER_ALL_KEYS. 0 with *rotation filled (OK or PARTIAL; entries past
   capacity are counted in count but not stored), or -1; err->sent tells whether it went out. */
int broker_rotate(struct broker_client *client, unsigned key_id, long long deadline,
                  struct broker_rotation *rotation, struct broker_error *err);

/* INFO: what the bound instance is. 0, or -1 (status LOCKED while it waits for an unlock,
   UNSUPPORTED from a broker that predates INFO: it closes the connection, so this one does too). */
int broker_info(struct broker_client *client, long long deadline, struct broker_info *info,
                struct broker_error *err);

/* Copies a string field of an answer into buf (size >= 1): cut at size - 1 bytes without
   splitting a UTF-8 character, control bytes and invalid UTF-8 written as \xNN. */
void broker_copy_text(char *buf, size_t size, const unsigned char *text, size_t length);

/* Fills *err (fast cleared, sent kept); always -1. */
int broker_fail(struct broker_error *err, enum broker_failure failure, int sys_errno,
                const char *format, ...) __attribute__((format(printf, 4, 5)));

/* Whether err may go away by itself: the broker is not there yet, restarting, or its KMS failed. */
int broker_error_is_transient(const struct broker_error *err);

/* Whether err means the connection is gone (connect, I/O, timeout, format): the broker is away. */
int broker_error_is_connection(const struct broker_error *err);

/* A readable description of err, e.g. "No such file or directory", "timed out". */
const char *broker_error_text(const struct broker_error *err, char *buf, size_t size);

/* "NOT_FOUND" etc. */
const char *broker_status_name(unsigned status);

#endif
