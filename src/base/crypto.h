/* Thin wrappers over OpenSSL libcrypto, so that the sans-IO cores can hash, sign and encode
 * without including OpenSSL themselves. No I/O, no global state of ours. */
#ifndef UP_BASE_CRYPTO_H
#define UP_BASE_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

#define UP_SHA1_LEN 20
#define UP_SHA256_LEN 32

/* SHA-1 of data into out[20] (used only by the RFC 6455 handshake). */
void up_sha1(const void *data, size_t len, uint8_t out[UP_SHA1_LEN]);
/* SHA-256 of data into out[32]. */
void up_sha256(const void *data, size_t len, uint8_t out[UP_SHA256_LEN]);
/* HMAC-SHA-256(key, data) into out[32]. Returns UP_OK or UP_ENOMEM. */
UP_NODISCARD int up_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
                                uint8_t out[UP_SHA256_LEN]);
/* Compare two buffers of equal length in constant time. */
bool up_ct_equal(const void *a, const void *b, size_t len);
/* Fill p with n cryptographically secure random bytes. Returns UP_OK or UP_ESYS. */
UP_NODISCARD int up_random_bytes(void *p, size_t n);

/* Length of the encoding of n bytes, without the terminating NUL. */
size_t up_b64_len(size_t n, bool url);
/* Encode n bytes as base64 (url=false, padded) or base64url (url=true, no padding) into out,
 * which must hold up_b64_len(n)+1 bytes; out is NUL-terminated. Returns the length. */
size_t up_b64_encode(const uint8_t *p, size_t n, char *out, bool url);
/* Decode base64url (no padding accepted, no whitespace) into out (cap bytes). Sets *out_len.
 * Returns UP_OK, UP_EPROTO for a bad character or length, UP_ELIMIT if out is too small. */
UP_NODISCARD int up_b64url_decode(const char *s, size_t len, uint8_t *out, size_t cap,
                                  size_t *out_len);

#endif
