#define _GNU_SOURCE
#include "CKeybrokerTLS.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

struct CKB_tls_context {
    SSL_CTX *ssl;
};

struct CKB_tls_conn {
    int fd;
    SSL *ssl;
};

int64_t CKB_tls_now_ms(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

static void set_err(char *err, size_t err_len, const char *fmt, const char *detail) {
    if (err == NULL || err_len == 0) return;
    snprintf(err, err_len, fmt, detail ? detail : "");
}

/// The first queued OpenSSL error as text (the queue is cleared).
static void openssl_reason(char *out, size_t out_len, unsigned long *code_out) {
    unsigned long code = ERR_get_error();
    if (code_out) *code_out = code;
    if (code == 0) {
        snprintf(out, out_len, "no detail from OpenSSL");
    } else {
        const char *reason = ERR_reason_error_string(code);
        if (reason) snprintf(out, out_len, "%s", reason);
        else ERR_error_string_n(code, out, out_len);
    }
    ERR_clear_error();
}

/// Refuses to prompt for a passphrase: the daemon has no terminal.
static int no_passphrase(char *buf, int size, int rwflag, void *u) {
    (void)buf; (void)size; (void)rwflag; (void)u;
    return 0;
}

CKB_tls_context *CKB_tls_context_new(const char *ca_file, const char *cert_file,
                                     const uint8_t *key_pem, size_t key_len, char *err, size_t err_len) {
    char reason[256];
    // OpenSSL writes with write(2): a server that goes away must give an error, not SIGPIPE.
    struct sigaction current;
    if (sigaction(SIGPIPE, NULL, &current) == 0 && current.sa_handler == SIG_DFL) signal(SIGPIPE, SIG_IGN);
    ERR_clear_error();
    SSL_CTX *ssl = SSL_CTX_new(TLS_client_method());
    if (ssl == NULL) { set_err(err, err_len, "OpenSSL cannot create a TLS context%s", NULL); return NULL; }
    SSL_CTX_set_min_proto_version(ssl, TLS1_2_VERSION);
    SSL_CTX_set_verify(ssl, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_mode(ssl, SSL_MODE_AUTO_RETRY | SSL_MODE_RELEASE_BUFFERS);
    if (SSL_CTX_load_verify_locations(ssl, ca_file, NULL) != 1) {
        openssl_reason(reason, sizeof reason, NULL);
        set_err(err, err_len, "kmip_ca_file cannot be read as PEM certificates: %s", reason);
        goto fail;
    }
    if (SSL_CTX_use_certificate_chain_file(ssl, cert_file) != 1) {
        openssl_reason(reason, sizeof reason, NULL);
        set_err(err, err_len, "kmip_client_cert_file cannot be read as a PEM certificate: %s", reason);
        goto fail;
    }
    if (key_len > 0x7fffffff) { set_err(err, err_len, "the client key is too large%s", NULL); goto fail; }
    BIO *bio = BIO_new_mem_buf(key_pem, (int)key_len);
    EVP_PKEY *key = bio ? PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL) : NULL;
    BIO_free(bio);
    if (key == NULL) {
        openssl_reason(reason, sizeof reason, NULL);
        set_err(err, err_len, "the client key is not an unencrypted PEM private key (%s); keybroker cannot ask for a passphrase", reason);
        goto fail;
    }
    int used = SSL_CTX_use_PrivateKey(ssl, key);
    EVP_PKEY_free(key);
    if (used != 1 || SSL_CTX_check_private_key(ssl) != 1) {
        openssl_reason(reason, sizeof reason, NULL);
        set_err(err, err_len, "the client key does not belong to the client certificate: %s", reason);
        goto fail;
    }
    CKB_tls_context *ctx = calloc(1, sizeof *ctx);
    if (ctx == NULL) goto fail;
    ctx->ssl = ssl;
    return ctx;
fail:
    SSL_CTX_free(ssl);
    return NULL;
}

void CKB_tls_context_free(CKB_tls_context *ctx) {
    if (ctx == NULL) return;
    SSL_CTX_free(ctx->ssl);
    free(ctx);
}

static int remaining_ms(int64_t deadline_ms) {
    int64_t left = deadline_ms - CKB_tls_now_ms();
    if (left <= 0) return 0;
    return left > 0x7fffffff ? 0x7fffffff : (int)left;
}

/// Waits until `fd` is ready for `events` or the deadline passes. 1 ready, 0 timed out, -1 error.
static int wait_fd(int fd, short events, int64_t deadline_ms) {
    for (;;) {
        int left = remaining_ms(deadline_ms);
        if (left == 0) return 0;
        struct pollfd p = { .fd = fd, .events = events };
        int n = poll(&p, 1, left);
        if (n > 0) return 1;
        if (n == 0) return 0;
        if (errno != EINTR) return -1;
    }
}

/// Resolves with getaddrinfo_a so a slow DNS server cannot hold us past the deadline.
static struct addrinfo *resolve(const char *host, const char *port, int64_t deadline_ms, int *status, char *err, size_t err_len) {
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV };
    struct addrinfo *result = NULL;
    if (getaddrinfo(host, port, &hints, &result) == 0) return result;
    hints.ai_flags = AI_NUMERICSERV | AI_ADDRCONFIG;
    struct gaicb *request = calloc(1, sizeof *request);
    if (request == NULL) { *status = CKB_TLS_IO; set_err(err, err_len, "out of memory%s", NULL); return NULL; }
    request->ar_name = strdup(host);
    request->ar_service = strdup(port);
    struct addrinfo *request_hints = malloc(sizeof hints);
    if (request->ar_name == NULL || request->ar_service == NULL || request_hints == NULL) {
        free((void *)request->ar_name); free((void *)request->ar_service); free(request_hints); free(request);
        *status = CKB_TLS_IO; set_err(err, err_len, "out of memory%s", NULL); return NULL;
    }
    *request_hints = hints;
    request->ar_request = request_hints;
    struct gaicb *list[1] = { request };
    if (getaddrinfo_a(GAI_NOWAIT, list, 1, NULL) != 0) {
        free((void *)request->ar_name); free((void *)request->ar_service); free(request_hints); free(request);
        *status = CKB_TLS_RESOLVE; set_err(err, err_len, "cannot start resolving %s", host); return NULL;
    }
    for (;;) {
        int left = remaining_ms(deadline_ms);
        struct timespec wait = { .tv_sec = left / 1000, .tv_nsec = (long)(left % 1000) * 1000000 };
        int rc = left > 0 ? gai_suspend((const struct gaicb *const *)list, 1, &wait) : EAI_AGAIN;
        if (rc == EAI_INTR) continue;
        int done = gai_error(request);
        if (done == EAI_INPROGRESS) {
            if (left > 0 && rc != EAI_AGAIN) continue;
            // Still running at the deadline: cancel it; a request that cannot be canceled is
            // left to finish on its own (its few bytes are not freed, so it never writes into freed memory).
            if (gai_cancel(request) == EAI_CANCELED) {
                free((void *)request->ar_name); free((void *)request->ar_service); free(request_hints); free(request);
            }
            *status = CKB_TLS_TIMEOUT;
            set_err(err, err_len, "resolving %s timed out", host);
            return NULL;
        }
        result = request->ar_result;
        free((void *)request->ar_name); free((void *)request->ar_service); free(request_hints); free(request);
        if (done != 0) {
            *status = CKB_TLS_RESOLVE;
            snprintf(err, err_len, "cannot resolve %s: %s", host, gai_strerror(done));
            return NULL;
        }
        return result;
    }
}

/// A non-blocking TCP connection to the first address that answers before the deadline.
static int tcp_connect(const char *host, const char *port, int64_t deadline_ms, int *status, char *err, size_t err_len) {
    struct addrinfo *addresses = resolve(host, port, deadline_ms, status, err, err_len);
    if (addresses == NULL) return -1;
    int fd = -1;
    int last_errno = ECONNREFUSED;
    for (struct addrinfo *a = addresses; a != NULL; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) { last_errno = errno; continue; }
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) break;
        if (errno == EINPROGRESS) {
            int ready = wait_fd(fd, POLLOUT, deadline_ms);
            if (ready == 1) {
                int so_error = 0;
                socklen_t len = sizeof so_error;
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &len);
                if (so_error == 0) break;
                last_errno = so_error;
            } else if (ready == 0) {
                close(fd);
                freeaddrinfo(addresses);
                *status = CKB_TLS_TIMEOUT;
                snprintf(err, err_len, "connecting timed out");
                return -1;
            } else {
                last_errno = errno;
            }
        } else {
            last_errno = errno;
        }
        close(fd);
        fd = -1;
    }
    freeaddrinfo(addresses);
    if (fd < 0) {
        *status = CKB_TLS_CONNECT;
        snprintf(err, err_len, "cannot connect: %s", strerror(last_errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    return fd;
}

/// TLS alerts a server sends when it does not accept the client's certificate.
static int is_client_cert_alert(unsigned long code) {
    if (ERR_GET_LIB(code) != ERR_LIB_SSL) return 0;
    switch (ERR_GET_REASON(code)) {
    case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_REVOKED:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
    case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
    case SSL_R_TLSV1_ALERT_ACCESS_DENIED:
    case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
        return 1;
    default:
        return 0;
    }
}

/// Classifies a failed SSL_* call; returns the status and writes the sentence.
static int ssl_failure(CKB_tls_conn *conn, int rc, const char *what, char *err, size_t err_len) {
    int ssl_error = SSL_get_error(conn->ssl, rc);
    char reason[256];
    unsigned long code = 0;
    if (ssl_error == SSL_ERROR_ZERO_RETURN) {
        ERR_clear_error();
        snprintf(err, err_len, "the server closed the connection during %s", what);
        return CKB_TLS_CLOSED;
    }
    if (ssl_error == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
        int saved = errno;
        snprintf(err, err_len, "the connection broke during %s: %s", what, saved ? strerror(saved) : "unexpected end of stream");
        return saved ? CKB_TLS_IO : CKB_TLS_CLOSED;
    }
    long verify = SSL_get_verify_result(conn->ssl);
    openssl_reason(reason, sizeof reason, &code);
    if (verify != X509_V_OK) {
        snprintf(err, err_len, "%s", X509_verify_cert_error_string(verify));
        return CKB_TLS_SERVER_CERT;
    }
    if (is_client_cert_alert(code)) {
        snprintf(err, err_len, "TLS alert from the server: %s", reason);
        return CKB_TLS_CLIENT_CERT;
    }
    snprintf(err, err_len, "TLS failure during %s: %s", what, reason);
    return CKB_TLS_PROTOCOL;
}

/// Runs one SSL_* step until it completes or the deadline passes.
static int drive(CKB_tls_conn *conn, int (*step)(SSL *, void *, size_t, size_t *), void *buf, size_t len, size_t *done,
                 int64_t deadline_ms, const char *what, char *err, size_t err_len) {
    for (;;) {
        ERR_clear_error();
        int rc = step(conn->ssl, buf, len, done);
        if (rc == 1) return CKB_TLS_OK;
        int ssl_error = SSL_get_error(conn->ssl, rc);
        short events;
        if (ssl_error == SSL_ERROR_WANT_READ) events = POLLIN;
        else if (ssl_error == SSL_ERROR_WANT_WRITE) events = POLLOUT;
        else return ssl_failure(conn, rc, what, err, err_len);
        int ready = wait_fd(conn->fd, events, deadline_ms);
        if (ready == 0) {
            snprintf(err, err_len, "%s timed out", what);
            return CKB_TLS_TIMEOUT;
        }
        if (ready < 0) {
            snprintf(err, err_len, "waiting for the server failed: %s", strerror(errno));
            return CKB_TLS_IO;
        }
    }
}

static int handshake_step(SSL *ssl, void *buf, size_t len, size_t *done) {
    (void)buf; (void)len; (void)done;
    return SSL_connect(ssl);
}

static int read_step(SSL *ssl, void *buf, size_t len, size_t *done) {
    return SSL_read_ex(ssl, buf, len, done);
}

static int write_step(SSL *ssl, void *buf, size_t len, size_t *done) {
    return SSL_write_ex(ssl, buf, len, done);
}

CKB_tls_conn *CKB_tls_connect(CKB_tls_context *ctx, const char *host, const char *port, int64_t deadline_ms,
                              int *status, char *err, size_t err_len) {
    *status = CKB_TLS_IO;
    int fd = tcp_connect(host, port, deadline_ms, status, err, err_len);
    if (fd < 0) return NULL;
    CKB_tls_conn *conn = calloc(1, sizeof *conn);
    SSL *ssl = SSL_new(ctx->ssl);
    if (conn == NULL || ssl == NULL) {
        free(conn);
        SSL_free(ssl);
        close(fd);
        *status = CKB_TLS_SETUP;
        snprintf(err, err_len, "OpenSSL cannot create a connection");
        return NULL;
    }
    conn->fd = fd;
    conn->ssl = ssl;
    SSL_set_fd(ssl, fd);
    unsigned char ip[16];
    int is_ip = inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1;
    int named;
    if (is_ip) {
        // An address is matched against the certificate's IP SANs, never its DNS names or CN.
        named = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host);
    } else {
        named = SSL_set1_host(ssl, host) && SSL_set_tlsext_host_name(ssl, host);
    }
    if (named != 1) {
        CKB_tls_close(conn);
        *status = CKB_TLS_SETUP;
        snprintf(err, err_len, "cannot set the host name to check");
        return NULL;
    }
    size_t unused = 0;
    int rc = drive(conn, handshake_step, NULL, 0, &unused, deadline_ms, "the TLS handshake", err, err_len);
    if (rc != CKB_TLS_OK) {
        CKB_tls_close(conn);
        *status = rc;
        return NULL;
    }
    *status = CKB_TLS_OK;
    return conn;
}

int CKB_tls_write(CKB_tls_conn *conn, const uint8_t *buf, size_t len, int64_t deadline_ms, char *err, size_t err_len) {
    size_t sent = 0;
    while (sent < len) {
        size_t n = 0;
        int rc = drive(conn, write_step, (void *)(buf + sent), len - sent, &n, deadline_ms, "sending the request", err, err_len);
        if (rc != CKB_TLS_OK) return rc;
        sent += n;
    }
    return CKB_TLS_OK;
}

int CKB_tls_read(CKB_tls_conn *conn, uint8_t *buf, size_t len, int64_t deadline_ms, char *err, size_t err_len) {
    size_t got = 0;
    while (got < len) {
        size_t n = 0;
        int rc = drive(conn, read_step, buf + got, len - got, &n, deadline_ms, "waiting for the answer", err, err_len);
        if (rc != CKB_TLS_OK) return rc;
        got += n;
    }
    return CKB_TLS_OK;
}

int CKB_tls_usable(CKB_tls_conn *conn) {
    if (SSL_pending(conn->ssl) > 0) return 0;  // unsolicited data: the stream is out of step
    struct pollfd p = { .fd = conn->fd, .events = POLLIN };
    int n = poll(&p, 1, 0);
    // Readable while idle means a close_notify, an EOF or an error: nothing we can use.
    return n == 0;
}

void CKB_tls_describe(CKB_tls_conn *conn, char *out, size_t out_len) {
    snprintf(out, out_len, "%s %s", SSL_get_version(conn->ssl), SSL_get_cipher_name(conn->ssl));
}

void CKB_tls_close(CKB_tls_conn *conn) {
    if (conn == NULL) return;
    if (conn->ssl) {
        SSL_shutdown(conn->ssl);  // one non-blocking attempt at close_notify
        SSL_free(conn->ssl);
    }
    if (conn->fd >= 0) close(conn->fd);
    free(conn);
}
