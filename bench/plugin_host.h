/* The part of mariadbd that a key-management plugin sees, for the tools that load the real
   keybroker_key_management.so without a server (IntegrationTests/plugin/plugin_driver.c and plugin_harness.c,
   bench/keybench.c): dlopen, the error-printing service, system variables set before init the
   way the server sets them, and changed afterwards through their update functions, under one
   lock, as SET GLOBAL does. */
#ifndef KEYBROKER_PLUGIN_HOST_H
#define KEYBROKER_PLUGIN_HOST_H

#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mysql/plugin_encryption.h>

struct host_sysvar_str { MYSQL_PLUGIN_VAR_HEADER; char **value; const char *def_val; };
struct host_sysvar_uint { MYSQL_PLUGIN_VAR_HEADER; unsigned *value; unsigned def_val, min, max, blk; };

/* Log lines and statement warnings: one line each on stderr. */
static inline void host_print_error(unsigned nr, const char *format, unsigned long flags, ...)
{
  va_list ap;
  (void) nr; (void) flags;
  va_start(ap, flags);
  vfprintf(stderr, format, ap);
  va_end(ap);
  fputc('\n', stderr);
  fflush(stderr);
}

static struct {
  void (*my_error_func)(unsigned, unsigned long, ...);
  void (*my_printf_error_func)(unsigned, const char *, unsigned long, ...);
  void (*my_printv_error_func)(unsigned, const char *, unsigned long, va_list);
} host_print_error_service = { NULL, host_print_error, NULL };

/* LOCK_global_system_variables: update functions run one at a time. */
static pthread_mutex_t host_variables_lock = PTHREAD_MUTEX_INITIALIZER;

static inline struct st_mysql_sys_var *host_find_var(struct st_maria_plugin *plugin, const char *name)
{
  for (struct st_mysql_sys_var **v = plugin->system_vars; *v; v++)
    if (!strcmp(((struct host_sysvar_str *) *v)->name, name))
      return *v;
  return NULL;
}

/* Every variable to its default, as the server does before init. */
static inline void host_set_defaults(struct st_maria_plugin *plugin)
{
  for (struct st_mysql_sys_var **v = plugin->system_vars; *v; v++)
  {
    struct host_sysvar_str *s = (struct host_sysvar_str *) *v;
    if ((s->flags & 0x7f) == PLUGIN_VAR_STR)
      *s->value = (char *) s->def_val;
    else if ((s->flags & 0x7f) == PLUGIN_VAR_INT)
      *((struct host_sysvar_uint *) *v)->value = ((struct host_sysvar_uint *) *v)->def_val;
  }
}

/* Before init: the value is stored, as from the option file. 0, or -1 for an unknown name. */
static inline int host_set_var(struct st_maria_plugin *plugin, const char *name, const char *value)
{
  struct st_mysql_sys_var *v = host_find_var(plugin, name);
  if (!v)
    return -1;
  struct host_sysvar_str *s = (struct host_sysvar_str *) v;
  if ((s->flags & 0x7f) == PLUGIN_VAR_STR)
    *s->value = strdup(value);
  else
    *((struct host_sysvar_uint *) v)->value = (unsigned) atoi(value);
  return 0;
}

/* After init: SET GLOBAL name = value, through the variable's update function. */
static inline int host_update_var(struct st_maria_plugin *plugin, const char *name, int value)
{
  struct host_sysvar_uint *u = (struct host_sysvar_uint *) host_find_var(plugin, name);
  if (!u)
    return -1;
  pthread_mutex_lock(&host_variables_lock);
  if (u->update)
    u->update(NULL, (struct st_mysql_sys_var *) u, u->value, &value);
  else
    *u->value = (unsigned) value;
  pthread_mutex_unlock(&host_variables_lock);
  return 0;
}

/* Loads the plugin and fills in the service it uses; NULL with a message on stderr. */
static inline struct st_maria_plugin *host_load_plugin(const char *so)
{
  void *handle = dlopen(so, RTLD_NOW | RTLD_LOCAL);
  if (!handle)
  {
    fprintf(stderr, "%s\n", dlerror());
    return NULL;
  }
  void **service = dlsym(handle, "my_print_error_service");
  struct st_maria_plugin *plugin = dlsym(handle, "_maria_plugin_declarations_");
  if (!service || !plugin || plugin->type != MariaDB_ENCRYPTION_PLUGIN)
  {
    fprintf(stderr, "%s is not an encryption plugin\n", so);
    return NULL;
  }
  *service = &host_print_error_service;
  host_set_defaults(plugin);
  return plugin;
}

/* SHOW GLOBAL STATUS: calls the plugin's SHOW_FUNC and prints "name value" pairs on one line. */
static inline void host_print_status(struct st_maria_plugin *plugin, FILE *out)
{
  typedef int (*show_func)(void *, struct st_mysql_show_var *, void *, void *, int);
  char buff[SHOW_VAR_FUNC_BUFF_SIZE] __attribute__((aligned(16)));
  struct st_mysql_show_var result;
  struct st_mysql_show_var *status = plugin->status_vars;
  ((show_func) status->value)(NULL, &result, buff, NULL, 0);
  fprintf(out, "status");
  for (struct st_mysql_show_var *v = (struct st_mysql_show_var *) result.value; v->name; v++)
  {
    if (v->type == SHOW_ULONGLONG)
      fprintf(out, " %s %llu", v->name, *(unsigned long long *) v->value);
    else if (v->type == SHOW_BOOL)
      fprintf(out, " %s %d", v->name, *(_Bool *) v->value);
  }
  fprintf(out, "\n");
}

#endif
