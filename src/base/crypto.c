#include "base/crypto.h"

#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

void up_sha1(const void *data, size_t len, uint8_t out[UP_SHA1_LEN])
{
    SHA1(data, len, out);
}

void up_sha256(const void *data, size_t len, uint8_t out[UP_SHA256_LEN])
{
    SHA256(data, len, out);
}

void up_md5(const void *data, size_t len, uint8_t out[UP_MD5_LEN])
{
    struct up_crypto_span s = {.p = data, .len = len};
    up_md5_v(&s, 1, out);
}

void up_md5_v(const struct up_crypto_span *s, size_t n, uint8_t out[UP_MD5_LEN])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx && EVP_DigestInit_ex(ctx, EVP_md5(), NULL);
    for (size_t i = 0; ok && i < n; i++) {
        ok = s[i].len == 0 || EVP_DigestUpdate(ctx, s[i].p, s[i].len);
    }
    unsigned int olen = 0;
    ok = ok && EVP_DigestFinal_ex(ctx, out, &olen) && olen == UP_MD5_LEN;
    EVP_MD_CTX_free(ctx);
    /* The callers derive keys: fail closed, with a key nobody knows, rather than a zero one
     * anybody could use. */
    if (!ok && RAND_bytes(out, UP_MD5_LEN) != 1) {
        memset(out, 0xA5, UP_MD5_LEN);
    }
}

int up_hmac_sha1(const void *key, size_t key_len, const void *data, size_t len,
                 uint8_t out[UP_SHA1_LEN])
{
    unsigned int olen = 0;
    if (key_len > (size_t)INT32_MAX) {
        return UP_EINVAL;
    }
    if (!HMAC(EVP_sha1(), key, (int)key_len, data, len, out, &olen) || olen != UP_SHA1_LEN) {
        return UP_ENOMEM;
    }
    return UP_OK;
}

int up_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
                   uint8_t out[UP_SHA256_LEN])
{
    unsigned int olen = 0;
    if (key_len > (size_t)INT32_MAX) {
        return UP_EINVAL;
    }
    if (!HMAC(EVP_sha256(), key, (int)key_len, data, len, out, &olen) || olen != UP_SHA256_LEN) {
        return UP_ENOMEM;
    }
    return UP_OK;
}

int up_hmac_v(bool sha256, const void *key, size_t key_len, const struct up_crypto_span *s,
              size_t n, uint8_t *out)
{
    static const uint8_t no_key[1];
    size_t want = sha256 ? UP_SHA256_LEN : UP_SHA1_LEN;
    if (key_len > (size_t)INT32_MAX) {
        return UP_EINVAL;
    }
    /* EVP_MAC_init() reads a NULL key as "keep the previous one": pass an empty one. */
    if (!key) {
        key = no_key;
        key_len = 0;
    }
    char digest[8];
    memcpy(digest, sha256 ? "SHA256" : "SHA1", sha256 ? 7 : 5);
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
        OSSL_PARAM_construct_end(),
    };
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
    int ok = ctx && EVP_MAC_init(ctx, key, key_len, params);
    for (size_t i = 0; ok && i < n; i++) {
        ok = s[i].len == 0 || EVP_MAC_update(ctx, s[i].p, s[i].len);
    }
    size_t olen = 0;
    ok = ok && EVP_MAC_final(ctx, out, &olen, want) && olen == want;
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
    return ok ? UP_OK : UP_ENOMEM;
}

bool up_ct_equal(const void *a, const void *b, size_t len)
{
    return CRYPTO_memcmp(a, b, len) == 0;
}

int up_random_bytes(void *p, size_t n)
{
    if (n > (size_t)INT32_MAX) {
        return UP_EINVAL;
    }
    return RAND_bytes(p, (int)n) == 1 ? UP_OK : UP_ESYS;
}

static const char b64std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t up_b64_len(size_t n, bool url)
{
    if (!url) {
        return (n + 2) / 3 * 4;
    }
    return n / 3 * 4 + (n % 3 ? n % 3 + 1 : 0);
}

size_t up_b64_encode(const uint8_t *p, size_t n, char *out, bool url)
{
    const char *tab = url ? b64url : b64std;
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        out[o++] = tab[v >> 18];
        out[o++] = tab[(v >> 12) & 63];
        out[o++] = tab[(v >> 6) & 63];
        out[o++] = tab[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        out[o++] = tab[v >> 18];
        out[o++] = tab[(v >> 12) & 63];
        if (!url) {
            out[o++] = '=';
            out[o++] = '=';
        }
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        out[o++] = tab[v >> 18];
        out[o++] = tab[(v >> 12) & 63];
        out[o++] = tab[(v >> 6) & 63];
        if (!url) {
            out[o++] = '=';
        }
    }
    out[o] = '\0';
    return o;
}

static int b64url_val(char c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }
    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }
    if (c == '-') {
        return 62;
    }
    if (c == '_') {
        return 63;
    }
    return -1;
}

int up_b64url_decode(const char *s, size_t len, uint8_t *out, size_t cap, size_t *out_len)
{
    *out_len = 0;
    if (len % 4 == 1) {
        return UP_EPROTO;
    }
    size_t need = len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0);
    if (need > cap) {
        return UP_ELIMIT;
    }
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64url_val(s[i]);
        if (v < 0) {
            return UP_EPROTO;
        }
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    /* Leftover bits must be zero: one encoding per value (no malleable signatures). */
    if (bits && (acc & ((1u << bits) - 1))) {
        return UP_EPROTO;
    }
    *out_len = o;
    return UP_OK;
}
