/* libFuzzer target for the mux codec (src/proto/mux.c), STYLE §14. The first input byte
 * configures the run: bit 0 = odd_ids, bit 1 = a small max_frame (so the ELIMIT paths are
 * reachable with short inputs); with the input size it also picks a split point. Then:
 * (1) parse the rest in one piece, recording a trace (consecutive DATA slices of one stream
 *     merged into one record: the slicing depends on the split, the bytes must not) and
 *     checking the call contract;
 * (2) parse it again in two pieces split at the point, each in its own exact-size allocation:
 *     the trace, the result and the final state must be identical;
 * (3) re-encode every event of pass (1) with the encoders and parse it back: the same event;
 * (4) drive a struct up_mux_flow with the sizes seen and check its accounting;
 * (5) parse the split input again, but move parts of DATA payloads past the parser with
 *     up_mux_parser_skip (as the link does for splice), recording them as DATA: the trace,
 *     the result and the final state must be those of (1);
 * (6) read every OPEN's metadata, and the whole input as metadata, with up_mux_meta_get and
 *     compare with a second reading of the lines. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "proto/mux.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_mux: check failed: %s (line %d)\n", #c, __LINE__);               \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define SMALL_MAX_FRAME 64

struct rec {
    uint32_t kind, sid, window, code;
    uint64_t len;  /* DATA: bytes in the run; OPEN: metadata; RST/GOAWAY: reason */
    uint64_t hash; /* FNV-1a of those bytes (OPEN: name then metadata; PING: opaque) */
};

struct trace {
    struct rec *r; /* owned */
    size_t n, cap;
    int rv;
    const char *reason;
    int state;
    unsigned hdr_len;
};

/* Flow-control model driven by the events: every received byte is delivered (consumed) at
 * once, with a clock and an RTT taken from the input. */
struct flow_model {
    struct up_mux_flow f;
    bool live;
    uint64_t outstanding; /* received, not yet consumed */
    uint64_t now_us, srtt_us;
};

static uint64_t fnv(uint64_t h, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h = (h ^ p[i]) * 0x100000001b3ull;
    }
    return h;
}

#define FNV0 0xcbf29ce484222325ull

static struct rec *add(struct trace *t)
{
    CHECK(t->n < t->cap);
    struct rec *r = &t->r[t->n++];
    memset(r, 0, sizeof(*r));
    return r;
}

static void record(struct trace *t, const struct up_mux_ev *ev)
{
    if (ev->kind == UP_MUX_EV_DATA && t->n > 0) {
        struct rec *last = &t->r[t->n - 1];
        if (last->kind == UP_MUX_EV_DATA && last->sid == ev->sid) {
            last->len += ev->len;
            last->hash = fnv(last->hash, ev->data, ev->len);
            return;
        }
    }
    struct rec *r = add(t);
    r->kind = ev->kind;
    r->sid = ev->sid;
    switch (ev->kind) {
    case UP_MUX_EV_DATA:
        r->len = ev->len;
        r->hash = fnv(FNV0, ev->data, ev->len);
        break;
    case UP_MUX_EV_OPEN:
        r->window = ev->window;
        r->len = ev->len;
        r->hash = fnv(fnv(FNV0, (const uint8_t *)ev->name, ev->name_len), ev->data, ev->len);
        break;
    case UP_MUX_EV_ACCEPT:
    case UP_MUX_EV_CREDIT:
        r->window = ev->window;
        break;
    case UP_MUX_EV_RST:
    case UP_MUX_EV_GOAWAY:
        r->code = ev->code;
        r->len = ev->len;
        r->hash = fnv(FNV0, ev->data, ev->len);
        break;
    case UP_MUX_EV_PING:
    case UP_MUX_EV_PONG:
        r->hash = fnv(FNV0, ev->opaque, 8);
        break;
    default:
        break;
    }
}

static bool valid_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.';
}

/* up_mux_meta_get against a second reading of the "key=value" lines: the first line that
 * starts with "key=" decides, and its value comes back when it fits in cap with its NUL. */
static void check_meta(const uint8_t *m, size_t len)
{
    static const char *const keys[] = {"client", "relay", "sub", ""};
    static const size_t caps[] = {0, 1, 16, 80, UP_MUX_MAX_META + 1};
    static char out[UP_MUX_MAX_META + 2];
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        size_t kl = strlen(keys[k]);
        const uint8_t *val = NULL;
        size_t vl = 0;
        for (size_t i = 0; i < len && !val;) {
            size_t e = i;
            while (e < len && m[e] != '\n') {
                e++;
            }
            if (e - i > kl && memcmp(m + i, keys[k], kl) == 0 && m[i + kl] == '=') {
                val = m + i + kl + 1;
                vl = e - i - kl - 1;
            }
            i = e + 1;
        }
        for (size_t c = 0; c < sizeof caps / sizeof caps[0]; c++) {
            out[0] = 0x7f;
            bool got = up_mux_meta_get(m, len, keys[k], out, caps[c]);
            CHECK(got == (val != NULL && vl < caps[c]));
            if (got) {
                CHECK(memcmp(out, val, vl) == 0 && out[vl] == '\0');
            } else {
                CHECK(out[0] == 0x7f);
            }
        }
    }
}

/* The event's own invariants, from the header's contract. */
static void check_event(const struct up_mux_cfg *cfg, const struct up_mux_ev *ev, const uint8_t *in,
                        size_t used)
{
    CHECK(ev->sid <= 0x7fffffffu);
    switch (ev->kind) {
    case UP_MUX_EV_DATA:
        CHECK(ev->sid != 0 && ev->len > 0 && ev->len <= cfg->max_frame);
        CHECK(ev->data >= in && ev->data + ev->len <= in + used);
        break;
    case UP_MUX_EV_FIN:
        CHECK(ev->sid != 0 && ev->len == 0);
        break;
    case UP_MUX_EV_OPEN:
        CHECK(ev->sid != 0 && ((ev->sid & 1u) != 0) != cfg->odd_ids);
        CHECK(ev->window <= UP_MUX_MAX_WINDOW);
        CHECK(ev->name_len >= 1 && ev->name_len <= UP_MUX_MAX_NAME);
        for (size_t i = 0; i < ev->name_len; i++) {
            CHECK(valid_name_char(ev->name[i]));
        }
        CHECK(ev->len <= UP_MUX_MAX_META);
        check_meta(ev->data, ev->len);
        break;
    case UP_MUX_EV_ACCEPT:
        CHECK(ev->sid != 0 && ev->window <= UP_MUX_MAX_WINDOW);
        break;
    case UP_MUX_EV_CREDIT:
        CHECK(ev->sid != 0 && ev->window >= 1 && ev->window <= UP_MUX_MAX_WINDOW);
        break;
    case UP_MUX_EV_RST:
        CHECK(ev->sid != 0 && ev->len <= UP_MUX_MAX_REASON);
        break;
    case UP_MUX_EV_GOAWAY:
        CHECK(ev->len <= UP_MUX_MAX_REASON);
        break;
    case UP_MUX_EV_PING:
    case UP_MUX_EV_PONG:
        CHECK(ev->sid == 0);
        break;
    default:
        CHECK(false /* unexpected event kind */);
    }
}

/* (3) Re-encode ev and parse it back with a fresh parser: exactly the same event. */
static void round_trip(const struct up_mux_cfg *cfg, const struct up_mux_ev *ev)
{
    static uint8_t f[UP_MUX_HDR + 8 + UP_MUX_MAX_NAME + UP_MUX_MAX_META];
    uint8_t *buf = f;
    uint8_t *heap = NULL;
    char name[UP_MUX_MAX_NAME + 1];
    char reason[UP_MUX_MAX_REASON + 1];
    size_t reason_len = 0;
    int n = 0;
    switch (ev->kind) {
    case UP_MUX_EV_DATA:
        /* Each slice becomes a frame of its own: DATA has no encoder beyond the header. */
        heap = up_malloc(UP_MUX_HDR + ev->len);
        if (!heap) {
            return;
        }
        buf = heap;
        up_mux_encode_hdr(buf, (uint32_t)ev->len, UP_MUX_DATA, 0, ev->sid);
        memcpy(buf + UP_MUX_HDR, ev->data, ev->len);
        n = (int)(UP_MUX_HDR + ev->len);
        break;
    case UP_MUX_EV_FIN:
        up_mux_encode_hdr(buf, 0, UP_MUX_DATA, UP_MUX_FLAG_FIN, ev->sid);
        n = UP_MUX_HDR;
        break;
    case UP_MUX_EV_OPEN:
        memcpy(name, ev->name, ev->name_len);
        name[ev->name_len] = '\0';
        n = up_mux_encode_open(buf, sizeof f, ev->sid, ev->window, name, ev->data, ev->len);
        break;
    case UP_MUX_EV_ACCEPT:
        n = up_mux_encode_accept(buf, sizeof f, ev->sid, ev->window);
        break;
    case UP_MUX_EV_CREDIT:
        n = up_mux_encode_credit(buf, sizeof f, ev->sid, ev->window);
        break;
    case UP_MUX_EV_RST:
    case UP_MUX_EV_GOAWAY:
        /* The encoders take C strings: the reason survives up to its first NUL. */
        memcpy(reason, ev->data, ev->len);
        reason[ev->len] = '\0';
        reason_len = strlen(reason);
        n = ev->kind == UP_MUX_EV_RST
                ? up_mux_encode_rst(buf, sizeof f, ev->sid, ev->code, reason)
                : up_mux_encode_goaway(buf, sizeof f, ev->sid, ev->code, reason);
        break;
    case UP_MUX_EV_PING:
    case UP_MUX_EV_PONG:
        n = up_mux_encode_ping(buf, sizeof f, ev->opaque, ev->kind == UP_MUX_EV_PONG);
        break;
    default:
        CHECK(false /* unexpected event kind */);
    }
    CHECK(n >= UP_MUX_HDR);

    struct up_mux_parser p;
    struct up_mux_ev got;
    size_t used = 0;
    up_mux_parser_init(&p, cfg);
    int rv = up_mux_parse(&p, buf, (size_t)n, &used, &got);
    CHECK(rv == UP_OK);
    CHECK(used == (size_t)n);
    CHECK(got.kind == ev->kind && got.sid == ev->sid);
    switch (ev->kind) {
    case UP_MUX_EV_DATA:
        CHECK(got.len == ev->len && memcmp(got.data, ev->data, ev->len) == 0);
        break;
    case UP_MUX_EV_OPEN:
        CHECK(got.window == ev->window && got.name_len == ev->name_len);
        CHECK(memcmp(got.name, ev->name, ev->name_len) == 0);
        CHECK(got.len == ev->len && (ev->len == 0 || memcmp(got.data, ev->data, ev->len) == 0));
        break;
    case UP_MUX_EV_ACCEPT:
    case UP_MUX_EV_CREDIT:
        CHECK(got.window == ev->window);
        break;
    case UP_MUX_EV_RST:
    case UP_MUX_EV_GOAWAY:
        CHECK(got.code == ev->code && got.len == reason_len);
        CHECK(reason_len == 0 || memcmp(got.data, ev->data, reason_len) == 0);
        break;
    case UP_MUX_EV_PING:
    case UP_MUX_EV_PONG:
        CHECK(memcmp(got.opaque, ev->opaque, 8) == 0);
        break;
    default:
        break;
    }
    /* Nothing else in the frame. */
    rv = up_mux_parse(&p, buf + used, 0, &used, &got);
    CHECK(rv == UP_OK && used == 0 && got.kind == UP_MUX_EV_NONE);
    up_free(heap);
}

static void flow_check(const struct flow_model *m)
{
    const struct up_mux_flow *f = &m->f;
    CHECK(f->recv_window <= f->max_window && f->max_window <= UP_MUX_MAX_WINDOW);
    CHECK(f->send_avail >= 0 && f->send_avail <= (int64_t)UP_MUX_MAX_WINDOW);
    /* Every byte of the window is either grantable, pending credit, or in our hands. */
    CHECK((uint64_t)f->recv_avail + f->recv_pending + m->outstanding == f->recv_window);
}

/* (4) Feed the flow model with one event of pass (1). */
static void flow_event(struct flow_model *m, const struct up_mux_ev *ev)
{
    switch (ev->kind) {
    case UP_MUX_EV_OPEN:
    case UP_MUX_EV_ACCEPT: {
        /* A small receive window so short inputs reach the credit and growth paths. */
        uint32_t recv = (ev->window & 0xffffu) + 1u;
        uint32_t max = recv << ((ev->window >> 16) & 7u);
        up_mux_flow_init(&m->f, recv, max, ev->window, m->now_us);
        m->live = true;
        m->outstanding = 0;
        break;
    }
    case UP_MUX_EV_PONG:
        /* An RTT from the opaque bytes: 0 (unknown) stays possible. */
        m->srtt_us = ev->opaque[7] * 50u;
        break;
    case UP_MUX_EV_DATA: {
        if (!m->live) {
            return;
        }
        m->now_us += (ev->len * 13u) % 977u;
        uint32_t avail = m->f.recv_avail;
        int rv = up_mux_flow_on_data(&m->f, ev->len);
        if (rv < 0) {
            CHECK(rv == UP_EPROTO && ev->len > avail && m->f.recv_avail == avail);
            m->live = false; /* the link would reset the stream (FLOW) */
            return;
        }
        CHECK(ev->len <= avail && m->f.recv_avail == avail - ev->len);
        m->outstanding += ev->len;
        flow_check(m);
        /* Deliver in two steps so both the "below half" and "grant" paths run. */
        size_t first = m->outstanding / 2;
        for (int step = 0; step < 2; step++) {
            size_t k = step == 0 ? first : m->outstanding;
            uint32_t before = m->f.recv_window;
            uint32_t pending = m->f.recv_pending;
            m->outstanding -= k;
            uint32_t inc = up_mux_flow_consumed(&m->f, k, m->now_us, m->srtt_us);
            if (inc == 0) {
                CHECK(m->f.recv_pending == pending + k);
                CHECK(m->f.recv_window == before);
            } else {
                CHECK(m->f.recv_pending == 0);
                CHECK(pending + k >= before / 2);
                CHECK(inc == pending + k + (m->f.recv_window - before));
                CHECK(m->f.recv_window == before ||
                      m->f.recv_window ==
                          (before * 2 < m->f.max_window ? before * 2 : m->f.max_window));
            }
            flow_check(m);
        }
        break;
    }
    case UP_MUX_EV_CREDIT: {
        if (!m->live) {
            return;
        }
        int64_t before = m->f.send_avail;
        int rv = up_mux_flow_on_credit(&m->f, ev->window);
        if (rv < 0) {
            CHECK(before + ev->window > (int64_t)UP_MUX_MAX_WINDOW);
            CHECK(m->f.send_avail == before);
        } else {
            CHECK(m->f.send_avail == before + ev->window);
        }
        /* Spend some of it, as the sender would. */
        m->f.send_avail -= m->f.send_avail / 3;
        flow_check(m);
        break;
    }
    default:
        break;
    }
}

/* Parse the chunks in order, looping on each until NONE; record the trace. With rt/fm, also
 * round-trip every event and feed the flow model (pass 1 only). */
static void run(const struct up_mux_cfg *cfg, uint8_t *const *chunks, const size_t *lens,
                size_t nchunks, size_t total, struct trace *t, struct flow_model *fm, bool skip)
{
    struct up_mux_parser p;
    up_mux_parser_init(&p, cfg);
    t->n = 0;
    t->rv = UP_OK;
    t->reason = NULL;
    size_t steps = 0;
    for (size_t c = 0; c < nchunks && t->rv == UP_OK; c++) {
        const uint8_t *in = chunks[c];
        size_t len = lens[c], off = 0;
        for (;;) {
            struct up_mux_ev ev;
            size_t used = (size_t)-1;
            int rv = up_mux_parse(&p, in + off, len - off, &used, &ev);
            CHECK(used <= len - off);
            if (rv < 0) {
                CHECK(rv == UP_EPROTO || rv == UP_ELIMIT);
                CHECK(ev.kind == UP_MUX_EV_NONE);
                CHECK(p.state == UP_MUX_ST_ERROR && p.err_reason != NULL);
                size_t again = 1;
                CHECK(up_mux_parse(&p, in + off + used, len - off - used, &again, &ev) < 0);
                CHECK(again == 0);
                t->rv = rv;
                t->reason = p.err_reason;
                break;
            }
            CHECK(rv == UP_OK);
            if (ev.kind == UP_MUX_EV_NONE) {
                CHECK(off + used == len);
                break;
            }
            CHECK(++steps <= 4 * total + 16);
            check_event(cfg, &ev, in + off, used);
            record(t, &ev);
            if (fm) {
                round_trip(cfg, &ev);
                flow_event(fm, &ev);
            }
            off += used;
            uint32_t sid = 0;
            uint32_t left = up_mux_parser_data_left(&p, &sid);
            if (skip && left && off < len) {
                /* Out of band: some of the payload that follows, at most what is here. */
                size_t n = 1 + (off * 7u + left) % 97u;
                n = n < left ? n : left;
                n = n < len - off ? n : len - off;
                struct up_mux_ev oob = {
                    .kind = UP_MUX_EV_DATA, .sid = sid, .data = in + off, .len = n};
                record(t, &oob);
                up_mux_parser_skip(&p, (uint32_t)n);
                CHECK(up_mux_parser_data_left(&p, &sid) == left - n);
                off += n;
            }
        }
    }
    t->state = (int)p.state;
    t->hdr_len = p.hdr_len;
}

static bool same(const struct trace *a, const struct trace *b)
{
    if (a->n != b->n || a->rv != b->rv || a->reason != b->reason || a->state != b->state ||
        a->hdr_len != b->hdr_len) {
        return false;
    }
    return a->n == 0 || memcmp(a->r, b->r, a->n * sizeof(a->r[0])) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    uint8_t ctl = data[0];
    const uint8_t *in = data + 1;
    size_t len = size - 1;
    struct up_mux_cfg cfg = {
        .odd_ids = (ctl & 1u) != 0,
        .max_frame = (ctl & 2u) ? SMALL_MAX_FRAME : UP_MUX_DEFAULT_MAX_FRAME,
    };
    size_t cut = len ? ((size_t)(ctl >> 2) * 2654435761u) % (len + 1) : 0;

    /* Records: a DATA run or FIN takes at least a 9-byte header each; the rest one per
     * frame. */
    size_t cap = 2 * (len / UP_MUX_HDR) + 4;
    struct trace whole = {.r = up_malloc(cap * sizeof(struct rec)), .cap = cap};
    struct trace split = {.r = up_malloc(cap * sizeof(struct rec)), .cap = cap};
    /* Exact-size copies so ASan sees any read past a chunk. */
    uint8_t *all = up_malloc(len ? len : 1);
    uint8_t *a = up_malloc(cut ? cut : 1);
    uint8_t *b = up_malloc(len - cut ? len - cut : 1);
    if (!whole.r || !split.r || !all || !a || !b) {
        goto out;
    }
    memcpy(all, in, len);
    memcpy(a, in, cut);
    memcpy(b, in + cut, len - cut);

    /* (6), for the whole input when an OPEN could carry it; OPEN events get it in run(). */
    if (len <= UP_MUX_MAX_META) {
        check_meta(all, len);
    }

    /* (1) + (3) + (4) */
    struct flow_model fm = {.now_us = 1000};
    uint8_t *c1[] = {all};
    size_t l1[] = {len};
    run(&cfg, c1, l1, 1, len, &whole, &fm, false);

    /* (2) */
    uint8_t *c2[] = {a, b};
    size_t l2[] = {cut, len - cut};
    run(&cfg, c2, l2, 2, len, &split, NULL, false);
    CHECK(same(&whole, &split));

    /* (5) */
    run(&cfg, c2, l2, 2, len, &split, NULL, true);
    CHECK(same(&whole, &split));

out:
    up_free(whole.r);
    up_free(split.r);
    up_free(all);
    up_free(a);
    up_free(b);
    return 0;
}
