#include "link/link.h"

#include <openssl/ssl.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/bytes.h"
#include "base/crypto.h"
#include "base/log.h"

#define TX_HARD_CAP (16u * 1024u * 1024u) /* control frames beyond this: the link is stuck */
#define MAX_READS_PER_WAKE 8              /* fairness between links sharing a loop */
#define CLOSE_WAIT_MS 2000 /* graceful close: how long the peer has to answer our WS close */

struct up_link {
    uv_loop_t *loop;
    struct up_linkloop *ll; /* one reference held */
    struct up_sock sock;
    bool client;
    struct up_link_cfg cfg;
    const struct up_link_ops *ops;
    void *ud;
    struct up_ws_parser ws;
    struct up_sess sess; /* the mux session: streams, rules, flow control, scheduling */
    struct up_buf rx;
    struct up_buf tx;
    uint64_t now_us; /* clock read at the start of the current input batch */
    uv_timer_t timer;
    uint8_t rnd[512];
    size_t rnd_off;
    bool dead;
    bool closing;
    bool close_idle; /* close gracefully once no stream is left (drain) */
    bool close_sent; /* WS close sent: nothing more goes out; waiting for the peer's close */
    bool in_dirty;
    int open_handles;
    struct up_link *dnext;
    char reason[256];
    char idle_reason[160];      /* close_idle: why, for the owner's log */
    struct up_link_stats stats; /* the shell's counters; the session's are merged on read */
    uint64_t ws_errors;         /* WebSocket-level protocol errors */
    int kpipe[2];     /* splice: socket -> kpipe -> the owner's socket; -1 until first used */
    bool splice_on;   /* this link may splice (client role, plain TCP, cfg.splice) */
    bool splice_mode; /* the last DATA was spliced: read only headers until it stops */
};

/* Per-loop state: the links with pending output or teardown, run from an idle handle before the
 * loop polls again: one place that flushes, so callbacks never write to sockets during dispatch
 * (STYLE §8). Links on other loops (threads, an embedding application) have their own. */
struct up_linkloop {
    uv_loop_t *loop;
    uv_idle_t idle;  /* made with the first link: a flusher that never had one closes nothing */
    uv_timer_t trim; /* made with idle: gives freed stream memory back (up_alloc_trim) */
    bool idle_made;
    int open_handles;
    size_t gone;      /* streams ended since the last trim */
    size_t budget;    /* buffer budget (up_link_cfg.max_buffer), 0 = none */
    size_t held;      /* bytes the owners of this loop's streams buffer */
    size_t holders;   /* streams that hold anything */
    size_t committed; /* windows granted beyond the initial ones */
    struct up_link *head;
    size_t refs;
};

/* After streams end, give their memory back once things settle (at most once a period). */
#define LINKLOOP_TRIM_MS 500

static void run_dirty(struct up_linkloop *ll);
static void do_reads(struct up_link *l, bool inline_flush);

uint64_t up_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void up_link_cfg_defaults(struct up_link_cfg *cfg)
{
    cfg->window = UP_MUX_DEFAULT_WINDOW;
    cfg->max_window = UP_MUX_DEFAULT_MAX_WINDOW;
    cfg->max_frame = UP_MUX_DEFAULT_MAX_FRAME;
    cfg->max_streams = UP_LINK_DEFAULT_MAX_STREAMS;
    cfg->ping_interval_ms = UP_LINK_DEFAULT_PING_MS;
    cfg->ping_misses = UP_LINK_DEFAULT_PING_MISSES;
    cfg->tx_high = UP_LINK_TX_HIGH;
    cfg->max_buffer = UP_LINK_DEFAULT_MAX_BUFFER;
    cfg->splice = true;
}

static void on_idle(uv_idle_t *h)
{
    run_dirty(h->data);
}

static void linkloop_closed(uv_handle_t *h)
{
    struct up_linkloop *ll = h->data;
    if (--ll->open_handles == 0) {
        up_free(ll);
    }
}

static void on_trim(uv_timer_t *t)
{
    struct up_linkloop *ll = t->data;
    ll->gone = 0;
    up_alloc_trim();
}

struct up_linkloop *up_linkloop_new(uv_loop_t *loop)
{
    struct up_linkloop *ll = up_calloc(1, sizeof(*ll));
    if (!ll) {
        return NULL;
    }
    ll->loop = loop;
    ll->refs = 1;
    return ll;
}

static void linkloop_make_idle(struct up_linkloop *ll)
{
    if (ll->idle_made) {
        return;
    }
    uv_idle_init(ll->loop, &ll->idle);
    uv_unref((uv_handle_t *)&ll->idle); /* links keep the loop alive, not their flusher */
    ll->idle.data = ll;
    uv_timer_init(ll->loop, &ll->trim);
    uv_unref((uv_handle_t *)&ll->trim);
    ll->trim.data = ll;
    ll->open_handles = 2;
    ll->idle_made = true;
}

struct up_linkloop *up_linkloop_ref(struct up_linkloop *ll)
{
    ll->refs++;
    return ll;
}

void up_linkloop_unref(struct up_linkloop *ll)
{
    if (!ll) {
        return;
    }
    UP_ASSERT(ll->refs > 0);
    if (--ll->refs == 0) {
        UP_ASSERT(ll->head == NULL);
        if (!ll->idle_made) {
            up_free(ll);
            return;
        }
        uv_idle_stop(&ll->idle);
        uv_close((uv_handle_t *)&ll->idle, linkloop_closed);
        uv_close((uv_handle_t *)&ll->trim, linkloop_closed);
    }
}

uv_loop_t *up_linkloop_loop(const struct up_linkloop *ll)
{
    return ll->loop;
}

static void kick(struct up_link *l)
{
    /* A closing link may be freed before the idle handle runs again. */
    if (l->in_dirty || l->closing) {
        return;
    }
    struct up_linkloop *ll = l->ll;
    l->in_dirty = true;
    l->dnext = ll->head;
    ll->head = l;
    if (!uv_is_active((uv_handle_t *)&ll->idle)) {
        uv_idle_start(&ll->idle, on_idle);
    }
}

static void fail(struct up_link *l, const char *fmt, const char *arg)
{
    if (l->dead) {
        return;
    }
    l->dead = true;
    snprintf(l->reason, sizeof l->reason, fmt, arg ? arg : "");
    kick(l);
}

/* The owner's stream around a session stream. */
static struct up_lstream *lstream(struct up_sess_stream *cs)
{
    return (struct up_lstream *)(void *)((char *)cs - offsetof(struct up_lstream, core));
}

/* st left the session: the owner gets it back. */
/* The budget's accounting of one stream (up_link_consumed_held). */
static void held_set(struct up_linkloop *ll, struct up_lstream *st, size_t held)
{
    if (st->held) {
        ll->holders--;
    }
    if (held) {
        ll->holders++;
    }
    ll->held = ll->held - st->held + held;
    st->held = held;
}

static void window_counted(struct up_link *l, struct up_lstream *st)
{
    uint32_t w = up_sess_recv_window(&st->core);
    uint32_t extra = w > l->cfg.window ? w - l->cfg.window : 0;
    l->ll->committed = l->ll->committed - st->committed + extra;
    st->committed = extra;
}

static void stream_uncount(struct up_link *l, struct up_lstream *st)
{
    held_set(l->ll, st, 0);
    l->ll->committed -= st->committed;
    st->committed = 0;
}

static void stream_gone(struct up_link *l, struct up_lstream *st)
{
    stream_uncount(l, st);
    st->link = NULL;
    struct up_linkloop *ll = l->ll;
    if (ll->gone++ == 0 && ll->idle_made) {
        uv_timer_start(&ll->trim, on_trim, LINKLOOP_TRIM_MS, 0);
    }
    if (up_sess_nstreams(&l->sess) == 0 && (l->close_idle || l->kpipe[0] >= 0)) {
        /* The flusher closes the link once the last frames are out (drain), and the splice
         * pipe of a link without streams. */
        kick(l);
    }
}

/* ---- output ---- */

static void mask_key(struct up_link *l, uint8_t out[4])
{
    if (l->rnd_off + 4 > sizeof l->rnd) {
        if (up_random_bytes(l->rnd, sizeof l->rnd) < 0) {
            /* RAND_bytes failing is not recoverable in a sane way; keep the link alive with
             * the previous pool rather than send unmasked frames. */
        }
        l->rnd_off = 0;
    }
    memcpy(out, l->rnd + l->rnd_off, 4);
    l->rnd_off += 4;
}

/* Append one mux frame (already encoded) as one binary WS message. */
static void tx_mux(struct up_link *l, const uint8_t *frame, size_t n)
{
    uint8_t key[4];
    if (l->close_sent) {
        return; /* RFC 6455 §5.5.1: no data frames after a Close */
    }
    if (l->client) {
        mask_key(l, key);
    }
    if (up_ws_write_frame(&l->tx, TX_HARD_CAP, UP_WS_OP_BINARY, true, frame, n,
                          l->client ? key : NULL) < 0) {
        fail(l, "output buffer overflow%s", "");
        return;
    }
    l->stats.frames_out++;
    kick(l);
}

static void tx_ws_control(struct up_link *l, uint8_t op, const uint8_t *p, size_t n)
{
    uint8_t key[4];
    if (l->close_sent) {
        return;
    }
    if (l->client) {
        mask_key(l, key);
    }
    if (up_ws_write_frame(&l->tx, TX_HARD_CAP, op, true, p, n, l->client ? key : NULL) < 0) {
        fail(l, "output buffer overflow%s", "");
        return;
    }
    kick(l);
}

/* Move the control frames the session queued into the output, one WS message each, in
 * order; a session that failed (a broken rule) fails the link with its reason. */
static void drain_ctl(struct up_link *l)
{
    size_t n = 0;
    const uint8_t *f;
    while ((f = up_sess_frame_peek(&l->sess, &n)) != NULL) {
        tx_mux(l, f, n);
        up_sess_frame_pop(&l->sess);
    }
    const char *why = up_sess_err_reason(&l->sess);
    if (why) {
        fail(l, "%s", why);
    }
}

/* Frame data pulled from st directly into the output buffer. Returns bytes of payload, and
 * sets *fin when the stream sent FIN. */
static size_t pull_into_tx(struct up_link *l, struct up_lstream *st, size_t max, bool *fin)
{
    size_t hmax = up_ws_header_size(UP_MUX_HDR + max, l->client);
    *fin = false;
    if (up_buf_reserve(&l->tx, hmax + UP_MUX_HDR + max, TX_HARD_CAP) < 0) {
        return 0;
    }
    uint8_t *base = up_buf_wptr(&l->tx);
    uint8_t *payload = base + hmax + UP_MUX_HDR;
    size_t n = st->ops->pull(st, payload, max, fin);
    if (n == 0 && !*fin) {
        return 0;
    }
    size_t plen = UP_MUX_HDR + n;
    size_t hsz = up_ws_header_size(plen, l->client);
    if (hsz < hmax) {
        /* The read was short and the length now fits a shorter WS header. */
        memmove(base + hsz + UP_MUX_HDR, payload, n);
        payload = base + hsz + UP_MUX_HDR;
    }
    uint8_t key[4];
    if (l->client) {
        mask_key(l, key);
    }
    up_ws_encode_header(base, UP_WS_OP_BINARY, true, plen, l->client ? key : NULL);
    up_mux_encode_hdr(payload - UP_MUX_HDR, (uint32_t)n, UP_MUX_DATA, *fin ? UP_MUX_FLAG_FIN : 0,
                      st->sid);
    if (l->client) {
        up_ws_mask(payload - UP_MUX_HDR, plen, key, 0);
    }
    up_buf_commit(&l->tx, hsz + plen);
    l->stats.frames_out++;
    return n;
}

/* The fair scheduler's loop: the session says whose turn it is and how much it may send; the
 * owner's bytes go straight into the output buffer. */
static void schedule(struct up_link *l)
{
    while (!l->dead) {
        struct up_sess_stream *cs = up_sess_next(&l->sess, up_buf_len(&l->tx));
        if (!cs) {
            break;
        }
        struct up_lstream *st = lstream(cs);
        size_t max = up_sess_frame_max(&l->sess, cs, up_buf_len(&l->tx));
        bool fin = false;
        size_t n = pull_into_tx(l, st, max, &fin);
        if (up_sess_pulled(&l->sess, cs, n, fin)) {
            /* Both directions finished: the stream is over. May free st. */
            stream_gone(l, st);
            st->ops->on_close(st, UP_MUX_C_NONE, NULL);
        }
    }
}

static size_t send_direct(struct up_link *l, struct up_lstream *st, const uint8_t *p, size_t n);

/* Server role, plain TCP, nothing queued in tx: write ready streams' bytes from their owners'
 * buffers (peek/skip) with writev instead of copying them into tx first. Round robin as in
 * schedule(), a quantum per stream when several wait; a FIN, a stream without peek or
 * credit, or a full socket end it and schedule() takes over. */
static void flush_direct(struct up_link *l)
{
    for (int turn = 0; turn < 64 && !l->dead && up_buf_len(&l->tx) == 0; turn++) {
        struct up_sess_stream *cs = up_sess_next(&l->sess, 0);
        if (!cs) {
            return;
        }
        struct up_lstream *st = lstream(cs);
        if (!st->ops->peek || !up_sess_can_send(cs) || up_sess_send_avail(cs) <= 0) {
            return;
        }
        size_t n = 0;
        const uint8_t *p = st->ops->peek(st, &n);
        if (n == 0) {
            return;
        }
        n = up_sess_burst_max(&l->sess, cs, n);
        size_t taken = send_direct(l, st, p, n);
        if (taken) {
            st->ops->skip(st, taken);
        }
        if (l->dead || taken < n || up_buf_len(&l->tx) > 0) {
            return;
        }
        if (st->link == l) {
            up_sess_rotate(&l->sess, cs);
        }
    }
}

static void flush(struct up_link *l)
{
    if (up_sess_nstreams(&l->sess) == 0 && l->kpipe[0] >= 0) {
        up_kpipe_close(l->kpipe); /* an idle link holds no descriptors beyond its socket */
    }
    for (int round = 0; round < 16 && !l->dead; round++) {
        if (!l->client && !l->sock.ssl) {
            flush_direct(l);
        }
        schedule(l);
        if (up_buf_len(&l->tx) == 0) {
            break;
        }
        size_t n = 0;
        int rv = up_sock_write(&l->sock, up_buf_rptr(&l->tx), up_buf_len(&l->tx), &n);
        if (rv == UP_EAGAIN) {
            break;
        }
        if (rv < 0) {
            fail(l, "write failed: %s", up_sock_strerror(&l->sock, rv));
            return;
        }
        l->stats.bytes_out += n;
        up_buf_skip(&l->tx, n);
    }
    if (l->dead) {
        return;
    }
    up_sock_want(&l->sock, true, up_buf_len(&l->tx) > 0);
    /* Streams still ready with room to fill: nothing else would wake them (their sockets are
     * not watched while they wait for us), so come back on the next loop iteration. */
    if (up_sess_next(&l->sess, up_buf_len(&l->tx))) {
        kick(l);
    }
}

/* ---- input ---- */

static void dispatch(struct up_link *l, const struct up_sess_ev *ev)
{
    struct up_lstream *st = ev->st ? lstream(ev->st) : NULL;
    switch (ev->kind) {
    case UP_SESS_EV_DATA:
        st->ops->on_data(st, ev->data, ev->len);
        return;
    case UP_SESS_EV_FIN:
        st->ops->on_fin(st);
        return;
    case UP_SESS_EV_OPEN:
        l->ops->on_open(l, ev->sid, ev->window, ev->name, ev->name_len, ev->data, ev->len);
        return;
    case UP_SESS_EV_ACCEPT:
        st->accepted = true;
        st->ops->on_accept(st);
        return;
    case UP_SESS_EV_CLOSE:
        stream_gone(l, st);
        st->ops->on_close(st, ev->code, ev->reason);
        return;
    case UP_SESS_EV_CREDIT:
        if (st->ops->on_credit) {
            st->ops->on_credit(st, (uint32_t)ev->len);
        }
        return;
    case UP_SESS_EV_GOAWAY:
        if (l->ops->on_goaway) {
            l->ops->on_goaway(l, ev->code, ev->reason);
        }
        return;
    case UP_SESS_EV_NONE:
        return;
    }
}

/* Hand one binary message's payload bytes to the session and act on its events. */
static void feed_mux(struct up_link *l, const uint8_t *p, size_t n)
{
    for (;;) {
        struct up_sess_ev ev;
        size_t used = 0;
        int rv = up_sess_parse(&l->sess, p, n, &used, &ev, l->now_us);
        p += used;
        n -= used;
        drain_ctl(l); /* PONG, RST, or the GOAWAY that says why the link ends */
        if (rv < 0 || l->dead) {
            fail(l, "%s", up_sess_err_reason(&l->sess));
            return;
        }
        if (ev.kind == UP_SESS_EV_NONE) {
            return;
        }
        dispatch(l, &ev);
        if (l->dead) {
            return;
        }
    }
}

static void process(struct up_link *l, uint8_t *p, size_t n)
{
    l->now_us = up_now_us();
    while (!l->dead) {
        struct up_ws_ev ev;
        size_t used = 0;
        int rv = up_ws_parse(&l->ws, p, n, &used, &ev);
        p += used;
        n -= used;
        if (rv < 0) {
            l->ws_errors++;
            uint8_t key[4];
            if (l->client) {
                mask_key(l, key);
            }
            int ignored = up_ws_write_close(&l->tx, TX_HARD_CAP, l->ws.close_code, l->ws.err_reason,
                                            l->client ? key : NULL);
            (void)ignored;
            fail(l, "%s", l->ws.err_reason);
            return;
        }
        switch (ev.kind) {
        case UP_WS_EV_NONE:
            return;
        case UP_WS_EV_BEGIN:
            l->stats.frames_in++;
            if (ev.opcode != UP_WS_OP_BINARY) {
                /* §2: the mux is the payload of binary messages only. */
                up_sess_protocol_error(&l->sess, "mux: text message on a mux link");
                drain_ctl(l);
                return;
            }
            break;
        case UP_WS_EV_DATA:
            feed_mux(l, ev.data, ev.len);
            break;
        case UP_WS_EV_END:
            break;
        case UP_WS_EV_PING:
            tx_ws_control(l, UP_WS_OP_PONG, ev.data, ev.len);
            break;
        case UP_WS_EV_PONG:
            break;
        case UP_WS_EV_CLOSE: {
            if (l->close_sent) {
                /* The peer answered our close: the graceful end of a drained link. */
                fail(l, "%s", l->idle_reason);
                return;
            }
            char why[160];
            snprintf(why, sizeof why, "peer closed the link (%u %.*s)", ev.close_code,
                     (int)(ev.len > 100 ? 100 : ev.len), (const char *)ev.data);
            fail(l, "%s", why);
            return;
        }
        }
    }
}

/* ---- splice: DATA payloads that bypass user space ---- */

/* Drop n bytes from the kernel pipe (their stream is gone). */
static void kpipe_discard(struct up_link *l, size_t n)
{
    while (n && !l->dead) {
        size_t k = 0;
        int err = 0;
        if (up_kpipe_read(l->kpipe[0], l->rx.base, n < l->rx.cap ? n : l->rx.cap, &k, &err) < 0 ||
            k == 0) {
            fail(l, "splice pipe: %s", err ? strerror(err) : "empty");
            return;
        }
        n -= k;
    }
}

/* When the parsers stand inside a DATA payload whose stream can take it through a pipe, move
 * the next slice socket -> pipe -> the owner without copying it. Returns 1 when bytes moved,
 * 0 when this is not the place (the caller reads as usual), or UP_EAGAIN/UP_EOF/an error from
 * the socket. */
static int splice_step(struct up_link *l)
{
    if (!l->splice_on) {
        return 0;
    }
    struct up_sess_stream *cs = NULL;
    uint64_t wl = up_ws_parser_payload_left(&l->ws);
    uint32_t ml = up_sess_data_left(&l->sess, &cs);
    if (wl == 0 || ml == 0 || (ml < UP_LINK_SPLICE_MIN && !l->splice_mode)) {
        return 0;
    }
    struct up_lstream *st = cs ? lstream(cs) : NULL;
    if (!st || !st->ops->splice_ok || !st->ops->splice_ok(st)) {
        l->splice_mode = false;
        return 0;
    }
    if (l->kpipe[0] < 0 && up_kpipe_open(l->kpipe, UP_LINK_SPLICE_PIPE) < 0) {
        l->splice_on = false;
        return 0;
    }
    size_t want = ml < wl ? ml : (size_t)wl;
    if (want > UP_LINK_SPLICE_PIPE) {
        want = UP_LINK_SPLICE_PIPE;
    }
    size_t n = 0;
    int rv = up_sock_splice_in(&l->sock, l->kpipe[1], want, &n);
    if (rv == UP_EINVAL) {
        UP_LOGD("link: splice unavailable here (%s); reading instead",
                up_sock_strerror(&l->sock, UP_ESYS));
        l->splice_on = l->splice_mode = false;
        return 0;
    }
    if (rv != UP_OK) {
        return rv;
    }
    l->splice_mode = true;
    up_ws_parser_skip(&l->ws, n);
    if (up_sess_skip_data(&l->sess, (uint32_t)n)) {
        l->stats.bytes_spliced += n;
        kpipe_discard(l, st->ops->on_splice(st, l->kpipe[0], n));
    } else {
        /* Refused (its CLOSE and RST come from feed_mux below) or gone. */
        kpipe_discard(l, n);
    }
    /* The frame may be complete: let the parsers report its FIN and END. */
    if (!l->dead) {
        feed_mux(l, l->rx.base, 0);
    }
    if (!l->dead) {
        process(l, l->rx.base, 0);
    }
    return 1;
}

/* In splice mode, read only up to the end of the next headers, so the payload behind them
 * stays in the socket for splice_step. 0: read as usual. */
static size_t header_read_len(const struct up_link *l)
{
    if (!l->splice_mode) {
        return 0;
    }
    size_t mux = up_sess_hdr_left(&l->sess); /* 0: not in a mux header */
    if (l->ws.state == UP_WS_ST_HDR && mux != 0) {
        /* The link's DATA frames carry 4-byte WebSocket headers (64 KiB quanta); a longer
         * header costs one more short read, a shorter one reads a little payload. */
        return (l->ws.hdr_len < 4 ? 4u - l->ws.hdr_len : 1u) + mux;
    }
    if (l->ws.state == UP_WS_ST_PAYLOAD && mux != 0) {
        uint64_t left = l->ws.frame_len - l->ws.frame_off;
        return left < mux ? (size_t)left : mux;
    }
    return 0;
}

/* Read and process up to MAX_READS_PER_WAKE buffers' worth. inline_flush moves what each
 * read produced on to the next hops at once (not when called from the flusher itself). */
static void do_reads(struct up_link *l, bool inline_flush)
{
    struct up_sock *s = &l->sock;
    size_t budget = (size_t)MAX_READS_PER_WAKE * l->rx.cap;
    for (int i = 0; i < 8 * MAX_READS_PER_WAKE && budget && !l->dead; i++) {
        size_t n = 0;
        uint64_t spliced = l->stats.bytes_spliced;
        int rv = splice_step(l);
        if (rv == 1) {
            spliced = l->stats.bytes_spliced - spliced;
            budget -= budget < spliced ? budget : (size_t)spliced;
            if (inline_flush) {
                run_dirty(l->ll);
            }
            continue;
        }
        if (rv == 0) {
            size_t cap = header_read_len(l);
            if (cap == 0) {
                l->splice_mode = false;
                cap = l->rx.cap;
            }
            rv = up_sock_read(s, l->rx.base, cap, &n);
            budget -= budget < n ? budget : n;
        }
        if (rv == UP_EAGAIN) {
            return;
        }
        if (rv == UP_EOF) {
            if (l->close_sent) {
                fail(l, "%s", l->idle_reason);
            } else {
                fail(l, "connection closed by peer%s", "");
            }
            return;
        }
        if (rv < 0) {
            fail(l, "read failed: %s", up_sock_strerror(s, rv));
            return;
        }
        process(l, l->rx.base, n);
        /* Move what this read produced on to the next hops before reading more, so the
         * relay's bridges hand bytes straight to the other link (one copy) instead of
         * queueing them. */
        if (inline_flush) {
            run_dirty(l->ll);
        }
    }
    /* Read budget used up with bytes still buffered inside TLS: epoll will not report them,
     * so come back from the flusher. */
    if (!l->dead && up_sock_has_pending(s)) {
        kick(l);
    }
}

static void on_sock(struct up_sock *s, bool readable, bool writable)
{
    struct up_link *l = s->ud;
    if (l->dead) {
        return;
    }
    if (readable || (s->ssl && writable) || up_sock_has_pending(s)) {
        do_reads(l, true);
    }
    kick(l);
}

/* ---- timers and teardown ---- */

/* PING carries our microsecond clock; the PONG gives an RTT sample. */
static void send_ping(struct up_link *l)
{
    up_sess_ping(&l->sess, up_now_us());
    drain_ctl(l);
}

static void on_timer(uv_timer_t *t)
{
    struct up_link *l = t->data;
    if (l->dead) {
        return;
    }
    if (l->close_sent) {
        char why[200];
        snprintf(why, sizeof why, "%s (the peer did not answer our close)", l->idle_reason);
        fail(l, "%s", why);
        return;
    }
    if (up_sess_keepalive(&l->sess, up_now_us()) < 0) {
        char why[64];
        snprintf(why, sizeof why, "%u pings unanswered", up_sess_pings_out(&l->sess));
        fail(l, "link dead: %s", why);
        return;
    }
    drain_ctl(l);
}

static void link_release(struct up_link *l)
{
    if (--l->open_handles == 0) {
        up_kpipe_close(l->kpipe);
        up_buf_fini(&l->rx);
        up_buf_fini(&l->tx);
        up_sess_fini(&l->sess);
        up_linkloop_unref(l->ll);
        up_free(l);
    }
}

static void handle_closed(uv_handle_t *h)
{
    link_release(h->data);
}

static void sock_closed(struct up_sock *s)
{
    link_release(s->ud);
}

static void teardown(struct up_link *l)
{
    l->closing = true;
    /* Work done for this link just before it died (a stream's pull, a flush) may have kicked
     * it again: take it off the dirty list, or the next run would touch it after the close
     * callbacks freed it. Only ll->head can hold it: run_dirty clears in_dirty on the
     * snapshot it works on before it gets here. */
    if (l->in_dirty) {
        for (struct up_link **pp = &l->ll->head; *pp; pp = &(*pp)->dnext) {
            if (*pp == l) {
                *pp = l->dnext;
                break;
            }
        }
        l->in_dirty = false;
        l->dnext = NULL;
    }
    /* Every stream dies with the link, on every hop (BRIEF rule 4). */
    for (;;) {
        struct up_sess_stream *cs = up_sess_take_stream(&l->sess);
        if (!cs) {
            break;
        }
        struct up_lstream *st = lstream(cs);
        stream_uncount(l, st);
        st->link = NULL;
        st->ops->on_close(st, UP_MUX_C_LINK_LOST, l->reason);
    }
    if (l->ops->on_close) {
        l->ops->on_close(l, l->reason);
    }
    /* Best effort: a WS close so the peer learns why (unless it was sent already), then one
     * non-blocking write. */
    uint8_t key[4];
    int ignored = 0;
    if (!l->close_sent) {
        if (l->client) {
            mask_key(l, key);
        }
        ignored =
            up_ws_write_close(&l->tx, TX_HARD_CAP, 1001, "going away", l->client ? key : NULL);
    }
    size_t n;
    if (l->sock.fd >= 0 && l->sock.tls != UP_TLS_FAILED) {
        ignored = up_sock_write(&l->sock, up_buf_rptr(&l->tx), up_buf_len(&l->tx), &n);
    }
    (void)ignored;
    uv_timer_stop(&l->timer);
    uv_close((uv_handle_t *)&l->timer, handle_closed);
    up_sock_close(&l->sock, sock_closed);
}

/* A draining link whose last stream ended and whose last frames reached the socket starts the
 * WebSocket closing handshake (RFC 6455 §7.1.2): close frame, then wait for the peer's close or
 * EOF before closing the socket. Closing at once could turn unread input into an RST that
 * destroys our last bytes in the peer's receive queue. */
static void maybe_close_idle(struct up_link *l)
{
    if (!l->close_idle || l->close_sent || up_sess_nstreams(&l->sess) != 0 ||
        up_buf_len(&l->tx) != 0) {
        return;
    }
    uint8_t key[4];
    if (l->client) {
        mask_key(l, key);
    }
    if (up_ws_write_close(&l->tx, TX_HARD_CAP, 1001, "going away", l->client ? key : NULL) < 0) {
        fail(l, "%s", l->idle_reason);
        return;
    }
    l->close_sent = true;
    uv_timer_stop(&l->timer);
    uv_timer_start(&l->timer, on_timer, CLOSE_WAIT_MS, 0);
    kick(l);
}

static void run_dirty(struct up_linkloop *ll)
{
    /* Work on a snapshot: a link that kicks itself again runs on the next iteration, after
     * the loop has polled, instead of spinning here. */
    struct up_link *list = ll->head;
    ll->head = NULL;
    while (list) {
        struct up_link *l = list;
        list = l->dnext;
        l->in_dirty = false;
        l->dnext = NULL;
        if (l->closing) {
            continue;
        }
        if (!l->dead && up_sock_has_pending(&l->sock)) {
            do_reads(l, false);
        }
        if (!l->dead) {
            flush(l);
        }
        if (!l->dead) {
            maybe_close_idle(l);
        }
        if (l->dead) {
            teardown(l);
        }
    }
    if (!ll->head) {
        uv_idle_stop(&ll->idle);
    }
}

/* ---- public ---- */

struct up_link *up_link_new(struct up_linkloop *ll, int fd, struct ssl_st *ssl, bool client,
                            const struct up_link_cfg *cfg, const struct up_link_ops *ops, void *ud,
                            const uint8_t *leftover, size_t leftover_len)
{
    uv_loop_t *loop = ll->loop;
    struct up_link *l = up_calloc(1, sizeof(*l));
    if (!l) {
        SSL_free(ssl);
        close(fd);
        return NULL;
    }
    l->loop = loop;
    l->ll = ll;
    if (cfg->max_buffer > ll->budget) {
        ll->budget = cfg->max_buffer;
    }
    l->client = client;
    l->kpipe[0] = l->kpipe[1] = -1;
    l->splice_on = client && !ssl && cfg->splice;
    l->cfg = *cfg;
    l->ops = ops;
    l->ud = ud;
    up_buf_init(&l->rx);
    up_buf_init(&l->tx);
    struct up_sess_cfg sc;
    up_sess_cfg_defaults(&sc, client);
    sc.window = cfg->window;
    sc.max_window = cfg->max_window < cfg->window ? cfg->window : cfg->max_window;
    sc.max_frame = cfg->max_frame;
    sc.max_streams = cfg->max_streams;
    sc.ping_misses = cfg->ping_misses;
    sc.tx_high = cfg->tx_high;
    sc.quantum = UP_LINK_CHUNK;
    sc.min_rtt_us = UP_LINK_MIN_RTT_US;
    if (up_sess_init(&l->sess, &sc) < 0) {
        goto undo_alloc;
    }
    if (up_buf_reserve(&l->rx, UP_LINK_RX_CAP, UP_LINK_RX_CAP) < 0) {
        goto undo_sess;
    }
    if (up_sock_init(&l->sock, loop, fd, on_sock, l) < 0) {
        fd = -1; /* closed by up_sock_init */
        goto undo_sess;
    }
    l->sock.ssl = ssl;
    l->sock.tls = ssl ? UP_TLS_OPEN : UP_TLS_NONE;
    /* A deep kernel send queue on plain links: when the next hop's socket is full the relay
     * must copy into its own output buffer instead of writing straight from the input (bench:
     * memmove went from 13% of the relay's profile to noise). Per link, not per stream. TLS
     * links keep the kernel's auto-tuning: there the copy happens anyway (encryption) and a
     * fixed buffer measured slower (wss 2.0-2.4 -> 1.75-2.0 Gbit/s). */
    if (!ssl) {
        up_tcp_set_sndbuf(fd, UP_LINK_SNDBUF);
    }
    /* What the kernel holds unsent is a FIFO that no scheduler reaches: on a slow path a deep
     * send buffer would park a bulk stream's whole window ahead of every other stream's
     * frames (test_slow_link: 870 ms round trips at 5 MB/s with a 4 MiB window). The socket
     * takes more only once its unsent bytes fall below this; the rest waits in our fair
     * queue. Bytes in flight (cwnd) are not limited. */
    up_tcp_set_notsent_lowat(fd, UP_LINK_NOTSENT_LOWAT);
    l->sock.is_server = !client;
    l->rnd_off = sizeof l->rnd;
    struct up_ws_cfg wc = {
        .role = client ? UP_WS_CLIENT : UP_WS_SERVER,
        .max_frame_bytes = (uint64_t)cfg->max_frame + UP_MUX_HDR + 64,
        .max_message_bytes = (uint64_t)cfg->max_frame + UP_MUX_HDR + 64,
        .validate_utf8 = true,
    };
    up_ws_parser_init(&l->ws, &wc);
    uv_timer_init(loop, &l->timer);
    l->timer.data = l;
    up_linkloop_ref(ll); /* dropped in link_release */
    linkloop_make_idle(ll);
    l->sock.poll.data = &l->sock;
    l->open_handles = 2;
    if (cfg->ping_interval_ms) {
        uv_timer_start(&l->timer, on_timer, cfg->ping_interval_ms, cfg->ping_interval_ms);
    }
    up_sock_want(&l->sock, true, false);
    send_ping(l); /* an RTT estimate before the first bulk transfer */
    if (leftover_len) {
        uint8_t *copy = up_malloc(leftover_len);
        if (copy) {
            memcpy(copy, leftover, leftover_len);
            process(l, copy, leftover_len);
            up_free(copy);
        }
    }
    if (ssl && up_sock_has_pending(&l->sock)) {
        on_sock(&l->sock, true, false);
    }
    kick(l);
    return l;
undo_sess:
    up_buf_fini(&l->rx);
    up_sess_fini(&l->sess);
undo_alloc:
    SSL_free(ssl);
    if (fd >= 0) {
        close(fd);
    }
    up_free(l);
    return NULL;
}

void *up_link_ud(const struct up_link *l)
{
    return l->ud;
}

const struct up_link_stats *up_link_stats(const struct up_link *l)
{
    /* The session counts what it decides; merge on read (l is ours, not const, underneath). */
    struct up_link *m = (struct up_link *)(uintptr_t)l;
    const struct up_sess_stats *ss = up_sess_stats(&l->sess);
    m->stats.bytes_in = ss->bytes_in;
    m->stats.streams_opened = ss->streams_opened;
    m->stats.streams_refused = ss->streams_refused;
    m->stats.streams_reset = ss->streams_reset;
    m->stats.protocol_errors = l->ws_errors + ss->protocol_errors;
    return &l->stats;
}

size_t up_link_nstreams(const struct up_link *l)
{
    return up_sess_nstreams(&l->sess);
}

void up_link_close(struct up_link *l, const char *reason)
{
    fail(l, "%s", reason);
}

void up_link_goaway(struct up_link *l, uint32_t code, const char *reason)
{
    if (l->dead) {
        return;
    }
    up_sess_goaway(&l->sess, code, reason);
    drain_ctl(l);
}

static void stream_init(struct up_link *l, struct up_lstream *st, const struct up_lstream_ops *ops,
                        void *ud)
{
    memset(st, 0, sizeof(*st));
    st->link = l;
    st->ops = ops;
    st->ud = ud;
}

void up_link_close_when_idle(struct up_link *l, const char *reason)
{
    if (l->dead || l->close_idle) {
        return;
    }
    l->close_idle = true;
    up_sess_drain(&l->sess);
    snprintf(l->idle_reason, sizeof l->idle_reason, "%s", reason);
    kick(l);
}

bool up_link_can_open(const struct up_link *l)
{
    return !l->dead && !l->closing && !l->close_idle && up_sess_can_open(&l->sess);
}

static int open_stream(struct up_link *l, struct up_lstream *st, const char *name,
                       const uint8_t *meta, size_t meta_len, const uint32_t *window,
                       const struct up_lstream_ops *ops, void *ud)
{
    if (!up_link_can_open(l)) {
        return UP_ESTATE;
    }
    stream_init(l, st, ops, ud);
    int rv = window ? up_sess_open_follow(&l->sess, &st->core, name, meta, meta_len, *window,
                                          up_now_us())
                    : up_sess_open(&l->sess, &st->core, name, meta, meta_len, up_now_us());
    if (rv < 0) {
        st->link = NULL;
        return rv;
    }
    st->sid = up_sess_stream_id(&st->core);
    st->opener = true;
    drain_ctl(l);
    return UP_OK;
}

int up_link_open(struct up_link *l, struct up_lstream *st, const char *name, const uint8_t *meta,
                 size_t meta_len, const struct up_lstream_ops *ops, void *ud)
{
    return open_stream(l, st, name, meta, meta_len, NULL, ops, ud);
}

int up_link_open_follow(struct up_link *l, struct up_lstream *st, const char *name,
                        const uint8_t *meta, size_t meta_len, uint32_t window,
                        const struct up_lstream_ops *ops, void *ud)
{
    return open_stream(l, st, name, meta, meta_len, &window, ops, ud);
}

int up_link_attach(struct up_link *l, struct up_lstream *st, uint32_t sid, uint32_t peer_window,
                   const struct up_lstream_ops *ops, void *ud)
{
    stream_init(l, st, ops, ud);
    st->sid = sid;
    if (up_sess_attach(&l->sess, &st->core, sid, peer_window, up_now_us()) < 0) {
        st->link = NULL;
        return UP_ENOMEM;
    }
    return UP_OK;
}

void up_link_accept(struct up_lstream *st)
{
    struct up_link *l = st->link;
    if (!l || st->accepted || st->opener) {
        return;
    }
    st->accepted = true;
    up_sess_accept(&l->sess, &st->core);
    drain_ctl(l);
}

void up_link_accept_follow(struct up_lstream *st, uint32_t window)
{
    struct up_link *l = st->link;
    if (!l || st->accepted || st->opener) {
        return;
    }
    st->accepted = true;
    up_sess_accept_follow(&l->sess, &st->core, window);
    drain_ctl(l);
}

void up_link_credit(struct up_lstream *st, uint32_t inc)
{
    struct up_link *l = st->link;
    if (l && up_sess_credit(&l->sess, &st->core, inc)) {
        drain_ctl(l);
    }
}

int64_t up_link_send_credit(const struct up_lstream *st)
{
    return st->link ? up_sess_send_avail(&st->core) : 0;
}

void up_link_refuse(struct up_link *l, uint32_t sid, uint32_t code, const char *reason)
{
    up_sess_refuse(&l->sess, sid, code, reason);
    drain_ctl(l);
}

void up_link_reset(struct up_lstream *st, uint32_t code, const char *reason)
{
    struct up_link *l = st->link;
    if (!l) {
        return;
    }
    up_sess_reset(&l->sess, &st->core, code, reason);
    stream_gone(l, st);
    drain_ctl(l);
}

void up_link_ready(struct up_lstream *st)
{
    struct up_link *l = st->link;
    if (!l) {
        return;
    }
    up_sess_ready(&l->sess, &st->core);
    kick(l);
}

bool up_link_is_ready(const struct up_lstream *st)
{
    return st->link && up_sess_stream_queued(&st->core);
}

/* Zero-copy send for an unmasked plain link with nothing queued: one writev of headers built
 * on the stack and the caller's payload slices. Only the unsent tail of a frame that went out
 * partly is copied into the output buffer (frames must stay whole on the wire). */
#define DIRECT_FRAMES 16
static size_t send_direct(struct up_link *l, struct up_lstream *st, const uint8_t *p, size_t n)
{
    struct iovec iov[2 * DIRECT_FRAMES];
    uint8_t hdr[DIRECT_FRAMES][UP_WS_MAX_HEADER + UP_MUX_HDR];
    size_t hlen[DIRECT_FRAMES], plen[DIRECT_FRAMES];
    size_t frames = 0, off = 0;
    int64_t avail = up_sess_send_avail(&st->core);
    while (off < n && frames < DIRECT_FRAMES && avail > 0) {
        size_t take = n - off;
        if (take > l->cfg.max_frame) {
            take = l->cfg.max_frame;
        }
        if ((int64_t)take > avail) {
            take = (size_t)avail;
        }
        size_t h = up_ws_encode_header(hdr[frames], UP_WS_OP_BINARY, true, UP_MUX_HDR + take, NULL);
        up_mux_encode_hdr(hdr[frames] + h, (uint32_t)take, UP_MUX_DATA, 0, st->sid);
        hlen[frames] = h + UP_MUX_HDR;
        plen[frames] = take;
        iov[2 * frames].iov_base = hdr[frames];
        iov[2 * frames].iov_len = hlen[frames];
        iov[2 * frames + 1].iov_base = (void *)(p + off);
        iov[2 * frames + 1].iov_len = take;
        frames++;
        off += take;
        avail -= (int64_t)take;
    }
    if (frames == 0) {
        return 0;
    }
    size_t wrote = 0;
    int rv = up_sock_writev(&l->sock, iov, (int)(2 * frames), &wrote);
    if (rv < 0 && rv != UP_EAGAIN) {
        fail(l, "write failed: %s", up_sock_strerror(&l->sock, rv));
        return 0;
    }
    l->stats.bytes_out += wrote;
    size_t taken = 0, pos = 0;
    for (size_t f = 0; f < frames; f++) {
        size_t flen = hlen[f] + plen[f];
        if (wrote >= pos + flen) {
            taken += plen[f];
            pos += flen;
            l->stats.frames_out++;
            continue;
        }
        if (wrote > pos) {
            /* This frame went out in part: queue the rest of it, header bytes included. */
            size_t done_f = wrote - pos;
            if (up_buf_reserve(&l->tx, flen - done_f, TX_HARD_CAP) < 0) {
                fail(l, "output buffer overflow%s", "");
                return 0;
            }
            if (done_f < hlen[f]) {
                memcpy(up_buf_wptr(&l->tx), hdr[f] + done_f, hlen[f] - done_f);
                up_buf_commit(&l->tx, hlen[f] - done_f);
                done_f = hlen[f];
            }
            size_t poff = done_f - hlen[f];
            memcpy(up_buf_wptr(&l->tx), (const uint8_t *)iov[2 * f + 1].iov_base + poff,
                   plen[f] - poff);
            up_buf_commit(&l->tx, plen[f] - poff);
            taken += plen[f];
            l->stats.frames_out++;
            kick(l);
        }
        break;
    }
    bool ignored = up_sess_data_sent(&l->sess, &st->core, taken, false); /* no FIN: false */
    (void)ignored;
    return taken;
}

size_t up_link_send(struct up_lstream *st, const uint8_t *p, size_t n)
{
    struct up_link *l = st->link;
    size_t done = 0;
    if (!l || l->dead || !up_sess_can_send(&st->core) || up_sess_stream_queued(&st->core)) {
        return 0;
    }
    if (!l->client && !l->sock.ssl && up_buf_len(&l->tx) == 0) {
        done = send_direct(l, st, p, n);
        if (done == n || l->dead || up_buf_len(&l->tx) > 0) {
            return done;
        }
        /* The socket took everything it could (or credit ran out): queue as usual below. */
    }
    while (done < n && up_buf_len(&l->tx) < l->cfg.tx_high && up_sess_send_avail(&st->core) > 0) {
        size_t take = n - done;
        const uint8_t *src = p + done;
        if (take > l->cfg.max_frame) {
            take = l->cfg.max_frame;
        }
        if ((int64_t)take > up_sess_send_avail(&st->core)) {
            take = (size_t)up_sess_send_avail(&st->core);
        }
        size_t hsz = up_ws_header_size(UP_MUX_HDR + take, l->client);
        if (up_buf_reserve(&l->tx, hsz + UP_MUX_HDR + take, TX_HARD_CAP) < 0) {
            break;
        }
        uint8_t *base = up_buf_wptr(&l->tx);
        uint8_t key[4];
        if (l->client) {
            mask_key(l, key);
        }
        up_ws_encode_header(base, UP_WS_OP_BINARY, true, UP_MUX_HDR + take, l->client ? key : NULL);
        up_mux_encode_hdr(base + hsz, (uint32_t)take, UP_MUX_DATA, 0, st->sid);
        memcpy(base + hsz + UP_MUX_HDR, src, take);
        if (l->client) {
            up_ws_mask(base + hsz, UP_MUX_HDR + take, key, 0);
        }
        up_buf_commit(&l->tx, hsz + UP_MUX_HDR + take);
        bool ignored = up_sess_data_sent(&l->sess, &st->core, take, false);
        (void)ignored;
        l->stats.frames_out++;
        done += take;
    }
    if (done) {
        kick(l);
    }
    return done;
}

void up_link_consumed(struct up_lstream *st, size_t n)
{
    up_link_consumed_held(st, n, 0);
}

void up_link_consumed_held(struct up_lstream *st, size_t n, size_t held)
{
    struct up_link *l = st->link;
    if (!l) {
        return;
    }
    struct up_linkloop *ll = l->ll;
    held_set(ll, st, held);
    if (n == 0 && !up_sess_credit_owed(&st->core)) {
        return;
    }
    bool may_grow = held == 0;
    bool withhold = false;
    if (ll->budget) {
        /* A window doubles when it grows: room for that much more, beyond the initial
         * windows, in the budget. */
        may_grow = may_grow && ll->committed + up_sess_recv_window(&st->core) <= ll->budget;
        withhold = ll->held > ll->budget && held > ll->budget / (ll->holders ? ll->holders : 1);
    }
    uint32_t inc = up_sess_consumed_ex(&l->sess, &st->core, n, may_grow, withhold, up_now_us());
    window_counted(l, st);
    if (inc) {
        UP_LOGD("stream %u: credit %u sent", st->sid, inc);
        drain_ctl(l);
    }
}

void up_link_set_held(struct up_lstream *st, size_t held)
{
    if (st->link) {
        held_set(st->link->ll, st, held);
    }
}
