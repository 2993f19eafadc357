/* JWT access tokens: RFC 7519 claims in an RFC 7515 compact JWS, HS256 only.
 *
 * The checks follow the JWT attack catalogue in docs PERF-SECURITY.md (B1): the algorithm is
 * pinned (CVE-2015-2951 alg=none, CVE-2016-10555 RS/HS confusion), header keys are never used
 * to pick a key (CVE-2018-0114 embedded jwk), the signature must be exactly 32 bytes in its
 * one canonical encoding (CVE-2020-28042 null signature), and short keys are refused. */
#include "proto/token.h"

#include <string.h>

#include <jansson.h>

#include "base/crypto.h"
#include "base/str.h"

/* RFC 7515 §4.1.1: the only header we emit. */
static const char token_header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";

/* base64url of 32 bytes without padding (RFC 7515 §2). */
#define SIG_B64_LEN 43
/* A part of a token of at most UP_TOKEN_MAX_LEN characters decodes to at most this. */
#define PART_MAX_BYTES (UP_TOKEN_MAX_LEN / 4 * 3 + 2)

bool up_token_valid_service_name(const char *name, size_t len)
{
    if (!name || len == 0 || len > UP_TOKEN_MAX_NAME) {
        return false;
    }
    if (len == 1 && name[0] == '*') {
        return true;
    }
    for (size_t i = 0; i < len; i++) {
        char ch = name[i];
        bool ok = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                  (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-';
        if (!ok) {
            return false;
        }
    }
    return true;
}

enum up_token_role up_token_role_parse(const char *s)
{
    if (!s) {
        return UP_ROLE_NONE;
    }
    if (strcmp(s, "agent") == 0) {
        return UP_ROLE_AGENT;
    }
    if (strcmp(s, "client") == 0) {
        return UP_ROLE_CLIENT;
    }
    if (strcmp(s, "admin") == 0) {
        return UP_ROLE_ADMIN;
    }
    return UP_ROLE_NONE;
}

const char *up_token_role_name(enum up_token_role r)
{
    switch (r) {
    case UP_ROLE_AGENT:
        return "agent";
    case UP_ROLE_CLIENT:
        return "client";
    case UP_ROLE_ADMIN:
        return "admin";
    case UP_ROLE_NONE:
        break;
    }
    return "none";
}

bool up_token_allows(const struct up_token_claims *c, const char *name, size_t len)
{
    /* A literal "*" is a wildcard in claims, never a service someone can ask for. */
    if (!c || !up_token_valid_service_name(name, len) || (len == 1 && name[0] == '*')) {
        return false;
    }
    size_t n = c->n_services < UP_TOKEN_MAX_SERVICES ? c->n_services : UP_TOKEN_MAX_SERVICES;
    for (size_t i = 0; i < n; i++) {
        const char *s = c->services[i];
        if (strcmp(s, "*") == 0) {
            return true;
        }
        if (strncmp(s, name, len) == 0 && s[len] == '\0') {
            return true;
        }
    }
    return false;
}

/* Length of the NUL-terminated string in s[0..cap), or cap if there is no NUL. */
static size_t bounded_len(const char *s, size_t cap)
{
    const char *nul = memchr(s, '\0', cap);
    return nul ? (size_t)(nul - s) : cap;
}

/* Strict UTF-8 (RFC 3629 §4): no overlong forms, no surrogates, nothing above U+10FFFF. */
static bool utf8_valid(const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t b = p[i];
        uint8_t lo = 0x80, hi = 0xbf;
        size_t k;
        if (b < 0x80) {
            i++;
            continue;
        }
        if (b >= 0xc2 && b <= 0xdf) {
            k = 1;
        } else if (b == 0xe0) {
            k = 2;
            lo = 0xa0;
        } else if (b == 0xed) {
            k = 2;
            hi = 0x9f;
        } else if (b >= 0xe1 && b <= 0xef) {
            k = 2;
        } else if (b == 0xf0) {
            k = 3;
            lo = 0x90;
        } else if (b >= 0xf1 && b <= 0xf3) {
            k = 3;
        } else if (b == 0xf4) {
            k = 3;
            hi = 0x8f;
        } else {
            return false;
        }
        if (n - i - 1 < k || p[i + 1] < lo || p[i + 1] > hi) {
            return false;
        }
        for (size_t j = 2; j <= k; j++) {
            if ((p[i + j] & 0xc0) != 0x80) {
                return false;
            }
        }
        i += k + 1;
    }
    return true;
}

/* sub ends up in log lines: refuse control characters so a token cannot forge a line. */
static bool sub_valid(const char *s, size_t len)
{
    if (len > UP_TOKEN_MAX_NAME) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x20 || ch == 0x7f) {
            return false;
        }
    }
    return utf8_valid((const uint8_t *)s, len);
}

static bool claims_valid(const struct up_token_claims *c)
{
    if (c->role != UP_ROLE_AGENT && c->role != UP_ROLE_CLIENT && c->role != UP_ROLE_ADMIN) {
        return false;
    }
    /* exp is required; 0 means "absent" in the struct, so real values are positive. */
    if (c->exp <= 0 || c->nbf < 0 || c->iat < 0) {
        return false;
    }
    if (c->n_services == 0 || c->n_services > UP_TOKEN_MAX_SERVICES) {
        return false;
    }
    for (size_t i = 0; i < c->n_services; i++) {
        size_t n = bounded_len(c->services[i], sizeof c->services[i]);
        if (n == sizeof c->services[i] || !up_token_valid_service_name(c->services[i], n)) {
            return false;
        }
    }
    size_t sub_len = bounded_len(c->sub, sizeof c->sub);
    return sub_len < sizeof c->sub && sub_valid(c->sub, sub_len);
}

/* Serialise the claims as compact JSON into buf. Claims are already validated, so a NULL
 * from jansson can only mean out of memory. */
static int payload_json(const struct up_token_claims *c, char *buf, size_t cap, size_t *out_len)
{
    json_t *o = json_object();
    json_t *svc = NULL;
    int rv = UP_ENOMEM;
    if (!o) {
        return UP_ENOMEM;
    }
    if (json_object_set_new(o, "role", json_string(up_token_role_name(c->role))) < 0) {
        goto undo_obj;
    }
    /* From here o owns svc: json_object_set_new drops its reference even when it fails. */
    svc = json_array();
    if (json_object_set_new(o, "services", svc) < 0) {
        goto undo_obj;
    }
    for (size_t i = 0; i < c->n_services; i++) {
        const char *s = c->services[i];
        if (json_array_append_new(svc, json_stringn_nocheck(s, strlen(s))) < 0) {
            goto undo_obj;
        }
    }
    if (c->sub[0] &&
        json_object_set_new(o, "sub", json_stringn_nocheck(c->sub, strlen(c->sub))) < 0) {
        goto undo_obj;
    }
    if (c->iat && json_object_set_new(o, "iat", json_integer(c->iat)) < 0) {
        goto undo_obj;
    }
    if (c->nbf && json_object_set_new(o, "nbf", json_integer(c->nbf)) < 0) {
        goto undo_obj;
    }
    if (json_object_set_new(o, "exp", json_integer(c->exp)) < 0) {
        goto undo_obj;
    }
    size_t n = json_dumpb(o, buf, cap, JSON_COMPACT);
    if (n == 0) {
        goto undo_obj;
    }
    if (n > cap) {
        rv = UP_ELIMIT;
        goto undo_obj;
    }
    *out_len = n;
    rv = UP_OK;
undo_obj:
    json_decref(o);
    return rv;
}

int up_token_sign(const uint8_t *secret, size_t secret_len, const struct up_token_claims *c,
                  char *out, size_t cap, size_t *out_len)
{
    if (out_len) {
        *out_len = 0;
    }
    if (out && cap) {
        out[0] = '\0';
    }
    if (!secret || secret_len < UP_TOKEN_MIN_SECRET || !c || !out || !out_len) {
        return UP_EINVAL;
    }
    if (!claims_valid(c)) {
        return UP_EINVAL;
    }
    char json[PART_MAX_BYTES];
    size_t json_len = 0;
    int rv = payload_json(c, json, sizeof json, &json_len);
    if (rv < 0) {
        return rv;
    }
    size_t h_len = up_b64_len(sizeof token_header - 1, true);
    size_t p_len = up_b64_len(json_len, true);
    size_t total = h_len + 1 + p_len + 1 + SIG_B64_LEN;
    /* Never issue a token that up_token_verify would refuse for its size. */
    if (total > UP_TOKEN_MAX_LEN) {
        return UP_EINVAL;
    }
    if (total >= cap) {
        return UP_ELIMIT;
    }
    up_b64_encode((const uint8_t *)token_header, sizeof token_header - 1, out, true);
    out[h_len] = '.';
    up_b64_encode((const uint8_t *)json, json_len, out + h_len + 1, true);
    uint8_t mac[UP_SHA256_LEN];
    rv = up_hmac_sha256(secret, secret_len, out, h_len + 1 + p_len, mac);
    if (rv < 0) {
        out[0] = '\0';
        return rv;
    }
    out[h_len + 1 + p_len] = '.';
    up_b64_encode(mac, sizeof mac, out + h_len + 1 + p_len + 1, true);
    *out_len = total;
    return UP_OK;
}

/* Parse the JSON text in p[0..n) as an object. Returns UP_OK, UP_ENOMEM, or UP_EAUTH when it
 * is not a single JSON object. Duplicate keys are refused so that no two parsers can read a
 * different "alg" or "exp" out of the same token. */
static int parse_object(const uint8_t *p, size_t n, json_t **out)
{
    json_error_t jerr;
    /* jansson 2.14 leaves jerr untouched (code json_error_unknown, empty text) when some of
     * its allocations fail, and reports others as syntax errors; the latter can only fail
     * closed, as a refusal. */
    memset(&jerr, 0, sizeof jerr);
    json_t *j = json_loadb((const char *)p, n, JSON_REJECT_DUPLICATES, &jerr);
    *out = NULL;
    if (!j) {
        enum json_error_code code = json_error_code(&jerr);
        bool oom = code == json_error_out_of_memory ||
                   (code == json_error_unknown && jerr.text[0] == '\0');
        return oom ? UP_ENOMEM : UP_EAUTH;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        return UP_EAUTH;
    }
    *out = j;
    return UP_OK;
}

/* Whether a - b > d for d >= 0, without signed overflow. */
static bool later_by_more_than(int64_t a, int64_t b, int64_t d)
{
    return a > b && (uint64_t)a - (uint64_t)b > (uint64_t)d;
}

/* Read an optional positive NumericDate (RFC 7519 §2). Integers only: a float "exp" would
 * round differently in different parsers. */
static bool read_time(const json_t *o, const char *key, int64_t *out)
{
    const json_t *v = json_object_get(o, key);
    *out = 0;
    if (!v) {
        return true;
    }
    if (!json_is_integer(v) || json_integer_value(v) <= 0) {
        return false;
    }
    *out = json_integer_value(v);
    return true;
}

/* Check the header of a token. alg is pinned to HS256: the token never chooses its algorithm
 * (RFC 8725 §3.1), and its jwk/jku/x5u/x5c/kid members are ignored, never used to find a
 * key (RFC 8725 §3.10). crit is refused since we understand no extension (RFC 7515
 * §4.1.11). */
static int check_header(const json_t *h, const char **why)
{
    const json_t *alg = json_object_get(h, "alg");
    if (!json_is_string(alg) || json_string_length(alg) != 5 ||
        strcmp(json_string_value(alg), "HS256") != 0) {
        *why = "alg not allowed";
        return UP_EAUTH;
    }
    if (json_object_get(h, "crit")) {
        *why = "crit header not supported";
        return UP_EAUTH;
    }
    /* RFC 7519 §5.1: typ is optional, "JWT" compared case-insensitively. */
    const json_t *typ = json_object_get(h, "typ");
    if (typ && (!json_is_string(typ) ||
                !up_str_ieq(json_string_value(typ), json_string_length(typ), "JWT"))) {
        *why = "typ not allowed";
        return UP_EAUTH;
    }
    return UP_OK;
}

static int read_claims(const json_t *p, struct up_token_claims *c, const char **why)
{
    if (!json_object_get(p, "exp")) {
        *why = "exp missing";
        return UP_EAUTH;
    }
    if (!read_time(p, "exp", &c->exp)) {
        *why = "bad exp";
        return UP_EAUTH;
    }
    if (!read_time(p, "nbf", &c->nbf)) {
        *why = "bad nbf";
        return UP_EAUTH;
    }
    if (!read_time(p, "iat", &c->iat)) {
        *why = "bad iat";
        return UP_EAUTH;
    }
    const json_t *role = json_object_get(p, "role");
    c->role = json_is_string(role) ? up_token_role_parse(json_string_value(role)) : UP_ROLE_NONE;
    if (c->role == UP_ROLE_NONE) {
        *why = "bad role";
        return UP_EAUTH;
    }
    const json_t *svc = json_object_get(p, "services");
    if (!json_is_array(svc) || json_array_size(svc) == 0) {
        *why = "bad services";
        return UP_EAUTH;
    }
    if (json_array_size(svc) > UP_TOKEN_MAX_SERVICES) {
        *why = "too many services";
        return UP_EAUTH;
    }
    for (size_t i = 0; i < json_array_size(svc); i++) {
        const json_t *s = json_array_get(svc, i);
        size_t n = json_is_string(s) ? json_string_length(s) : 0;
        if (!json_is_string(s) || !up_token_valid_service_name(json_string_value(s), n)) {
            *why = "bad service name";
            return UP_EAUTH;
        }
        memcpy(c->services[i], json_string_value(s), n);
        c->services[i][n] = '\0';
    }
    c->n_services = json_array_size(svc);
    const json_t *sub = json_object_get(p, "sub");
    if (sub) {
        size_t n = json_is_string(sub) ? json_string_length(sub) : 0;
        if (!json_is_string(sub) || !sub_valid(json_string_value(sub), n)) {
            *why = "bad sub";
            return UP_EAUTH;
        }
        memcpy(c->sub, json_string_value(sub), n);
        c->sub[n] = '\0';
    }
    return UP_OK;
}

static int check_times(const struct up_token_claims *c, int64_t now_s, int64_t leeway_s,
                       const char **why)
{
    if (later_by_more_than(now_s, c->exp, leeway_s)) {
        *why = "token expired";
        return UP_EAUTH;
    }
    if (c->nbf && later_by_more_than(c->nbf, now_s, leeway_s)) {
        *why = "token not yet valid";
        return UP_EAUTH;
    }
    if (c->iat && later_by_more_than(c->iat, now_s, leeway_s)) {
        *why = "token issued in the future";
        return UP_EAUTH;
    }
    return UP_OK;
}

static int verify(const char *tok, size_t len, const uint8_t *secret, size_t secret_len,
                  int64_t now_s, int64_t leeway_s, struct up_token_claims *c, const char **why)
{
    /* Bound the work an unauthenticated peer can cause before touching the bytes. */
    if (len > UP_TOKEN_MAX_LEN) {
        *why = "token too long";
        return UP_EAUTH;
    }
    *why = "malformed token";
    if (len == 0) {
        return UP_EAUTH;
    }
    const char *dot1 = memchr(tok, '.', len);
    if (!dot1) {
        return UP_EAUTH;
    }
    size_t h_len = (size_t)(dot1 - tok);
    const char *pay = dot1 + 1;
    const char *dot2 = memchr(pay, '.', len - h_len - 1);
    if (!dot2) {
        return UP_EAUTH;
    }
    size_t p_len = (size_t)(dot2 - pay);
    const char *sig = dot2 + 1;
    size_t s_len = len - h_len - 1 - p_len - 1;
    if (memchr(sig, '.', s_len)) {
        return UP_EAUTH;
    }

    uint8_t buf[PART_MAX_BYTES];
    size_t n = 0;
    if (up_b64url_decode(tok, h_len, buf, sizeof buf, &n) < 0) {
        return UP_EAUTH;
    }
    json_t *j = NULL;
    int rv = parse_object(buf, n, &j);
    if (rv < 0) {
        *why = rv == UP_ENOMEM ? "out of memory" : "malformed header";
        return rv;
    }
    rv = check_header(j, why);
    json_decref(j);
    if (rv < 0) {
        return rv;
    }

    /* The signature is checked before the payload is decoded or parsed: claims from a
     * forged token never reach the JSON parser. The decoder refuses non-canonical trailing
     * bits, so each signature has exactly one accepted spelling. */
    uint8_t got[UP_SHA256_LEN];
    uint8_t want[UP_SHA256_LEN];
    *why = "bad signature";
    if (s_len != SIG_B64_LEN || up_b64url_decode(sig, s_len, got, sizeof got, &n) < 0 ||
        n != sizeof got) {
        return UP_EAUTH;
    }
    rv = up_hmac_sha256(secret, secret_len, tok, h_len + 1 + p_len, want);
    if (rv < 0) {
        *why = "hmac failed";
        return rv;
    }
    if (!up_ct_equal(got, want, sizeof want)) {
        return UP_EAUTH;
    }

    *why = "malformed payload";
    if (up_b64url_decode(pay, p_len, buf, sizeof buf, &n) < 0) {
        return UP_EAUTH;
    }
    rv = parse_object(buf, n, &j);
    if (rv < 0) {
        if (rv == UP_ENOMEM) {
            *why = "out of memory";
        }
        return rv;
    }
    rv = read_claims(j, c, why);
    json_decref(j);
    if (rv < 0) {
        return rv;
    }
    return check_times(c, now_s, leeway_s, why);
}

int up_token_verify(const char *tok, size_t len, const uint8_t *secret, size_t secret_len,
                    int64_t now_s, int64_t leeway_s, struct up_token_claims *c, const char **reason)
{
    const char *why = NULL;
    int rv;
    if (c) {
        memset(c, 0, sizeof *c);
    }
    if (!c || (!tok && len) || !secret || leeway_s < 0) {
        why = "invalid arguments";
        rv = UP_EINVAL;
    } else if (secret_len < UP_TOKEN_MIN_SECRET) {
        why = "secret too short";
        rv = UP_EINVAL;
    } else {
        struct up_token_claims tmp;
        memset(&tmp, 0, sizeof tmp);
        rv = verify(tok, len, secret, secret_len, now_s, leeway_s, &tmp, &why);
        if (rv == UP_OK) {
            *c = tmp;
            why = NULL;
        }
    }
    if (reason) {
        *reason = why;
    }
    return rv;
}
