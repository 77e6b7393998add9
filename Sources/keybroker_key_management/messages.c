/* Copyright (c) 2025 keybroker authors. GPL-2.0 (see plugin.c). */
#define _GNU_SOURCE
#include "messages.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mysql/plugin.h>
#include <mysql/service_my_print_error.h>
#include <mysqld_error.h>

struct plugin_config config;

/* mariadb-backup loads the plugin too (--backup, --prepare) but drops notes and error-log-only
   messages; there the lines go to stderr, where the DBA running the backup reads them. */
static bool in_server;

void messages_init(void)
{
  in_server= !strcmp(program_invocation_short_name, "mariadbd") ||
             !strcmp(program_invocation_short_name, "mysqld");
}

static const char *severity_name(enum severity severity)
{
  switch (severity)
  {
  case SEVERITY_NOTE: return "Note";
  case SEVERITY_WARNING: return "Warning";
  default: return "ERROR";
  }
}

static unsigned long severity_flags(enum severity severity)
{
  switch (severity)
  {
  case SEVERITY_NOTE: return ME_NOTE;
  case SEVERITY_WARNING: return ME_WARNING;
  default: return 0;
  }
}

/* Formats with the C library (the server's my_snprintf knows fewer conversions). */
void log_line(enum severity severity, const char *format, ...)
{
  char line[1024];
  va_list ap;
  va_start(ap, format);
  vsnprintf(line, sizeof line, format, ap);
  va_end(ap);
  if (in_server)
    my_printf_error(ER_UNKNOWN_ERROR, LOG_PREFIX "%s",
                    ME_ERROR_LOG_ONLY | severity_flags(severity), line);
  else
  {
    char stamp[32];
    const time_t now= time(NULL);
    struct tm tm;
    strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", localtime_r(&now, &tm));
    fprintf(stderr, "%s 0 [%s] " LOG_PREFIX "%s\n", stamp, severity_name(severity), line);
  }
}

void statement_warning(const char *format, ...)
{
  char line[1024];
  va_list ap;
  va_start(ap, format);
  vsnprintf(line, sizeof line, format, ap);
  va_end(ap);
  my_printf_error(ER_UNKNOWN_ERROR, LOG_PREFIX "%s", ME_WARNING | ME_ERROR_LOG, line);
}

static void status_text(char *buf, size_t size, const char *what,
                        const struct broker_error *err, const char *cause)
{
  switch (err->status)
  {
  case BROKER_DENIED:
    snprintf(buf, size, "broker denied instance \"%s\" to uid %u — add the user to clients "
             "(broker: %s)", config.instance, (unsigned) geteuid(), err->message);
    break;
  case BROKER_NOT_FOUND:
    snprintf(buf, size, "%s does not exist in instance \"%s\" and cannot be created — check "
             "auto_create and the master key of the instance (broker: %s)", what,
             config.instance, err->message);
    break;
  case BROKER_UNAVAILABLE:
    snprintf(buf, size, "broker could not provide %s within %u ms (broker: %s) — see "
             "keybrokerd's log for the KMS or storage error", what, request_timeout_ms(),
             err->message);
    break;
  case BROKER_UNSUPPORTED:
    snprintf(buf, size, "key broker at %s does not support this request (broker: %s) — "
             "upgrade keybrokerd", config.socket_path, err->message);
    break;
  default:
    snprintf(buf, size, "broker refused %s: %s", what, cause);
  }
}

const char *failure_text(char *buf, size_t size, const char *what,
                         const struct broker_error *err)
{
  char cause[320];
  broker_error_text(err, cause, sizeof cause);
  switch (err->failure)
  {
  case BROKER_FAILED_CONNECT:
    if (err->sys_errno == EACCES)
      snprintf(buf, size, "cannot reach key broker at %s: %s — mariadbd's user needs write "
               "access to the socket (SocketGroup= of keybroker.socket)", config.socket_path,
               strerror(err->sys_errno));
    else
      snprintf(buf, size, "cannot reach key broker at %s: %s — is keybroker.socket active?",
               config.socket_path, strerror(err->sys_errno));
    break;
  case BROKER_FAILED_TIMEOUT:
    snprintf(buf, size, "key broker at %s did not answer for %s within %u ms%s%s — check "
             "keybrokerd, or raise keybroker_key_management_request_timeout",
             config.socket_path, what, request_timeout_ms(), err->message[0] ? ": " : "",
             err->message);
    break;
  case BROKER_FAILED_IO:
    snprintf(buf, size, "lost connection to key broker at %s while asking for %s: %s",
             config.socket_path, what, cause);
    break;
  case BROKER_FAILED_PROTOCOL:
    snprintf(buf, size, "key broker at %s sent a %s for %s — are keybrokerd and the plugin "
             "from the same release?", config.socket_path, cause, what);
    break;
  case BROKER_FAILED_INVALID:
    snprintf(buf, size, "key broker at %s sent an %s for %s; refused, it never reaches "
             "InnoDB", config.socket_path, cause, what);
    break;
  case BROKER_FAILED_STATUS:
    status_text(buf, size, what, err, cause);
    break;
  case BROKER_FAILED_CANCELLED:
    snprintf(buf, size, "no key for %s: the plugin is unloading", what);
    break;
  default:
    snprintf(buf, size, "request for %s failed: %s", what, cause);
  }
  if (err->fast)
  {
    const size_t n= strlen(buf);
    snprintf(buf + n, size - n, " (the broker is away: not asked again until the next "
             "reconnect attempt)");
  }
  return buf;
}

void log_failure(const char *what, const struct broker_error *err)
{
  char text[1024];
  log_line(SEVERITY_ERROR, "%s", failure_text(text, sizeof text, what, err));
}
