/* Unit tests for the HTTP/1.1 body framer (src/proto/h1body.c). RFC references are to RFC 9112
 * (HTTP/1.1: §6.3 message body length, §7.1 chunked transfer coding) and RFC 9110 (semantics:
 * §5.6.2 tokens, §5.6.4 quoted strings). Every vector runs through expect_body(), which feeds
 * it whole, at every 2-way split, one byte at a time and as every prefix. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "base/alloc.h"
#include "feed.h"
#include "proto/h1.h"
#include "proto/h1body.h"
#include "trace.h"

/* ---- runner ------------------------------------------------------------------------------ */

struct body_cfg {
    enum up_h1b_kind kind;
    uint64_t length; /* LENGTH */
    bool limits;     /* apply max_line/max_trailers instead of the defaults */
    size_t max_line;
    size_t max_trailers;
};

static const struct body_cfg chunked = {.kind = UP_H1B_CHUNKED};

static void body_init(struct up_h1body *b, const struct body_cfg *cfg)
{
    up_h1body_init(b, cfg->kind, cfg->length);
    if (cfg->limits) {
        up_h1body_set_limits(b, cfg->max_line, cfg->max_trailers);
    }
}

/* Feed one chunk from an exact-size heap copy, so ASan sees any read past its end. */
static int feed_copy(struct up_h1body *b, const uint8_t *p, size_t n, size_t *used, bool *done)
{
    uint8_t *copy = up_malloc(n ? n : 1);
    assert_non_null(copy);
    memcpy(copy, p, n);
    *used = SIZE_MAX;
    int rv = up_h1body_feed(b, n ? copy : NULL, n, used, done);
    up_free(copy);
    assert_true(*used <= n);
    return rv;
}

/* A run for feed_all_splits(): feed the chunks in order until the body is done or fails, then
 * keep feeding the rest (the next message) and require that nothing more is consumed and the
 * answer does not change. The trace is the answer and the total of *used. */
static void body_run(void *ud, const uint8_t *in, size_t len, const size_t *cuts, size_t ncuts,
                     char *trace, size_t cap)
{
    const struct body_cfg *cfg = ud;
    struct up_h1body b;
    body_init(&b, cfg);
    size_t total = 0, start = 0;
    int rv = UP_OK;
    bool done = false, stopped = false;
    for (size_t c = 0; c <= ncuts; c++) {
        size_t end = c < ncuts ? cuts[c] : len;
        size_t used;
        bool d;
        int r = feed_copy(&b, in + start, end - start, &used, &d);
        if (!stopped) {
            total += used;
            rv = r;
            done = d;
            stopped = r < 0 || d;
            if (!stopped) {
                assert_int_equal(used, end - start);
            }
        } else {
            assert_int_equal(r, rv);
            assert_int_equal(used, 0);
            assert_int_equal(d, done);
        }
        start = end;
    }
    /* One more call without input: the same answer again. */
    size_t used;
    bool d;
    assert_int_equal(up_h1body_feed(&b, NULL, 0, &used, &d), rv);
    assert_int_equal(used, 0);
    assert_int_equal(d, done);
    if (rv < 0) {
        assert_int_equal(b.state, UP_H1B_ST_ERROR);
        assert_non_null(b.err_reason);
    } else {
        assert_null(b.err_reason);
    }
    struct tr t = {.s = trace, .cap = cap};
    trace[0] = '\0';
    tr_add(&t, "rv=%d used=%zu done=%d", rv, total, done);
    if (rv < 0) {
        tr_add(&t, " %s", b.err_reason);
    }
}

/* Every prefix in[0..k) fed in one call: before the end of the body (or the offending byte)
 * it is consumed whole and not done, so the answer comes exactly at the byte that decides it.
 * Inputs over 4 KiB are sampled near both ends. */
static void check_prefixes(const struct body_cfg *cfg, const uint8_t *in, size_t len, int rv,
                           size_t stop, bool done, const char *reason)
{
    for (size_t k = 0; k <= len; k++) {
        if (len > 4096 && k > 2048 && k + 2048 < len && k % 61 != 0) {
            continue;
        }
        struct up_h1body b;
        body_init(&b, cfg);
        size_t used;
        bool d;
        int r = feed_copy(&b, in, k, &used, &d);
        bool decided = done ? k >= stop : (rv < 0 && k > stop);
        if (!decided) {
            if (r != UP_OK || used != k || d) {
                fail_msg("prefix %zu: rv %d used %zu done %d (%s)", k, r, used, d,
                         b.err_reason ? b.err_reason : "-");
            }
            continue;
        }
        assert_int_equal(r, rv);
        assert_int_equal(used, stop);
        assert_int_equal(d, done);
        if (rv < 0) {
            assert_string_equal(b.err_reason, reason);
        }
    }
}

/* Feed in[0..len) every way and require the trace want ("rv=0 used=15 done=1"). */
static void expect_body(const struct body_cfg *cfg, const char *s, size_t len, const char *want)
{
    const uint8_t *in = (const uint8_t *)s;
    assert_int_equal(feed_all_splits(body_run, (void *)cfg, in, len, want), 0);
    struct up_h1body b;
    body_init(&b, cfg);
    size_t used;
    bool done;
    int rv = feed_copy(&b, in, len, &used, &done);
    check_prefixes(cfg, in, len, rv, used, done, b.err_reason);
}

#define EXPECT(cfg, lit, want) expect_body((cfg), (lit), sizeof(lit) - 1, (want))

/* Chunked input that must fail with reason at byte offset at. */
static void chunked_err(const char *s, size_t len, int err, size_t at, const char *reason)
{
    char want[256];
    snprintf(want, sizeof want, "rv=%d used=%zu done=0 %s", err, at, reason);
    expect_body(&chunked, s, len, want);
}

#define CHUNKED_ERR(lit, at, reason) chunked_err((lit), sizeof(lit) - 1, UP_EPROTO, (at), (reason))

/* A complete chunked body, then rest (the next message): used must stop at the body's end. */
static void chunked_ok(const char *body, size_t blen, const char *rest, size_t rlen)
{
    static char s[1024];
    char want[64];
    assert_true(blen + rlen <= sizeof s);
    memcpy(s, body, blen);
    memcpy(s + blen, rest, rlen);
    snprintf(want, sizeof want, "rv=0 used=%zu done=1", blen);
    expect_body(&chunked, body, blen, want);
    expect_body(&chunked, s, blen + rlen, want);
}

static const char next_req[] = "GET /next HTTP/1.1\r\nHost: a\r\n\r\n";

#define CHUNKED_OK_THEN(lit, rest) chunked_ok((lit), sizeof(lit) - 1, (rest), sizeof(rest) - 1)
#define CHUNKED_OK(lit) CHUNKED_OK_THEN(lit, next_req)

/* Chunked input that is valid so far but not complete. */
static void chunked_more(const char *s, size_t len)
{
    char want[64];
    snprintf(want, sizeof want, "rv=0 used=%zu done=0", len);
    expect_body(&chunked, s, len, want);
}

#define CHUNKED_PARTIAL(lit) chunked_more((lit), sizeof(lit) - 1)

/* ---- Content-Length, none, close --------------------------------------------------------- */

static void test_h1body_length_stops_at_boundary(void **state)
{
    (void)state;
    /* RFC 9112 §6.3 item 6: exactly Content-Length bytes, then the next pipelined request. */
    static const struct body_cfg five = {.kind = UP_H1B_LENGTH, .length = 5};
    EXPECT(&five, "helloGET /next HTTP/1.1\r\nHost: a\r\n\r\n", "rv=0 used=5 done=1");
    EXPECT(&five, "hello", "rv=0 used=5 done=1");
    EXPECT(&five, "hell", "rv=0 used=4 done=0");
    EXPECT(&five, "", "rv=0 used=0 done=0");
    /* The body is opaque: CRLFs and chunk syntax in it mean nothing. */
    EXPECT(&five, "0\r\n\r\n0\r\n\r\n", "rv=0 used=5 done=1");
    static const struct body_cfg one = {.kind = UP_H1B_LENGTH, .length = 1};
    EXPECT(&one, "\0\0", "rv=0 used=1 done=1");

    /* What follows the body is the next head, intact. */
    char s[128];
    int n = snprintf(s, sizeof s, "hello%s", next_req);
    struct up_h1body b;
    up_h1body_init(&b, UP_H1B_LENGTH, 5);
    size_t used;
    bool done;
    assert_int_equal(up_h1body_feed(&b, (const uint8_t *)s, (size_t)n, &used, &done), UP_OK);
    assert_int_equal(used, 5);
    assert_true(done);
    struct up_h1_header h[4];
    struct up_h1_msg m;
    assert_int_equal(up_h1_parse_request((const uint8_t *)s + used, (size_t)n - used, NULL, &m, h,
                                         4, UP_H1_DEFAULT_MAX_HEAD),
                     UP_OK);
    assert_int_equal(m.head_len, strlen(next_req));
    /* Done is sticky and consumes nothing. */
    assert_int_equal(up_h1body_feed(&b, (const uint8_t *)s + used, (size_t)n - used, &used, &done),
                     UP_OK);
    assert_int_equal(used, 0);
    assert_true(done);
}

static void test_h1body_length_large(void **state)
{
    (void)state;
    /* The largest Content-Length h1.c accepts; never done within any real input. */
    static const struct body_cfg max = {.kind = UP_H1B_LENGTH, .length = INT64_MAX};
    EXPECT(&max, "abc\r\n\r\n", "rv=0 used=7 done=0");
    static const struct body_cfg huge = {.kind = UP_H1B_LENGTH, .length = UINT64_MAX};
    EXPECT(&huge, "abc", "rv=0 used=3 done=0");
    /* Counting down across many calls. */
    struct up_h1body b;
    up_h1body_init(&b, UP_H1B_LENGTH, 100000);
    static uint8_t buf[4096];
    memset(buf, 'x', sizeof buf);
    size_t total = 0, used;
    bool done = false;
    while (!done) {
        assert_int_equal(up_h1body_feed(&b, buf, sizeof buf, &used, &done), UP_OK);
        total += used;
        assert_true(done || used == sizeof buf);
    }
    assert_int_equal(total, 100000);
    assert_int_equal(used, 100000 % sizeof buf);
}

static void test_h1body_length_zero_and_none(void **state)
{
    (void)state;
    /* Done before the first byte: everything is the next message. */
    static const struct body_cfg zero = {.kind = UP_H1B_LENGTH, .length = 0};
    static const struct body_cfg none = {.kind = UP_H1B_NONE};
    EXPECT(&zero, "GET / HTTP/1.1\r\n\r\n", "rv=0 used=0 done=1");
    EXPECT(&zero, "", "rv=0 used=0 done=1");
    EXPECT(&none, "HTTP/1.1 200 OK\r\n\r\n", "rv=0 used=0 done=1");
    EXPECT(&none, "", "rv=0 used=0 done=1");
    /* NONE ignores length; an unknown kind is NONE. */
    struct up_h1body b;
    up_h1body_init(&b, UP_H1B_NONE, 99);
    size_t used;
    bool done;
    assert_int_equal(up_h1body_feed(&b, (const uint8_t *)"abc", 3, &used, &done), UP_OK);
    assert_int_equal(used, 0);
    assert_true(done);
    up_h1body_init(&b, (enum up_h1b_kind)77, 5);
    assert_int_equal(b.kind, UP_H1B_NONE);
    assert_int_equal(up_h1body_feed(&b, (const uint8_t *)"abc", 3, &used, &done), UP_OK);
    assert_int_equal(used, 0);
    assert_true(done);
}

static void test_h1body_close_never_done(void **state)
{
    (void)state;
    /* RFC 9112 §6.3 item 8: everything until the close, whatever it looks like. */
    static const struct body_cfg close = {.kind = UP_H1B_CLOSE, .length = 5};
    EXPECT(&close, "0\r\n\r\nHTTP/1.1 200 OK\r\n\r\n", "rv=0 used=24 done=0");
    EXPECT(&close, "\n\r\0\xff", "rv=0 used=4 done=0");
    EXPECT(&close, "", "rv=0 used=0 done=0");
}

/* ---- chunked: valid --------------------------------------------------------------------- */

static void test_h1body_chunked_simple(void **state)
{
    (void)state;
    CHUNKED_OK("5\r\nhello\r\n0\r\n\r\n");
    /* Only the last-chunk and the final CRLF. */
    CHUNKED_OK("0\r\n\r\n");
    CHUNKED_OK_THEN("0\r\n\r\n", "0\r\n\r\n");
    /* Pipelined bytes that are not a valid head are still not ours. */
    CHUNKED_OK_THEN("0\r\n\r\n", "\n\r\xff");
    CHUNKED_OK_THEN("0\r\n\r\n", "\0");
}

static void test_h1body_chunked_multiple_chunks(void **state)
{
    (void)state;
    /* The classic Wikipedia example: chunk data may hold CRLFs. */
    CHUNKED_OK("4\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\n\r\n");
    /* Chunk data that looks like a last-chunk is data. */
    CHUNKED_OK("5\r\n0\r\n\r\n\r\n1\r\nx\r\n0\r\n\r\n");
    /* Binary data, NULs included. */
    CHUNKED_OK("3\r\n\0\r\n\r\n1\r\n\xff\r\n0\r\n\r\n");
    CHUNKED_PARTIAL("4\r\nWiki\r\n5\r\npedia\r\n");
    CHUNKED_PARTIAL("4\r\nWiki\r\n5\r\nped");
}

static void test_h1body_chunked_hex_sizes(void **state)
{
    (void)state;
    /* Hex digits in either case (RFC 5234 HEXDIG is case-insensitive). */
    CHUNKED_OK("A\r\n0123456789\r\n0\r\n\r\n");
    CHUNKED_OK("a\r\n0123456789\r\n0\r\n\r\n");
    CHUNKED_OK("1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n");
    CHUNKED_OK("1a\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n");
    /* Leading zeros, in chunk sizes and in the last-chunk: 1*"0" (RFC 9112 §7.1). */
    CHUNKED_OK("000\r\n\r\n");
    CHUNKED_OK("0005\r\nhello\r\n0000\r\n\r\n");
    /* Sixteen digits is the most; leading zeros count. */
    CHUNKED_OK("0000000000000005\r\nhello\r\n0000000000000000\r\n\r\n");
    /* The largest size: 2^63 - 1. */
    CHUNKED_PARTIAL("7fffffffffffffff\r\nabc");
    CHUNKED_PARTIAL("7FFFFFFFFFFFFFFF;a=b\r\n");
    /* A long chunk is counted, not buffered. */
    CHUNKED_PARTIAL("100000\r\nxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
}

static void test_h1body_chunked_extensions(void **state)
{
    (void)state;
    /* RFC 9112 §7.1.1 forms seen in the wild. */
    CHUNKED_OK("5;name=value\r\nhello\r\n0\r\n\r\n");
    CHUNKED_OK("5;name\r\nhello\r\n0\r\n\r\n");
    CHUNKED_OK("5;a;b=c;d\r\nhello\r\n0\r\n\r\n");
    CHUNKED_OK("5;!#$%&'*+-.^_`|~09azAZ=!#$%&'*+-.^_`|~09azAZ\r\nhello\r\n0\r\n\r\n");
    /* BWS around ";" and "=". */
    CHUNKED_OK("5 ;name=value\r\nhello\r\n0\r\n\r\n");
    CHUNKED_OK("5 \t; \tname \t= \tvalue\r\nhello\r\n0\r\n\r\n");
    CHUNKED_OK("5;a ;b\r\nhello\r\n0\r\n\r\n");
    CHUNKED_OK("5;a=1 ;b=2\r\nhello\r\n0\r\n\r\n");
    /* Quoted strings with escapes, separators, obs-text and empty ones. */
    CHUNKED_OK("5;a=\"quoted value\"\r\nhello\r\n0\r\n\r\n");
    CHUNKED_OK("5;a=\"x;y=z, \\\"q\\\" \\\\ \\\t\"\r\nhello\r\n0\r\n\r\n");
    CHUNKED_OK("5;a=\"\"\r\nhello\r\n0\r\n\r\n");
    CHUNKED_OK("5;a=\"caf\xc3\xa9 \\\xff\";b\r\nhello\r\n0\r\n\r\n");
    CHUNKED_OK("5;a=\"b\" ;c=\"d\"\r\nhello\r\n0\r\n\r\n");
    /* On the last-chunk too. */
    CHUNKED_OK("0;signature=abc;final\r\n\r\n");
}

static void test_h1body_chunked_trailers(void **state)
{
    (void)state;
    /* RFC 9112 §7.1.2: field lines after the last-chunk, then the empty line. */
    CHUNKED_OK("5\r\nhello\r\n0\r\nExpires: Wed, 21 Oct 2015 07:28:00 GMT\r\n\r\n");
    CHUNKED_OK("0\r\nA: 1\r\nb-c: two words\r\nX-Empty:\r\nX-Ows: \t v \t\r\n\r\n");
    CHUNKED_OK("0\r\nX-Bin: caf\xc3\xa9 \xff\x80\r\nX:y\r\n\r\n");
    CHUNKED_OK("0\r\n!#$%&'*+-.^_`|~09azAZ: v\r\n\r\n");
    /* Incomplete at every point of a trailer line. */
    CHUNKED_PARTIAL("0\r\nA");
    CHUNKED_PARTIAL("0\r\nA:");
    CHUNKED_PARTIAL("0\r\nA: 1\r");
    CHUNKED_PARTIAL("0\r\nA: 1\r\n");
    CHUNKED_PARTIAL("0\r\nA: 1\r\n\r");
}

/* ---- chunked: errors -------------------------------------------------------------------- */

static void test_h1body_rejects_empty_chunk_size(void **state)
{
    (void)state;
    CHUNKED_ERR("\r\n", 0, "h1body: empty chunk size");
    CHUNKED_ERR(";a=b\r\n", 0, "h1body: empty chunk size");
    /* A second chunk line that is empty (the last-chunk was forgotten). */
    CHUNKED_ERR("5\r\nhello\r\n\r\n", 10, "h1body: empty chunk size");
}

static void test_h1body_rejects_invalid_chunk_size(void **state)
{
    (void)state;
    CHUNKED_ERR("x\r\n", 0, "h1body: invalid chunk size");
    CHUNKED_ERR("g\r\n", 0, "h1body: invalid chunk size");
    CHUNKED_ERR("-1\r\n", 0, "h1body: invalid chunk size");
    CHUNKED_ERR("+5\r\n", 0, "h1body: invalid chunk size");
    CHUNKED_ERR(" 5\r\n", 0, "h1body: invalid chunk size");
    CHUNKED_ERR("\t5\r\n", 0, "h1body: invalid chunk size");
    CHUNKED_ERR("0x5\r\n", 1, "h1body: invalid chunk size");
    CHUNKED_ERR("5x\r\n", 1, "h1body: invalid chunk size");
    CHUNKED_ERR("5,3\r\n", 1, "h1body: invalid chunk size");
    CHUNKED_ERR("5\0\r\n", 1, "h1body: invalid chunk size");
    CHUNKED_ERR("\xef\xbc\x95\r\n", 0, "h1body: invalid chunk size");
    CHUNKED_ERR("5\r\nhello\r\nz\r\n", 10, "h1body: invalid chunk size");
}

static void test_h1body_rejects_chunk_size_overflow(void **state)
{
    (void)state;
    /* Seventeen digits, whatever their value. */
    CHUNKED_ERR("00000000000000005\r\n", 16, "h1body: chunk size has more than 16 hex digits");
    CHUNKED_ERR("00000000000000000\r\n\r\n", 16, "h1body: chunk size has more than 16 hex digits");
    CHUNKED_ERR("10000000000000000\r\n", 16, "h1body: chunk size has more than 16 hex digits");
    /* 2^63 and above: the last digit is the one that does not fit. */
    CHUNKED_ERR("8000000000000000\r\n", 15, "h1body: chunk size too large");
    CHUNKED_ERR("ffffffffffffffff\r\n", 15, "h1body: chunk size too large");
    CHUNKED_ERR("fffffffffffffffff\r\n", 15, "h1body: chunk size too large");
    CHUNKED_ERR("7fffffffffffffff0\r\n", 16, "h1body: chunk size has more than 16 hex digits");
}

static void test_h1body_rejects_bad_extension(void **state)
{
    (void)state;
    CHUNKED_ERR("5;\r\nhello\r\n", 2, "h1body: invalid chunk extension");
    CHUNKED_ERR("5;;a\r\n", 2, "h1body: invalid chunk extension");
    CHUNKED_ERR("5;=v\r\n", 2, "h1body: invalid chunk extension");
    CHUNKED_ERR("5;a=\r\n", 4, "h1body: invalid chunk extension");
    CHUNKED_ERR("5;a==b\r\n", 4, "h1body: invalid chunk extension");
    CHUNKED_ERR("5;a=b=c\r\n", 5, "h1body: invalid chunk extension");
    CHUNKED_ERR("5;a=b c\r\n", 6, "h1body: invalid chunk extension");
    CHUNKED_ERR("5;a b\r\n", 4, "h1body: invalid chunk extension");
    CHUNKED_ERR("5 a\r\n", 2, "h1body: invalid chunk extension");
    CHUNKED_ERR("5;a(b)\r\n", 3, "h1body: invalid chunk extension");
    CHUNKED_ERR("5;a/b\r\n", 3, "h1body: invalid chunk extension");
    CHUNKED_ERR("5;a=b/c\r\n", 5, "h1body: invalid chunk extension");
    CHUNKED_ERR("5;\xc3\xa9\r\n", 2, "h1body: invalid chunk extension");
    CHUNKED_ERR("5;a=\xc3\xa9\r\n", 4, "h1body: invalid chunk extension");
    CHUNKED_ERR("5;a\0\r\n", 3, "h1body: invalid chunk extension");
    CHUNKED_ERR("5;a=b\x7f\r\n", 5, "h1body: invalid chunk extension");
    /* Quoted strings: closed, with nothing glued after, no CTLs, escapes of printable bytes. */
    CHUNKED_ERR("5;a=\"b\"c\r\n", 7, "h1body: invalid chunk extension");
    CHUNKED_ERR("5;a=\"b\"\"c\"\r\n", 7, "h1body: invalid chunk extension");
    CHUNKED_ERR("5;a=\"b\r\nhello\r\n", 6, "h1body: invalid chunk extension");
    CHUNKED_ERR("5;a=\"b\x01\"\r\n", 6, "h1body: invalid chunk extension");
    CHUNKED_ERR("5;a=\"b\x7f\"\r\n", 6, "h1body: invalid chunk extension");
    CHUNKED_ERR("5;a=\"\\\x01\"\r\n", 6, "h1body: invalid chunk extension");
    CHUNKED_ERR("5;a=\"\\\r\n", 6, "h1body: invalid chunk extension");
    CHUNKED_ERR("5;\"a\"=b\r\n", 2, "h1body: invalid chunk extension");
    CHUNKED_ERR("5;a=b;\r\n", 6, "h1body: invalid chunk extension");
    /* Whitespace that no ";" or "=" follows (BWS is only allowed before them). */
    CHUNKED_ERR("5 \r\nhello\r\n0\r\n\r\n", 2, "h1body: whitespace before CRLF in chunk line");
    CHUNKED_ERR("0\t\r\n\r\n", 2, "h1body: whitespace before CRLF in chunk line");
    CHUNKED_ERR("5;a \r\n", 4, "h1body: whitespace before CRLF in chunk line");
    CHUNKED_ERR("5;a=b\t\r\n", 6, "h1body: whitespace before CRLF in chunk line");
    CHUNKED_ERR("5;a=\"b\" \r\n", 8, "h1body: whitespace before CRLF in chunk line");
}

static void test_h1body_rejects_missing_crlf_after_data(void **state)
{
    (void)state;
    CHUNKED_ERR("5\r\nhelloX\r\n0\r\n\r\n", 8, "h1body: missing CRLF after chunk data");
    /* A size smaller than the data: the classic desync attempt. */
    CHUNKED_ERR("3\r\nhello\r\n0\r\n\r\n", 6, "h1body: missing CRLF after chunk data");
    CHUNKED_ERR("5\r\nhello\n0\r\n\r\n", 8, "h1body: missing CRLF after chunk data");
    CHUNKED_ERR("5\r\nhello\rX", 9, "h1body: missing CRLF after chunk data");
    CHUNKED_ERR("5\r\nhello\r\r\n", 9, "h1body: missing CRLF after chunk data");
}

static void test_h1body_rejects_bare_lf(void **state)
{
    (void)state;
    CHUNKED_ERR("\n", 0, "h1body: bare LF");
    CHUNKED_ERR("5\nhello\r\n0\r\n\r\n", 1, "h1body: bare LF");
    CHUNKED_ERR("5;a\nhello\r\n", 3, "h1body: bare LF");
    CHUNKED_ERR("5;a=b\nhello\r\n", 5, "h1body: bare LF");
    CHUNKED_ERR("5;a=\"b\nhello\r\n", 6, "h1body: bare LF");
    CHUNKED_ERR("5;a \nhello\r\n", 4, "h1body: bare LF");
    CHUNKED_ERR("5;a=\nhello\r\n", 4, "h1body: bare LF");
    CHUNKED_ERR("5;a=\"b\"\nhello\r\n", 7, "h1body: bare LF");
    CHUNKED_ERR("0\n\r\n", 1, "h1body: bare LF");
    /* In the trailers and as the final line. */
    CHUNKED_ERR("0\r\n\n", 3, "h1body: bare LF");
    CHUNKED_ERR("0\r\nA: b\n\r\n", 7, "h1body: bare LF");
    CHUNKED_ERR("0\r\nA\n", 4, "h1body: bare LF");
    CHUNKED_ERR("0\r\nA: b\r\n\n", 9, "h1body: bare LF");
}

static void test_h1body_rejects_bare_cr(void **state)
{
    (void)state;
    CHUNKED_ERR("5\rhello\r\n", 2, "h1body: bare CR");
    CHUNKED_ERR("5\r\r\nhello\r\n", 2, "h1body: bare CR");
    CHUNKED_ERR("5;a=b\rX", 6, "h1body: bare CR");
    CHUNKED_ERR("0\r\r\n\r\n", 2, "h1body: bare CR");
    /* In the trailers and as the final line. */
    CHUNKED_ERR("0\r\nA: b\rc\r\n\r\n", 8, "h1body: bare CR");
    CHUNKED_ERR("0\r\nA: b\r\r\n\r\n", 8, "h1body: bare CR");
    CHUNKED_ERR("0\r\n\rX", 4, "h1body: bare CR");
    CHUNKED_ERR("0\r\n\r\r\n", 4, "h1body: bare CR");
    CHUNKED_ERR("0\r\nA: b\r\n\rGET", 10, "h1body: bare CR");
}

static void test_h1body_rejects_bad_trailers(void **state)
{
    (void)state;
    /* RFC 9112 §5.2: obs-fold, and a first field line that starts with whitespace. */
    CHUNKED_ERR("0\r\nA: b\r\n c\r\n\r\n", 9, "h1body: obs-fold in trailer");
    CHUNKED_ERR("0\r\nA: b\r\n\tc\r\n\r\n", 9, "h1body: obs-fold in trailer");
    CHUNKED_ERR("0\r\n A: b\r\n\r\n", 3, "h1body: obs-fold in trailer");
    CHUNKED_ERR("0\r\n: v\r\n\r\n", 3, "h1body: empty trailer name");
    CHUNKED_ERR("0\r\nA b: c\r\n\r\n", 4, "h1body: invalid trailer name");
    /* RFC 9112 §5.1: no whitespace between the name and the colon. */
    CHUNKED_ERR("0\r\nA : b\r\n\r\n", 4, "h1body: invalid trailer name");
    CHUNKED_ERR("0\r\nA\t: b\r\n\r\n", 4, "h1body: invalid trailer name");
    CHUNKED_ERR("0\r\nA(b): c\r\n\r\n", 4, "h1body: invalid trailer name");
    CHUNKED_ERR("0\r\n\xc3\xa9: c\r\n\r\n", 3, "h1body: invalid trailer name");
    CHUNKED_ERR("0\r\n\"A\": c\r\n\r\n", 3, "h1body: invalid trailer name");
    CHUNKED_ERR("0\r\nA\0: c\r\n\r\n", 4, "h1body: invalid trailer name");
    CHUNKED_ERR("0\r\nAb\r\n\r\n", 5, "h1body: trailer without colon");
    CHUNKED_ERR("0\r\nA: b\x01\r\n\r\n", 7, "h1body: control character in trailer value");
    CHUNKED_ERR("0\r\nA: \x7f\r\n\r\n", 6, "h1body: control character in trailer value");
    CHUNKED_ERR("0\r\nA: b\0c\r\n\r\n", 7, "h1body: control character in trailer value");
    CHUNKED_ERR("0\r\nA: \x1b[0m\r\n\r\n", 6, "h1body: control character in trailer value");
}

/* ---- limits ------------------------------------------------------------------------------ */

/* A chunk line "5;xxx...\r\n" of exactly total bytes, then its data and the last-chunk. */
static size_t build_long_line(char *out, size_t cap, size_t total)
{
    assert_true(total >= 5 && total + 16 < cap);
    size_t n = 0;
    out[n++] = '5';
    out[n++] = ';';
    memset(out + n, 'x', total - 4);
    n += total - 4;
    memcpy(out + n, "\r\nhello\r\n0\r\n\r\n", 14);
    return n + 14;
}

static void test_h1body_chunk_line_limit(void **state)
{
    (void)state;
    static char s[UP_H1B_MAX_CHUNK_LINE + 64];
    char want[128];
    /* limit - 1 and limit: fine; limit + 1: refused at the byte past the limit (the LF). */
    for (size_t total = UP_H1B_MAX_CHUNK_LINE - 1; total <= UP_H1B_MAX_CHUNK_LINE + 1; total++) {
        size_t len = build_long_line(s, sizeof s, total);
        if (total <= UP_H1B_MAX_CHUNK_LINE) {
            snprintf(want, sizeof want, "rv=0 used=%zu done=1", len);
        } else {
            snprintf(want, sizeof want, "rv=%d used=%d done=0 h1body: chunk line too long",
                     UP_ELIMIT, UP_H1B_MAX_CHUNK_LINE);
        }
        expect_body(&chunked, s, len, want);
    }
    /* The limit is per line: many lines each at the limit are fine. */
    static char multi[3 * UP_H1B_MAX_CHUNK_LINE + 64];
    size_t n = 0;
    for (int i = 0; i < 3; i++) {
        multi[n++] = '1';
        multi[n++] = ';';
        memset(multi + n, 'y', UP_H1B_MAX_CHUNK_LINE - 4);
        n += UP_H1B_MAX_CHUNK_LINE - 4;
        memcpy(multi + n, "\r\nz\r\n", 5);
        n += 5;
    }
    memcpy(multi + n, "0\r\n\r\n", 5);
    n += 5;
    snprintf(want, sizeof want, "rv=0 used=%zu done=1", n);
    expect_body(&chunked, multi, n, want);

    /* Lower limits from set_limits, the last-chunk line included: 6 bytes allowed. */
    static const struct body_cfg six = {
        .kind = UP_H1B_CHUNKED, .limits = true, .max_line = 6, .max_trailers = 100};
    EXPECT(&six, "5;a\r\nhello\r\n0;b\r\n\r\n", "rv=0 used=19 done=1");
    EXPECT(&six, "5;ab\r\nhello\r\n0;cd\r\n\r\n", "rv=0 used=21 done=1");
    EXPECT(&six, "5;abc\r\nhello\r\n", "rv=-201 used=6 done=0 h1body: chunk line too long");
    EXPECT(&six, "5;a\r\nhello\r\n0;bcd\r\n\r\n",
           "rv=-201 used=18 done=0 h1body: chunk line too long");
    /* Leading zeros count: they cost bytes like any other. */
    EXPECT(&six, "000000\r\n\r\n", "rv=-201 used=6 done=0 h1body: chunk line too long");
    /* The minimum line is "0\r\n": a limit of 2 refuses every chunked body. */
    static const struct body_cfg two = {
        .kind = UP_H1B_CHUNKED, .limits = true, .max_line = 2, .max_trailers = 100};
    EXPECT(&two, "0\r\n\r\n", "rv=-201 used=2 done=0 h1body: chunk line too long");
    static const struct body_cfg three = {
        .kind = UP_H1B_CHUNKED, .limits = true, .max_line = 3, .max_trailers = 0};
    EXPECT(&three, "0\r\n\r\n", "rv=0 used=5 done=1");
}

/* "0\r\n", one trailer line of exactly total bytes ("X: vvv\r\n"), then the final CRLF. */
static size_t build_trailers(char *out, size_t cap, size_t total)
{
    assert_true(total >= 5 && total + 16 < cap);
    size_t n = 0;
    memcpy(out, "0\r\nX: ", 6);
    n = 6;
    memset(out + n, 'v', total - 5);
    n += total - 5;
    memcpy(out + n, "\r\n\r\n", 4);
    return n + 4;
}

static void test_h1body_trailer_limit(void **state)
{
    (void)state;
    static char s[UP_H1B_MAX_TRAILERS + 64];
    char want[128];
    for (size_t total = UP_H1B_MAX_TRAILERS - 1; total <= UP_H1B_MAX_TRAILERS + 1; total++) {
        size_t len = build_trailers(s, sizeof s, total);
        if (total <= UP_H1B_MAX_TRAILERS) {
            snprintf(want, sizeof want, "rv=0 used=%zu done=1", len);
        } else {
            /* Refused at the first byte past the limit: 3 bytes of last-chunk + the limit. */
            snprintf(want, sizeof want, "rv=%d used=%d done=0 h1body: trailer section too large",
                     UP_ELIMIT, 3 + UP_H1B_MAX_TRAILERS);
        }
        expect_body(&chunked, s, len, want);
    }
    /* The limit is on the whole section, not per line: 4 + 4 bytes fit in 8, 5 + 4 do not. */
    static const struct body_cfg eight = {
        .kind = UP_H1B_CHUNKED, .limits = true, .max_line = 100, .max_trailers = 8};
    EXPECT(&eight, "0\r\nA:\r\nB:\r\n\r\n", "rv=0 used=13 done=1");
    EXPECT(&eight, "0\r\nAB:\r\nC:\r\n\r\n",
           "rv=-201 used=11 done=0 h1body: trailer section too large");
    EXPECT(&eight, "0\r\nA:\r\nB:\r\nC:\r\n\r\n",
           "rv=-201 used=11 done=0 h1body: trailer section too large");
    /* max_trailers 0: no trailers, but the final CRLF is not a trailer. */
    static const struct body_cfg none = {
        .kind = UP_H1B_CHUNKED, .limits = true, .max_line = 100, .max_trailers = 0};
    EXPECT(&none, "5\r\nhello\r\n0\r\n\r\n", "rv=0 used=15 done=1");
    EXPECT(&none, "0\r\nA: b\r\n\r\n", "rv=-201 used=3 done=0 h1body: trailer section too large");
    /* Chunk-line limit does not apply to trailer lines, nor the trailer limit to chunk lines. */
    static const struct body_cfg small_line = {
        .kind = UP_H1B_CHUNKED, .limits = true, .max_line = 3, .max_trailers = 100};
    EXPECT(&small_line, "0\r\nLong-Trailer: value\r\n\r\n", "rv=0 used=26 done=1");
}

/* ---- state handling and misuse ----------------------------------------------------------- */

static void test_h1body_error_is_sticky(void **state)
{
    (void)state;
    struct up_h1body b;
    up_h1body_init(&b, UP_H1B_CHUNKED, 0);
    size_t used;
    bool done;
    assert_int_equal(up_h1body_feed(&b, (const uint8_t *)"5\r\nhi", 5, &used, &done), UP_OK);
    assert_int_equal(used, 5);
    assert_int_equal(up_h1body_feed(&b, (const uint8_t *)"lloX\r\n", 6, &used, &done), UP_EPROTO);
    assert_int_equal(used, 3);
    assert_false(done);
    assert_string_equal(b.err_reason, "h1body: missing CRLF after chunk data");
    /* The same answer, consuming nothing, even for bytes that would have been valid. */
    assert_int_equal(up_h1body_feed(&b, (const uint8_t *)"\r\n0\r\n\r\n", 7, &used, &done),
                     UP_EPROTO);
    assert_int_equal(used, 0);
    assert_false(done);
    assert_string_equal(b.err_reason, "h1body: missing CRLF after chunk data");
    /* ELIMIT is sticky too. */
    up_h1body_init(&b, UP_H1B_CHUNKED, 0);
    up_h1body_set_limits(&b, 2, 0);
    assert_int_equal(up_h1body_feed(&b, (const uint8_t *)"0\r\n", 3, &used, &done), UP_ELIMIT);
    assert_int_equal(used, 2);
    assert_int_equal(up_h1body_feed(&b, (const uint8_t *)"\n", 1, &used, &done), UP_ELIMIT);
    assert_int_equal(used, 0);
    assert_string_equal(b.err_reason, "h1body: chunk line too long");
    /* Re-initialising starts over. */
    up_h1body_init(&b, UP_H1B_CHUNKED, 0);
    assert_null(b.err_reason);
    assert_int_equal(up_h1body_feed(&b, (const uint8_t *)"0\r\n\r\n", 5, &used, &done), UP_OK);
    assert_int_equal(used, 5);
    assert_true(done);
}

static void test_h1body_invalid_arguments(void **state)
{
    (void)state;
    struct up_h1body b;
    up_h1body_init(&b, UP_H1B_CHUNKED, 0);
    size_t used = 7;
    bool done = true;
    const uint8_t in[] = "0\r\n\r\n";
    assert_int_equal(up_h1body_feed(NULL, in, 5, &used, &done), UP_EINVAL);
    assert_int_equal(used, 0);
    assert_false(done);
    assert_int_equal(up_h1body_feed(&b, in, 5, NULL, &done), UP_EINVAL);
    assert_int_equal(up_h1body_feed(&b, in, 5, &used, NULL), UP_EINVAL);
    assert_int_equal(up_h1body_feed(&b, NULL, 5, &used, &done), UP_EINVAL);
    /* None of them touched b. */
    assert_int_equal(b.state, UP_H1B_ST_SIZE);
    assert_null(b.err_reason);
    assert_int_equal(up_h1body_feed(&b, NULL, 0, &used, &done), UP_OK);
    assert_int_equal(used, 0);
    assert_false(done);
    assert_int_equal(up_h1body_feed(&b, in, 5, &used, &done), UP_OK);
    assert_int_equal(used, 5);
    assert_true(done);
}

static void test_h1body_init_defaults(void **state)
{
    (void)state;
    struct up_h1body b;
    memset(&b, 0xa5, sizeof b);
    up_h1body_init(&b, UP_H1B_CHUNKED, 123);
    assert_int_equal(b.kind, UP_H1B_CHUNKED);
    assert_int_equal(b.state, UP_H1B_ST_SIZE);
    assert_int_equal(b.remaining, 0);
    assert_int_equal(b.max_chunk_line, UP_H1B_MAX_CHUNK_LINE);
    assert_int_equal(b.max_trailers, UP_H1B_MAX_TRAILERS);
    assert_null(b.err_reason);
    up_h1body_init(&b, UP_H1B_LENGTH, 0);
    assert_int_equal(b.state, UP_H1B_ST_DONE);
    up_h1body_init(&b, UP_H1B_LENGTH, 9);
    assert_int_equal(b.state, UP_H1B_ST_LENGTH);
    assert_int_equal(b.remaining, 9);
    up_h1body_init(&b, UP_H1B_CLOSE, 9);
    assert_int_equal(b.state, UP_H1B_ST_CLOSE);
}

/* ---- framing from a parsed head (RFC 9112 §6.3) ------------------------------------------ */

static struct up_h1_header fh[16];
static struct up_h1_msg fm;

static const struct up_h1_msg *head(bool request, const char *s)
{
    int rv = request ? up_h1_parse_request((const uint8_t *)s, strlen(s), NULL, &fm, fh, 16,
                                           UP_H1_DEFAULT_MAX_HEAD)
                     : up_h1_parse_response((const uint8_t *)s, strlen(s), NULL, &fm, fh, 16,
                                            UP_H1_DEFAULT_MAX_HEAD);
    if (rv != UP_OK) {
        fail_msg("\"%s\": rv %d (%s)", s, rv, fm.err_reason ? fm.err_reason : "-");
    }
    return &fm;
}

static void expect_req(const char *s, enum up_h1b_kind kind, uint64_t length)
{
    uint64_t got = 77;
    assert_int_equal(up_h1body_request(head(true, s), &got), kind);
    assert_int_equal(got, length);
    assert_int_equal(up_h1body_request(head(true, s), NULL), kind);
}

static void expect_resp(const char *s, bool head_req, bool connect_req, enum up_h1b_kind kind,
                        uint64_t length)
{
    uint64_t got = 77;
    assert_int_equal(up_h1body_response(head(false, s), head_req, connect_req, &got), kind);
    assert_int_equal(got, length);
    assert_int_equal(up_h1body_response(head(false, s), head_req, connect_req, NULL), kind);
}

static void test_h1body_request_framing(void **state)
{
    (void)state;
    expect_req("GET / HTTP/1.1\r\nHost: a\r\n\r\n", UP_H1B_NONE, 0);
    expect_req("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n", UP_H1B_LENGTH, 5);
    /* Content-Length: 0 keeps its kind; the framer is done before any byte. */
    expect_req("POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n", UP_H1B_LENGTH, 0);
    expect_req("POST / HTTP/1.1\r\nContent-Length: 9223372036854775807\r\n\r\n", UP_H1B_LENGTH,
               INT64_MAX);
    expect_req("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", UP_H1B_CHUNKED, 0);
    expect_req("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", UP_H1B_CHUNKED, 0);
    /* HTTP/1.0 and Connection: close change nothing: a request is never close-delimited. */
    expect_req("POST / HTTP/1.0\r\nContent-Length: 3\r\n\r\n", UP_H1B_LENGTH, 3);
    expect_req("POST / HTTP/1.0\r\n\r\n", UP_H1B_NONE, 0);
    expect_req("POST / HTTP/1.1\r\nConnection: close\r\n\r\n", UP_H1B_NONE, 0);
    expect_req("CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", UP_H1B_NONE, 0);
    uint64_t len = 5;
    assert_int_equal(up_h1body_request(NULL, &len), UP_H1B_NONE);
    assert_int_equal(len, 0);
}

static void test_h1body_response_framing(void **state)
{
    (void)state;
    const char *cl = "HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\n";
    const char *ch = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    expect_resp(cl, false, false, UP_H1B_LENGTH, 42);
    expect_resp(ch, false, false, UP_H1B_CHUNKED, 0);
    expect_resp("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false, false, UP_H1B_LENGTH, 0);
    /* Item 1: HEAD, 1xx, 204 and 304 have no body whatever the headers say. */
    expect_resp(cl, true, false, UP_H1B_NONE, 0);
    expect_resp(ch, true, false, UP_H1B_NONE, 0);
    expect_resp("HTTP/1.1 404 Not Found\r\n\r\n", true, false, UP_H1B_NONE, 0);
    expect_resp("HTTP/1.1 100 Continue\r\n\r\n", false, false, UP_H1B_NONE, 0);
    expect_resp("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\n\r\n",
                false, false, UP_H1B_NONE, 0);
    expect_resp("HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n", false, false, UP_H1B_NONE, 0);
    expect_resp("HTTP/1.1 199 x\r\nContent-Length: 5\r\n\r\n", false, false, UP_H1B_NONE, 0);
    expect_resp("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", false, false, UP_H1B_NONE,
                0);
    expect_resp("HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n", false, false, UP_H1B_NONE,
                0);
    expect_resp("HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n", false, false,
                UP_H1B_NONE, 0);
    /* Item 2: a 2xx to CONNECT is a tunnel; other answers to CONNECT are framed as usual. */
    expect_resp("HTTP/1.1 200 Connection Established\r\n\r\n", false, true, UP_H1B_CLOSE, 0);
    expect_resp(cl, false, true, UP_H1B_CLOSE, 0);
    expect_resp(ch, false, true, UP_H1B_CLOSE, 0);
    expect_resp("HTTP/1.1 299 x\r\n\r\n", false, true, UP_H1B_CLOSE, 0);
    expect_resp("HTTP/1.1 407 Proxy Auth\r\nContent-Length: 3\r\n\r\n", false, true, UP_H1B_LENGTH,
                3);
    expect_resp("HTTP/1.1 502 Bad Gateway\r\nTransfer-Encoding: chunked\r\n\r\n", false, true,
                UP_H1B_CHUNKED, 0);
    expect_resp("HTTP/1.1 100 Continue\r\n\r\n", false, true, UP_H1B_NONE, 0);
    /* HEAD wins over everything, CONNECT included (cannot both be true, but be defined). */
    expect_resp(cl, true, true, UP_H1B_NONE, 0);
    /* Item 8: no framing header, or a Transfer-Encoding not ending in chunked. */
    expect_resp("HTTP/1.1 200 OK\r\n\r\n", false, false, UP_H1B_CLOSE, 0);
    expect_resp("HTTP/1.0 200 OK\r\n\r\n", false, false, UP_H1B_CLOSE, 0);
    expect_resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", false, false, UP_H1B_CLOSE,
                0);
    expect_resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", false, false,
                UP_H1B_CLOSE, 0);
    assert_true(fm.conn_close);
    /* Connection: close with a length is still length-delimited. */
    expect_resp("HTTP/1.0 200 OK\r\nContent-Length: 7\r\n\r\n", false, false, UP_H1B_LENGTH, 7);
    expect_resp("HTTP/1.1 500 x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n", false,
                false, UP_H1B_CHUNKED, 0);
    expect_resp("HTTP/1.1 205 Reset Content\r\nContent-Length: 0\r\n\r\n", false, false,
                UP_H1B_LENGTH, 0);
    uint64_t len = 5;
    assert_int_equal(up_h1body_response(NULL, false, false, &len), UP_H1B_CLOSE);
    assert_int_equal(len, 0);
}

/* ---- a keep-alive connection ------------------------------------------------------------- */

/* Heads and bodies of pipelined requests found one after the other, the way the relay does:
 * parse a head, frame its body, skip the body, repeat. */
static void test_h1body_pipelined_requests(void **state)
{
    (void)state;
    static const char conn[] = "POST /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
                               "POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                               "3;x=y\r\nabc\r\n0\r\nT: 1\r\n\r\n"
                               "POST /c HTTP/1.1\r\nContent-Length: 0\r\n\r\n"
                               "GET /d HTTP/1.1\r\n\r\n";
    static const char *targets[] = {"/a", "/b", "/c", "/d"};
    static const size_t body_len[] = {5, 23, 0, 0};
    const uint8_t *p = (const uint8_t *)conn;
    size_t left = sizeof conn - 1;
    for (size_t i = 0; i < 4; i++) {
        struct up_h1_header h[8];
        struct up_h1_msg m;
        assert_int_equal(up_h1_parse_request(p, left, NULL, &m, h, 8, UP_H1_DEFAULT_MAX_HEAD),
                         UP_OK);
        assert_int_equal(m.target_len, strlen(targets[i]));
        assert_memory_equal(m.target, targets[i], m.target_len);
        p += m.head_len;
        left -= m.head_len;
        uint64_t length;
        enum up_h1b_kind kind = up_h1body_request(&m, &length);
        struct up_h1body b;
        up_h1body_init(&b, kind, length);
        /* One byte at a time, as a stuttering peer would send it. */
        size_t total = 0;
        bool done = false;
        for (size_t k = 0; !done; k++) {
            size_t used;
            assert_true(k <= left);
            size_t n = k < left ? 1 : 0;
            assert_int_equal(up_h1body_feed(&b, p + total, n, &used, &done), UP_OK);
            total += used;
        }
        assert_int_equal(total, body_len[i]);
        p += total;
        left -= total;
    }
    assert_int_equal(left, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_h1body_length_stops_at_boundary),
        cmocka_unit_test(test_h1body_length_large),
        cmocka_unit_test(test_h1body_length_zero_and_none),
        cmocka_unit_test(test_h1body_close_never_done),
        cmocka_unit_test(test_h1body_chunked_simple),
        cmocka_unit_test(test_h1body_chunked_multiple_chunks),
        cmocka_unit_test(test_h1body_chunked_hex_sizes),
        cmocka_unit_test(test_h1body_chunked_extensions),
        cmocka_unit_test(test_h1body_chunked_trailers),
        cmocka_unit_test(test_h1body_rejects_empty_chunk_size),
        cmocka_unit_test(test_h1body_rejects_invalid_chunk_size),
        cmocka_unit_test(test_h1body_rejects_chunk_size_overflow),
        cmocka_unit_test(test_h1body_rejects_bad_extension),
        cmocka_unit_test(test_h1body_rejects_missing_crlf_after_data),
        cmocka_unit_test(test_h1body_rejects_bare_lf),
        cmocka_unit_test(test_h1body_rejects_bare_cr),
        cmocka_unit_test(test_h1body_rejects_bad_trailers),
        cmocka_unit_test(test_h1body_chunk_line_limit),
        cmocka_unit_test(test_h1body_trailer_limit),
        cmocka_unit_test(test_h1body_error_is_sticky),
        cmocka_unit_test(test_h1body_invalid_arguments),
        cmocka_unit_test(test_h1body_init_defaults),
        cmocka_unit_test(test_h1body_request_framing),
        cmocka_unit_test(test_h1body_response_framing),
        cmocka_unit_test(test_h1body_pipelined_requests),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
