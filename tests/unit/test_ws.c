/* Unit tests for the RFC 6455 codec (src/proto/ws.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "feed.h"
#include "trace.h"
#include "hexbytes.h"
#include "proto/ws.h"

/* ---- trace runner ---------------------------------------------------------------------- */

/* Payload of one frame, merged over its DATA slices: the slicing depends on how the input
 * was split, the bytes must not. Long payloads are shown as length and checksum. */
#define PEEK_MAX 48
struct pending {
    size_t len;
    uint64_t a, b; /* Fletcher-style sums: cheap enough for 64 KiB under every split */
    uint8_t head[PEEK_MAX];
};

static void pend_reset(struct pending *d)
{
    memset(d, 0, sizeof(*d));
}

static void pend_feed(struct pending *d, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (d->len + i < PEEK_MAX) {
            d->head[d->len + i] = p[i];
        }
        d->a += p[i];
        d->b += d->a;
    }
    d->len += n;
}

static void tr_bytes(struct tr *t, const uint8_t *p, size_t n)
{
    tr_add(t, "'");
    for (size_t i = 0; i < n; i++) {
        if (p[i] >= 0x21 && p[i] < 0x7f && p[i] != '\'' && p[i] != '\\') {
            tr_add(t, "%c", p[i]);
        } else {
            tr_add(t, "\\x%02x", p[i]);
        }
    }
    tr_add(t, "'");
}

static void tr_pending(struct tr *t, const char *tag, const struct pending *d)
{
    if (d->len <= PEEK_MAX) {
        tr_add(t, "%s", tag);
        tr_bytes(t, d->head, d->len);
        tr_add(t, " ");
    } else {
        tr_add(t, "%s#%zu#%016llx%016llx ", tag, d->len, (unsigned long long)d->a,
               (unsigned long long)d->b);
    }
}

static char op_char(uint8_t op)
{
    return op == UP_WS_OP_TEXT ? 't' : op == UP_WS_OP_BINARY ? 'b' : '?';
}

struct ws_ctx {
    struct up_ws_cfg cfg;
};

/* feed_run_fn: parse the chunks in order, looping on each until NONE, and trace the events.
 * Also checks the call contract: *used within bounds, NONE only once a chunk is consumed,
 * DATA slices borrowed from the chunk, errors sticky. */
static void ws_trace_run(void *ud, const uint8_t *in, size_t len, const size_t *cuts, size_t ncuts,
                         char *trace, size_t cap)
{
    const struct ws_ctx *ctx = ud;
    struct tr t = {.s = trace, .cap = cap, .len = 0};
    struct up_ws_parser p;
    struct pending d;
    uint8_t *copy = up_malloc(len ? len : 1);
    assert_non_null(copy);
    if (len) {
        memcpy(copy, in, len);
    }
    trace[0] = '\0';
    pend_reset(&d);
    up_ws_parser_init(&p, &ctx->cfg);
    size_t start = 0, steps = 0;
    bool failed = false;
    for (size_t c = 0; c <= ncuts && !failed; c++) {
        size_t end = c < ncuts ? cuts[c] : len;
        size_t off = start;
        for (;;) {
            struct up_ws_ev ev;
            size_t used = (size_t)-1;
            int rv = up_ws_parse(&p, copy + off, end - off, &used, &ev);
            assert_true(used <= end - off);
            uint8_t *at = copy + off;
            off += used;
            if (rv < 0) {
                assert_int_equal(p.state, UP_WS_ST_ERROR);
                assert_non_null(p.err_reason);
                assert_int_equal(rv, up_ws_parse(&p, copy + off, end - off, &used, &ev));
                assert_int_equal(used, 0);
                /* The valid prefix of a failing slice depends on the split: drop it. */
                tr_add(&t, "ERR:%d:%u:%s ", rv, p.close_code, p.err_reason);
                failed = true;
                break;
            }
            assert_int_equal(rv, UP_OK);
            if (ev.kind == UP_WS_EV_NONE) {
                assert_int_equal(off, end);
                break;
            }
            assert_true(++steps <= 4 * len + 16);
            switch (ev.kind) {
            case UP_WS_EV_BEGIN:
                assert_int_equal(d.len, 0);
                tr_add(&t, "B:%c%c%c:%llu ", op_char(ev.opcode), ev.fin ? 'F' : '-',
                       ev.first ? '1' : '-', (unsigned long long)ev.frame_len);
                break;
            case UP_WS_EV_DATA:
                assert_true(ev.len > 0);
                assert_true(ev.data >= at && ev.data + ev.len <= copy + off);
                pend_feed(&d, ev.data, ev.len);
                break;
            case UP_WS_EV_END:
                tr_pending(&t, "D", &d);
                pend_reset(&d);
                tr_add(&t, "E:%c%c ", op_char(ev.opcode), ev.fin ? 'F' : '-');
                break;
            case UP_WS_EV_PING:
            case UP_WS_EV_PONG:
                assert_true(ev.len <= UP_WS_MAX_CONTROL);
                tr_add(&t, "%s", ev.kind == UP_WS_EV_PING ? "PI:" : "PO:");
                tr_bytes(&t, ev.data, ev.len);
                tr_add(&t, " ");
                break;
            case UP_WS_EV_CLOSE:
                tr_add(&t, "C:%u:", ev.close_code);
                tr_bytes(&t, ev.data, ev.len);
                tr_add(&t, " ");
                break;
            default:
                fail_msg("unexpected event %d", (int)ev.kind);
            }
        }
        start = end;
    }
    if (!failed && d.len) {
        tr_pending(&t, "d", &d);
    }
    tr_add(&t, "st=%d", (int)p.state);
    up_free(copy);
}

/* ---- helpers --------------------------------------------------------------------------- */

static struct up_ws_cfg cfg_of(enum up_ws_role role)
{
    return (struct up_ws_cfg){
        .role = role,
        .max_frame_bytes = 1u << 20,
        .max_message_bytes = 1u << 22,
        .validate_utf8 = true,
    };
}

static size_t hex(const char *s, uint8_t *out, size_t cap)
{
    size_t n = hex_bytes(s, out, cap);
    assert_int_not_equal(n, (size_t)-1);
    return n;
}

static void expect_trace(const struct up_ws_cfg *cfg, const uint8_t *in, size_t len,
                         const char *want)
{
    struct ws_ctx ctx = {.cfg = *cfg};
    assert_int_equal(feed_all_splits(ws_trace_run, &ctx, in, len, want), 0);
}

static void expect_trace_hex(const struct up_ws_cfg *cfg, const char *h, const char *want)
{
    uint8_t in[1024];
    size_t n = hex(h, in, sizeof in);
    expect_trace(cfg, in, n, want);
}

/* Parse a whole buffer, looping until NONE or an error. */
static int parse_whole(struct up_ws_parser *p, uint8_t *in, size_t len)
{
    size_t off = 0;
    for (;;) {
        struct up_ws_ev ev;
        size_t used;
        int rv = up_ws_parse(p, in + off, len - off, &used, &ev);
        off += used;
        if (rv < 0 || ev.kind == UP_WS_EV_NONE) {
            return rv;
        }
    }
}

/* The input must fail with err, close code and reason, identically under every split. */
static void expect_fail(const struct up_ws_cfg *cfg, const uint8_t *in, size_t len, int err,
                        uint16_t code, const char *reason)
{
    struct ws_ctx ctx = {.cfg = *cfg};
    assert_int_equal(feed_all_splits(ws_trace_run, &ctx, in, len, NULL), 0);

    uint8_t *copy = up_malloc(len ? len : 1);
    assert_non_null(copy);
    if (len) {
        memcpy(copy, in, len);
    }
    struct up_ws_parser p;
    up_ws_parser_init(&p, cfg);
    int rv = parse_whole(&p, copy, len);
    up_free(copy);
    assert_int_equal(rv, err);
    assert_int_equal(p.close_code, code);
    assert_string_equal(p.err_reason, reason);
    assert_int_equal(p.state, UP_WS_ST_ERROR);
}

static void expect_fail_hex(const struct up_ws_cfg *cfg, const char *h, int err, uint16_t code,
                            const char *reason)
{
    uint8_t in[1024];
    size_t n = hex(h, in, sizeof in);
    expect_fail(cfg, in, n, err, code, reason);
}

#define EPROTO_1002(cfg, h, reason) expect_fail_hex(cfg, h, UP_EPROTO, 1002, reason)

/* ---- RFC 6455 §5.7 vectors ------------------------------------------------------------- */

static void test_ws_rfc_unmasked_hello(void **state)
{
    (void)state;
    /* RFC 6455 §5.7: a single-frame unmasked text message */
    struct up_ws_cfg cfg = cfg_of(UP_WS_CLIENT);
    expect_trace_hex(&cfg, "81 05 48 65 6c 6c 6f", "B:tF1:5 D'Hello' E:tF st=0");
}

static void test_ws_rfc_masked_hello(void **state)
{
    (void)state;
    /* RFC 6455 §5.7: a single-frame masked text message */
    struct up_ws_cfg cfg = cfg_of(UP_WS_SERVER);
    expect_trace_hex(&cfg, "81 85 37 fa 21 3d 7f 9f 4d 51 58", "B:tF1:5 D'Hello' E:tF st=0");
}

static void test_ws_rfc_fragmented_hello(void **state)
{
    (void)state;
    /* RFC 6455 §5.7: a fragmented unmasked text message */
    struct up_ws_cfg cfg = cfg_of(UP_WS_CLIENT);
    expect_trace_hex(&cfg, "01 03 48 65 6c 80 02 6c 6f",
                     "B:t-1:3 D'Hel' E:t- B:tF-:2 D'lo' E:tF st=0");
}

static void test_ws_rfc_ping_pong(void **state)
{
    (void)state;
    /* RFC 6455 §5.7: unmasked ping, masked pong, both "Hello" */
    struct up_ws_cfg client = cfg_of(UP_WS_CLIENT);
    struct up_ws_cfg server = cfg_of(UP_WS_SERVER);
    expect_trace_hex(&client, "89 05 48 65 6c 6c 6f", "PI:'Hello' st=0");
    expect_trace_hex(&server, "8a 85 37 fa 21 3d 7f 9f 4d 51 58", "PO:'Hello' st=0");
}

static void fill_pattern(uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        p[i] = (uint8_t)(i * 7 + 3);
    }
}

static void want_data(char *want, size_t cap, const char *pre, const uint8_t *p, size_t n,
                      const char *post)
{
    struct tr t = {.s = want, .cap = cap, .len = 0};
    struct pending d;
    pend_reset(&d);
    pend_feed(&d, p, n);
    tr_add(&t, "%s", pre);
    tr_pending(&t, "D", &d);
    tr_add(&t, "%s", post);
}

static void test_ws_rfc_binary_256(void **state)
{
    (void)state;
    /* RFC 6455 §5.7: 256 bytes binary message in a single unmasked frame: 7e 01 00 */
    uint8_t in[4 + 256];
    char want[256];
    size_t n = hex("82 7e 01 00", in, sizeof in);
    fill_pattern(in + n, 256);
    want_data(want, sizeof want, "B:bF1:256 ", in + n, 256, "E:bF st=0");
    struct up_ws_cfg cfg = cfg_of(UP_WS_CLIENT);
    expect_trace(&cfg, in, sizeof in, want);
}

static void test_ws_rfc_binary_64k(void **state)
{
    (void)state;
    /* RFC 6455 §5.7: 64 KiB binary message in a single unmasked frame: 7f 00..01 00 00 */
    size_t len = 10 + 65536;
    uint8_t *in = up_malloc(len);
    char want[256];
    assert_non_null(in);
    size_t n = hex("82 7f 00 00 00 00 00 01 00 00", in, len);
    assert_int_equal(n, 10);
    fill_pattern(in + n, 65536);
    want_data(want, sizeof want, "B:bF1:65536 ", in + n, 65536, "E:bF st=0");
    struct up_ws_cfg cfg = cfg_of(UP_WS_CLIENT);
    expect_trace(&cfg, in, len, want);
    up_free(in);
}

static void test_ws_rfc_encode_vectors(void **state)
{
    (void)state;
    /* RFC 6455 §5.7, produced by the writers */
    static const uint8_t mask[4] = {0x37, 0xfa, 0x21, 0x3d};
    struct {
        uint8_t opcode;
        bool fin;
        const char *payload;
        const uint8_t *mask;
        const char *want;
    } v[] = {
        {UP_WS_OP_TEXT, true, "Hello", NULL, "81 05 48 65 6c 6c 6f"},
        {UP_WS_OP_TEXT, true, "Hello", mask, "81 85 37 fa 21 3d 7f 9f 4d 51 58"},
        {UP_WS_OP_TEXT, false, "Hel", NULL, "01 03 48 65 6c"},
        {UP_WS_OP_CONT, true, "lo", NULL, "80 02 6c 6f"},
        {UP_WS_OP_PING, true, "Hello", NULL, "89 05 48 65 6c 6c 6f"},
        {UP_WS_OP_PONG, true, "Hello", mask, "8a 85 37 fa 21 3d 7f 9f 4d 51 58"},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        struct up_buf out;
        uint8_t want[64];
        size_t n = hex(v[i].want, want, sizeof want);
        up_buf_init(&out);
        assert_int_equal(up_ws_write_frame(&out, 4096, v[i].opcode, v[i].fin,
                                           (const uint8_t *)v[i].payload, strlen(v[i].payload),
                                           v[i].mask),
                         UP_OK);
        assert_int_equal(up_buf_len(&out), n);
        assert_memory_equal(up_buf_rptr(&out), want, n);
        up_buf_fini(&out);
    }
    uint8_t hdr[UP_WS_MAX_HEADER], want[16];
    size_t n = hex("82 7e 01 00", want, sizeof want);
    assert_int_equal(up_ws_encode_header(hdr, UP_WS_OP_BINARY, true, 256, NULL), n);
    assert_memory_equal(hdr, want, n);
    n = hex("82 7f 00 00 00 00 00 01 00 00", want, sizeof want);
    assert_int_equal(up_ws_encode_header(hdr, UP_WS_OP_BINARY, true, 65536, NULL), n);
    assert_memory_equal(hdr, want, n);
}

/* ---- framing --------------------------------------------------------------------------- */

static void test_ws_empty_data_frame_begin_end(void **state)
{
    (void)state;
    struct up_ws_cfg cfg = cfg_of(UP_WS_CLIENT);
    expect_trace_hex(&cfg, "81 00", "B:tF1:0 D'' E:tF st=0");
    expect_trace_hex(&cfg, "02 00 80 00", "B:b-1:0 D'' E:b- B:bF-:0 D'' E:bF st=0");
    struct up_ws_cfg srv = cfg_of(UP_WS_SERVER);
    expect_trace_hex(&srv, "82 80 01 02 03 04", "B:bF1:0 D'' E:bF st=0");
}

static void test_ws_end_pending_after_last_byte(void **state)
{
    (void)state;
    /* The END of a frame whose payload was the last input byte comes on the next call, even
     * with no input. */
    struct up_ws_cfg cfg = cfg_of(UP_WS_CLIENT);
    struct up_ws_parser p;
    struct up_ws_ev ev;
    size_t used;
    uint8_t in[] = {0x82, 0x01, 0xaa};
    up_ws_parser_init(&p, &cfg);
    assert_int_equal(up_ws_parse(&p, in, 3, &used, &ev), UP_OK);
    assert_int_equal(ev.kind, UP_WS_EV_BEGIN);
    assert_int_equal(used, 2);
    assert_int_equal(ev.frame_len, 1);
    assert_true(ev.first && ev.fin);
    assert_int_equal(up_ws_parse(&p, in + 2, 1, &used, &ev), UP_OK);
    assert_int_equal(ev.kind, UP_WS_EV_DATA);
    assert_int_equal(used, 1);
    assert_ptr_equal(ev.data, in + 2);
    assert_int_equal(up_ws_parse(&p, NULL, 0, &used, &ev), UP_OK);
    assert_int_equal(ev.kind, UP_WS_EV_END);
    assert_int_equal(ev.opcode, UP_WS_OP_BINARY);
    assert_int_equal(used, 0);
    assert_int_equal(up_ws_parse(&p, NULL, 0, &used, &ev), UP_OK);
    assert_int_equal(ev.kind, UP_WS_EV_NONE);
    assert_int_equal(p.state, UP_WS_ST_HDR);
}

static void test_ws_skip_payload_out_of_band(void **state)
{
    (void)state;
    /* splice: the caller moves payload past the parser; the parser counts it as delivered and
     * reports the frame's END, then parses the next frame as usual. */
    struct up_ws_cfg cfg = cfg_of(UP_WS_CLIENT);
    struct up_ws_parser p;
    struct up_ws_ev ev;
    size_t used;
    uint8_t in[] = {0x82, 0x7e, 0x01, 0x00, 0xaa, 0xbb, 0x82, 0x02, 0xcc, 0xdd};
    up_ws_parser_init(&p, &cfg);
    assert_int_equal(up_ws_parser_payload_left(&p), 0);
    assert_int_equal(up_ws_parse(&p, in, 6, &used, &ev), UP_OK);
    assert_int_equal(ev.kind, UP_WS_EV_BEGIN);
    assert_int_equal(ev.frame_len, 256);
    assert_int_equal(up_ws_parser_payload_left(&p), 256);
    assert_int_equal(up_ws_parse(&p, in + used, 6 - used, &used, &ev), UP_OK);
    assert_int_equal(ev.kind, UP_WS_EV_DATA);
    assert_int_equal(ev.len, 2);
    assert_int_equal(up_ws_parser_payload_left(&p), 254);
    up_ws_parser_skip(&p, 200);
    assert_int_equal(up_ws_parser_payload_left(&p), 54);
    assert_int_equal(up_ws_parse(&p, in, 0, &used, &ev), UP_OK);
    assert_int_equal(ev.kind, UP_WS_EV_NONE);
    up_ws_parser_skip(&p, 1000); /* clamped to what is left */
    assert_int_equal(up_ws_parser_payload_left(&p), 0);
    assert_int_equal(up_ws_parse(&p, in, 0, &used, &ev), UP_OK);
    assert_int_equal(ev.kind, UP_WS_EV_END);
    assert_true(ev.fin);
    assert_int_equal(up_ws_parse(&p, in + 6, 4, &used, &ev), UP_OK);
    assert_int_equal(ev.kind, UP_WS_EV_BEGIN);
    assert_int_equal(ev.frame_len, 2);
    assert_int_equal(up_ws_parse(&p, in + 6 + used, 4 - used, &used, &ev), UP_OK);
    assert_int_equal(ev.kind, UP_WS_EV_DATA);
    assert_memory_equal(ev.data, "\xcc\xdd", 2);

    /* Never offered: masked frames (the bytes need unmasking), text (UTF-8 checks), control
     * frames, compressed messages. */
    struct up_ws_cfg srv = cfg_of(UP_WS_SERVER);
    uint8_t masked[] = {0x82, 0x82, 1, 2, 3, 4, 0, 0};
    up_ws_parser_init(&p, &srv);
    assert_int_equal(up_ws_parse(&p, masked, sizeof masked, &used, &ev), UP_OK);
    assert_int_equal(ev.kind, UP_WS_EV_BEGIN);
    assert_int_equal(up_ws_parser_payload_left(&p), 0);
    uint8_t text[] = {0x81, 0x02, 'h', 'i'};
    up_ws_parser_init(&p, &cfg);
    assert_int_equal(up_ws_parse(&p, text, sizeof text, &used, &ev), UP_OK);
    assert_int_equal(ev.kind, UP_WS_EV_BEGIN);
    assert_int_equal(up_ws_parser_payload_left(&p), 0);
    up_ws_parser_skip(&p, 2); /* a no-op where nothing may be skipped */
    assert_int_equal(up_ws_parse(&p, text + used, sizeof text - used, &used, &ev), UP_OK);
    assert_int_equal(ev.kind, UP_WS_EV_DATA);
    assert_int_equal(ev.len, 2);
    uint8_t ping[] = {0x89, 0x02, 'h', 'i'};
    up_ws_parser_init(&p, &cfg);
    assert_int_equal(up_ws_parse(&p, ping, 2, &used, &ev), UP_OK);
    assert_int_equal(up_ws_parser_payload_left(&p), 0);
    struct up_ws_cfg pmd = cfg_of(UP_WS_CLIENT);
    pmd.permessage_deflate = true;
    uint8_t z[] = {0xc2, 0x02, 0x00, 0x00};
    up_ws_parser_init(&p, &pmd);
    assert_int_equal(up_ws_parse(&p, z, sizeof z, &used, &ev), UP_OK);
    assert_int_equal(ev.kind, UP_WS_EV_BEGIN);
    assert_true(ev.compressed);
    assert_int_equal(up_ws_parser_payload_left(&p), 0);
}

static void test_ws_payload_unmasked_in_place(void **state)
{
    (void)state;
    struct up_ws_cfg cfg = cfg_of(UP_WS_SERVER);
    struct up_ws_parser p;
    struct up_ws_ev ev;
    size_t used;
    uint8_t in[16];
    size_t n = hex("81 85 37 fa 21 3d 7f 9f 4d 51 58", in, sizeof in);
    up_ws_parser_init(&p, &cfg);
    assert_int_equal(up_ws_parse(&p, in, n, &used, &ev), UP_OK);
    assert_int_equal(used, 6);
    /* Split the payload across two calls: the mask phase must carry over. */
    assert_int_equal(up_ws_parse(&p, in + 6, 2, &used, &ev), UP_OK);
    assert_int_equal(ev.kind, UP_WS_EV_DATA);
    assert_int_equal(ev.len, 2);
    assert_int_equal(up_ws_parse(&p, in + 8, 3, &used, &ev), UP_OK);
    assert_int_equal(ev.kind, UP_WS_EV_DATA);
    assert_ptr_equal(ev.data, in + 8);
    assert_memory_equal(in + 6, "Hello", 5);
}

static void test_ws_control_interleaved_in_fragmented_message(void **state)
{
    (void)state;
    struct up_ws_cfg cfg = cfg_of(UP_WS_CLIENT);
    /* "Hel" ping("hi") pong() "lo" */
    expect_trace_hex(&cfg, "01 03 48 65 6c  89 02 68 69  8a 00  80 02 6c 6f",
                     "B:t-1:3 D'Hel' E:t- PI:'hi' PO:'' B:tF-:2 D'lo' E:tF st=0");
    /* binary message with a ping between each of three fragments, then a new message */
    expect_trace_hex(&cfg, "02 01 01  89 00  00 01 02  89 01 78  80 01 03  81 01 41",
                     "B:b-1:1 D'\\x01' E:b- PI:'' B:b--:1 D'\\x02' E:b- PI:'x' "
                     "B:bF-:1 D'\\x03' E:bF B:tF1:1 D'A' E:tF st=0");
    /* masked, from a client */
    struct up_ws_cfg srv = cfg_of(UP_WS_SERVER);
    expect_trace_hex(&srv,
                     "01 83 01 02 03 04 49 67 6f  89 82 0a 0b 0c 0d 62 62  "
                     "80 82 05 06 07 08 69 69",
                     "B:t-1:3 D'Hel' E:t- PI:'hi' B:tF-:2 D'lo' E:tF st=0");
    /* a close in the middle of a fragmented message ends the stream */
    expect_trace_hex(&cfg, "01 03 48 65 6c  88 02 03 e8", "B:t-1:3 D'Hel' E:t- C:1000:'' st=4");
}

/* ---- protocol errors (each reason) ----------------------------------------------------- */

static void test_ws_error_reserved_bits(void **state)
{
    (void)state;
    struct up_ws_cfg cfg = cfg_of(UP_WS_CLIENT);
    EPROTO_1002(&cfg, "c1 00", "ws: reserved bits set");
    EPROTO_1002(&cfg, "a1 00", "ws: reserved bits set");
    EPROTO_1002(&cfg, "91 00", "ws: reserved bits set");
    EPROTO_1002(&cfg, "09 00 c9 00", "ws: fragmented control frame");
}

static void test_ws_error_unknown_opcode(void **state)
{
    (void)state;
    struct up_ws_cfg cfg = cfg_of(UP_WS_CLIENT);
    static const uint8_t ops[] = {3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf};
    for (size_t i = 0; i < sizeof ops; i++) {
        uint8_t in[2] = {(uint8_t)(0x80 | ops[i]), 0x00};
        expect_fail(&cfg, in, 2, UP_EPROTO, 1002, "ws: unknown opcode");
        in[0] = ops[i];
        expect_fail(&cfg, in, 2, UP_EPROTO, 1002, "ws: unknown opcode");
    }
}

static void test_ws_error_masking_by_role(void **state)
{
    (void)state;
    struct up_ws_cfg srv = cfg_of(UP_WS_SERVER);
    struct up_ws_cfg cli = cfg_of(UP_WS_CLIENT);
    EPROTO_1002(&srv, "81 05 48 65 6c 6c 6f", "ws: unmasked frame from client");
    EPROTO_1002(&srv, "89 00", "ws: unmasked frame from client");
    EPROTO_1002(&cli, "81 85 37 fa 21 3d 7f 9f 4d 51 58", "ws: masked frame from server");
    EPROTO_1002(&cli, "88 80 00 00 00 00", "ws: masked frame from server");
}

static void test_ws_error_control_frames(void **state)
{
    (void)state;
    struct up_ws_cfg cfg = cfg_of(UP_WS_CLIENT);
    EPROTO_1002(&cfg, "09 00", "ws: fragmented control frame");
    EPROTO_1002(&cfg, "0a 00", "ws: fragmented control frame");
    EPROTO_1002(&cfg, "08 00", "ws: fragmented control frame");
    EPROTO_1002(&cfg, "89 7e 00 7e", "ws: control frame longer than 125 bytes");
    EPROTO_1002(&cfg, "8a 7f 00 00 00 00 00 01 00 00", "ws: control frame longer than 125 bytes");
    EPROTO_1002(&cfg, "88 01 03", "ws: close payload of 1 byte");
}

static void test_ws_control_length_limit(void **state)
{
    (void)state;
    /* RFC 6455 §5.5: 124 and 125 bytes pass, 126 fails */
    struct up_ws_cfg cfg = cfg_of(UP_WS_CLIENT);
    uint8_t in[2 + 125];
    char want[512];
    for (size_t n = 124; n <= 125; n++) {
        in[0] = 0x89;
        in[1] = (uint8_t)n;
        memset(in + 2, 'p', n);
        memcpy(want, "PI:'", 4);
        memset(want + 4, 'p', n);
        memcpy(want + 4 + n, "' st=0", 7);
        expect_trace(&cfg, in, 2 + n, want);
    }
    in[1] = 126;
    expect_fail(&cfg, in, 2, UP_EPROTO, 1002, "ws: control frame longer than 125 bytes");
}

static void test_ws_error_continuation_without_message(void **state)
{
    (void)state;
    struct up_ws_cfg cfg = cfg_of(UP_WS_CLIENT);
    EPROTO_1002(&cfg, "80 00", "ws: continuation without a message");
    EPROTO_1002(&cfg, "00 01 41", "ws: continuation without a message");
    EPROTO_1002(&cfg, "81 01 41 80 01 41", "ws: continuation without a message");
}

static void test_ws_error_new_message_inside_fragmented(void **state)
{
    (void)state;
    struct up_ws_cfg cfg = cfg_of(UP_WS_CLIENT);
    EPROTO_1002(&cfg, "01 01 41 81 01 41", "ws: new message inside a fragmented one");
    EPROTO_1002(&cfg, "02 00 89 00 02 00", "ws: new message inside a fragmented one");
}

static void test_ws_error_length_encoding(void **state)
{
    (void)state;
    struct up_ws_cfg cfg = cfg_of(UP_WS_CLIENT);
    cfg.max_frame_bytes = UINT64_MAX;
    cfg.max_message_bytes = UINT64_MAX;
    /* RFC 6455 §5.2: minimal encodings only */
    EPROTO_1002(&cfg, "82 7e 00 00", "ws: non-minimal 16-bit length");
    EPROTO_1002(&cfg, "82 7e 00 7d", "ws: non-minimal 16-bit length");
    EPROTO_1002(&cfg, "82 7f 00 00 00 00 00 00 00 7d", "ws: non-minimal 64-bit length");
    EPROTO_1002(&cfg, "82 7f 00 00 00 00 00 00 ff ff", "ws: non-minimal 64-bit length");
    /* the most significant bit must be 0, whatever the limits */
    EPROTO_1002(&cfg, "82 7f 80 00 00 00 00 00 00 00", "ws: 64-bit length with the top bit set");
    EPROTO_1002(&cfg, "82 7f ff ff ff ff ff ff ff ff", "ws: 64-bit length with the top bit set");
    struct up_ws_cfg srv = cfg_of(UP_WS_SERVER);
    EPROTO_1002(&srv, "82 ff 80 00 00 00 00 00 00 00 01 02 03 04",
                "ws: 64-bit length with the top bit set");
    /* the smallest lengths of each form are accepted */
    expect_trace_hex(&cfg, "82 7e 00 7e", "B:bF1:126 st=1");
    expect_trace_hex(&cfg, "82 7f 00 00 00 00 00 01 00 00", "B:bF1:65536 st=1");
    expect_trace_hex(&cfg, "82 7f 7f ff ff ff ff ff ff ff", "B:bF1:9223372036854775807 st=1");
}

static void test_ws_frame_limit(void **state)
{
    (void)state;
    struct up_ws_cfg cfg = cfg_of(UP_WS_CLIENT);
    cfg.max_frame_bytes = 300;
    expect_trace_hex(&cfg, "82 7e 01 2b", "B:bF1:299 st=1");
    expect_trace_hex(&cfg, "82 7e 01 2c", "B:bF1:300 st=1");
    expect_fail_hex(&cfg, "82 7e 01 2d", UP_ELIMIT, 1009, "ws: frame larger than max_frame_bytes");
    cfg.max_frame_bytes = 5;
    expect_trace_hex(&cfg, "81 04 61 62 63 64", "B:tF1:4 D'abcd' E:tF st=0");
    expect_trace_hex(&cfg, "81 05 61 62 63 64 65", "B:tF1:5 D'abcde' E:tF st=0");
    expect_fail_hex(&cfg, "81 06 61 62 63 64 65 66", UP_ELIMIT, 1009,
                    "ws: frame larger than max_frame_bytes");
    /* checked before any arithmetic, even for the largest length */
    expect_fail_hex(&cfg, "82 7f 7f ff ff ff ff ff ff ff", UP_ELIMIT, 1009,
                    "ws: frame larger than max_frame_bytes");
    /* control frames are bounded by 125, not by max_frame_bytes */
    expect_trace_hex(&cfg, "89 06 61 62 63 64 65 66", "PI:'abcdef' st=0");
}

static void test_ws_message_limit(void **state)
{
    (void)state;
    struct up_ws_cfg cfg = cfg_of(UP_WS_CLIENT);
    cfg.max_frame_bytes = 100;
    cfg.max_message_bytes = 250;
    uint8_t in[512];
    size_t frames[] = {100, 100, 49};
    for (size_t last = 49; last <= 51; last++) {
        size_t n = 0;
        frames[2] = last;
        for (size_t f = 0; f < 3; f++) {
            in[n++] = (uint8_t)(f == 0 ? 0x02 : f == 2 ? 0x80 : 0x00);
            in[n++] = (uint8_t)frames[f];
            memset(in + n, (int)f, frames[f]);
            n += frames[f];
            if (f == 0) {
                /* control frames do not count toward the message */
                in[n++] = 0x89;
                in[n++] = 0x7d;
                memset(in + n, 'x', 125);
                n += 125;
            }
        }
        if (last < 51) {
            struct ws_ctx ctx = {.cfg = cfg};
            assert_int_equal(feed_all_splits(ws_trace_run, &ctx, in, n, NULL), 0);
            struct up_ws_parser p;
            up_ws_parser_init(&p, &cfg);
            assert_int_equal(parse_whole(&p, in, n), UP_OK);
            assert_int_equal(p.state, UP_WS_ST_HDR);
            /* a new message starts from 0 again */
            uint8_t again[2 + 100] = {0x02, 100};
            assert_int_equal(parse_whole(&p, again, sizeof again), UP_OK);
            assert_int_equal(p.msg_len, 100);
        } else {
            expect_fail(&cfg, in, n, UP_ELIMIT, 1009, "ws: message larger than max_message_bytes");
        }
    }
    /* a single frame is a message too */
    cfg.max_frame_bytes = 1000;
    expect_trace_hex(&cfg, "82 7e 00 fa", "B:bF1:250 st=1");
    expect_fail_hex(&cfg, "82 7e 00 fb", UP_ELIMIT, 1009,
                    "ws: message larger than max_message_bytes");
}

static void test_ws_error_is_sticky(void **state)
{
    (void)state;
    struct up_ws_cfg cfg = cfg_of(UP_WS_CLIENT);
    struct up_ws_parser p;
    struct up_ws_ev ev;
    size_t used = 123;
    uint8_t in[] = {0xc1, 0x00, 0x81, 0x00};
    up_ws_parser_init(&p, &cfg);
    assert_int_equal(up_ws_parse(&p, in, sizeof in, &used, &ev), UP_EPROTO);
    assert_int_equal(ev.kind, UP_WS_EV_NONE);
    assert_int_equal(p.state, UP_WS_ST_ERROR);
    for (int i = 0; i < 3; i++) {
        used = 123;
        assert_int_equal(up_ws_parse(&p, in + 2, 2, &used, &ev), UP_EPROTO);
        assert_int_equal(used, 0);
        assert_int_equal(p.close_code, 1002);
        assert_string_equal(p.err_reason, "ws: reserved bits set");
    }
    cfg.max_frame_bytes = 1;
    uint8_t big[] = {0x82, 0x02, 0x00, 0x00};
    up_ws_parser_init(&p, &cfg);
    assert_int_equal(up_ws_parse(&p, big, sizeof big, &used, &ev), UP_ELIMIT);
    assert_int_equal(up_ws_parse(&p, big, sizeof big, &used, &ev), UP_ELIMIT);
    assert_int_equal(up_ws_parse(&p, NULL, 0, &used, &ev), UP_ELIMIT);
    assert_int_equal(p.close_code, 1009);
}

static void test_ws_used_always_set(void **state)
{
    (void)state;
    struct up_ws_cfg cfg = cfg_of(UP_WS_SERVER);
    struct up_ws_parser p;
    struct up_ws_ev ev;
    size_t used = 999;
    uint8_t in[] = {0x81, 0x85, 0x37, 0xfa};
    up_ws_parser_init(&p, &cfg);
    assert_int_equal(up_ws_parse(&p, NULL, 0, &used, &ev), UP_OK);
    assert_int_equal(used, 0);
    assert_int_equal(ev.kind, UP_WS_EV_NONE);
    used = 999;
    assert_int_equal(up_ws_parse(&p, in, sizeof in, &used, &ev), UP_OK);
    assert_int_equal(used, sizeof in);
    assert_int_equal(ev.kind, UP_WS_EV_NONE);
    assert_int_equal(p.state, UP_WS_ST_HDR);
}

/* ---- UTF-8 ----------------------------------------------------------------------------- */

static void test_ws_utf8_split_across_frames(void **state)
{
    (void)state;
    struct up_ws_cfg cfg = cfg_of(UP_WS_CLIENT);
    /* U+20AC (e2 82 ac) cut after its first byte, with a ping in between */
    expect_trace_hex(&cfg, "01 01 e2  89 00  80 02 82 ac",
                     "B:t-1:1 D'\\xe2' E:t- PI:'' B:tF-:2 D'\\x82\\xac' E:tF st=0");
    /* U+1F600 (f0 9f 98 80) over four frames */
    expect_trace_hex(&cfg, "01 01 f0 00 01 9f 00 01 98 80 01 80",
                     "B:t-1:1 D'\\xf0' E:t- B:t--:1 D'\\x9f' E:t- B:t--:1 D'\\x98' E:t- "
                     "B:tF-:1 D'\\x80' E:tF st=0");
    /* a new message starts with a fresh validator */
    expect_trace_hex(&cfg, "81 01 41 81 02 c3 a9",
                     "B:tF1:1 D'A' E:tF B:tF1:2 D'\\xc3\\xa9' E:tF st=0");
}

static void test_ws_utf8_invalid_fails_fast(void **state)
{
    (void)state;
    struct up_ws_cfg cfg = cfg_of(UP_WS_CLIENT);
    const char *bad = "ws: invalid UTF-8 in a text message";
    /* the frame declares 10 bytes; the error comes with the first 3 */
    expect_fail_hex(&cfg, "81 0a 61 62 ff", UP_EPROTO, 1007, bad);
    expect_fail_hex(&cfg, "81 03 ed a0 80", UP_EPROTO, 1007, bad);    /* surrogate */
    expect_fail_hex(&cfg, "81 02 c0 af", UP_EPROTO, 1007, bad);       /* overlong */
    expect_fail_hex(&cfg, "81 04 f4 90 80 80", UP_EPROTO, 1007, bad); /* > U+10FFFF */
    /* across frames: e2 then a non-continuation byte */
    expect_fail_hex(&cfg, "01 01 e2 80 01 41", UP_EPROTO, 1007, bad);

    struct up_ws_parser p;
    struct up_ws_ev ev;
    size_t used;
    uint8_t in[] = {0x81, 0x0a, 0x61, 0x62, 0xff};
    up_ws_parser_init(&p, &cfg);
    assert_int_equal(up_ws_parse(&p, in, sizeof in, &used, &ev), UP_OK);
    assert_int_equal(ev.kind, UP_WS_EV_BEGIN);
    assert_int_equal(up_ws_parse(&p, in + 2, 3, &used, &ev), UP_EPROTO);
    assert_int_equal(p.close_code, 1007);
}

static void test_ws_utf8_incomplete_at_fin(void **state)
{
    (void)state;
    struct up_ws_cfg cfg = cfg_of(UP_WS_CLIENT);
    const char *why = "ws: text message ends inside a UTF-8 sequence";
    expect_fail_hex(&cfg, "81 02 e2 82", UP_EPROTO, 1007, why);
    expect_fail_hex(&cfg, "01 01 e2 80 01 82", UP_EPROTO, 1007, why);
    expect_fail_hex(&cfg, "01 02 e2 82 80 00", UP_EPROTO, 1007, why);
    /* the same bytes are fine while the message goes on */
    expect_trace_hex(&cfg, "01 02 e2 82", "B:t-1:2 D'\\xe2\\x82' E:t- st=0");
}

static void test_ws_utf8_binary_and_disabled(void **state)
{
    (void)state;
    struct up_ws_cfg cfg = cfg_of(UP_WS_CLIENT);
    expect_trace_hex(&cfg, "82 02 ff e2", "B:bF1:2 D'\\xff\\xe2' E:bF st=0");
    cfg.validate_utf8 = false;
    expect_trace_hex(&cfg, "81 02 ff e2", "B:tF1:2 D'\\xff\\xe2' E:tF st=0");
    expect_trace_hex(&cfg, "88 03 03 e8 ff", "C:1000:'\\xff' st=4");
}

/* ---- close ----------------------------------------------------------------------------- */

static void test_ws_close_frames(void **state)
{
    (void)state;
    struct up_ws_cfg cfg = cfg_of(UP_WS_CLIENT);
    expect_trace_hex(&cfg, "88 00", "C:1005:'' st=4");
    expect_trace_hex(&cfg, "88 05 03 e8 62 79 65", "C:1000:'bye' st=4");
    expect_trace_hex(&cfg, "88 05 03 e8 e2 82 ac", "C:1000:'\\xe2\\x82\\xac' st=4");
    struct up_ws_cfg srv = cfg_of(UP_WS_SERVER);
    expect_trace_hex(&srv, "88 85 01 02 03 04 02 ea 61 7d 64", "C:1000:'bye' st=4");
}

static void test_ws_close_codes(void **state)
{
    (void)state;
    struct up_ws_cfg cfg = cfg_of(UP_WS_CLIENT);
    static const uint16_t good[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010,
                                    1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999};
    static const uint16_t bad[] = {0,    1,    999,  1004, 1005, 1006, 1015,
                                   1016, 1100, 2000, 2999, 5000, 65535};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        uint8_t in[4] = {0x88, 0x02, (uint8_t)(good[i] >> 8), (uint8_t)good[i]};
        char want[64];
        snprintf(want, sizeof want, "C:%u:'' st=4", good[i]);
        expect_trace(&cfg, in, sizeof in, want);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint8_t in[4] = {0x88, 0x02, (uint8_t)(bad[i] >> 8), (uint8_t)bad[i]};
        expect_fail(&cfg, in, sizeof in, UP_EPROTO, 1002, "ws: invalid close code");
    }
}

static void test_ws_close_reason_utf8(void **state)
{
    (void)state;
    struct up_ws_cfg cfg = cfg_of(UP_WS_CLIENT);
    const char *why = "ws: close reason is not UTF-8";
    expect_fail_hex(&cfg, "88 03 03 e8 ff", UP_EPROTO, 1007, why);
    expect_fail_hex(&cfg, "88 04 03 e8 e2 82", UP_EPROTO, 1007, why); /* cut short */
    expect_fail_hex(&cfg, "88 05 03 e8 ed a0 80", UP_EPROTO, 1007, why);
}

static void test_ws_input_after_close(void **state)
{
    (void)state;
    struct up_ws_cfg cfg = cfg_of(UP_WS_CLIENT);
    EPROTO_1002(&cfg, "88 00 81 00", "ws: data after a close frame");
    EPROTO_1002(&cfg, "88 02 03 e8 89", "ws: data after a close frame");

    struct up_ws_parser p;
    struct up_ws_ev ev;
    size_t used;
    uint8_t in[] = {0x88, 0x00};
    up_ws_parser_init(&p, &cfg);
    assert_int_equal(up_ws_parse(&p, in, sizeof in, &used, &ev), UP_OK);
    assert_int_equal(ev.kind, UP_WS_EV_CLOSE);
    assert_int_equal(ev.close_code, 1005);
    assert_int_equal(p.state, UP_WS_ST_CLOSED);
    assert_int_equal(up_ws_parse(&p, NULL, 0, &used, &ev), UP_OK);
    assert_int_equal(ev.kind, UP_WS_EV_NONE);
    assert_int_equal(p.state, UP_WS_ST_CLOSED);
}

/* ---- writers and round trips ----------------------------------------------------------- */

static void test_ws_header_size(void **state)
{
    (void)state;
    static const struct {
        uint64_t len;
        size_t size;
    } v[] = {{0, 2},     {1, 2},      {125, 2},         {126, 4},
             {65535, 4}, {65536, 10}, {UINT32_MAX, 10}, {(UINT64_C(1) << 63) - 1, 10}};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        uint8_t hdr[UP_WS_MAX_HEADER];
        static const uint8_t mask[4] = {1, 2, 3, 4};
        assert_int_equal(up_ws_header_size(v[i].len, false), v[i].size);
        assert_int_equal(up_ws_header_size(v[i].len, true), v[i].size + 4);
        assert_int_equal(up_ws_encode_header(hdr, UP_WS_OP_BINARY, true, v[i].len, NULL),
                         v[i].size);
        assert_int_equal(up_ws_encode_header(hdr, UP_WS_OP_BINARY, false, v[i].len, mask),
                         v[i].size + 4);
        assert_int_equal(hdr[0], 0x02);
        assert_true(hdr[1] & 0x80);
        assert_memory_equal(hdr + v[i].size, mask, 4);
    }
}

/* Encode frames with the writer of one role and parse them with the other. */
static void roundtrip(enum up_ws_role writer, uint8_t opcode, size_t len)
{
    static const uint8_t mask[4] = {0xa1, 0x5e, 0x00, 0xff};
    const uint8_t *m = writer == UP_WS_CLIENT ? mask : NULL;
    struct up_ws_cfg cfg = cfg_of(writer == UP_WS_CLIENT ? UP_WS_SERVER : UP_WS_CLIENT);
    uint8_t *payload = up_malloc(len + 1);
    struct up_buf out;
    char want[2048];
    assert_non_null(payload);
    bool text = opcode == UP_WS_OP_TEXT || opcode == UP_WS_OP_CLOSE;
    for (size_t i = 0; i < len; i++) {
        payload[i] = (uint8_t)(text ? 'a' + i % 26 : i * 13 + 1);
    }
    up_buf_init(&out);
    struct tr t = {.s = want, .cap = sizeof want, .len = 0};
    struct pending d;
    pend_reset(&d);
    pend_feed(&d, payload, len);
    if (opcode == UP_WS_OP_TEXT || opcode == UP_WS_OP_BINARY) {
        char c = op_char(opcode);
        assert_int_equal(up_ws_write_frame(&out, SIZE_MAX, opcode, true, payload, len, m), 0);
        tr_add(&t, "B:%cF1:%zu ", c, len);
        tr_pending(&t, "D", &d);
        tr_add(&t, "E:%cF ", c);
    } else if (opcode == UP_WS_OP_CONT) {
        /* as the second and third fragments of a binary message */
        assert_int_equal(up_ws_write_frame(&out, SIZE_MAX, UP_WS_OP_BINARY, false, payload, len, m),
                         0);
        assert_int_equal(up_ws_write_frame(&out, SIZE_MAX, UP_WS_OP_CONT, false, payload, len, m),
                         0);
        assert_int_equal(up_ws_write_frame(&out, SIZE_MAX, UP_WS_OP_CONT, true, payload, len, m),
                         0);
        tr_add(&t, "B:b-1:%zu ", len);
        tr_pending(&t, "D", &d);
        tr_add(&t, "E:b- B:b--:%zu ", len);
        tr_pending(&t, "D", &d);
        tr_add(&t, "E:b- B:bF-:%zu ", len);
        tr_pending(&t, "D", &d);
        tr_add(&t, "E:bF ");
    } else if (opcode == UP_WS_OP_PING || opcode == UP_WS_OP_PONG) {
        assert_int_equal(up_ws_write_frame(&out, SIZE_MAX, opcode, true, payload, len, m), 0);
        tr_add(&t, "%s", opcode == UP_WS_OP_PING ? "PI:" : "PO:");
        tr_bytes(&t, payload, len);
        tr_add(&t, " ");
    } else {
        payload[len] = '\0';
        assert_int_equal(up_ws_write_close(&out, SIZE_MAX, 4000, (const char *)payload, m), 0);
        tr_add(&t, "C:4000:");
        tr_bytes(&t, payload, len);
        tr_add(&t, " ");
    }
    bool closed = opcode == UP_WS_OP_CLOSE;
    tr_add(&t, "st=%d", closed ? UP_WS_ST_CLOSED : UP_WS_ST_HDR);
    size_t frames = opcode == UP_WS_OP_CONT ? 3 : 1;
    assert_int_equal(up_buf_len(&out),
                     frames * (up_ws_header_size(len + (closed ? 2 : 0), m != NULL) + len) +
                         (closed ? 2 : 0));
    if (len <= 1024) {
        expect_trace(&cfg, up_buf_rptr(&out), up_buf_len(&out), want);
    } else {
        /* large frames: whole input, a few splits, not every split */
        struct ws_ctx ctx = {.cfg = cfg};
        char got[2048];
        size_t n = up_buf_len(&out);
        size_t cuts[] = {1, 2, 3, 7, n / 3, n / 2, n - 1};
        ws_trace_run(&ctx, up_buf_rptr(&out), n, NULL, 0, got, sizeof got);
        assert_string_equal(got, want);
        for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
            ws_trace_run(&ctx, up_buf_rptr(&out), n, cuts + i, 1, got, sizeof got);
            assert_string_equal(got, want);
        }
    }
    up_buf_fini(&out);
    up_free(payload);
}

static void test_ws_roundtrip_data_frames(void **state)
{
    (void)state;
    static const size_t lens[] = {0, 1, 125, 126, 127, 65535, 65536, 100000};
    static const uint8_t ops[] = {UP_WS_OP_TEXT, UP_WS_OP_BINARY, UP_WS_OP_CONT};
    for (int r = 0; r < 2; r++) {
        for (size_t o = 0; o < sizeof ops; o++) {
            for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
                roundtrip(r ? UP_WS_CLIENT : UP_WS_SERVER, ops[o], lens[i]);
            }
        }
    }
}

static void test_ws_roundtrip_control_frames(void **state)
{
    (void)state;
    static const size_t lens[] = {0, 1, 2, 124, 125};
    for (int r = 0; r < 2; r++) {
        enum up_ws_role role = r ? UP_WS_CLIENT : UP_WS_SERVER;
        for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
            roundtrip(role, UP_WS_OP_PING, lens[i]);
            roundtrip(role, UP_WS_OP_PONG, lens[i]);
            if (lens[i] <= 123) {
                roundtrip(role, UP_WS_OP_CLOSE, lens[i]);
            }
        }
    }
}

static void test_ws_write_frame_errors(void **state)
{
    (void)state;
    struct up_buf out;
    uint8_t payload[200] = {0};
    up_buf_init(&out);
    assert_int_equal(up_ws_write_frame(&out, 4096, UP_WS_OP_PING, true, payload, 126, NULL),
                     UP_EINVAL);
    assert_int_equal(up_ws_write_frame(&out, 4096, UP_WS_OP_PING, false, payload, 1, NULL),
                     UP_EINVAL);
    assert_int_equal(up_ws_write_frame(&out, 4096, UP_WS_OP_CLOSE, true, payload, 126, NULL),
                     UP_EINVAL);
    assert_int_equal(up_ws_write_frame(&out, 4096, 3, true, payload, 1, NULL), UP_EINVAL);
    assert_int_equal(up_ws_write_frame(&out, 4096, 0xb, true, payload, 1, NULL), UP_EINVAL);
    /* max_cap: 2 + 4 + 120 = 126 bytes needed, at 125, 126 and 127 */
    static const uint8_t mask[4] = {1, 2, 3, 4};
    for (size_t cap = 125; cap <= 127; cap++) {
        int rv = up_ws_write_frame(&out, cap, UP_WS_OP_BINARY, true, payload, 120, mask);
        assert_int_equal(rv, cap < 126 ? UP_ELIMIT : UP_OK);
        assert_int_equal(up_buf_len(&out), cap < 126 ? 0 : 126);
        up_buf_fini(&out);
    }
    /* a length whose frame would not fit in size_t */
    assert_int_equal(
        up_ws_write_frame(&out, SIZE_MAX, UP_WS_OP_BINARY, true, payload, SIZE_MAX, NULL),
        UP_ELIMIT);
    assert_int_equal(up_buf_len(&out), 0);
    assert_int_equal(up_ws_write_frame(&out, SIZE_MAX, UP_WS_OP_BINARY, true, NULL, 0, NULL),
                     UP_OK);
    assert_int_equal(up_buf_len(&out), 2);
    up_buf_fini(&out);
}

static void test_ws_write_close(void **state)
{
    (void)state;
    struct up_buf out;
    uint8_t want[16];
    size_t n;
    up_buf_init(&out);
    assert_int_equal(up_ws_write_close(&out, 4096, 1000, "bye", NULL), UP_OK);
    n = hex("88 05 03 e8 62 79 65", want, sizeof want);
    assert_int_equal(up_buf_len(&out), n);
    assert_memory_equal(up_buf_rptr(&out), want, n);
    up_buf_fini(&out);
    assert_int_equal(up_ws_write_close(&out, 4096, 0, "ignored", NULL), UP_OK);
    n = hex("88 00", want, sizeof want);
    assert_int_equal(up_buf_len(&out), n);
    assert_memory_equal(up_buf_rptr(&out), want, n);
    up_buf_fini(&out);
    assert_int_equal(up_ws_write_close(&out, 4096, 1001, NULL, NULL), UP_OK);
    assert_int_equal(up_buf_len(&out), 4);
    up_buf_fini(&out);
    static const uint16_t bad[] = {1004, 1005, 1006, 1015, 999, 2000, 5000};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(up_ws_write_close(&out, 4096, bad[i], "x", NULL), UP_EINVAL);
    }
    assert_int_equal(up_ws_write_close(&out, 4, 1000, "bye", NULL), UP_ELIMIT);
    up_buf_fini(&out);
}

static void test_ws_write_close_truncates_on_code_point(void **state)
{
    (void)state;
    struct up_ws_cfg cfg = cfg_of(UP_WS_CLIENT);
    char reason[256];
    struct up_buf out;
    /* 123 bytes fit exactly; 124 are cut to 123 */
    for (size_t n = 122; n <= 200; n++) {
        memset(reason, 'r', n);
        reason[n] = '\0';
        up_buf_init(&out);
        assert_int_equal(up_ws_write_close(&out, 4096, 1000, reason, NULL), UP_OK);
        size_t want = n > 123 ? 123 : n;
        assert_int_equal(up_buf_len(&out), 2 + 2 + want);
        assert_int_equal(up_buf_rptr(&out)[1], 2 + want);
        up_buf_fini(&out);
    }
    /* 121 ASCII bytes and a 3-byte code point: 124 bytes, cut before the code point */
    memset(reason, 'r', 121);
    memcpy(reason + 121, "\xe2\x82\xac", 4);
    up_buf_init(&out);
    assert_int_equal(up_ws_write_close(&out, 4096, 1000, reason, NULL), UP_OK);
    assert_int_equal(up_buf_len(&out), 2 + 2 + 121);
    struct up_ws_parser p;
    up_ws_parser_init(&p, &cfg);
    assert_int_equal(parse_whole(&p, up_buf_rptr(&out), up_buf_len(&out)), UP_OK);
    assert_int_equal(p.state, UP_WS_ST_CLOSED);
    up_buf_fini(&out);
    /* nothing but continuation bytes: the reason is dropped, the code stays */
    memset(reason, 0x80, 200);
    reason[200] = '\0';
    up_buf_init(&out);
    assert_int_equal(up_ws_write_close(&out, 4096, 1000, reason, NULL), UP_OK);
    assert_int_equal(up_buf_len(&out), 2 + 2);
    up_buf_fini(&out);
    /* 120 ASCII bytes and the code point: 123 bytes, kept whole */
    memcpy(reason + 120, "\xe2\x82\xac", 4);
    up_buf_init(&out);
    assert_int_equal(up_ws_write_close(&out, 4096, 1000, reason, NULL), UP_OK);
    assert_int_equal(up_buf_len(&out), 2 + 2 + 123);
    up_buf_fini(&out);
}

/* ---- masking --------------------------------------------------------------------------- */

static void test_ws_mask_matches_reference(void **state)
{
    (void)state;
    static const uint8_t mask[4] = {0x37, 0xfa, 0x21, 0x3d};
    static const uint64_t offs[] = {0,
                                    1,
                                    2,
                                    3,
                                    4,
                                    5,
                                    6,
                                    7,
                                    8,
                                    13,
                                    31,
                                    32,
                                    UINT64_C(1) << 32,
                                    (UINT64_C(1) << 32) + 3,
                                    UINT64_MAX - 1,
                                    UINT64_MAX};
    uint8_t buf[1200], ref[1200];
    for (size_t o = 0; o < sizeof offs / sizeof offs[0]; o++) {
        for (size_t align = 0; align < 16; align++) {
            for (size_t n = 0; n < 1100; n = n < 80 ? n + 1 : n + 97) {
                for (size_t i = 0; i < n; i++) {
                    buf[align + i] = ref[align + i] = (uint8_t)(i * 31 + o + 1);
                }
                buf[align + n] = ref[align + n] = 0xee;
                for (size_t i = 0; i < n; i++) {
                    ref[align + i] ^= mask[(offs[o] + i) % 4];
                }
                up_ws_mask(buf + align, n, mask, offs[o]);
                assert_memory_equal(buf + align, ref + align, n + 1);
                /* masking twice is the identity */
                up_ws_mask(buf + align, n, mask, offs[o]);
                up_ws_mask(ref + align, n, mask, offs[o]);
                assert_memory_equal(buf + align, ref + align, n + 1);
            }
        }
    }
}

static void test_ws_mask_split_equals_whole(void **state)
{
    (void)state;
    static const uint8_t mask[4] = {0xde, 0xad, 0xbe, 0xef};
    uint8_t a[300], b[300];
    for (size_t cut = 0; cut <= sizeof a; cut++) {
        for (size_t i = 0; i < sizeof a; i++) {
            a[i] = b[i] = (uint8_t)i;
        }
        up_ws_mask(a, sizeof a, mask, 0);
        up_ws_mask(b, cut, mask, 0);
        up_ws_mask(b + cut, sizeof b - cut, mask, cut);
        assert_memory_equal(a, b, sizeof a);
    }
}

/* ---- handshake ------------------------------------------------------------------------- */

static void test_ws_accept_rfc_vector(void **state)
{
    (void)state;
    /* RFC 6455 §1.3 */
    char out[UP_WS_ACCEPT_LEN + 1];
    const char *key = "dGhlIHNhbXBsZSBub25jZQ==";
    up_ws_accept(key, strlen(key), out);
    assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    char big[300];
    memset(big, 'A', sizeof big);
    up_ws_accept(big, sizeof big, out);
    assert_string_equal(out, "");
}

#define HDR(n, v)                                                                                  \
    {                                                                                              \
        .name = n, .name_len = sizeof(n) - 1, .value = v, .value_len = sizeof(v) - 1               \
    }

static struct up_h1_msg req_of(struct up_h1_header *h, size_t n)
{
    return (struct up_h1_msg){
        .method = "GET",
        .method_len = 3,
        .target = "/chat",
        .target_len = 5,
        .minor_version = 1,
        .headers = h,
        .n_headers = n,
        .content_length = -1,
    };
}

/* RFC 6455 §1.3 client handshake */
static const struct up_h1_header rfc_req[] = {
    HDR("Host", "server.example.com"),   HDR("Upgrade", "websocket"),
    HDR("Connection", "Upgrade"),        HDR("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    HDR("Origin", "http://example.com"), HDR("Sec-WebSocket-Protocol", "chat, superchat"),
    HDR("Sec-WebSocket-Version", "13"),
};
#define N_RFC_REQ (sizeof rfc_req / sizeof rfc_req[0])

static int check_req(struct up_h1_msg *m, int *status, const char **reason)
{
    const char *key = NULL;
    size_t key_len = 0;
    int rv = up_ws_check_upgrade(m, &key, &key_len, reason, status);
    if (rv == UP_OK) {
        assert_int_equal(key_len, 24);
        assert_memory_equal(key, "dGhlIHNhbXBsZSBub25jZQ==", 24);
    }
    return rv;
}

/* Replace header i of the RFC request (or drop it when value is NULL) and check. */
static void expect_req(size_t i, const char *name, const char *value, int want_status)
{
    struct up_h1_header h[N_RFC_REQ + 1];
    size_t n = N_RFC_REQ;
    memcpy(h, rfc_req, sizeof rfc_req);
    if (!name) {
        /* the request as is */
    } else if (i < N_RFC_REQ) {
        if (value) {
            h[i].name = name;
            h[i].name_len = strlen(name);
            h[i].value = value;
            h[i].value_len = strlen(value);
        } else {
            memmove(h + i, h + i + 1, (N_RFC_REQ - i - 1) * sizeof h[0]);
            n--;
        }
    } else {
        h[n].name = name;
        h[n].name_len = strlen(name);
        h[n].value = value;
        h[n].value_len = strlen(value);
        n++;
    }
    struct up_h1_msg m = req_of(h, n);
    int status = 0;
    const char *reason = NULL;
    int rv = check_req(&m, &status, &reason);
    if (want_status == 101) {
        assert_int_equal(rv, UP_OK);
        assert_int_equal(status, 101);
        assert_null(reason);
    } else {
        assert_int_equal(rv, UP_EPROTO);
        assert_int_equal(status, want_status);
        assert_non_null(reason);
    }
}

static void test_ws_check_upgrade_rfc_request(void **state)
{
    (void)state;
    expect_req(SIZE_MAX, NULL, NULL, 101);
    /* header names and list tokens are case-insensitive, lists may hold more */
    expect_req(1, "upgrade", "WebSocket", 101);
    expect_req(2, "CONNECTION", "keep-alive, Upgrade", 101);
    expect_req(N_RFC_REQ, "Connection", "upgrade", 101);
}

static void test_ws_check_upgrade_rejects(void **state)
{
    (void)state;
    expect_req(1, "-", NULL, 400);                    /* no Upgrade */
    expect_req(1, "Upgrade", "h2c", 400);             /* wrong Upgrade */
    expect_req(2, "-", NULL, 400);                    /* no Connection */
    expect_req(2, "Connection", "keep-alive", 400);   /* no upgrade token */
    expect_req(2, "Connection", "upgrades", 400);     /* token, not substring */
    expect_req(6, "-", NULL, 426);                    /* no version */
    expect_req(6, "Sec-WebSocket-Version", "8", 426); /* RFC 6455 §4.4 */
    expect_req(6, "Sec-WebSocket-Version", "13, 8", 426);
    expect_req(6, "Sec-WebSocket-Version", "130", 426);
    expect_req(N_RFC_REQ, "Sec-WebSocket-Version", "13", 400);                   /* duplicate */
    expect_req(3, "-", NULL, 400);                                               /* no key */
    expect_req(N_RFC_REQ, "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==", 400); /* twice */
    expect_req(3, "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=", 400);          /* 23 chars */
    expect_req(3, "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ===", 400);        /* 25 chars */
    expect_req(3, "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQAA", 400);         /* no padding */
    expect_req(3, "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZ===", 400);         /* 15 bytes */
    expect_req(3, "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZ-==", 400);         /* url alphabet */
    expect_req(3, "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBu b25jZQ==", 400);
    expect_req(3, "Sec-WebSocket-Key", "", 400);
    /* every base64 character is accepted */
    static const char *keys[] = {"AAAAAAAAAAAAAAAAAAAAAA==", "+/+/+/+/+/+/+/+/+/+/zz==",
                                 "abcdefghijklmnopqrstuv==", "wxyzABCDEFGHIJ0123456789=="};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        struct up_h1_header h[N_RFC_REQ];
        const char *key = NULL, *reason = NULL;
        size_t key_len = 0;
        int status = 0;
        memcpy(h, rfc_req, sizeof rfc_req);
        h[3].value = keys[i];
        h[3].value_len = strlen(keys[i]);
        struct up_h1_msg m = req_of(h, N_RFC_REQ);
        int want = strlen(keys[i]) == 24 ? UP_OK : UP_EPROTO;
        assert_int_equal(up_ws_check_upgrade(&m, &key, &key_len, &reason, &status), want);
    }

    struct up_h1_header h[N_RFC_REQ];
    memcpy(h, rfc_req, sizeof rfc_req);
    struct up_h1_msg m = req_of(h, N_RFC_REQ);
    int status = 0;
    const char *reason = NULL;
    m.method = "POST";
    m.method_len = 4;
    assert_int_equal(check_req(&m, &status, &reason), UP_EPROTO);
    assert_int_equal(status, 400);
    m.method = "get";
    m.method_len = 3;
    assert_int_equal(check_req(&m, &status, &reason), UP_EPROTO);
    m.method = NULL;
    m.method_len = 0;
    assert_int_equal(check_req(&m, &status, &reason), UP_EPROTO);
    assert_int_equal(status, 400);
    m = req_of(h, N_RFC_REQ);
    m.minor_version = 0;
    assert_int_equal(check_req(&m, &status, &reason), UP_EPROTO);
    assert_int_equal(status, 400);
}

static void test_ws_handshake_parsed_by_h1(void **state)
{
    (void)state;
    /* RFC 6455 §1.3, through the real head parser */
    static const char req[] = "GET /chat HTTP/1.1\r\n"
                              "Host: server.example.com\r\n"
                              "Upgrade: websocket\r\n"
                              "Connection: Upgrade\r\n"
                              "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                              "Origin: http://example.com\r\n"
                              "Sec-WebSocket-Protocol: chat, superchat\r\n"
                              "Sec-WebSocket-Version: 13\r\n"
                              "\r\n";
    static const char resp[] = "HTTP/1.1 101 Switching Protocols\r\n"
                               "Upgrade: websocket\r\n"
                               "Connection: Upgrade\r\n"
                               "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                               "\r\n";
    struct up_h1_header h[16];
    struct up_h1_msg m;
    size_t scan = 0;
    const char *key = NULL, *reason = NULL;
    size_t key_len = 0;
    int status = 0;
    assert_int_equal(up_h1_parse_request((const uint8_t *)req, sizeof req - 1, &scan, &m, h, 16,
                                         UP_H1_DEFAULT_MAX_HEAD),
                     UP_OK);
    assert_int_equal(up_ws_check_upgrade(&m, &key, &key_len, &reason, &status), UP_OK);
    assert_int_equal(status, 101);
    char accept[UP_WS_ACCEPT_LEN + 1];
    up_ws_accept(key, key_len, accept);
    assert_string_equal(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    scan = 0;
    assert_int_equal(up_h1_parse_response((const uint8_t *)resp, sizeof resp - 1, &scan, &m, h, 16,
                                          UP_H1_DEFAULT_MAX_HEAD),
                     UP_OK);
    assert_int_equal(up_ws_check_response(&m, "dGhlIHNhbXBsZSBub25jZQ==", &reason), UP_OK);
}

static struct up_h1_msg resp_of(struct up_h1_header *h, size_t n)
{
    return (struct up_h1_msg){
        .status = 101,
        .reason = "Switching Protocols",
        .reason_len = 19,
        .minor_version = 1,
        .headers = h,
        .n_headers = n,
        .content_length = -1,
    };
}

static void test_ws_check_response(void **state)
{
    (void)state;
    /* RFC 6455 §1.3 server handshake */
    struct up_h1_header h[] = {
        HDR("Upgrade", "websocket"),
        HDR("Connection", "Upgrade"),
        HDR("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        HDR("Sec-WebSocket-Extensions", "permessage-deflate"),
        HDR("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
    };
    const char *key = "dGhlIHNhbXBsZSBub25jZQ==";
    const char *reason = "unset";
    struct up_h1_msg m = resp_of(h, 3);
    assert_int_equal(up_ws_check_response(&m, key, &reason), UP_OK);
    assert_null(reason);

    m.status = 200;
    assert_int_equal(up_ws_check_response(&m, key, &reason), UP_EPROTO);
    assert_non_null(reason);
    m = resp_of(h, 4); /* an extension we did not offer */
    assert_int_equal(up_ws_check_response(&m, key, &reason), UP_EPROTO);
    assert_string_equal(reason, "ws: response selects an extension we did not offer");
    m = resp_of(h, 2); /* no accept */
    assert_int_equal(up_ws_check_response(&m, key, &reason), UP_EPROTO);
    assert_string_equal(reason, "ws: wrong Sec-WebSocket-Accept");
    m = resp_of(h + 1, 2); /* no Upgrade */
    assert_int_equal(up_ws_check_response(&m, key, &reason), UP_EPROTO);
    assert_string_equal(reason, "ws: response lacks Upgrade: websocket");
    struct up_h1_header h2[] = {
        HDR("Upgrade", "websocket"),
        HDR("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
    };
    m = resp_of(h2, 2); /* no Connection */
    assert_int_equal(up_ws_check_response(&m, key, &reason), UP_EPROTO);
    assert_string_equal(reason, "ws: response lacks Connection: upgrade");
    assert_int_equal(up_ws_check_response(&m, key, &reason), UP_EPROTO);
    /* the accept value is compared exactly */
    static const char *wrong[] = {
        "S3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo",
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo==",
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo= ",
        "",
        "dGhlIHNhbXBsZSBub25jZQ==",
    };
    for (size_t i = 0; i < sizeof wrong / sizeof wrong[0]; i++) {
        struct up_h1_header h3[] = {
            HDR("Upgrade", "websocket"),
            HDR("Connection", "Upgrade"),
            {.name = "Sec-WebSocket-Accept",
             .name_len = 20,
             .value = wrong[i],
             .value_len = strlen(wrong[i])},
        };
        m = resp_of(h3, 3);
        assert_int_equal(up_ws_check_response(&m, key, &reason), UP_EPROTO);
        assert_string_equal(reason, "ws: wrong Sec-WebSocket-Accept");
    }
    /* a duplicated accept header */
    struct up_h1_header h4[] = {h[0], h[1], h[2], h[4]};
    m = resp_of(h4, 4);
    assert_int_equal(up_ws_check_response(&m, key, &reason), UP_EPROTO);
    /* a different key */
    m = resp_of(h, 3);
    assert_int_equal(up_ws_check_response(&m, "AAAAAAAAAAAAAAAAAAAAAA==", &reason), UP_EPROTO);
}

/* ---- permessage-deflate (RFC 7692 §6): RSV1 ------------------------------------------- */

/* Collect the compressed flag of every BEGIN/END event of a whole-buffer parse. */
static int compressed_flags(const struct up_ws_cfg *cfg, const char *h, char *flags, size_t cap)
{
    uint8_t in[256];
    size_t len = hex(h, in, sizeof in), off = 0, n = 0;
    struct up_ws_parser p;
    up_ws_parser_init(&p, cfg);
    for (;;) {
        struct up_ws_ev ev;
        size_t used;
        int rv = up_ws_parse(&p, in + off, len - off, &used, &ev);
        off += used;
        if (rv < 0 || ev.kind == UP_WS_EV_NONE) {
            flags[n] = '\0';
            return rv;
        }
        if ((ev.kind == UP_WS_EV_BEGIN || ev.kind == UP_WS_EV_END) && n + 1 < cap) {
            flags[n++] = ev.compressed ? 'z' : '-';
        }
    }
}

static void test_ws_rsv1_permessage_deflate(void **state)
{
    (void)state;
    struct up_ws_cfg cfg = cfg_of(UP_WS_CLIENT);
    cfg.permessage_deflate = true;
    /* RFC 7692 §7.2.3.1: "Hello" compressed, whole and in two fragments with a ping between. */
    expect_trace_hex(&cfg, "c1 07 f2 48 cd c9 c9 07 00",
                     "B:tF1:7 D'\\xf2H\\xcd\\xc9\\xc9\\x07\\x00' E:tF st=0");
    expect_trace_hex(&cfg, "41 03 f2 48 cd 89 00 80 04 c9 c9 07 00",
                     "B:t-1:3 D'\\xf2H\\xcd' E:t- PI:'' B:tF-:4 D'\\xc9\\xc9\\x07\\x00' E:tF st=0");
    char f[16];
    assert_int_equal(
        compressed_flags(&cfg, "41 03 f2 48 cd 89 00 80 04 c9 c9 07 00 81 01 61", f, sizeof f),
        UP_OK);
    assert_string_equal(f, "zzzz--");
    /* The parser leaves compressed text to the inflater: bytes that are not UTF-8 pass. */
    expect_trace_hex(&cfg, "c1 02 ff e2", "B:tF1:2 D'\\xff\\xe2' E:tF st=0");
    expect_trace_hex(&cfg, "41 01 ff 80 01 e2", "B:t-1:1 D'\\xff' E:t- B:tF-:1 D'\\xe2' E:tF st=0");
    /* Uncompressed text is still checked with the flag on. */
    expect_fail_hex(&cfg, "c1 00 81 01 ff", UP_EPROTO, 1007, "ws: invalid UTF-8 in a text message");
    /* Server role: masked */
    struct up_ws_cfg srv = cfg_of(UP_WS_SERVER);
    srv.permessage_deflate = true;
    expect_trace_hex(&srv, "c2 81 00 00 00 00 00", "B:bF1:1 D'\\x00' E:bF st=0");
}

static void test_ws_rsv1_errors(void **state)
{
    (void)state;
    struct up_ws_cfg cfg = cfg_of(UP_WS_CLIENT);
    /* Without the flag RSV1 is a reserved bit, as before. */
    EPROTO_1002(&cfg, "c1 07 f2 48 cd c9 c9 07 00", "ws: reserved bits set");
    cfg.permessage_deflate = true;
    /* RFC 7692 §6.1: only on the first frame of a message; §6: never on control frames. */
    EPROTO_1002(&cfg, "41 03 f2 48 cd c0 04 c9 c9 07 00", "ws: RSV1 on a continuation frame");
    EPROTO_1002(&cfg, "01 01 61 c0 01 62", "ws: RSV1 on a continuation frame");
    EPROTO_1002(&cfg, "c0 00", "ws: RSV1 on a continuation frame");
    EPROTO_1002(&cfg, "c9 00", "ws: RSV1 on a control frame");
    EPROTO_1002(&cfg, "ca 00", "ws: RSV1 on a control frame");
    EPROTO_1002(&cfg, "c8 02 03 e8", "ws: RSV1 on a control frame");
    EPROTO_1002(&cfg, "c3 00", "ws: unknown opcode");
    EPROTO_1002(&cfg, "a1 00", "ws: reserved bits set");
    EPROTO_1002(&cfg, "91 00", "ws: reserved bits set");
    EPROTO_1002(&cfg, "f1 00", "ws: reserved bits set");
}

static void test_ws_write_frame_rsv(void **state)
{
    (void)state;
    struct up_buf b;
    up_buf_init(&b);
    static const uint8_t pl[] = {0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00};
    /* RFC 7692 §7.2.3.1, byte-exact */
    assert_int_equal(
        up_ws_write_frame_rsv(&b, 1024, UP_WS_OP_TEXT, true, UP_WS_RSV1, pl, sizeof pl, NULL),
        UP_OK);
    uint8_t want[16];
    size_t n = hex("c1 07 f2 48 cd c9 c9 07 00", want, sizeof want);
    assert_int_equal(up_buf_len(&b), n);
    assert_memory_equal(up_buf_rptr(&b), want, n);
    uint8_t hdr[UP_WS_MAX_HEADER];
    assert_int_equal(up_ws_encode_header_rsv(hdr, UP_WS_OP_BINARY, false, UP_WS_RSV1, 300, NULL),
                     4);
    assert_int_equal(hdr[0], 0x42);
    /* Round trip, masked, through a server parser with the flag. */
    static const uint8_t mask[4] = {1, 2, 3, 4};
    up_buf_skip(&b, up_buf_len(&b));
    assert_int_equal(
        up_ws_write_frame_rsv(&b, 1024, UP_WS_OP_BINARY, false, UP_WS_RSV1, pl, 3, mask), UP_OK);
    assert_int_equal(up_ws_write_frame_rsv(&b, 1024, UP_WS_OP_CONT, true, 0, pl + 3, 4, mask),
                     UP_OK);
    struct up_ws_cfg srv = cfg_of(UP_WS_SERVER);
    srv.permessage_deflate = true;
    expect_trace(&srv, up_buf_rptr(&b), up_buf_len(&b),
                 "B:b-1:3 D'\\xf2H\\xcd' E:b- B:bF-:4 D'\\xc9\\xc9\\x07\\x00' E:bF st=0");
    /* Misuse */
    assert_int_equal(up_ws_write_frame_rsv(&b, 1024, UP_WS_OP_CONT, true, UP_WS_RSV1, pl, 1, NULL),
                     UP_EINVAL);
    assert_int_equal(up_ws_write_frame_rsv(&b, 1024, UP_WS_OP_PING, true, UP_WS_RSV1, pl, 1, NULL),
                     UP_EINVAL);
    assert_int_equal(up_ws_write_frame_rsv(&b, 1024, UP_WS_OP_TEXT, true, 0x80, pl, 1, NULL),
                     UP_EINVAL);
    /* The plain writer never sets RSV bits. */
    up_buf_skip(&b, up_buf_len(&b));
    assert_int_equal(up_ws_write_frame(&b, 1024, UP_WS_OP_TEXT, true, pl, 1, NULL), UP_OK);
    assert_int_equal(up_buf_rptr(&b)[0], 0x81);
    up_buf_fini(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ws_rfc_unmasked_hello),
        cmocka_unit_test(test_ws_rfc_masked_hello),
        cmocka_unit_test(test_ws_rfc_fragmented_hello),
        cmocka_unit_test(test_ws_rfc_ping_pong),
        cmocka_unit_test(test_ws_rfc_binary_256),
        cmocka_unit_test(test_ws_rfc_binary_64k),
        cmocka_unit_test(test_ws_rfc_encode_vectors),
        cmocka_unit_test(test_ws_empty_data_frame_begin_end),
        cmocka_unit_test(test_ws_end_pending_after_last_byte),
        cmocka_unit_test(test_ws_payload_unmasked_in_place),
        cmocka_unit_test(test_ws_control_interleaved_in_fragmented_message),
        cmocka_unit_test(test_ws_error_reserved_bits),
        cmocka_unit_test(test_ws_error_unknown_opcode),
        cmocka_unit_test(test_ws_error_masking_by_role),
        cmocka_unit_test(test_ws_error_control_frames),
        cmocka_unit_test(test_ws_control_length_limit),
        cmocka_unit_test(test_ws_error_continuation_without_message),
        cmocka_unit_test(test_ws_error_new_message_inside_fragmented),
        cmocka_unit_test(test_ws_error_length_encoding),
        cmocka_unit_test(test_ws_frame_limit),
        cmocka_unit_test(test_ws_message_limit),
        cmocka_unit_test(test_ws_error_is_sticky),
        cmocka_unit_test(test_ws_used_always_set),
        cmocka_unit_test(test_ws_utf8_split_across_frames),
        cmocka_unit_test(test_ws_utf8_invalid_fails_fast),
        cmocka_unit_test(test_ws_utf8_incomplete_at_fin),
        cmocka_unit_test(test_ws_utf8_binary_and_disabled),
        cmocka_unit_test(test_ws_close_frames),
        cmocka_unit_test(test_ws_close_codes),
        cmocka_unit_test(test_ws_close_reason_utf8),
        cmocka_unit_test(test_ws_input_after_close),
        cmocka_unit_test(test_ws_header_size),
        cmocka_unit_test(test_ws_roundtrip_data_frames),
        cmocka_unit_test(test_ws_roundtrip_control_frames),
        cmocka_unit_test(test_ws_write_frame_errors),
        cmocka_unit_test(test_ws_write_close),
        cmocka_unit_test(test_ws_write_close_truncates_on_code_point),
        cmocka_unit_test(test_ws_mask_matches_reference),
        cmocka_unit_test(test_ws_mask_split_equals_whole),
        cmocka_unit_test(test_ws_accept_rfc_vector),
        cmocka_unit_test(test_ws_check_upgrade_rfc_request),
        cmocka_unit_test(test_ws_check_upgrade_rejects),
        cmocka_unit_test(test_ws_check_response),
        cmocka_unit_test(test_ws_handshake_parsed_by_h1),
        cmocka_unit_test(test_ws_rsv1_permessage_deflate),
        cmocka_unit_test(test_ws_rsv1_errors),
        cmocka_unit_test(test_ws_write_frame_rsv),
        cmocka_unit_test(test_ws_skip_payload_out_of_band),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
