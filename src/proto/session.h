/* The mux session (docs/PROTOCOL.md §3, §8-§11), sans-IO, like nghttp2's nghttp2_session: the
 * stream table, stream-id rules, stream states, per-stream windows and their auto-tuning,
 * GOAWAY and draining, the stream limit, the fair scheduler's decisions, PING and RTT. Bytes
 * and time go in; events and control frames come out. No sockets, clocks, logging or globals.
 *
 * The shell (src/link/link.c) owns the socket, TLS, WebSocket framing and the output buffer.
 * It feeds the payload of each binary WebSocket message to up_sess_parse() and handles the
 * events; after every call into the session it moves the queued control frames
 * (up_sess_frame_peek/up_sess_frame_pop) into its output, one WebSocket message each, so they
 * keep their order relative to the DATA frames it writes itself. DATA frames are written by
 * the shell (straight from its streams' owners into its buffer, or with writev) in the sizes
 * up_sess_next()/up_sess_frame_max() allow, and reported with up_sess_pulled() or
 * up_sess_data_sent().
 *
 * Streams are embedded in their owners' objects (struct up_sess_stream); the session only
 * holds pointers to them. Only this module's functions touch their fields. */
#ifndef UP_PROTO_SESSION_H
#define UP_PROTO_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/alloc.h"
#include "base/err.h"
#include "proto/mux.h"

/* Control frames queued and not yet taken by the shell: at most this many bytes by default
 * (cfg.out_cap; room for ten
 * of the largest control frames; the shell drains the queue after every call, so it never
 * holds more than two). Beyond it the session fails: "mux: control output queue full". */
#define UP_SESS_OUT_CAP (16u * 1024u)
/* The largest control frame the session queues (a GOAWAY or RST with a full reason). */
#define UP_SESS_MAX_CTRL_FRAME (UP_MUX_HDR + 8 + UP_MUX_MAX_REASON)
#define UP_SESS_DEFAULT_MAX_STREAMS 10240 /* docs/PROTOCOL.md §11 */
#define UP_SESS_DEFAULT_QUANTUM 65526u    /* fairness quantum (see UP_LINK_CHUNK) */
/* What a stream that wakes up may send ahead of the round robin (see up_sess_ready): a
 * request, a keystroke, a TLS handshake message. */
#define UP_SESS_DEFAULT_FRESH_QUANTUM 2048u
#define UP_SESS_DEFAULT_TX_HIGH (128u * 1024u)
#define UP_SESS_DEFAULT_MIN_RTT_US 500u /* RTT floor for window auto-tuning */
#define UP_SESS_DEFAULT_PING_MISSES 3

struct up_sess_cfg {
    bool client;          /* WebSocket client: we open odd ids, the peer even ones (§3) */
    uint32_t window;      /* initial per-stream receive window we grant */
    uint32_t max_window;  /* auto-tuning cap */
    uint32_t max_frame;   /* largest DATA payload sent and accepted */
    uint32_t max_streams; /* concurrent streams (ours and the peer's) */
    uint32_t ping_misses; /* up_sess_keepalive fails after this many unanswered PINGs */
    size_t tx_high;       /* scheduler: pull nothing while the shell holds this much */
    size_t quantum;       /* DATA bytes per stream per turn when several streams wait */
    size_t fresh_quantum; /* DATA bytes a stream that woke up sends ahead of the others */
    uint64_t min_rtt_us;  /* RTT floor for auto-tuning (scheduling delays loopback hides) */
    size_t out_cap;       /* control output queue bound; 0 = UP_SESS_OUT_CAP */
    struct up_alloc alloc;
};

/* Fill cfg with the defaults above (window, max_window, max_frame from proto/mux.h). */
void up_sess_cfg_defaults(struct up_sess_cfg *cfg, bool client);

/* A stream's protocol state, embedded in its owner's object. */
struct up_sess_stream {
    uint32_t sid;
    struct up_mux_flow flow;
    struct up_sess_stream *hnext;         /* hash chain */
    struct up_sess_stream *rnext, *rprev; /* ready list */
    bool in_table;                        /* known to the session */
    bool in_ready;
    bool fresh;    /* in the ready list's head part: woke up, not yet had its fresh turn */
    bool opener;   /* we sent OPEN */
    bool accepted; /* ACCEPT sent or received */
    bool fin_sent;
    bool fin_rcvd;
    bool deferred; /* dropped from the ready list before ACCEPT: re-added on ACCEPT */
    bool follow;   /* our credit follows the next hop's (a relay stream, §9): no auto-tuning,
                    * credit only through up_sess_credit(), the peer's CREDIT reported */
};

enum up_sess_ev_kind {
    UP_SESS_EV_NONE,   /* input consumed, nothing to report */
    UP_SESS_EV_OPEN,   /* sid, window, name/name_len, data/len = metadata: the peer opens a
                        * stream; call up_sess_attach() (and up_sess_accept() later) or
                        * up_sess_refuse() */
    UP_SESS_EV_ACCEPT, /* st: the peer accepted our stream; DATA may flow */
    UP_SESS_EV_DATA,   /* st, data/len: DATA admitted within the window we granted */
    UP_SESS_EV_FIN,    /* st: the peer finished sending */
    UP_SESS_EV_CLOSE,  /* st, code, reason (NULL for a normal close): the stream is over and
                        * already forgotten by the session (reset by the peer, refused by a
                        * rule of ours with an RST queued, or both FINs done) */
    UP_SESS_EV_GOAWAY, /* code, reason: the peer accepts no new streams */
    UP_SESS_EV_CREDIT, /* st, len = increment: the peer granted credit on a stream that
                        * follows (up_sess_open_follow, up_sess_accept_follow) */
};

struct up_sess_ev {
    enum up_sess_ev_kind kind;
    struct up_sess_stream *st;
    uint32_t sid;
    uint32_t window;
    uint32_t code;
    const char *name; /* OPEN: borrowed */
    size_t name_len;
    const uint8_t *data; /* DATA, OPEN: borrowed until the next call on the session */
    size_t len;
    const char *reason; /* CLOSE, GOAWAY: NUL-terminated, borrowed like data */
};

struct up_sess_stats {
    uint64_t bytes_in; /* DATA payload bytes admitted */
    uint64_t streams_opened, streams_refused, streams_reset;
    uint64_t protocol_errors;
};

struct up_sess {
    struct up_sess_cfg cfg;
    struct up_mux_parser mux;
    struct up_sess_stream **table; /* owned bucket heads; the streams are borrowed */
    size_t table_cap;
    size_t nstreams;
    size_t take_at; /* up_sess_take_stream: the bucket to look at first */
    struct up_sess_stream *ready_head, *ready_tail;
    struct up_sess_stream *fresh_tail; /* the last fresh stream (they come first), or NULL */
    uint32_t next_sid;
    uint32_t last_peer_sid;
    uint64_t srtt_us;
    uint32_t pings_out;
    bool goaway_sent, goaway_rcvd;
    bool draining;          /* refuse OPENs, open none (close when idle) */
    const char *err_reason; /* set once the session failed: only fini remains */
    int err;                /* UP_EPROTO/UP_ELIMIT/UP_ENOMEM with err_reason */
    uint8_t *out;           /* owned: queued control frames, cfg.out_cap bytes */
    size_t out_rd, out_wr;
    uint32_t fin_sid;                  /* a FIN was reported: check both-FINs on the next parse */
    struct up_sess_stream *pend_close; /* reported as CLOSE by the next parse */
    uint32_t pend_code;
    const char *pend_reason;
    char reason[UP_MUX_MAX_REASON + 1];
    char goaway_reason[UP_MUX_MAX_REASON + 1]; /* what our GOAWAY said */
    struct up_sess_stats stats;
};

/* Initialise s (the caller embeds it). Returns UP_OK, UP_EINVAL (a bad cfg) or UP_ENOMEM. */
UP_NODISCARD int up_sess_init(struct up_sess *s, const struct up_sess_cfg *cfg);
/* Free what s allocated. The streams are forgotten, not closed (take them first with
 * up_sess_take_stream). Idempotent. */
void up_sess_fini(struct up_sess *s);

/* ---- input ---- */

/* Consume the payload bytes of binary WebSocket messages in[0..len) and produce at most one
 * event; *used is always set. now_us is the caller's monotonic clock (RTT from PONGs). PING is
 * answered, PONG, CREDIT and the rules of §3/§8/§9/§11 are handled inside: a rule broken on a
 * stream queues an RST and reports CLOSE for it; a broken link rule queues GOAWAY
 * `protocol-error` with the reason and returns UP_EPROTO or UP_ELIMIT (up_sess_err_reason()),
 * after which every call fails the same way. Call again, with the rest or with len 0, until
 * the kind is NONE. */
UP_NODISCARD int up_sess_parse(struct up_sess *s, const uint8_t *in, size_t len, size_t *used,
                               struct up_sess_ev *ev, uint64_t now_us);
/* A rule the shell detected (a text WebSocket message on a mux link): queue GOAWAY
 * `protocol-error` with reason (static or outliving s) and fail the session. Idempotent. */
void up_sess_protocol_error(struct up_sess *s, const char *reason);
/* The reason the session failed, or NULL. */
const char *up_sess_err_reason(const struct up_sess *s);

/* Out-of-band DATA (splice): the payload bytes of the current DATA frame still to come (0
 * outside a DATA payload) and, in *st, its stream when it can take them (known, open for
 * input), else NULL. */
uint32_t up_sess_data_left(const struct up_sess *s, struct up_sess_stream **st);
/* Bytes still needed to complete the current frame header, or 0 outside a header. */
size_t up_sess_hdr_left(const struct up_sess *s);
/* n (<= up_sess_data_left) payload bytes moved past the session out of band: admit them
 * like DATA. Returns true when the stream takes them; false when they must be discarded (the
 * stream is unknown, or a rule reset it: its CLOSE comes from the next up_sess_parse). */
bool up_sess_skip_data(struct up_sess *s, uint32_t n);

/* ---- output ---- */

/* The oldest queued control frame (*n bytes, borrowed until the next call on s), or NULL. */
const uint8_t *up_sess_frame_peek(const struct up_sess *s, size_t *n);
/* Drop the frame up_sess_frame_peek returned. */
void up_sess_frame_pop(struct up_sess *s);
/* Bytes of control frames queued. */
size_t up_sess_out_len(const struct up_sess *s);

/* ---- streams ---- */

size_t up_sess_nstreams(const struct up_sess *s);
struct up_sess_stream *up_sess_find(const struct up_sess *s, uint32_t sid);
/* Whether we may open a stream (no GOAWAY received, not draining, not failed). */
bool up_sess_can_open(const struct up_sess *s);
/* Open st for service name: allocates the next id of our parity, registers st and queues
 * OPEN with our window. Returns UP_OK, UP_ESTATE (!up_sess_can_open), UP_ELIMIT (max_streams,
 * ids used up), UP_EINVAL (a bad name or metadata) or UP_ENOMEM (st is not registered). */
UP_NODISCARD int up_sess_open(struct up_sess *s, struct up_sess_stream *st, const char *name,
                              const uint8_t *meta, size_t meta_len, uint64_t now_us);
/* As up_sess_open, for a stream whose credit follows the next hop (a relay's bridge, §9): the
 * OPEN grants window instead of cfg.window, the window never auto-tunes and up_sess_consumed
 * returns no credit; the owner grants with up_sess_credit() what the next hop granted it, and
 * the peer's CREDIT comes back as UP_SESS_EV_CREDIT. */
UP_NODISCARD int up_sess_open_follow(struct up_sess *s, struct up_sess_stream *st, const char *name,
                                     const uint8_t *meta, size_t meta_len, uint32_t window,
                                     uint64_t now_us);
/* Register st for the stream sid the peer opened (after EV_OPEN) with the window its OPEN
 * granted. Returns UP_OK, UP_ESTATE (failed session) or UP_ENOMEM. */
UP_NODISCARD int up_sess_attach(struct up_sess *s, struct up_sess_stream *st, uint32_t sid,
                                uint32_t peer_window, uint64_t now_us);
/* Accept an attached stream: queue ACCEPT with our window. No-op when done, detached, or a
 * stream we opened. */
void up_sess_accept(struct up_sess *s, struct up_sess_stream *st);
/* As up_sess_accept, granting window instead of cfg.window, for a stream whose credit follows
 * the next hop (see up_sess_open_follow). */
void up_sess_accept_follow(struct up_sess *s, struct up_sess_stream *st, uint32_t window);
/* Grant the peer inc more bytes on a following stream (what the next hop granted us): queue
 * CREDIT. Returns the increment queued (0: none: not following, detached, after the peer's
 * FIN, or the window is at 2^31-1). */
uint32_t up_sess_credit(struct up_sess *s, struct up_sess_stream *st, uint32_t inc);
/* Refuse a stream the peer opened that was never attached: queue RST. */
void up_sess_refuse(struct up_sess *s, uint32_t sid, uint32_t code, const char *reason);
/* Reset st: queue RST and forget it (no CLOSE event follows). No-op when detached. */
void up_sess_reset(struct up_sess *s, struct up_sess_stream *st, uint32_t code, const char *reason);
/* Forget one stream without a frame (the link is gone) and return it, or NULL when none is
 * left. The caller closes it (LINK_LOST). */
struct up_sess_stream *up_sess_take_stream(struct up_sess *s);
/* st's stream id (valid once opened or attached). */
uint32_t up_sess_stream_id(const struct up_sess_stream *st);
/* Whether st is registered with s. */
bool up_sess_stream_live(const struct up_sess_stream *st);
/* Whether st waits in the ready list. */
bool up_sess_stream_queued(const struct up_sess_stream *st);

/* Record that n received bytes of st reached the next hop; queue CREDIT once half the window
 * is pending (auto-tuned with the RTT and now_us, §9). Returns the increment queued (0: none).
 * Nothing after the peer's FIN. */
uint32_t up_sess_consumed(struct up_sess *s, struct up_sess_stream *st, size_t n, uint64_t now_us);
/* As up_sess_consumed; held is what the owner still buffers of st after these n bytes: the
 * window grows only when nothing is held (the consumer keeps up), never for a reader that
 * stopped. Nothing for a following stream (its credit comes from up_sess_credit). */
uint32_t up_sess_consumed_held(struct up_sess *s, struct up_sess_stream *st, size_t n, size_t held,
                               uint64_t now_us);
/* As up_sess_consumed: the window grows only when may_grow; with withhold, the bytes are
 * recorded but no CREDIT goes out (a memory budget: the stream waits), until a later call
 * without withhold returns them all. */
uint32_t up_sess_consumed_ex(struct up_sess *s, struct up_sess_stream *st, size_t n, bool may_grow,
                             bool withhold, uint64_t now_us);

/* The window we grant st now (after auto-tuning). */
uint32_t up_sess_recv_window(const struct up_sess_stream *st);
/* Whether st has delivered bytes whose credit is not returned yet (withheld or below half a
 * window). */
bool up_sess_credit_owed(const struct up_sess_stream *st);

/* ---- scheduling ---- */

/* The owner of st has DATA or a FIN to send: put st in the ready list (no-op when it is there
 * already, finished or detached). A stream that was not waiting goes ahead of the round robin,
 * after the others that just woke up, for one fresh quantum (cfg.fresh_quantum); then, with
 * more to send, to the back. A CREDIT that lets a stream send again does the same. */
void up_sess_ready(struct up_sess *s, struct up_sess_stream *st);
/* The stream whose turn it is, or NULL when none waits or the shell already holds queued >=
 * tx_high bytes. Streams not accepted yet are dropped from the list (no DATA before ACCEPT). */
struct up_sess_stream *up_sess_next(struct up_sess *s, size_t queued);
/* How many DATA bytes st (from up_sess_next) may put in its next frame, with queued bytes
 * held by the shell: one quantum when other streams wait; alone, up to tx_high + one quantum
 * of queued output (never above max_frame); never above the credit. May be 0 (a FIN only). */
size_t up_sess_frame_max(const struct up_sess *s, const struct up_sess_stream *st, size_t queued);
/* For a zero-copy write of n bytes of st with nothing queued in the shell: how many may go in
 * this turn (one quantum when other streams wait, else all n), before credit. */
size_t up_sess_burst_max(const struct up_sess *s, const struct up_sess_stream *st, size_t n);
/* The credit st may still spend (negative after a window shrink never happens: >= 0). */
int64_t up_sess_send_avail(const struct up_sess_stream *st);
/* Whether st may send DATA now: registered, accepted, no FIN sent. */
bool up_sess_can_send(const struct up_sess_stream *st);
/* The shell sent n DATA bytes of st in frames of its own (fin: the last was marked FIN).
 * Returns true when that ended the stream (both FINs): st is forgotten and the shell closes
 * it normally. */
bool up_sess_data_sent(struct up_sess *s, struct up_sess_stream *st, size_t n, bool fin);
/* End of st's turn in up_sess_next after it pulled n bytes (fin: with FIN): accounts them as
 * up_sess_data_sent does, then moves st to the back of the list, or drops it when it had
 * nothing or ran out of credit (its owner or a CREDIT adds it again). Returns true when the
 * stream ended. */
bool up_sess_pulled(struct up_sess *s, struct up_sess_stream *st, size_t n, bool fin);
/* Move st to the back of the ready list if it is in it (a zero-copy turn ended). */
void up_sess_rotate(struct up_sess *s, struct up_sess_stream *st);

/* ---- link state ---- */

/* Queue GOAWAY: the peer's later OPENs are refused with RST `shutdown`, "refused: <reason>".
 * Idempotent. */
void up_sess_goaway(struct up_sess *s, uint32_t code, const char *reason);
/* Drain: open no more streams and refuse the peer's as after GOAWAY. Idempotent. */
void up_sess_drain(struct up_sess *s);
bool up_sess_goaway_sent(const struct up_sess *s);
bool up_sess_goaway_rcvd(const struct up_sess *s);

/* Queue a PING carrying now_us (its PONG gives an RTT sample). */
void up_sess_ping(struct up_sess *s, uint64_t now_us);
/* Keep-alive tick: UP_ELIMIT when ping_misses PINGs are unanswered (the link is dead), else
 * queue a PING, count it and return UP_OK. */
UP_NODISCARD int up_sess_keepalive(struct up_sess *s, uint64_t now_us);
uint32_t up_sess_pings_out(const struct up_sess *s);
/* Smoothed RTT in µs (0 before the first PONG). */
uint64_t up_sess_srtt_us(const struct up_sess *s);
const struct up_sess_stats *up_sess_stats(const struct up_sess *s);

#endif
