// Thin wrappers over system OpenSSL (libssl) for TLS client connections with a client
// certificate: the KMIP provider's transport. Only prefixed names leave this module. Every call
// that waits takes a deadline (CLOCK_MONOTONIC milliseconds) and never waits past it.
#ifndef CKEYBROKER_TLS_H
#define CKEYBROKER_TLS_H

#include <stddef.h>
#include <stdint.h>

/// What went wrong, so the caller can write one line a DBA can act on.
enum CKB_tls_status {
    CKB_TLS_OK = 0,
    CKB_TLS_TIMEOUT = 1,          // the deadline passed (resolving, connecting, handshaking, reading)
    CKB_TLS_RESOLVE = 2,          // the host name does not resolve
    CKB_TLS_CONNECT = 3,          // refused, unreachable
    CKB_TLS_SERVER_CERT = 4,      // the server's certificate does not verify (chain or name)
    CKB_TLS_CLIENT_CERT = 5,      // the server refused our certificate (a TLS alert)
    CKB_TLS_PROTOCOL = 6,         // any other TLS failure (no common version or cipher, bad record)
    CKB_TLS_CLOSED = 7,           // the server closed the connection
    CKB_TLS_IO = 8,               // a socket error
    CKB_TLS_SETUP = 9,            // the local CA file, certificate or key cannot be used
};

typedef struct CKB_tls_context CKB_tls_context;
typedef struct CKB_tls_conn CKB_tls_conn;

/// TLS 1.2 or later, peer verification against `ca_file` only, the client certificate chain from
/// `cert_file` and its private key from `key_pem` (PEM, unencrypted; the caller zeroes it).
/// On failure returns NULL with a sentence in `err`.
CKB_tls_context *CKB_tls_context_new(const char *ca_file, const char *cert_file,
                                     const uint8_t *key_pem, size_t key_len, char *err, size_t err_len);
void CKB_tls_context_free(CKB_tls_context *ctx);

/// Resolves, connects and handshakes, all before `deadline_ms`; checks the certificate against
/// `host` (a DNS name, or an IP address matched against the IP SANs). On failure returns NULL,
/// sets `*status` and writes a sentence in `err`.
CKB_tls_conn *CKB_tls_connect(CKB_tls_context *ctx, const char *host, const char *port, int64_t deadline_ms,
                              int *status, char *err, size_t err_len);

/// Writes all of `buf`. Returns CKB_TLS_OK or a failure status with a sentence in `err`.
int CKB_tls_write(CKB_tls_conn *conn, const uint8_t *buf, size_t len, int64_t deadline_ms, char *err, size_t err_len);

/// Reads exactly `len` bytes. Returns CKB_TLS_OK or a failure status with a sentence in `err`.
int CKB_tls_read(CKB_tls_conn *conn, uint8_t *buf, size_t len, int64_t deadline_ms, char *err, size_t err_len);

/// 1 when an idle connection can still be used (the server has not closed it), else 0.
int CKB_tls_usable(CKB_tls_conn *conn);

/// The negotiated protocol and cipher, e.g. "TLSv1.2 ECDHE-ECDSA-AES256-GCM-SHA384".
void CKB_tls_describe(CKB_tls_conn *conn, char *out, size_t out_len);

void CKB_tls_close(CKB_tls_conn *conn);

/// CLOCK_MONOTONIC in milliseconds, the clock of every deadline.
int64_t CKB_tls_now_ms(void);

#endif
