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

bool messages_in_server(void)
{
  return in_server;
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

/* What a key service's refusal means and what to do, by its error code (AWS KMS's, KMIP's
   result reasons); NULL for a code not known here. */
static const char *refusal_cause(const char *code)
{
  static const struct { const char *code, *cause; } causes[]= {
    { "AccessDeniedException", "the IAM policy of keybrokerd's AWS credentials, or the key "
      "policy of the KMS key, does not allow kms:Decrypt, kms:GenerateDataKeyWithoutPlaintext "
      "and kms:DescribeKey" },
    { "AccessDenied", "the IAM policy of keybrokerd's AWS credentials, or the key policy of the "
      "KMS key, does not allow this call" },
    { "DisabledException", "the KMS key is disabled: enable it (aws kms enable-key); keys "
      "already loaded keep being served" },
    { "KMSInvalidStateException", "the KMS key is pending deletion or not usable in its "
      "state: cancel the deletion (aws kms cancel-key-deletion) or check the key" },
    { "NotFoundException", "there is no such KMS key in this account and region: check "
      "master_key_id and region of the instance" },
    { "InvalidKeyUsageException", "the KMS key is not a symmetric ENCRYPT_DECRYPT key" },
    { "UnrecognizedClientException", "keybrokerd's AWS access key is not valid" },
    { "InvalidSignatureException", "keybrokerd's AWS secret key does not match its access key" },
    { "NoCredentials", "keybrokerd has no usable AWS credentials (docs/aws.md, credentials)" },
    { "Permission Denied", "the KMIP server does not let keybrokerd's client certificate use "
      "the key, or the key is not active" },
    { "Item Not Found", "the KMIP server has no such key (destroyed, or never created)" },
    { "Illegal Operation", "the KMIP key is not active, or may not be used this way" },
  };
  for (size_t i= 0; i < sizeof causes / sizeof *causes; i++)
    if (!strcmp(code, causes[i].code))
      return causes[i].cause;
  return NULL;
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
  case BROKER_REFUSED:
  {
    const char *meaning= refusal_cause(err->service_code);
    snprintf(buf, size, "the key service refused %s of instance \"%s\": %s%s%s%s — %s "
             "(broker: %s)", what, config.instance,
             err->service_code[0] ? err->service_code : "refused",
             err->service_key[0] ? " for key " : "", err->service_key,
             meaning ? "" : ", a problem of the key service or keybrokerd's access to it, "
             "not of the database", meaning ? meaning : "see keybrokerd's log", err->message);
    break;
  }
  case BROKER_LOCKED:
    snprintf(buf, size, "instance \"%s\" is locked on the broker: waiting for `keybrokerctl "
             "unlock` (two-factor start) — run keybrokerctl unlock --instance %s --token-code "
             "NNNNNN (broker: %s)", config.instance, config.instance, err->message);
    break;
  case BROKER_NOT_FOUND:
    snprintf(buf, size, "%s does not exist in instance \"%s\" and cannot be created — check "
             "auto_create and the master key of the instance (broker: %s)", what,
             config.instance, err->message);
    break;
  case BROKER_UNAVAILABLE:
    snprintf(buf, size, "broker could not provide %s within %u ms: the key service or the key "
             "store is unreachable or failing (broker: %s) — keybrokerd retries; see its log",
             what, request_timeout_ms(), err->message);
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
  case BROKER_FAILED_KEY_SET:
    snprintf(buf, size, "key broker at %s changed key sets (%s): %s is not asked for there — "
             "give the broker back the store of this datadir's key set (docs/mariadb.md)",
             config.socket_path, err->message, what);
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
