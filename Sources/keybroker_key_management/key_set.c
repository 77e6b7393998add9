/* Copyright (c) 2025 keybroker authors. GPL-2.0 (see plugin.c). */
/* The datadir's record of its key set, and the check at start (key_set.h). */
#define _GNU_SOURCE
#include "key_set.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "broker_client.h"
#include "messages.h"

#define RECORD_TEMPORARY "." KEY_SET_RECORD ".tmp"

enum record { RECORD_MISSING, RECORD_FOUND, RECORD_UNREADABLE, RECORD_DAMAGED };

/* The `key_set=` line of the record into recorded; errno for RECORD_UNREADABLE. */
static enum record read_record(char recorded[BROKER_MAX_KEY_SET + 1])
{
  /* No link followed, no wait on a FIFO. */
  const int fd= open(KEY_SET_RECORD, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0)
    return errno == ENOENT ? RECORD_MISSING : RECORD_UNREADABLE;
  char text[2048];
  struct stat st;
  ssize_t n= -1;
  if (fstat(fd, &st) == 0)
  {
    if (S_ISREG(st.st_mode))
      n= read(fd, text, sizeof text - 1);
    else
      errno= EINVAL;
  }
  const int e= errno;
  close(fd);
  if (n < 0)
  {
    errno= e;
    return RECORD_UNREADABLE;
  }
  text[n]= 0;
  for (char *line= text; line && *line;)
  {
    char *end= strchr(line, '\n');
    if (end)
      *end= 0;
    if (!strncmp(line, "key_set=", 8))
    {
      if (!broker_valid_key_set((const unsigned char *) line + 8, strlen(line + 8)))
        return RECORD_DAMAGED;
      strcpy(recorded, line + 8);
      return RECORD_FOUND;
    }
    line= end ? end + 1 : NULL;
  }
  return RECORD_DAMAGED;
}

/* Temporary file, fsync, rename, fsync of the directory: a crash leaves the old or the new. */
static int write_record(const char *key_set)
{
  char text[512 + BROKER_MAX_NAME];
  const int length= snprintf(text, sizeof text,
    "# keybroker_key_management: the key set this datadir's encrypted data was written with.\n"
    "# Checked at every start; to move to another key set on purpose, see\n"
    "# keybroker_key_management_adopt_key_set in keybroker's docs/mariadb.md.\n"
    "key_set=%s\ninstance=%s\n", key_set, config.instance);
  const int fd= open(RECORD_TEMPORARY, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW,
                     0640);
  if (fd < 0)
    return -1;
  for (int written= 0; written < length;)
  {
    const ssize_t n= write(fd, text + written, (size_t) (length - written));
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
    {
      const int e= n < 0 ? errno : EIO;
      close(fd);
      unlink(RECORD_TEMPORARY);
      errno= e;
      return -1;
    }
    written+= (int) n;
  }
  if (fsync(fd) || close(fd) || rename(RECORD_TEMPORARY, KEY_SET_RECORD))
  {
    const int e= errno;
    unlink(RECORD_TEMPORARY);
    errno= e;
    return -1;
  }
  const int dir= open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0)
  {
    (void) fsync(dir);
    close(dir);
  }
  return 0;
}

int key_set_guard(const char *served, const char *adopt)
{
  char datadir[PATH_MAX], recorded[BROKER_MAX_KEY_SET + 1];
  if (!messages_in_server())
  {
    if (served[0])
      log_line(SEVERITY_NOTE, "key set %s of instance \"%s\" (outside mariadbd the datadir's "
               "record is not read)", served, config.instance);
    return 0;
  }
  if (!served[0])
  {
    log_line(SEVERITY_WARNING, "key broker at %s did not name its key set (keybrokerd older "
             "than the plugin, or INFO failed): this datadir's key set is not checked",
             config.socket_path);
    return 0;
  }
  if (!getcwd(datadir, sizeof datadir))
    snprintf(datadir, sizeof datadir, "the datadir");
  switch (read_record(recorded))
  {
  case RECORD_MISSING:
    if (write_record(served))
    {
      log_line(SEVERITY_ERROR, "cannot record key set %s in %s/" KEY_SET_RECORD ": %s — not "
               "starting without a record of the datadir's key set", served, datadir,
               strerror(errno));
      return -1;
    }
    log_line(SEVERITY_NOTE, "recorded key set %s of instance \"%s\" in %s/" KEY_SET_RECORD
             "; from now on this datadir starts only with this key set", served,
             config.instance, datadir);
    return 0;
  case RECORD_UNREADABLE:
    log_line(SEVERITY_ERROR, "cannot read %s/" KEY_SET_RECORD ": %s — not starting, since "
             "this datadir's key set cannot be checked", datadir, strerror(errno));
    return -1;
  case RECORD_DAMAGED:
    log_line(SEVERITY_ERROR, "%s/" KEY_SET_RECORD " names no key set (no key_set= line of 1 "
             "to %d letters, digits, '.', '_' or '-') — not starting: restore the file, or "
             "remove it to record the key set the broker serves now (%s)", datadir,
             BROKER_MAX_KEY_SET, served);
    return -1;
  case RECORD_FOUND:
    break;
  }
  if (!strcmp(recorded, served))
  {
    log_line(SEVERITY_NOTE, "key set %s of instance \"%s\", as recorded in %s/" KEY_SET_RECORD,
             served, config.instance, datadir);
    return 0;
  }
  if (adopt && !strcmp(adopt, served))
  {
    if (write_record(served))
    {
      log_line(SEVERITY_ERROR, "cannot record key set %s in %s/" KEY_SET_RECORD ": %s", served,
               datadir, strerror(errno));
      return -1;
    }
    log_line(SEVERITY_WARNING, "adopted key set %s of instance \"%s\" for this datadir, which "
             "had key set %s, as keybroker_key_management_adopt_key_set says; recorded in %s/"
             KEY_SET_RECORD, served, config.instance, recorded, datadir);
    return 0;
  }
  /* One line, within the server's 512-byte message: both identities and what to do. */
  log_line(SEVERITY_ERROR, "the broker serves key set %s for instance \"%s\", but this datadir "
           "was encrypted with key set %s (its " KEY_SET_RECORD "): not starting rather than "
           "create new keys for old data — give the broker back the store of key set %s, or, "
           "for a planned move, start once with keybroker_key_management_adopt_key_set=%s",
           served, config.instance, recorded, recorded, served);
  return -1;
}
