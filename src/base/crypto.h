/* Thin wrappers over OpenSSL libcrypto, so that the sans-IO cores can hash, sign and encode
 * without including OpenSSL themselves. No I/O, no global state of ours. */
#ifndef UP_BASE_CRYPTO_H
#define UP_BASE_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

#define UP_MD5_LEN 16
#define UP_SHA1_LEN 20
#define UP_SHA256_LEN 32

/* One piece of a message hashed in pieces (up_md5_v, up_hmac_v), so that callers need not
 * copy the pieces together. */
struct up_crypto_span {
    const void *p; /* may be NULL when len is 0 */
    size_t len;
};

/* SHA-1 of data into out[20] (used only by the RFC 6455 handshake). */
void up_sha1(const void *data, size_t len, uint8_t out[UP_SHA1_LEN]);
/* SHA-256 of data into out[32]. */
void up_sha256(const void *data, size_t len, uint8_t out[UP_SHA256_LEN]);
/* MD5 of data into out[16] (STUN long-term credentials, RFC 8489 §9.2.2: not for new
 * designs). Should OpenSSL fail (out of memory), out is filled with random bytes instead, so
 * that a key derived from it matches nothing. */
void up_md5(const void *data, size_t len, uint8_t out[UP_MD5_LEN]);
/* MD5 of the concatenation of the n spans s[0..n) into out[16]; failure as for up_md5. */
void up_md5_v(const struct up_crypto_span *s, size_t n, uint8_t out[UP_MD5_LEN]);
/* HMAC-SHA-1(key, data) into out[20]. Returns UP_OK, UP_EINVAL (key too long) or
 * UP_ENOMEM. */
UP_NODISCARD int up_hmac_sha1(const void *key, size_t key_len, const void *data, size_t len,
                              uint8_t out[UP_SHA1_LEN]);
/* HMAC-SHA-256(key, data) into out[32]. Returns UP_OK or UP_ENOMEM. */
UP_NODISCARD int up_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
                                uint8_t out[UP_SHA256_LEN]);
/* HMAC-SHA-1 (sha256 false: out[20]) or HMAC-SHA-256 (out[32]) of the concatenation of the n
 * spans s[0..n), e.g. a message whose header is rewritten before it is authenticated (STUN
 * MESSAGE-INTEGRITY, RFC 8489 §14.5) without copying the message. Returns UP_OK, UP_EINVAL
 * (key too long) or UP_ENOMEM. */
UP_NODISCARD int up_hmac_v(bool sha256, const void *key, size_t key_len,
                           const struct up_crypto_span *s, size_t n, uint8_t *out);
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
