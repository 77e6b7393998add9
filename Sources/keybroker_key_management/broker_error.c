/* Copyright (c) 2025 keybroker authors. GPL-2.0 (see plugin.c). */
/* The broker client's failures: how they are filled in, named and classified. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "broker_wire.h"

int broker_fail(struct broker_error *err, enum broker_failure failure, int sys_errno,
                const char *format, ...)
{
  err->failure= failure;
  err->sys_errno= sys_errno;
  err->status= 0;
  err->fast= 0;
  err->message[0]= 0;
  err->service_code[0]= 0;
  err->service_key[0]= 0;
  if (format)
  {
    va_list ap;
    va_start(ap, format);
    vsnprintf(err->message, sizeof err->message, format, ap);
    va_end(ap);
  }
  return -1;
}

const char *broker_status_name(unsigned status)
{
  static const char *names[]= { "OK", "NOT_FOUND", "UNAVAILABLE", "DENIED", "BAD_REQUEST",
                                "INTERNAL", "UNSUPPORTED", "PARTIAL", "REFUSED", "LOCKED" };
  return status < sizeof names / sizeof *names ? names[status] : "an unknown status";
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
  case BROKER_FAILED_INVALID:
    snprintf(buf, size, "impossible answer: %s", err->message);
    break;
  case BROKER_FAILED_STATUS:
    snprintf(buf, size, "%s: %s", broker_status_name(err->status),
             err->message[0] ? err->message : "(no message)");
    break;
  case BROKER_FAILED_CANCELLED:
    snprintf(buf, size, "the plugin is unloading");
    break;
  case BROKER_FAILED_KEY_SET:
    snprintf(buf, size, "%s", err->message);
    break;
  default:
    snprintf(buf, size, "unknown failure");
  }
  return buf;
}

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
    return err->status == BROKER_UNAVAILABLE || err->status == BROKER_LOCKED;
  default:
    return 0;
  }
}

/* The length of the UTF-8 character at p (at most n bytes there), or 0 when it is not one. */
static size_t utf8_length(const unsigned char *p, size_t n)
{
  size_t len;
  if (p[0] >= 0xC2 && p[0] <= 0xDF)
    len= 2;
  else if (p[0] >= 0xE0 && p[0] <= 0xEF)
    len= 3;
  else if (p[0] >= 0xF0 && p[0] <= 0xF4)
    len= 4;
  else
    return 0;
  if (len > n)
    return 0;
  for (size_t i= 1; i < len; i++)
    if ((p[i] & 0xC0) != 0x80)
      return 0;
  return len;
}

void broker_copy_text(char *buf, size_t size, const unsigned char *text, size_t length)
{
  static const char hex[]= "0123456789abcdef";
  size_t out= 0;
  for (size_t i= 0; i < length;)
  {
    const unsigned char c= text[i];
    const size_t n= c >= 0x20 && c < 0x7F ? 1 : c >= 0x80 ? utf8_length(text + i, length - i) : 0;
    if (n)
    {
      if (out + n >= size)
        break;
      memcpy(buf + out, text + i, n);
      out+= n;
      i+= n;
    }
    else
    {
      if (out + 4 >= size)
        break;
      buf[out++]= '\\';
      buf[out++]= 'x';
      buf[out++]= hex[c >> 4];
      buf[out++]= hex[c & 15];
      i++;
    }
  }
  buf[out]= 0;
}

int broker_error_is_connection(const struct broker_error *err)
{
  return err->failure == BROKER_FAILED_CONNECT || err->failure == BROKER_FAILED_IO ||
         err->failure == BROKER_FAILED_TIMEOUT || err->failure == BROKER_FAILED_PROTOCOL ||
         err->failure == BROKER_FAILED_KEY_SET;
}
