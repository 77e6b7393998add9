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
                                "INTERNAL", "UNSUPPORTED", "PARTIAL" };
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
    return err->status == BROKER_UNAVAILABLE;
  default:
    return 0;
  }
}

int broker_error_is_connection(const struct broker_error *err)
{
  return err->failure == BROKER_FAILED_CONNECT || err->failure == BROKER_FAILED_IO ||
         err->failure == BROKER_FAILED_TIMEOUT || err->failure == BROKER_FAILED_PROTOCOL;
}
