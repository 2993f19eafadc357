/* Unit tests for the mux session core (src/proto/session.c), nghttp2-style: scripted frame
 * sequences (encoded with the up_mux_encode_* functions) go in, and the exact events and the
 * exact control frames that come out are asserted. Rules cite docs/PROTOCOL.md. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/alloc.h"
#include "base/bytes.h"
#include "proto/mux.h"
#include "proto/session.h"

/* ---- harness ---------------------------------------------------------------------------- */

#define MAXEV 32
struct rec {
    enum up_sess_ev_kind kind;
    uint32_t sid, window, code;
    size_t len;
    char text[300]; /* DATA bytes, OPEN name, CLOSE/GOAWAY reason */
    struct up_sess_stream *st;
};

struct h {
    struct up_sess s;
    struct up_sess_stream st[64];
    struct rec ev[MAXEV];
    size_t nev;
    int rv;
    uint8_t out[UP_SESS_OUT_CAP];
    size_t out_len;
};

static void setup(struct h *h, bool client, void (*tweak)(struct up_sess_cfg *))
{
    memset(h, 0, sizeof(*h));
    struct up_sess_cfg cfg;
    up_sess_cfg_defaults(&cfg, client);
    if (tweak) {
        tweak(&cfg);
    }
    assert_int_equal(up_sess_init(&h->s, &cfg), UP_OK);
}

/* Feed bytes; record every event until NONE or an error. */
static void feed(struct h *h, const uint8_t *in, size_t n, uint64_t now_us)
{
    h->nev = 0;
    for (;;) {
        struct up_sess_ev ev;
        size_t used = 0;
        h->rv = up_sess_parse(&h->s, in, n, &used, &ev, now_us);
        in += used;
        n -= used;
        if (h->rv < 0 || ev.kind == UP_SESS_EV_NONE) {
            assert_true(h->rv < 0 || n == 0);
            return;
        }
        assert_true(h->nev < MAXEV);
        struct rec *r = &h->ev[h->nev++];
        memset(r, 0, sizeof(*r));
        r->kind = ev.kind;
        r->sid = ev.sid;
        r->window = ev.window;
        r->code = ev.code;
        r->len = ev.len;
        r->st = ev.st;
        if (ev.kind == UP_SESS_EV_DATA) {
            memcpy(r->text, ev.data, ev.len < 299 ? ev.len : 299);
        } else if (ev.kind == UP_SESS_EV_OPEN) {
            memcpy(r->text, ev.name, ev.name_len);
        } else if (ev.reason) {
            snprintf(r->text, sizeof r->text, "%s", ev.reason);
        }
    }
}

/* Take every queued control frame. */
static size_t take_out(struct h *h)
{
    h->out_len = 0;
    size_t n;
    const uint8_t *f;
    while ((f = up_sess_frame_peek(&h->s, &n)) != NULL) {
        memcpy(h->out + h->out_len, f, n);
        h->out_len += n;
        up_sess_frame_pop(&h->s);
    }
    return h->out_len;
}

static void expect_out(struct h *h, const uint8_t *want, size_t n)
{
    take_out(h);
    assert_int_equal(h->out_len, n);
    assert_memory_equal(h->out, want, n);
}

/* Frame builders. */
static size_t f_open(uint8_t *b, uint32_t sid, uint32_t win, const char *name)
{
    int n = up_mux_encode_open(b, 2048, sid, win, name, NULL, 0);
    assert_true(n > 0);
    return (size_t)n;
}
static size_t f_accept(uint8_t *b, uint32_t sid, uint32_t win)
{
    int n = up_mux_encode_accept(b, 64, sid, win);
    assert_true(n > 0);
    return (size_t)n;
}
static size_t f_credit(uint8_t *b, uint32_t sid, uint32_t inc)
{
    int n = up_mux_encode_credit(b, 64, sid, inc);
    assert_true(n > 0);
    return (size_t)n;
}
static size_t f_rst(uint8_t *b, uint32_t sid, uint32_t code, const char *why)
{
    int n = up_mux_encode_rst(b, 512, sid, code, why);
    assert_true(n > 0);
    return (size_t)n;
}
static size_t f_goaway(uint8_t *b, uint32_t last, uint32_t code, const char *why)
{
    int n = up_mux_encode_goaway(b, 512, last, code, why);
    assert_true(n > 0);
    return (size_t)n;
}
static size_t f_data(uint8_t *b, uint32_t sid, const void *p, size_t n, bool fin)
{
    up_mux_encode_hdr(b, (uint32_t)n, UP_MUX_DATA, fin ? UP_MUX_FLAG_FIN : 0, sid);
    if (n) {
        memcpy(b + UP_MUX_HDR, p, n);
    }
    return UP_MUX_HDR + n;
}
static size_t f_ping(uint8_t *b, uint64_t v, bool ack)
{
    uint8_t op[8];
    up_wr_u64be(op, v);
    int n = up_mux_encode_ping(b, 64, op, ack);
    assert_true(n > 0);
    return (size_t)n;
}

/* Server session with stream 1 opened by the peer, attached and accepted. */
static struct up_sess_stream *server_with_stream(struct h *h, uint32_t peer_win,
                                                 void (*tweak)(struct up_sess_cfg *))
{
    uint8_t b[2048];
    setup(h, false, tweak);
    feed(h, b, f_open(b, 1, peer_win, "svc"), 0);
    assert_int_equal(h->nev, 1);
    assert_int_equal(h->ev[0].kind, UP_SESS_EV_OPEN);
    assert_int_equal(up_sess_attach(&h->s, &h->st[0], 1, peer_win, 0), UP_OK);
    up_sess_accept(&h->s, &h->st[0]);
    take_out(h);
    return &h->st[0];
}

/* ---- lifecycle ---------------------------------------------------------------------------- */

static void test_session_open_accept_data_fin_close(void **state)
{
    (void)state;
    struct h *h = calloc(1, sizeof(*h));
    uint8_t b[2048], w[2048];
    setup(h, true, NULL);
    struct up_sess_stream *st = &h->st[0];
    assert_int_equal(up_sess_open(&h->s, st, "ssh", (const uint8_t *)"peer=stdio\n", 11, 0), UP_OK);
    /* §5.2: OPEN with our window, id 1 (client parity). */
    int n = up_mux_encode_open(w, sizeof w, 1, UP_MUX_DEFAULT_WINDOW, "ssh",
                               (const uint8_t *)"peer=stdio\n", 11);
    expect_out(h, w, (size_t)n);
    assert_false(up_sess_can_send(st));
    up_sess_accept(&h->s, st); /* only the acceptor accepts: a no-op here */
    assert_int_equal(take_out(h), 0);
    assert_false(up_sess_can_send(st));
    /* ACCEPT: the event and the window it grants. */
    feed(h, b, f_accept(b, 1, 1000), 0);
    assert_int_equal(h->nev, 1);
    assert_int_equal(h->ev[0].kind, UP_SESS_EV_ACCEPT);
    assert_ptr_equal(h->ev[0].st, st);
    assert_true(up_sess_can_send(st));
    assert_int_equal(up_sess_send_avail(st), 1000);
    /* DATA from the peer, then its FIN. */
    size_t k = f_data(b, 1, "hello", 5, false);
    k += f_data(b + k, 1, "", 0, true);
    feed(h, b, k, 0);
    assert_int_equal(h->nev, 2);
    assert_int_equal(h->ev[0].kind, UP_SESS_EV_DATA);
    assert_string_equal(h->ev[0].text, "hello");
    assert_int_equal(h->ev[1].kind, UP_SESS_EV_FIN);
    /* No CREDIT after the peer's FIN (§9). */
    assert_int_equal(up_sess_consumed(&h->s, st, 5, 0), 0);
    assert_int_equal(take_out(h), 0);
    /* We send 3 bytes and FIN: both directions done, the stream is over. */
    up_sess_ready(&h->s, st);
    assert_ptr_equal(up_sess_next(&h->s, 0), st);
    assert_true(up_sess_pulled(&h->s, st, 3, true));
    assert_int_equal(up_sess_nstreams(&h->s), 0);
    assert_false(up_sess_stream_live(st));
    assert_int_equal(up_sess_send_avail(st), 997);
    /* Late frames for it are ignored (§8). */
    k = f_data(b, 1, "x", 1, false);
    k += f_credit(b + k, 1, 5);
    k += f_rst(b + k, 1, UP_MUX_C_CANCEL, "late");
    feed(h, b, k, 0);
    assert_int_equal(h->rv, UP_OK);
    assert_int_equal(h->nev, 0);
    assert_int_equal(take_out(h), 0);
    up_sess_fini(&h->s);
    free(h);
}

static void test_session_fin_received_last_closes(void **state)
{
    (void)state;
    struct h *h = calloc(1, sizeof(*h));
    uint8_t b[64];
    struct up_sess_stream *st = server_with_stream(h, 1000, NULL);
    up_sess_ready(&h->s, st);
    assert_ptr_equal(up_sess_next(&h->s, 0), st);
    assert_false(up_sess_pulled(&h->s, st, 0, true)); /* our FIN first */
    feed(h, b, f_data(b, 1, "", 0, true), 0);
    /* FIN, then the normal CLOSE on the next call (after the owner saw the FIN). */
    assert_int_equal(h->nev, 2);
    assert_int_equal(h->ev[0].kind, UP_SESS_EV_FIN);
    assert_int_equal(h->ev[1].kind, UP_SESS_EV_CLOSE);
    assert_int_equal(h->ev[1].code, UP_MUX_C_NONE);
    assert_string_equal(h->ev[1].text, "");
    assert_int_equal(up_sess_nstreams(&h->s), 0);
    up_sess_fini(&h->s);
    free(h);
}

static void test_session_rst_from_peer(void **state)
{
    (void)state;
    struct h *h = calloc(1, sizeof(*h));
    uint8_t b[512];
    server_with_stream(h, 1000, NULL);
    feed(h, b, f_rst(b, 1, 0, "gone"), 0);
    assert_int_equal(h->nev, 1);
    assert_int_equal(h->ev[0].kind, UP_SESS_EV_CLOSE);
    assert_int_equal(h->ev[0].code, UP_MUX_C_CANCEL); /* §5.5: 0 reads as cancel */
    assert_string_equal(h->ev[0].text, "gone");
    assert_int_equal(take_out(h), 0);
    up_sess_fini(&h->s);
    free(h);
}

/* ---- ids (§3) ------------------------------------------------------------------------------ */

static void test_session_ids_parity_and_monotonic(void **state)
{
    (void)state;
    struct h *h = calloc(1, sizeof(*h));
    setup(h, false, NULL);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(up_sess_open(&h->s, &h->st[i], "svc", NULL, 0, 0), UP_OK);
        assert_int_equal(up_sess_stream_id(&h->st[i]), 2 + 2 * (uint32_t)i);
    }
    up_sess_fini(&h->s);
    setup(h, true, NULL);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(up_sess_open(&h->s, &h->st[i], "svc", NULL, 0, 0), UP_OK);
        assert_int_equal(up_sess_stream_id(&h->st[i]), 1 + 2 * (uint32_t)i);
    }
    /* An OPEN with our own parity is a link error (GOAWAY protocol-error). */
    uint8_t b[2048], w[512];
    take_out(h);
    feed(h, b, f_open(b, 3, 1000, "svc"), 0);
    assert_int_equal(h->rv, UP_EPROTO);
    expect_out(h, w, f_goaway(w, 0, UP_MUX_C_PROTOCOL, "mux: OPEN with our stream id parity"));
    up_sess_fini(&h->s);
    free(h);
}

static void test_session_id_reuse_goaway(void **state)
{
    (void)state;
    struct h *h = calloc(1, sizeof(*h));
    uint8_t b[2048], w[512];
    const char *why = "mux: OPEN with a stream id not above the last";
    /* The same id again while it is live, and a lower one: both close the link with GOAWAY. */
    for (uint32_t again = 1; again <= 3; again += 2) {
        setup(h, false, NULL);
        feed(h, b, f_open(b, 3, 1000, "svc"), 0);
        assert_int_equal(h->nev, 1);
        assert_int_equal(up_sess_attach(&h->s, &h->st[0], 3, 1000, 0), UP_OK);
        feed(h, b, f_open(b, again, 1000, "svc"), 0);
        assert_int_equal(h->rv, UP_EPROTO);
        assert_int_equal(h->nev, 0);
        expect_out(h, w, f_goaway(w, 3, UP_MUX_C_PROTOCOL, why));
        assert_string_equal(up_sess_err_reason(&h->s), why);
        assert_int_equal(up_sess_stats(&h->s)->protocol_errors, 1);
        /* Failed: every later call fails the same way, nothing more goes out. */
        feed(h, b, f_ping(b, 1, false), 0);
        assert_int_equal(h->rv, UP_EPROTO);
        assert_int_equal(take_out(h), 0);
        assert_false(up_sess_can_open(&h->s));
        up_sess_fini(&h->s);
    }
    free(h);
}

static void test_session_text_message_goaway(void **state)
{
    (void)state;
    struct h *h = calloc(1, sizeof(*h));
    uint8_t w[512];
    setup(h, true, NULL);
    up_sess_protocol_error(&h->s, "mux: text message on a mux link");
    up_sess_protocol_error(&h->s, "second"); /* idempotent */
    expect_out(h, w, f_goaway(w, 0, UP_MUX_C_PROTOCOL, "mux: text message on a mux link"));
    assert_string_equal(up_sess_err_reason(&h->s), "mux: text message on a mux link");
    up_sess_fini(&h->s);
    free(h);
}

/* ---- DATA before ACCEPT (§8, §9) ------------------------------------------------------------ */

static void test_session_data_before_accept_acceptor(void **state)
{
    (void)state;
    struct h *h = calloc(1, sizeof(*h));
    uint8_t b[2048], w[512];
    setup(h, false, NULL);
    feed(h, b, f_open(b, 1, 1000, "svc"), 0);
    assert_int_equal(up_sess_attach(&h->s, &h->st[0], 1, 1000, 0), UP_OK);
    /* Attached, not accepted yet: the peer must not send DATA. */
    feed(h, b, f_data(b, 1, "early", 5, false), 0);
    assert_int_equal(h->rv, UP_OK);
    assert_int_equal(h->nev, 1);
    assert_int_equal(h->ev[0].kind, UP_SESS_EV_CLOSE);
    assert_int_equal(h->ev[0].code, UP_MUX_C_PROTOCOL);
    assert_string_equal(h->ev[0].text, "peer sent DATA before ACCEPT");
    expect_out(h, w, f_rst(w, 1, UP_MUX_C_PROTOCOL, "DATA before ACCEPT"));
    assert_int_equal(up_sess_nstreams(&h->s), 0);
    /* The rest of the frame and later ones are late frames: ignored. */
    feed(h, b, f_data(b, 1, "more", 4, true), 0);
    assert_int_equal(h->nev, 0);
    assert_int_equal(take_out(h), 0);
    up_sess_fini(&h->s);
    free(h);
}

static void test_session_data_before_accept_opener(void **state)
{
    (void)state;
    struct h *h = calloc(1, sizeof(*h));
    uint8_t b[64], w[512];
    setup(h, true, NULL);
    assert_int_equal(up_sess_open(&h->s, &h->st[0], "svc", NULL, 0, 0), UP_OK);
    take_out(h);
    /* A FIN alone is a DATA frame too. */
    feed(h, b, f_data(b, 1, "", 0, true), 0);
    assert_int_equal(h->nev, 1);
    assert_int_equal(h->ev[0].kind, UP_SESS_EV_CLOSE);
    assert_int_equal(h->ev[0].code, UP_MUX_C_PROTOCOL);
    expect_out(h, w, f_rst(w, 1, UP_MUX_C_PROTOCOL, "DATA before ACCEPT"));
    up_sess_fini(&h->s);
    free(h);
}

static void test_session_data_before_accept_spliced(void **state)
{
    (void)state;
    struct h *h = calloc(1, sizeof(*h));
    uint8_t b[2048], w[512];
    setup(h, true, NULL);
    assert_int_equal(up_sess_open(&h->s, &h->st[0], "svc", NULL, 0, 0), UP_OK);
    take_out(h);
    /* Only the header through the parser; the payload moves out of band (splice). */
    size_t k = f_data(b, 1, "0123456789", 10, false);
    feed(h, b, UP_MUX_HDR, 0);
    struct up_sess_stream *st = NULL;
    assert_int_equal(up_sess_data_left(&h->s, &st), 10);
    assert_ptr_equal(st, &h->st[0]);
    assert_false(up_sess_skip_data(&h->s, 10));
    feed(h, b + k, 0, 0);
    assert_int_equal(h->nev, 1);
    assert_int_equal(h->ev[0].kind, UP_SESS_EV_CLOSE);
    assert_int_equal(h->ev[0].code, UP_MUX_C_PROTOCOL);
    expect_out(h, w, f_rst(w, 1, UP_MUX_C_PROTOCOL, "DATA before ACCEPT"));
    up_sess_fini(&h->s);
    free(h);
}

/* We never send DATA before ACCEPT either: the scheduler holds the stream back. */
static void test_session_no_send_before_accept(void **state)
{
    (void)state;
    struct h *h = calloc(1, sizeof(*h));
    uint8_t b[64];
    setup(h, true, NULL);
    struct up_sess_stream *st = &h->st[0];
    assert_int_equal(up_sess_open(&h->s, st, "svc", NULL, 0, 0), UP_OK);
    up_sess_ready(&h->s, st);
    assert_null(up_sess_next(&h->s, 0));
    feed(h, b, f_accept(b, 1, 100), 0);
    assert_ptr_equal(up_sess_next(&h->s, 0), st); /* re-added on ACCEPT */
    up_sess_fini(&h->s);
    free(h);
}

/* ---- flow control (§9) ------------------------------------------------------------------- */

static void small_window(struct up_sess_cfg *c)
{
    c->window = 1000;
    c->max_window = 4000;
    c->min_rtt_us = 0;
}

static void test_session_window_limit(void **state)
{
    (void)state;
    struct h *h = calloc(1, sizeof(*h));
    static uint8_t b[4096], pay[1001], w[512];
    memset(pay, 'a', sizeof pay);
    /* window - 1, then the last byte: admitted; one more: RST flow-control. */
    server_with_stream(h, 1000, small_window);
    feed(h, b, f_data(b, 1, pay, 999, false), 0);
    assert_int_equal(h->nev, 1);
    assert_int_equal(h->ev[0].len, 999);
    feed(h, b, f_data(b, 1, pay, 1, false), 0);
    assert_int_equal(h->nev, 1);
    assert_int_equal(h->ev[0].kind, UP_SESS_EV_DATA);
    assert_int_equal(take_out(h), 0);
    feed(h, b, f_data(b, 1, pay, 1, false), 0);
    assert_int_equal(h->nev, 1);
    assert_int_equal(h->ev[0].kind, UP_SESS_EV_CLOSE);
    assert_int_equal(h->ev[0].code, UP_MUX_C_FLOW);
    expect_out(h, w, f_rst(w, 1, UP_MUX_C_FLOW, "data beyond the granted window"));
    up_sess_fini(&h->s);
    /* Exactly the window in one frame: admitted. */
    server_with_stream(h, 1000, small_window);
    feed(h, b, f_data(b, 1, pay, 1000, false), 0);
    assert_int_equal(h->ev[0].kind, UP_SESS_EV_DATA);
    assert_int_equal(h->ev[0].len, 1000);
    up_sess_fini(&h->s);
    /* window + 1 in one frame: refused, never delivered. */
    server_with_stream(h, 1000, small_window);
    feed(h, b, f_data(b, 1, pay, 1001, false), 0);
    assert_int_equal(h->nev, 1);
    assert_int_equal(h->ev[0].kind, UP_SESS_EV_CLOSE);
    assert_int_equal(h->ev[0].code, UP_MUX_C_FLOW);
    expect_out(h, w, f_rst(w, 1, UP_MUX_C_FLOW, "data beyond the granted window"));
    assert_int_equal(up_sess_stats(&h->s)->bytes_in, 0);
    up_sess_fini(&h->s);
    free(h);
}

static void test_session_credit_overflow(void **state)
{
    (void)state;
    struct h *h = calloc(1, sizeof(*h));
    uint8_t b[64], w[512];
    struct up_sess_stream *st = server_with_stream(h, 1000, NULL);
    /* 1000 + (2^31-1-1000) is the most: fine; one more byte overflows. */
    feed(h, b, f_credit(b, 1, UP_MUX_MAX_WINDOW - 1000), 0);
    assert_int_equal(h->nev, 0);
    assert_int_equal(up_sess_send_avail(st), UP_MUX_MAX_WINDOW);
    feed(h, b, f_credit(b, 1, 1), 0);
    assert_int_equal(h->nev, 1);
    assert_int_equal(h->ev[0].kind, UP_SESS_EV_CLOSE);
    assert_int_equal(h->ev[0].code, UP_MUX_C_FLOW);
    assert_string_equal(h->ev[0].text, "peer granted more than 2^31-1");
    expect_out(h, w, f_rst(w, 1, UP_MUX_C_FLOW, "credit overflow"));
    up_sess_fini(&h->s);
    free(h);
}

/* The example of §9: window 1000, max_window 4000, RTT 100 µs. */
static void test_session_credit_half_window_and_autotune(void **state)
{
    (void)state;
    struct h *h = calloc(1, sizeof(*h));
    static uint8_t b[2048], pay[600], w[64];
    for (int fast = 0; fast <= 1; fast++) {
        struct up_sess_stream *st = server_with_stream(h, 1000, small_window);
        up_sess_ping(&h->s, 0);
        take_out(h);
        feed(h, b, f_ping(b, 0, true), 100);
        assert_int_equal(up_sess_srtt_us(&h->s), 100);
        feed(h, b, f_data(b, 1, pay, 600, false), 100);
        assert_int_equal(up_sess_consumed(&h->s, st, 499, 200), 0);
        assert_int_equal(take_out(h), 0);
        uint64_t now = fast ? 300 : 400; /* within 4 RTTs of the grant at 0, or not */
        uint32_t inc = up_sess_consumed(&h->s, st, 1, now);
        assert_int_equal(inc, fast ? 1500 : 500);
        expect_out(h, w, f_credit(w, 1, inc));
        up_sess_fini(&h->s);
    }
    free(h);
}

/* Growth only while the consumer keeps up (held == 0), and a budget that withholds credit
 * until a later call releases all of it. */
static void test_session_held_and_withheld_credit(void **state)
{
    (void)state;
    struct h *h = calloc(1, sizeof(*h));
    static uint8_t b[2048], pay[1000], w[64];
    struct up_sess_stream *st = server_with_stream(h, 1000, small_window);
    up_sess_ping(&h->s, 0);
    take_out(h);
    feed(h, b, f_ping(b, 0, true), 100);
    feed(h, b, f_data(b, 1, pay, 1000, false), 100);
    /* Fast, but 10 bytes still wait here: credit without growth. */
    assert_int_equal(up_sess_consumed_held(&h->s, st, 500, 10, 150), 500);
    expect_out(h, w, f_credit(w, 1, 500));
    /* Withheld: nothing goes out, however much is pending. */
    assert_int_equal(up_sess_consumed_ex(&h->s, st, 500, true, true, 160), 0);
    assert_int_equal(take_out(h), 0);
    /* Released by a later call, even one that delivers nothing new. */
    assert_int_equal(up_sess_consumed_ex(&h->s, st, 0, false, false, 170), 500);
    expect_out(h, w, f_credit(w, 1, 500));
    up_sess_fini(&h->s);
    free(h);
}

/* ---- limits and GOAWAY (§11) -------------------------------------------------------------- */

static void three_streams(struct up_sess_cfg *c)
{
    c->max_streams = 3;
}

static void test_session_max_streams(void **state)
{
    (void)state;
    struct h *h = calloc(1, sizeof(*h));
    uint8_t b[2048], w[512];
    setup(h, false, three_streams);
    /* limit-1 live: the OPEN is offered; attaching it reaches the limit. */
    assert_int_equal(up_sess_open(&h->s, &h->st[0], "svc", NULL, 0, 0), UP_OK);
    feed(h, b, f_open(b, 1, 1000, "svc"), 0);
    assert_int_equal(h->ev[0].kind, UP_SESS_EV_OPEN);
    assert_int_equal(up_sess_attach(&h->s, &h->st[1], 1, 1000, 0), UP_OK);
    feed(h, b, f_open(b, 3, 1000, "svc"), 0);
    assert_int_equal(h->ev[0].kind, UP_SESS_EV_OPEN);
    assert_int_equal(up_sess_attach(&h->s, &h->st[2], 3, 1000, 0), UP_OK);
    take_out(h);
    /* At the limit: the next OPEN (limit+1) is refused with RST limit, no event. */
    feed(h, b, f_open(b, 5, 1000, "svc"), 0);
    assert_int_equal(h->nev, 0);
    expect_out(h, w, f_rst(w, 5, UP_MUX_C_LIMIT, "too many streams on this link"));
    assert_int_equal(up_sess_open(&h->s, &h->st[3], "svc", NULL, 0, 0), UP_ELIMIT);
    assert_int_equal(up_sess_stats(&h->s)->streams_refused, 1);
    /* One ends: room again. */
    up_sess_reset(&h->s, &h->st[1], UP_MUX_C_CANCEL, "bye");
    take_out(h);
    feed(h, b, f_open(b, 7, 1000, "svc"), 0);
    assert_int_equal(h->ev[0].kind, UP_SESS_EV_OPEN);
    up_sess_fini(&h->s);
    free(h);
}

static void test_session_goaway_sent_refuses_open(void **state)
{
    (void)state;
    struct h *h = calloc(1, sizeof(*h));
    uint8_t b[2048], w[512];
    setup(h, false, NULL);
    feed(h, b, f_open(b, 1, 1000, "svc"), 0);
    assert_int_equal(up_sess_attach(&h->s, &h->st[0], 1, 1000, 0), UP_OK);
    up_sess_goaway(&h->s, UP_MUX_C_SHUTDOWN, "relay shutting down");
    up_sess_goaway(&h->s, UP_MUX_C_SHUTDOWN, "twice"); /* idempotent */
    expect_out(h, w, f_goaway(w, 1, UP_MUX_C_SHUTDOWN, "relay shutting down"));
    feed(h, b, f_open(b, 3, 1000, "svc"), 0);
    assert_int_equal(h->nev, 0);
    expect_out(h, w, f_rst(w, 3, UP_MUX_C_SHUTDOWN, "refused: relay shutting down"));
    /* The stream already open goes on. */
    up_sess_accept(&h->s, &h->st[0]);
    take_out(h);
    feed(h, b, f_data(b, 1, "x", 1, false), 0);
    assert_int_equal(h->ev[0].kind, UP_SESS_EV_DATA);
    up_sess_fini(&h->s);
    /* Draining without a GOAWAY refuses the same way. */
    setup(h, false, NULL);
    up_sess_drain(&h->s);
    assert_false(up_sess_can_open(&h->s));
    feed(h, b, f_open(b, 1, 1000, "svc"), 0);
    assert_int_equal(h->nev, 0);
    expect_out(h, w, f_rst(w, 1, UP_MUX_C_SHUTDOWN, "refused: link is going away"));
    up_sess_fini(&h->s);
    free(h);
}

static void test_session_goaway_received(void **state)
{
    (void)state;
    struct h *h = calloc(1, sizeof(*h));
    uint8_t b[512];
    setup(h, true, NULL);
    assert_true(up_sess_can_open(&h->s));
    feed(h, b, f_goaway(b, 0, UP_MUX_C_SHUTDOWN, "bye"), 0);
    assert_int_equal(h->nev, 1);
    assert_int_equal(h->ev[0].kind, UP_SESS_EV_GOAWAY);
    assert_int_equal(h->ev[0].code, UP_MUX_C_SHUTDOWN);
    assert_string_equal(h->ev[0].text, "bye");
    assert_false(up_sess_can_open(&h->s));
    assert_true(up_sess_goaway_rcvd(&h->s));
    assert_int_equal(up_sess_open(&h->s, &h->st[0], "svc", NULL, 0, 0), UP_ESTATE);
    up_sess_fini(&h->s);
    free(h);
}

/* ---- scheduling ---------------------------------------------------------------------------- */

static void test_session_round_robin_and_quantum(void **state)
{
    (void)state;
    struct h *h = calloc(1, sizeof(*h));
    uint8_t b[64];
    setup(h, true, NULL);
    const size_t q = UP_SESS_DEFAULT_QUANTUM, high = UP_SESS_DEFAULT_TX_HIGH;
    const size_t fq = UP_SESS_DEFAULT_FRESH_QUANTUM;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(up_sess_open(&h->s, &h->st[i], "svc", NULL, 0, 0), UP_OK);
        feed(h, b, f_accept(b, 1 + 2 * (uint32_t)i, 1u << 20), 0);
        up_sess_ready(&h->s, &h->st[i]);
    }
    /* Several wait: a fresh quantum each first (they just woke up), then one quantum each,
     * in turn. */
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 3; i++) {
            struct up_sess_stream *st = up_sess_next(&h->s, 0);
            assert_ptr_equal(st, &h->st[i]);
            size_t want = round == 0 ? fq : q;
            assert_int_equal(up_sess_frame_max(&h->s, st, 0), want);
            assert_false(up_sess_pulled(&h->s, st, want, false));
        }
    }
    /* Nothing more from stream 0 (pull returned 0): it leaves the list. */
    assert_false(up_sess_pulled(&h->s, up_sess_next(&h->s, 0), 0, false));
    assert_false(up_sess_stream_queued(&h->st[0]));
    /* No turn at all while the shell holds tx_high. */
    assert_null(up_sess_next(&h->s, high));
    /* Stream 1 alone after stream 2 is out of data: a larger frame, up to tx_high + one
     * quantum of output, never above max_frame. */
    assert_false(up_sess_pulled(&h->s, up_sess_next(&h->s, 0), q, false)); /* 1 */
    assert_false(up_sess_pulled(&h->s, up_sess_next(&h->s, 0), 0, false)); /* 2 leaves */
    struct up_sess_stream *st = up_sess_next(&h->s, 0);
    assert_ptr_equal(st, &h->st[1]);
    assert_int_equal(up_sess_frame_max(&h->s, st, 0), high + q);
    assert_int_equal(up_sess_frame_max(&h->s, st, 100000), high + q - 100000);
    assert_int_equal(up_sess_burst_max(&h->s, st, 1u << 20), 1u << 20);
    /* Credit bounds it. */
    assert_false(up_sess_pulled(&h->s, st, (1u << 20) - fq - 3 * q - 1000, false));
    assert_int_equal(up_sess_frame_max(&h->s, st, 0), 1000);
    assert_false(up_sess_pulled(&h->s, st, 1000, false));
    assert_false(up_sess_stream_queued(st)); /* out of credit: off the list */
    feed(h, b, f_credit(b, 3, 10), 0);
    assert_true(up_sess_stream_queued(st)); /* a CREDIT puts it back */
    up_sess_fini(&h->s);
    free(h);
}

/* A stream that wakes up goes ahead of the streams that keep sending, for one fresh quantum,
 * after the others that woke up before it; with more to send it then joins the back. */
static void test_session_fresh_streams_first(void **state)
{
    (void)state;
    struct h *h = calloc(1, sizeof(*h));
    uint8_t b[64];
    setup(h, true, NULL);
    const size_t q = UP_SESS_DEFAULT_QUANTUM, fq = UP_SESS_DEFAULT_FRESH_QUANTUM;
    for (int i = 0; i < 5; i++) {
        assert_int_equal(up_sess_open(&h->s, &h->st[i], "svc", NULL, 0, 0), UP_OK);
        feed(h, b, f_accept(b, 1 + 2 * (uint32_t)i, 1u << 20), 0);
    }
    /* Streams 0 and 1 are bulk: past their fresh turn, in the round robin. */
    for (int i = 0; i < 2; i++) {
        up_sess_ready(&h->s, &h->st[i]);
    }
    for (int i = 0; i < 2; i++) {
        struct up_sess_stream *st = up_sess_next(&h->s, 0);
        assert_int_equal(up_sess_frame_max(&h->s, st, 0), fq);
        assert_false(up_sess_pulled(&h->s, st, fq, false));
    }
    /* 2 and 3 wake up: both go before the bulk streams, in the order they woke. */
    up_sess_ready(&h->s, &h->st[2]);
    up_sess_ready(&h->s, &h->st[3]);
    up_sess_ready(&h->s, &h->st[0]); /* already waiting: keeps its place */
    struct up_sess_stream *st = up_sess_next(&h->s, 0);
    assert_ptr_equal(st, &h->st[2]);
    assert_int_equal(up_sess_frame_max(&h->s, st, 0), fq);
    assert_int_equal(up_sess_burst_max(&h->s, st, 1u << 20), fq);
    assert_false(up_sess_pulled(&h->s, st, 1, false)); /* a keystroke */
    /* 4 wakes up after 2 had its turn: it still goes before the bulk streams, after 3. */
    up_sess_ready(&h->s, &h->st[4]);
    assert_ptr_equal(up_sess_next(&h->s, 0), &h->st[3]);
    assert_false(up_sess_pulled(&h->s, &h->st[3], fq, false)); /* more to send */
    assert_ptr_equal(up_sess_next(&h->s, 0), &h->st[4]);
    assert_false(up_sess_pulled(&h->s, &h->st[4], 0, false)); /* nothing after all: leaves */
    assert_false(up_sess_stream_queued(&h->st[4]));
    /* Then the round robin: 0, 1, then 2 and 3 at the back, with whole quanta. */
    const int order[] = {0, 1, 2, 3};
    for (int k = 0; k < 4; k++) {
        st = up_sess_next(&h->s, 0);
        assert_ptr_equal(st, &h->st[order[k]]);
        assert_int_equal(up_sess_frame_max(&h->s, st, 0), q);
        assert_false(up_sess_pulled(&h->s, st, k == 2 ? 0 : q, false));
    }
    /* 2 had nothing and left; a CREDIT-less wake-up of 2 makes it fresh again. */
    up_sess_ready(&h->s, &h->st[2]);
    assert_ptr_equal(up_sess_next(&h->s, 0), &h->st[2]);
    assert_int_equal(up_sess_frame_max(&h->s, &h->st[2], 0), fq);
    up_sess_fini(&h->s);
    free(h);
}

static void small_frame(struct up_sess_cfg *c)
{
    c->max_frame = 100000;
}

static void test_session_lone_frame_max_frame(void **state)
{
    (void)state;
    struct h *h = calloc(1, sizeof(*h));
    uint8_t b[64];
    setup(h, true, small_frame);
    assert_int_equal(up_sess_open(&h->s, &h->st[0], "svc", NULL, 0, 0), UP_OK);
    feed(h, b, f_accept(b, 1, 1u << 20), 0);
    up_sess_ready(&h->s, &h->st[0]);
    assert_int_equal(up_sess_frame_max(&h->s, up_sess_next(&h->s, 0), 0), 100000);
    up_sess_fini(&h->s);
    free(h);
}

/* ---- PING (§10) ----------------------------------------------------------------------------- */

static void test_session_ping_pong_rtt(void **state)
{
    (void)state;
    struct h *h = calloc(1, sizeof(*h));
    uint8_t b[64], w[64];
    setup(h, true, NULL);
    /* §5.6 vector: PING at 12 345 678 µs is answered with ACK and the same bytes. */
    feed(h, b, f_ping(b, 12345678, false), 0);
    assert_int_equal(h->nev, 0);
    static const uint8_t pong[] = {0x00, 0x00, 0x08, 0x05, 0x01, 0x00, 0x00, 0x00, 0x00,
                                   0x00, 0x00, 0x00, 0x00, 0x00, 0xbc, 0x61, 0x4e};
    expect_out(h, pong, sizeof pong);
    /* Our PING carries now; its PONG gives the RTT, smoothed 7/8. */
    up_sess_ping(&h->s, 1000);
    expect_out(h, w, f_ping(w, 1000, false));
    feed(h, b, f_ping(b, 1000, true), 1800);
    assert_int_equal(up_sess_srtt_us(&h->s), 800);
    feed(h, b, f_ping(b, 2000, true), 2000 + 1600);
    assert_int_equal(up_sess_srtt_us(&h->s), (800 * 7 + 1600) / 8);
    /* A sample from the future is ignored. */
    feed(h, b, f_ping(b, 99999, true), 5000);
    assert_int_equal(up_sess_srtt_us(&h->s), (800 * 7 + 1600) / 8);
    up_sess_fini(&h->s);
    free(h);
}

static void test_session_keepalive_misses(void **state)
{
    (void)state;
    struct h *h = calloc(1, sizeof(*h));
    uint8_t b[64];
    setup(h, true, NULL);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(up_sess_keepalive(&h->s, (uint64_t)i), UP_OK);
    }
    assert_int_equal(up_sess_keepalive(&h->s, 3), UP_ELIMIT);
    assert_int_equal(up_sess_pings_out(&h->s), 3);
    feed(h, b, f_ping(b, 2, true), 10);
    assert_int_equal(up_sess_pings_out(&h->s), 0);
    assert_int_equal(up_sess_keepalive(&h->s, 11), UP_OK);
    up_sess_fini(&h->s);
    free(h);
}

/* ---- allocation failures (STYLE §12) --------------------------------------------------------- */

struct failalloc {
    long fail_at; /* the n-th allocation fails (0-based); -1 never */
    long count;
    long live;
};

static void *fa_realloc(void *ud, void *p, size_t n)
{
    struct failalloc *fa = ud;
    if (n == 0) {
        if (p) {
            fa->live--;
        }
        free(p);
        return NULL;
    }
    if (fa->count++ == fa->fail_at) {
        return NULL;
    }
    void *q = realloc(p, n);
    if (q && !p) {
        fa->live++;
    }
    return q;
}

static void test_session_failalloc(void **state)
{
    (void)state;
    struct h *h = calloc(1, sizeof(*h));
    /* Count the allocations of init + 20 opens (one table growth), then fail each in turn. */
    long total = -1;
    for (long at = -1; at < total || total < 0; at++) {
        struct failalloc fa = {.fail_at = at};
        struct up_sess_cfg cfg;
        up_sess_cfg_defaults(&cfg, true);
        cfg.alloc.realloc_fn = fa_realloc;
        cfg.alloc.ud = &fa;
        memset(&h->s, 0, sizeof h->s);
        int rv = up_sess_init(&h->s, &cfg);
        if (rv < 0) {
            assert_int_equal(rv, UP_ENOMEM);
            assert_int_equal(fa.live, 0);
            continue;
        }
        int opened = 0;
        for (int i = 0; i < 20; i++) {
            rv = up_sess_open(&h->s, &h->st[i], "svc", NULL, 0, 0);
            if (rv == UP_ENOMEM) {
                assert_false(up_sess_stream_live(&h->st[i]));
                continue;
            }
            assert_int_equal(rv, UP_OK);
            opened++;
        }
        assert_int_equal(up_sess_nstreams(&h->s), (size_t)opened);
        for (int i = 0; i < 20; i++) {
            if (up_sess_stream_live(&h->st[i])) {
                assert_non_null(up_sess_find(&h->s, up_sess_stream_id(&h->st[i])));
            }
        }
        up_sess_fini(&h->s);
        up_sess_fini(&h->s); /* idempotent */
        assert_int_equal(fa.live, 0);
        if (at < 0) {
            total = fa.count;
            assert_true(total >= 3);
        }
    }
    free(h);
}

/* The control queue is bounded: a shell that never drains it fails the session, never grows
 * it. */
static void test_session_out_queue_bound(void **state)
{
    (void)state;
    struct h *h = calloc(1, sizeof(*h));
    struct up_sess_cfg cfg;
    up_sess_cfg_defaults(&cfg, true);
    cfg.out_cap = 100;
    assert_int_equal(up_sess_init(&h->s, &cfg), UP_EINVAL); /* cannot hold an OPEN */
    cfg.out_cap = 4096;
    assert_int_equal(up_sess_init(&h->s, &cfg), UP_OK);
    for (int i = 0; i < 4096 / 17; i++) {
        up_sess_ping(&h->s, (uint64_t)i);
        assert_null(up_sess_err_reason(&h->s));
    }
    assert_int_equal(up_sess_out_len(&h->s), 4096 / 17 * 17);
    up_sess_ping(&h->s, 0);
    assert_string_equal(up_sess_err_reason(&h->s), "mux: control output queue full");
    assert_true(up_sess_out_len(&h->s) <= 4096);
    up_sess_fini(&h->s);
    free(h);
}

/* Teardown: every stream comes back exactly once. */
static void test_session_take_streams(void **state)
{
    (void)state;
    struct h *h = calloc(1, sizeof(*h));
    setup(h, true, NULL);
    for (int i = 0; i < 40; i++) {
        assert_int_equal(up_sess_open(&h->s, &h->st[i], "svc", NULL, 0, 0), UP_OK);
        up_sess_ready(&h->s, &h->st[i]);
    }
    int seen[40] = {0};
    struct up_sess_stream *st;
    while ((st = up_sess_take_stream(&h->s)) != NULL) {
        seen[st - h->st]++;
        assert_false(up_sess_stream_queued(st));
    }
    for (int i = 0; i < 40; i++) {
        assert_int_equal(seen[i], 1);
    }
    assert_int_equal(up_sess_nstreams(&h->s), 0);
    assert_null(up_sess_next(&h->s, 0));
    up_sess_fini(&h->s);
    free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_session_open_accept_data_fin_close),
        cmocka_unit_test(test_session_fin_received_last_closes),
        cmocka_unit_test(test_session_rst_from_peer),
        cmocka_unit_test(test_session_ids_parity_and_monotonic),
        cmocka_unit_test(test_session_id_reuse_goaway),
        cmocka_unit_test(test_session_text_message_goaway),
        cmocka_unit_test(test_session_data_before_accept_acceptor),
        cmocka_unit_test(test_session_data_before_accept_opener),
        cmocka_unit_test(test_session_data_before_accept_spliced),
        cmocka_unit_test(test_session_no_send_before_accept),
        cmocka_unit_test(test_session_window_limit),
        cmocka_unit_test(test_session_credit_overflow),
        cmocka_unit_test(test_session_credit_half_window_and_autotune),
        cmocka_unit_test(test_session_max_streams),
        cmocka_unit_test(test_session_goaway_sent_refuses_open),
        cmocka_unit_test(test_session_goaway_received),
        cmocka_unit_test(test_session_held_and_withheld_credit),
        cmocka_unit_test(test_session_round_robin_and_quantum),
        cmocka_unit_test(test_session_fresh_streams_first),
        cmocka_unit_test(test_session_lone_frame_max_frame),
        cmocka_unit_test(test_session_ping_pong_rtt),
        cmocka_unit_test(test_session_keepalive_misses),
        cmocka_unit_test(test_session_failalloc),
        cmocka_unit_test(test_session_out_queue_bound),
        cmocka_unit_test(test_session_take_streams),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
