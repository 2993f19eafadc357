/* Unit tests for the STUN codec (src/proto/stun.c) and the digests it uses (src/base/crypto.c).
 *
 * The four messages of RFC 5769 ("Test Vectors for STUN", April 2010, §2.1-§2.4) are its
 * hex dumps byte for byte. Three of them pad SOFTWARE/USERNAME with spaces (0x20) where our
 * builder writes zeros (RFC 8489 §14: padding content is ignored by the receiver), so their
 * re-builds patch those padding bytes in the buffer before MESSAGE-INTEGRITY is added; from
 * then on the builder's MAC and CRC must come out as the RFC's. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "base/cidr.h"
#include "base/crypto.h"
#include "hexbytes.h"
#include "proto/stun.h"

/* ---- helpers ----------------------------------------------------------------------------- */

static size_t unhex(const char *s, uint8_t *out, size_t cap)
{
    size_t n = hex_bytes(s, out, cap);
    assert_true(n != (size_t)-1);
    return n;
}

static void assert_attr(const struct up_stun_attr *a, uint16_t type, const void *value, size_t len)
{
    assert_non_null(a);
    assert_int_equal(a->type, type);
    assert_int_equal(a->len, len);
    assert_memory_equal(a->value, value, len);
}

static struct up_stun_addr addr(const char *ip, uint16_t port)
{
    struct up_stun_addr a = {.port = port};
    assert_int_equal(up_ip_parse(ip, strlen(ip), a.ip), UP_OK);
    return a;
}

static const uint8_t tid_a[12] = {0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34,
                                  0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae};

/* Parse buf and expect failure err with reason. */
static void assert_parse_fails(const uint8_t *buf, size_t len, int err, const char *reason)
{
    struct up_stun_msg m;
    assert_int_equal(up_stun_parse(buf, len, &m), err);
    assert_non_null(m.err_reason);
    assert_string_equal(m.err_reason, reason);
}

/* A Binding request with one attribute of the given type and value. */
static size_t one_attr(uint8_t *buf, size_t cap, uint16_t type, const void *value, size_t len)
{
    struct up_stun_builder b;
    up_stun_begin(&b, buf, cap, UP_STUN_BINDING, UP_STUN_REQUEST, tid_a);
    up_stun_add(&b, type, value, len);
    size_t n = 0;
    assert_int_equal(up_stun_end(&b, &n), UP_OK);
    return n;
}

/* ---- RFC 5769 vectors ---------------------------------------------------------------------- */

/* RFC 5769 §2.1 Sample Request: SOFTWARE "STUN test client", PRIORITY 0x6e0001ff,
 * ICE-CONTROLLED 0x932ff9b151263b36, USERNAME "evtj:h6vY" (padded with spaces),
 * MESSAGE-INTEGRITY (short-term password "VOkJxbRl1RmTxUk/WvJxBt"), FINGERPRINT. */
static const char rfc5769_request[] = "00 01 00 58 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae"
                                      "80 22 00 10 53 54 55 4e 20 74 65 73 74 20 63 6c 69 65 6e 74"
                                      "00 24 00 04 6e 00 01 ff"
                                      "80 29 00 08 93 2f f9 b1 51 26 3b 36"
                                      "00 06 00 09 65 76 74 6a 3a 68 36 76 59 20 20 20"
                                      "00 08 00 14 9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49"
                                      "c1 b5 71 a2"
                                      "80 28 00 04 e5 7a 3b cf";

/* RFC 5769 §2.2 Sample IPv4 Response: SOFTWARE "test vector" (padded with a space),
 * XOR-MAPPED-ADDRESS 192.0.2.1:32853, MESSAGE-INTEGRITY (same password), FINGERPRINT. */
static const char rfc5769_resp4[] = "01 01 00 3c 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae"
                                    "80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20"
                                    "00 20 00 08 00 01 a1 47 e1 12 a6 43"
                                    "00 08 00 14 2b 91 f5 99 fd 9e 90 c3 8c 74 89 f9 2a f9 ba 53"
                                    "f0 6b e7 d7"
                                    "80 28 00 04 c0 7d 4c 96";

/* RFC 5769 §2.3 Sample IPv6 Response: as §2.2 with XOR-MAPPED-ADDRESS
 * [2001:db8:1234:5678:11:2233:4455:6677]:32853. */
static const char rfc5769_resp6[] = "01 01 00 48 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae"
                                    "80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20"
                                    "00 20 00 14 00 02 a1 47 01 13 a9 fa a5 d3 f1 79 bc 25 f4 b5"
                                    "be d2 b9 d9"
                                    "00 08 00 14 a3 82 95 4e 4b e6 7b f1 17 84 c9 7c 82 92 c2 75"
                                    "bf e3 ed 41"
                                    "80 28 00 04 c8 fb 0b 4c";

/* RFC 5769 §2.4 Sample Request with Long-Term Authentication: USERNAME U+30DE U+30C8 U+30EA
 * U+30C3 U+30AF U+30B9, NONCE "f//499k954d6OL34oL9FSTvy64sA", REALM "example.org",
 * MESSAGE-INTEGRITY; no FINGERPRINT; padding is zeros. */
static const char rfc5769_long_term[] =
    "00 01 00 60 21 12 a4 42 78 ad 34 33 c6 ad 72 c0 29 da 41 2e"
    "00 06 00 12 e3 83 9e e3 83 88 e3 83 aa e3 83 83 e3 82 af e3 82 b9 00 00"
    "00 15 00 1c 66 2f 2f 34 39 39 6b 39 35 34 64 36 4f 4c 33 34 6f 4c 39 46 53 54 76 79"
    "36 34 73 41"
    "00 14 00 0b 65 78 61 6d 70 6c 65 2e 6f 72 67 00"
    "00 08 00 14 f6 70 24 65 6d d6 4a 3e 02 b8 e0 71 2e 85 c9 a2 8c a8 96 66";

static const char short_term_pass[] = "VOkJxbRl1RmTxUk/WvJxBt";
static const char mtx_user[] =
    "\xe3\x83\x9e\xe3\x83\x88\xe3\x83\xaa\xe3\x83\x83\xe3\x82\xaf\xe3\x82\xb9";

static void test_stun_rfc5769_request(void **state)
{
    (void)state;
    uint8_t v[256];
    size_t n = unhex(rfc5769_request, v, sizeof v);
    assert_int_equal(n, 108);
    struct up_stun_msg m;
    assert_int_equal(up_stun_parse(v, n, &m), UP_OK);
    assert_int_equal(m.method, UP_STUN_BINDING);
    assert_int_equal(m.cls, UP_STUN_REQUEST);
    assert_memory_equal(m.tid, tid_a, 12);
    assert_int_equal(m.len, 108);
    assert_int_equal(m.n_attrs, 6);
    assert_attr(&m.attrs[0], UP_STUN_A_SOFTWARE, "STUN test client", 16);
    assert_attr(&m.attrs[1], 0x0024, "\x6e\x00\x01\xff", 4); /* PRIORITY (RFC 8445) */
    assert_attr(&m.attrs[2], 0x8029, "\x93\x2f\xf9\xb1\x51\x26\x3b\x36", 8); /* ICE-CONTROLLED */
    assert_attr(&m.attrs[3], UP_STUN_A_USERNAME, "evtj:h6vY", 9);
    assert_int_equal(m.attrs[3].offset, 60);
    assert_int_equal(m.attrs[4].type, UP_STUN_A_MESSAGE_INTEGRITY);
    assert_int_equal(m.attrs[4].len, 20);
    assert_attr(&m.attrs[5], UP_STUN_A_FINGERPRINT, "\xe5\x7a\x3b\xcf", 4);
    assert_int_equal(m.mi, 4);
    assert_int_equal(m.mi256, -1);
    assert_int_equal(m.fp, 5);
    assert_ptr_equal(up_stun_find(&m, UP_STUN_A_USERNAME), &m.attrs[3]);
    assert_null(up_stun_find(&m, UP_STUN_A_REALM));
    /* PRIORITY is comprehension-required and not ours; ICE-CONTROLLED is optional. */
    assert_int_equal(m.n_unknown, 1);
    assert_int_equal(m.unknown[0], 0x0024);
    uint32_t prio = 0;
    assert_int_equal(up_stun_u32(&m.attrs[1], &prio), UP_OK);
    assert_int_equal(prio, 0x6e0001ff);

    assert_true(
        up_stun_check_integrity(v, &m, (const uint8_t *)short_term_pass, strlen(short_term_pass)));
    assert_false(up_stun_check_integrity(v, &m, (const uint8_t *)"VOkJxbRl1RmTxUk/WvJxBu",
                                         strlen(short_term_pass)));
    assert_false(up_stun_check_integrity(v, &m, NULL, 0));

    /* Re-build: identical up to USERNAME's value; with the RFC's space padding patched in,
     * identical to the last byte. */
    uint8_t out[256];
    struct up_stun_builder b;
    up_stun_begin(&b, out, sizeof out, UP_STUN_BINDING, UP_STUN_REQUEST, tid_a);
    up_stun_add(&b, UP_STUN_A_SOFTWARE, "STUN test client", 16);
    up_stun_add_u32(&b, 0x0024, 0x6e0001ff);
    up_stun_add(&b, 0x8029, m.attrs[2].value, 8);
    up_stun_add(&b, UP_STUN_A_USERNAME, "evtj:h6vY", 9);
    assert_memory_equal(out + 4, v + 4, 16);
    assert_memory_equal(out + 20, v + 20, 60 + 4 + 9 - 20);
    assert_memory_equal(out + 60 + 4 + 9, "\0\0\0", 3);
    memset(out + 60 + 4 + 9, ' ', 3);
    up_stun_add_integrity(&b, (const uint8_t *)short_term_pass, strlen(short_term_pass));
    up_stun_add_fingerprint(&b);
    size_t len = 0;
    assert_int_equal(up_stun_end(&b, &len), UP_OK);
    assert_int_equal(len, n);
    assert_memory_equal(out, v, n);
}

static void check_response(const char *hex, const char *ip, size_t xlen, size_t n_want)
{
    uint8_t v[256];
    size_t n = unhex(hex, v, sizeof v);
    assert_int_equal(n, n_want);
    struct up_stun_msg m;
    assert_int_equal(up_stun_parse(v, n, &m), UP_OK);
    assert_int_equal(m.method, UP_STUN_BINDING);
    assert_int_equal(m.cls, UP_STUN_SUCCESS);
    assert_memory_equal(m.tid, tid_a, 12);
    assert_int_equal(m.n_attrs, 4);
    assert_int_equal(m.n_unknown, 0);
    assert_attr(&m.attrs[0], UP_STUN_A_SOFTWARE, "test vector", 11);
    const struct up_stun_attr *x = up_stun_find(&m, UP_STUN_A_XOR_MAPPED_ADDRESS);
    assert_ptr_equal(x, &m.attrs[1]);
    assert_int_equal(x->len, xlen);
    struct up_stun_addr got, want = addr(ip, 32853);
    assert_int_equal(up_stun_xaddr(&m, x, &got), UP_OK);
    assert_memory_equal(got.ip, want.ip, 16);
    assert_int_equal(got.port, 32853);
    assert_int_equal(m.mi, 2);
    assert_int_equal(m.fp, 3);
    assert_true(
        up_stun_check_integrity(v, &m, (const uint8_t *)short_term_pass, strlen(short_term_pass)));
    assert_false(up_stun_check_integrity(v, &m, (const uint8_t *)"wrong", 5));

    uint8_t out[256];
    struct up_stun_builder b;
    up_stun_begin(&b, out, sizeof out, UP_STUN_BINDING, UP_STUN_SUCCESS, tid_a);
    up_stun_add(&b, UP_STUN_A_SOFTWARE, "test vector", 11);
    assert_int_equal(out[20 + 4 + 11], 0);
    out[20 + 4 + 11] = ' '; /* the RFC's padding */
    up_stun_add_xaddr(&b, UP_STUN_A_XOR_MAPPED_ADDRESS, &want);
    up_stun_add_integrity(&b, (const uint8_t *)short_term_pass, strlen(short_term_pass));
    up_stun_add_fingerprint(&b);
    size_t len = 0;
    assert_int_equal(up_stun_end(&b, &len), UP_OK);
    assert_int_equal(len, n);
    assert_memory_equal(out, v, n);
}

static void test_stun_rfc5769_ipv4_response(void **state)
{
    (void)state;
    check_response(rfc5769_resp4, "192.0.2.1", 8, 80);
}

static void test_stun_rfc5769_ipv6_response(void **state)
{
    (void)state;
    check_response(rfc5769_resp6, "2001:db8:1234:5678:11:2233:4455:6677", 20, 92);
}

static void test_stun_rfc5769_long_term(void **state)
{
    (void)state;
    uint8_t v[256];
    size_t n = unhex(rfc5769_long_term, v, sizeof v);
    assert_int_equal(n, 116);
    struct up_stun_msg m;
    assert_int_equal(up_stun_parse(v, n, &m), UP_OK);
    assert_int_equal(m.method, UP_STUN_BINDING);
    assert_int_equal(m.cls, UP_STUN_REQUEST);
    assert_int_equal(m.n_attrs, 4);
    assert_int_equal(m.n_unknown, 0);
    assert_int_equal(strlen(mtx_user), 18);
    assert_attr(up_stun_find(&m, UP_STUN_A_USERNAME), UP_STUN_A_USERNAME, mtx_user, 18);
    assert_attr(up_stun_find(&m, UP_STUN_A_NONCE), UP_STUN_A_NONCE, "f//499k954d6OL34oL9FSTvy64sA",
                28);
    assert_attr(up_stun_find(&m, UP_STUN_A_REALM), UP_STUN_A_REALM, "example.org", 11);
    assert_int_equal(m.mi, 3);
    assert_int_equal(m.fp, -1);

    /* The RFC's password "The<U+00AD>M<U+00AA>tr<U+2168>" is "TheMatrIX" after SASLprep,
     * which the key function leaves to its callers. */
    uint8_t key[16];
    up_stun_long_term_key(mtx_user, 18, "example.org", 11, "TheMatrIX", 9, key);
    assert_true(up_stun_check_integrity(v, &m, key, sizeof key));
    uint8_t bad[16];
    up_stun_long_term_key(mtx_user, 18, "example.org", 11, "TheMatrix", 9, bad);
    assert_false(up_stun_check_integrity(v, &m, bad, sizeof bad));
    /* The password itself is not the key. */
    assert_false(up_stun_check_integrity(v, &m, (const uint8_t *)"TheMatrIX", 9));
    /* The key is MD5("user:realm:pass") (RFC 8489 §9.2.2). */
    char joined[64];
    size_t jn = 0;
    memcpy(joined, mtx_user, 18);
    jn += 18;
    memcpy(joined + jn, ":example.org:TheMatrIX", 22);
    jn += 22;
    uint8_t md[UP_MD5_LEN];
    up_md5(joined, jn, md);
    assert_memory_equal(md, key, 16);

    uint8_t out[256];
    struct up_stun_builder b;
    up_stun_begin(&b, out, sizeof out, UP_STUN_BINDING, UP_STUN_REQUEST, m.tid);
    up_stun_add(&b, UP_STUN_A_USERNAME, mtx_user, 18);
    up_stun_add(&b, UP_STUN_A_NONCE, "f//499k954d6OL34oL9FSTvy64sA", 28);
    up_stun_add(&b, UP_STUN_A_REALM, "example.org", 11);
    up_stun_add_integrity(&b, key, sizeof key);
    size_t len = 0;
    assert_int_equal(up_stun_end(&b, &len), UP_OK);
    assert_int_equal(len, n);
    assert_memory_equal(out, v, n);
}

/* RFC 8489 Appendix B.1 as corrected by erratum 6268 (the RFC's own dump is wrong): USERHASH,
 * NONCE, REALM, PASSWORD-ALGORITHM SHA-256 and MESSAGE-INTEGRITY-SHA256 with the key
 * SHA-256("user:realm:pass"). */
static void test_stun_rfc8489_sha256(void **state)
{
    (void)state;
    static const char hex[] = "00 01 00 90 21 12 a4 42 78 ad 34 33 c6 ad 72 c0 29 da 41 2e"
                              "00 1e 00 20 4a 3c f3 8f ef 69 92 bd a9 52 c6 78 04 17 da 0f"
                              "24 81 94 15 56 9e 60 b2 05 c4 6e 41 40 7f 17 04"
                              "00 15 00 29 6f 62 4d 61 74 4a 6f 73 32 41 41 41 43 66 2f 2f"
                              "34 39 39 6b 39 35 34 64 36 4f 4c 33 34 6f 4c 39 46 53 54 76"
                              "79 36 34 73 41 00 00 00"
                              "00 14 00 0b 65 78 61 6d 70 6c 65 2e 6f 72 67 00"
                              "00 1d 00 04 00 02 00 00"
                              "00 1c 00 20 b5 c7 bf 00 5b 6c 52 a2 1c 51 c5 e8 92 f8 19 24"
                              "13 62 96 cb 92 7c 43 14 93 09 27 8c c6 51 8e 65";
    uint8_t v[256];
    size_t n = unhex(hex, v, sizeof v);
    assert_int_equal(n, 164);
    struct up_stun_msg m;
    assert_int_equal(up_stun_parse(v, n, &m), UP_OK);
    assert_int_equal(m.n_attrs, 5);
    assert_int_equal(m.mi, -1);
    assert_int_equal(m.mi256, 4);
    assert_attr(up_stun_find(&m, UP_STUN_A_NONCE), UP_STUN_A_NONCE,
                "obMatJos2AAACf//499k954d6OL34oL9FSTvy64sA", 41);
    /* USERHASH = SHA-256("user:realm") (RFC 8489 §14.4). */
    char joined[64];
    memcpy(joined, mtx_user, 18);
    memcpy(joined + 18, ":example.org:TheMatrIX", 22);
    uint8_t h[UP_SHA256_LEN];
    up_sha256(joined, 18 + 12, h);
    assert_attr(up_stun_find(&m, UP_STUN_A_USERHASH), UP_STUN_A_USERHASH, h, 32);
    uint8_t key[UP_SHA256_LEN];
    up_sha256(joined, 18 + 22, key);
    assert_true(up_stun_check_integrity(v, &m, key, sizeof key));
    key[0] ^= 1;
    assert_false(up_stun_check_integrity(v, &m, key, sizeof key));
    key[0] ^= 1;

    uint8_t out[256];
    struct up_stun_builder b;
    up_stun_begin(&b, out, sizeof out, UP_STUN_BINDING, UP_STUN_REQUEST, m.tid);
    for (size_t i = 0; i < 4; i++) {
        up_stun_add(&b, m.attrs[i].type, m.attrs[i].value, m.attrs[i].len);
    }
    up_stun_add_integrity_sha256(&b, key, sizeof key);
    size_t len = 0;
    assert_int_equal(up_stun_end(&b, &len), UP_OK);
    assert_int_equal(len, n);
    assert_memory_equal(out, v, n);
}

/* ---- parse errors --------------------------------------------------------------------------- */

static void test_stun_parse_header_errors(void **state)
{
    (void)state;
    uint8_t v[256];
    size_t n = unhex(rfc5769_resp4, v, sizeof v);
    struct up_stun_msg m;
    assert_int_equal(up_stun_parse(v, n, &m), UP_OK);

    assert_parse_fails(v, 0, UP_EPROTO, "stun: shorter than a header");
    assert_parse_fails(v, 19, UP_EPROTO, "stun: shorter than a header");
    for (uint8_t bit = 0x40; bit; bit = (uint8_t)(bit << 1)) {
        v[0] ^= bit;
        assert_parse_fails(v, n, UP_EPROTO, "stun: leading bits not zero");
        v[0] ^= bit;
    }
    v[7] ^= 1;
    assert_parse_fails(v, n, UP_EPROTO, "stun: bad magic cookie");
    v[7] ^= 1;
    for (uint8_t d = 1; d < 4; d++) {
        v[3] = (uint8_t)(0x3c + d);
        assert_parse_fails(v, n + d, UP_EPROTO, "stun: length not a multiple of 4");
    }
    v[3] = 0x3c;
    /* A truncated datagram, and one with bytes after the message. */
    assert_parse_fails(v, n - 4, UP_EPROTO, "stun: length does not match the message");
    v[n] = v[n + 1] = v[n + 2] = v[n + 3] = 0;
    assert_parse_fails(v, n + 4, UP_EPROTO, "stun: length does not match the message");
    /* The header alone is a message. */
    static const uint8_t empty[20] = {0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42};
    assert_int_equal(up_stun_parse(empty, sizeof empty, &m), UP_OK);
    assert_int_equal(m.n_attrs, 0);
    assert_int_equal(m.mi, -1);
    assert_int_equal(m.fp, -1);
    assert_false(up_stun_check_integrity(empty, &m, (const uint8_t *)"k", 1));
}

static void test_stun_parse_attribute_overrun(void **state)
{
    (void)state;
    uint8_t v[64];
    size_t n = one_attr(v, sizeof v, UP_STUN_A_SOFTWARE, "abcd", 4);
    assert_int_equal(n, 28);
    struct up_stun_msg m;
    assert_int_equal(up_stun_parse(v, n, &m), UP_OK);
    /* 5 bytes need 8 with padding: one past the end. */
    v[20 + 3] = 5;
    assert_parse_fails(v, n, UP_EPROTO, "stun: attribute overruns the message");
    v[20 + 3] = 0xff;
    v[20 + 2] = 0xff;
    assert_parse_fails(v, n, UP_EPROTO, "stun: attribute overruns the message");
    /* 1..4 bytes all take 4 with their padding. */
    for (uint8_t l = 1; l <= 4; l++) {
        v[20 + 2] = 0;
        v[20 + 3] = l;
        assert_int_equal(up_stun_parse(v, n, &m), UP_OK);
        assert_int_equal(m.attrs[0].len, l);
    }
}

static void test_stun_parse_fingerprint(void **state)
{
    (void)state;
    uint8_t v[256];
    size_t n = unhex(rfc5769_request, v, sizeof v);
    struct up_stun_msg m;
    /* A wrong CRC, and a changed byte the CRC covers. */
    v[n - 1] ^= 0x01;
    assert_parse_fails(v, n, UP_EPROTO, "stun: bad FINGERPRINT");
    v[n - 1] ^= 0x01;
    v[24] ^= 0x20; /* "STUN" -> "sTUN" */
    assert_parse_fails(v, n, UP_EPROTO, "stun: bad FINGERPRINT");
    v[24] ^= 0x20;
    assert_int_equal(up_stun_parse(v, n, &m), UP_OK);
    /* The RFC's padding is not covered by anything else but the CRC. */
    v[60 + 4 + 9] = 0;
    assert_parse_fails(v, n, UP_EPROTO, "stun: bad FINGERPRINT");

    /* FINGERPRINT then another attribute. */
    uint8_t out[128];
    struct up_stun_builder b;
    up_stun_begin(&b, out, sizeof out, UP_STUN_BINDING, UP_STUN_INDICATION, tid_a);
    up_stun_add(&b, UP_STUN_A_SOFTWARE, "x", 1);
    up_stun_add_fingerprint(&b);
    size_t len = 0;
    assert_int_equal(up_stun_end(&b, &len), UP_OK);
    assert_int_equal(up_stun_parse(out, len, &m), UP_OK);
    assert_int_equal(m.fp, 1);
    up_stun_add(&b, UP_STUN_A_SOFTWARE, "y", 1);
    assert_int_equal(up_stun_end(&b, &len), UP_OK);
    assert_parse_fails(out, len, UP_EPROTO, "stun: FINGERPRINT not last");
    /* Two FINGERPRINTs: the second is not last either way. */
    up_stun_begin(&b, out, sizeof out, UP_STUN_BINDING, UP_STUN_INDICATION, tid_a);
    up_stun_add_fingerprint(&b);
    up_stun_add_fingerprint(&b);
    assert_int_equal(up_stun_end(&b, &len), UP_OK);
    assert_parse_fails(out, len, UP_EPROTO, "stun: FINGERPRINT not last");
    /* FINGERPRINT after MESSAGE-INTEGRITY and after ignored attributes still counts. */
    up_stun_begin(&b, out, sizeof out, UP_STUN_BINDING, UP_STUN_REQUEST, tid_a);
    up_stun_add_integrity(&b, (const uint8_t *)"k", 1);
    up_stun_add(&b, UP_STUN_A_SOFTWARE, "ignored", 7);
    up_stun_add_fingerprint(&b);
    assert_int_equal(up_stun_end(&b, &len), UP_OK);
    assert_int_equal(up_stun_parse(out, len, &m), UP_OK);
    assert_int_equal(m.n_attrs, 2);
    assert_int_equal(m.fp, 1);
    out[20 + 24 + 4] ^= 1; /* the ignored attribute is covered by the CRC */
    assert_parse_fails(out, len, UP_EPROTO, "stun: bad FINGERPRINT");
}

static void test_stun_parse_fixed_sizes(void **state)
{
    (void)state;
    static const uint8_t z[40];
    static const struct {
        uint16_t type;
        size_t ok[3], n_ok;
        size_t bad[4], n_bad;
        const char *reason;
    } cases[] = {
        {UP_STUN_A_XOR_MAPPED_ADDRESS, {8, 20}, 2, {0, 4, 12, 24}, 4, "stun: bad address size"},
        {UP_STUN_A_XOR_PEER_ADDRESS, {8, 20}, 2, {16}, 1, "stun: bad address size"},
        {UP_STUN_A_XOR_RELAYED_ADDRESS, {8, 20}, 2, {7}, 1, "stun: bad address size"},
        {UP_STUN_A_MAPPED_ADDRESS, {8, 20}, 2, {9}, 1, "stun: bad address size"},
        {UP_STUN_A_ALTERNATE_SERVER, {8, 20}, 2, {21}, 1, "stun: bad address size"},
        {UP_STUN_A_LIFETIME, {4}, 1, {0, 3, 5, 8}, 4, "stun: bad 4-byte attribute size"},
        {UP_STUN_A_CHANNEL_NUMBER, {4}, 1, {2}, 1, "stun: bad 4-byte attribute size"},
        {UP_STUN_A_REQUESTED_TRANSPORT, {4}, 1, {1}, 1, "stun: bad 4-byte attribute size"},
        {UP_STUN_A_REQUESTED_ADDRESS_FAMILY, {4}, 1, {8}, 1, "stun: bad 4-byte attribute size"},
        {UP_STUN_A_ADDITIONAL_ADDRESS_FAMILY, {4}, 1, {0}, 1, "stun: bad 4-byte attribute size"},
        {UP_STUN_A_EVEN_PORT, {1}, 1, {0, 2, 4}, 3, "stun: bad EVEN-PORT size"},
        {UP_STUN_A_DONT_FRAGMENT, {0}, 1, {1, 4}, 2, "stun: bad DONT-FRAGMENT size"},
        {UP_STUN_A_RESERVATION_TOKEN, {8}, 1, {4, 7, 9}, 3, "stun: bad RESERVATION-TOKEN size"},
        {UP_STUN_A_USERHASH, {32}, 1, {20, 31, 33}, 3, "stun: bad USERHASH size"},
        {UP_STUN_A_ERROR_CODE, {4, 5, 40}, 3, {0, 3}, 2, "stun: bad error code size"},
        {UP_STUN_A_ADDRESS_ERROR_CODE, {4}, 1, {2}, 1, "stun: bad error code size"},
        {UP_STUN_A_UNKNOWN_ATTRIBUTES,
         {0, 2, 6},
         3,
         {1, 3},
         2,
         "stun: bad UNKNOWN-ATTRIBUTES size"},
        {UP_STUN_A_MESSAGE_INTEGRITY,
         {20},
         1,
         {16, 19, 21, 32},
         4,
         "stun: bad MESSAGE-INTEGRITY size"},
        {UP_STUN_A_MESSAGE_INTEGRITY_SHA256,
         {16, 28, 32},
         3,
         {12, 15, 18, 36},
         4,
         "stun: bad MESSAGE-INTEGRITY-SHA256 size"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t v[128];
        struct up_stun_msg m;
        for (size_t j = 0; j < cases[i].n_ok; j++) {
            size_t n = one_attr(v, sizeof v, cases[i].type, z, cases[i].ok[j]);
            assert_int_equal(up_stun_parse(v, n, &m), UP_OK);
            assert_int_equal(m.n_attrs, 1);
        }
        for (size_t j = 0; j < cases[i].n_bad; j++) {
            size_t n = one_attr(v, sizeof v, cases[i].type, z, cases[i].bad[j]);
            assert_parse_fails(v, n, UP_EPROTO, cases[i].reason);
        }
    }
    /* FINGERPRINT's size is checked before its CRC. */
    uint8_t v[64];
    size_t n = one_attr(v, sizeof v, UP_STUN_A_FINGERPRINT, z, 8);
    assert_parse_fails(v, n, UP_EPROTO, "stun: bad FINGERPRINT size");
    /* Variable-size attributes take anything, empty included. */
    n = one_attr(v, sizeof v, UP_STUN_A_USERNAME, z, 0);
    struct up_stun_msg m;
    assert_int_equal(up_stun_parse(v, n, &m), UP_OK);
    assert_int_equal(m.attrs[0].len, 0);
}

/* n attributes of a variable-size type, then (when after_mi) a MESSAGE-INTEGRITY and
 * after_mi attributes it makes ignored. */
static size_t many_attrs(uint8_t *out, size_t cap, size_t n, size_t after_mi)
{
    struct up_stun_builder b;
    up_stun_begin(&b, out, cap, UP_TURN_SEND, UP_STUN_INDICATION, tid_a);
    for (size_t i = 0; i < n; i++) {
        up_stun_add(&b, UP_STUN_A_DATA, &i, 1);
    }
    if (after_mi) {
        up_stun_add_integrity(&b, (const uint8_t *)"k", 1);
        for (size_t i = 0; i < after_mi; i++) {
            up_stun_add(&b, UP_STUN_A_SOFTWARE, "later", 5);
        }
    }
    size_t len = 0;
    assert_int_equal(up_stun_end(&b, &len), UP_OK);
    return len;
}

static void test_stun_parse_too_many_attributes(void **state)
{
    (void)state;
    uint8_t v[1024];
    struct up_stun_msg m;
    size_t n = many_attrs(v, sizeof v, UP_STUN_MAX_ATTRS - 1, 0);
    assert_int_equal(up_stun_parse(v, n, &m), UP_OK);
    assert_int_equal(m.n_attrs, UP_STUN_MAX_ATTRS - 1);
    n = many_attrs(v, sizeof v, UP_STUN_MAX_ATTRS, 0);
    assert_int_equal(up_stun_parse(v, n, &m), UP_OK);
    assert_int_equal(m.n_attrs, UP_STUN_MAX_ATTRS);
    assert_int_equal(m.attrs[UP_STUN_MAX_ATTRS - 1].value[0], UP_STUN_MAX_ATTRS - 1);
    n = many_attrs(v, sizeof v, UP_STUN_MAX_ATTRS + 1, 0);
    assert_parse_fails(v, n, UP_ELIMIT, "stun: too many attributes");
    /* Ignored attributes after MESSAGE-INTEGRITY do not count. */
    n = many_attrs(v, sizeof v, UP_STUN_MAX_ATTRS - 1, 10);
    assert_int_equal(up_stun_parse(v, n, &m), UP_OK);
    assert_int_equal(m.n_attrs, UP_STUN_MAX_ATTRS);
    assert_int_equal(m.mi, UP_STUN_MAX_ATTRS - 1);
    n = many_attrs(v, sizeof v, UP_STUN_MAX_ATTRS, 1);
    assert_parse_fails(v, n, UP_ELIMIT, "stun: too many attributes");
}

static void test_stun_attributes_after_integrity_ignored(void **state)
{
    (void)state;
    static const uint8_t key[] = "secret";
    uint8_t v[512];
    struct up_stun_builder b;
    up_stun_begin(&b, v, sizeof v, UP_TURN_ALLOCATE, UP_STUN_REQUEST, tid_a);
    up_stun_add(&b, UP_STUN_A_USERNAME, "alice", 5);
    up_stun_add_integrity(&b, key, 6);
    up_stun_add(&b, UP_STUN_A_REALM, "evil", 4);
    up_stun_add(&b, UP_STUN_A_LIFETIME, "\0\0\0", 3); /* a bad size, but ignored */
    up_stun_add(&b, 0x0031, "u", 1);                  /* unknown, but ignored */
    up_stun_add_integrity_sha256(&b, key, 6);
    up_stun_add(&b, UP_STUN_A_NONCE, "n", 1);
    up_stun_add_integrity(&b, key, 6); /* a second MI after MI-SHA256: ignored too */
    up_stun_add_fingerprint(&b);
    size_t n = 0;
    assert_int_equal(up_stun_end(&b, &n), UP_OK);
    struct up_stun_msg m;
    assert_int_equal(up_stun_parse(v, n, &m), UP_OK);
    assert_int_equal(m.n_attrs, 4);
    assert_int_equal(m.attrs[0].type, UP_STUN_A_USERNAME);
    assert_int_equal(m.mi, 1);
    assert_int_equal(m.mi256, 2);
    assert_int_equal(m.fp, 3);
    assert_int_equal(m.attrs[2].len, 32);
    assert_null(up_stun_find(&m, UP_STUN_A_REALM));
    assert_null(up_stun_find(&m, UP_STUN_A_LIFETIME));
    assert_null(up_stun_find(&m, UP_STUN_A_NONCE));
    assert_int_equal(m.n_unknown, 0);
    /* MESSAGE-INTEGRITY-SHA256 is the one checked when both are there. */
    assert_true(up_stun_check_integrity(v, &m, key, 6));
    assert_false(up_stun_check_integrity(v, &m, key, 5));
    uint8_t copy[512];
    memcpy(copy, v, n);
    copy[m.attrs[1].offset + 4] ^= 1; /* break MI: MI-SHA256 covers it, and fails */
    assert_false(up_stun_check_integrity(copy, &m, key, 6));
    /* m's values point into v: a changed MAC must be re-parsed to be seen (FINGERPRINT is
     * the check that catches it on the way). */
    memcpy(copy, v, n);
    copy[m.attrs[2].offset + 4 + 31] ^= 1;
    struct up_stun_msg m2;
    assert_parse_fails(copy, n, UP_EPROTO, "stun: bad FINGERPRINT");
    n -= 8;
    copy[3] = (uint8_t)(copy[3] - 8);
    assert_int_equal(up_stun_parse(copy, n, &m2), UP_OK);
    assert_int_equal(m2.fp, -1);
    assert_false(up_stun_check_integrity(copy, &m2, key, 6));
    copy[m.attrs[2].offset + 4 + 31] ^= 1;
    assert_true(up_stun_check_integrity(copy, &m2, key, 6));
    n += 8;
    /* With MI-SHA256 gone (the message re-parsed without it), MI alone is checked. */
    m.mi256 = -1;
    assert_true(up_stun_check_integrity(v, &m, key, 6));
    /* What follows the attribute checked may change freely. */
    memcpy(copy, v, n);
    copy[m.attrs[3].offset + 4] ^= 1;
    assert_true(up_stun_check_integrity(copy, &m, key, 6));
}

static void test_stun_integrity_sha256_truncated(void **state)
{
    (void)state;
    static const uint8_t key[] = "0123456789abcdef";
    uint8_t v[256];
    struct up_stun_builder b;
    up_stun_begin(&b, v, sizeof v, UP_TURN_REFRESH, UP_STUN_REQUEST, tid_a);
    up_stun_add(&b, UP_STUN_A_USERNAME, "bob", 3);
    up_stun_add_integrity_sha256(&b, key, 16);
    size_t n = 0;
    assert_int_equal(up_stun_end(&b, &n), UP_OK);
    /* Truncate the MAC to 16 bytes as a peer may (RFC 8489 §14.6): the length changes,
     * so the MAC is recomputed with the shorter header length. */
    uint8_t t[256];
    memcpy(t, v, n - 16);
    size_t mi_off = n - 36;
    t[mi_off + 3] = 16;
    t[3] = (uint8_t)(n - 16 - 20);
    uint8_t full[UP_SHA256_LEN];
    struct up_crypto_span part = {.p = t, .len = mi_off};
    assert_int_equal(up_hmac_v(true, key, 16, &part, 1, full), UP_OK);
    memcpy(t + mi_off + 4, full, 16);
    struct up_stun_msg m;
    assert_int_equal(up_stun_parse(t, n - 16, &m), UP_OK);
    assert_int_equal(m.attrs[m.mi256].len, 16);
    assert_true(up_stun_check_integrity(t, &m, key, 16));
    assert_false(up_stun_check_integrity(t, &m, key, 15));
    /* The untruncated one verifies too. */
    assert_int_equal(up_stun_parse(v, n, &m), UP_OK);
    assert_true(up_stun_check_integrity(v, &m, key, 16));
}

static void test_stun_unknown_attributes_collected(void **state)
{
    (void)state;
    uint8_t v[512];
    struct up_stun_builder b;
    up_stun_begin(&b, v, sizeof v, UP_TURN_ALLOCATE, UP_STUN_REQUEST, tid_a);
    up_stun_add(&b, 0x0030, "a", 1);
    up_stun_add(&b, 0x8030, "b", 1); /* comprehension-optional: not reported */
    up_stun_add(&b, 0x7FFF, NULL, 0);
    up_stun_add(&b, 0x0030, "c", 1); /* reported once */
    up_stun_add_u32(&b, UP_STUN_A_REQUESTED_TRANSPORT, 17u << 24);
    up_stun_add(&b, 0x0000, NULL, 0);
    size_t n = 0;
    assert_int_equal(up_stun_end(&b, &n), UP_OK);
    struct up_stun_msg m;
    assert_int_equal(up_stun_parse(v, n, &m), UP_OK);
    assert_int_equal(m.n_attrs, 6);
    assert_int_equal(m.n_unknown, 3);
    assert_int_equal(m.unknown[0], 0x0030);
    assert_int_equal(m.unknown[1], 0x7FFF);
    assert_int_equal(m.unknown[2], 0x0000);
    /* More than UP_STUN_MAX_UNKNOWN: the first ones are reported, the parse succeeds. */
    up_stun_begin(&b, v, sizeof v, UP_TURN_ALLOCATE, UP_STUN_REQUEST, tid_a);
    for (uint16_t t = 0; t < UP_STUN_MAX_UNKNOWN + 2; t++) {
        up_stun_add(&b, (uint16_t)(0x0040 + t), NULL, 0);
    }
    assert_int_equal(up_stun_end(&b, &n), UP_OK);
    assert_int_equal(up_stun_parse(v, n, &m), UP_OK);
    assert_int_equal(m.n_unknown, UP_STUN_MAX_UNKNOWN);
    assert_int_equal(m.unknown[UP_STUN_MAX_UNKNOWN - 1], 0x0040 + UP_STUN_MAX_UNKNOWN - 1);
    /* Every type of stun.h is known. */
    static const uint16_t known[] = {
        UP_STUN_A_MAPPED_ADDRESS,
        UP_STUN_A_USERNAME,
        UP_STUN_A_UNKNOWN_ATTRIBUTES,
        UP_STUN_A_DATA,
        UP_STUN_A_REALM,
        UP_STUN_A_NONCE,
        UP_STUN_A_PASSWORD_ALGORITHM,
        UP_STUN_A_RESERVATION_TOKEN,
        UP_STUN_A_USERHASH,
    };
    static const uint8_t z[32];
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        size_t len = known[i] == UP_STUN_A_MAPPED_ADDRESS      ? 8
                     : known[i] == UP_STUN_A_RESERVATION_TOKEN ? 8
                     : known[i] == UP_STUN_A_USERHASH          ? 32
                                                               : 4;
        n = one_attr(v, sizeof v, known[i], z, len);
        assert_int_equal(up_stun_parse(v, n, &m), UP_OK);
        assert_int_equal(m.n_unknown, 0);
    }
}

/* ---- values ---------------------------------------------------------------------------------- */

static void test_stun_xaddr_round_trip(void **state)
{
    (void)state;
    static const char *ips[] = {"0.0.0.0", "192.0.2.1",   "255.255.255.255",
                                "::",      "2001:db8::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
                                "::1"};
    static const uint16_t ports[] = {0, 1, 3478, 0x2112, 65535};
    for (size_t i = 0; i < sizeof ips / sizeof ips[0]; i++) {
        for (size_t j = 0; j < sizeof ports / sizeof ports[0]; j++) {
            struct up_stun_addr a = addr(ips[i], ports[j]);
            uint8_t tid[12];
            for (size_t k = 0; k < 12; k++) {
                tid[k] = (uint8_t)(i * 31 + j * 7 + k);
            }
            uint8_t v[128];
            struct up_stun_builder b;
            up_stun_begin(&b, v, sizeof v, UP_TURN_ALLOCATE, UP_STUN_SUCCESS, tid);
            up_stun_add_xaddr(&b, UP_STUN_A_XOR_RELAYED_ADDRESS, &a);
            up_stun_add_xaddr(&b, UP_STUN_A_XOR_MAPPED_ADDRESS, &a);
            size_t n = 0;
            assert_int_equal(up_stun_end(&b, &n), UP_OK);
            struct up_stun_msg m;
            assert_int_equal(up_stun_parse(v, n, &m), UP_OK);
            assert_int_equal(m.n_attrs, 2);
            bool v4 = up_ip_is_v4(a.ip);
            assert_int_equal(m.attrs[0].len, v4 ? 8 : 20);
            assert_int_equal(m.attrs[0].value[1], v4 ? 1 : 2);
            struct up_stun_addr got;
            assert_int_equal(up_stun_xaddr(&m, &m.attrs[1], &got), UP_OK);
            assert_memory_equal(got.ip, a.ip, 16);
            assert_int_equal(got.port, a.port);
            /* Read as a plain address, it is the XORed bytes. */
            assert_int_equal(up_stun_addr(&m.attrs[0], &got), UP_OK);
            assert_int_equal(got.port, a.port ^ 0x2112);
        }
    }
}

static void test_stun_addr_plain_and_errors(void **state)
{
    (void)state;
    /* MAPPED-ADDRESS 192.0.2.1:32853, plain (RFC 8489 §14.1). */
    static const uint8_t v4[8] = {0, 1, 0x80, 0x55, 192, 0, 2, 1};
    struct up_stun_attr a = {.type = UP_STUN_A_MAPPED_ADDRESS, .len = 8, .value = v4};
    struct up_stun_addr got, want = addr("192.0.2.1", 32853);
    assert_int_equal(up_stun_addr(&a, &got), UP_OK);
    assert_memory_equal(got.ip, want.ip, 16);
    assert_int_equal(got.port, 32853);
    uint8_t v6[20] = {0, 2, 0x0d, 0x96};
    v6[4] = 0x20;
    v6[5] = 0x01;
    v6[19] = 0x01;
    a.len = 20;
    a.value = v6;
    want = addr("2001::1", 3478);
    assert_int_equal(up_stun_addr(&a, &got), UP_OK);
    assert_memory_equal(got.ip, want.ip, 16);
    assert_int_equal(got.port, 3478);

    /* The first byte is reserved and ignored (RFC 8489 §14.1). */
    uint8_t r4[8];
    memcpy(r4, v4, 8);
    r4[0] = 0xFF;
    a.len = 8;
    a.value = r4;
    want = addr("192.0.2.1", 32853);
    assert_int_equal(up_stun_addr(&a, &got), UP_OK);
    assert_memory_equal(got.ip, want.ip, 16);

    struct up_stun_msg m = {.n_attrs = 0};
    /* Bad family, family/length mismatch, too short. */
    uint8_t bad[20] = {0, 3};
    a.value = bad;
    a.len = 8;
    assert_int_equal(up_stun_addr(&a, &got), UP_EPROTO);
    assert_int_equal(up_stun_xaddr(&m, &a, &got), UP_EPROTO);
    bad[1] = 0;
    assert_int_equal(up_stun_addr(&a, &got), UP_EPROTO);
    bad[1] = 2;
    assert_int_equal(up_stun_addr(&a, &got), UP_EPROTO);
    bad[1] = 1;
    a.len = 20;
    assert_int_equal(up_stun_xaddr(&m, &a, &got), UP_EPROTO);
    a.len = 2;
    assert_int_equal(up_stun_addr(&a, &got), UP_EPROTO);
    a.len = 0;
    assert_int_equal(up_stun_xaddr(&m, &a, &got), UP_EPROTO);
}

static void test_stun_error_code(void **state)
{
    (void)state;
    uint8_t v[1024];
    struct up_stun_builder b;
    up_stun_begin(&b, v, sizeof v, UP_TURN_ALLOCATE, UP_STUN_ERROR, tid_a);
    up_stun_add_error(&b, 401, "Unauthorized");
    up_stun_add_error(&b, 438, "Stale Nonce");
    up_stun_add_error(&b, 300, NULL);
    up_stun_add_error(&b, 699, "");
    size_t n = 0;
    assert_int_equal(up_stun_end(&b, &n), UP_OK);
    /* RFC 8489 §14.8: 21 zero bits, class 4, number 1. */
    assert_memory_equal(v + 20, "\x00\x09\x00\x10\x00\x00\x04\x01Unauthorized", 20);
    struct up_stun_msg m;
    assert_int_equal(up_stun_parse(v, n, &m), UP_OK);
    assert_int_equal(m.cls, UP_STUN_ERROR);
    assert_int_equal(m.method, UP_TURN_ALLOCATE);
    assert_int_equal(m.n_attrs, 4);
    static const struct {
        int code;
        const char *reason;
    } want[] = {{401, "Unauthorized"}, {438, "Stale Nonce"}, {300, ""}, {699, ""}};
    for (size_t i = 0; i < 4; i++) {
        int code = 0;
        const char *reason = NULL;
        size_t rlen = 99;
        assert_int_equal(up_stun_error(&m.attrs[i], &code, &reason, &rlen), UP_OK);
        assert_int_equal(code, want[i].code);
        assert_int_equal(rlen, strlen(want[i].reason));
        assert_memory_equal(reason, want[i].reason, rlen);
    }
    assert_ptr_equal(up_stun_find(&m, UP_STUN_A_ERROR_CODE), &m.attrs[0]);

    /* Bad class, bad number, too short. */
    uint8_t e[8] = {0, 0, 2, 0};
    struct up_stun_attr a = {.type = UP_STUN_A_ERROR_CODE, .len = 4, .value = e};
    int code;
    const char *reason;
    size_t rlen;
    assert_int_equal(up_stun_error(&a, &code, &reason, &rlen), UP_EPROTO);
    e[2] = 7;
    assert_int_equal(up_stun_error(&a, &code, &reason, &rlen), UP_EPROTO);
    e[2] = 4;
    e[3] = 100;
    assert_int_equal(up_stun_error(&a, &code, &reason, &rlen), UP_EPROTO);
    e[3] = 99;
    e[2] = 0xFE; /* reserved bits above the class are ignored */
    assert_int_equal(up_stun_error(&a, &code, &reason, &rlen), UP_OK);
    assert_int_equal(code, 699);
    a.len = 3;
    assert_int_equal(up_stun_error(&a, &code, &reason, &rlen), UP_EPROTO);

    /* Codes out of range and over-long reasons fail the builder. */
    static const int bad_codes[] = {0, 299, 700, -401};
    for (size_t i = 0; i < 4; i++) {
        up_stun_begin(&b, v, sizeof v, UP_TURN_ALLOCATE, UP_STUN_ERROR, tid_a);
        up_stun_add_error(&b, bad_codes[i], "x");
        assert_int_equal(up_stun_end(&b, &n), UP_ELIMIT);
    }
    char r[800];
    memset(r, 'a', 127);
    r[127] = '\0';
    up_stun_begin(&b, v, sizeof v, UP_TURN_ALLOCATE, UP_STUN_ERROR, tid_a);
    up_stun_add_error(&b, 500, r);
    assert_int_equal(up_stun_end(&b, &n), UP_OK);
    assert_int_equal(n, 20 + 4 + 4 + 128);
    r[127] = 'a';
    r[128] = '\0';
    up_stun_begin(&b, v, sizeof v, UP_TURN_ALLOCATE, UP_STUN_ERROR, tid_a);
    up_stun_add_error(&b, 500, r);
    assert_int_equal(up_stun_end(&b, &n), UP_ELIMIT);
    /* 127 two-byte characters (254 bytes) are fine: the limit counts characters. */
    for (size_t i = 0; i < 127; i++) {
        r[2 * i] = '\xc3';
        r[2 * i + 1] = '\xa9';
    }
    r[254] = '\0';
    up_stun_begin(&b, v, sizeof v, UP_TURN_ALLOCATE, UP_STUN_ERROR, tid_a);
    up_stun_add_error(&b, 400, r);
    assert_int_equal(up_stun_end(&b, &n), UP_OK);
    assert_int_equal(up_stun_parse(v, n, &m), UP_OK);
    assert_int_equal(up_stun_error(&m.attrs[0], &code, &reason, &rlen), UP_OK);
    assert_int_equal(rlen, 254);
}

static void test_stun_u32(void **state)
{
    (void)state;
    uint8_t v[64];
    struct up_stun_builder b;
    up_stun_begin(&b, v, sizeof v, UP_TURN_REFRESH, UP_STUN_SUCCESS, tid_a);
    up_stun_add_u32(&b, UP_STUN_A_LIFETIME, 0xDEADBEEF);
    size_t n = 0;
    assert_int_equal(up_stun_end(&b, &n), UP_OK);
    assert_memory_equal(v + 20, "\x00\x0d\x00\x04\xde\xad\xbe\xef", 8);
    struct up_stun_msg m;
    assert_int_equal(up_stun_parse(v, n, &m), UP_OK);
    uint32_t x = 0;
    assert_int_equal(up_stun_u32(&m.attrs[0], &x), UP_OK);
    assert_int_equal(x, 0xDEADBEEF);
    struct up_stun_attr a = {.len = 3, .value = v};
    assert_int_equal(up_stun_u32(&a, &x), UP_EPROTO);
    a.len = 5;
    assert_int_equal(up_stun_u32(&a, &x), UP_EPROTO);
}

static void test_stun_method_and_class(void **state)
{
    (void)state;
    static const uint16_t methods[] = {0x001, 0x003, 0x009, 0x010, 0x080, 0x0F0, 0xFFF};
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        for (uint8_t cls = 0; cls < 4; cls++) {
            uint8_t v[32];
            struct up_stun_builder b;
            up_stun_begin(&b, v, sizeof v, methods[i], cls, tid_a);
            size_t n = 0;
            assert_int_equal(up_stun_end(&b, &n), UP_OK);
            assert_int_equal(n, 20);
            /* RFC 7983's first byte 0..3 holds for methods under 0x100. */
            assert_true(up_stun_is_stun(v[0]) == (methods[i] < 0x100));
            struct up_stun_msg m;
            assert_int_equal(up_stun_parse(v, n, &m), UP_OK);
            assert_int_equal(m.method, methods[i]);
            assert_int_equal(m.cls, cls);
        }
    }
    /* RFC 8489 §5: Binding success is 0x0101, Allocate error 0x0113, Send indication 0x0016. */
    uint8_t v[32];
    struct up_stun_builder b;
    size_t n;
    up_stun_begin(&b, v, sizeof v, UP_STUN_BINDING, UP_STUN_SUCCESS, tid_a);
    assert_int_equal(v[0] << 8 | v[1], 0x0101);
    up_stun_begin(&b, v, sizeof v, UP_TURN_ALLOCATE, UP_STUN_ERROR, tid_a);
    assert_int_equal(v[0] << 8 | v[1], 0x0113);
    up_stun_begin(&b, v, sizeof v, UP_TURN_SEND, UP_STUN_INDICATION, tid_a);
    assert_int_equal(v[0] << 8 | v[1], 0x0016);
    /* A method over 12 bits or a class over 3 is refused. */
    up_stun_begin(&b, v, sizeof v, 0x1000, UP_STUN_REQUEST, tid_a);
    assert_int_equal(up_stun_end(&b, &n), UP_ELIMIT);
    up_stun_begin(&b, v, sizeof v, UP_STUN_BINDING, 4, tid_a);
    assert_int_equal(up_stun_end(&b, &n), UP_ELIMIT);
}

/* ---- builder --------------------------------------------------------------------------------- */

static void test_stun_builder_overflow_sticky(void **state)
{
    (void)state;
    uint8_t v[64];
    memset(v, 0xEE, sizeof v);
    struct up_stun_builder b;
    size_t n = 99;
    /* No room for the header. */
    up_stun_begin(&b, v, 19, UP_STUN_BINDING, UP_STUN_REQUEST, tid_a);
    up_stun_add_u32(&b, UP_STUN_A_LIFETIME, 1);
    up_stun_add_fingerprint(&b);
    assert_int_equal(up_stun_end(&b, &n), UP_ELIMIT);
    assert_int_equal(n, 0);
    assert_int_equal(v[0], 0xEE);
    /* Exactly full (limit), then one byte short (limit - 1). */
    up_stun_begin(&b, v, 32, UP_STUN_BINDING, UP_STUN_REQUEST, tid_a);
    up_stun_add(&b, UP_STUN_A_SOFTWARE, "12345678", 8);
    assert_int_equal(up_stun_end(&b, &n), UP_OK);
    assert_int_equal(n, 32);
    up_stun_begin(&b, v, 31, UP_STUN_BINDING, UP_STUN_REQUEST, tid_a);
    up_stun_add(&b, UP_STUN_A_SOFTWARE, "1234567", 7); /* padded to 8 */
    assert_int_equal(up_stun_end(&b, &n), UP_ELIMIT);
    /* Sticky: something that would fit after a failure is not added. */
    memset(v, 0xEE, sizeof v);
    up_stun_begin(&b, v, 36, UP_STUN_BINDING, UP_STUN_REQUEST, tid_a);
    up_stun_add(&b, UP_STUN_A_SOFTWARE, "abc", 3);   /* 28 */
    up_stun_add(&b, UP_STUN_A_SOFTWARE, "abcde", 5); /* 40 > 36 */
    assert_true(b.overflow);
    up_stun_add(&b, UP_STUN_A_DONT_FRAGMENT, NULL, 0); /* would fit: 32 */
    up_stun_add_u32(&b, UP_STUN_A_LIFETIME, 1);
    up_stun_add_error(&b, 400, "x");
    struct up_stun_addr a = addr("192.0.2.1", 1);
    up_stun_add_xaddr(&b, UP_STUN_A_XOR_PEER_ADDRESS, &a);
    up_stun_add_integrity(&b, (const uint8_t *)"k", 1);
    up_stun_add_integrity_sha256(&b, (const uint8_t *)"k", 1);
    up_stun_add_fingerprint(&b);
    assert_int_equal(b.len, 28);
    assert_int_equal(v[28], 0xEE);
    assert_int_equal(v[3], 8); /* the header still describes what was built */
    assert_int_equal(up_stun_end(&b, &n), UP_ELIMIT);
    assert_int_equal(n, 0);
    /* Each appender overflows on its own. */
    up_stun_begin(&b, v, 20 + 23, UP_STUN_BINDING, UP_STUN_REQUEST, tid_a);
    up_stun_add_integrity(&b, (const uint8_t *)"k", 1);
    assert_int_equal(up_stun_end(&b, &n), UP_ELIMIT);
    up_stun_begin(&b, v, 20 + 35, UP_STUN_BINDING, UP_STUN_REQUEST, tid_a);
    up_stun_add_integrity_sha256(&b, (const uint8_t *)"k", 1);
    assert_int_equal(up_stun_end(&b, &n), UP_ELIMIT);
    up_stun_begin(&b, v, 20 + 7, UP_STUN_BINDING, UP_STUN_REQUEST, tid_a);
    up_stun_add_fingerprint(&b);
    assert_int_equal(up_stun_end(&b, &n), UP_ELIMIT);
    up_stun_begin(&b, v, 20 + 7, UP_STUN_BINDING, UP_STUN_REQUEST, tid_a);
    up_stun_add_u32(&b, UP_STUN_A_LIFETIME, 1);
    assert_int_equal(up_stun_end(&b, &n), UP_ELIMIT);
    struct up_stun_addr a6 = addr("2001:db8::1", 1);
    up_stun_begin(&b, v, 20 + 23, UP_STUN_BINDING, UP_STUN_REQUEST, tid_a);
    up_stun_add_xaddr(&b, UP_STUN_A_XOR_PEER_ADDRESS, &a6);
    assert_int_equal(up_stun_end(&b, &n), UP_ELIMIT);
    up_stun_begin(&b, v, 20 + 23, UP_STUN_BINDING, UP_STUN_REQUEST, tid_a);
    up_stun_add_error(&b, 400, "Bad Request12345");
    assert_int_equal(up_stun_end(&b, &n), UP_ELIMIT);
}

static void test_stun_builder_length_limit(void **state)
{
    (void)state;
    static uint8_t v[UP_STUN_MAX_MESSAGE + 64];
    static uint8_t big[70000];
    struct up_stun_builder b;
    size_t n = 0;
    /* The body's largest length is 65532 (a multiple of 4 under 65536). */
    up_stun_begin(&b, v, sizeof v, UP_TURN_SEND, UP_STUN_INDICATION, tid_a);
    up_stun_add(&b, UP_STUN_A_DATA, big, 65528);
    assert_int_equal(up_stun_end(&b, &n), UP_OK);
    assert_int_equal(n, 20 + 65532);
    struct up_stun_msg m;
    assert_int_equal(up_stun_parse(v, n, &m), UP_OK);
    assert_int_equal(m.attrs[0].len, 65528);
    size_t frame = 0;
    assert_int_equal(up_stun_frame_len(v, 4, &frame), UP_OK);
    assert_int_equal(frame, n);
    up_stun_add(&b, UP_STUN_A_DONT_FRAGMENT, NULL, 0);
    assert_int_equal(up_stun_end(&b, &n), UP_ELIMIT);
    /* One attribute value over 65535 bytes. */
    up_stun_begin(&b, v, sizeof v, UP_TURN_SEND, UP_STUN_INDICATION, tid_a);
    up_stun_add(&b, UP_STUN_A_DATA, big, 65536);
    assert_int_equal(up_stun_end(&b, &n), UP_ELIMIT);
    up_stun_begin(&b, v, sizeof v, UP_TURN_SEND, UP_STUN_INDICATION, tid_a);
    up_stun_add(&b, UP_STUN_A_DATA, big, 65529);
    assert_int_equal(up_stun_end(&b, &n), UP_ELIMIT);
}

/* ---- ChannelData and framing --------------------------------------------------------------- */

static void test_stun_channel_data(void **state)
{
    (void)state;
    uint8_t v[16] = {0};
    uint16_t ch = 0;
    const uint8_t *data = NULL;
    size_t dlen = 99;
    up_stun_channel_header(v, 0x4000, 5);
    memcpy(v + 4, "hello", 5);
    assert_memory_equal(v, "\x40\x00\x00\x05hello", 9);
    assert_true(up_stun_is_channel(v[0]));
    assert_false(up_stun_is_stun(v[0]));
    assert_int_equal(up_stun_channel_parse(v, 9, &ch, &data, &dlen), UP_OK);
    assert_int_equal(ch, 0x4000);
    assert_ptr_equal(data, v + 4);
    assert_int_equal(dlen, 5);
    /* Over TCP the frame is padded to 12; the padding is not data. */
    size_t frame = 0;
    assert_int_equal(up_stun_frame_len(v, 4, &frame), UP_OK);
    assert_int_equal(frame, 12);
    assert_int_equal(up_stun_channel_parse(v, frame, &ch, &data, &dlen), UP_OK);
    assert_int_equal(dlen, 5);
    up_stun_channel_header(v, 0x4FFF, 0);
    assert_int_equal(up_stun_channel_parse(v, 4, &ch, &data, &dlen), UP_OK);
    assert_int_equal(ch, 0x4FFF);
    assert_int_equal(dlen, 0);
    /* RFC 5766's upper numbers, which clients still use. */
    up_stun_channel_header(v, 0x7FFF, 0);
    assert_int_equal(up_stun_channel_parse(v, 4, &ch, &data, &dlen), UP_OK);
    assert_int_equal(ch, 0x7FFF);
    /* Numbers outside 0x4000..0x7FFF. */
    up_stun_channel_header(v, 0x3FFF, 0);
    assert_int_equal(up_stun_channel_parse(v, 4, &ch, &data, &dlen), UP_EPROTO);
    up_stun_channel_header(v, 0x8000, 0);
    assert_int_equal(up_stun_channel_parse(v, 4, &ch, &data, &dlen), UP_EPROTO);
    up_stun_channel_header(v, 0x0001, 0);
    assert_int_equal(up_stun_channel_parse(v, 4, &ch, &data, &dlen), UP_EPROTO);
    /* Longer than the buffer, and shorter than a header. */
    up_stun_channel_header(v, 0x4001, 6);
    assert_int_equal(up_stun_channel_parse(v, 9, &ch, &data, &dlen), UP_EPROTO);
    assert_int_equal(up_stun_channel_parse(v, 10, &ch, &data, &dlen), UP_OK);
    assert_int_equal(up_stun_channel_parse(v, 3, &ch, &data, &dlen), UP_EPROTO);
    assert_int_equal(up_stun_channel_parse(v, 0, &ch, &data, &dlen), UP_EPROTO);
}

static void test_stun_frame_len(void **state)
{
    (void)state;
    uint8_t v[256];
    size_t n = unhex(rfc5769_request, v, sizeof v);
    size_t frame = 0;
    assert_int_equal(up_stun_frame_len(v, n, &frame), UP_OK);
    assert_int_equal(frame, n);
    assert_int_equal(up_stun_frame_len(v, 4, &frame), UP_OK); /* read more */
    assert_int_equal(frame, n);
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(up_stun_frame_len(v, i, &frame), UP_EAGAIN);
    }
    /* ChannelData: 4 + length rounded up to 4. */
    static const struct {
        uint16_t len;
        size_t frame;
    } cd[] = {{0, 4}, {1, 8}, {3, 8}, {4, 8}, {5, 12}, {65535, 65540}};
    for (size_t i = 0; i < sizeof cd / sizeof cd[0]; i++) {
        up_stun_channel_header(v, 0x4ABC, cd[i].len);
        assert_int_equal(up_stun_frame_len(v, 4, &frame), UP_OK);
        assert_int_equal(frame, cd[i].frame);
    }
    /* Neither (RFC 7983: 0..3 STUN, 64..79 ChannelData, up to 127 for RFC 5766 numbers). */
    static const uint8_t firsts[] = {0x04, 0x16, 0x3F, 0x80, 0xC0, 0xFF};
    for (size_t i = 0; i < sizeof firsts; i++) {
        v[0] = firsts[i];
        assert_int_equal(up_stun_frame_len(v, 4, &frame), UP_EPROTO);
        assert_false(up_stun_is_stun(firsts[i]) || up_stun_is_channel(firsts[i]));
    }
    v[0] = 0x03;
    v[2] = 0xFF;
    v[3] = 0xFF;
    assert_int_equal(up_stun_frame_len(v, 4, &frame), UP_OK);
    assert_int_equal(frame, 65535 + 20);
}

/* ---- crypto ---------------------------------------------------------------------------------- */

static void test_stun_crypto_known_answers(void **state)
{
    (void)state;
    uint8_t out[32], want[32];
    /* RFC 1321 §A.5. */
    up_md5("", 0, out);
    unhex("d41d8cd98f00b204e9800998ecf8427e", want, sizeof want);
    assert_memory_equal(out, want, 16);
    up_md5("abc", 3, out);
    unhex("900150983cd24fb0d6963f7d28e17f72", want, sizeof want);
    assert_memory_equal(out, want, 16);
    const struct up_crypto_span parts[] = {{"a", 1}, {NULL, 0}, {"bc", 2}};
    up_md5_v(parts, 3, out);
    assert_memory_equal(out, want, 16);
    /* RFC 2202 test case 2. */
    assert_int_equal(up_hmac_sha1("Jefe", 4, "what do ya want for nothing?", 28, out), UP_OK);
    unhex("effcdf6ae5eb2fa2d27416d5f184df9c259a7c79", want, sizeof want);
    assert_memory_equal(out, want, 20);
    const struct up_crypto_span q[] = {{"what do ya", 10}, {" want for nothing?", 18}};
    memset(out, 0, sizeof out);
    assert_int_equal(up_hmac_v(false, "Jefe", 4, q, 2, out), UP_OK);
    assert_memory_equal(out, want, 20);
    /* RFC 4231 test case 2. */
    unhex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843", want, sizeof want);
    memset(out, 0, sizeof out);
    assert_int_equal(up_hmac_v(true, "Jefe", 4, q, 2, out), UP_OK);
    assert_memory_equal(out, want, 32);
    /* An empty key is a key. */
    uint8_t a[32], b[32];
    assert_int_equal(up_hmac_v(true, NULL, 0, q, 2, a), UP_OK);
    assert_int_equal(up_hmac_sha256("", 0, "what do ya want for nothing?", 28, b), UP_OK);
    assert_memory_equal(a, b, 32);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stun_rfc5769_request),
        cmocka_unit_test(test_stun_rfc5769_ipv4_response),
        cmocka_unit_test(test_stun_rfc5769_ipv6_response),
        cmocka_unit_test(test_stun_rfc5769_long_term),
        cmocka_unit_test(test_stun_rfc8489_sha256),
        cmocka_unit_test(test_stun_parse_header_errors),
        cmocka_unit_test(test_stun_parse_attribute_overrun),
        cmocka_unit_test(test_stun_parse_fingerprint),
        cmocka_unit_test(test_stun_parse_fixed_sizes),
        cmocka_unit_test(test_stun_parse_too_many_attributes),
        cmocka_unit_test(test_stun_attributes_after_integrity_ignored),
        cmocka_unit_test(test_stun_integrity_sha256_truncated),
        cmocka_unit_test(test_stun_unknown_attributes_collected),
        cmocka_unit_test(test_stun_xaddr_round_trip),
        cmocka_unit_test(test_stun_addr_plain_and_errors),
        cmocka_unit_test(test_stun_error_code),
        cmocka_unit_test(test_stun_u32),
        cmocka_unit_test(test_stun_method_and_class),
        cmocka_unit_test(test_stun_builder_overflow_sticky),
        cmocka_unit_test(test_stun_builder_length_limit),
        cmocka_unit_test(test_stun_channel_data),
        cmocka_unit_test(test_stun_frame_len),
        cmocka_unit_test(test_stun_crypto_known_answers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
