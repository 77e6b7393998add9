// Thin wrappers over system OpenSSL (libcrypto). Only prefixed names leave this module.
#ifndef CKEYBROKER_CRYPTO_H
#define CKEYBROKER_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#define CKB_GCM_IV_LENGTH 12
#define CKB_GCM_TAG_LENGTH 16

/// Fills `buf` from OpenSSL's CSPRNG. Returns 1 on success.
int CKB_random_bytes(uint8_t *buf, size_t len);

/// Zeroes memory in a way the compiler may not elide.
void CKB_cleanse(void *ptr, size_t len);

/// AES-256-GCM. Returns 1 on success, 0 on failure.
int CKB_aes256gcm_seal(const uint8_t *key, const uint8_t *iv,
                       const uint8_t *aad, size_t aad_len,
                       const uint8_t *plaintext, size_t len,
                       uint8_t *ciphertext, uint8_t *tag);

/// AES-256-GCM. Returns 1 when the tag verifies, 0 when it does not (or on error).
int CKB_aes256gcm_open(const uint8_t *key, const uint8_t *iv,
                       const uint8_t *aad, size_t aad_len,
                       const uint8_t *ciphertext, size_t len,
                       const uint8_t *tag, uint8_t *plaintext);

void CKB_sha256(const uint8_t *data, size_t len, uint8_t *out32);
int CKB_hmac_sha256(const uint8_t *key, size_t key_len, const uint8_t *data, size_t len, uint8_t *out32);

#endif
