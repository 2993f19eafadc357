/* Unit tests for src/proto/token.c: HS256 JWT sign/verify and the attacks listed in
 * docs PERF-SECURITY.md B1 (alg none/confusion, embedded jwk, null and malleable signatures,
 * exp/nbf/iat at ±leeway, size limits). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "base/alloc.h"
#include "base/crypto.h"
#include "proto/token.h"

#define NOW ((int64_t)1700000000)
#define LEEWAY ((int64_t)UP_TOKEN_DEFAULT_LEEWAY_S)
#define KEY ((const uint8_t *)"0123456789abcdef0123456789abcdef")
#define KEY_LEN ((size_t)32)
#define HDR "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"
#define TOK_CAP (2 * UP_TOKEN_MAX_LEN)

/* Write base64url(hdr) "." base64url(pay) into out and return its length. */
static size_t signing_input(char *out, const char *hdr, const char *pay)
{
    size_t n = up_b64_encode((const uint8_t *)hdr, strlen(hdr), out, true);
    out[n++] = '.';
    n += up_b64_encode((const uint8_t *)pay, strlen(pay), out + n, true);
    return n;
}

/* Append "." and base64url of the first mac_len bytes of HMAC-SHA-256(k, out[0..n)) followed
 * by zero bytes, so mac_len 31/33 give a truncated / extra-byte signature. */
static size_t append_sig(char *out, size_t n, const uint8_t *k, size_t klen, size_t mac_len)
{
    uint8_t mac[64] = {0};
    assert_true(mac_len <= sizeof mac);
    assert_int_equal(up_hmac_sha256(k, klen, out, n, mac), UP_OK);
    out[n++] = '.';
    n += up_b64_encode(mac, mac_len, out + n, true);
    return n;
}

/* A token with the given header and payload JSON, correctly signed with KEY. */
static size_t forge(char *out, const char *hdr, const char *pay)
{
    return append_sig(out, signing_input(out, hdr, pay), KEY, KEY_LEN, UP_SHA256_LEN);
}

static int verify_at(const char *tok, int64_t now, const char **why)
{
    struct up_token_claims c;
    return up_token_verify(tok, strlen(tok), KEY, KEY_LEN, now, LEEWAY, &c, why);
}

static void expect_ok(const char *tok)
{
    const char *why = "unset";
    int rv = verify_at(tok, NOW, &why);
    if (rv != UP_OK) {
        print_error("unexpected refusal: %s\n", why ? why : "(null)");
    }
    assert_int_equal(rv, UP_OK);
    assert_null(why);
}

/* Verify must refuse with UP_EAUTH and exactly this reason, and leave the claims zeroed. */
static void expect_refused(const char *tok, size_t len, const char *reason)
{
    struct up_token_claims c;
    const char *why = NULL;
    memset(&c, 0xaa, sizeof c);
    assert_int_equal(up_token_verify(tok, len, KEY, KEY_LEN, NOW, LEEWAY, &c, &why), UP_EAUTH);
    assert_non_null(why);
    assert_string_equal(why, reason);
    assert_null(strchr(why, '\n'));
    assert_int_equal(c.role, UP_ROLE_NONE);
    assert_int_equal(c.n_services, 0);
    assert_int_equal(c.exp, 0);
    assert_int_equal(c.sub[0], '\0');
}

static void expect_refused_pay(const char *pay, const char *reason)
{
    char tok[TOK_CAP];
    size_t n = forge(tok, HDR, pay);
    expect_refused(tok, n, reason);
}

static void expect_refused_hdr(const char *hdr, const char *reason)
{
    char tok[TOK_CAP];
    size_t n = forge(tok, hdr, "{\"role\":\"client\",\"services\":[\"echo\"],\"exp\":1700003600}");
    expect_refused(tok, n, reason);
}

static void expect_ok_pay(const char *pay)
{
    char tok[TOK_CAP];
    forge(tok, HDR, pay);
    expect_ok(tok);
}

/* A payload with the given exp/nbf/iat (0 = omitted). */
static void times_payload(char *pay, size_t cap, int64_t exp, int64_t nbf, int64_t iat)
{
    int n = snprintf(pay, cap, "{\"role\":\"agent\",\"services\":[\"echo\"],\"exp\":%lld",
                     (long long)exp);
    if (nbf) {
        n += snprintf(pay + n, cap - (size_t)n, ",\"nbf\":%lld", (long long)nbf);
    }
    if (iat) {
        n += snprintf(pay + n, cap - (size_t)n, ",\"iat\":%lld", (long long)iat);
    }
    snprintf(pay + n, cap - (size_t)n, "}");
}

static int verify_times(int64_t exp, int64_t nbf, int64_t iat, const char **why)
{
    char pay[256];
    char tok[TOK_CAP];
    times_payload(pay, sizeof pay, exp, nbf, iat);
    forge(tok, HDR, pay);
    return verify_at(tok, NOW, why);
}

static struct up_token_claims basic_claims(void)
{
    struct up_token_claims c;
    memset(&c, 0, sizeof c);
    c.role = UP_ROLE_CLIENT;
    snprintf(c.services[0], sizeof c.services[0], "echo");
    c.n_services = 1;
    c.exp = NOW + 3600;
    return c;
}

static void test_token_round_trip(void **state)
{
    (void)state;
    struct up_token_claims in = basic_claims();
    in.role = UP_ROLE_AGENT;
    snprintf(in.services[1], sizeof in.services[1], "ssh-22");
    snprintf(in.services[2], sizeof in.services[2], "*");
    in.n_services = 3;
    snprintf(in.sub, sizeof in.sub, "zo\xc3\xab \"q\" \\ /");
    in.iat = NOW - 10;
    in.nbf = NOW - 5;
    char tok[TOK_CAP];
    size_t len = 0;
    assert_int_equal(up_token_sign(KEY, KEY_LEN, &in, tok, sizeof tok, &len), UP_OK);
    assert_int_equal(len, strlen(tok));

    struct up_token_claims out;
    const char *why = "unset";
    assert_int_equal(up_token_verify(tok, len, KEY, KEY_LEN, NOW, LEEWAY, &out, &why), UP_OK);
    assert_null(why);
    assert_int_equal(out.role, in.role);
    assert_int_equal(out.n_services, in.n_services);
    for (size_t i = 0; i < in.n_services; i++) {
        assert_string_equal(out.services[i], in.services[i]);
    }
    assert_string_equal(out.sub, in.sub);
    assert_int_equal(out.exp, in.exp);
    assert_int_equal(out.nbf, in.nbf);
    assert_int_equal(out.iat, in.iat);

    /* Zero / empty fields are omitted and come back as zero / empty. */
    in = basic_claims();
    assert_int_equal(up_token_sign(KEY, KEY_LEN, &in, tok, sizeof tok, &len), UP_OK);
    assert_int_equal(up_token_verify(tok, len, KEY, KEY_LEN, NOW, LEEWAY, &out, NULL), UP_OK);
    assert_int_equal(out.role, UP_ROLE_CLIENT);
    assert_int_equal(out.nbf, 0);
    assert_int_equal(out.iat, 0);
    assert_string_equal(out.sub, "");

    /* The admin role (the relay's /api) round-trips too; unknown roles do not parse. */
    in = basic_claims();
    in.role = UP_ROLE_ADMIN;
    assert_int_equal(up_token_sign(KEY, KEY_LEN, &in, tok, sizeof tok, &len), UP_OK);
    assert_int_equal(up_token_verify(tok, len, KEY, KEY_LEN, NOW, LEEWAY, &out, NULL), UP_OK);
    assert_int_equal(out.role, UP_ROLE_ADMIN);
}

static void test_token_known_vector(void **state)
{
    (void)state;
    /* From python3: header.payload signed with hmac.new(KEY, msg, hashlib.sha256), with
     * payload json.dumps({"role":"client","services":["echo","ssh"],"sub":"alice",
     * "iat":1700000000,"nbf":1700000000,"exp":1700003600}, separators=(",",":")) and
     * base64.urlsafe_b64encode(...).rstrip(b"="). */
    static const char want[] =
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
        "eyJyb2xlIjoiY2xpZW50Iiwic2VydmljZXMiOlsiZWNobyIsInNzaCJdLCJzdWIiOiJhbGljZSIsImlhdCI6"
        "MTcwMDAwMDAwMCwibmJmIjoxNzAwMDAwMDAwLCJleHAiOjE3MDAwMDM2MDB9."
        "aKwh4cjWyygfHoHwJtmcWdkco9yWAir0Voxd73ZI4vs";
    struct up_token_claims c = basic_claims();
    snprintf(c.services[1], sizeof c.services[1], "ssh");
    c.n_services = 2;
    snprintf(c.sub, sizeof c.sub, "alice");
    c.iat = NOW;
    c.nbf = NOW;
    c.exp = NOW + 3600;
    char tok[TOK_CAP];
    size_t len = 0;
    assert_int_equal(up_token_sign(KEY, KEY_LEN, &c, tok, sizeof tok, &len), UP_OK);
    assert_string_equal(tok, want);
    assert_int_equal(len, sizeof want - 1);
    expect_ok(want);
}

static void test_token_alg_none(void **state)
{
    (void)state;
    static const char pay[] = "{\"role\":\"client\",\"services\":[\"*\"],\"exp\":1700003600}";
    char tok[TOK_CAP];
    /* CVE-2015-2951: unsigned token, empty signature part. */
    size_t n = signing_input(tok, "{\"alg\":\"none\",\"typ\":\"JWT\"}", pay);
    tok[n++] = '.';
    tok[n] = '\0';
    expect_refused(tok, n, "alg not allowed");
    /* Even a correct MAC does not make "none" (or "None") acceptable. */
    expect_refused_hdr("{\"alg\":\"none\"}", "alg not allowed");
    expect_refused_hdr("{\"alg\":\"None\",\"typ\":\"JWT\"}", "alg not allowed");
}

static void test_token_alg_hs512(void **state)
{
    (void)state;
    expect_refused_hdr("{\"alg\":\"HS512\",\"typ\":\"JWT\"}", "alg not allowed");
    expect_refused_hdr("{\"alg\":\"hs256\",\"typ\":\"JWT\"}", "alg not allowed");
    expect_refused_hdr("{\"alg\":\"HS256 \",\"typ\":\"JWT\"}", "alg not allowed");
}

static void test_token_alg_rs256(void **state)
{
    (void)state;
    /* CVE-2016-10555: an RS256 label over an HMAC made with a key we accept. */
    expect_refused_hdr("{\"alg\":\"RS256\",\"typ\":\"JWT\"}", "alg not allowed");
    expect_refused_hdr("{\"alg\":\"ES256\"}", "alg not allowed");
}

static void test_token_alg_missing(void **state)
{
    (void)state;
    expect_refused_hdr("{\"typ\":\"JWT\"}", "alg not allowed");
    expect_refused_hdr("{}", "alg not allowed");
    expect_refused_hdr("{\"alg\":null}", "alg not allowed");
    expect_refused_hdr("{\"alg\":256}", "alg not allowed");
    expect_refused_hdr("{\"alg\":[\"HS256\"]}", "alg not allowed");
}

static void test_token_alg_duplicate(void **state)
{
    (void)state;
    /* Two parsers could read different values: refuse duplicates outright. */
    expect_refused_hdr("{\"alg\":\"none\",\"alg\":\"HS256\"}", "malformed header");
    expect_refused_hdr("{\"alg\":\"HS256\",\"alg\":\"none\"}", "malformed header");
}

static void test_token_crit_header(void **state)
{
    (void)state;
    expect_refused_hdr("{\"alg\":\"HS256\",\"typ\":\"JWT\",\"crit\":[\"exp\"],\"exp\":1}",
                       "crit header not supported");
    expect_refused_hdr("{\"alg\":\"HS256\",\"crit\":[]}", "crit header not supported");
}

static void test_token_typ(void **state)
{
    (void)state;
    static const char pay[] = "{\"role\":\"client\",\"services\":[\"echo\"],\"exp\":1700003600}";
    char tok[TOK_CAP];
    forge(tok, "{\"alg\":\"HS256\"}", pay);
    expect_ok(tok);
    forge(tok, "{\"alg\":\"HS256\",\"typ\":\"jwt\"}", pay);
    expect_ok(tok);
    expect_refused_hdr("{\"alg\":\"HS256\",\"typ\":\"JOSE\"}", "typ not allowed");
    expect_refused_hdr("{\"alg\":\"HS256\",\"typ\":1}", "typ not allowed");
}

static void test_token_embedded_jwk_ignored(void **state)
{
    (void)state;
    /* CVE-2018-0114: the header carries the attacker's key and points at others. */
    static const char evil_key[] = "attacker-chosen-key-attacker-chosen";
    static const char hdr[] =
        "{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"attacker\","
        "\"jku\":\"https://evil.example/jwks.json\",\"x5u\":\"https://evil.example/c.pem\","
        "\"x5c\":[\"MIIB\"],"
        "\"jwk\":{\"kty\":\"oct\",\"k\":\"YXR0YWNrZXItY2hvc2VuLWtleS1hdHRhY2tlci1jaG9zZW4\"}}";
    static const char pay[] = "{\"role\":\"agent\",\"services\":[\"*\"],\"exp\":1700003600}";
    char tok[TOK_CAP];
    size_t n = signing_input(tok, hdr, pay);
    n = append_sig(tok, n, (const uint8_t *)evil_key, sizeof evil_key - 1, UP_SHA256_LEN);
    expect_refused(tok, n, "bad signature");
    /* The same header is harmless with our key: it is simply ignored. */
    forge(tok, hdr, pay);
    expect_ok(tok);
}

static void test_token_empty_signature(void **state)
{
    (void)state;
    static const char pay[] = "{\"role\":\"client\",\"services\":[\"echo\"],\"exp\":1700003600}";
    char tok[TOK_CAP];
    /* CVE-2020-28042: a null signature must never verify. */
    size_t n = signing_input(tok, HDR, pay);
    tok[n++] = '.';
    tok[n] = '\0';
    expect_refused(tok, n, "bad signature");
    /* And no signature part at all is not even a JWS. */
    expect_refused(tok, n - 1, "malformed token");
}

static void test_token_truncated_signature(void **state)
{
    (void)state;
    static const char pay[] = "{\"role\":\"client\",\"services\":[\"echo\"],\"exp\":1700003600}";
    char tok[TOK_CAP];
    size_t n = signing_input(tok, HDR, pay);
    size_t t = append_sig(tok, n, KEY, KEY_LEN, UP_SHA256_LEN - 1);
    expect_refused(tok, t, "bad signature");
    t = append_sig(tok, n, KEY, KEY_LEN, 16);
    expect_refused(tok, t, "bad signature");
    /* The full signature with its last character dropped. */
    t = forge(tok, HDR, pay);
    expect_refused(tok, t - 1, "bad signature");
}

static void test_token_extra_signature_byte(void **state)
{
    (void)state;
    static const char pay[] = "{\"role\":\"client\",\"services\":[\"echo\"],\"exp\":1700003600}";
    char tok[TOK_CAP];
    size_t n = signing_input(tok, HDR, pay);
    size_t t = append_sig(tok, n, KEY, KEY_LEN, UP_SHA256_LEN + 1);
    expect_refused(tok, t, "bad signature");
    t = forge(tok, HDR, pay);
    tok[t++] = 'A';
    tok[t] = '\0';
    expect_refused(tok, t, "bad signature");
}

static int b64url_value(char ch)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    return (int)(strchr(tab, ch) - tab);
}

static void test_token_noncanonical_signature(void **state)
{
    (void)state;
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    static const char pay[] = "{\"role\":\"client\",\"services\":[\"echo\"],\"exp\":1700003600}";
    char tok[TOK_CAP];
    size_t n = forge(tok, HDR, pay);
    expect_ok(tok);
    /* 43 characters carry 258 bits: the last two must be zero, so flipping one of them
     * gives a second spelling of the same 32 bytes, which must not verify. */
    tok[n - 1] = tab[b64url_value(tok[n - 1]) ^ 1];
    expect_refused(tok, n, "bad signature");
}

static void test_token_tampered_payload(void **state)
{
    (void)state;
    char tok[TOK_CAP];
    char evil[TOK_CAP];
    size_t n = forge(tok, HDR, "{\"role\":\"client\",\"services\":[\"echo\"],\"exp\":1700003600}");
    const char *sig = strrchr(tok, '.');
    size_t m =
        signing_input(evil, HDR, "{\"role\":\"agent\",\"services\":[\"echo\"],\"exp\":1700003600}");
    memcpy(evil + m, sig, strlen(sig) + 1);
    expect_refused(evil, strlen(evil), "bad signature");
    /* One flipped character in the payload part. */
    const char *dot = strchr(tok, '.');
    tok[(size_t)(dot - tok) + 5] ^= 0x01;
    expect_refused(tok, n, "bad signature");
}

static void test_token_wrong_secret(void **state)
{
    (void)state;
    static const uint8_t other[] = "fedcba9876543210fedcba9876543210";
    struct up_token_claims c = basic_claims();
    char tok[TOK_CAP];
    size_t len = 0;
    assert_int_equal(up_token_sign(other, sizeof other - 1, &c, tok, sizeof tok, &len), UP_OK);
    expect_refused(tok, len, "bad signature");
}

static void test_token_exp_leeway(void **state)
{
    (void)state;
    const char *why = NULL;
    assert_int_equal(verify_times(NOW - LEEWAY - 1, 0, 0, &why), UP_EAUTH);
    assert_string_equal(why, "token expired");
    assert_int_equal(verify_times(NOW - LEEWAY, 0, 0, &why), UP_OK);
    assert_int_equal(verify_times(NOW - LEEWAY + 1, 0, 0, &why), UP_OK);
    assert_int_equal(verify_times(NOW, 0, 0, &why), UP_OK);
    assert_int_equal(verify_times(NOW + 3600, 0, 0, &why), UP_OK);
    assert_int_equal(verify_times(INT64_MAX, 0, 0, &why), UP_OK);
}

static void test_token_exp_leeway_zero(void **state)
{
    (void)state;
    char tok[TOK_CAP];
    struct up_token_claims c = basic_claims();
    size_t len = 0;
    c.exp = NOW;
    assert_int_equal(up_token_sign(KEY, KEY_LEN, &c, tok, sizeof tok, &len), UP_OK);
    assert_int_equal(up_token_verify(tok, len, KEY, KEY_LEN, NOW, 0, &c, NULL), UP_OK);
    assert_int_equal(up_token_verify(tok, len, KEY, KEY_LEN, NOW + 1, 0, &c, NULL), UP_EAUTH);
    /* Extreme clocks must not overflow (UBSan checks this). */
    assert_int_equal(up_token_verify(tok, len, KEY, KEY_LEN, INT64_MAX, INT64_MAX, &c, NULL),
                     UP_OK);
    assert_int_equal(up_token_verify(tok, len, KEY, KEY_LEN, INT64_MAX, LEEWAY, &c, NULL),
                     UP_EAUTH);
    assert_int_equal(up_token_verify(tok, len, KEY, KEY_LEN, INT64_MIN, LEEWAY, &c, NULL), UP_OK);
}

static void test_token_exp_bad(void **state)
{
    (void)state;
    expect_refused_pay("{\"role\":\"client\",\"services\":[\"echo\"]}", "exp missing");
    expect_refused_pay("{\"role\":\"client\",\"services\":[\"echo\"],\"exp\":\"1700003600\"}",
                       "bad exp");
    expect_refused_pay("{\"role\":\"client\",\"services\":[\"echo\"],\"exp\":1700003600.5}",
                       "bad exp");
    expect_refused_pay("{\"role\":\"client\",\"services\":[\"echo\"],\"exp\":1.7e10}", "bad exp");
    expect_refused_pay("{\"role\":\"client\",\"services\":[\"echo\"],\"exp\":null}", "bad exp");
    expect_refused_pay("{\"role\":\"client\",\"services\":[\"echo\"],\"exp\":0}", "bad exp");
    expect_refused_pay("{\"role\":\"client\",\"services\":[\"echo\"],\"exp\":-1}", "bad exp");
    expect_refused_pay("{\"role\":\"client\",\"services\":[\"echo\"],\"exp\":99999999999999999999}",
                       "malformed payload");
    expect_refused_pay("{\"role\":\"client\",\"services\":[\"echo\"],\"exp\":1700003600,"
                       "\"nbf\":\"x\"}",
                       "bad nbf");
    expect_refused_pay("{\"role\":\"client\",\"services\":[\"echo\"],\"exp\":1700003600,"
                       "\"iat\":true}",
                       "bad iat");
    expect_refused_pay("{\"role\":\"client\",\"services\":[\"echo\"],\"exp\":1,\"exp\":1700003600}",
                       "malformed payload");
}

static void test_token_nbf_leeway(void **state)
{
    (void)state;
    const char *why = NULL;
    int64_t exp = NOW + 3600;
    assert_int_equal(verify_times(exp, NOW + LEEWAY + 1, 0, &why), UP_EAUTH);
    assert_string_equal(why, "token not yet valid");
    assert_int_equal(verify_times(exp, NOW + LEEWAY, 0, &why), UP_OK);
    assert_int_equal(verify_times(exp, NOW + LEEWAY - 1, 0, &why), UP_OK);
    assert_int_equal(verify_times(exp, NOW - LEEWAY, 0, &why), UP_OK);
    assert_int_equal(verify_times(exp, NOW - LEEWAY - 1, 0, &why), UP_OK);
    assert_int_equal(verify_times(INT64_MAX, INT64_MAX, 0, &why), UP_EAUTH);
    assert_string_equal(why, "token not yet valid");
}

static void test_token_iat_future(void **state)
{
    (void)state;
    const char *why = NULL;
    int64_t exp = NOW + 3600;
    assert_int_equal(verify_times(exp, 0, NOW + LEEWAY + 1, &why), UP_EAUTH);
    assert_string_equal(why, "token issued in the future");
    assert_int_equal(verify_times(exp, 0, NOW + LEEWAY, &why), UP_OK);
    assert_int_equal(verify_times(exp, 0, NOW - LEEWAY - 1, &why), UP_OK);
    assert_int_equal(verify_times(exp, 0, NOW - 86400, &why), UP_OK);
}

static void test_token_wrong_role(void **state)
{
    (void)state;
    expect_refused_pay("{\"role\":\"root\",\"services\":[\"echo\"],\"exp\":1700003600}",
                       "bad role");
    expect_refused_pay("{\"role\":\"Admin\",\"services\":[\"echo\"],\"exp\":1700003600}",
                       "bad role");
    expect_refused_pay("{\"role\":\"Agent\",\"services\":[\"echo\"],\"exp\":1700003600}",
                       "bad role");
    expect_refused_pay("{\"role\":\"\",\"services\":[\"echo\"],\"exp\":1700003600}", "bad role");
    expect_refused_pay("{\"role\":1,\"services\":[\"echo\"],\"exp\":1700003600}", "bad role");
    expect_refused_pay("{\"services\":[\"echo\"],\"exp\":1700003600}", "bad role");
    expect_refused_pay("{\"role\":\"agent\\u0000x\",\"services\":[\"echo\"],\"exp\":1700003600}",
                       "malformed payload");
}

static void test_token_services_not_array(void **state)
{
    (void)state;
    expect_refused_pay("{\"role\":\"client\",\"services\":\"echo\",\"exp\":1700003600}",
                       "bad services");
    expect_refused_pay("{\"role\":\"client\",\"services\":{\"echo\":1},\"exp\":1700003600}",
                       "bad services");
    expect_refused_pay("{\"role\":\"client\",\"exp\":1700003600}", "bad services");
    expect_refused_pay("{\"role\":\"client\",\"services\":[],\"exp\":1700003600}", "bad services");
}

/* A payload with n services named s0, s1, ... */
static void services_payload(char *pay, size_t cap, size_t n)
{
    size_t off =
        (size_t)snprintf(pay, cap, "{\"role\":\"client\",\"exp\":1700003600,\"services\":[");
    for (size_t i = 0; i < n; i++) {
        off += (size_t)snprintf(pay + off, cap - off, "%s\"s%zu\"", i ? "," : "", i);
    }
    snprintf(pay + off, cap - off, "]}");
}

static void test_token_too_many_services(void **state)
{
    (void)state;
    char pay[1024];
    services_payload(pay, sizeof pay, UP_TOKEN_MAX_SERVICES - 1);
    expect_ok_pay(pay);
    services_payload(pay, sizeof pay, UP_TOKEN_MAX_SERVICES);
    expect_ok_pay(pay);
    services_payload(pay, sizeof pay, UP_TOKEN_MAX_SERVICES + 1);
    expect_refused_pay(pay, "too many services");

    struct up_token_claims c = basic_claims();
    char tok[TOK_CAP];
    size_t len = 0;
    c.n_services = UP_TOKEN_MAX_SERVICES + 1;
    assert_int_equal(up_token_sign(KEY, KEY_LEN, &c, tok, sizeof tok, &len), UP_EINVAL);
    c.n_services = 0;
    assert_int_equal(up_token_sign(KEY, KEY_LEN, &c, tok, sizeof tok, &len), UP_EINVAL);
}

static void test_token_invalid_service_name(void **state)
{
    (void)state;
    char pay[512];
    char name[UP_TOKEN_MAX_NAME + 2];
    expect_refused_pay("{\"role\":\"client\",\"services\":[\"ec ho\"],\"exp\":1700003600}",
                       "bad service name");
    expect_refused_pay("{\"role\":\"client\",\"services\":[\"\"],\"exp\":1700003600}",
                       "bad service name");
    expect_refused_pay("{\"role\":\"client\",\"services\":[\"echo\",1],\"exp\":1700003600}",
                       "bad service name");
    expect_refused_pay("{\"role\":\"client\",\"services\":[\"a/b\"],\"exp\":1700003600}",
                       "bad service name");
    expect_refused_pay("{\"role\":\"client\",\"services\":[\"**\"],\"exp\":1700003600}",
                       "bad service name");
    memset(name, 'n', sizeof name);
    name[UP_TOKEN_MAX_NAME] = '\0';
    snprintf(pay, sizeof pay, "{\"role\":\"client\",\"services\":[\"%s\"],\"exp\":1700003600}",
             name);
    expect_ok_pay(pay);
    name[UP_TOKEN_MAX_NAME] = 'n';
    name[UP_TOKEN_MAX_NAME + 1] = '\0';
    snprintf(pay, sizeof pay, "{\"role\":\"client\",\"services\":[\"%s\"],\"exp\":1700003600}",
             name);
    expect_refused_pay(pay, "bad service name");

    struct up_token_claims c = basic_claims();
    char tok[TOK_CAP];
    size_t len = 0;
    snprintf(c.services[0], sizeof c.services[0], "bad name");
    assert_int_equal(up_token_sign(KEY, KEY_LEN, &c, tok, sizeof tok, &len), UP_EINVAL);
    memset(c.services[0], 'a', sizeof c.services[0]); /* not NUL-terminated */
    assert_int_equal(up_token_sign(KEY, KEY_LEN, &c, tok, sizeof tok, &len), UP_EINVAL);
}

static void test_token_sub(void **state)
{
    (void)state;
    char pay[512];
    char sub[UP_TOKEN_MAX_NAME + 2];
    memset(sub, 's', sizeof sub);
    sub[UP_TOKEN_MAX_NAME] = '\0';
    snprintf(pay, sizeof pay,
             "{\"role\":\"client\",\"services\":[\"e\"],\"exp\":1700003600,\"sub\":\"%s\"}", sub);
    expect_ok_pay(pay);
    sub[UP_TOKEN_MAX_NAME] = 's';
    sub[UP_TOKEN_MAX_NAME + 1] = '\0';
    snprintf(pay, sizeof pay,
             "{\"role\":\"client\",\"services\":[\"e\"],\"exp\":1700003600,\"sub\":\"%s\"}", sub);
    expect_refused_pay(pay, "bad sub");
    expect_refused_pay("{\"role\":\"client\",\"services\":[\"e\"],\"exp\":1700003600,\"sub\":1}",
                       "bad sub");
    expect_refused_pay(
        "{\"role\":\"client\",\"services\":[\"e\"],\"exp\":1700003600,\"sub\":\"a\\nb\"}",
        "bad sub");

    struct up_token_claims c = basic_claims();
    char tok[TOK_CAP];
    size_t len = 0;
    snprintf(c.sub, sizeof c.sub, "a\nfake log line");
    assert_int_equal(up_token_sign(KEY, KEY_LEN, &c, tok, sizeof tok, &len), UP_EINVAL);
    snprintf(c.sub, sizeof c.sub, "bad \xc3\x28 utf8");
    assert_int_equal(up_token_sign(KEY, KEY_LEN, &c, tok, sizeof tok, &len), UP_EINVAL);
    snprintf(c.sub, sizeof c.sub, "\xed\xa0\x80"); /* a UTF-16 surrogate */
    assert_int_equal(up_token_sign(KEY, KEY_LEN, &c, tok, sizeof tok, &len), UP_EINVAL);
    memset(c.sub, 'a', sizeof c.sub); /* not NUL-terminated */
    assert_int_equal(up_token_sign(KEY, KEY_LEN, &c, tok, sizeof tok, &len), UP_EINVAL);
}

/* A correctly signed token of exactly want characters (padding an unknown claim). */
static size_t token_of_len(char *tok, size_t want)
{
    static const char head[] = "{\"role\":\"client\",\"services\":[\"echo\"],\"exp\":1700003600,"
                               "\"pad\":\"";
    char pay[UP_TOKEN_MAX_LEN];
    for (size_t k = 0; sizeof head + k + 2 < sizeof pay; k++) {
        size_t n = sizeof head - 1 + k + 2;
        size_t total = up_b64_len(sizeof HDR - 1, true) + 1 + up_b64_len(n, true) + 1 + 43;
        if (total == want) {
            memcpy(pay, head, sizeof head - 1);
            memset(pay + sizeof head - 1, 'x', k);
            memcpy(pay + sizeof head - 1 + k, "\"}", 3);
            size_t len = forge(tok, HDR, pay);
            assert_int_equal(len, want);
            return len;
        }
    }
    fail_msg("no token of length %zu", want);
    return 0;
}

static void test_token_oversize(void **state)
{
    (void)state;
    char tok[TOK_CAP];
    token_of_len(tok, UP_TOKEN_MAX_LEN - 1);
    expect_ok(tok);
    token_of_len(tok, UP_TOKEN_MAX_LEN);
    expect_ok(tok);
    size_t n = token_of_len(tok, UP_TOKEN_MAX_LEN + 1);
    expect_refused(tok, n, "token too long");
    /* Refused on length alone, before any decoding. */
    memset(tok, '!', UP_TOKEN_MAX_LEN + 1);
    expect_refused(tok, UP_TOKEN_MAX_LEN + 1, "token too long");
    memset(tok, '!', UP_TOKEN_MAX_LEN);
    expect_refused(tok, UP_TOKEN_MAX_LEN, "malformed token");
}

static void test_token_max_claims_fit(void **state)
{
    (void)state;
    /* The largest claims we can sign must stay under the verify limit. */
    struct up_token_claims c = basic_claims();
    for (size_t i = 0; i < UP_TOKEN_MAX_SERVICES; i++) {
        memset(c.services[i], 'a' + (int)(i % 26), UP_TOKEN_MAX_NAME);
        c.services[i][UP_TOKEN_MAX_NAME] = '\0';
    }
    c.n_services = UP_TOKEN_MAX_SERVICES;
    memset(c.sub, '"', UP_TOKEN_MAX_NAME);
    c.sub[UP_TOKEN_MAX_NAME] = '\0';
    c.iat = INT64_MAX;
    c.nbf = INT64_MAX;
    c.exp = INT64_MAX;
    char tok[TOK_CAP];
    size_t len = 0;
    assert_int_equal(up_token_sign(KEY, KEY_LEN, &c, tok, sizeof tok, &len), UP_OK);
    assert_true(len <= UP_TOKEN_MAX_LEN);
    const char *why = NULL;
    struct up_token_claims out;
    assert_int_equal(up_token_verify(tok, len, KEY, KEY_LEN, INT64_MAX, LEEWAY, &out, &why), UP_OK);
    assert_int_equal(out.n_services, UP_TOKEN_MAX_SERVICES);
    assert_string_equal(out.sub, c.sub);
}

static void test_token_short_secret(void **state)
{
    (void)state;
    struct up_token_claims c = basic_claims();
    char tok[TOK_CAP];
    size_t len = 0;
    const char *why = NULL;
    assert_int_equal(up_token_sign(KEY, UP_TOKEN_MIN_SECRET - 1, &c, tok, sizeof tok, &len),
                     UP_EINVAL);
    assert_int_equal(len, 0);
    assert_int_equal(up_token_sign(KEY, 0, &c, tok, sizeof tok, &len), UP_EINVAL);
    assert_int_equal(up_token_sign(KEY, UP_TOKEN_MIN_SECRET, &c, tok, sizeof tok, &len), UP_OK);
    assert_int_equal(up_token_verify(tok, len, KEY, UP_TOKEN_MIN_SECRET - 1, NOW, LEEWAY, &c, &why),
                     UP_EINVAL);
    assert_string_equal(why, "secret too short");
    assert_int_equal(up_token_verify(tok, len, KEY, 0, NOW, LEEWAY, &c, &why), UP_EINVAL);
    assert_int_equal(up_token_verify(tok, len, KEY, UP_TOKEN_MIN_SECRET, NOW, LEEWAY, &c, &why),
                     UP_OK);
}

static void test_token_bad_arguments(void **state)
{
    (void)state;
    struct up_token_claims c = basic_claims();
    char tok[TOK_CAP];
    size_t len = 0;
    const char *why = NULL;
    assert_int_equal(up_token_sign(KEY, KEY_LEN, &c, tok, sizeof tok, &len), UP_OK);
    assert_int_equal(up_token_verify(tok, len, KEY, KEY_LEN, NOW, -1, &c, &why), UP_EINVAL);
    assert_int_equal(up_token_verify(NULL, 1, KEY, KEY_LEN, NOW, LEEWAY, &c, &why), UP_EINVAL);
    assert_int_equal(up_token_verify(tok, len, NULL, KEY_LEN, NOW, LEEWAY, &c, &why), UP_EINVAL);
    assert_int_equal(up_token_verify(tok, len, KEY, KEY_LEN, NOW, LEEWAY, NULL, &why), UP_EINVAL);
    assert_int_equal(up_token_verify(NULL, 0, KEY, KEY_LEN, NOW, LEEWAY, &c, &why), UP_EAUTH);
    assert_string_equal(why, "malformed token");

    c = basic_claims();
    c.role = UP_ROLE_NONE;
    assert_int_equal(up_token_sign(KEY, KEY_LEN, &c, tok, sizeof tok, &len), UP_EINVAL);
    c = basic_claims();
    c.exp = 0;
    assert_int_equal(up_token_sign(KEY, KEY_LEN, &c, tok, sizeof tok, &len), UP_EINVAL);
    c = basic_claims();
    c.nbf = -1;
    assert_int_equal(up_token_sign(KEY, KEY_LEN, &c, tok, sizeof tok, &len), UP_EINVAL);
    c = basic_claims();
    assert_int_equal(up_token_sign(KEY, KEY_LEN, NULL, tok, sizeof tok, &len), UP_EINVAL);
    assert_int_equal(up_token_sign(KEY, KEY_LEN, &c, NULL, sizeof tok, &len), UP_EINVAL);
}

static void test_token_sign_cap(void **state)
{
    (void)state;
    struct up_token_claims c = basic_claims();
    char tok[TOK_CAP];
    char small[TOK_CAP];
    size_t len = 0;
    size_t len2 = 1;
    assert_int_equal(up_token_sign(KEY, KEY_LEN, &c, tok, sizeof tok, &len), UP_OK);
    assert_int_equal(up_token_sign(KEY, KEY_LEN, &c, small, len, &len2), UP_ELIMIT);
    assert_int_equal(len2, 0);
    assert_int_equal(up_token_sign(KEY, KEY_LEN, &c, small, 0, &len2), UP_ELIMIT);
    assert_int_equal(up_token_sign(KEY, KEY_LEN, &c, small, len + 1, &len2), UP_OK);
    assert_int_equal(len2, len);
    assert_string_equal(small, tok);
}

static void test_token_base64_padding(void **state)
{
    (void)state;
    /* 52 bytes of JSON: 52 % 3 == 1, so padded base64 would end in "==". */
    static const char pay[] = "{\"role\":\"client\",\"services\":[\"ab\"],\"exp\":1700003600}";
    assert_int_equal((sizeof pay - 1) % 3, 1);
    char tok[TOK_CAP];
    size_t n = signing_input(tok, HDR, pay);
    memcpy(tok + n, "==", 3);
    /* Signed over the padded text, so only the base64 strictness can refuse it. */
    n = append_sig(tok, n + 2, KEY, KEY_LEN, UP_SHA256_LEN);
    expect_refused(tok, n, "malformed payload");

    n = signing_input(tok, HDR, pay);
    size_t h = strlen("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9");
    memmove(tok + h + 1, tok + h, n - h + 1);
    tok[h] = '=';
    n = append_sig(tok, n + 1, KEY, KEY_LEN, UP_SHA256_LEN);
    expect_refused(tok, n, "malformed token");

    /* A signature never needs padding (43 characters) and must not carry any. */
    n = forge(tok, HDR, pay);
    tok[n++] = '=';
    tok[n] = '\0';
    expect_refused(tok, n, "bad signature");
}

static void test_token_dots(void **state)
{
    (void)state;
    static const char pay[] = "{\"role\":\"client\",\"services\":[\"echo\"],\"exp\":1700003600}";
    char tok[TOK_CAP];
    size_t n = forge(tok, HDR, pay);
    expect_ok(tok);
    /* Three dots: a JWE-like fourth part, or a trailing dot. */
    tok[n] = '.';
    tok[n + 1] = '\0';
    expect_refused(tok, n + 1, "malformed token");
    memcpy(tok + n, ".eyJ9", 6);
    expect_refused(tok, n + 5, "malformed token");
    /* One dot and none. */
    expect_refused(tok, strchr(strchr(tok, '.') + 1, '.') - tok, "malformed token");
    expect_refused("abc", 3, "malformed token");
    expect_refused("", 0, "malformed token");
    expect_refused("..", 2, "malformed header");
    expect_refused("...", 3, "malformed token");
    /* Whitespace and other characters outside the alphabet. */
    n = forge(tok, HDR, pay);
    memmove(tok + 1, tok, n + 1);
    tok[0] = ' ';
    expect_refused(tok, n + 1, "malformed token");
}

static void test_token_not_objects(void **state)
{
    (void)state;
    expect_refused_hdr("[\"HS256\"]", "malformed header");
    expect_refused_hdr("\"HS256\"", "malformed header");
    expect_refused_hdr("{\"alg\":\"HS256\"", "malformed header");
    expect_refused_hdr("{\"alg\":\"HS256\"} {}", "malformed header");
    expect_refused_pay("[1]", "malformed payload");
    expect_refused_pay("", "malformed payload");
    expect_refused_pay("{\"role\":\"client\",\"services\":[\"echo\"],\"exp\":1700003600} x",
                       "malformed payload");
}

static void test_token_allows(void **state)
{
    (void)state;
    struct up_token_claims c = basic_claims();
    snprintf(c.services[1], sizeof c.services[1], "ssh");
    c.n_services = 2;
    assert_true(up_token_allows(&c, "echo", 4));
    assert_true(up_token_allows(&c, "ssh", 3));
    assert_true(up_token_allows(&c, "echo-extra", 4));
    assert_false(up_token_allows(&c, "ech", 3));
    assert_false(up_token_allows(&c, "echo2", 5));
    assert_false(up_token_allows(&c, "ECHO", 4));
    assert_false(up_token_allows(&c, "other", 5));
    assert_false(up_token_allows(&c, "*", 1));
    assert_false(up_token_allows(&c, "", 0));
    assert_false(up_token_allows(NULL, "echo", 4));

    snprintf(c.services[1], sizeof c.services[1], "*");
    assert_true(up_token_allows(&c, "other", 5));
    assert_true(up_token_allows(&c, "echo", 4));
    assert_false(up_token_allows(&c, "*", 1));
    assert_false(up_token_allows(&c, "bad name", 8));
    assert_false(up_token_allows(&c, NULL, 0));
    c.n_services = 1;
    assert_false(up_token_allows(&c, "other", 5));
}

static void test_token_valid_service_name(void **state)
{
    (void)state;
    char name[UP_TOKEN_MAX_NAME + 1];
    memset(name, 'x', sizeof name);
    assert_true(up_token_valid_service_name("echo", 4));
    assert_true(up_token_valid_service_name("a", 1));
    assert_true(up_token_valid_service_name("A-z_0.9", 7));
    assert_true(up_token_valid_service_name("*", 1));
    assert_true(up_token_valid_service_name(name, UP_TOKEN_MAX_NAME));
    assert_false(up_token_valid_service_name(name, UP_TOKEN_MAX_NAME + 1));
    assert_false(up_token_valid_service_name("", 0));
    assert_false(up_token_valid_service_name(NULL, 0));
    assert_false(up_token_valid_service_name("**", 2));
    assert_false(up_token_valid_service_name("a*", 2));
    assert_false(up_token_valid_service_name("ec ho", 5));
    assert_false(up_token_valid_service_name("a/b", 3));
    assert_false(up_token_valid_service_name("a:b", 3));
    assert_false(up_token_valid_service_name("ab\0", 3));
    assert_false(up_token_valid_service_name("z\xc3\xab", 3));
}

static void test_token_roles(void **state)
{
    (void)state;
    assert_int_equal(up_token_role_parse("agent"), UP_ROLE_AGENT);
    assert_int_equal(up_token_role_parse("client"), UP_ROLE_CLIENT);
    assert_int_equal(up_token_role_parse("Agent"), UP_ROLE_NONE);
    assert_int_equal(up_token_role_parse("agents"), UP_ROLE_NONE);
    assert_int_equal(up_token_role_parse(""), UP_ROLE_NONE);
    assert_int_equal(up_token_role_parse(NULL), UP_ROLE_NONE);
    assert_string_equal(up_token_role_name(UP_ROLE_AGENT), "agent");
    assert_string_equal(up_token_role_name(UP_ROLE_CLIENT), "client");
    assert_int_equal(up_token_role_parse("admin"), UP_ROLE_ADMIN);
    assert_string_equal(up_token_role_name(UP_ROLE_ADMIN), "admin");
    assert_string_equal(up_token_role_name(UP_ROLE_NONE), "none");
    assert_string_equal(up_token_role_name((enum up_token_role)42), "none");
}

/* jansson allocates through these while test_token_alloc_failure runs: fail the fail_at-th
 * allocation (counting from 0), or none when fail_at is -1. */
static long alloc_fail_at = -1;
static long alloc_count;

static void *failing_malloc(size_t n)
{
    if (alloc_count++ == alloc_fail_at) {
        return NULL;
    }
    return up_malloc(n);
}

static void test_token_alloc_failure(void **state)
{
    (void)state;
    struct up_token_claims c = basic_claims();
    snprintf(c.sub, sizeof c.sub, "alice");
    c.iat = NOW;
    char tok[TOK_CAP];
    size_t len = 0;
    assert_int_equal(up_token_sign(KEY, KEY_LEN, &c, tok, sizeof tok, &len), UP_OK);

    json_set_alloc_funcs(failing_malloc, up_free);
    alloc_fail_at = -1;
    alloc_count = 0;
    assert_int_equal(up_token_sign(KEY, KEY_LEN, &c, tok, sizeof tok, &len), UP_OK);
    long sign_allocs = alloc_count;
    alloc_count = 0;
    assert_int_equal(up_token_verify(tok, len, KEY, KEY_LEN, NOW, LEEWAY, &c, NULL), UP_OK);
    long verify_allocs = alloc_count;
    assert_true(sign_allocs > 0 && verify_allocs > 0);

    /* Every failure in sign gives a clean UP_ENOMEM (ASan checks for leaks). */
    for (long k = 0; k < sign_allocs; k++) {
        char out[TOK_CAP];
        size_t out_len = 1;
        alloc_fail_at = k;
        alloc_count = 0;
        assert_int_equal(up_token_sign(KEY, KEY_LEN, &c, out, sizeof out, &out_len), UP_ENOMEM);
        assert_int_equal(out_len, 0);
    }
    /* In verify, jansson reports some allocation failures as syntax errors: those must fail
     * closed (a refusal), the rest as UP_ENOMEM; never a success. */
    long n_enomem = 0;
    for (long k = 0; k < verify_allocs; k++) {
        struct up_token_claims out;
        const char *why = NULL;
        alloc_fail_at = k;
        alloc_count = 0;
        int rv = up_token_verify(tok, len, KEY, KEY_LEN, NOW, LEEWAY, &out, &why);
        if (rv == UP_ENOMEM) {
            assert_string_equal(why, "out of memory");
            n_enomem++;
        } else {
            assert_int_equal(rv, UP_EAUTH);
            assert_true(strcmp(why, "malformed header") == 0 ||
                        strcmp(why, "malformed payload") == 0);
        }
        assert_int_equal(out.role, UP_ROLE_NONE);
    }
    assert_true(n_enomem > 0);
}

static int restore_alloc(void **state)
{
    (void)state;
    json_set_alloc_funcs(up_malloc, up_free);
    alloc_fail_at = -1;
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_token_round_trip),
        cmocka_unit_test(test_token_known_vector),
        cmocka_unit_test(test_token_alg_none),
        cmocka_unit_test(test_token_alg_hs512),
        cmocka_unit_test(test_token_alg_rs256),
        cmocka_unit_test(test_token_alg_missing),
        cmocka_unit_test(test_token_alg_duplicate),
        cmocka_unit_test(test_token_crit_header),
        cmocka_unit_test(test_token_typ),
        cmocka_unit_test(test_token_embedded_jwk_ignored),
        cmocka_unit_test(test_token_empty_signature),
        cmocka_unit_test(test_token_truncated_signature),
        cmocka_unit_test(test_token_extra_signature_byte),
        cmocka_unit_test(test_token_noncanonical_signature),
        cmocka_unit_test(test_token_tampered_payload),
        cmocka_unit_test(test_token_wrong_secret),
        cmocka_unit_test(test_token_exp_leeway),
        cmocka_unit_test(test_token_exp_leeway_zero),
        cmocka_unit_test(test_token_exp_bad),
        cmocka_unit_test(test_token_nbf_leeway),
        cmocka_unit_test(test_token_iat_future),
        cmocka_unit_test(test_token_wrong_role),
        cmocka_unit_test(test_token_services_not_array),
        cmocka_unit_test(test_token_too_many_services),
        cmocka_unit_test(test_token_invalid_service_name),
        cmocka_unit_test(test_token_sub),
        cmocka_unit_test(test_token_oversize),
        cmocka_unit_test(test_token_max_claims_fit),
        cmocka_unit_test(test_token_short_secret),
        cmocka_unit_test(test_token_bad_arguments),
        cmocka_unit_test(test_token_sign_cap),
        cmocka_unit_test(test_token_base64_padding),
        cmocka_unit_test(test_token_dots),
        cmocka_unit_test(test_token_not_objects),
        cmocka_unit_test(test_token_allows),
        cmocka_unit_test(test_token_valid_service_name),
        cmocka_unit_test(test_token_roles),
        cmocka_unit_test_teardown(test_token_alloc_failure, restore_alloc),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
