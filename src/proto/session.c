#include "proto/session.h"

#include <stdio.h>
#include <string.h>

#include "base/bytes.h"

void up_sess_cfg_defaults(struct up_sess_cfg *cfg, bool client)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->client = client;
    cfg->window = UP_MUX_DEFAULT_WINDOW;
    cfg->max_window = UP_MUX_DEFAULT_MAX_WINDOW;
    cfg->max_frame = UP_MUX_DEFAULT_MAX_FRAME;
    cfg->max_streams = UP_SESS_DEFAULT_MAX_STREAMS;
    cfg->ping_misses = UP_SESS_DEFAULT_PING_MISSES;
    cfg->tx_high = UP_SESS_DEFAULT_TX_HIGH;
    cfg->quantum = UP_SESS_DEFAULT_QUANTUM;
    cfg->fresh_quantum = UP_SESS_DEFAULT_FRESH_QUANTUM;
    cfg->min_rtt_us = UP_SESS_DEFAULT_MIN_RTT_US;
}

/* ---- memory ---- */

static void *mem(struct up_sess *s, void *p, size_t n)
{
    if (s->cfg.alloc.realloc_fn) {
        return s->cfg.alloc.realloc_fn(s->cfg.alloc.ud, p, n);
    }
    if (n == 0) {
        up_free(p);
        return NULL;
    }
    return up_realloc(p, n);
}

static struct up_sess_stream **table_new(struct up_sess *s, size_t cap)
{
    struct up_sess_stream **t = mem(s, NULL, cap * sizeof(*t));
    if (t) {
        memset(t, 0, cap * sizeof(*t));
    }
    return t;
}

int up_sess_init(struct up_sess *s, const struct up_sess_cfg *cfg)
{
    memset(s, 0, sizeof(*s));
    if (cfg->quantum == 0 || cfg->fresh_quantum == 0 || cfg->max_window < cfg->window) {
        return UP_EINVAL;
    }
    s->cfg = *cfg;
    if (s->cfg.out_cap == 0) {
        s->cfg.out_cap = UP_SESS_OUT_CAP;
    }
    if (s->cfg.out_cap <
        UP_SESS_MAX_CTRL_FRAME + UP_MUX_HDR + 5 + UP_MUX_MAX_NAME + UP_MUX_MAX_META) {
        return UP_EINVAL; /* must hold the largest frame */
    }
    struct up_mux_cfg mc = {.odd_ids = cfg->client, .max_frame = cfg->max_frame};
    up_mux_parser_init(&s->mux, &mc);
    s->cfg.max_frame = s->mux.cfg.max_frame;
    s->table_cap = 16;
    s->table = table_new(s, s->table_cap);
    if (!s->table) {
        return UP_ENOMEM;
    }
    s->out = mem(s, NULL, s->cfg.out_cap);
    if (!s->out) {
        mem(s, s->table, 0);
        s->table = NULL;
        return UP_ENOMEM;
    }
    s->next_sid = cfg->client ? 1 : 2;
    return UP_OK;
}

void up_sess_fini(struct up_sess *s)
{
    if (s->table) {
        mem(s, s->table, 0);
        s->table = NULL;
    }
    if (s->out) {
        mem(s, s->out, 0);
        s->out = NULL;
    }
    s->table_cap = s->nstreams = 0;
    s->ready_head = s->ready_tail = s->fresh_tail = NULL;
}

/* ---- output queue ---- */

static void fail(struct up_sess *s, int err, const char *reason)
{
    if (!s->err_reason) {
        s->err = err;
        s->err_reason = reason;
    }
}

static void enqueue(struct up_sess *s, const uint8_t *f, int n)
{
    if (n <= 0 || s->err_reason) {
        return;
    }
    if (s->out_wr + (size_t)n > s->cfg.out_cap && s->out_rd > 0) {
        memmove(s->out, s->out + s->out_rd, s->out_wr - s->out_rd);
        s->out_wr -= s->out_rd;
        s->out_rd = 0;
    }
    if (s->out_wr + (size_t)n > s->cfg.out_cap) {
        fail(s, UP_ELIMIT, "mux: control output queue full");
        return;
    }
    memcpy(s->out + s->out_wr, f, (size_t)n);
    s->out_wr += (size_t)n;
}

const uint8_t *up_sess_frame_peek(const struct up_sess *s, size_t *n)
{
    if (s->out_rd == s->out_wr) {
        *n = 0;
        return NULL;
    }
    const uint8_t *f = s->out + s->out_rd;
    *n = UP_MUX_HDR + up_rd_u24be(f);
    return f;
}

void up_sess_frame_pop(struct up_sess *s)
{
    size_t n = 0;
    if (up_sess_frame_peek(s, &n)) {
        s->out_rd += n;
        if (s->out_rd == s->out_wr) {
            s->out_rd = s->out_wr = 0;
        }
    }
}

size_t up_sess_out_len(const struct up_sess *s)
{
    return s->out_wr - s->out_rd;
}

static void q_rst(struct up_sess *s, uint32_t sid, uint32_t code, const char *reason)
{
    uint8_t f[UP_MUX_HDR + 4 + UP_MUX_MAX_REASON];
    enqueue(s, f, up_mux_encode_rst(f, sizeof f, sid, code, reason));
    s->stats.streams_reset++;
}

/* A link-level rule was broken: GOAWAY `protocol-error` with the reason, then only errors
 * (docs/PROTOCOL.md §8, "Link-level errors"). */
static int link_error(struct up_sess *s, int err, const char *reason)
{
    if (s->err_reason) {
        return s->err;
    }
    s->stats.protocol_errors++;
    uint8_t f[UP_MUX_HDR + 8 + UP_MUX_MAX_REASON];
    enqueue(s, f, up_mux_encode_goaway(f, sizeof f, s->last_peer_sid, UP_MUX_C_PROTOCOL, reason));
    fail(s, err, reason);
    return s->err;
}

void up_sess_protocol_error(struct up_sess *s, const char *reason)
{
    int ignored = link_error(s, UP_EPROTO, reason);
    (void)ignored;
}

const char *up_sess_err_reason(const struct up_sess *s)
{
    return s->err_reason;
}

/* ---- stream table and ready list ---- */

static size_t bucket(const struct up_sess *s, uint32_t sid)
{
    return (size_t)((sid * 2654435761u) & (uint32_t)(s->table_cap - 1));
}

struct up_sess_stream *up_sess_find(const struct up_sess *s, uint32_t sid)
{
    if (!s->table) {
        return NULL;
    }
    for (struct up_sess_stream *st = s->table[bucket(s, sid)]; st; st = st->hnext) {
        if (st->sid == sid) {
            return st;
        }
    }
    return NULL;
}

static int table_grow(struct up_sess *s)
{
    size_t ncap = s->table_cap * 2;
    struct up_sess_stream **nt = table_new(s, ncap);
    if (!nt) {
        return UP_ENOMEM;
    }
    struct up_sess_stream **old = s->table;
    size_t ocap = s->table_cap;
    s->table = nt;
    s->table_cap = ncap;
    for (size_t i = 0; i < ocap; i++) {
        struct up_sess_stream *st = old[i];
        while (st) {
            struct up_sess_stream *next = st->hnext;
            size_t b = bucket(s, st->sid);
            st->hnext = nt[b];
            nt[b] = st;
            st = next;
        }
    }
    mem(s, old, 0);
    return UP_OK;
}

static int insert(struct up_sess *s, struct up_sess_stream *st)
{
    if (!s->table || (s->nstreams >= s->table_cap && table_grow(s) < 0)) {
        return UP_ENOMEM;
    }
    size_t b = bucket(s, st->sid);
    st->hnext = s->table[b];
    s->table[b] = st;
    st->in_table = true;
    s->nstreams++;
    return UP_OK;
}

static void ready_remove(struct up_sess *s, struct up_sess_stream *st)
{
    if (!st->in_ready) {
        return;
    }
    if (st == s->fresh_tail) {
        s->fresh_tail = st->rprev; /* fresh streams sit together at the head */
    }
    st->fresh = false;
    if (st->rprev) {
        st->rprev->rnext = st->rnext;
    } else {
        s->ready_head = st->rnext;
    }
    if (st->rnext) {
        st->rnext->rprev = st->rprev;
    } else {
        s->ready_tail = st->rprev;
    }
    st->rnext = st->rprev = NULL;
    st->in_ready = false;
}

/* A stream that had nothing to send (or no credit) and now has: it goes ahead of the streams
 * that keep sending, after the others like it, and may send one fresh quantum there before it
 * joins the round robin at the back (FQ-CoDel's new flows, RFC 8290 §4.1): a keystroke or a
 * ping waits behind a small slice of each stream that woke up with it, not a quantum of every
 * bulk stream on the link. */
static void ready_push_fresh(struct up_sess *s, struct up_sess_stream *st)
{
    if (st->in_ready) {
        return;
    }
    struct up_sess_stream *after = s->fresh_tail;
    st->rprev = after;
    st->rnext = after ? after->rnext : s->ready_head;
    if (st->rnext) {
        st->rnext->rprev = st;
    } else {
        s->ready_tail = st;
    }
    if (after) {
        after->rnext = st;
    } else {
        s->ready_head = st;
    }
    s->fresh_tail = st;
    st->fresh = true;
    st->in_ready = true;
}

static void ready_push(struct up_sess *s, struct up_sess_stream *st)
{
    if (st->in_ready) {
        return;
    }
    st->fresh = false;
    st->rprev = s->ready_tail;
    st->rnext = NULL;
    if (s->ready_tail) {
        s->ready_tail->rnext = st;
    } else {
        s->ready_head = st;
    }
    s->ready_tail = st;
    st->in_ready = true;
}

static void detach(struct up_sess *s, struct up_sess_stream *st)
{
    if (!st->in_table) {
        return;
    }
    struct up_sess_stream **pp = &s->table[bucket(s, st->sid)];
    while (*pp && *pp != st) {
        pp = &(*pp)->hnext;
    }
    if (*pp) {
        *pp = st->hnext;
        s->nstreams--;
    }
    ready_remove(s, st);
    st->hnext = NULL;
    st->in_table = false;
}

size_t up_sess_nstreams(const struct up_sess *s)
{
    return s->nstreams;
}

uint32_t up_sess_stream_id(const struct up_sess_stream *st)
{
    return st->sid;
}

bool up_sess_stream_live(const struct up_sess_stream *st)
{
    return st->in_table;
}

bool up_sess_stream_queued(const struct up_sess_stream *st)
{
    return st->in_ready;
}

struct up_sess_stream *up_sess_take_stream(struct up_sess *s)
{
    /* Resume where the last call found one: a teardown of n streams costs O(table + n). */
    for (size_t k = 0; s->nstreams && k < s->table_cap; k++) {
        size_t i = (s->take_at + k) & (s->table_cap - 1);
        struct up_sess_stream *st = s->table[i];
        if (st) {
            s->take_at = i;
            detach(s, st);
            return st;
        }
    }
    return NULL;
}

static void stream_setup(struct up_sess *s, struct up_sess_stream *st, uint32_t sid,
                         uint32_t send_window, uint64_t now_us)
{
    memset(st, 0, sizeof(*st));
    st->sid = sid;
    up_mux_flow_init(&st->flow, s->cfg.window, s->cfg.max_window, send_window, now_us);
}

bool up_sess_can_open(const struct up_sess *s)
{
    return !s->err_reason && !s->goaway_rcvd && !s->draining;
}

static int open_stream(struct up_sess *s, struct up_sess_stream *st, const char *name,
                       const uint8_t *meta, size_t meta_len, uint32_t window, bool follow,
                       uint64_t now_us)
{
    if (!up_sess_can_open(s)) {
        return UP_ESTATE;
    }
    /* §3: ids strictly increase and stop at 2^31-1. */
    if (s->nstreams >= s->cfg.max_streams || s->next_sid > 0x7ffffffdu) {
        return UP_ELIMIT;
    }
    if (window > UP_MUX_MAX_WINDOW) {
        window = UP_MUX_MAX_WINDOW;
    }
    uint8_t f[UP_MUX_HDR + 5 + UP_MUX_MAX_NAME + UP_MUX_MAX_META];
    int n = up_mux_encode_open(f, sizeof f, s->next_sid, window, name, meta, meta_len);
    if (n < 0) {
        return n;
    }
    stream_setup(s, st, s->next_sid, 0, now_us);
    if (follow) {
        up_mux_flow_init(&st->flow, window, window, 0, now_us);
        st->follow = true;
    }
    st->opener = true;
    if (insert(s, st) < 0) {
        return UP_ENOMEM;
    }
    s->next_sid += 2;
    s->stats.streams_opened++;
    enqueue(s, f, n);
    return UP_OK;
}

int up_sess_open(struct up_sess *s, struct up_sess_stream *st, const char *name,
                 const uint8_t *meta, size_t meta_len, uint64_t now_us)
{
    return open_stream(s, st, name, meta, meta_len, s->cfg.window, false, now_us);
}

int up_sess_open_follow(struct up_sess *s, struct up_sess_stream *st, const char *name,
                        const uint8_t *meta, size_t meta_len, uint32_t window, uint64_t now_us)
{
    return open_stream(s, st, name, meta, meta_len, window, true, now_us);
}

int up_sess_attach(struct up_sess *s, struct up_sess_stream *st, uint32_t sid, uint32_t peer_window,
                   uint64_t now_us)
{
    stream_setup(s, st, sid, peer_window, now_us);
    if (insert(s, st) < 0) {
        return UP_ENOMEM;
    }
    s->stats.streams_opened++;
    return UP_OK;
}

void up_sess_accept(struct up_sess *s, struct up_sess_stream *st)
{
    if (!st->in_table || st->accepted || st->opener) {
        return; /* only the acceptor sends ACCEPT (§8) */
    }
    st->accepted = true;
    uint8_t f[UP_MUX_HDR + 4];
    enqueue(s, f, up_mux_encode_accept(f, sizeof f, st->sid, st->flow.recv_window));
    if (st->deferred && !st->fin_sent) {
        ready_push(s, st);
    }
    st->deferred = false;
}

void up_sess_accept_follow(struct up_sess *s, struct up_sess_stream *st, uint32_t window)
{
    if (!st->in_table || st->accepted || st->opener) {
        return;
    }
    /* No DATA came yet (none may before ACCEPT): the window is still whole. */
    if (window > UP_MUX_MAX_WINDOW) {
        window = UP_MUX_MAX_WINDOW;
    }
    st->flow.recv_window = st->flow.recv_avail = st->flow.max_window = window;
    st->flow.recv_pending = 0;
    st->follow = true;
    up_sess_accept(s, st);
}

uint32_t up_sess_credit(struct up_sess *s, struct up_sess_stream *st, uint32_t inc)
{
    /* §9: no CREDIT after the peer's FIN. */
    if (!st->in_table || !st->follow || st->fin_rcvd || s->err_reason) {
        return 0;
    }
    if (inc > UP_MUX_MAX_WINDOW - st->flow.recv_avail) {
        inc = UP_MUX_MAX_WINDOW - st->flow.recv_avail;
    }
    if (inc == 0) {
        return 0;
    }
    st->flow.recv_avail += inc;
    uint8_t f[UP_MUX_HDR + 4];
    enqueue(s, f, up_mux_encode_credit(f, sizeof f, st->sid, inc));
    return inc;
}

void up_sess_refuse(struct up_sess *s, uint32_t sid, uint32_t code, const char *reason)
{
    s->stats.streams_refused++;
    q_rst(s, sid, code, reason);
}

void up_sess_reset(struct up_sess *s, struct up_sess_stream *st, uint32_t code, const char *reason)
{
    if (!st->in_table) {
        return;
    }
    detach(s, st);
    q_rst(s, st->sid, code, reason);
}

uint32_t up_sess_consumed(struct up_sess *s, struct up_sess_stream *st, size_t n, uint64_t now_us)
{
    return up_sess_consumed_held(s, st, n, 0, now_us);
}

uint32_t up_sess_consumed_held(struct up_sess *s, struct up_sess_stream *st, size_t n, size_t held,
                               uint64_t now_us)
{
    return up_sess_consumed_ex(s, st, n, held == 0, false, now_us);
}

uint32_t up_sess_consumed_ex(struct up_sess *s, struct up_sess_stream *st, size_t n, bool may_grow,
                             bool withhold, uint64_t now_us)
{
    /* §9: no CREDIT after the peer's FIN; credit only for bytes that reached the next hop. */
    if (!st->in_table || st->fin_rcvd || st->follow || (n == 0 && !st->flow.recv_pending)) {
        return 0;
    }
    if (withhold) {
        uint32_t room = UP_MUX_MAX_WINDOW - st->flow.recv_pending;
        st->flow.recv_pending += n < room ? (uint32_t)n : room;
        return 0;
    }
    /* The RTT floor stands for scheduling delays on busy hosts, which loopback RTTs hide:
     * a stream that drains half its window within 4 floors is window-limited. */
    uint64_t rtt = s->srtt_us > s->cfg.min_rtt_us ? s->srtt_us : s->cfg.min_rtt_us;
    uint32_t inc = up_mux_flow_consumed_ex(&st->flow, n, now_us, rtt, may_grow);
    if (inc) {
        uint8_t f[UP_MUX_HDR + 4];
        enqueue(s, f, up_mux_encode_credit(f, sizeof f, st->sid, inc));
    }
    return inc;
}

uint32_t up_sess_recv_window(const struct up_sess_stream *st)
{
    return st->flow.recv_window;
}

bool up_sess_credit_owed(const struct up_sess_stream *st)
{
    return st->flow.recv_pending != 0;
}

/* ---- scheduling ---- */

static size_t quantum(const struct up_sess *s)
{
    return s->cfg.quantum < s->cfg.max_frame ? s->cfg.quantum : s->cfg.max_frame;
}

void up_sess_ready(struct up_sess *s, struct up_sess_stream *st)
{
    if (!st->in_table || st->fin_sent) {
        return;
    }
    ready_push_fresh(s, st);
}

struct up_sess_stream *up_sess_next(struct up_sess *s, size_t queued)
{
    while (s->ready_head && !s->err_reason && queued < s->cfg.tx_high) {
        struct up_sess_stream *st = s->ready_head;
        if (st->accepted) {
            return st;
        }
        /* §8: no DATA (nor FIN) before ACCEPT, in either direction. */
        ready_remove(s, st);
        st->deferred = true;
    }
    return NULL;
}

size_t up_sess_frame_max(const struct up_sess *s, const struct up_sess_stream *st, size_t queued)
{
    size_t chunk = st->fresh ? s->cfg.fresh_quantum : quantum(s);
    size_t max = chunk < s->cfg.max_frame ? chunk : s->cfg.max_frame;
    if (st == s->ready_tail) {
        /* Alone: nobody waits behind this frame, so let it fill the output up to the bound a
         * quantum would (tx_high + one quantum). Fewer, larger frames cut the syscalls per
         * byte on every hop of a bulk stream. */
        size_t room =
            s->cfg.tx_high + quantum(s) - (queued < s->cfg.tx_high ? queued : s->cfg.tx_high);
        max = room < s->cfg.max_frame ? room : s->cfg.max_frame;
    }
    if (st->flow.send_avail < (int64_t)max) {
        max = st->flow.send_avail > 0 ? (size_t)st->flow.send_avail : 0;
    }
    return max;
}

size_t up_sess_burst_max(const struct up_sess *s, const struct up_sess_stream *st, size_t n)
{
    size_t chunk = st->fresh ? s->cfg.fresh_quantum : quantum(s);
    if (st != s->ready_tail && n > chunk) {
        return chunk; /* others wait: one quantum */
    }
    return n;
}

int64_t up_sess_send_avail(const struct up_sess_stream *st)
{
    return st->flow.send_avail;
}

bool up_sess_can_send(const struct up_sess_stream *st)
{
    return st->in_table && st->accepted && !st->fin_sent;
}

bool up_sess_data_sent(struct up_sess *s, struct up_sess_stream *st, size_t n, bool fin)
{
    st->flow.send_avail -= (int64_t)n;
    if (!fin) {
        return false;
    }
    st->fin_sent = true;
    ready_remove(s, st);
    if (st->fin_rcvd && st->in_table) {
        detach(s, st);
        return true;
    }
    return false;
}

bool up_sess_pulled(struct up_sess *s, struct up_sess_stream *st, size_t n, bool fin)
{
    bool closed = up_sess_data_sent(s, st, n, fin);
    if (fin) {
        return closed;
    }
    ready_remove(s, st);
    if (n > 0 && st->flow.send_avail > 0 && st->in_table) {
        /* Round robin: a bulk stream goes to the back after each quantum. Out of credit or
         * out of data, it leaves the list: a CREDIT or its owner adds it again. */
        ready_push(s, st);
    }
    return false;
}

void up_sess_rotate(struct up_sess *s, struct up_sess_stream *st)
{
    if (st->in_ready) {
        ready_remove(s, st);
        ready_push(s, st);
    }
}

/* ---- link state ---- */

void up_sess_goaway(struct up_sess *s, uint32_t code, const char *reason)
{
    if (s->goaway_sent || s->err_reason) {
        return;
    }
    s->goaway_sent = true;
    snprintf(s->goaway_reason, sizeof s->goaway_reason, "%s", reason ? reason : "");
    uint8_t f[UP_MUX_HDR + 8 + UP_MUX_MAX_REASON];
    enqueue(s, f, up_mux_encode_goaway(f, sizeof f, s->last_peer_sid, code, reason));
}

void up_sess_drain(struct up_sess *s)
{
    s->draining = true;
}

bool up_sess_goaway_sent(const struct up_sess *s)
{
    return s->goaway_sent;
}

bool up_sess_goaway_rcvd(const struct up_sess *s)
{
    return s->goaway_rcvd;
}

void up_sess_ping(struct up_sess *s, uint64_t now_us)
{
    uint8_t op[8], f[UP_MUX_HDR + 8];
    up_wr_u64be(op, now_us);
    enqueue(s, f, up_mux_encode_ping(f, sizeof f, op, false));
}

int up_sess_keepalive(struct up_sess *s, uint64_t now_us)
{
    if (s->pings_out >= s->cfg.ping_misses) {
        return UP_ELIMIT;
    }
    up_sess_ping(s, now_us);
    s->pings_out++;
    return UP_OK;
}

uint32_t up_sess_pings_out(const struct up_sess *s)
{
    return s->pings_out;
}

uint64_t up_sess_srtt_us(const struct up_sess *s)
{
    return s->srtt_us;
}

const struct up_sess_stats *up_sess_stats(const struct up_sess *s)
{
    return &s->stats;
}

/* ---- input ---- */

static void copy_reason(struct up_sess *s, const uint8_t *p, size_t n)
{
    memcpy(s->reason, p, n); /* n <= UP_MUX_MAX_REASON: the parser bounds it */
    s->reason[n] = '\0';
}

/* n DATA bytes (or a FIN, n = 0) arrived for st: admitted, or st is reset with an RST queued
 * and its CLOSE pending. */
static bool admit(struct up_sess *s, struct up_sess_stream *st, size_t n)
{
    if (!st->accepted) {
        /* §8/§9: neither side sends DATA before ACCEPT. */
        detach(s, st);
        q_rst(s, st->sid, UP_MUX_C_PROTOCOL, "DATA before ACCEPT");
        s->pend_close = st;
        s->pend_code = UP_MUX_C_PROTOCOL;
        s->pend_reason = "peer sent DATA before ACCEPT";
        return false;
    }
    if (up_mux_flow_on_data(&st->flow, n) < 0) {
        /* §9: more than the window we granted. */
        detach(s, st);
        q_rst(s, st->sid, UP_MUX_C_FLOW, "data beyond the granted window");
        s->pend_close = st;
        s->pend_code = UP_MUX_C_FLOW;
        s->pend_reason = "peer exceeded the flow-control window";
        return false;
    }
    s->stats.bytes_in += n;
    return true;
}

static bool take_pending(struct up_sess *s, struct up_sess_ev *ev)
{
    if (s->pend_close) {
        ev->kind = UP_SESS_EV_CLOSE;
        ev->st = s->pend_close;
        ev->sid = s->pend_close->sid;
        ev->code = s->pend_code;
        ev->reason = s->pend_reason;
        s->pend_close = NULL;
        return true;
    }
    if (s->fin_sid) {
        /* The FIN reported last time may have finished the stream (if its owner did not reset
         * it meanwhile: look it up again, it may be gone). */
        struct up_sess_stream *st = up_sess_find(s, s->fin_sid);
        s->fin_sid = 0;
        if (st && st->fin_sent && st->fin_rcvd) {
            detach(s, st);
            ev->kind = UP_SESS_EV_CLOSE;
            ev->st = st;
            ev->sid = st->sid;
            ev->code = UP_MUX_C_NONE;
            return true;
        }
    }
    return false;
}

uint32_t up_sess_data_left(const struct up_sess *s, struct up_sess_stream **st)
{
    uint32_t sid = 0;
    uint32_t left = up_mux_parser_data_left(&s->mux, &sid);
    struct up_sess_stream *t = left ? up_sess_find(s, sid) : NULL;
    *st = t && !t->fin_rcvd && !s->err_reason ? t : NULL;
    return left;
}

size_t up_sess_hdr_left(const struct up_sess *s)
{
    return s->mux.state == UP_MUX_ST_HDR ? (size_t)(UP_MUX_HDR - s->mux.hdr_len) : 0;
}

bool up_sess_skip_data(struct up_sess *s, uint32_t n)
{
    uint32_t sid = 0;
    uint32_t left = up_mux_parser_data_left(&s->mux, &sid);
    if (n > left) {
        n = left;
    }
    up_mux_parser_skip(&s->mux, n);
    struct up_sess_stream *st = up_sess_find(s, sid);
    if (!st || st->fin_rcvd || s->err_reason || s->pend_close) {
        return false;
    }
    return admit(s, st, n);
}

/* One mux event: handled here (false) or reported in ev (true). */
static bool on_mux(struct up_sess *s, const struct up_mux_ev *me, struct up_sess_ev *ev,
                   uint64_t now_us, int *rv)
{
    struct up_sess_stream *st = NULL;
    switch (me->kind) {
    case UP_MUX_EV_DATA:
    case UP_MUX_EV_FIN:
        st = up_sess_find(s, me->sid);
        if (!st || st->fin_rcvd) {
            /* §8 late frames: a stream we reset or that finished. */
            return false;
        }
        if (!admit(s, st, me->kind == UP_MUX_EV_DATA ? me->len : 0)) {
            return take_pending(s, ev);
        }
        ev->st = st;
        ev->sid = st->sid;
        if (me->kind == UP_MUX_EV_DATA) {
            ev->kind = UP_SESS_EV_DATA;
            ev->data = me->data;
            ev->len = me->len;
        } else {
            ev->kind = UP_SESS_EV_FIN;
            st->fin_rcvd = true;
            s->fin_sid = st->sid;
        }
        return true;
    case UP_MUX_EV_OPEN:
        if (me->sid <= s->last_peer_sid) {
            /* §3: the peer's ids strictly increase and are never reused. */
            *rv = link_error(s, UP_EPROTO, "mux: OPEN with a stream id not above the last");
            return false;
        }
        s->last_peer_sid = me->sid;
        if (s->goaway_sent || s->draining) {
            /* A stream that crossed our GOAWAY: refused before anything happened on it, so
             * the opener may safely try it elsewhere (§11). */
            char why[UP_MUX_MAX_REASON + 16];
            snprintf(why, sizeof why, "refused: %.200s",
                     s->goaway_reason[0] ? s->goaway_reason : "link is going away");
            s->stats.streams_refused++;
            q_rst(s, me->sid, UP_MUX_C_SHUTDOWN, why);
            return false;
        }
        if (s->nstreams >= s->cfg.max_streams) {
            s->stats.streams_refused++;
            q_rst(s, me->sid, UP_MUX_C_LIMIT, "too many streams on this link");
            return false;
        }
        ev->kind = UP_SESS_EV_OPEN;
        ev->sid = me->sid;
        ev->window = me->window;
        ev->name = me->name;
        ev->name_len = me->name_len;
        ev->data = me->data;
        ev->len = me->len;
        return true;
    case UP_MUX_EV_ACCEPT:
        st = up_sess_find(s, me->sid);
        if (!st || !st->opener || st->accepted) {
            return false;
        }
        st->accepted = true;
        st->flow.send_avail = me->window;
        if (st->deferred && !st->fin_sent) {
            ready_push_fresh(s, st);
        }
        st->deferred = false;
        ev->kind = UP_SESS_EV_ACCEPT;
        ev->st = st;
        ev->sid = st->sid;
        return true;
    case UP_MUX_EV_CREDIT:
        st = up_sess_find(s, me->sid);
        if (!st) {
            return false;
        }
        if (up_mux_flow_on_credit(&st->flow, me->window) < 0) {
            detach(s, st);
            q_rst(s, st->sid, UP_MUX_C_FLOW, "credit overflow");
            ev->kind = UP_SESS_EV_CLOSE;
            ev->st = st;
            ev->sid = st->sid;
            ev->code = UP_MUX_C_FLOW;
            ev->reason = "peer granted more than 2^31-1";
            return true;
        }
        if (!st->fin_sent) {
            ready_push_fresh(s, st);
        }
        if (!st->follow) {
            return false;
        }
        ev->kind = UP_SESS_EV_CREDIT;
        ev->st = st;
        ev->sid = st->sid;
        ev->len = me->window;
        return true;
    case UP_MUX_EV_RST:
        st = up_sess_find(s, me->sid);
        if (!st) {
            return false;
        }
        copy_reason(s, me->data, me->len);
        detach(s, st);
        ev->kind = UP_SESS_EV_CLOSE;
        ev->st = st;
        ev->sid = st->sid;
        ev->code = me->code ? me->code : UP_MUX_C_CANCEL; /* §5.5: 0 reads as cancel */
        ev->reason = s->reason;
        return true;
    case UP_MUX_EV_PING: {
        uint8_t f[UP_MUX_HDR + 8];
        enqueue(s, f, up_mux_encode_ping(f, sizeof f, me->opaque, true));
        return false;
    }
    case UP_MUX_EV_PONG: {
        /* §10: samples from a clock in the future are ignored. */
        uint64_t sent = up_rd_u64be(me->opaque);
        if (sent <= now_us) {
            uint64_t rtt = now_us - sent;
            s->srtt_us = s->srtt_us ? (s->srtt_us * 7 + rtt) / 8 : rtt;
        }
        s->pings_out = 0;
        return false;
    }
    case UP_MUX_EV_GOAWAY:
        copy_reason(s, me->data, me->len);
        s->goaway_rcvd = true;
        ev->kind = UP_SESS_EV_GOAWAY;
        ev->sid = me->sid;
        ev->code = me->code;
        ev->reason = s->reason;
        return true;
    case UP_MUX_EV_NONE:
        return false;
    }
    return false;
}

int up_sess_parse(struct up_sess *s, const uint8_t *in, size_t len, size_t *used,
                  struct up_sess_ev *ev, uint64_t now_us)
{
    memset(ev, 0, sizeof(*ev));
    ev->kind = UP_SESS_EV_NONE;
    *used = 0;
    if (s->err_reason) {
        return s->err;
    }
    if (take_pending(s, ev)) {
        return UP_OK;
    }
    for (;;) {
        struct up_mux_ev me;
        size_t u = 0;
        int rv = up_mux_parse(&s->mux, in, len, &u, &me);
        in += u;
        len -= u;
        *used += u;
        if (rv < 0) {
            return link_error(s, rv, s->mux.err_reason);
        }
        if (me.kind == UP_MUX_EV_NONE) {
            return UP_OK;
        }
        if (on_mux(s, &me, ev, now_us, &rv)) {
            return UP_OK;
        }
        if (rv < 0 || s->err_reason) {
            return s->err;
        }
    }
}
