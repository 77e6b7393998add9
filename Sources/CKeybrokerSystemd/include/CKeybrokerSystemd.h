// Thin wrappers over libsystemd: socket activation, sd_notify, watchdog, the journal.
#ifndef CKEYBROKER_SYSTEMD_H
#define CKEYBROKER_SYSTEMD_H

#include <stdint.h>

/// Number of sockets passed by systemd (LISTEN_FDS for this pid), 0 when none, or -errno.
/// Unsets the LISTEN_* variables so child processes don't see them.
int CKB_listen_fds(void);
/// The first passed descriptor (SD_LISTEN_FDS_START, 3).
int CKB_listen_fds_start(void);
/// 1 when `fd` is a listening AF_UNIX stream socket, 0 when not, -errno on error.
int CKB_is_unix_stream_listener(int fd);
/// sd_notify(0, state). Returns >0 when sent, 0 when NOTIFY_SOCKET is unset, -errno on error.
int CKB_notify(const char *state);
/// Watchdog interval in microseconds when the service manager expects pings, else 0.
uint64_t CKB_watchdog_usec(void);
/// 1 when stderr is connected to the journal (JOURNAL_STREAM matches), else 0.
int CKB_stderr_is_journal(void);
/// Sends one structured entry; `fields` holds `count` strings of the form "NAME=value".
/// Returns 0 or -errno.
int CKB_journal_send(const char *const *fields, int count);

#endif
