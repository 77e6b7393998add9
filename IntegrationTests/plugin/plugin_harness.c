/* Loads keybroker_key_management.so the way mariadbd does (bench/plugin_host.h: dlopen, service
   pointers, system variables, init) and checks the lookup contract directly. Driven by test_plugin_harness.py:

     plugin_harness PLUGIN_SO BROKER_SOCKET

   prints "name value" lines; waits for a line on stdin ("go") before the broker-away checks, so
   that the test can stop the broker in between. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "plugin_host.h"

static struct st_mariadb_encryption *enc;

static double now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static unsigned version1;
static long hits_in_strict_mode;

/* Seccomp strict mode: any system call but read, write, _exit, sigreturn kills the process. */
static void *strict_lookups(void *arg)
{
  int fd= *(int *) arg;
  unsigned char key[32];
  long n= 0;
  if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT))
    return NULL;
  for (int i= 0; i < 1000000; i++)
  {
    unsigned len= sizeof key;
    if (enc->get_latest_key_version(1) == version1 && enc->get_key(1, version1, key, &len) == 0)
      n++;
  }
  hits_in_strict_mode= n;
  (void) !write(fd, "x", 1);
  syscall(SYS_exit, 0);  /* not exit_group, which strict mode forbids */
  return NULL;
}

static double miss_seconds;
static unsigned miss_result;

static void *miss(void *arg)
{
  (void) arg;
  double t0= now();
  miss_result= enc->get_latest_key_version(424242);
  miss_seconds= now() - t0;
  return NULL;
}

int main(int argc, char **argv)
{
  if (argc != 3)
    return 2;
  struct st_maria_plugin *plugin= host_load_plugin(argv[1]);
  void *so= dlopen(argv[1], RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD);
  int *interface= so ? dlsym(so, "_maria_plugin_interface_version_") : NULL;
  if (!plugin || !interface)
    return 1;
  printf("interface %d\n", *interface == MARIA_PLUGIN_INTERFACE_VERSION);
  printf("type %d\n", plugin->type == MariaDB_ENCRYPTION_PLUGIN);
  printf("name %s\n", plugin->name);
  printf("license %d\n", plugin->license == PLUGIN_LICENSE_GPL);
  printf("maturity %d\n", plugin->maturity == MariaDB_PLUGIN_MATURITY_STABLE);
  enc= plugin->info;
  printf("crypt_functions_null %d\n", !enc->crypt_ctx_size && !enc->crypt_ctx_init &&
         !enc->crypt_ctx_update && !enc->crypt_ctx_finish && !enc->encrypted_length);

  host_set_var(plugin, "socket", argv[2]);
  host_set_var(plugin, "request_timeout", "1500");
  host_set_var(plugin, "version_ttl", "100");
  printf("init %d\n", plugin->init(NULL));

  version1= enc->get_latest_key_version(1);
  printf("latest_1 %u\n", version1);
  printf("latest_0 %u\n", enc->get_latest_key_version(0));

  unsigned char key[64];
  unsigned len= 0;
  unsigned rc= enc->get_key(1, version1, NULL, &len);
  printf("size_query %u %u\n", rc, len);
  len= 16;
  memset(key, 0xAA, sizeof key);
  rc= enc->get_key(1, version1, key, &len);
  printf("small_buffer %u %u\n", rc, len);
  len= sizeof key;
  rc= enc->get_key(1, version1, key, &len);
  printf("get_key %u %u ", rc, len);
  for (unsigned i= 0; i < len; i++)
    printf("%02x", key[i]);
  printf("\n");
  printf("untouched_tail %d\n", key[32] == 0xAA);
  len= sizeof key;
  printf("unknown_version %u\n", enc->get_key(1, version1 + 1000, key, &len));
  fflush(stdout);

  int fds[2];
  pthread_t t;
  char c;
  if (pipe(fds) || pthread_create(&t, NULL, strict_lookups, &fds[1]))
    return 1;
  printf("strict_mode_hits %ld\n", read(fds[0], &c, 1) == 1 ? hits_in_strict_mode : -1L);
  pthread_join(t, NULL);
  fflush(stdout);

  /* The test stops the broker now. */
  char line[16];
  if (!fgets(line, sizeof line, stdin))
    return 1;

  /* A key never seen blocks its caller up to request_timeout; cached lookups go on meanwhile. */
  pthread_create(&t, NULL, miss, NULL);
  double worst= 0, t_end= now() + 1.0;
  long n= 0;
  while (now() < t_end)
  {
    double t0= now();
    unsigned len2= sizeof key;
    if (enc->get_latest_key_version(1) != version1 || enc->get_key(1, version1, key, &len2))
      break;
    double dt= now() - t0;
    if (dt > worst)
      worst= dt;
    n++;
  }
  pthread_join(t, NULL);
  printf("hits_during_miss %ld\n", n);
  printf("worst_hit_seconds %.6f\n", worst);
  printf("miss %u %.3f\n", miss_result, miss_seconds);
  /* version_ttl is 100 ms; the broker has been away for more than a second. */
  printf("latest_1_past_ttl %u\n", enc->get_latest_key_version(1));
  printf("deinit %d\n", plugin->deinit(NULL));
  return 0;
}
