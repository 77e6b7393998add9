#include "CKeybrokerCrypto.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

int CKB_random_bytes(uint8_t *buf, size_t len) {
    if (len > 0x7fffffff) return 0;
    return RAND_bytes(buf, (int)len) == 1;
}

void CKB_cleanse(void *ptr, size_t len) {
    OPENSSL_cleanse(ptr, len);
}

int CKB_aes256gcm_seal(const uint8_t *key, const uint8_t *iv, const uint8_t *aad, size_t aad_len,
                       const uint8_t *plaintext, size_t len, uint8_t *ciphertext, uint8_t *tag) {
    int ok = 0, n = 0;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL || len > 0x7fffffff || aad_len > 0x7fffffff) goto done;
    if (EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1) goto done;
    if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, CKB_GCM_IV_LENGTH, NULL) != 1) goto done;
    if (EVP_EncryptInit_ex(ctx, NULL, NULL, key, iv) != 1) goto done;
    if (aad_len > 0 && EVP_EncryptUpdate(ctx, NULL, &n, aad, (int)aad_len) != 1) goto done;
    if (EVP_EncryptUpdate(ctx, ciphertext, &n, plaintext, (int)len) != 1) goto done;
    if (EVP_EncryptFinal_ex(ctx, ciphertext + n, &n) != 1) goto done;
    if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, CKB_GCM_TAG_LENGTH, tag) != 1) goto done;
    ok = 1;
done:
    EVP_CIPHER_CTX_free(ctx);
    return ok;
}

int CKB_aes256gcm_open(const uint8_t *key, const uint8_t *iv, const uint8_t *aad, size_t aad_len,
                       const uint8_t *ciphertext, size_t len, const uint8_t *tag, uint8_t *plaintext) {
    int ok = 0, n = 0;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL || len > 0x7fffffff || aad_len > 0x7fffffff) goto done;
    if (EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1) goto done;
    if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, CKB_GCM_IV_LENGTH, NULL) != 1) goto done;
    if (EVP_DecryptInit_ex(ctx, NULL, NULL, key, iv) != 1) goto done;
    if (aad_len > 0 && EVP_DecryptUpdate(ctx, NULL, &n, aad, (int)aad_len) != 1) goto done;
    if (EVP_DecryptUpdate(ctx, plaintext, &n, ciphertext, (int)len) != 1) goto done;
    if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, CKB_GCM_TAG_LENGTH, (void *)tag) != 1) goto done;
    if (EVP_DecryptFinal_ex(ctx, plaintext + n, &n) != 1) {
        OPENSSL_cleanse(plaintext, len);
        goto done;
    }
    ok = 1;
done:
    EVP_CIPHER_CTX_free(ctx);
    return ok;
}

void CKB_sha256(const uint8_t *data, size_t len, uint8_t *out32) {
    SHA256(data, len, out32);
}

int CKB_hmac_sha256(const uint8_t *key, size_t key_len, const uint8_t *data, size_t len, uint8_t *out32) {
    unsigned int out_len = 0;
    if (key_len > 0x7fffffff) return 0;
    return HMAC(EVP_sha256(), key, (int)key_len, data, len, out32, &out_len) != NULL && out_len == 32;
}
