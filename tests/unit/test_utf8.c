/* Unit tests for the incremental UTF-8 validator (src/proto/utf8.c). Vectors cite RFC 3629
 * and the Unicode Standard table 3-7 (well-formed byte sequences). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "feed.h"
#include "hexbytes.h"
#include "proto/utf8.h"

/* Validate hex-encoded bytes in one call; returns 1 when valid and complete, 0 when valid
 * but incomplete, -1 when invalid. */
static int check_hex(const char *hex)
{
    uint8_t b[64];
    size_t n = hex_bytes(hex, b, sizeof b);
    assert_true(n != (size_t)-1);
    struct up_utf8 u;
    up_utf8_init(&u);
    if (!up_utf8_feed(&u, b, n)) {
        return -1;
    }
    return up_utf8_is_complete(&u) ? 1 : 0;
}

/* Feed one byte at a time and return the index of the byte that made the input invalid, or
 * (size_t)-1 if none did. */
static size_t fail_pos_hex(const char *hex)
{
    uint8_t b[64];
    size_t n = hex_bytes(hex, b, sizeof b);
    assert_true(n != (size_t)-1);
    struct up_utf8 u;
    up_utf8_init(&u);
    for (size_t i = 0; i < n; i++) {
        if (!up_utf8_feed(&u, &b[i], 1)) {
            return i;
        }
    }
    return (size_t)-1;
}

static size_t encode(uint32_t cp, uint8_t *out)
{
    if (cp < 0x80) {
        out[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (uint8_t)(0xC0 | (cp >> 6));
        out[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (uint8_t)(0xE0 | (cp >> 12));
        out[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (uint8_t)(0xF0 | (cp >> 18));
    out[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

static void test_utf8_empty_and_ascii(void **state)
{
    (void)state;
    struct up_utf8 u;
    up_utf8_init(&u);
    assert_true(up_utf8_feed(&u, NULL, 0));
    assert_true(up_utf8_is_complete(&u));
    const char *s = "Hello, WebSocket! \x01\x7f";
    assert_true(up_utf8_feed(&u, (const uint8_t *)s, strlen(s)));
    assert_true(up_utf8_is_complete(&u));
    assert_int_equal(check_hex("00"), 1);
}

static void test_utf8_valid_multibyte(void **state)
{
    (void)state;
    /* RFC 3629 §7 examples. */
    assert_int_equal(check_hex("41 e2 89 a2 ce 91 2e"), 1);                   /* A≢Α. */
    assert_int_equal(check_hex("ed 95 9c ea b5 ad ec 96 b4"), 1);             /* 한국어 */
    assert_int_equal(check_hex("e6 97 a5 e6 9c ac e8 aa 9e"), 1);             /* 日本語 */
    assert_int_equal(check_hex("ef bb bf f0 a3 8e b4"), 1);                   /* BOM 𣎴 */
    assert_int_equal(check_hex("68 c3 a9 6c 6c 6f e2 82 ac f0 9d 84 9e"), 1); /* hé…€𝄞 */
    /* Table 3-7 range edges. */
    assert_int_equal(check_hex("7f"), 1);          /* U+007F */
    assert_int_equal(check_hex("c2 80"), 1);       /* U+0080 */
    assert_int_equal(check_hex("df bf"), 1);       /* U+07FF */
    assert_int_equal(check_hex("e0 a0 80"), 1);    /* U+0800 */
    assert_int_equal(check_hex("ec bf bf"), 1);    /* U+CFFF */
    assert_int_equal(check_hex("ed 80 80"), 1);    /* U+D000 */
    assert_int_equal(check_hex("ed 9f bf"), 1);    /* U+D7FF */
    assert_int_equal(check_hex("ee 80 80"), 1);    /* U+E000 */
    assert_int_equal(check_hex("ef bf bf"), 1);    /* U+FFFF */
    assert_int_equal(check_hex("f0 90 80 80"), 1); /* U+10000 */
    assert_int_equal(check_hex("f1 80 80 80"), 1); /* U+40000 */
    assert_int_equal(check_hex("f3 bf bf bf"), 1); /* U+FFFFF */
    assert_int_equal(check_hex("f4 80 80 80"), 1); /* U+100000 */
    assert_int_equal(check_hex("f4 8f bf bf"), 1); /* U+10FFFF */
}

static void test_utf8_incomplete_is_not_complete(void **state)
{
    (void)state;
    assert_int_equal(check_hex("c3"), 0);
    assert_int_equal(check_hex("e2 82"), 0);
    assert_int_equal(check_hex("f0 9d 84"), 0);
    assert_int_equal(check_hex("41 f4 8f"), 0);
    assert_int_equal(check_hex("e0"), 0);
    assert_int_equal(check_hex("ed 9f"), 0);
}

static void test_utf8_rejects_lone_continuation(void **state)
{
    (void)state;
    assert_int_equal(fail_pos_hex("80"), 0);
    assert_int_equal(fail_pos_hex("41 bf"), 1);
    assert_int_equal(fail_pos_hex("c2 80 80"), 2);
    assert_int_equal(fail_pos_hex("e2 82 ac 9f"), 3);
}

static void test_utf8_rejects_overlong_fail_fast(void **state)
{
    (void)state;
    /* C0 and C1 can only start overlong encodings of U+0000..U+007F. */
    assert_int_equal(fail_pos_hex("c0 80"), 0);
    assert_int_equal(fail_pos_hex("c0 af"), 0);
    assert_int_equal(fail_pos_hex("c1 bf"), 0);
    /* E0 80..9F xx encodes below U+0800. */
    assert_int_equal(fail_pos_hex("e0 80 80"), 1);
    assert_int_equal(fail_pos_hex("e0 80 af"), 1);
    assert_int_equal(fail_pos_hex("e0 9f bf"), 1);
    /* F0 80..8F xx xx encodes below U+10000. */
    assert_int_equal(fail_pos_hex("f0 80 80 80"), 1);
    assert_int_equal(fail_pos_hex("f0 80 80 af"), 1);
    assert_int_equal(fail_pos_hex("f0 8f bf bf"), 1);
}

static void test_utf8_rejects_surrogates_fail_fast(void **state)
{
    (void)state;
    assert_int_equal(fail_pos_hex("ed a0 80"), 1); /* U+D800 */
    assert_int_equal(fail_pos_hex("ed ad bf"), 1); /* U+DB7F */
    assert_int_equal(fail_pos_hex("ed b0 80"), 1); /* U+DC00 */
    assert_int_equal(fail_pos_hex("ed bf bf"), 1); /* U+DFFF */
    /* CESU-8 style pair for U+10000. */
    assert_int_equal(fail_pos_hex("ed a0 80 ed b0 80"), 1);
}

static void test_utf8_rejects_above_max_fail_fast(void **state)
{
    (void)state;
    assert_int_equal(fail_pos_hex("f4 90 80 80"), 1); /* U+110000 */
    assert_int_equal(fail_pos_hex("f4 bf bf bf"), 1);
    assert_int_equal(fail_pos_hex("f5 80 80 80"), 0);
    assert_int_equal(fail_pos_hex("f7 bf bf bf"), 0);
    assert_int_equal(fail_pos_hex("f8 88 80 80 80"), 0);    /* old 5-byte form */
    assert_int_equal(fail_pos_hex("fc 84 80 80 80 80"), 0); /* old 6-byte form */
    assert_int_equal(fail_pos_hex("fe"), 0);
    assert_int_equal(fail_pos_hex("ff"), 0);
}

static void test_utf8_rejects_truncated_sequence(void **state)
{
    (void)state;
    assert_int_equal(fail_pos_hex("c2 41"), 1);
    assert_int_equal(fail_pos_hex("c2 c2 80"), 1);
    assert_int_equal(fail_pos_hex("e2 82 41"), 2);
    assert_int_equal(fail_pos_hex("e2 e2 82 ac"), 1);
    assert_int_equal(fail_pos_hex("f0 9f 98 41"), 3);
    assert_int_equal(fail_pos_hex("f0 9f 98 f0 9f 98 80"), 3);
}

static void test_utf8_failure_is_sticky(void **state)
{
    (void)state;
    struct up_utf8 u;
    up_utf8_init(&u);
    const uint8_t bad[] = {0xed, 0xa0};
    assert_false(up_utf8_feed(&u, bad, sizeof bad));
    assert_false(up_utf8_is_complete(&u));
    assert_false(up_utf8_feed(&u, (const uint8_t *)"ok", 2));
    assert_false(up_utf8_feed(&u, NULL, 0));
    up_utf8_init(&u);
    assert_true(up_utf8_feed(&u, (const uint8_t *)"ok", 2));
}

static void test_utf8_stops_at_first_bad_byte_in_one_call(void **state)
{
    (void)state;
    /* Bytes after the failure are ignored: the call fails even if the rest is valid. */
    assert_int_equal(check_hex("41 42 ff 43 44"), -1);
    assert_int_equal(check_hex("e2 82 ac c0 af"), -1);
}

static void test_utf8_every_code_point(void **state)
{
    (void)state;
    uint8_t b[4];
    for (uint32_t cp = 0; cp <= 0x10FFFF; cp++) {
        size_t n = encode(cp, b);
        struct up_utf8 u;
        up_utf8_init(&u);
        bool ok = up_utf8_feed(&u, b, n);
        if (cp >= 0xD800 && cp <= 0xDFFF) {
            assert_false(ok);
            /* The surrogate is known at the second byte. */
            up_utf8_init(&u);
            assert_true(up_utf8_feed(&u, b, 1));
            assert_false(up_utf8_feed(&u, b + 1, 1));
        } else {
            if (!ok || !up_utf8_is_complete(&u)) {
                fail_msg("U+%04X rejected", (unsigned)cp);
            }
        }
    }
}

static void test_utf8_every_two_byte_sequence(void **state)
{
    (void)state;
    /* Table 3-7: the only valid 2-byte inputs are ASCII pairs, C2..DF 80..BF, and a
     * valid lead 3/4-byte prefix with an allowed second byte (incomplete). */
    for (unsigned a = 0; a < 256; a++) {
        for (unsigned b = 0; b < 256; b++) {
            const uint8_t in[2] = {(uint8_t)a, (uint8_t)b};
            bool cont = b >= 0x80 && b <= 0xBF;
            int want;
            if (a < 0x80) {
                want = b < 0x80 ? 1 : (b >= 0xC2 && b <= 0xF4 ? 0 : -1);
            } else if (a >= 0xC2 && a <= 0xDF) {
                want = cont ? 1 : -1;
            } else if (a == 0xE0) {
                want = (b >= 0xA0 && b <= 0xBF) ? 0 : -1;
            } else if (a == 0xED) {
                want = (b >= 0x80 && b <= 0x9F) ? 0 : -1;
            } else if (a >= 0xE1 && a <= 0xEF) {
                want = cont ? 0 : -1;
            } else if (a == 0xF0) {
                want = (b >= 0x90 && b <= 0xBF) ? 0 : -1;
            } else if (a >= 0xF1 && a <= 0xF3) {
                want = cont ? 0 : -1;
            } else if (a == 0xF4) {
                want = (b >= 0x80 && b <= 0x8F) ? 0 : -1;
            } else {
                want = -1;
            }
            struct up_utf8 u;
            up_utf8_init(&u);
            int got = up_utf8_feed(&u, in, 2) ? (up_utf8_is_complete(&u) ? 1 : 0) : -1;
            if (got != want) {
                fail_msg("%02x %02x: got %d want %d", a, b, got, want);
            }
        }
    }
}

static void utf8_trace_run(void *ud, const uint8_t *in, size_t len, const size_t *cuts,
                           size_t ncuts, char *trace, size_t cap)
{
    (void)ud;
    struct up_utf8 u;
    up_utf8_init(&u);
    bool ok = true;
    size_t off = 0;
    for (size_t c = 0; c <= ncuts && ok; c++) {
        size_t end = c < ncuts ? cuts[c] : len;
        ok = up_utf8_feed(&u, in + off, end - off);
        off = end;
    }
    snprintf(trace, cap, "%s", ok ? (up_utf8_is_complete(&u) ? "valid" : "partial") : "invalid");
}

static void test_utf8_split_feeding_every_boundary(void **state)
{
    (void)state;
    static const struct {
        const char *hex;
        const char *want;
    } cases[] = {
        {"41 e2 89 a2 ce 91 2e f0 9d 84 9e f4 8f bf bf", "valid"},
        {"ef bb bf f0 a3 8e b4 e0 a0 80 ed 9f bf", "valid"},
        {"68 c3 a9 e2 82", "partial"},
        {"68 c3 a9 ed a0 80 41", "invalid"},
        {"f4 90 80 80", "invalid"},
        {"e0 9f bf", "invalid"},
        {"41 42 c0 af", "invalid"},
        {"f0 9f 98 41 42", "invalid"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t b[64];
        size_t n = hex_bytes(cases[i].hex, b, sizeof b);
        assert_true(n != (size_t)-1);
        assert_int_equal(feed_all_splits(utf8_trace_run, NULL, b, n, cases[i].want), 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8_empty_and_ascii),
        cmocka_unit_test(test_utf8_valid_multibyte),
        cmocka_unit_test(test_utf8_incomplete_is_not_complete),
        cmocka_unit_test(test_utf8_rejects_lone_continuation),
        cmocka_unit_test(test_utf8_rejects_overlong_fail_fast),
        cmocka_unit_test(test_utf8_rejects_surrogates_fail_fast),
        cmocka_unit_test(test_utf8_rejects_above_max_fail_fast),
        cmocka_unit_test(test_utf8_rejects_truncated_sequence),
        cmocka_unit_test(test_utf8_failure_is_sticky),
        cmocka_unit_test(test_utf8_stops_at_first_bad_byte_in_one_call),
        cmocka_unit_test(test_utf8_every_code_point),
        cmocka_unit_test(test_utf8_every_two_byte_sequence),
        cmocka_unit_test(test_utf8_split_feeding_every_boundary),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
