/* Copyright (c) 2025 keybroker authors. GPL-2.0 (see plugin.c). */
#define _GNU_SOURCE
#include "broker_client.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

enum { OP_HELLO= 1, OP_LATEST_KEY= 2, OP_GET_KEY= 3, OP_ROTATE= 4 };

#define PROTOCOL_VERSION 1
#define MAX_FRAME 65536
#define RESPONSE_HEADER 6       /* op, request_id, status */
#define BACKOFF_FIRST_MS 50
#define BACKOFF_MAX_MS 1000

struct broker_client
{
  char socket_path[sizeof(((struct sockaddr_un *) 0)->sun_path)];
  char instance[256];
  char client_name[256];
  char server_name[256];
  int fd;                       /* -1 when not connected (a connection is usable after HELLO) */
  uint32_t next_request_id;
  long long lost_at;            /* when an established connection broke; 0 while fine */
  struct broker_counters *counters;
  broker_log_func log;
  unsigned char *frame;         /* one response frame; locked, it carries key bytes */
};

/* ---- time and waiting --------------------------------------------------------------------- */

long long broker_now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long long ms)
{
  struct timespec ts= { ms / 1000, (ms % 1000) * 1000000 };
  while (nanosleep(&ts, &ts) && errno == EINTR) {}
}

/* 0 when fd is ready for events, -1 with errno ETIMEDOUT (or poll's) otherwise. */
static int wait_fd(int fd, short events, long long deadline)
{
  for (;;)
  {
    long long left= deadline - broker_now_ms();
    if (left <= 0)
    {
      errno= ETIMEDOUT;
      return -1;
    }
    struct pollfd p= { fd, events, 0 };
    int n= poll(&p, 1, left > 60000 ? 60000 : (int) left);
    if (n > 0)
      return 0;  /* readable, writable, or an error/hangup that the next call reports */
    if (n < 0 && errno != EINTR)
      return -1;
  }
}

/* ---- errors ------------------------------------------------------------------------------- */

static int fail(struct broker_error *err, enum broker_failure failure, int sys_errno,
                const char *format, ...) __attribute__((format(printf, 4, 5)));

static int fail(struct broker_error *err, enum broker_failure failure, int sys_errno,
                const char *format, ...)
{
  err->failure= failure;
  err->sys_errno= sys_errno;
  err->status= 0;
  err->message[0]= 0;
  if (format)
  {
    va_list ap;
    va_start(ap, format);
    vsnprintf(err->message, sizeof err->message, format, ap);
    va_end(ap);
  }
  return -1;
}

const char *broker_error_text(const struct broker_error *err, char *buf, size_t size)
{
  switch (err->failure)
  {
  case BROKER_FAILED_CONNECT:
    snprintf(buf, size, "%s", strerror(err->sys_errno));
    break;
  case BROKER_FAILED_IO:
    snprintf(buf, size, "%s",
             err->sys_errno ? strerror(err->sys_errno) : "connection closed by the broker");
    break;
  case BROKER_FAILED_TIMEOUT:
    snprintf(buf, size, "no answer before the timeout");
    break;
  case BROKER_FAILED_PROTOCOL:
    snprintf(buf, size, "malformed answer: %s", err->message);
    break;
  case BROKER_FAILED_STATUS:
  {
    static const char *names[]= { "OK", "NOT_FOUND", "UNAVAILABLE", "DENIED", "BAD_REQUEST",
                                  "INTERNAL", "UNSUPPORTED" };
    const char *name= err->status < sizeof names / sizeof *names ? names[err->status] : "?";
    snprintf(buf, size, "%s: %s", name, err->message[0] ? err->message : "(no message)");
    break;
  }
  default:
    snprintf(buf, size, "unknown failure");
  }
  return buf;
}

/* ---- byte order --------------------------------------------------------------------------- */

static inline void put16(unsigned char *p, unsigned v) { p[0]= v >> 8; p[1]= v; }
static inline void put32(unsigned char *p, uint32_t v)
{
  p[0]= v >> 24; p[1]= v >> 16; p[2]= v >> 8; p[3]= v;
}
static inline unsigned get16(const unsigned char *p) { return (unsigned) p[0] << 8 | p[1]; }
static inline uint32_t get32(const unsigned char *p)
{
  return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | p[3];
}

static size_t put_string(unsigned char *p, const char *s)
{
  size_t n= strlen(s);
  put16(p, (unsigned) n);
  memcpy(p + 2, s, n);
  return 2 + n;
}

/* ---- the connection ------------------------------------------------------------------------ */

struct broker_client *broker_client_new(const char *socket_path, const char *instance,
                                        const char *client_name,
                                        struct broker_counters *counters, broker_log_func log)
{
  struct broker_client *client= calloc(1, sizeof *client);
  if (!client)
    return NULL;
  snprintf(client->socket_path, sizeof client->socket_path, "%s", socket_path);
  snprintf(client->instance, sizeof client->instance, "%s", instance);
  snprintf(client->client_name, sizeof client->client_name, "%s", client_name);
  client->fd= -1;
  client->next_request_id= 1;
  client->counters= counters;
  client->log= log;
  client->frame= mmap(NULL, MAX_FRAME, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                      -1, 0);
  if (client->frame == MAP_FAILED)
  {
    free(client);
    return NULL;
  }
  (void) mlock(client->frame, MAX_FRAME);  /* the key cache reports mlock trouble */
  (void) madvise(client->frame, MAX_FRAME, MADV_DONTDUMP);
  return client;
}

static void close_fd(struct broker_client *client)
{
  if (client->fd >= 0)
    close(client->fd);
  client->fd= -1;
}

void broker_client_free(struct broker_client *client)
{
  if (!client)
    return;
  close_fd(client);
  explicit_bzero(client->frame, MAX_FRAME);
  munlock(client->frame, MAX_FRAME);
  munmap(client->frame, MAX_FRAME);
  free(client);
}

int broker_is_connected(const struct broker_client *client)
{
  return client->fd >= 0;
}

const char *broker_server_name(const struct broker_client *client)
{
  return client->server_name;
}

/* An established connection failed: drop it, and say so once per outage. */
static void drop_connection(struct broker_client *client, const struct broker_error *err)
{
  close_fd(client);
  if (!client->lost_at)
  {
    char text[320];
    client->lost_at= broker_now_ms();
    client->log(1, "lost connection to key broker at %s: %s — using cached keys until it is "
                "back", client->socket_path, broker_error_text(err, text, sizeof text));
  }
}

static int send_all(int fd, const unsigned char *data, size_t length, long long deadline,
                    struct broker_error *err)
{
  while (length)
  {
    ssize_t n= send(fd, data, length, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0)
    {
      data+= n;
      length-= (size_t) n;
    }
    else if (n < 0 && (errno == EAGAIN || errno == EINTR))
    {
      if (wait_fd(fd, POLLOUT, deadline))
        return errno == ETIMEDOUT ? fail(err, BROKER_FAILED_TIMEOUT, 0, NULL)
                                  : fail(err, BROKER_FAILED_IO, errno, NULL);
    }
    else
      return fail(err, BROKER_FAILED_IO, n < 0 ? errno : 0, NULL);
  }
  return 0;
}

static int recv_exact(int fd, unsigned char *data, size_t length, long long deadline,
                      struct broker_error *err)
{
  while (length)
  {
    ssize_t n= recv(fd, data, length, MSG_DONTWAIT);
    if (n > 0)
    {
      data+= n;
      length-= (size_t) n;
    }
    else if (n == 0)
      return fail(err, BROKER_FAILED_IO, 0, NULL);
    else if (errno == EAGAIN || errno == EINTR)
    {
      if (wait_fd(fd, POLLIN, deadline))
        return errno == ETIMEDOUT ? fail(err, BROKER_FAILED_TIMEOUT, 0, NULL)
                                  : fail(err, BROKER_FAILED_IO, errno, NULL);
    }
    else
      return fail(err, BROKER_FAILED_IO, errno, NULL);
  }
  return 0;
}

/*
  Sends one request and reads frames until the answer with its request id arrives (answers to
  requests given up on earlier are skipped). On success *status, *body, *body_length describe the
  answer, whose body lives in client->frame until the next exchange. *sent tells whether the
  request went out, so that a non-idempotent request is never sent twice.
*/
static int exchange(struct broker_client *client, unsigned op, const unsigned char *body,
                    size_t body_length, long long deadline, int *sent, unsigned *status,
                    const unsigned char **answer, size_t *answer_length,
                    struct broker_error *err)
{
  unsigned char request[4 + 5 + 600];
  const uint32_t request_id= client->next_request_id++;
  if (client->next_request_id == 0)
    client->next_request_id= 1;
  put32(request, (uint32_t) (5 + body_length));
  request[4]= (unsigned char) op;
  put32(request + 5, request_id);
  memcpy(request + 9, body, body_length);

  *sent= 0;
  if (send_all(client->fd, request, 9 + body_length, deadline, err))
    return -1;
  *sent= 1;
  atomic_fetch_add_explicit(&client->counters->requests, 1, memory_order_relaxed);

  for (;;)
  {
    unsigned char header[4];
    if (recv_exact(client->fd, header, 4, deadline, err))
      return -1;
    const uint32_t length= get32(header);
    if (length < RESPONSE_HEADER || length > MAX_FRAME)
      return fail(err, BROKER_FAILED_PROTOCOL, 0, "frame length %u", (unsigned) length);
    if (recv_exact(client->fd, client->frame, length, deadline, err))
      return -1;
    if (get32(client->frame + 1) != request_id)
    {
      explicit_bzero(client->frame, length);
      continue;
    }
    if (client->frame[0] != op)
      return fail(err, BROKER_FAILED_PROTOCOL, 0, "op %u answers op %u", client->frame[0], op);
    *status= client->frame[5];
    *answer= client->frame + RESPONSE_HEADER;
    *answer_length= length - RESPONSE_HEADER;
    return 0;
  }
}

/* A non-OK answer's body is message:string. */
static int fail_status(struct broker_error *err, unsigned status, const unsigned char *body,
                       size_t length)
{
  fail(err, BROKER_FAILED_STATUS, 0, NULL);
  err->status= status;
  if (length >= 2)
  {
    size_t n= get16(body);
    if (n > length - 2)
      n= length - 2;
    if (n >= sizeof err->message)
      n= sizeof err->message - 1;
    memcpy(err->message, body + 2, n);
    err->message[n]= 0;
  }
  return -1;
}

static int connect_once(struct broker_client *client, long long deadline,
                        struct broker_error *err)
{
  struct sockaddr_un addr= { .sun_family= AF_UNIX };
  if (strlen(client->socket_path) >= sizeof addr.sun_path)
    return fail(err, BROKER_FAILED_CONNECT, ENAMETOOLONG, NULL);
  memcpy(addr.sun_path, client->socket_path, strlen(client->socket_path) + 1);

  client->fd= socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (client->fd < 0)
    return fail(err, BROKER_FAILED_CONNECT, errno, NULL);
  if (connect(client->fd, (struct sockaddr *) &addr, sizeof addr))
  {
    int e= errno;
    close_fd(client);
    return fail(err, BROKER_FAILED_CONNECT, e, NULL);
  }

  unsigned char body[2 + 2 + 255 + 2 + 255];
  size_t length= 0;
  put16(body, PROTOCOL_VERSION);
  length+= 2;
  length+= put_string(body + length, client->instance);
  length+= put_string(body + length, client->client_name);

  int sent;
  unsigned status;
  const unsigned char *answer;
  size_t answer_length;
  if (exchange(client, OP_HELLO, body, length, deadline, &sent, &status, &answer,
               &answer_length, err))
  {
    close_fd(client);
    return -1;
  }
  if (status != BROKER_OK)
  {
    close_fd(client);
    return fail_status(err, status, answer, answer_length);
  }
  if (answer_length < 4 || get16(answer) != PROTOCOL_VERSION ||
      answer_length != 4 + (size_t) get16(answer + 2))
  {
    close_fd(client);
    return fail(err, BROKER_FAILED_PROTOCOL, 0, "HELLO answer of %zu bytes, protocol %u",
                answer_length, answer_length >= 2 ? get16(answer) : 0);
  }
  size_t n= get16(answer + 2);
  if (n >= sizeof client->server_name)
    n= sizeof client->server_name - 1;
  memcpy(client->server_name, answer + 4, n);
  client->server_name[n]= 0;

  unsigned long long connects=
    atomic_fetch_add_explicit(&client->counters->connects, 1, memory_order_relaxed) + 1;
  if (client->lost_at)
    client->log(0, "reconnected to key broker at %s after %.1f s (instance \"%s\", server "
                "\"%s\")", client->socket_path, (broker_now_ms() - client->lost_at) / 1000.0,
                client->instance, client->server_name);
  else if (connects == 1)
    client->log(0, "connected to key broker at %s (instance \"%s\", protocol %d, server "
                "\"%s\")", client->socket_path, client->instance, PROTOCOL_VERSION,
                client->server_name);
  /* else: the connection was replaced at once (see call()), nothing worth a line */
  client->lost_at= 0;
  return 0;
}

/* Worth another try before the deadline: the broker is not there yet, or is restarting. */
int broker_error_is_transient(const struct broker_error *err)
{
  switch (err->failure)
  {
  case BROKER_FAILED_CONNECT:
    return err->sys_errno == ENOENT || err->sys_errno == ECONNREFUSED ||
           err->sys_errno == EAGAIN || err->sys_errno == ECONNRESET;
  case BROKER_FAILED_IO:
  case BROKER_FAILED_TIMEOUT:
    return 1;
  case BROKER_FAILED_STATUS:
    return err->status == BROKER_UNAVAILABLE;
  default:
    return 0;
  }
}

static int backoff(long long deadline, long long *delay)
{
  long long left= deadline - broker_now_ms();
  if (left <= 0)
    return -1;
  sleep_ms(*delay < left ? *delay : left);
  *delay= *delay * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : *delay * 2;
  return 0;
}

int broker_connect(struct broker_client *client, long long deadline, int flags,
                   struct broker_error *err)
{
  long long delay= BACKOFF_FIRST_MS;
  while (client->fd < 0)
  {
    if (connect_once(client, deadline, err) == 0)
      break;
    if (!(flags & BROKER_RETRY) || !broker_error_is_transient(err) || backoff(deadline, &delay))
    {
      atomic_fetch_add_explicit(&client->counters->errors, 1, memory_order_relaxed);
      return -1;
    }
  }
  return 0;
}

/*
  One request with the retry policy: a connection found dead when it is used (the broker
  restarted while we were idle) is replaced at once; with BROKER_RETRY, transient failures are
  retried with backoff until the deadline. A request that is not idempotent is never re-sent.
*/
static int call(struct broker_client *client, unsigned op, const unsigned char *body,
                size_t body_length, long long deadline, int flags, int idempotent,
                const unsigned char **answer, size_t *answer_length, struct broker_error *err)
{
  long long delay= BACKOFF_FIRST_MS;
  int stale_retry= 1;
  for (;;)
  {
    const int was_connected= client->fd >= 0;
    if (client->fd >= 0 || connect_once(client, deadline, err) == 0)
    {
      int sent;
      unsigned status;
      if (exchange(client, op, body, body_length, deadline, &sent, &status, answer,
                   answer_length, err) == 0)
      {
        if (status == BROKER_OK)
          return 0;
        fail_status(err, status, *answer, *answer_length);
        explicit_bzero(client->frame, RESPONSE_HEADER + *answer_length);
      }
      else if (was_connected && stale_retry && err->failure == BROKER_FAILED_IO &&
               (idempotent || !sent))
      {
        /* The broker closed the connection while it was idle (idle_timeout_ms, a restart):
           replace it at once, quietly; only if that fails is the broker gone. */
        const struct broker_error first= *err;
        stale_retry= 0;
        close_fd(client);
        if (connect_once(client, deadline, err) == 0)
          continue;
        drop_connection(client, &first);
      }
      else
      {
        drop_connection(client, err);
        if (!idempotent && sent)
          break;
      }
    }
    if (!(flags & BROKER_RETRY) || !broker_error_is_transient(err) || backoff(deadline, &delay))
      break;
  }
  atomic_fetch_add_explicit(&client->counters->errors, 1, memory_order_relaxed);
  return -1;
}

static int take_key(const unsigned char *p, size_t available, unsigned char *key,
                    unsigned *key_length, struct broker_error *err)
{
  if (available < 2 || available != 2 + (size_t) get16(p))
    return fail(err, BROKER_FAILED_PROTOCOL, 0, "key field of %zu bytes", available);
  unsigned n= get16(p);
  if (n == 0 || n > *key_length)
    return fail(err, BROKER_FAILED_PROTOCOL, 0, "key length %u", n);
  memcpy(key, p + 2, n);
  *key_length= n;
  return 0;
}

int broker_latest_key(struct broker_client *client, unsigned key_id, long long deadline,
                      int flags, unsigned *version, unsigned char *key, unsigned *key_length,
                      struct broker_error *err)
{
  unsigned char body[4];
  const unsigned char *answer;
  size_t length;
  put32(body, key_id);
  if (call(client, OP_LATEST_KEY, body, sizeof body, deadline, flags, 1, &answer, &length, err))
    return -1;
  int result= length >= 4 && get32(answer) != 0
    ? take_key(answer + 4, length - 4, key, key_length, err)
    : fail(err, BROKER_FAILED_PROTOCOL, 0, "LATEST_KEY answer of %zu bytes", length);
  if (result == 0)
    *version= get32(answer);
  explicit_bzero(client->frame, RESPONSE_HEADER + length);
  if (result)
  {
    close_fd(client);  /* a broker that breaks the format is not trusted further */
    atomic_fetch_add_explicit(&client->counters->errors, 1, memory_order_relaxed);
  }
  return result;
}

int broker_get_key(struct broker_client *client, unsigned key_id, unsigned version,
                   long long deadline, int flags, unsigned char *key, unsigned *key_length,
                   struct broker_error *err)
{
  unsigned char body[8];
  const unsigned char *answer;
  size_t length;
  put32(body, key_id);
  put32(body + 4, version);
  if (call(client, OP_GET_KEY, body, sizeof body, deadline, flags, 1, &answer, &length, err))
    return -1;
  int result= take_key(answer, length, key, key_length, err);
  explicit_bzero(client->frame, RESPONSE_HEADER + length);
  if (result)
  {
    close_fd(client);
    atomic_fetch_add_explicit(&client->counters->errors, 1, memory_order_relaxed);
  }
  return result;
}

int broker_rotate(struct broker_client *client, unsigned key_id, long long deadline,
                  unsigned (*rotated)[2], size_t max, size_t *count, struct broker_error *err)
{
  unsigned char body[4];
  const unsigned char *answer;
  size_t length;
  put32(body, key_id);
  if (call(client, OP_ROTATE, body, sizeof body, deadline, BROKER_RETRY, 0, &answer, &length,
           err))
    return -1;
  if (length < 4 || length != 4 + 8 * (size_t) get32(answer))
  {
    close_fd(client);
    atomic_fetch_add_explicit(&client->counters->errors, 1, memory_order_relaxed);
    return fail(err, BROKER_FAILED_PROTOCOL, 0, "ROTATE answer of %zu bytes", length);
  }
  size_t n= get32(answer);
  *count= n < max ? n : max;
  for (size_t i= 0; i < *count; i++)
  {
    rotated[i][0]= get32(answer + 4 + 8 * i);
    rotated[i][1]= get32(answer + 8 + 8 * i);
  }
  return 0;
}
