/* Copyright (c) 2025 keybroker authors. GPL-2.0 (see plugin.c). */
#ifndef KEYBROKER_BROKER_WIRE_H
#define KEYBROKER_BROKER_WIRE_H

/* Private to the broker client's three files: byte order, the one exchange every request goes
   through, and the ways an answer is refused. */

#include <stdint.h>

#include "broker_client.h"

enum { OP_HELLO= 1, OP_LATEST_KEY= 2, OP_GET_KEY= 3, OP_ROTATE= 4, OP_INFO= 7 };

#define RESPONSE_HEADER 6       /* op, request_id, status */
#define VERSION_INVALID 0xFFFFFFFFu

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

/* One request and its answer. A non-OK status is a failure, except PARTIAL when status_out is
   given. The answer lives in the client's frame buffer until the next call. */
int broker_call(struct broker_client *client, unsigned op, const unsigned char *body,
                size_t body_length, long long deadline, const unsigned char **answer,
                size_t *answer_length, unsigned *status_out, struct broker_error *err);

/* Zeroes the answer's frame. */
void broker_wipe_answer(struct broker_client *client, size_t answer_length);

/* A well-formed answer that cannot be true: refused (err filled by the caller), connection kept. */
int broker_refuse(struct broker_client *client, size_t answer_length, struct broker_error *err);

/* A frame that breaks the format: refused, and the connection closed. */
int broker_malformed(struct broker_client *client, size_t answer_length,
                     struct broker_error *err);

#endif
