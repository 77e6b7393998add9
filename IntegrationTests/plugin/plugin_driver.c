/* Drives the real keybroker_key_management.so, loaded as mariadbd loads it (bench/plugin_host.h),
   one command per line on stdin, one answer line per command on stdout; the plugin's log lines
   go to stderr. Used by IntegrationTests/plugin/test_plugin_misbehaving_broker.py and test_plugin_sanitizers.py:

     plugin_driver PLUGIN_SO

   set NAME VALUE          before init: as in the option file; after: SET GLOBAL (update function)
   init | deinit           -> init RC MS | deinit RC MS
   latest ID               -> latest VERSION MS
   get ID VERSION          -> get RC LENGTH HEX MS
   range FIRST LAST        -> range INVALID MS       get_latest_key_version and get_key for each id
   threads N FIRST STEP    -> threads V:MS ...       N threads miss FIRST, FIRST+STEP, ... at once
   rotate N                -> rotate MS              SET GLOBAL ..._rotate_key = N
   cpu MS                  -> cpu CPU_SECONDS WALL_SECONDS   of this process, while it sleeps
   status                  -> status NAME VALUE ...
   texts                   -> texts<TAB>NAME<TAB>VALUE...  the status variables that are text
   limit_memory MB         -> limit_memory           address space: what is mapped now plus MB
   busy_deinit MISSES HITS FIRST  -> busy_deinit MS BAD   deinit while lookups run on other threads
   hits_during_misses N FIRST MS  -> hits_during_misses HITS WORST_MS   key 1 looked up for MS ms
                                                     while N threads miss FIRST, FIRST+1, ...
   stress MS READERS IDS   -> stress INVALID CALLS   readers over ids 1..IDS, rotations, TTL and
                                                     timeout changes, all at once
*/
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "plugin_host.h"

#define INVALID ENCRYPTION_KEY_VERSION_INVALID

static struct st_maria_plugin *plugin;
static struct st_mariadb_encryption *enc;
static int initialized;

static double now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double ms_since(double t0)
{
  return (now() - t0) * 1000;
}

struct miss { pthread_t thread; unsigned key_id, version; double ms; };

static void *miss_thread(void *arg)
{
  struct miss *m = arg;
  const double t0 = now();
  m->version = enc->get_latest_key_version(m->key_id);
  m->ms = ms_since(t0);
  return NULL;
}

/* Cached lookups of key 1 on this thread while n others wait for the broker: none may wait too. */
static void hits_during_misses(int n, unsigned first, int ms)
{
  struct miss *m = calloc((size_t) n, sizeof *m);
  for (int i = 0; i < n; i++)
  {
    m[i].key_id = first + (unsigned) i;
    pthread_create(&m[i].thread, NULL, miss_thread, &m[i]);
  }
  const unsigned version = enc->get_latest_key_version(1);
  double worst = 0;
  long hits = 0;
  for (const double end = now() + ms / 1000.0; now() < end; hits++)
  {
    unsigned char key[32];
    unsigned len = sizeof key;
    const double t0 = now();
    if (enc->get_latest_key_version(1) != version || enc->get_key(1, version, key, &len))
      break;
    if (now() - t0 > worst)
      worst = now() - t0;
  }
  for (int i = 0; i < n; i++)
    pthread_join(m[i].thread, NULL);
  printf("hits_during_misses %ld %.1f\n", hits, worst * 1000);
  free(m);
}

/* The status variables that are text (SHOW_CHAR), tab-separated: their values have spaces. */
static void print_texts(void)
{
  typedef int (*show_func)(void *, struct st_mysql_show_var *, void *, void *, int);
  char buff[SHOW_VAR_FUNC_BUFF_SIZE] __attribute__((aligned(16)));
  struct st_mysql_show_var result;
  ((show_func) plugin->status_vars->value)(NULL, &result, buff, NULL, 0);
  printf("texts");
  for (struct st_mysql_show_var *v = (struct st_mysql_show_var *) result.value; v->name; v++)
    if (v->type == SHOW_CHAR)
      printf("\t%s\t%s", v->name, (const char *) v->value);
  printf("\n");
}

static void threads(int n, unsigned first, unsigned step)
{
  struct miss *m = calloc((size_t) n, sizeof *m);
  for (int i = 0; i < n; i++)
  {
    m[i].key_id = first + (unsigned) i * step;
    pthread_create(&m[i].thread, NULL, miss_thread, &m[i]);
  }
  printf("threads");
  for (int i = 0; i < n; i++)
  {
    pthread_join(m[i].thread, NULL);
    printf(" %u:%.0f", m[i].version, m[i].ms);
  }
  printf("\n");
  free(m);
}

/* ---- concurrent use ------------------------------------------------------------------------ */

static atomic_int running;
static atomic_ullong bad, calls;
static unsigned stress_ids;

/* Reads ids 1..stress_ids; a cached key must never come back INVALID, and its bytes must not
   change between two reads. */
static void *reader(void *arg)
{
  unsigned seed = (unsigned) (uintptr_t) arg;
  unsigned known[64] = { 0 };
  unsigned char first[64][32];
  while (atomic_load(&running))
  {
    seed = seed * 1103515245u + 12345u;
    const unsigned id = 1 + (seed >> 8) % stress_ids;
    const unsigned v = enc->get_latest_key_version(id);
    unsigned char key[32];
    unsigned len = sizeof key;
    if (v == INVALID || enc->get_key(id, v, key, &len))
      atomic_fetch_add(&bad, 1);
    else if (id < 64 && v == 1)
    {
      if (!known[id])
      {
        memcpy(first[id], key, len);
        known[id] = len;
      }
      else if (memcmp(first[id], key, len))
        atomic_fetch_add(&bad, 1);
    }
    atomic_fetch_add_explicit(&calls, 1, memory_order_relaxed);
  }
  return NULL;
}

static void *changer(void *arg)
{
  const int what = (int) (uintptr_t) arg;
  unsigned seed = 7u + (unsigned) what;
  while (atomic_load(&running))
  {
    seed = seed * 1103515245u + 12345u;
    if (what == 0)
      host_update_var(plugin, "rotate_key", (int) (1 + (seed >> 8) % stress_ids));
    else if (what == 1)
      host_update_var(plugin, "version_ttl", (int) (100 + (seed >> 8) % 400));
    else
      host_update_var(plugin, "request_timeout", (int) (500 + (seed >> 8) % 1500));
    usleep(what == 0 ? 50000 : 20000);
  }
  return NULL;
}

static void stress(int ms, int readers, unsigned ids)
{
  pthread_t t[64];
  int n = 0;
  stress_ids = ids;
  for (unsigned id = 1; id <= ids; id++)
    enc->get_latest_key_version(id);
  atomic_store(&running, 1);
  for (int i = 0; i < readers && n < 60; i++)
    pthread_create(&t[n++], NULL, reader, (void *) (uintptr_t) (i + 1));
  for (int i = 0; i < 3; i++)
    pthread_create(&t[n++], NULL, changer, (void *) (uintptr_t) i);
  usleep((useconds_t) ms * 1000);
  atomic_store(&running, 0);
  for (int i = 0; i < n; i++)
    pthread_join(t[i], NULL);
  printf("stress %llu %llu\n", atomic_load(&bad), atomic_load(&calls));
}

/* Lookups in flight on other threads while deinit runs: misses of never-seen keys (waiting for
   the broker) and hits of key 1. Hits may answer INVALID once the plugin is gone, never bytes
   that are not key 1's. */
static void *hitter(void *arg)
{
  const unsigned char *expected = arg;
  while (atomic_load(&running))
  {
    unsigned char key[32];
    unsigned len = sizeof key;
    const unsigned v = enc->get_latest_key_version(1);
    if (v != INVALID && enc->get_key(1, v, key, &len) == 0 && memcmp(key, expected, len))
      atomic_fetch_add(&bad, 1);
  }
  return NULL;
}

static void *misser(void *arg)
{
  unsigned id = (unsigned) (uintptr_t) arg;
  while (atomic_load(&running))
  {
    unsigned char key[32];
    unsigned len = sizeof key;
    enc->get_latest_key_version(id);
    enc->get_key(id, 1, key, &len);
    id += 1000;
  }
  return NULL;
}

static void busy_deinit(int misses, int hits, unsigned first)
{
  static unsigned char expected[32];
  unsigned len = sizeof expected;
  pthread_t t[64];
  int n = 0;
  enc->get_key(1, enc->get_latest_key_version(1), expected, &len);
  atomic_store(&running, 1);
  for (int i = 0; i < misses && n < 32; i++)
    pthread_create(&t[n++], NULL, misser, (void *) (uintptr_t) (first + (unsigned) i));
  for (int i = 0; i < hits && n < 64; i++)
    pthread_create(&t[n++], NULL, hitter, expected);
  usleep(300000);  /* the misses are waiting for the broker */
  const double t0 = now();
  plugin->deinit(NULL);
  const double ms = ms_since(t0);
  initialized = 0;
  usleep(100000);  /* lookups go on after deinit, as a careless host's would */
  atomic_store(&running, 0);
  for (int i = 0; i < n; i++)
    pthread_join(t[i], NULL);
  printf("busy_deinit %.0f %llu\n", ms, atomic_load(&bad));
}

/* ---- the command loop ---------------------------------------------------------------------- */

static double cpu_seconds(void)
{
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static void command(char *line)
{
  char name[64], value[4096];
  unsigned a, b, c;
  int n, m;
  double t0 = now();
  if (sscanf(line, "set %63s %4095s", name, value) == 2)
  {
    if (initialized)
      host_update_var(plugin, name, atoi(value));
    else if (host_set_var(plugin, name, value))
      fprintf(stderr, "driver: no variable %s\n", name);
    printf("set\n");
  }
  else if (!strcmp(line, "init"))
  {
    const int rc = plugin->init(NULL);
    initialized = rc == 0;
    printf("init %d %.0f\n", rc, ms_since(t0));
  }
  else if (!strcmp(line, "deinit"))
  {
    const int rc = plugin->deinit(NULL);
    initialized = 0;
    printf("deinit %d %.0f\n", rc, ms_since(t0));
  }
  else if (sscanf(line, "latest %u", &a) == 1)
  {
    const unsigned v = enc->get_latest_key_version(a);
    printf("latest %u %.0f\n", v, ms_since(t0));
  }
  else if (sscanf(line, "get %u %u", &a, &b) == 2)
  {
    unsigned char key[64];
    unsigned len = sizeof key;
    const unsigned rc = enc->get_key(a, b, key, &len);
    printf("get %u %u ", rc, len);
    for (unsigned i = 0; rc == 0 && i < len; i++)
      printf("%02x", key[i]);
    printf("%s %.0f\n", rc == 0 ? "" : "-", ms_since(t0));
  }
  else if (sscanf(line, "range %u %u", &a, &b) == 2)
  {
    unsigned long long invalid = 0;
    for (unsigned id = a; id <= b; id++)
    {
      unsigned char key[32];
      unsigned len = sizeof key;
      const unsigned v = enc->get_latest_key_version(id);
      invalid += v == INVALID || enc->get_key(id, v, key, &len) != 0;
    }
    printf("range %llu %.0f\n", invalid, ms_since(t0));
  }
  else if (sscanf(line, "threads %d %u %u", &n, &a, &b) == 3)
    threads(n, a, b);
  else if (sscanf(line, "rotate %d", &n) == 1)
  {
    host_update_var(plugin, "rotate_key", n);
    printf("rotate %.0f\n", ms_since(t0));
  }
  else if (sscanf(line, "cpu %d", &n) == 1)
  {
    const double c0 = cpu_seconds();
    usleep((useconds_t) n * 1000);
    printf("cpu %.3f %.3f\n", cpu_seconds() - c0, now() - t0);
  }
  else if (!strcmp(line, "status"))
    host_print_status(plugin, stdout);
  else if (!strcmp(line, "texts"))
    print_texts();
  else if (sscanf(line, "limit_memory %d", &n) == 1)
  {
    unsigned long pages = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f || fscanf(f, "%lu", &pages) != 1)
      pages = 0;
    if (f)
      fclose(f);
    const struct rlimit limit = { pages * 4096 + (rlim_t) n * 1048576, RLIM_INFINITY };
    printf("limit_memory %d\n", setrlimit(RLIMIT_AS, &limit));
  }
  else if (sscanf(line, "hits_during_misses %d %u %d", &n, &a, &m) == 3)
    hits_during_misses(n, a, m);
  else if (sscanf(line, "busy_deinit %d %d %u", &n, &m, &a) == 3)
    busy_deinit(n, m, a);
  else if (sscanf(line, "stress %d %d %u", &n, &m, &c) == 3)
    stress(n, m, c);
  else
    printf("unknown %s\n", line);
  /* The answer is still in stdout's buffer: the marker on stderr tells the test that every log
     line of this command has been read by the time the answer arrives. */
  fputs("\001done\n", stderr);
  fflush(stderr);
  fflush(stdout);
}

int main(int argc, char **argv)
{
  if (argc != 2)
    return 2;
  if (!(plugin = host_load_plugin(argv[1])))
    return 1;
  enc = plugin->info;
  char line[8192];
  while (fgets(line, sizeof line, stdin))
  {
    line[strcspn(line, "\n")] = 0;
    if (*line)
      command(line);
  }
  if (initialized)
    plugin->deinit(NULL);
  return 0;
}
