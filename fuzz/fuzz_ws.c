/* libFuzzer target for the RFC 6455 parser and writers (STYLE §14).
 *
 * Input: one control byte, then the wire bytes. Bit 0 of the control byte picks the parser
 * role; bits 1-7 pick a split point as a fraction of the input. For each input:
 *   1. parse it whole, recording an event trace;
 *   2. parse it again in two chunks cut at the split point: the trace must be identical;
 *   3. re-encode every complete frame of the trace with the writers (masked when the peer
 *      is a client) and parse the result: the trace must be the same prefix, without error;
 *   4. parse it split again, moving parts of unmasked binary payloads past the parser with
 *      up_ws_parser_skip (as the link does for splice), recorded as DATA: the same trace.
 * Parsing unmasks in place, so every run works on its own copy of the input. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "proto/ws.h"

/* Small bounds, so that the limits are reachable with fuzzer-sized inputs. */
#define FUZZ_MAX_FRAME 512
#define FUZZ_MAX_MESSAGE 2048

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

struct rec {
    enum up_ws_ev_kind kind;
    uint8_t opcode;
    bool fin;
    bool first;
    bool compressed; /* BEGIN/END: the message's first frame had RSV1 (deflate negotiated) */
    uint16_t close_code;
    uint64_t frame_len;
    size_t off; /* DATA (merged per frame), PING, PONG, CLOSE: payload in trace.data */
    size_t len;
};

struct trace {
    struct rec *r;
    size_t n, cap;
    uint8_t *data;
    size_t data_len, data_cap;
    size_t complete; /* records that belong to complete frames */
    int err;
    const char *reason;
    uint16_t close_code;
    enum up_ws_state state;
};

static void trace_fini(struct trace *t)
{
    UP_FREE(t->r);
    UP_FREE(t->data);
    memset(t, 0, sizeof(*t));
}

static struct rec *push(struct trace *t)
{
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        struct rec *r = up_realloc(t->r, cap * sizeof(*r));
        CHECK(r != NULL);
        t->r = r;
        t->cap = cap;
    }
    struct rec *r = &t->r[t->n++];
    memset(r, 0, sizeof(*r));
    return r;
}

static void add_data(struct trace *t, const uint8_t *p, size_t n)
{
    if (t->data_len + n > t->data_cap) {
        size_t cap = t->data_cap ? t->data_cap : 256;
        while (cap < t->data_len + n) {
            cap *= 2;
        }
        uint8_t *d = up_realloc(t->data, cap);
        CHECK(d != NULL);
        t->data = d;
        t->data_cap = cap;
    }
    if (n) {
        memcpy(t->data + t->data_len, p, n);
    }
    t->data_len += n;
}

static void record(struct trace *t, const struct up_ws_ev *ev)
{
    if (ev->kind == UP_WS_EV_DATA) {
        CHECK(ev->len > 0);
        if (t->n == 0 || t->r[t->n - 1].kind != UP_WS_EV_DATA) {
            struct rec *r = push(t);
            r->kind = UP_WS_EV_DATA;
            r->off = t->data_len;
        }
        t->r[t->n - 1].len += ev->len;
        add_data(t, ev->data, ev->len);
        return;
    }
    struct rec *r = push(t);
    r->kind = ev->kind;
    switch (ev->kind) {
    case UP_WS_EV_BEGIN:
        CHECK(ev->opcode == UP_WS_OP_TEXT || ev->opcode == UP_WS_OP_BINARY);
        CHECK(ev->frame_len <= FUZZ_MAX_FRAME);
        r->opcode = ev->opcode;
        r->fin = ev->fin;
        r->first = ev->first;
        r->compressed = ev->compressed;
        r->frame_len = ev->frame_len;
        break;
    case UP_WS_EV_END:
        r->opcode = ev->opcode;
        r->fin = ev->fin;
        r->compressed = ev->compressed;
        t->complete = t->n;
        break;
    case UP_WS_EV_CLOSE:
        CHECK(ev->close_code >= 1000 && ev->close_code < 5000);
        r->close_code = ev->close_code;
        /* fall through */
    case UP_WS_EV_PING:
    case UP_WS_EV_PONG:
        CHECK(ev->len <= UP_WS_MAX_CONTROL);
        r->off = t->data_len;
        r->len = ev->len;
        add_data(t, ev->data, ev->len);
        t->complete = t->n;
        break;
    default:
        CHECK(false);
    }
}

/* Parse in[0..len) in the chunks [0, cut) and [cut, len), looping on each until NONE. */
static void run(struct trace *t, const struct up_ws_cfg *cfg, uint8_t *in, size_t len, size_t cut,
                bool skip)
{
    struct up_ws_parser p;
    up_ws_parser_init(&p, cfg);
    memset(t, 0, sizeof(*t));
    size_t bounds[2] = {cut, len};
    size_t off = 0;
    for (size_t c = 0; c < 2; c++) {
        size_t end = bounds[c];
        size_t guard = 0;
        for (;;) {
            struct up_ws_ev ev;
            size_t used = (size_t)-1;
            int rv = up_ws_parse(&p, in + off, end - off, &used, &ev);
            CHECK(used <= end - off);
            uint8_t *at = in + off;
            off += used;
            if (rv < 0) {
                CHECK(rv == UP_EPROTO || rv == UP_ELIMIT);
                CHECK(p.state == UP_WS_ST_ERROR && p.err_reason != NULL);
                CHECK((rv == UP_ELIMIT) == (p.close_code == 1009));
                CHECK(p.close_code == 1002 || p.close_code == 1007 || p.close_code == 1009);
                CHECK(up_ws_parse(&p, in + off, end - off, &used, &ev) == rv && used == 0);
                /* The valid prefix of a failing slice depends on the split: drop it. */
                if (t->n && t->r[t->n - 1].kind == UP_WS_EV_DATA) {
                    t->data_len = t->r[t->n - 1].off;
                    t->n--;
                }
                t->err = rv;
                t->reason = p.err_reason;
                t->close_code = p.close_code;
                t->state = p.state;
                return;
            }
            CHECK(rv == UP_OK);
            if (ev.kind == UP_WS_EV_NONE) {
                CHECK(off == end);
                break;
            }
            if (ev.kind == UP_WS_EV_DATA) {
                CHECK(ev.data >= at && ev.data + ev.len <= in + off);
            }
            CHECK(++guard <= 4 * len + 16);
            record(t, &ev);
            uint64_t left = up_ws_parser_payload_left(&p);
            if (skip && left && off < end) {
                CHECK(!p.masked && p.msg_opcode == UP_WS_OP_BINARY);
                size_t n = 1 + (off * 7u + (size_t)left) % 97u;
                n = n < left ? n : (size_t)left;
                n = n < end - off ? n : end - off;
                struct up_ws_ev oob = {.kind = UP_WS_EV_DATA, .data = in + off, .len = n};
                record(t, &oob);
                up_ws_parser_skip(&p, n);
                CHECK(up_ws_parser_payload_left(&p) == left - n);
                off += n;
            }
        }
    }
    t->state = p.state;
}

static bool rec_equal(const struct trace *a, size_t i, const struct trace *b, size_t j)
{
    const struct rec *x = &a->r[i], *y = &b->r[j];
    return x->kind == y->kind && x->opcode == y->opcode && x->fin == y->fin &&
           x->first == y->first && x->compressed == y->compressed &&
           x->close_code == y->close_code && x->frame_len == y->frame_len && x->len == y->len &&
           (x->len == 0 || memcmp(a->data + x->off, b->data + y->off, x->len) == 0);
}

static void same_trace(const struct trace *a, const struct trace *b)
{
    CHECK(a->n == b->n);
    for (size_t i = 0; i < a->n; i++) {
        CHECK(rec_equal(a, i, b, i));
    }
    CHECK(a->complete == b->complete);
    CHECK(a->err == b->err && a->reason == b->reason && a->close_code == b->close_code);
    CHECK(a->state == b->state);
}

/* Re-encode the complete frames of t with the writers. */
static void reencode(const struct trace *t, struct up_buf *out, bool masked)
{
    for (size_t i = 0; i < t->complete; i++) {
        const struct rec *r = &t->r[i];
        uint8_t mask[4] = {(uint8_t)(i * 17 + 1), 0x5a, (uint8_t)i, 0xc3};
        const uint8_t *m = masked ? mask : NULL;
        static const uint8_t empty[1];
        const uint8_t *data = t->data ? t->data + r->off : empty;
        int rv = UP_OK;
        switch (r->kind) {
        case UP_WS_EV_BEGIN: {
            const uint8_t *payload = NULL;
            size_t len = 0;
            if (i + 1 < t->complete && t->r[i + 1].kind == UP_WS_EV_DATA) {
                payload = t->data + t->r[i + 1].off;
                len = t->r[i + 1].len;
            }
            CHECK(len == r->frame_len);
            uint8_t op = r->first ? r->opcode : UP_WS_OP_CONT;
            uint8_t rsv = r->first && r->compressed ? UP_WS_RSV1 : 0;
            rv = up_ws_write_frame_rsv(out, SIZE_MAX, op, r->fin, rsv, payload, len, m);
            break;
        }
        case UP_WS_EV_PING:
            rv = up_ws_write_frame(out, SIZE_MAX, UP_WS_OP_PING, true, data, r->len, m);
            break;
        case UP_WS_EV_PONG:
            rv = up_ws_write_frame(out, SIZE_MAX, UP_WS_OP_PONG, true, data, r->len, m);
            break;
        case UP_WS_EV_CLOSE:
            if (r->close_code == 1005) {
                rv = up_ws_write_close(out, SIZE_MAX, 0, NULL, m);
            } else if (!memchr(data, 0, r->len)) {
                char reason[UP_WS_MAX_CONTROL + 1];
                memcpy(reason, data, r->len);
                reason[r->len] = '\0';
                rv = up_ws_write_close(out, SIZE_MAX, r->close_code, reason, m);
            } else {
                /* U+0000 is valid UTF-8 but cannot pass through a C string */
                uint8_t body[UP_WS_MAX_CONTROL];
                body[0] = (uint8_t)(r->close_code >> 8);
                body[1] = (uint8_t)r->close_code;
                memcpy(body + 2, data, r->len);
                rv = up_ws_write_frame(out, SIZE_MAX, UP_WS_OP_CLOSE, true, body, r->len + 2, m);
            }
            break;
        default:
            break;
        }
        CHECK(rv == UP_OK);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    uint8_t ctl = data[0];
    data++;
    size--;
    struct up_ws_cfg cfg = {
        .role = (ctl & 1) ? UP_WS_CLIENT : UP_WS_SERVER,
        .max_frame_bytes = FUZZ_MAX_FRAME,
        .max_message_bytes = FUZZ_MAX_MESSAGE,
        .validate_utf8 = true,
        /* The top bit turns permessage-deflate on: RSV1 then becomes legal on a message's
         * first frame (the parser leaves compressed text's UTF-8 to the inflater). */
        .permessage_deflate = (ctl & 0x80) != 0,
    };
    size_t cut = size * (size_t)((ctl >> 1) & 0x3f) / 63;

    /* never NULL, even for an empty input: the harness does pointer arithmetic on it */
    uint8_t *copy = up_malloc(size ? size : 1);
    CHECK(copy != NULL);
    struct trace whole, split;

    if (size) {
        memcpy(copy, data, size);
    }
    run(&whole, &cfg, copy, size, size, false);
    if (size) {
        memcpy(copy, data, size);
    }
    run(&split, &cfg, copy, size, cut, false);
    same_trace(&whole, &split);
    trace_fini(&split);
    if (size) {
        memcpy(copy, data, size);
    }
    run(&split, &cfg, copy, size, cut, true);
    same_trace(&whole, &split);
    trace_fini(&split);

    struct up_buf out;
    up_buf_init(&out);
    reencode(&whole, &out, cfg.role == UP_WS_SERVER);
    /* Minimal length encodings only, so the re-encoding is never longer than the input. */
    CHECK(up_buf_len(&out) <= size);
    struct trace again;
    uint8_t none[1];
    uint8_t *enc = out.base ? up_buf_rptr(&out) : none;
    run(&again, &cfg, enc, up_buf_len(&out), up_buf_len(&out), false);
    CHECK(again.err == UP_OK);
    CHECK(again.n == whole.complete && again.complete == whole.complete);
    for (size_t i = 0; i < again.n; i++) {
        CHECK(rec_equal(&whole, i, &again, i));
    }
    bool closed = again.n && again.r[again.n - 1].kind == UP_WS_EV_CLOSE;
    CHECK(again.state == (closed ? UP_WS_ST_CLOSED : UP_WS_ST_HDR));
    trace_fini(&again);
    up_buf_fini(&out);
    trace_fini(&whole);
    up_free(copy);
    return 0;
}
