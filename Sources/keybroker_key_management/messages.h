/* Copyright (c) 2025 keybroker authors. GPL-2.0 (see plugin.c). */
#ifndef KEYBROKER_MESSAGES_H
#define KEYBROKER_MESSAGES_H

/*
  Every line the plugin writes, and the settings the texts mention. Lines go to the server's
  error log with the plugin's prefix; inside mariadb-backup, which drops error-log-only notes,
  to standard error in the server's format.
*/

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "broker_client.h"

#define LOG_PREFIX "keybroker_key_management: "

enum severity
{
  SEVERITY_NOTE,
  SEVERITY_WARNING,
  SEVERITY_ERROR
};

/* The settings other files read. The server writes the sysvars themselves (under its own lock);
   their update functions copy the dynamic ones here, so readers on other threads never race. */
struct plugin_config
{
  const char *socket_path;   /* set before init, read-only afterwards */
  const char *instance;
  atomic_uint request_timeout_ms;
  atomic_uint version_ttl_ms;
};
extern struct plugin_config config;

static inline unsigned request_timeout_ms(void)
{
  return atomic_load_explicit(&config.request_timeout_ms, memory_order_relaxed);
}

/* Whether lines go to the server's log (mariadbd) or to stderr (mariadb-backup, tests). */
void messages_init(void);

/* Whether the plugin runs inside mariadbd (not mariadb-backup or a test driver). */
bool messages_in_server(void);

void log_line(enum severity severity, const char *format, ...)
  __attribute__((format(printf, 2, 3)));

/* Warning on the statement that is running (and in the error log), for SET GLOBAL. */
void statement_warning(const char *format, ...) __attribute__((format(printf, 1, 2)));

/* One sentence for a failed broker call about `what` ("key 5", "key 5, version 2"): the cause,
   then what to do. */
const char *failure_text(char *buf, size_t size, const char *what,
                         const struct broker_error *err);

/* failure_text as an error line. */
void log_failure(const char *what, const struct broker_error *err);

#endif
