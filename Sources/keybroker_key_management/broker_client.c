/* Copyright (c) 2025 keybroker authors. GPL-2.0 (see plugin.c). */
#define _GNU_SOURCE

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

#include "broker_wire.h"

#define PROTOCOL_VERSION 1
#define MAX_FRAME 65536

struct broker_client
{
  struct sockaddr_un address;
  char instance[BROKER_MAX_NAME + 1];
  char client_name[BROKER_MAX_NAME + 1];
  char server_name[BROKER_MAX_NAME + 1];
  char expected_key_set[BROKER_MAX_KEY_SET + 1];  /* "" until the plugin checked one */
  int fd;                       /* -1 when not connected (a connection is usable after HELLO) */
  int cancel_fd;
  int ever_connected;
  uint32_t next_request_id;
  uint32_t first_request_id;    /* of this connection: older answers are late, newer are lies */
  struct broker_stats *stats;
  unsigned char *frame;         /* one response frame; locked, it carries key bytes */
};

/* ---- time and waiting --------------------------------------------------------------------- */

long long broker_now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void broker_cond_init(pthread_cond_t *cond)
{
  pthread_condattr_t attr;
  pthread_condattr_init(&attr);
  pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
  pthread_cond_init(cond, &attr);
  pthread_condattr_destroy(&attr);
}

/* 0 when fd is ready for events; -1 with errno ETIMEDOUT, ECANCELED or poll's otherwise. */
static int wait_fd(int fd, short events, int cancel_fd, long long deadline)
{
  for (;;)
  {
    const long long left= deadline - broker_now_ms();
    if (left <= 0)
    {
      errno= ETIMEDOUT;
      return -1;
    }
    struct pollfd p[2]= { { fd, events, 0 }, { cancel_fd, POLLIN, 0 } };
    const int n= poll(p, cancel_fd >= 0 ? 2 : 1, left > 60000 ? 60000 : (int) left);
    if (n > 0 && cancel_fd >= 0 && p[1].revents)
    {
      errno= ECANCELED;
      return -1;
    }
    if (n > 0)
      return 0;  /* ready, or an error/hangup that the next call reports */
    if (n < 0 && errno != EINTR)
      return -1;
  }
}

int broker_sleep_until(int cancel_fd, long long deadline)
{
  if (cancel_fd < 0)
  {
    for (long long left; (left= deadline - broker_now_ms()) > 0;)
    {
      struct timespec ts= { left / 1000, (left % 1000) * 1000000 };
      nanosleep(&ts, NULL);
    }
    return 0;
  }
  /* Waiting for the cancel descriptor to become readable is the sleep. */
  return wait_fd(cancel_fd, POLLIN, -1, deadline) == 0 ? -1 : 0;
}

/* A failed wait: the deadline, the plugin unloading, or poll's own error. */
static int fail_wait(struct broker_error *err)
{
  return errno == ETIMEDOUT ? broker_fail(err, BROKER_FAILED_TIMEOUT, 0, NULL)
       : errno == ECANCELED ? broker_fail(err, BROKER_FAILED_CANCELLED, 0, NULL)
                            : broker_fail(err, BROKER_FAILED_IO, errno, NULL);
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
                                        const char *client_name, int cancel_fd,
                                        struct broker_stats *stats)
{
  if (strlen(socket_path) >= sizeof(((struct sockaddr_un *) 0)->sun_path) ||
      strlen(instance) > BROKER_MAX_NAME || strlen(client_name) > BROKER_MAX_NAME)
  {
    errno= ENAMETOOLONG;
    return NULL;
  }
  struct broker_client *client= calloc(1, sizeof *client);
  if (!client)
    return NULL;
  client->address.sun_family= AF_UNIX;
  memcpy(client->address.sun_path, socket_path, strlen(socket_path) + 1);
  memcpy(client->instance, instance, strlen(instance) + 1);
  memcpy(client->client_name, client_name, strlen(client_name) + 1);
  client->fd= -1;
  client->cancel_fd= cancel_fd;
  client->next_request_id= 1;
  client->stats= stats;
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

void broker_disconnect(struct broker_client *client)
{
  if (client->fd >= 0)
    close(client->fd);
  client->fd= -1;
}

void broker_client_free(struct broker_client *client)
{
  if (!client)
    return;
  broker_disconnect(client);
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

static int send_all(struct broker_client *client, const unsigned char *data, size_t length,
                    long long deadline, struct broker_error *err)
{
  while (length)
  {
    ssize_t n= send(client->fd, data, length, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0)
    {
      data+= n;
      length-= (size_t) n;
    }
    else if (n < 0 && (errno == EAGAIN || errno == EINTR))
    {
      if (wait_fd(client->fd, POLLOUT, client->cancel_fd, deadline))
        return fail_wait(err);
    }
    else
      return broker_fail(err, BROKER_FAILED_IO, n < 0 ? errno : 0, NULL);
  }
  return 0;
}

static int recv_exact(struct broker_client *client, unsigned char *data, size_t length,
                      long long deadline, struct broker_error *err)
{
  while (length)
  {
    ssize_t n= recv(client->fd, data, length, MSG_DONTWAIT);
    if (n > 0)
    {
      data+= n;
      length-= (size_t) n;
    }
    else if (n == 0)
      return broker_fail(err, BROKER_FAILED_IO, 0, NULL);
    else if (errno == EAGAIN || errno == EINTR)
    {
      if (wait_fd(client->fd, POLLIN, client->cancel_fd, deadline))
        return fail_wait(err);
    }
    else
      return broker_fail(err, BROKER_FAILED_IO, errno, NULL);
  }
  return 0;
}

/*
  Sends one request and reads frames until the answer with its request id arrives. Answers to
  requests given up on earlier on this connection are skipped; an answer to a request never sent
  breaks the format. On success *status, *answer, *answer_length describe the answer, whose body
  lives in client->frame until the next exchange. Any failure leaves the connection closed, since
  a half-read frame cannot be resynchronised. err->sent tells whether the request went out.
*/
static int exchange(struct broker_client *client, unsigned op, const unsigned char *body,
                    size_t body_length, long long deadline, unsigned *status,
                    const unsigned char **answer, size_t *answer_length,
                    struct broker_error *err)
{
  unsigned char request[4 + 5 + 4 + 2 * (2 + BROKER_MAX_NAME)];
  const uint32_t request_id= client->next_request_id++;
  if (client->next_request_id == 0)
    client->next_request_id= 1;
  put32(request, (uint32_t) (5 + body_length));
  request[4]= (unsigned char) op;
  put32(request + 5, request_id);
  memcpy(request + 9, body, body_length);

  err->sent= 0;
  if (broker_now_ms() >= deadline)  /* never sent after its deadline */
    return broker_fail(err, BROKER_FAILED_TIMEOUT, 0, NULL);
  if (send_all(client, request, 9 + body_length, deadline, err))
    goto broken;
  err->sent= 1;
  atomic_fetch_add_explicit(&client->stats->requests, 1, memory_order_relaxed);

  for (;;)
  {
    unsigned char header[4];
    if (recv_exact(client, header, 4, deadline, err))
      goto broken;
    const uint32_t length= get32(header);
    if (length < RESPONSE_HEADER || length > MAX_FRAME)
    {
      broker_fail(err, BROKER_FAILED_PROTOCOL, 0, "frame length %u", (unsigned) length);
      goto broken;
    }
    if (recv_exact(client, client->frame, length, deadline, err))
      goto broken;
    const uint32_t answered= get32(client->frame + 1);
    if (answered != request_id)
    {
      explicit_bzero(client->frame, length);
      if ((uint32_t) (answered - client->first_request_id) <
          (uint32_t) (request_id - client->first_request_id))
        continue;  /* late answer to a request given up on */
      broker_fail(err, BROKER_FAILED_PROTOCOL, 0, "answer to request %u, which was never sent",
           (unsigned) answered);
      goto broken;
    }
    if (client->frame[0] != op)
    {
      broker_fail(err, BROKER_FAILED_PROTOCOL, 0, "op %u answers op %u", client->frame[0], op);
      goto broken;
    }
    *status= client->frame[5];
    *answer= client->frame + RESPONSE_HEADER;
    *answer_length= length - RESPONSE_HEADER;
    return 0;
  }
broken:
  broker_disconnect(client);
  return -1;
}

/* A string field at *p (within end): its bytes and length, and *p moved past it; 0 when the
   field is missing or longer than what is left. */
static int take_string(const unsigned char **p, const unsigned char *end,
                       const unsigned char **text, size_t *length)
{
  if (end - *p < 2 || (size_t) (end - *p - 2) < get16(*p))
    return 0;
  *length= get16(*p);
  *text= *p + 2;
  *p+= 2 + *length;
  return 1;
}

/* A non-OK answer's body starts with message:string (PARTIAL has more after it; REFUSED the
   service's code and key). What the broker says is cut and escaped before it reaches a log. */
static int fail_status(struct broker_error *err, unsigned status, const unsigned char *body,
                       size_t length)
{
  const unsigned char *p= body, *end= body + length, *text;
  size_t n;
  broker_fail(err, BROKER_FAILED_STATUS, 0, NULL);
  err->status= status;
  err->sent= 1;
  if (take_string(&p, end, &text, &n))
    broker_copy_text(err->message, sizeof err->message, text, n);
  else if (length >= 2)  /* a message cut short: what there is of it */
    broker_copy_text(err->message, sizeof err->message, body + 2, length - 2);
  if (status == BROKER_REFUSED && take_string(&p, end, &text, &n))
  {
    broker_copy_text(err->service_code, sizeof err->service_code, text, n);
    if (take_string(&p, end, &text, &n))
      broker_copy_text(err->service_key, sizeof err->service_key, text, n);
  }
  return -1;
}

/* Counts failures, so the status variable broker_errors sees every kind. */
int broker_call(struct broker_client *client, unsigned op, const unsigned char *body,
                size_t body_length, long long deadline, const unsigned char **answer,
                size_t *answer_length, unsigned *status_out, struct broker_error *err)
{
  unsigned status;
  int rc;
  if (client->fd < 0)
    rc= broker_fail(err, BROKER_FAILED_IO, ENOTCONN, NULL);
  else if ((rc= exchange(client, op, body, body_length, deadline, &status, answer,
                         answer_length, err)) == 0)
  {
    if (status_out)
      *status_out= status;
    if (status != BROKER_OK && !(status_out && status == BROKER_PARTIAL))
    {
      rc= fail_status(err, status, *answer, *answer_length);
      explicit_bzero(client->frame, RESPONSE_HEADER + *answer_length);
    }
  }
  if (rc)
    atomic_fetch_add_explicit(&client->stats->errors, 1, memory_order_relaxed);
  return rc;
}

void broker_wipe_answer(struct broker_client *client, size_t answer_length)
{
  explicit_bzero(client->frame, RESPONSE_HEADER + answer_length);
}

int broker_refuse(struct broker_client *client, size_t length, struct broker_error *err)
{
  broker_wipe_answer(client, length);
  atomic_fetch_add_explicit(&client->stats->errors, 1, memory_order_relaxed);
  err->sent= 1;
  return -1;
}

int broker_malformed(struct broker_client *client, size_t length, struct broker_error *err)
{
  broker_refuse(client, length, err);
  broker_disconnect(client);
  return -1;
}

void broker_expect_key_set(struct broker_client *client, const char *key_set)
{
  snprintf(client->expected_key_set, sizeof client->expected_key_set, "%s", key_set);
}

int broker_connect(struct broker_client *client, long long deadline, struct broker_error *err)
{
  broker_disconnect(client);
  client->fd= socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (client->fd < 0)
    return broker_fail(err, BROKER_FAILED_CONNECT, errno, NULL);
  /* A Unix socket connects at once or fails at once (EAGAIN: its backlog is full). */
  if (connect(client->fd, (struct sockaddr *) &client->address, sizeof client->address))
  {
    const int e= errno;
    broker_disconnect(client);
    return broker_fail(err, BROKER_FAILED_CONNECT, e, NULL);
  }
  client->first_request_id= client->next_request_id;

  unsigned char body[2 + 2 * (2 + BROKER_MAX_NAME)];
  size_t length= 0;
  put16(body, PROTOCOL_VERSION);
  length+= 2;
  length+= put_string(body + length, client->instance);
  length+= put_string(body + length, client->client_name);

  const unsigned char *answer;
  size_t answer_length;
  if (broker_call(client, OP_HELLO, body, length, deadline, &answer, &answer_length, NULL, err))
  {
    broker_disconnect(client);
    return -1;
  }
  if (answer_length < 4 || get16(answer) != PROTOCOL_VERSION ||
      answer_length != 4 + (size_t) get16(answer + 2))
  {
    broker_fail(err, BROKER_FAILED_PROTOCOL, 0, "HELLO answer of %zu bytes, protocol %u",
         answer_length, answer_length >= 2 ? get16(answer) : 0);
    return broker_malformed(client, answer_length, err);
  }
  broker_copy_text(client->server_name, sizeof client->server_name, answer + 4, get16(answer + 2));
  if (client->expected_key_set[0])
  {
    struct broker_info info;
    if (broker_info(client, deadline, &info, err))
    {
      broker_disconnect(client);
      return -1;
    }
    if (info.key_set[0] && strcmp(info.key_set, client->expected_key_set))
    {
      broker_disconnect(client);
      return broker_fail(err, BROKER_FAILED_KEY_SET, 0, "the broker serves key set %s, this "
                         "datadir's is %s", info.key_set, client->expected_key_set);
    }
  }
  atomic_fetch_add_explicit(&client->stats->connects, 1, memory_order_relaxed);
  if (client->ever_connected)
    atomic_fetch_add_explicit(&client->stats->reconnects, 1, memory_order_relaxed);
  client->ever_connected= 1;
  return 0;
}

