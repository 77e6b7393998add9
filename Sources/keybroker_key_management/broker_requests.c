/* Copyright (c) 2025 keybroker authors. GPL-2.0 (see plugin.c). */
/* The key requests: LATEST_KEY, GET_KEY, ROTATE, and the checks on their answers. */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>

#include "broker_wire.h"

static int valid_version(unsigned version)
{
  return version != 0 && version != VERSION_INVALID;
}

/* key_len:u16 key bytes, filling the rest of the body; an AES key length. */
static int take_key(struct broker_client *client, const unsigned char *p, size_t available,
                    size_t frame_length, unsigned char *key, unsigned *key_length,
                    struct broker_error *err)
{
  if (available < 2 || available != 2 + (size_t) get16(p))
  {
    broker_fail(err, BROKER_FAILED_PROTOCOL, 0, "key field of %zu bytes", available);
    return broker_malformed(client, frame_length, err);
  }
  const unsigned n= get16(p);
  if ((n != 16 && n != 24 && n != 32) || n > *key_length)
  {
    broker_fail(err, BROKER_FAILED_INVALID, 0, "a key of %u bytes (AES keys have 16, 24 or 32)", n);
    return broker_refuse(client, frame_length, err);
  }
  memcpy(key, p + 2, n);
  *key_length= n;
  return 0;
}

int broker_latest_key(struct broker_client *client, unsigned key_id, long long deadline,
                      unsigned *version, unsigned char *key, unsigned *key_length,
                      struct broker_error *err)
{
  unsigned char body[4];
  const unsigned char *answer;
  size_t length;
  put32(body, key_id);
  if (broker_call(client, OP_LATEST_KEY, body, sizeof body, deadline, &answer, &length, NULL, err))
    return -1;
  if (length < 4)
  {
    broker_fail(err, BROKER_FAILED_PROTOCOL, 0, "LATEST_KEY answer of %zu bytes", length);
    return broker_malformed(client, length, err);
  }
  const unsigned v= get32(answer);
  if (!valid_version(v))
  {
    broker_fail(err, BROKER_FAILED_INVALID, 0, "version %u", v);
    return broker_refuse(client, length, err);
  }
  if (take_key(client, answer + 4, length - 4, length, key, key_length, err))
    return -1;
  *version= v;
  broker_wipe_answer(client, length);
  return 0;
}

int broker_get_key(struct broker_client *client, unsigned key_id, unsigned version,
                   long long deadline, unsigned char *key, unsigned *key_length,
                   struct broker_error *err)
{
  unsigned char body[8];
  const unsigned char *answer;
  size_t length;
  put32(body, key_id);
  put32(body + 4, version);
  if (broker_call(client, OP_GET_KEY, body, sizeof body, deadline, &answer, &length, NULL, err))
    return -1;
  if (take_key(client, answer, length, length, key, key_length, err))
    return -1;
  broker_wipe_answer(client, length);
  return 0;
}

static void add_rotated(struct broker_rotation *r, unsigned key_id, unsigned version,
                        unsigned status)
{
  if (r->count < r->capacity)
    r->keys[r->count]= (struct broker_rotated) { key_id, version, status };
  r->count++;
}

/*
  OK:      count:u32, count × (key_id:u32, new_version:u32)
  PARTIAL: message:string, count:u32, count × (key_id:u32, new_version:u32),
           failed:u32, failed × (key_id:u32, status:u8)
*/
int broker_rotate(struct broker_client *client, unsigned key_id, long long deadline,
                  struct broker_rotation *rotation, struct broker_error *err)
{
  unsigned char body[4];
  const unsigned char *p;
  size_t length;
  unsigned status;
  put32(body, key_id);
  rotation->count= 0;
  rotation->partial= 0;
  rotation->message[0]= 0;
  if (broker_call(client, OP_ROTATE, body, sizeof body, deadline, &p, &length, &status, err))
    return -1;
  const unsigned char *end= p + length;
  if (status == BROKER_PARTIAL)
  {
    if (length < 2 || (size_t) (end - p - 2) < get16(p))
      goto bad;
    const size_t n= get16(p);
    broker_copy_text(rotation->message, sizeof rotation->message, p + 2, n);
    rotation->partial= 1;
    p+= 2 + n;
  }
  if (end - p < 4 || (size_t) (end - p - 4) / 8 < get32(p))
    goto bad;
  const size_t rotated= get32(p);
  p+= 4;
  for (size_t i= 0; i < rotated; i++, p+= 8)
  {
    const unsigned id= get32(p), version= get32(p + 4);
    if (id == 0 || id == BROKER_ALL_KEYS || (key_id != BROKER_ALL_KEYS && id != key_id) ||
        !valid_version(version))
    {
      broker_fail(err, BROKER_FAILED_INVALID, 0, "key %u rotated to version %u", id, version);
      return broker_refuse(client, length, err);
    }
    add_rotated(rotation, id, version, BROKER_OK);
  }
  if (rotation->partial)
  {
    if (end - p < 4 || (size_t) (end - p - 4) / 5 < get32(p))
      goto bad;
    const size_t failed= get32(p);
    p+= 4;
    for (size_t i= 0; i < failed; i++, p+= 5)
      add_rotated(rotation, get32(p), 0, p[4] ? p[4] : BROKER_INTERNAL);
  }
  if (p != end)
    goto bad;
  return 0;
bad:
  broker_fail(err, BROKER_FAILED_PROTOCOL, 0, "ROTATE answer of %zu bytes", length);
  return broker_malformed(client, length, err);
}

int broker_valid_key_set(const unsigned char *s, size_t n)
{
  if (n < 1 || n > BROKER_MAX_KEY_SET)
    return 0;
  for (size_t i= 0; i < n; i++)
    if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
          (s[i] >= '0' && s[i] <= '9') || s[i] == '.' || s[i] == '_' || s[i] == '-'))
      return 0;
  return 1;
}

/* count:u16, count × (name:string, value:string); names not known here are skipped. */
int broker_info(struct broker_client *client, long long deadline, struct broker_info *info,
                struct broker_error *err)
{
  const unsigned char *p;
  size_t length;
  memset(info, 0, sizeof *info);
  if (broker_call(client, OP_INFO, (const unsigned char *) "", 0, deadline, &p, &length, NULL, err))
  {
    if (err->failure == BROKER_FAILED_STATUS && err->status == BROKER_UNSUPPORTED)
      broker_disconnect(client);  /* a broker without INFO closes after an unknown op */
    return -1;
  }
  const unsigned char *end= p + length;
  if (length < 2)
    goto bad;
  size_t count= get16(p);
  p+= 2;
  for (; count; count--)
  {
    size_t name_length, value_length;
    if (end - p < 2 || (size_t) (end - p - 2) < get16(p))
      goto bad;
    name_length= get16(p);
    const unsigned char *name= p + 2;
    p+= 2 + name_length;
    if (end - p < 2 || (size_t) (end - p - 2) < get16(p))
      goto bad;
    value_length= get16(p);
    const unsigned char *value= p + 2;
    p+= 2 + value_length;
    char *field= NULL;
    size_t size= 0;
    if (name_length == 8 && !memcmp(name, "provider", 8))
      field= info->provider, size= sizeof info->provider;
    else if (name_length == 10 && !memcmp(name, "master_key", 10))
      field= info->master_key, size= sizeof info->master_key;
    else if (name_length == 8 && !memcmp(name, "location", 8))
      field= info->location, size= sizeof info->location;
    else if (name_length == 7 && !memcmp(name, "key_set", 7))
    {
      if (!broker_valid_key_set(value, value_length))
      {
        memset(info, 0, sizeof *info);
        broker_fail(err, BROKER_FAILED_INVALID, 0, "key-set identity of %zu bytes that is not 1 "
                    "to %d letters, digits, '.', '_' or '-'", value_length, BROKER_MAX_KEY_SET);
        return broker_refuse(client, length, err);
      }
      memcpy(info->key_set, value, value_length);  /* exact: it is compared, never only shown */
      info->key_set[value_length]= 0;
    }
    if (field)
      broker_copy_text(field, size, value, value_length);
  }
  if (p != end)
    goto bad;
  return 0;
bad:
  memset(info, 0, sizeof *info);
  broker_fail(err, BROKER_FAILED_PROTOCOL, 0, "INFO answer of %zu bytes", length);
  return broker_malformed(client, length, err);
}
