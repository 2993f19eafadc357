/* libFuzzer target for the mux session core (src/proto/session.c), STYLE §14.
 *
 * Byte 0 bit 0 picks the mode:
 * - 1: raw. The rest of the input is fed straight into one session (bit 1: client role) in
 *   chunks whose sizes come from the input itself; every OPEN is attached and accepted or
 *   refused, every DATA consumed.
 * - 0: duel. Two sessions (A the client, B the server) talk through two bounded wires; each
 *   input byte picks an action (open, queue bytes to send, run the scheduler, deliver k bytes
 *   of one side's output to the other, consume, reset, accept, GOAWAY, drain, advance time,
 *   PING, send DATA beyond the peer's credit, put raw bytes on a wire), its operands follow.
 *
 * Invariants (abort on violation):
 * - a stream never gets more DATA delivered than the window its side granted (the initial
 *   window plus every increment up_sess_consumed returned): DATA beyond it is refused;
 * - the harness's view of every stream (live or not) equals up_sess_stream_live, every stream
 *   ends exactly once (CLOSE event, a FIN that finished it, our reset, or link teardown), and
 *   after the teardown both tables are empty;
 * - at most max_streams streams, and at most OUT_CAP (cfg.out_cap) bytes of queued output. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/mux.h"
#include "proto/session.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_session: check failed: %s (line %d)\n", #c, __LINE__);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define SLOTS 8
#define MAX_STREAMS 6
#define WINDOW 4096u
#define MAX_WINDOW 16384u
#define MAX_FRAME 8192u
#define OUT_CAP 4096u          /* a small control queue: its overflow path is reachable */
#define WIRE_CAP (64u * 1024u) /* bytes in flight from one side to the other */
#define RAW_MAX 1024           /* raw mode: bytes fed per input, for the same reason */
#define MAX_STEPS 32           /* actions per input: short runs keep the fuzzer fast */

struct slot {
    bool live;
    uint32_t closed; /* times it ended: must end at 1 for every stream ever registered */
    bool used;
    bool accepted; /* ACCEPT sent (attached) or received (opened) */
    bool opener;
    uint64_t granted;   /* window we gave: initial + increments */
    uint64_t delivered; /* DATA bytes the session delivered */
    uint64_t unconsumed;
    uint64_t to_send;
    bool want_fin;
};

struct side {
    struct up_sess s;
    struct up_sess_stream st[SLOTS];
    struct slot m[SLOTS];
    uint8_t *wire; /* borrowed static buffer: what this side sent, the other has not read */
    size_t wire_rd, wire_len;
    bool dead; /* failed: nothing more is fed to it */
};

struct input {
    const uint8_t *p;
    size_t n;
};

static uint8_t take(struct input *in)
{
    if (in->n == 0) {
        return 0;
    }
    in->n--;
    return *in->p++;
}

static uint64_t now_us;

/* The sessions' memory: a bump arena reset per input (no malloc/free per run; a session
 * frees nothing it still uses, so freeing is a no-op). Also runs the injected-allocator path.
 * Out of arena = out of memory, which the session must survive. */
static _Alignas(16) uint8_t arena[64 * 1024];
static size_t arena_used;

static void *arena_realloc(void *ud, void *p, size_t n)
{
    (void)ud;
    if (n == 0) {
        return NULL;
    }
    n = (n + 15) & ~(size_t)15;
    if (arena_used + n > sizeof arena) {
        return NULL;
    }
    void *q = arena + arena_used;
    arena_used += n;
    CHECK(p == NULL); /* the session allocates anew and frees, it never resizes */
    return q;
}

static void side_init(struct side *sd, bool client, uint8_t *wire)
{
    memset(sd, 0, sizeof(*sd));
    sd->wire = wire;
    struct up_sess_cfg cfg;
    up_sess_cfg_defaults(&cfg, client);
    cfg.window = WINDOW;
    cfg.max_window = MAX_WINDOW;
    cfg.max_frame = MAX_FRAME;
    cfg.max_streams = MAX_STREAMS;
    cfg.tx_high = 3 * MAX_FRAME;
    cfg.quantum = 3000;
    cfg.min_rtt_us = 50;
    cfg.out_cap = OUT_CAP;
    cfg.alloc.realloc_fn = arena_realloc;
    CHECK(up_sess_init(&sd->s, &cfg) == UP_OK);
}

/* The bounds after every step; the per-stream views (the costly part, under coverage
 * instrumentation) when full is set: every 8 steps and at the end. */
static void check_side(struct side *sd, bool full)
{
    CHECK(up_sess_nstreams(&sd->s) <= MAX_STREAMS);
    CHECK(up_sess_out_len(&sd->s) <= OUT_CAP);
    if (!full) {
        return;
    }
    size_t live = 0;
    for (int i = 0; i < SLOTS; i++) {
        CHECK(sd->m[i].live == up_sess_stream_live(&sd->st[i]));
        CHECK(sd->m[i].closed <= 1);
        CHECK(sd->m[i].delivered <= sd->m[i].granted);
        live += sd->m[i].live;
    }
    CHECK(live == up_sess_nstreams(&sd->s));
    CHECK(up_sess_nstreams(&sd->s) <= MAX_STREAMS);
    CHECK(up_sess_out_len(&sd->s) <= OUT_CAP);
}

static void ended(struct side *sd, int i)
{
    CHECK(sd->m[i].live);
    sd->m[i].live = false;
    sd->m[i].closed++;
}

static int slot_of(struct side *sd, const struct up_sess_stream *st)
{
    CHECK(st >= sd->st && st < sd->st + SLOTS);
    return (int)(st - sd->st);
}

static int free_slot(struct side *sd)
{
    for (int i = 0; i < SLOTS; i++) {
        if (!sd->m[i].used) {
            return i;
        }
    }
    return -1;
}

static void registered(struct side *sd, int i)
{
    sd->m[i] = (struct slot){.live = true, .used = true, .granted = WINDOW};
}

/* Room for n more bytes on sd's wire (compacting what the peer already read). */
static bool wire_room(struct side *sd, size_t n)
{
    if (sd->wire_len + n > WIRE_CAP && sd->wire_rd) {
        memmove(sd->wire, sd->wire + sd->wire_rd, sd->wire_len - sd->wire_rd);
        sd->wire_len -= sd->wire_rd;
        sd->wire_rd = 0;
    }
    return sd->wire_len + n <= WIRE_CAP;
}

/* Move the queued control frames onto this side's wire (as the shell does after each call). */
static void drain_ctl(struct side *sd)
{
    size_t n;
    const uint8_t *f;
    while ((f = up_sess_frame_peek(&sd->s, &n)) != NULL && wire_room(sd, n)) {
        memcpy(sd->wire + sd->wire_len, f, n);
        sd->wire_len += n;
        up_sess_frame_pop(&sd->s);
    }
    if (up_sess_err_reason(&sd->s)) {
        sd->dead = true;
    }
}

static void put_data(struct side *sd, uint32_t sid, size_t n, bool fin)
{
    CHECK(wire_room(sd, UP_MUX_HDR + n));
    up_mux_encode_hdr(sd->wire + sd->wire_len, (uint32_t)n, UP_MUX_DATA, fin ? UP_MUX_FLAG_FIN : 0,
                      sid);
    /* The payload bytes mean nothing to the session: whatever the buffer holds will do. */
    sd->wire_len += UP_MUX_HDR + n;
}

static void consume(struct side *sd, int i, uint64_t n)
{
    struct slot *m = &sd->m[i];
    if (n > m->unconsumed) {
        n = m->unconsumed;
    }
    m->unconsumed -= n;
    if (m->live) {
        m->granted += up_sess_consumed(&sd->s, &sd->st[i], (size_t)n, now_us);
    }
}

/* Feed bytes to sd and act on the events as an owner would; decisions come from in. */
static void feed(struct side *sd, const uint8_t *p, size_t n, struct input *in)
{
    if (sd->dead) {
        return;
    }
    for (int guard = 0; guard < 100000; guard++) {
        struct up_sess_ev ev;
        size_t used = 0;
        int rv = up_sess_parse(&sd->s, p, n, &used, &ev, now_us);
        CHECK(used <= n);
        p += used;
        n -= used;
        if (rv < 0) {
            CHECK(up_sess_err_reason(&sd->s) != NULL);
            CHECK(ev.kind == UP_SESS_EV_NONE);
            drain_ctl(sd);
            sd->dead = true;
            return;
        }
        if (ev.kind == UP_SESS_EV_NONE) {
            CHECK(n == 0);
            return;
        }
        int i = ev.st ? slot_of(sd, ev.st) : -1;
        switch (ev.kind) {
        case UP_SESS_EV_OPEN: {
            int f = free_slot(sd);
            uint8_t how = take(in) % 4;
            if (f < 0 || how == 3) {
                up_sess_refuse(&sd->s, ev.sid, UP_MUX_C_REFUSED, "no");
                break;
            }
            CHECK(up_sess_attach(&sd->s, &sd->st[f], ev.sid, ev.window, now_us) == UP_OK);
            registered(sd, f);
            if (how != 2) {
                up_sess_accept(&sd->s, &sd->st[f]);
                sd->m[f].accepted = true;
            }
            break;
        }
        case UP_SESS_EV_ACCEPT:
            CHECK(sd->m[i].live && !sd->m[i].accepted);
            sd->m[i].accepted = true;
            break;
        case UP_SESS_EV_DATA:
            CHECK(sd->m[i].live && sd->m[i].accepted); /* never DATA before ACCEPT */
            CHECK(ev.len > 0);
            sd->m[i].delivered += ev.len;
            sd->m[i].unconsumed += ev.len;
            CHECK(sd->m[i].delivered <= sd->m[i].granted);
            if (take(in) & 1) {
                consume(sd, i, sd->m[i].unconsumed);
            }
            break;
        case UP_SESS_EV_FIN:
            CHECK(sd->m[i].live && sd->m[i].accepted);
            break;
        case UP_SESS_EV_CLOSE:
            CHECK(!up_sess_stream_live(ev.st));
            ended(sd, i);
            break;
        case UP_SESS_EV_GOAWAY:
            CHECK(!up_sess_can_open(&sd->s));
            break;
        case UP_SESS_EV_CREDIT:
            CHECK(!"CREDIT reported for a stream that does not follow");
            break;
        case UP_SESS_EV_NONE:
            break;
        }
        drain_ctl(sd);
    }
    CHECK(!"event loop did not end");
}

/* The shell's scheduler loop: DATA frames in the sizes the session allows. */
static void pump(struct side *sd, int frames)
{
    for (int k = 0; k < frames && !sd->dead; k++) {
        size_t q = sd->wire_len - sd->wire_rd;
        size_t queued = q > 3 * MAX_FRAME ? 3 * MAX_FRAME : q;
        struct up_sess_stream *cs = up_sess_next(&sd->s, queued);
        if (!cs) {
            return;
        }
        int i = slot_of(sd, cs);
        struct slot *m = &sd->m[i];
        CHECK(m->live && up_sess_can_send(cs));
        size_t max = up_sess_frame_max(&sd->s, cs, queued);
        CHECK(max <= MAX_FRAME);
        CHECK((int64_t)max <= up_sess_send_avail(cs));
        size_t n = m->to_send < max ? (size_t)m->to_send : max;
        bool fin = m->want_fin && n == m->to_send;
        if (!wire_room(sd, UP_MUX_HDR + n)) {
            return;
        }
        if (n || fin) {
            put_data(sd, up_sess_stream_id(cs), n, fin);
        }
        m->to_send -= n;
        if (up_sess_pulled(&sd->s, cs, n, fin)) {
            ended(sd, i);
        }
        if (fin) {
            m->want_fin = false;
        }
    }
}

static void deliver(struct side *from, struct side *to, size_t k, struct input *in)
{
    size_t have = from->wire_len - from->wire_rd;
    if (k > have) {
        k = have;
    }
    const uint8_t *p = from->wire + from->wire_rd;
    from->wire_rd += k;
    feed(to, p, k, in); /* to writes only to its own wire */
    if (from->wire_rd == from->wire_len) {
        from->wire_rd = from->wire_len = 0;
    }
}

static void teardown(struct side *sd)
{
    for (;;) {
        struct up_sess_stream *cs = up_sess_take_stream(&sd->s);
        if (!cs) {
            break;
        }
        ended(sd, slot_of(sd, cs));
    }
    CHECK(up_sess_nstreams(&sd->s) == 0);
    for (int i = 0; i < SLOTS; i++) {
        CHECK(!sd->m[i].live);
        CHECK(sd->m[i].closed == (sd->m[i].used ? 1u : 0u));
    }
    up_sess_fini(&sd->s);
}

static void run_raw(bool client, struct input *in)
{
    if (in->n > RAW_MAX) {
        in->n = RAW_MAX;
    }
    static struct side sd;
    static uint8_t wire[WIRE_CAP];
    side_init(&sd, client, wire);
    while (in->n && !sd.dead) {
        size_t k = (size_t)take(in) * 8 + 1;
        if (k > in->n) {
            k = in->n;
        }
        static uint8_t buf[2048 + 8];
        memcpy(buf, in->p, k);
        in->p += k;
        in->n -= k;
        struct input none = {0};
        feed(&sd, buf, k, &none);
        for (int i = 0; i < SLOTS; i++) {
            consume(&sd, i, sd.m[i].unconsumed);
        }
        drain_ctl(&sd);
        sd.wire_rd = sd.wire_len = 0;
        check_side(&sd, true);
    }
    teardown(&sd);
}

static void run_duel(struct input *in)
{
    static struct side ab[2];
    static uint8_t wires[2][WIRE_CAP];
    side_init(&ab[0], true, wires[0]);
    side_init(&ab[1], false, wires[1]);
    for (int step = 0; in->n && step < MAX_STEPS; step++) {
        uint8_t op = take(in);
        struct side *sd = &ab[op & 1];
        struct side *peer = &ab[!(op & 1)];
        int i = take(in) % SLOTS;
        struct slot *m = &sd->m[i];
        switch ((op >> 1) % 14) {
        case 0: /* open */
            if (!m->used && !sd->dead) {
                if (up_sess_open(&sd->s, &sd->st[i], "svc", NULL, 0, now_us) == UP_OK) {
                    registered(sd, i);
                    m->opener = true;
                }
            }
            break;
        case 1: /* the owner has bytes (and maybe a FIN) */
            if (m->live) {
                m->to_send += (uint64_t)take(in) * 97;
                m->want_fin = m->want_fin || (take(in) & 1);
                up_sess_ready(&sd->s, &sd->st[i]);
            }
            break;
        case 2:
        case 3:
            pump(sd, 1 + take(in) % 8);
            break;
        case 4:
        case 5:
        case 6: /* deliver */
            deliver(sd, peer, (size_t)take(in) * 64 + take(in), in);
            break;
        case 7: /* consume */
            consume(sd, i, (uint64_t)take(in) * 64);
            break;
        case 8: /* reset */
            if (m->live) {
                up_sess_reset(&sd->s, &sd->st[i], UP_MUX_C_CANCEL, "fuzz");
                ended(sd, i);
            }
            break;
        case 9: /* accept an attached stream / zero-copy send */
            if (m->live) {
                up_sess_accept(&sd->s, &sd->st[i]); /* a no-op on a stream we opened */
                m->accepted = m->accepted || !m->opener;
                struct up_sess_stream *cs = &sd->st[i];
                if (up_sess_can_send(cs) && !up_sess_stream_queued(cs) && m->to_send) {
                    int64_t avail = up_sess_send_avail(cs);
                    size_t n = up_sess_burst_max(&sd->s, cs, (size_t)m->to_send);
                    n = n > MAX_FRAME ? MAX_FRAME : n;
                    n = (int64_t)n > avail ? (size_t)(avail > 0 ? avail : 0) : n;
                    if (n && wire_room(sd, UP_MUX_HDR + n)) {
                        put_data(sd, up_sess_stream_id(cs), n, false);
                        m->to_send -= n;
                        CHECK(!up_sess_data_sent(&sd->s, cs, n, false));
                    }
                }
            }
            break;
        case 10: /* link state */
            switch (take(in) % 5) {
            case 0:
                up_sess_goaway(&sd->s, UP_MUX_C_SHUTDOWN, "fuzz goaway");
                break;
            case 1:
                up_sess_drain(&sd->s);
                break;
            case 2:
                up_sess_ping(&sd->s, now_us);
                break;
            case 3:
                if (up_sess_keepalive(&sd->s, now_us) < 0) {
                    sd->dead = true; /* the shell would close the link */
                }
                break;
            default:
                now_us += (uint64_t)take(in) * 37;
                break;
            }
            break;
        case 11: /* DATA that ignores the peer's credit (a broken peer) */
            if (m->used && !sd->dead) {
                size_t n = (size_t)take(in) * 32;
                n = n > MAX_FRAME ? MAX_FRAME : n;
                if (wire_room(sd, UP_MUX_HDR + n)) {
                    put_data(sd, up_sess_stream_id(&sd->st[i]), n, false);
                }
            }
            break;
        case 12: /* raw bytes on the wire */ {
            size_t n = take(in) % 32;
            while (n-- && in->n && wire_room(sd, 1)) {
                sd->wire[sd->wire_len++] = take(in);
            }
            break;
        }
        default:
            now_us += take(in);
            break;
        }
        drain_ctl(sd);
        drain_ctl(peer);
        check_side(sd, (step & 7) == 7);
        check_side(peer, (step & 7) == 7);
    }
    /* Let everything in flight arrive, then the links close: every stream ends once. */
    for (int k = 0; k < 3; k++) {
        struct input none = {0};
        deliver(&ab[0], &ab[1], WIRE_CAP, &none);
        deliver(&ab[1], &ab[0], WIRE_CAP, &none);
        check_side(&ab[0], true);
        check_side(&ab[1], true);
    }
    teardown(&ab[0]);
    teardown(&ab[1]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct input in = {data, size};
    uint8_t mode = take(&in);
    now_us = 1000;
    arena_used = 0;
    if (mode & 1) {
        run_raw((mode & 2) != 0, &in);
    } else {
        run_duel(&in);
    }
    return 0;
}
