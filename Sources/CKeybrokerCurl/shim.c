#include "CKeybrokerCurl.h"

#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>

struct CKB_curl {
    CURL *easy;
    struct curl_slist *headers;
    char error[CURL_ERROR_SIZE];
};

int CKB_curl_global_init(void) {
    return (int)curl_global_init(CURL_GLOBAL_DEFAULT);
}

CKB_curl *CKB_curl_easy_init(void) {
    CKB_curl *handle = calloc(1, sizeof(*handle));
    if (handle == NULL) return NULL;
    handle->easy = curl_easy_init();
    if (handle->easy == NULL) {
        free(handle);
        return NULL;
    }
    return handle;
}

/* Header lines may carry a session token: zero libcurl's copies before they are freed. */
static void free_headers(CKB_curl *handle) {
    if (handle->headers != NULL) {
        for (struct curl_slist *item = handle->headers; item != NULL; item = item->next) {
            if (item->data != NULL) explicit_bzero(item->data, strlen(item->data));
        }
        curl_slist_free_all(handle->headers);
        handle->headers = NULL;
    }
}

void CKB_curl_easy_cleanup(CKB_curl *handle) {
    if (handle == NULL) return;
    curl_easy_cleanup(handle->easy);
    free_headers(handle);
    free(handle);
}

void CKB_curl_easy_reset(CKB_curl *handle) {
    curl_easy_reset(handle->easy);
    free_headers(handle);
}

int CKB_curl_setopt_long(CKB_curl *handle, int option, long value) {
    switch (option) {
    case CKB_OPT_NOSIGNAL: return (int)curl_easy_setopt(handle->easy, CURLOPT_NOSIGNAL, value);
    case CKB_OPT_CONNECTTIMEOUT_MS: return (int)curl_easy_setopt(handle->easy, CURLOPT_CONNECTTIMEOUT_MS, value);
    case CKB_OPT_TIMEOUT_MS: return (int)curl_easy_setopt(handle->easy, CURLOPT_TIMEOUT_MS, value);
    case CKB_OPT_POST: return (int)curl_easy_setopt(handle->easy, CURLOPT_POST, value);
    case CKB_OPT_HTTPGET: return (int)curl_easy_setopt(handle->easy, CURLOPT_HTTPGET, value);
    case CKB_OPT_FOLLOWLOCATION: return (int)curl_easy_setopt(handle->easy, CURLOPT_FOLLOWLOCATION, value);
    case CKB_OPT_TCP_KEEPALIVE: return (int)curl_easy_setopt(handle->easy, CURLOPT_TCP_KEEPALIVE, value);
    case CKB_OPT_PROTOCOLS_HTTP_HTTPS:
#if LIBCURL_VERSION_NUM >= 0x075500
        return (int)curl_easy_setopt(handle->easy, CURLOPT_PROTOCOLS_STR, value ? "http,https" : "https");
#else
        return (int)curl_easy_setopt(handle->easy, CURLOPT_PROTOCOLS,
                                     value ? (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS) : (long)CURLPROTO_HTTPS);
#endif
    default: return (int)CURLE_UNKNOWN_OPTION;
    }
}

int CKB_curl_setopt_string(CKB_curl *handle, int option, const char *value) {
    switch (option) {
    case CKB_OPT_URL: return (int)curl_easy_setopt(handle->easy, CURLOPT_URL, value);
    case CKB_OPT_CUSTOMREQUEST: return (int)curl_easy_setopt(handle->easy, CURLOPT_CUSTOMREQUEST, value);
    case CKB_OPT_NOPROXY: return (int)curl_easy_setopt(handle->easy, CURLOPT_NOPROXY, value);
    case CKB_OPT_ACCEPT_ENCODING: return (int)curl_easy_setopt(handle->easy, CURLOPT_ACCEPT_ENCODING, value);
    default: return (int)CURLE_UNKNOWN_OPTION;
    }
}

int CKB_curl_set_body(CKB_curl *handle, const uint8_t *data, size_t length) {
    CURLcode rc = curl_easy_setopt(handle->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)length);
    if (rc != CURLE_OK) return (int)rc;
    return (int)curl_easy_setopt(handle->easy, CURLOPT_POSTFIELDS, length ? (const char *)data : "");
}

int CKB_curl_set_headers(CKB_curl *handle, const char *const *headers, size_t count) {
    free_headers(handle);
    for (size_t i = 0; i < count; i++) {
        struct curl_slist *next = curl_slist_append(handle->headers, headers[i]);
        if (next == NULL) {
            free_headers(handle);
            return (int)CURLE_OUT_OF_MEMORY;
        }
        handle->headers = next;
    }
    return (int)curl_easy_setopt(handle->easy, CURLOPT_HTTPHEADER, handle->headers);
}

static size_t collect(char *data, size_t size, size_t count, void *context) {
    CKB_curl_body *body = context;
    size_t n = size * count;
    if (n == 0) return 0;
    if (body->length + n > body->limit || body->length + n < body->length) {
        body->overflowed = 1;
        return 0;
    }
    if (body->length + n > body->capacity) {
        size_t capacity = body->capacity ? body->capacity : 1024;
        while (capacity < body->length + n) capacity *= 2;
        /* Not realloc: the old block would be freed without being zeroed. */
        uint8_t *grown = malloc(capacity);
        if (grown == NULL) return 0;
        if (body->data != NULL) {
            memcpy(grown, body->data, body->length);
            explicit_bzero(body->data, body->capacity);
            free(body->data);
        }
        body->data = grown;
        body->capacity = capacity;
    }
    memcpy(body->data + body->length, data, n);
    body->length += n;
    return n;
}

int CKB_curl_perform(CKB_curl *handle, CKB_curl_body *body, char *error, size_t error_size) {
    handle->error[0] = 0;
    curl_easy_setopt(handle->easy, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(handle->easy, CURLOPT_WRITEDATA, body);
    curl_easy_setopt(handle->easy, CURLOPT_ERRORBUFFER, handle->error);
    CURLcode rc = curl_easy_perform(handle->easy);
    curl_easy_setopt(handle->easy, CURLOPT_ERRORBUFFER, NULL);
    if (rc != CURLE_OK && error != NULL && error_size > 0) {
        const char *text = handle->error[0] ? handle->error : curl_easy_strerror(rc);
        if (body->overflowed) text = "the response is larger than allowed";
        strncpy(error, text, error_size - 1);
        error[error_size - 1] = 0;
    }
    return (int)rc;
}

long CKB_curl_response_code(CKB_curl *handle) {
    long code = 0;
    if (curl_easy_getinfo(handle->easy, CURLINFO_RESPONSE_CODE, &code) != CURLE_OK) return 0;
    return code;
}

long CKB_curl_response_header(CKB_curl *handle, const char *name, char *value, size_t size) {
    struct curl_header *header = NULL;
    if (size == 0 || curl_easy_header(handle->easy, name, 0, CURLH_HEADER, -1, &header) != CURLHE_OK || header == NULL) return -1;
    size_t length = strlen(header->value);
    size_t copied = length < size - 1 ? length : size - 1;
    memcpy(value, header->value, copied);
    value[copied] = 0;
    return (long)copied;
}

void CKB_curl_body_clear(CKB_curl_body *body) {
    if (body->data != NULL) {
        explicit_bzero(body->data, body->capacity);
        free(body->data);
    }
    body->data = NULL;
    body->length = 0;
    body->capacity = 0;
    body->overflowed = 0;
}

int CKB_curl_code_is_timeout(int code) {
    return code == CURLE_OPERATION_TIMEDOUT;
}
