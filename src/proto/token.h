/* JWT (RFC 7519) access tokens, HS256 only: the algorithm is pinned, never taken from the
 * token. Sans-IO: time comes in as an argument. Claims used by underpass:
 *   role      "agent" | "client" | "admin" (required; admin: the relay's /api, e.g. pairings)
 *   services  array of 1..UP_TOKEN_MAX_SERVICES service names, "*" = any (required)
 *   exp, nbf, iat  NumericDate seconds, positive integers  (exp required)
 *   sub       optional subject, for logs: <= UP_TOKEN_MAX_NAME bytes of UTF-8, no controls
 *   jti       optional id (not read by this module)
 * Other claims are ignored. */
#ifndef UP_PROTO_TOKEN_H
#define UP_PROTO_TOKEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

#define UP_TOKEN_MAX_LEN 4096 /* longer tokens are rejected before decoding */
#define UP_TOKEN_MAX_SERVICES 32
#define UP_TOKEN_MAX_NAME 63   /* service names and sub */
#define UP_TOKEN_MIN_SECRET 32 /* bytes; shorter HS256 keys are refused */
#define UP_TOKEN_DEFAULT_LEEWAY_S 30

enum up_token_role { UP_ROLE_NONE, UP_ROLE_AGENT, UP_ROLE_CLIENT, UP_ROLE_ADMIN };

struct up_token_claims {
    enum up_token_role role;
    char sub[UP_TOKEN_MAX_NAME + 1];
    char services[UP_TOKEN_MAX_SERVICES][UP_TOKEN_MAX_NAME + 1];
    size_t n_services;
    int64_t exp; /* 0 = absent */
    int64_t nbf; /* 0 = absent */
    int64_t iat; /* 0 = absent */
};

/* Whether name[0..len) is a valid service name: 1..UP_TOKEN_MAX_NAME bytes of [A-Za-z0-9._-],
 * or exactly "*". "*" is accepted because it is valid inside claims (it means any service);
 * callers that register or request a service must refuse "*" themselves. */
bool up_token_valid_service_name(const char *name, size_t len);

/* Sign claims with secret (>= UP_TOKEN_MIN_SECRET bytes) into out (cap bytes, NUL-terminated).
 * The header is exactly {"alg":"HS256","typ":"JWT"}; the payload holds role, services, exp,
 * and sub/iat/nbf only when set (empty / 0 means omitted). Claims must be valid: role agent or
 * client, exp > 0, nbf and iat >= 0, 1..UP_TOKEN_MAX_SERVICES NUL-terminated names that pass
 * up_token_valid_service_name, and a sub as described at the top of this file. Sets *out_len
 * to the token length without the NUL (0 on error). Returns UP_OK, UP_EINVAL (short secret,
 * bad claims, NULL argument), UP_ELIMIT (cap too small) or UP_ENOMEM. */
UP_NODISCARD int up_token_sign(const uint8_t *secret, size_t secret_len,
                               const struct up_token_claims *c, char *out, size_t cap,
                               size_t *out_len);

/* Verify tok[0..len) with secret at time now_s (seconds since the epoch), allowing leeway_s
 * (>= 0) seconds of clock skew on exp/nbf/iat. Tokens longer than UP_TOKEN_MAX_LEN are refused
 * before any decoding. The token must have exactly three base64url parts without padding. The
 * header must be a JSON object whose "alg" is exactly "HS256"; "typ", if present, must be
 * "JWT" (any case); a "crit" header is refused; "jwk", "jku", "x5u", "x5c" and "kid" are
 * ignored and never used to choose a key. The signature must decode to exactly 32 bytes and is
 * compared in constant time before the payload is decoded or parsed. Duplicate JSON keys are
 * refused. Returns UP_OK and fills *c; UP_EAUTH with *reason set to a static one-line text
 * ("token expired", "bad signature", "alg not allowed", ...); UP_EINVAL for a secret shorter
 * than UP_TOKEN_MIN_SECRET, a negative leeway_s or a NULL argument; UP_ENOMEM (jansson reports
 * some of its allocation failures as syntax errors: those fail closed as UP_EAUTH). *c is
 * zeroed on every error. reason may be NULL; otherwise *reason is NULL on success and set on
 * error. */
UP_NODISCARD int up_token_verify(const char *tok, size_t len, const uint8_t *secret,
                                 size_t secret_len, int64_t now_s, int64_t leeway_s,
                                 struct up_token_claims *c, const char **reason);

/* Whether the claims allow the service name[0..len): an exact match or a "*" claim. A name
 * that is not a valid service name, or is "*" itself, is never allowed. */
bool up_token_allows(const struct up_token_claims *c, const char *name, size_t len);

/* "agent"/"client"/"admin" → role; UP_ROLE_NONE otherwise (also for NULL). */
enum up_token_role up_token_role_parse(const char *s);
/* Static name of a role: "agent", "client", "admin", or "none" for anything else. */
const char *up_token_role_name(enum up_token_role r);

#endif
