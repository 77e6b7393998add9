// Thin wrappers over libcurl's easy interface. libcurl's setopt/getinfo are variadic, which Swift
// cannot call; these take one typed argument each. Only prefixed names leave this module.
#ifndef CKEYBROKER_CURL_H
#define CKEYBROKER_CURL_H

#include <stddef.h>
#include <stdint.h>

typedef struct CKB_curl CKB_curl;

/// A response body collected by libcurl's write callback into malloc'd memory, which
/// `CKB_curl_body_clear` zeroes before freeing (bodies may hold key material or credentials).
typedef struct {
    uint8_t *data;
    size_t length;
    size_t capacity;
    /// Bodies larger than this fail the transfer (a misbehaving endpoint cannot exhaust memory).
    size_t limit;
    int overflowed;
} CKB_curl_body;

/// curl_global_init(CURL_GLOBAL_DEFAULT) once per process; returns 0 (CURLE_OK) on success.
int CKB_curl_global_init(void);

/// A new easy handle (NULL when out of memory). Connections stay open between transfers on the
/// same handle, so reusing a handle reuses its connection.
CKB_curl *CKB_curl_easy_init(void);
void CKB_curl_easy_cleanup(CKB_curl *handle);

/// Resets every option of the handle for the next transfer; keeps its connections.
void CKB_curl_easy_reset(CKB_curl *handle);

/// Options used by keybroker, mapped to libcurl's CURLOPT_* by these constants.
enum {
    CKB_OPT_URL = 1,
    CKB_OPT_CUSTOMREQUEST,
    CKB_OPT_NOSIGNAL,
    CKB_OPT_CONNECTTIMEOUT_MS,
    CKB_OPT_TIMEOUT_MS,
    CKB_OPT_POST,
    CKB_OPT_HTTPGET,
    CKB_OPT_FOLLOWLOCATION,
    CKB_OPT_PROTOCOLS_HTTP_HTTPS,
    CKB_OPT_NOPROXY,
    CKB_OPT_ACCEPT_ENCODING,
    CKB_OPT_TCP_KEEPALIVE,
};

/// Sets a long-valued option; returns the CURLcode.
int CKB_curl_setopt_long(CKB_curl *handle, int option, long value);
/// Sets a string option (libcurl copies it); returns the CURLcode.
int CKB_curl_setopt_string(CKB_curl *handle, int option, const char *value);

/// Sends `length` bytes from `data` as the request body. libcurl does not copy them: they must stay
/// valid until the transfer ends.
int CKB_curl_set_body(CKB_curl *handle, const uint8_t *data, size_t length);

/// Request headers, "Name: value" each. The list is owned by the handle until the next reset
/// or cleanup; the strings are copied.
int CKB_curl_set_headers(CKB_curl *handle, const char *const *headers, size_t count);

/// Runs the transfer, collecting the body into `body`. Returns the CURLcode; on failure `error`
/// (at least 256 bytes) holds libcurl's message.
int CKB_curl_perform(CKB_curl *handle, CKB_curl_body *body, char *error, size_t error_size);

/// HTTP status of the last transfer (0 when none).
long CKB_curl_response_code(CKB_curl *handle);

/// The value of response header `name` (case-insensitive; the last response of the transfer)
/// copied into `value` (NUL-terminated, cut at `size` - 1 bytes). Returns its length, or -1 when
/// the header is absent. For request ids, which AWS sends only as headers.
long CKB_curl_response_header(CKB_curl *handle, const char *name, char *value, size_t size);

/// Zeroes and frees the body's memory.
void CKB_curl_body_clear(CKB_curl_body *body);

/// CURLE_OPERATION_TIMEDOUT and friends, so Swift can tell transient failures apart.
int CKB_curl_code_is_timeout(int code);

#endif
