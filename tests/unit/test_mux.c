/* Unit tests for the mux codec (src/proto/mux.c). The wire vectors are written from the frame
 * layouts in docs/PROTOCOL.md; the examples there are copied from this file, so they are
 * checked here. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "base/alloc.h"
#include "feed.h"
#include "trace.h"
#include "hexbytes.h"
#include "proto/mux.h"

/* ---- trace runner ---------------------------------------------------------------------- */

static void tr_bytes(struct tr *t, const uint8_t *p, size_t n)
{
    tr_add(t, "'");
    for (size_t i = 0; i < n; i++) {
        if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '\'' && p[i] != '\\') {
            tr_add(t, "%c", p[i]);
        } else {
            tr_add(t, "\\x%02x", p[i]);
        }
    }
    tr_add(t, "'");
}

/* DATA arrives in slices whose boundaries depend on how the input was split. The trace merges
 * consecutive DATA events of one stream into one entry, so every split prints the same bytes.
 * Long runs are shown as length and checksum. */
#define PEEK_MAX 48
struct drun {
    uint32_t sid;
    size_t len;
    uint64_t a, b; /* Fletcher-style sums */
    uint8_t head[PEEK_MAX];
};

static void drun_feed(struct drun *d, uint32_t sid, const uint8_t *p, size_t n)
{
    d->sid = sid;
    for (size_t i = 0; i < n; i++) {
        if (d->len + i < PEEK_MAX) {
            d->head[d->len + i] = p[i];
        }
        d->a += p[i];
        d->b += d->a;
    }
    d->len += n;
}

static void drun_flush(struct tr *t, struct drun *d)
{
    if (d->len == 0) {
        return;
    }
    if (d->len <= PEEK_MAX) {
        tr_add(t, "D:%u:", d->sid);
        tr_bytes(t, d->head, d->len);
        tr_add(t, " ");
    } else {
        tr_add(t, "D:%u:#%zu#%016llx%016llx ", d->sid, d->len, (unsigned long long)d->a,
               (unsigned long long)d->b);
    }
    memset(d, 0, sizeof(*d));
}

struct mux_ctx {
    struct up_mux_cfg cfg;
};

/* feed_run_fn: parse the chunks in order, looping on each until NONE, and trace the events.
 * Also checks the call contract: *used within bounds, NONE only once a chunk is consumed,
 * DATA slices borrowed from the chunk and never empty, errors sticky with a reason. */
static void mux_trace_run(void *ud, const uint8_t *in, size_t len, const size_t *cuts, size_t ncuts,
                          char *trace, size_t cap)
{
    const struct mux_ctx *ctx = ud;
    struct tr t = {.s = trace, .cap = cap, .len = 0};
    struct up_mux_parser p;
    struct drun d;
    uint8_t *copy = up_malloc(len ? len : 1);
    assert_non_null(copy);
    if (len) {
        memcpy(copy, in, len);
    }
    trace[0] = '\0';
    memset(&d, 0, sizeof d);
    up_mux_parser_init(&p, &ctx->cfg);
    size_t start = 0, steps = 0;
    bool failed = false;
    for (size_t c = 0; c <= ncuts && !failed; c++) {
        size_t end = c < ncuts ? cuts[c] : len;
        size_t off = start;
        for (;;) {
            struct up_mux_ev ev;
            size_t used = (size_t)-1;
            int rv = up_mux_parse(&p, copy + off, end - off, &used, &ev);
            assert_true(used <= end - off);
            const uint8_t *at = copy + off;
            off += used;
            if (rv < 0) {
                assert_true(rv == UP_EPROTO || rv == UP_ELIMIT);
                /* A failing call presents no event, not even a half-filled one. */
                assert_int_equal(ev.kind, UP_MUX_EV_NONE);
                assert_int_equal(p.state, UP_MUX_ST_ERROR);
                assert_non_null(p.err_reason);
                assert_true(up_mux_parse(&p, copy + off, end - off, &used, &ev) < 0);
                assert_int_equal(used, 0);
                drun_flush(&t, &d);
                tr_add(&t, "ERR:%d:%s", rv, p.err_reason);
                failed = true;
                break;
            }
            assert_int_equal(rv, UP_OK);
            if (ev.kind == UP_MUX_EV_NONE) {
                assert_int_equal(off, end);
                break;
            }
            assert_true(++steps <= 4 * len + 16);
            if (ev.kind != UP_MUX_EV_DATA || (d.len && d.sid != ev.sid)) {
                drun_flush(&t, &d);
            }
            switch (ev.kind) {
            case UP_MUX_EV_DATA:
                assert_true(ev.len > 0);
                assert_true(ev.sid != 0);
                assert_true(ev.data >= at && ev.data + ev.len <= copy + off);
                drun_feed(&d, ev.sid, ev.data, ev.len);
                break;
            case UP_MUX_EV_FIN:
                assert_int_equal(ev.len, 0);
                tr_add(&t, "F:%u ", ev.sid);
                break;
            case UP_MUX_EV_OPEN:
                assert_true(ev.name_len > 0 && ev.name_len <= UP_MUX_MAX_NAME);
                assert_true(ev.len <= UP_MUX_MAX_META);
                tr_add(&t, "O:%u:%u:%.*s:", ev.sid, ev.window, (int)ev.name_len, ev.name);
                tr_bytes(&t, ev.data, ev.len);
                tr_add(&t, " ");
                break;
            case UP_MUX_EV_ACCEPT:
                tr_add(&t, "A:%u:%u ", ev.sid, ev.window);
                break;
            case UP_MUX_EV_CREDIT:
                assert_true(ev.window > 0 && ev.window <= UP_MUX_MAX_WINDOW);
                tr_add(&t, "C:%u:%u ", ev.sid, ev.window);
                break;
            case UP_MUX_EV_RST:
            case UP_MUX_EV_GOAWAY:
                assert_true(ev.len <= UP_MUX_MAX_REASON);
                tr_add(&t, "%s:%u:%u:", ev.kind == UP_MUX_EV_RST ? "R" : "G", ev.sid, ev.code);
                tr_bytes(&t, ev.data, ev.len);
                tr_add(&t, " ");
                break;
            case UP_MUX_EV_PING:
            case UP_MUX_EV_PONG:
                assert_int_equal(ev.sid, 0);
                tr_add(&t, "%s:", ev.kind == UP_MUX_EV_PING ? "P" : "Q");
                for (size_t i = 0; i < 8; i++) {
                    tr_add(&t, "%02x", ev.opaque[i]);
                }
                tr_add(&t, " ");
                break;
            default:
                fail_msg("unexpected event %d", (int)ev.kind);
            }
        }
        start = end;
    }
    if (!failed) {
        drun_flush(&t, &d);
        /* off is stale once a frame is done: show it only inside one. */
        tr_add(&t, "st=%d/%u/%u", (int)p.state, (unsigned)p.hdr_len,
               p.state == UP_MUX_ST_HDR ? 0u : (unsigned)p.off);
    }
    up_free(copy);
}

/* ---- helpers --------------------------------------------------------------------------- */

static size_t hex(const char *s, uint8_t *out, size_t cap)
{
    size_t n = hex_bytes(s, out, cap);
    assert_int_not_equal(n, (size_t)-1);
    return n;
}

/* Write a frame header with an arbitrary length field, then pl_len payload bytes. Written
 * byte by byte from the layout so the parser tests do not lean on the encoder. */
static size_t frm(uint8_t *dst, uint32_t len, uint8_t type, uint8_t flags, uint32_t sid,
                  const void *pl, size_t pl_len)
{
    dst[0] = (uint8_t)(len >> 16);
    dst[1] = (uint8_t)(len >> 8);
    dst[2] = (uint8_t)len;
    dst[3] = type;
    dst[4] = flags;
    dst[5] = (uint8_t)(sid >> 24);
    dst[6] = (uint8_t)(sid >> 16);
    dst[7] = (uint8_t)(sid >> 8);
    dst[8] = (uint8_t)sid;
    if (pl_len) {
        memcpy(dst + UP_MUX_HDR, pl, pl_len);
    }
    return UP_MUX_HDR + pl_len;
}

static void be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* An OPEN payload: window, name length, name, metadata. Returns the payload length. */
static size_t open_payload(uint8_t *dst, uint32_t window, uint8_t name_len, const char *name,
                           const void *meta, size_t meta_len)
{
    be32(dst, window);
    dst[4] = name_len;
    size_t n = strlen(name);
    memcpy(dst + 5, name, n);
    if (meta_len) {
        memcpy(dst + 5 + n, meta, meta_len);
    }
    return 5 + n + meta_len;
}

static struct mux_ctx ctx_of(bool odd, uint32_t max_frame)
{
    return (struct mux_ctx){.cfg = {.odd_ids = odd, .max_frame = max_frame}};
}

static void expect_trace(bool odd, uint32_t max_frame, const uint8_t *in, size_t len,
                         const char *want)
{
    struct mux_ctx ctx = ctx_of(odd, max_frame);
    assert_int_equal(feed_all_splits(mux_trace_run, &ctx, in, len, want), 0);
}

static void expect_trace_hex(bool odd, const char *h, const char *want)
{
    uint8_t in[1024];
    size_t n = hex(h, in, sizeof in);
    expect_trace(odd, 0, in, n, want);
}

/* The input must fail with err and reason (after the events in pre), under every split. */
static void expect_fail_pre(bool odd, uint32_t max_frame, const uint8_t *in, size_t len,
                            const char *pre, int err, const char *reason)
{
    char want[512];
    snprintf(want, sizeof want, "%sERR:%d:%s", pre, err, reason);
    expect_trace(odd, max_frame, in, len, want);
}

static void expect_fail(bool odd, const uint8_t *in, size_t len, int err, const char *reason)
{
    expect_fail_pre(odd, 0, in, len, "", err, reason);
}

static void expect_fail_hex(bool odd, const char *h, int err, const char *reason)
{
    uint8_t in[1024];
    size_t n = hex(h, in, sizeof in);
    expect_fail(odd, in, n, err, reason);
}

/* Parse in[0..len) with a fresh parser: the first call's result, event and *used. */
static int parse_once(bool odd, uint32_t max_frame, const uint8_t *in, size_t len,
                      struct up_mux_parser *p, struct up_mux_ev *ev, size_t *used)
{
    struct up_mux_cfg cfg = {.odd_ids = odd, .max_frame = max_frame};
    up_mux_parser_init(p, &cfg);
    return up_mux_parse(p, in, len, used, ev);
}

static void fill_pattern(uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        p[i] = (uint8_t)(i * 7 + 3);
    }
}

static void want_data(struct tr *t, uint32_t sid, const uint8_t *p, size_t n)
{
    struct drun d;
    memset(&d, 0, sizeof d);
    drun_feed(&d, sid, p, n);
    drun_flush(t, &d);
}

/* ---- wire vectors (docs/PROTOCOL.md examples) ------------------------------------------ */

/* Each frame type: exact bytes, the trace they parse to, and (below) the encoder output. */
#define V_OPEN_C                                                                                   \
    "00001d 01 00 00000001 00040000 03 737368"                                                     \
    "706565723d3139322e302e322e373a35313233340a"
#define V_OPEN_R                                                                                   \
    "00002c 01 00 00000002 00040000 03 737368"                                                     \
    "636c69656e743d3139382e35312e3130302e343a34303032320a7375623d616c6963650a"
#define V_ACCEPT "000004 02 00 00000001 00040000"
#define V_DATA "000005 00 00 00000001 68656c6c6f"
#define V_DATA_FIN "000003 00 01 00000001 627965"
#define V_FIN "000000 00 01 00000001"
#define V_CREDIT "000004 03 00 00000001 00020000"
#define V_RST "00000b 04 00 00000001 00000003 72656675736564"
#define V_PING "000008 05 00 00000000 0000000000bc614e"
#define V_PONG "000008 05 01 00000000 0000000000bc614e"
#define V_GOAWAY "00001b 06 00 00000000 00000007 0000000b 72656c6179207368757474696e6720646f776e"

static void test_mux_vectors_parse(void **state)
{
    (void)state;
    /* connect -> relay: OPEN stream 1 for "ssh", window 256 KiB, peer=192.0.2.7:51234 */
    expect_trace_hex(false, V_OPEN_C, "O:1:262144:ssh:'peer=192.0.2.7:51234\\x0a' st=0/0/0");
    /* relay -> agent: OPEN stream 2 with the client address and the token subject */
    expect_trace_hex(true, V_OPEN_R,
                     "O:2:262144:ssh:'client=198.51.100.4:40022\\x0asub=alice\\x0a' st=0/0/0");
    expect_trace_hex(true, V_ACCEPT, "A:1:262144 st=0/0/0");
    expect_trace_hex(true, V_DATA, "D:1:'hello' st=0/0/0");
    expect_trace_hex(true, V_DATA_FIN, "D:1:'bye' F:1 st=0/0/0");
    expect_trace_hex(true, V_FIN, "F:1 st=0/0/0");
    expect_trace_hex(true, V_CREDIT, "C:1:131072 st=0/0/0");
    expect_trace_hex(true, V_RST, "R:1:3:'refused' st=0/0/0");
    expect_trace_hex(true, V_PING, "P:0000000000bc614e st=0/0/0");
    expect_trace_hex(true, V_PONG, "Q:0000000000bc614e st=0/0/0");
    expect_trace_hex(false, V_GOAWAY, "G:7:11:'relay shutting down' st=0/0/0");
}

static void expect_bytes(const uint8_t *got, int n, const char *h)
{
    uint8_t want[256];
    size_t wn = hex(h, want, sizeof want);
    assert_int_equal(n, (int)wn);
    assert_memory_equal(got, want, wn);
}

static void test_mux_vectors_encode(void **state)
{
    (void)state;
    uint8_t f[256];
    static const uint8_t op[8] = {0, 0, 0, 0, 0, 0xbc, 0x61, 0x4e}; /* 12345678 us */
    const char *m1 = "peer=192.0.2.7:51234\n";
    const char *m2 = "client=198.51.100.4:40022\nsub=alice\n";
    expect_bytes(f,
                 up_mux_encode_open(f, sizeof f, 1, 262144, "ssh", (const uint8_t *)m1, strlen(m1)),
                 V_OPEN_C);
    expect_bytes(f,
                 up_mux_encode_open(f, sizeof f, 2, 262144, "ssh", (const uint8_t *)m2, strlen(m2)),
                 V_OPEN_R);
    expect_bytes(f, up_mux_encode_accept(f, sizeof f, 1, 262144), V_ACCEPT);
    up_mux_encode_hdr(f, 5, UP_MUX_DATA, 0, 1);
    memcpy(f + UP_MUX_HDR, "hello", 5);
    expect_bytes(f, UP_MUX_HDR + 5, V_DATA);
    up_mux_encode_hdr(f, 3, UP_MUX_DATA, UP_MUX_FLAG_FIN, 1);
    memcpy(f + UP_MUX_HDR, "bye", 3);
    expect_bytes(f, UP_MUX_HDR + 3, V_DATA_FIN);
    up_mux_encode_hdr(f, 0, UP_MUX_DATA, UP_MUX_FLAG_FIN, 1);
    expect_bytes(f, UP_MUX_HDR, V_FIN);
    expect_bytes(f, up_mux_encode_credit(f, sizeof f, 1, 131072), V_CREDIT);
    expect_bytes(f, up_mux_encode_rst(f, sizeof f, 1, UP_MUX_C_REFUSED, "refused"), V_RST);
    expect_bytes(f, up_mux_encode_ping(f, sizeof f, op, false), V_PING);
    expect_bytes(f, up_mux_encode_ping(f, sizeof f, op, true), V_PONG);
    expect_bytes(f, up_mux_encode_goaway(f, sizeof f, 7, UP_MUX_C_SHUTDOWN, "relay shutting down"),
                 V_GOAWAY);
    /* Header layout: 24-bit length, type, flags, 32-bit stream id, all big-endian. */
    up_mux_encode_hdr(f, 0xabcdef, 0x5a, 0xa5, 0x7edcba98);
    expect_bytes(f, UP_MUX_HDR, "abcdef 5a a5 7edcba98");
}

static void test_mux_parse_fields(void **state)
{
    (void)state;
    uint8_t in[128];
    struct up_mux_parser p;
    struct up_mux_ev ev;
    size_t used;
    size_t n = hex(V_OPEN_C, in, sizeof in);
    assert_int_equal(parse_once(false, 0, in, n, &p, &ev, &used), UP_OK);
    assert_int_equal(used, n);
    assert_int_equal(ev.kind, UP_MUX_EV_OPEN);
    assert_int_equal(ev.sid, 1);
    assert_int_equal(ev.window, 262144);
    assert_int_equal(ev.name_len, 3);
    assert_memory_equal(ev.name, "ssh", 3);
    assert_int_equal(ev.len, 21);
    assert_memory_equal(ev.data, "peer=192.0.2.7:51234\n", 21);

    /* DATA is a slice of the caller's input, not a copy. */
    n = hex(V_DATA, in, sizeof in);
    assert_int_equal(parse_once(true, 0, in, n, &p, &ev, &used), UP_OK);
    assert_int_equal(ev.kind, UP_MUX_EV_DATA);
    assert_ptr_equal(ev.data, in + UP_MUX_HDR);
    assert_int_equal(ev.len, 5);
    assert_int_equal(used, n);

    n = hex(V_RST, in, sizeof in);
    assert_int_equal(parse_once(true, 0, in, n, &p, &ev, &used), UP_OK);
    assert_int_equal(ev.kind, UP_MUX_EV_RST);
    assert_int_equal(ev.sid, 1);
    assert_int_equal(ev.code, UP_MUX_C_REFUSED);
    assert_int_equal(ev.len, 7);
    assert_memory_equal(ev.data, "refused", 7);

    n = hex(V_GOAWAY, in, sizeof in);
    assert_int_equal(parse_once(true, 0, in, n, &p, &ev, &used), UP_OK);
    assert_int_equal(ev.kind, UP_MUX_EV_GOAWAY);
    assert_int_equal(ev.sid, 7);
    assert_int_equal(ev.code, UP_MUX_C_SHUTDOWN);

    /* GOAWAY ignores the reserved bit of the last stream id. */
    n = hex("000008 06 00 00000000 80000009 00000000", in, sizeof in);
    assert_int_equal(parse_once(true, 0, in, n, &p, &ev, &used), UP_OK);
    assert_int_equal(ev.kind, UP_MUX_EV_GOAWAY);
    assert_int_equal(ev.sid, 9);
    assert_int_equal(ev.len, 0);
}

/* ---- call contract --------------------------------------------------------------------- */

static void test_mux_one_event_per_call(void **state)
{
    (void)state;
    uint8_t in[64];
    size_t n = hex(V_PING V_PONG, in, sizeof in);
    struct up_mux_parser p;
    struct up_mux_ev ev;
    size_t used = 99;
    assert_int_equal(parse_once(false, 0, in, n, &p, &ev, &used), UP_OK);
    assert_int_equal(ev.kind, UP_MUX_EV_PING);
    assert_int_equal(used, 17);
    assert_int_equal(up_mux_parse(&p, in + 17, n - 17, &used, &ev), UP_OK);
    assert_int_equal(ev.kind, UP_MUX_EV_PONG);
    assert_int_equal(used, 17);
    used = 99;
    assert_int_equal(up_mux_parse(&p, in + 34, 0, &used, &ev), UP_OK);
    assert_int_equal(ev.kind, UP_MUX_EV_NONE);
    assert_int_equal(used, 0);
}

static void test_mux_partial_input_consumed(void **state)
{
    (void)state;
    uint8_t in[64];
    size_t n = hex(V_CREDIT, in, sizeof in);
    struct up_mux_parser p;
    struct up_mux_ev ev;
    size_t used;
    /* Half a header, then the rest of the header, then the payload less one byte. */
    assert_int_equal(parse_once(false, 0, in, 4, &p, &ev, &used), UP_OK);
    assert_int_equal(ev.kind, UP_MUX_EV_NONE);
    assert_int_equal(used, 4);
    assert_int_equal(p.state, UP_MUX_ST_HDR);
    assert_int_equal(up_mux_parse(&p, in + 4, 5, &used, &ev), UP_OK);
    assert_int_equal(ev.kind, UP_MUX_EV_NONE);
    assert_int_equal(used, 5);
    assert_int_equal(p.state, UP_MUX_ST_CTRL);
    assert_int_equal(up_mux_parse(&p, in + 9, 3, &used, &ev), UP_OK);
    assert_int_equal(ev.kind, UP_MUX_EV_NONE);
    assert_int_equal(used, 3);
    assert_int_equal(up_mux_parse(&p, in + 12, n - 12, &used, &ev), UP_OK);
    assert_int_equal(ev.kind, UP_MUX_EV_CREDIT);
    assert_int_equal(ev.window, 131072);
    assert_int_equal(used, 1);
}

static void test_mux_error_is_sticky(void **state)
{
    (void)state;
    uint8_t in[64];
    size_t n = hex("000000 00 00 00000000" V_PING, in, sizeof in);
    struct up_mux_parser p;
    struct up_mux_ev ev;
    size_t used;
    assert_int_equal(parse_once(false, 0, in, n, &p, &ev, &used), UP_EPROTO);
    assert_int_equal(used, 9);
    assert_int_equal(p.state, UP_MUX_ST_ERROR);
    assert_string_equal(p.err_reason, "mux: DATA on stream 0");
    used = 99;
    assert_int_equal(up_mux_parse(&p, in + 9, n - 9, &used, &ev), UP_EPROTO);
    assert_int_equal(used, 0);
    assert_int_equal(ev.kind, UP_MUX_EV_NONE);
}

static void test_mux_corrupt_state_fails_closed(void **state)
{
    (void)state;
    /* on_control() has a default branch for a type it does not know; it is unreachable
     * through the wire (on_header filters types), so corrupt the state to prove it fails
     * closed instead of reading garbage. */
    struct up_mux_parser p;
    struct up_mux_cfg cfg = {.odd_ids = false};
    struct up_mux_ev ev;
    size_t used;
    uint8_t b = 0;
    up_mux_parser_init(&p, &cfg);
    p.state = UP_MUX_ST_CTRL;
    p.type = 0x09;
    p.len = 0;
    assert_int_equal(up_mux_parse(&p, &b, 0, &used, &ev), UP_EPROTO);
    assert_string_equal(p.err_reason, "mux: internal state");
    assert_int_equal(p.state, UP_MUX_ST_ERROR);
}

/* ---- splits of a multi-frame input ----------------------------------------------------- */

static void test_mux_sequence_every_split(void **state)
{
    (void)state;
    /* What a relay reads from a connect link: two OPENs, data on both, an unknown frame, a
     * PING, half-closes, CREDIT, RST, PONG and GOAWAY. */
    const char *h = V_OPEN_C                              /* O 1 */
        "00000b 01 00 00000003 00010000 03 776562 6d3d31" /* O 3 web m=1 */
        V_PING                                            /* P */
        "000002 00 00 00000001 6865"                      /* D 1 he */
        "000003 00 00 00000001 6c6c6f"                    /* D 1 llo (merges) */
        "000004 00 00 00000003 77656221"                  /* D 3 web! */
        "000005 0a 7f 00000005 0102030405"                /* unknown type 0x0a: skipped */
        V_DATA_FIN                                        /* D 1 bye FIN */
        "000004 03 00 00000003 00010000"                  /* C 3 65536 */
        "000000 00 02 00000003"                           /* empty DATA, no FIN: nothing */
        "000000 00 01 00000003"                           /* FIN 3 */
        "000004 04 00 00000005 0000000a"                  /* R 5 cancel, no reason */
        V_PONG                                            /* Q */
        "000008 06 00 00000000 00000003 00000000";        /* G 3 none */
    expect_trace_hex(false, h,
                     "O:1:262144:ssh:'peer=192.0.2.7:51234\\x0a' O:3:65536:web:'m=1' "
                     "P:0000000000bc614e D:1:'hello' D:3:'web!' D:1:'bye' F:1 C:3:65536 F:3 "
                     "R:5:10:'' Q:0000000000bc614e G:3:0:'' st=0/0/0");
}

static void test_mux_large_data_every_split(void **state)
{
    (void)state;
    /* Two DATA frames of 700 and 300 bytes on stream 2 around a CREDIT on stream 1, then a
     * partial header: slices merge per stream, the tail stays pending. */
    uint8_t in[1200], pl[700];
    char want[512];
    struct tr t = {.s = want, .cap = sizeof want, .len = 0};
    fill_pattern(pl, sizeof pl);
    size_t n = frm(in, 700, UP_MUX_DATA, 0, 2, pl, 700);
    n += hex("000004 03 00 00000001 00000100", in + n, sizeof in - n);
    n += frm(in + n, 300, UP_MUX_DATA, UP_MUX_FLAG_FIN, 2, pl, 300);
    n += hex("000004 03", in + n, sizeof in - n);
    want_data(&t, 2, pl, 700);
    tr_add(&t, "C:1:256 ");
    want_data(&t, 2, pl, 300);
    tr_add(&t, "F:2 st=0/4/0");
    expect_trace(true, 0, in, n, want);
}

static void test_mux_skip_data_out_of_band(void **state)
{
    (void)state;
    /* splice: DATA payload moved past the parser counts as delivered; what follows parses as
     * usual, and a FIN on the skipped frame comes on the next call. */
    uint8_t in[1200], pl[700];
    fill_pattern(pl, sizeof pl);
    size_t n = frm(in, 700, UP_MUX_DATA, 0, 2, pl, 700);
    size_t credit = n;
    n += hex("000004 03 00 00000001 00000100", in + n, sizeof in - n);
    size_t second = n;
    n += frm(in + n, 300, UP_MUX_DATA, UP_MUX_FLAG_FIN, 2, pl, 300);
    struct up_mux_parser p;
    struct up_mux_ev ev;
    size_t used;
    uint32_t sid = 99;
    assert_int_equal(parse_once(true, 0, in, UP_MUX_HDR + 100, &p, &ev, &used), UP_OK);
    assert_int_equal(ev.kind, UP_MUX_EV_DATA);
    assert_int_equal(ev.len, 100);
    assert_int_equal(up_mux_parser_data_left(&p, &sid), 600);
    assert_int_equal(sid, 2);
    up_mux_parser_skip(&p, 600);
    assert_int_equal(up_mux_parser_data_left(&p, &sid), 0);
    assert_int_equal(up_mux_parse(&p, in + credit, second - credit, &used, &ev), UP_OK);
    assert_int_equal(ev.kind, UP_MUX_EV_CREDIT);
    assert_int_equal(ev.sid, 1);
    assert_int_equal(ev.window, 256);
    assert_int_equal(up_mux_parser_data_left(&p, &sid), 0); /* not inside a DATA payload */
    assert_int_equal(up_mux_parse(&p, in + second, UP_MUX_HDR, &used, &ev), UP_OK);
    assert_int_equal(ev.kind, UP_MUX_EV_NONE);
    assert_int_equal(up_mux_parser_data_left(&p, &sid), 300);
    up_mux_parser_skip(&p, 1000); /* clamped */
    assert_int_equal(up_mux_parser_data_left(&p, &sid), 0);
    assert_int_equal(up_mux_parse(&p, in, 0, &used, &ev), UP_OK);
    assert_int_equal(ev.kind, UP_MUX_EV_FIN);
    assert_int_equal(ev.sid, 2);
    assert_int_equal(up_mux_parse(&p, in, 0, &used, &ev), UP_OK);
    assert_int_equal(ev.kind, UP_MUX_EV_NONE);
    /* Outside DATA, skip changes nothing: a control payload still parses. */
    assert_int_equal(parse_once(true, 0, in + credit, UP_MUX_HDR, &p, &ev, &used), UP_OK);
    up_mux_parser_skip(&p, 4);
    assert_int_equal(up_mux_parse(&p, in + credit + UP_MUX_HDR, 4, &used, &ev), UP_OK);
    assert_int_equal(ev.kind, UP_MUX_EV_CREDIT);
}

static void test_mux_partial_frame_pending(void **state)
{
    (void)state;
    /* Input ending inside a DATA or control payload leaves the same state under any split. */
    expect_trace_hex(true, "000005 00 00 00000001 686568", "D:1:'heh' st=1/0/3");
    expect_trace_hex(true, "000004 03 00 00000001 0001", "st=2/0/2");
    expect_trace_hex(true, "000004 09 00 00000001 0001", "st=3/0/2");
}

/* ---- FIN ------------------------------------------------------------------------------- */

static void test_mux_fin_flag(void **state)
{
    (void)state;
    /* FIN on non-empty DATA: the DATA event(s), then FIN. */
    expect_trace_hex(true, V_DATA_FIN, "D:1:'bye' F:1 st=0/0/0");
    /* FIN on empty DATA. */
    expect_trace_hex(true, V_FIN, "F:1 st=0/0/0");
    /* Empty DATA without FIN is nothing; other flag bits on DATA are ignored. */
    expect_trace_hex(true, "000000 00 00 00000001" V_PING, "P:0000000000bc614e st=0/0/0");
    expect_trace_hex(true, "000002 00 fe 00000001 6869", "D:1:'hi' st=0/0/0");
    expect_trace_hex(true, "000002 00 ff 00000001 6869", "D:1:'hi' F:1 st=0/0/0");

    /* The FIN of a frame whose payload was the last input byte comes on the next call,
     * even with no input. */
    uint8_t in[32];
    size_t n = hex(V_DATA_FIN, in, sizeof in);
    struct up_mux_parser p;
    struct up_mux_ev ev;
    size_t used;
    assert_int_equal(parse_once(true, 0, in, n, &p, &ev, &used), UP_OK);
    assert_int_equal(ev.kind, UP_MUX_EV_DATA);
    assert_int_equal(used, n);
    assert_int_equal(up_mux_parse(&p, in + n, 0, &used, &ev), UP_OK);
    assert_int_equal(ev.kind, UP_MUX_EV_FIN);
    assert_int_equal(ev.sid, 1);
    assert_int_equal(used, 0);
    assert_int_equal(up_mux_parse(&p, in + n, 0, &used, &ev), UP_OK);
    assert_int_equal(ev.kind, UP_MUX_EV_NONE);
}

/* ---- unknown types --------------------------------------------------------------------- */

static void test_mux_unknown_types_skipped(void **state)
{
    (void)state;
    /* Types 0x07..0xff are skipped whatever their flags, stream id or size (even above
     * max_frame and UP_MUX_MAX_CTRL), and parsing continues after them. */
    expect_trace_hex(true, "000000 07 00 00000000" V_PING, "P:0000000000bc614e st=0/0/0");
    expect_trace_hex(true, "000003 ff ff 00000004 aabbcc" V_DATA, "D:1:'hello' st=0/0/0");
    static uint8_t in[4096];
    static uint8_t junk[2000];
    memset(junk, 0x01, sizeof junk);
    size_t n = frm(in, sizeof junk, 0x42, 0, 1, junk, sizeof junk);
    n += hex(V_ACCEPT, in + n, sizeof in - n);
    expect_trace(true, 64, in, n, "A:1:262144 st=0/0/0");
    /* The reserved stream-id bit is checked before the type. */
    expect_fail_hex(true, "000000 42 00 80000001", UP_EPROTO, "mux: reserved stream id bit set");
}

/* ---- every error reason ---------------------------------------------------------------- */

static void test_mux_error_reserved_bit(void **state)
{
    (void)state;
    expect_fail_hex(true, "000001 00 00 80000001 00", UP_EPROTO, "mux: reserved stream id bit set");
    expect_fail_hex(true, "000008 05 00 80000000 0000000000000000", UP_EPROTO,
                    "mux: reserved stream id bit set");
}

static void test_mux_error_stream_zero(void **state)
{
    (void)state;
    expect_fail_hex(true, "000001 00 00 00000000 00", UP_EPROTO, "mux: DATA on stream 0");
    expect_fail_hex(true, "000000 00 01 00000000", UP_EPROTO, "mux: DATA on stream 0");
    /* OPEN, ACCEPT, CREDIT and RST belong to a stream. */
    expect_fail_hex(true, "000008 01 00 00000000 00040000 03 737368", UP_EPROTO,
                    "mux: stream frame on stream 0");
    expect_fail_hex(true, "000004 02 00 00000000 00040000", UP_EPROTO,
                    "mux: stream frame on stream 0");
    expect_fail_hex(true, "000004 03 00 00000000 00040000", UP_EPROTO,
                    "mux: stream frame on stream 0");
    expect_fail_hex(true, "000004 04 00 00000000 00000000", UP_EPROTO,
                    "mux: stream frame on stream 0");
}

static void test_mux_error_link_frame_on_stream(void **state)
{
    (void)state;
    expect_fail_hex(true, "000008 05 00 00000001 0000000000000000", UP_EPROTO,
                    "mux: link frame on a stream");
    expect_fail_hex(true, "000008 05 01 00000002 0000000000000000", UP_EPROTO,
                    "mux: link frame on a stream");
    expect_fail_hex(true, "000008 06 00 00000001 00000000 00000000", UP_EPROTO,
                    "mux: link frame on a stream");
}

static void test_mux_limit_data_frame(void **state)
{
    (void)state;
    static uint8_t in[300];
    uint8_t pl[101];
    char want[128];
    fill_pattern(pl, sizeof pl);
    /* max_frame 100: 99 and 100 bytes pass, 101 fails at the header. */
    size_t n = frm(in, 99, UP_MUX_DATA, 0, 1, pl, 99);
    expect_trace(true, 100, in, n, NULL);
    n = frm(in, 100, UP_MUX_DATA, UP_MUX_FLAG_FIN, 1, pl, 100);
    struct tr t = {.s = want, .cap = sizeof want, .len = 0};
    want_data(&t, 1, pl, 100);
    tr_add(&t, "F:1 st=0/0/0");
    expect_trace(true, 100, in, n, want);
    n = frm(in, 101, UP_MUX_DATA, 0, 1, pl, 101);
    expect_fail_pre(true, 100, in, n, "", UP_ELIMIT, "mux: DATA frame larger than max frame");
    /* The failing header comes after a frame that was fine: its events stay. */
    n = frm(in, 3, UP_MUX_DATA, 0, 1, "abc", 3);
    n += frm(in + n, 101, UP_MUX_DATA, 0, 1, pl, 101);
    expect_fail_pre(true, 100, in, n, "D:1:'abc' ", UP_ELIMIT,
                    "mux: DATA frame larger than max frame");

    /* The default (256 KiB, also for max_frame 0 or above 2^24-1): header-only checks. */
    const uint32_t lim = UP_MUX_DEFAULT_MAX_FRAME;
    const uint32_t cfgs[] = {0, 0x1000000u, UP_MUX_DEFAULT_MAX_FRAME};
    for (size_t i = 0; i < sizeof cfgs / sizeof cfgs[0]; i++) {
        struct up_mux_parser p;
        struct up_mux_ev ev;
        size_t used;
        n = frm(in, lim - 1, UP_MUX_DATA, 0, 1, NULL, 0);
        assert_int_equal(parse_once(true, cfgs[i], in, n, &p, &ev, &used), UP_OK);
        assert_int_equal(p.state, UP_MUX_ST_DATA);
        n = frm(in, lim, UP_MUX_DATA, 0, 1, NULL, 0);
        assert_int_equal(parse_once(true, cfgs[i], in, n, &p, &ev, &used), UP_OK);
        assert_int_equal(p.state, UP_MUX_ST_DATA);
        n = frm(in, lim + 1, UP_MUX_DATA, 0, 1, NULL, 0);
        assert_int_equal(parse_once(true, cfgs[i], in, n, &p, &ev, &used), UP_ELIMIT);
        assert_string_equal(p.err_reason, "mux: DATA frame larger than max frame");
    }
    /* A whole frame of exactly the default limit. */
    size_t big = UP_MUX_HDR + lim;
    uint8_t *b = up_malloc(big);
    assert_non_null(b);
    up_mux_encode_hdr(b, lim, UP_MUX_DATA, UP_MUX_FLAG_FIN, 3);
    fill_pattern(b + UP_MUX_HDR, lim);
    struct up_mux_parser p;
    struct up_mux_ev ev;
    size_t used;
    assert_int_equal(parse_once(true, 0, b, big, &p, &ev, &used), UP_OK);
    assert_int_equal(ev.kind, UP_MUX_EV_DATA);
    assert_int_equal(ev.len, lim);
    assert_int_equal(used, big);
    assert_int_equal(up_mux_parse(&p, b + big, 0, &used, &ev), UP_OK);
    assert_int_equal(ev.kind, UP_MUX_EV_FIN);
    up_free(b);
}

static void test_mux_limit_control_frame(void **state)
{
    (void)state;
    static uint8_t in[UP_MUX_HDR + UP_MUX_MAX_CTRL + 16];
    static uint8_t pl[UP_MUX_MAX_CTRL + 1];
    struct up_mux_parser p;
    struct up_mux_ev ev;
    size_t used;
    const uint8_t types[] = {UP_MUX_OPEN, UP_MUX_ACCEPT, UP_MUX_CREDIT, UP_MUX_RST};
    for (size_t i = 0; i < sizeof types; i++) {
        size_t n = frm(in, UP_MUX_MAX_CTRL - 1, types[i], 0, 1, NULL, 0);
        assert_int_equal(parse_once(false, 0, in, n, &p, &ev, &used), UP_OK);
        assert_int_equal(p.state, UP_MUX_ST_CTRL);
        n = frm(in, UP_MUX_MAX_CTRL, types[i], 0, 1, NULL, 0);
        assert_int_equal(parse_once(false, 0, in, n, &p, &ev, &used), UP_OK);
        assert_int_equal(p.state, UP_MUX_ST_CTRL);
        n = frm(in, UP_MUX_MAX_CTRL + 1, types[i], 0, 1, NULL, 0);
        expect_fail(false, in, n, UP_ELIMIT, "mux: control frame too large");
    }
    size_t n = frm(in, UP_MUX_MAX_CTRL + 1, UP_MUX_PING, 0, 0, NULL, 0);
    expect_fail(false, in, n, UP_ELIMIT, "mux: control frame too large");
    n = frm(in, UP_MUX_MAX_CTRL + 1, UP_MUX_GOAWAY, 0, 0, NULL, 0);
    expect_fail(false, in, n, UP_ELIMIT, "mux: control frame too large");
    /* A full 1536-byte OPEN passes the size check and fails on its metadata instead. */
    size_t pn = open_payload(pl, 1000, 1, "a", NULL, 0);
    memset(pl + pn, 'm', UP_MUX_MAX_CTRL - pn);
    n = frm(in, UP_MUX_MAX_CTRL, UP_MUX_OPEN, 0, 1, pl, UP_MUX_MAX_CTRL);
    expect_fail(false, in, n, UP_ELIMIT, "mux: OPEN metadata too large");
}

static void test_mux_error_open_short(void **state)
{
    (void)state;
    expect_fail_hex(false, "000000 01 00 00000001", UP_EPROTO, "mux: OPEN too short");
    expect_fail_hex(false, "000004 01 00 00000001 00040000", UP_EPROTO, "mux: OPEN too short");
    /* Five bytes is long enough, but the name is empty. */
    expect_fail_hex(false, "000005 01 00 00000001 00040000 00", UP_EPROTO,
                    "mux: OPEN with an invalid service name");
}

static void test_mux_error_open_parity(void **state)
{
    (void)state;
    /* The WebSocket client (odd_ids) opens odd ids: an odd OPEN reaching it is an error, and
     * an even OPEN reaching the relay. */
    expect_fail_hex(true, "000006 01 00 00000001 00040000 01 61", UP_EPROTO,
                    "mux: OPEN with our stream id parity");
    expect_fail_hex(false, "000006 01 00 00000002 00040000 01 61", UP_EPROTO,
                    "mux: OPEN with our stream id parity");
    expect_trace_hex(true, "000006 01 00 00000002 00040000 01 61", "O:2:262144:a:'' st=0/0/0");
    expect_trace_hex(false, "000006 01 00 7fffffff 00040000 01 61",
                     "O:2147483647:262144:a:'' st=0/0/0");
}

static void test_mux_open_name(void **state)
{
    (void)state;
    static uint8_t in[256], pl[200];
    char name[UP_MUX_MAX_NAME + 2];
    const char *bad = "mux: OPEN with an invalid service name";
    /* Length 62 and 63 pass, 64 fails. */
    for (size_t len = 62; len <= 64; len++) {
        memset(name, 'x', len);
        name[len] = '\0';
        size_t pn = open_payload(pl, 1, (uint8_t)len, name, "k=v\n", 4);
        size_t n = frm(in, (uint32_t)pn, UP_MUX_OPEN, 0, 1, pl, pn);
        if (len <= UP_MUX_MAX_NAME) {
            char want[200];
            snprintf(want, sizeof want, "O:1:1:%s:'k=v\\x0a' st=0/0/0", name);
            expect_trace(false, 0, in, n, want);
        } else {
            expect_fail(false, in, n, UP_EPROTO, bad);
        }
    }
    /* Every allowed class: [A-Za-z0-9._-]. */
    expect_trace_hex(false, "00000b 01 00 00000001 00000001 06 615a392e5f2d",
                     "O:1:1:aZ9._-:'' st=0/0/0");
    /* Forbidden bytes: space, '/', ':', '@', NUL, DEL, 0x80. */
    const char *bytes[] = {"20", "2f", "3a", "40", "00", "7f", "80"};
    for (size_t i = 0; i < sizeof bytes / sizeof bytes[0]; i++) {
        char h[128];
        snprintf(h, sizeof h, "000008 01 00 00000001 00000001 03 61%s62", bytes[i]);
        expect_fail_hex(false, h, UP_EPROTO, bad);
    }
    /* The name length points past the payload. */
    expect_fail_hex(false, "000008 01 00 00000001 00000001 04 616263", UP_EPROTO, bad);
    expect_fail_hex(false, "000008 01 00 00000001 00000001 ff 616263", UP_EPROTO, bad);
}

static void test_mux_limit_open_metadata(void **state)
{
    (void)state;
    static uint8_t in[2048], pl[1200], meta[UP_MUX_MAX_META + 1];
    memset(meta, 'a', sizeof meta);
    for (size_t len = UP_MUX_MAX_META - 1; len <= UP_MUX_MAX_META + 1; len++) {
        size_t pn = open_payload(pl, 4096, 3, "ssh", meta, len);
        size_t n = frm(in, (uint32_t)pn, UP_MUX_OPEN, 0, 1, pl, pn);
        if (len <= UP_MUX_MAX_META) {
            struct up_mux_parser p;
            struct up_mux_ev ev;
            size_t used;
            assert_int_equal(parse_once(false, 0, in, n, &p, &ev, &used), UP_OK);
            assert_int_equal(ev.kind, UP_MUX_EV_OPEN);
            assert_int_equal(ev.len, len);
            assert_memory_equal(ev.data, meta, len);
        } else {
            expect_fail(false, in, n, UP_ELIMIT, "mux: OPEN metadata too large");
        }
    }
}

static void test_mux_limit_windows(void **state)
{
    (void)state;
    /* 2^31-2 and 2^31-1 pass in OPEN, ACCEPT and CREDIT; 2^31 fails. */
    expect_trace_hex(false, "000006 01 00 00000001 7ffffffe 01 61", "O:1:2147483646:a:'' st=0/0/0");
    expect_trace_hex(false, "000006 01 00 00000001 7fffffff 01 61", "O:1:2147483647:a:'' st=0/0/0");
    expect_fail_hex(false, "000006 01 00 00000001 80000000 01 61", UP_EPROTO,
                    "mux: OPEN window above 2^31-1");
    expect_fail_hex(false, "000006 01 00 00000001 ffffffff 01 61", UP_EPROTO,
                    "mux: OPEN window above 2^31-1");
    expect_trace_hex(false, "000004 02 00 00000001 7ffffffe", "A:1:2147483646 st=0/0/0");
    expect_trace_hex(false, "000004 02 00 00000001 7fffffff", "A:1:2147483647 st=0/0/0");
    expect_fail_hex(false, "000004 02 00 00000001 80000000", UP_EPROTO, "mux: window above 2^31-1");
    expect_trace_hex(false, "000004 03 00 00000001 7ffffffe", "C:1:2147483646 st=0/0/0");
    expect_trace_hex(false, "000004 03 00 00000001 7fffffff", "C:1:2147483647 st=0/0/0");
    expect_fail_hex(false, "000004 03 00 00000001 80000000", UP_EPROTO, "mux: window above 2^31-1");
    /* OPEN and ACCEPT may announce a zero window; a zero CREDIT is meaningless. */
    expect_trace_hex(false, "000006 01 00 00000001 00000000 01 61", "O:1:0:a:'' st=0/0/0");
    expect_trace_hex(false, "000004 02 00 00000001 00000000", "A:1:0 st=0/0/0");
    expect_fail_hex(false, "000004 03 00 00000001 00000000", UP_EPROTO, "mux: CREDIT of zero");
    expect_trace_hex(false, "000004 03 00 00000001 00000001", "C:1:1 st=0/0/0");
}

static void test_mux_error_accept_credit_size(void **state)
{
    (void)state;
    const char *why = "mux: ACCEPT/CREDIT payload is not 4 bytes";
    expect_fail_hex(false, "000003 02 00 00000001 000100", UP_EPROTO, why);
    expect_fail_hex(false, "000005 02 00 00000001 0001000000", UP_EPROTO, why);
    expect_fail_hex(false, "000000 02 00 00000001", UP_EPROTO, why);
    expect_fail_hex(false, "000003 03 00 00000001 000100", UP_EPROTO, why);
    expect_fail_hex(false, "000005 03 00 00000001 0001000000", UP_EPROTO, why);
}

static void test_mux_error_rst_goaway_short(void **state)
{
    (void)state;
    expect_fail_hex(false, "000003 04 00 00000001 000000", UP_EPROTO, "mux: RST/GOAWAY too short");
    expect_fail_hex(false, "000000 04 00 00000001", UP_EPROTO, "mux: RST/GOAWAY too short");
    expect_trace_hex(false, "000004 04 00 00000001 00000000", "R:1:0:'' st=0/0/0");
    expect_fail_hex(false, "000003 06 00 00000000 000000", UP_EPROTO, "mux: RST/GOAWAY too short");
    expect_fail_hex(false, "000004 06 00 00000000 00000001", UP_EPROTO, "mux: GOAWAY too short");
    expect_fail_hex(false, "000007 06 00 00000000 00000001 000000", UP_EPROTO,
                    "mux: GOAWAY too short");
    expect_trace_hex(false, "000008 06 00 00000000 00000001 00000000", "G:1:0:'' st=0/0/0");
}

static void test_mux_limit_reason(void **state)
{
    (void)state;
    static uint8_t in[512], pl[300];
    char want[512];
    for (size_t len = UP_MUX_MAX_REASON - 1; len <= UP_MUX_MAX_REASON + 1; len++) {
        for (int goaway = 0; goaway <= 1; goaway++) {
            size_t pre = goaway ? 8 : 4;
            memset(pl, 0, pre);
            pl[pre - 1] = 6; /* code: limit */
            memset(pl + pre, 'r', len);
            size_t n = frm(in, (uint32_t)(pre + len), goaway ? UP_MUX_GOAWAY : UP_MUX_RST, 0,
                           goaway ? 0 : 1, pl, pre + len);
            if (len > UP_MUX_MAX_REASON) {
                expect_fail(false, in, n, UP_ELIMIT, "mux: reason too long");
                continue;
            }
            struct tr t = {.s = want, .cap = sizeof want, .len = 0};
            tr_add(&t, "%s:%s:6:", goaway ? "G" : "R", goaway ? "0" : "1");
            tr_bytes(&t, pl + pre, len);
            tr_add(&t, " st=0/0/0");
            expect_trace(false, 0, in, n, want);
        }
    }
}

static void test_mux_error_ping_size(void **state)
{
    (void)state;
    const char *why = "mux: PING payload is not 8 bytes";
    expect_fail_hex(false, "000007 05 00 00000000 00000000000000", UP_EPROTO, why);
    expect_fail_hex(false, "000009 05 00 00000000 000000000000000000", UP_EPROTO, why);
    expect_fail_hex(false, "000000 05 00 00000000", UP_EPROTO, why);
    expect_fail_hex(false, "000007 05 01 00000000 00000000000000", UP_EPROTO, why);
    /* Other PING flag bits are ignored; only ACK makes a PONG. */
    expect_trace_hex(false, "000008 05 fe 00000000 0102030405060708",
                     "P:0102030405060708 st=0/0/0");
}

/* ---- round trips ----------------------------------------------------------------------- */

/* Parse a whole frame with a fresh parser; it must give exactly one event and consume it all. */
static void parse_frame(bool odd, const uint8_t *f, int n, struct up_mux_parser *p,
                        struct up_mux_ev *ev)
{
    size_t used;
    assert_true(n > 0);
    assert_int_equal(parse_once(odd, 0, f, (size_t)n, p, ev, &used), UP_OK);
    assert_int_equal(used, (size_t)n);
    assert_int_not_equal(ev->kind, UP_MUX_EV_NONE);
}

static void test_mux_roundtrip_every_type(void **state)
{
    (void)state;
    static uint8_t f[UP_MUX_HDR + 5 + UP_MUX_MAX_NAME + UP_MUX_MAX_META];
    static uint8_t meta[UP_MUX_MAX_META];
    struct up_mux_parser p;
    struct up_mux_ev ev;
    char name[UP_MUX_MAX_NAME + 1];
    memset(name, 'n', UP_MUX_MAX_NAME);
    name[UP_MUX_MAX_NAME] = '\0';
    fill_pattern(meta, sizeof meta);

    /* OPEN at the largest name and metadata, and with neither metadata nor window. */
    parse_frame(
        false, f,
        up_mux_encode_open(f, sizeof f, 0x7fffffff, UP_MUX_MAX_WINDOW, name, meta, sizeof meta), &p,
        &ev);
    assert_int_equal(ev.kind, UP_MUX_EV_OPEN);
    assert_int_equal(ev.sid, 0x7fffffff);
    assert_int_equal(ev.window, UP_MUX_MAX_WINDOW);
    assert_int_equal(ev.name_len, UP_MUX_MAX_NAME);
    assert_memory_equal(ev.name, name, UP_MUX_MAX_NAME);
    assert_int_equal(ev.len, sizeof meta);
    assert_memory_equal(ev.data, meta, sizeof meta);
    parse_frame(true, f, up_mux_encode_open(f, sizeof f, 2, 0, "a", NULL, 0), &p, &ev);
    assert_int_equal(ev.kind, UP_MUX_EV_OPEN);
    assert_int_equal(ev.sid, 2);
    assert_int_equal(ev.window, 0);
    assert_int_equal(ev.len, 0);

    parse_frame(false, f, up_mux_encode_accept(f, sizeof f, 5, 12345), &p, &ev);
    assert_int_equal(ev.kind, UP_MUX_EV_ACCEPT);
    assert_int_equal(ev.sid, 5);
    assert_int_equal(ev.window, 12345);

    parse_frame(false, f, up_mux_encode_credit(f, sizeof f, 6, UP_MUX_MAX_WINDOW), &p, &ev);
    assert_int_equal(ev.kind, UP_MUX_EV_CREDIT);
    assert_int_equal(ev.sid, 6);
    assert_int_equal(ev.window, UP_MUX_MAX_WINDOW);

    parse_frame(false, f, up_mux_encode_rst(f, sizeof f, 9, UP_MUX_C_LINK_LOST, "gone"), &p, &ev);
    assert_int_equal(ev.kind, UP_MUX_EV_RST);
    assert_int_equal(ev.sid, 9);
    assert_int_equal(ev.code, UP_MUX_C_LINK_LOST);
    assert_int_equal(ev.len, 4);
    assert_memory_equal(ev.data, "gone", 4);
    parse_frame(false, f, up_mux_encode_rst(f, sizeof f, 9, 0xfffffffe, NULL), &p, &ev);
    assert_int_equal(ev.kind, UP_MUX_EV_RST);
    assert_int_equal(ev.code, 0xfffffffe);
    assert_int_equal(ev.len, 0);

    static const uint8_t op[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    parse_frame(false, f, up_mux_encode_ping(f, sizeof f, op, false), &p, &ev);
    assert_int_equal(ev.kind, UP_MUX_EV_PING);
    assert_memory_equal(ev.opaque, op, 8);
    parse_frame(false, f, up_mux_encode_ping(f, sizeof f, op, true), &p, &ev);
    assert_int_equal(ev.kind, UP_MUX_EV_PONG);
    assert_memory_equal(ev.opaque, op, 8);

    parse_frame(false, f, up_mux_encode_goaway(f, sizeof f, 0x7ffffffe, UP_MUX_C_PROTOCOL, "x"), &p,
                &ev);
    assert_int_equal(ev.kind, UP_MUX_EV_GOAWAY);
    assert_int_equal(ev.sid, 0x7ffffffe);
    assert_int_equal(ev.code, UP_MUX_C_PROTOCOL);
    assert_int_equal(ev.len, 1);
    assert_memory_equal(ev.data, "x", 1);

    /* DATA has no encoder of its own: the header encoder plus the payload. */
    up_mux_encode_hdr(f, 4, UP_MUX_DATA, 0, 11);
    memcpy(f + UP_MUX_HDR, "data", 4);
    parse_frame(false, f, UP_MUX_HDR + 4, &p, &ev);
    assert_int_equal(ev.kind, UP_MUX_EV_DATA);
    assert_int_equal(ev.sid, 11);
    assert_int_equal(ev.len, 4);
    assert_memory_equal(ev.data, "data", 4);
    up_mux_encode_hdr(f, 0, UP_MUX_DATA, UP_MUX_FLAG_FIN, 11);
    parse_frame(false, f, UP_MUX_HDR, &p, &ev);
    assert_int_equal(ev.kind, UP_MUX_EV_FIN);
    assert_int_equal(ev.sid, 11);
}

static void test_mux_encode_errors(void **state)
{
    (void)state;
    static uint8_t f[UP_MUX_HDR + 5 + UP_MUX_MAX_NAME + UP_MUX_MAX_META + 8];
    static uint8_t meta[UP_MUX_MAX_META + 1];
    static const uint8_t op[8] = {0};
    char longname[UP_MUX_MAX_NAME + 2];
    memset(longname, 'a', UP_MUX_MAX_NAME + 1);
    longname[UP_MUX_MAX_NAME + 1] = '\0';

    /* Bad arguments. */
    assert_int_equal(up_mux_encode_open(f, sizeof f, 1, 1, "", NULL, 0), UP_EINVAL);
    assert_int_equal(up_mux_encode_open(f, sizeof f, 1, 1, "a b", NULL, 0), UP_EINVAL);
    assert_int_equal(up_mux_encode_open(f, sizeof f, 1, 1, longname, NULL, 0), UP_EINVAL);
    assert_int_equal(up_mux_encode_open(f, sizeof f, 0, 1, "a", NULL, 0), UP_EINVAL);
    assert_int_equal(up_mux_encode_open(f, sizeof f, 1, 0x80000000u, "a", NULL, 0), UP_EINVAL);
    assert_int_equal(up_mux_encode_open(f, sizeof f, 1, 1, "a", meta, UP_MUX_MAX_META + 1),
                     UP_EINVAL);
    assert_int_equal(up_mux_encode_open(f, sizeof f, 1, 1, "a", meta, UP_MUX_MAX_META),
                     UP_MUX_HDR + 6 + UP_MUX_MAX_META);
    assert_int_equal(up_mux_encode_accept(f, sizeof f, 0, 1), UP_EINVAL);
    assert_int_equal(up_mux_encode_accept(f, sizeof f, 1, 0x80000000u), UP_EINVAL);
    assert_int_equal(up_mux_encode_accept(f, sizeof f, 1, 0), UP_MUX_HDR + 4);
    assert_int_equal(up_mux_encode_credit(f, sizeof f, 0, 1), UP_EINVAL);
    assert_int_equal(up_mux_encode_credit(f, sizeof f, 1, 0), UP_EINVAL);
    assert_int_equal(up_mux_encode_credit(f, sizeof f, 1, 0x80000000u), UP_EINVAL);
    assert_int_equal(up_mux_encode_rst(f, sizeof f, 0, 0, NULL), UP_EINVAL);

    /* Room: the exact size works, one byte less is UP_ELIMIT. */
    assert_int_equal(up_mux_encode_open(f, 13, 1, 1, "abc", NULL, 0), UP_ELIMIT);
    assert_int_equal(up_mux_encode_open(f, 17, 1, 1, "abc", NULL, 0), 17);
    assert_int_equal(up_mux_encode_open(f, 16, 1, 1, "abc", NULL, 0), UP_ELIMIT);
    assert_int_equal(up_mux_encode_accept(f, 13, 1, 1), 13);
    assert_int_equal(up_mux_encode_accept(f, 12, 1, 1), UP_ELIMIT);
    assert_int_equal(up_mux_encode_credit(f, 13, 1, 1), 13);
    assert_int_equal(up_mux_encode_credit(f, 12, 1, 1), UP_ELIMIT);
    assert_int_equal(up_mux_encode_rst(f, 15, 1, 1, "ab"), 15);
    assert_int_equal(up_mux_encode_rst(f, 14, 1, 1, "ab"), UP_ELIMIT);
    assert_int_equal(up_mux_encode_ping(f, 17, op, false), 17);
    assert_int_equal(up_mux_encode_ping(f, 16, op, false), UP_ELIMIT);
    assert_int_equal(up_mux_encode_goaway(f, 19, 1, 1, "ab"), 19);
    assert_int_equal(up_mux_encode_goaway(f, 18, 1, 1, "ab"), UP_ELIMIT);

    /* Reasons are cut at UP_MUX_MAX_REASON bytes so the frame always parses. */
    char reason[UP_MUX_MAX_REASON + 40];
    memset(reason, 'z', sizeof reason - 1);
    reason[sizeof reason - 1] = '\0';
    struct up_mux_parser p;
    struct up_mux_ev ev;
    parse_frame(false, f, up_mux_encode_rst(f, sizeof f, 1, 2, reason), &p, &ev);
    assert_int_equal(ev.kind, UP_MUX_EV_RST);
    assert_int_equal(ev.len, UP_MUX_MAX_REASON);
    parse_frame(false, f, up_mux_encode_goaway(f, sizeof f, 1, 2, reason), &p, &ev);
    assert_int_equal(ev.kind, UP_MUX_EV_GOAWAY);
    assert_int_equal(ev.len, UP_MUX_MAX_REASON);
    /* GOAWAY clears the reserved bit of last_sid. */
    expect_bytes(f, up_mux_encode_goaway(f, sizeof f, 0xffffffffu, 0, NULL),
                 "000008 06 00 00000000 7fffffff 00000000");
}

static void test_mux_code_names(void **state)
{
    (void)state;
    assert_string_equal(up_mux_code_name(UP_MUX_C_NONE), "none");
    assert_string_equal(up_mux_code_name(UP_MUX_C_REFUSED), "refused");
    assert_string_equal(up_mux_code_name(UP_MUX_C_LINK_LOST), "link-lost");
    assert_string_equal(up_mux_code_name(UP_MUX_C_INTERNAL), "internal-error");
    assert_string_equal(up_mux_code_name(UP_MUX_C_INTERNAL + 1), "unknown");
    assert_string_equal(up_mux_code_name(0xffffffffu), "unknown");
    for (uint32_t c = UP_MUX_C_NONE; c <= UP_MUX_C_INTERNAL; c++) {
        assert_non_null(up_mux_code_name(c));
        assert_string_not_equal(up_mux_code_name(c), "unknown");
    }
}

/* ---- flow control ---------------------------------------------------------------------- */

static void test_mux_flow_init_clamps(void **state)
{
    (void)state;
    struct up_mux_flow f;
    up_mux_flow_init(&f, 0xffffffffu, 0, 7, 100);
    assert_int_equal(f.recv_window, UP_MUX_MAX_WINDOW);
    assert_int_equal(f.max_window, UP_MUX_MAX_WINDOW);
    assert_int_equal(f.recv_avail, UP_MUX_MAX_WINDOW);
    assert_int_equal(f.send_avail, 7);
    assert_int_equal(f.last_grant_us, 100);
    up_mux_flow_init(&f, 1000, 10, 0, 0);
    assert_int_equal(f.max_window, 1000);
    up_mux_flow_init(&f, 1000, 0xffffffffu, 0, 0);
    assert_int_equal(f.max_window, UP_MUX_MAX_WINDOW);
    assert_int_equal(f.recv_pending, 0);
}

static void test_mux_flow_data_overrun(void **state)
{
    (void)state;
    struct up_mux_flow f;
    /* window - 1, then the last byte: exactly the window is fine; one more is not. */
    up_mux_flow_init(&f, 1000, 1000, 0, 0);
    assert_int_equal(up_mux_flow_on_data(&f, 999), UP_OK);
    assert_int_equal(f.recv_avail, 1);
    assert_int_equal(up_mux_flow_on_data(&f, 1), UP_OK);
    assert_int_equal(f.recv_avail, 0);
    assert_int_equal(up_mux_flow_on_data(&f, 0), UP_OK);
    assert_int_equal(up_mux_flow_on_data(&f, 1), UP_EPROTO);
    assert_int_equal(f.recv_avail, 0);
    /* In one piece. */
    up_mux_flow_init(&f, 1000, 1000, 0, 0);
    assert_int_equal(up_mux_flow_on_data(&f, 1000), UP_OK);
    up_mux_flow_init(&f, 1000, 1000, 0, 0);
    assert_int_equal(up_mux_flow_on_data(&f, 1001), UP_EPROTO);
    assert_int_equal(f.recv_avail, 1000);
    /* Sizes beyond 32 bits do not wrap. */
    assert_int_equal(up_mux_flow_on_data(&f, (size_t)1 << 40), UP_EPROTO);
    /* A zero window accepts nothing. */
    up_mux_flow_init(&f, 0, 0, 0, 0);
    assert_int_equal(up_mux_flow_on_data(&f, 1), UP_EPROTO);
}

static void test_mux_flow_credit_overflow(void **state)
{
    (void)state;
    struct up_mux_flow f;
    up_mux_flow_init(&f, 1000, 1000, UP_MUX_MAX_WINDOW - 10, 0);
    assert_int_equal(up_mux_flow_on_credit(&f, 9), UP_OK);
    assert_int_equal(f.send_avail, UP_MUX_MAX_WINDOW - 1);
    assert_int_equal(up_mux_flow_on_credit(&f, 1), UP_OK);
    assert_int_equal(f.send_avail, UP_MUX_MAX_WINDOW);
    assert_int_equal(up_mux_flow_on_credit(&f, 1), UP_EPROTO);
    assert_int_equal(f.send_avail, UP_MUX_MAX_WINDOW);
    /* From zero: the largest increment fits once, and again after the bytes were spent. */
    up_mux_flow_init(&f, 1000, 1000, 0, 0);
    assert_int_equal(up_mux_flow_on_credit(&f, UP_MUX_MAX_WINDOW), UP_OK);
    assert_int_equal(up_mux_flow_on_credit(&f, UP_MUX_MAX_WINDOW), UP_EPROTO);
    f.send_avail = 0;
    assert_int_equal(up_mux_flow_on_credit(&f, UP_MUX_MAX_WINDOW), UP_OK);
    assert_int_equal(up_mux_flow_on_credit(&f, 0xffffffffu), UP_EPROTO);
}

static void test_mux_flow_consumed_half_window(void **state)
{
    (void)state;
    struct up_mux_flow f;
    up_mux_flow_init(&f, 1000, 1000, 0, 0);
    assert_int_equal(up_mux_flow_on_data(&f, 1000), UP_OK);
    /* Below half a window: nothing to send yet. */
    assert_int_equal(up_mux_flow_consumed(&f, 499, 10, 0), 0);
    assert_int_equal(f.recv_pending, 499);
    assert_int_equal(f.recv_avail, 0);
    /* Reaching half returns everything pending. */
    assert_int_equal(up_mux_flow_consumed(&f, 1, 20, 0), 500);
    assert_int_equal(f.recv_pending, 0);
    assert_int_equal(f.recv_avail, 500);
    assert_int_equal(f.recv_window, 1000);
    assert_int_equal(f.last_grant_us, 20);
    /* One call crossing half returns all of it. */
    assert_int_equal(up_mux_flow_consumed(&f, 500, 30, 0), 500);
    assert_int_equal(f.recv_avail, 1000);
    /* The peer can spend exactly what was granted. */
    assert_int_equal(up_mux_flow_on_data(&f, 1000), UP_OK);
    assert_int_equal(up_mux_flow_on_data(&f, 1), UP_EPROTO);
    /* Odd window: half rounds down. */
    up_mux_flow_init(&f, 1001, 1001, 0, 0);
    assert_int_equal(up_mux_flow_on_data(&f, 1001), UP_OK);
    assert_int_equal(up_mux_flow_consumed(&f, 499, 0, 0), 0);
    assert_int_equal(up_mux_flow_consumed(&f, 1, 0, 0), 500);
}

static void test_mux_flow_autotune_grows(void **state)
{
    (void)state;
    struct up_mux_flow f;
    const uint64_t srtt = 100;
    /* Half a window within 4 smoothed RTTs of the last grant: the window doubles, and the
     * increment carries the growth. */
    up_mux_flow_init(&f, 1000, 4000, 0, 1000);
    assert_int_equal(up_mux_flow_on_data(&f, 500), UP_OK);
    assert_int_equal(up_mux_flow_consumed(&f, 500, 1000 + 4 * srtt - 1, srtt), 500 + 1000);
    assert_int_equal(f.recv_window, 2000);
    assert_int_equal(f.recv_avail, 2000);
    assert_int_equal(up_mux_flow_on_data(&f, 2000), UP_OK);
    assert_int_equal(up_mux_flow_consumed(&f, 999, 1500, srtt), 0);
    assert_int_equal(up_mux_flow_consumed(&f, 1, 1500, srtt), 1000 + 2000);
    assert_int_equal(f.recv_window, 4000);
    /* At max_window it stays there. */
    assert_int_equal(up_mux_flow_consumed(&f, 1000, 1501, srtt), 0);
    assert_int_equal(up_mux_flow_on_data(&f, 3000), UP_OK);
    assert_int_equal(up_mux_flow_on_data(&f, 1), UP_EPROTO);
    assert_int_equal(up_mux_flow_consumed(&f, 1000, 1502, srtt), 2000);
    assert_int_equal(f.recv_window, 4000);
    assert_int_equal(f.recv_avail, 2000);
    /* Doubling past the cap stops at the cap. */
    up_mux_flow_init(&f, 3000, 4000, 0, 0);
    assert_int_equal(up_mux_flow_on_data(&f, 1500), UP_OK);
    assert_int_equal(up_mux_flow_consumed(&f, 1500, 1, srtt), 1500 + 1000);
    assert_int_equal(f.recv_window, 4000);
    assert_int_equal(f.recv_avail, 4000);
    /* ...also at the protocol maximum, without wrapping. */
    up_mux_flow_init(&f, 0x40000000u, UP_MUX_MAX_WINDOW, 0, 0);
    assert_int_equal(up_mux_flow_on_data(&f, 0x20000000u), UP_OK);
    assert_int_equal(up_mux_flow_consumed(&f, 0x20000000u, 1, srtt),
                     0x20000000u + (UP_MUX_MAX_WINDOW - 0x40000000u));
    assert_int_equal(f.recv_window, UP_MUX_MAX_WINDOW);
    assert_int_equal(f.recv_avail, UP_MUX_MAX_WINDOW);
}

static void test_mux_flow_autotune_holds(void **state)
{
    (void)state;
    struct up_mux_flow f;
    const uint64_t srtt = 100;
    /* Exactly 4 RTTs is not faster than 4 RTTs. */
    up_mux_flow_init(&f, 1000, 4000, 0, 1000);
    assert_int_equal(up_mux_flow_on_data(&f, 500), UP_OK);
    assert_int_equal(up_mux_flow_consumed(&f, 500, 1000 + 4 * srtt, srtt), 500);
    assert_int_equal(f.recv_window, 1000);
    /* Slow grants. */
    assert_int_equal(up_mux_flow_on_data(&f, 500), UP_OK);
    assert_int_equal(up_mux_flow_consumed(&f, 500, 1000000, srtt), 500);
    assert_int_equal(f.recv_window, 1000);
    /* Unknown RTT. */
    up_mux_flow_init(&f, 1000, 4000, 0, 1000);
    assert_int_equal(up_mux_flow_on_data(&f, 500), UP_OK);
    assert_int_equal(up_mux_flow_consumed(&f, 500, 1001, 0), 500);
    assert_int_equal(f.recv_window, 1000);
    /* A clock that went backwards does not count as fast. */
    up_mux_flow_init(&f, 1000, 4000, 0, 1000);
    assert_int_equal(up_mux_flow_on_data(&f, 500), UP_OK);
    assert_int_equal(up_mux_flow_consumed(&f, 500, 999, srtt), 500);
    assert_int_equal(f.recv_window, 1000);
    /* max_window equal to the window: never grows. */
    up_mux_flow_init(&f, 1000, 1000, 0, 1000);
    assert_int_equal(up_mux_flow_on_data(&f, 500), UP_OK);
    assert_int_equal(up_mux_flow_consumed(&f, 500, 1001, srtt), 500);
    assert_int_equal(f.recv_window, 1000);
}

/* up_mux_meta_get on the C string m as a string, "(none)" when it returns false (and then
 * out must be untouched). */
static const char *meta(const char *m, const char *key, size_t cap)
{
    static char out[128];
    assert_true(cap <= sizeof out);
    memset(out, '#', sizeof out);
    if (!up_mux_meta_get((const uint8_t *)m, strlen(m), key, out, cap)) {
        assert_int_equal(out[0], '#');
        return "(none)";
    }
    assert_true(strlen(out) < cap);
    return out;
}

static void test_mux_meta_get_finds_keys(void **state)
{
    (void)state;
    /* What the relay sends an agent (src/relay/bridge.c, docs/PROTOCOL.md §5.2). */
    static const char m[] = "client=198.51.100.4:40022\nrelay=10.0.0.1:443\nsub=alice\n";
    assert_string_equal(meta(m, "client", 80), "198.51.100.4:40022");
    assert_string_equal(meta(m, "relay", 80), "10.0.0.1:443");
    assert_string_equal(meta(m, "sub", 80), "alice");
    /* The last line needs no newline; the first line with the key wins. */
    assert_string_equal(meta("a=1\nclient=[::1]:22", "client", 80), "[::1]:22");
    assert_string_equal(meta("client=1\nclient=2\n", "client", 80), "1");
    /* Empty values, empty lines, '=' in a value, bytes copied as they are. */
    assert_string_equal(meta("sub=\nclient=x\n", "sub", 80), "");
    assert_string_equal(meta("sub=", "sub", 80), "");
    assert_string_equal(meta("\n\n\nsub=a\n\n", "sub", 80), "a");
    assert_string_equal(meta("sub=a=b\n", "sub", 80), "a=b");
    assert_string_equal(meta("client==x\n", "client", 80), "=x");
    assert_string_equal(meta("sub=a\r\n", "sub", 80), "a\r");
    assert_string_equal(meta("sub= a \n", "sub", 80), " a ");
    /* A NUL in a value ends the text. */
    static const uint8_t nul[] = "sub=a\0b\nx=1";
    char out[16];
    assert_true(up_mux_meta_get(nul, sizeof nul - 1, "sub", out, sizeof out));
    assert_string_equal(out, "a");
    assert_true(up_mux_meta_get(nul, sizeof nul - 1, "x", out, sizeof out));
    assert_string_equal(out, "1");
}

static void test_mux_meta_get_absent(void **state)
{
    (void)state;
    static const char m[] = "client=1.2.3.4:5\nrelay=6.7.8.9:10\n";
    assert_string_equal(meta(m, "peer", 80), "(none)");
    assert_string_equal(meta("", "client", 80), "(none)");
    assert_string_equal(meta("\n\n", "client", 80), "(none)");
    char out[4] = "###";
    assert_false(up_mux_meta_get(NULL, 0, "client", out, sizeof out));
    assert_string_equal(out, "###");
    /* Keys are whole and case-sensitive: a prefix of a key, a key with more after it, and a
     * line without '=' do not match. */
    assert_string_equal(meta(m, "clien", 80), "(none)");
    assert_string_equal(meta(m, "client=", 80), "(none)");
    assert_string_equal(meta("clientx=1\nclient=2\n", "client", 80), "2");
    assert_string_equal(meta("xclient=1\n", "client", 80), "(none)");
    assert_string_equal(meta("CLIENT=1\n", "client", 80), "(none)");
    assert_string_equal(meta("client\n", "client", 80), "(none)");
    assert_string_equal(meta("client", "client", 80), "(none)");
    assert_string_equal(meta("cl=1\n", "client", 80), "(none)");
    assert_string_equal(meta("client 1\nclient=2", "client", 80), "2");
    /* A key is looked for only at the start of a line. */
    assert_string_equal(meta("a=client=1\n", "client", 80), "(none)");
    /* The empty key matches a line that starts with '='. */
    assert_string_equal(meta("a=1\n=2\n", "", 80), "2");
}

static void test_mux_meta_get_value_too_long(void **state)
{
    (void)state;
    /* A value of cap-1 bytes fits (with its NUL); cap and cap+1 do not. */
    assert_string_equal(meta("sub=abcd\n", "sub", 6), "abcd");
    assert_string_equal(meta("sub=abcde\n", "sub", 6), "abcde");
    assert_string_equal(meta("sub=abcdef\n", "sub", 6), "(none)");
    assert_string_equal(meta("sub=abcdefg", "sub", 6), "(none)");
    /* The empty value needs one byte; cap 0 holds nothing. */
    assert_string_equal(meta("sub=\n", "sub", 1), "");
    assert_string_equal(meta("sub=\n", "sub", 0), "(none)");
    /* A first value that does not fit is not passed over for a later one. */
    assert_string_equal(meta("sub=abcdefgh\nsub=ab\n", "sub", 6), "(none)");
    /* The largest metadata an OPEN carries, one value filling it. */
    static char big[UP_MUX_MAX_META + 1];
    memcpy(big, "sub=", 4);
    memset(big + 4, 'v', UP_MUX_MAX_META - 4);
    static char out[UP_MUX_MAX_META];
    assert_true(
        up_mux_meta_get((const uint8_t *)big, UP_MUX_MAX_META, "sub", out, UP_MUX_MAX_META - 3));
    assert_int_equal(strlen(out), UP_MUX_MAX_META - 4);
    assert_false(
        up_mux_meta_get((const uint8_t *)big, UP_MUX_MAX_META, "sub", out, UP_MUX_MAX_META - 4));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mux_vectors_parse),
        cmocka_unit_test(test_mux_vectors_encode),
        cmocka_unit_test(test_mux_parse_fields),
        cmocka_unit_test(test_mux_one_event_per_call),
        cmocka_unit_test(test_mux_partial_input_consumed),
        cmocka_unit_test(test_mux_error_is_sticky),
        cmocka_unit_test(test_mux_corrupt_state_fails_closed),
        cmocka_unit_test(test_mux_sequence_every_split),
        cmocka_unit_test(test_mux_large_data_every_split),
        cmocka_unit_test(test_mux_skip_data_out_of_band),
        cmocka_unit_test(test_mux_partial_frame_pending),
        cmocka_unit_test(test_mux_fin_flag),
        cmocka_unit_test(test_mux_unknown_types_skipped),
        cmocka_unit_test(test_mux_error_reserved_bit),
        cmocka_unit_test(test_mux_error_stream_zero),
        cmocka_unit_test(test_mux_error_link_frame_on_stream),
        cmocka_unit_test(test_mux_limit_data_frame),
        cmocka_unit_test(test_mux_limit_control_frame),
        cmocka_unit_test(test_mux_error_open_short),
        cmocka_unit_test(test_mux_error_open_parity),
        cmocka_unit_test(test_mux_open_name),
        cmocka_unit_test(test_mux_limit_open_metadata),
        cmocka_unit_test(test_mux_limit_windows),
        cmocka_unit_test(test_mux_error_accept_credit_size),
        cmocka_unit_test(test_mux_error_rst_goaway_short),
        cmocka_unit_test(test_mux_limit_reason),
        cmocka_unit_test(test_mux_error_ping_size),
        cmocka_unit_test(test_mux_roundtrip_every_type),
        cmocka_unit_test(test_mux_encode_errors),
        cmocka_unit_test(test_mux_code_names),
        cmocka_unit_test(test_mux_flow_init_clamps),
        cmocka_unit_test(test_mux_flow_data_overrun),
        cmocka_unit_test(test_mux_flow_credit_overflow),
        cmocka_unit_test(test_mux_flow_consumed_half_window),
        cmocka_unit_test(test_mux_flow_autotune_grows),
        cmocka_unit_test(test_mux_flow_autotune_holds),
        cmocka_unit_test(test_mux_meta_get_finds_keys),
        cmocka_unit_test(test_mux_meta_get_absent),
        cmocka_unit_test(test_mux_meta_get_value_too_long),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
