/* A link: one WebSocket connection carrying the mux protocol, shared by relay, agent and
 * connect. It is the I/O shell around the sans-IO mux session (src/proto/session.c, which
 * holds the stream table, the protocol rules, flow control and the scheduler's decisions): it
 * owns the socket (after the HTTP upgrade), TLS, the WS parser and writer, the output buffer,
 * the timers and splice. Streams are embedded in their owners' objects
 * (an agent's backend connection, a relay bridge); the link only holds pointers to them.
 *
 * Data path: the link pulls stream bytes straight into its output buffer (for a socket
 * endpoint that is one read() into place, then masking), and hands received DATA slices to
 * the stream owner, which writes them to the next hop and reports the bytes with
 * up_link_consumed(), which is what returns credit to the sender. */
#ifndef UP_LINK_LINK_H
#define UP_LINK_LINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "base/buf.h"
#include "net/sock.h"
#include "proto/mux.h"
#include "proto/session.h"
#include "proto/ws.h"

struct up_link;
struct up_lstream;
struct up_linkloop;

/* The links of one event loop share a flusher (an idle handle that writes their output and
 * tears down dead links before the loop polls again). Each loop (thread, embedding
 * application) gets its own; nothing is process-global. The creator holds one reference,
 * each link and uplink on it another; the last unref closes the handle from the loop.
 * Returns NULL when out of memory. */
struct up_linkloop *up_linkloop_new(uv_loop_t *loop);
struct up_linkloop *up_linkloop_ref(struct up_linkloop *ll);
/* Drop a reference. NULL is a no-op. Once a link was made on it, the loop must run once more
 * after the last unref for the handle to close. */
void up_linkloop_unref(struct up_linkloop *ll);
uv_loop_t *up_linkloop_loop(const struct up_linkloop *ll);

struct up_link_cfg {
    uint32_t window;           /* initial per-stream receive window */
    uint32_t max_window;       /* auto-tuning cap */
    uint32_t max_frame;        /* largest DATA frame sent and accepted */
    uint32_t max_streams;      /* concurrent streams per link */
    uint64_t ping_interval_ms; /* keep-alive period, 0 = off */
    uint32_t ping_misses;      /* link is dead after this many unanswered pings */
    size_t tx_high;            /* stop pulling stream data above this many queued bytes */
    size_t max_buffer;         /* buffer budget of the loop's links together (the largest any link
                                * on the loop asked for), 0 = none: see up_link_set_held */
    bool splice;               /* client role, plain TCP: DATA may bypass user space */
};

/* Defaults (src/base/limits.h style: value and why). */
#define UP_LINK_DEFAULT_MAX_STREAMS 10240 /* the brief's 10,000 streams per link */
#define UP_LINK_DEFAULT_PING_MS 20000     /* well under common 60 s proxy idle timeouts */
#define UP_LINK_DEFAULT_PING_MISSES 3
/* The default buffer budget (--max-buffer-memory): what the streams of one process may hold
 * and be granted beyond their initial windows; a 256 MB box lives with it. */
#define UP_LINK_DEFAULT_MAX_BUFFER (64u * 1024u * 1024u)
/* Bytes pulled per stream per turn (the fairness quantum): 9 + 65526 = 65535 keeps every DATA
 * frame's WebSocket length in the 16-bit form, so a short read never has to be moved to fit a
 * smaller header than the one reserved. */
#define UP_LINK_CHUNK 65526u
#define UP_LINK_RX_CAP (256u * 1024u) /* socket read buffer */
/* Our own output buffer is a FIFO too: it holds at most this much ahead of the fair scheduler
 * (with the kernel's NOTSENT_LOWAT, what an interactive frame may wait behind on a slow link). */
#define UP_LINK_TX_HIGH (128u * 1024u)
#define UP_LINK_SNDBUF (4 << 20)             /* link socket send buffer (the kernel doubles it) */
#define UP_LINK_NOTSENT_LOWAT (128u * 1024u) /* unsent bytes a link socket may hold */
#define UP_LINK_MIN_RTT_US 500u              /* RTT floor for window auto-tuning */
/* splice(2) on the receive path: a DATA payload with at least this much still to come is
 * moved socket -> kernel pipe -> the owner's socket; shorter ones are read as usual. */
#define UP_LINK_SPLICE_MIN 4096u
#define UP_LINK_SPLICE_PIPE (256u * 1024u) /* kernel pipe size asked for (one per link) */

void up_link_cfg_defaults(struct up_link_cfg *cfg);

struct up_lstream_ops {
    /* Opener only: the peer accepted the stream; data may flow. */
    void (*on_accept)(struct up_lstream *st);
    /* DATA arrived. The owner takes all n bytes (the window bounds them) and calls
     * up_link_consumed() once they reached the next hop. */
    void (*on_data)(struct up_lstream *st, const uint8_t *p, size_t n);
    /* The peer finished sending (half-close). */
    void (*on_fin)(struct up_lstream *st);
    /* The stream is over on this link: reset by the peer (code != 0 or reason set), lost with
     * the link (UP_MUX_C_LINK_LOST), or closed normally after both FINs (code 0, reason NULL).
     * The link has already forgotten st; the owner may free it. */
    void (*on_close)(struct up_lstream *st, uint32_t code, const char *reason);
    /* Fill up to max bytes of data to send into dst; return how many. Set *fin when this
     * direction is finished (after these bytes). Returning 0 without fin means "nothing now":
     * the owner calls up_link_ready() when it has more. */
    size_t (*pull)(struct up_lstream *st, uint8_t *dst, size_t max, bool *fin);
    /* Optional, both or neither (plain-TCP links in the client role only, where the peer's
     * frames are unmasked): whether the owner can take DATA through a kernel pipe now, i.e.
     * it writes to a plain socket and has nothing of this stream queued; and, after it said
     * yes, n DATA bytes waiting in pipe fd. The owner takes them all (spliced to its socket,
     * the rest read into its buffer), calls up_link_consumed() for what reached the next hop
     * as for on_data, and returns how many it left in the pipe (only when it failed; the
     * link discards them). */
    bool (*splice_ok)(struct up_lstream *st);
    size_t (*on_splice)(struct up_lstream *st, int fd, size_t n);
    /* Optional, both or neither (the relay's bridges): what pull() would copy, in place. peek
     * returns the owner's queued bytes (*n of them; valid until the next call into the owner)
     * and skip(n) drops the first n once they went out, returning credit as pull() would.
     * Lets a plain link in the server role writev them instead of copying them first. */
    const uint8_t *(*peek)(struct up_lstream *st, size_t *n);
    void (*skip)(struct up_lstream *st, size_t n);
    /* Optional: the peer granted inc more bytes on a stream opened or accepted with
     * up_link_open_follow/up_link_accept_follow (the relay passes it on to the other side). */
    void (*on_credit)(struct up_lstream *st, uint32_t inc);
};

struct up_lstream {
    struct up_sess_stream core; /* protocol state: only the session (src/proto/session.c) */
    uint32_t sid;               /* read-only for the owner */
    struct up_link *link;       /* borrowed; NULL once the stream left the link */
    const struct up_lstream_ops *ops;
    void *ud;           /* borrowed: the owner */
    bool opener;        /* read-only: we sent OPEN */
    bool accepted;      /* read-only: ACCEPT sent or received */
    size_t held;        /* read-only: what the owner said it buffers (up_link_set_held) */
    uint32_t committed; /* read-only: our window, as counted in the loop's budget */
};

struct up_link_ops {
    /* The peer opens stream sid for service name with metadata meta. The owner either calls
     * up_link_attach() (then up_link_accept() or up_link_reset() later) or
     * up_link_refuse(). */
    void (*on_open)(struct up_link *l, uint32_t sid, uint32_t window, const char *name,
                    size_t name_len, const uint8_t *meta, size_t meta_len);
    /* The peer will open no new streams beyond last_sid and asks us to go elsewhere. */
    void (*on_goaway)(struct up_link *l, uint32_t code, const char *reason);
    /* The link is closing: every stream already got on_close. The link frees itself after
     * this returns; the owner must forget l. */
    void (*on_close)(struct up_link *l, const char *reason);
};

struct up_link_stats {
    uint64_t bytes_in;      /* DATA payload bytes received */
    uint64_t bytes_out;     /* bytes written to the socket, framing included */
    uint64_t bytes_spliced; /* of bytes_in: DATA moved by splice, never copied to user space */
    uint64_t frames_in;     /* WebSocket data messages received (one mux frame each) */
    uint64_t frames_out;    /* mux frames sent */
    uint64_t streams_opened, streams_refused, streams_reset;
    uint64_t protocol_errors;
};

/* Create a link over an upgraded socket. sock is moved into the link (the struct is copied
 * and the poll handle re-targeted, so the caller's struct is dead afterwards: pass a socket
 * that was initialised but whose callbacks have not fired since the upgrade). leftover holds
 * bytes already read after the HTTP head (may be empty). client = we are the WebSocket client
 * (mask our frames, open odd stream ids). Returns NULL on allocation failure (fd closed and
 * ssl freed). */
struct up_link *up_link_new(struct up_linkloop *ll, int fd, struct ssl_st *ssl, bool client,
                            const struct up_link_cfg *cfg, const struct up_link_ops *ops, void *ud,
                            const uint8_t *leftover, size_t leftover_len);
void *up_link_ud(const struct up_link *l);
const struct up_link_stats *up_link_stats(const struct up_link *l);
size_t up_link_nstreams(const struct up_link *l);
/* Close the link: every stream gets on_close(LINK_LOST, reason) and then ops->on_close. With
 * goaway, a GOAWAY and a WS close are attempted first. Deferred to the loop; idempotent. */
void up_link_close(struct up_link *l, const char *reason);
/* Send GOAWAY (no new streams): every OPEN the peer sends afterwards is refused with RST
 * `shutdown` and "refused: <reason>". Existing streams go on. Idempotent. */
void up_link_goaway(struct up_link *l, uint32_t code, const char *reason);
/* Drain: open no more streams, refuse the peer's (as after GOAWAY), and once the last stream has
 * ended and its frames reached the socket, close the link gracefully (WS close, then wait up to
 * 2 s for the peer's close or EOF). ops->on_close then gets reason. up_link_close() still ends
 * the link at once. Idempotent. */
void up_link_close_when_idle(struct up_link *l, const char *reason);
/* Whether a new stream may be opened on l (not dead, no GOAWAY received, not draining). */
bool up_link_can_open(const struct up_link *l);

/* Open a stream to the peer for service name: allocates an id, registers st and sends OPEN.
 * Returns UP_OK, UP_ESTATE (!up_link_can_open), UP_ELIMIT (too many streams, ids exhausted) or
 * UP_ENOMEM. */
UP_NODISCARD int up_link_open(struct up_link *l, struct up_lstream *st, const char *name,
                              const uint8_t *meta, size_t meta_len,
                              const struct up_lstream_ops *ops, void *ud);
/* As up_link_open, for a relay stream whose credit follows the next hop (docs/PROTOCOL.md §9):
 * the OPEN grants window, and the owner passes on what the next hop grants with
 * up_link_credit() instead of returning credit with up_link_consumed(). */
UP_NODISCARD int up_link_open_follow(struct up_link *l, struct up_lstream *st, const char *name,
                                     const uint8_t *meta, size_t meta_len, uint32_t window,
                                     const struct up_lstream_ops *ops, void *ud);
/* Register st for a stream the peer opened (from on_open). */
UP_NODISCARD int up_link_attach(struct up_link *l, struct up_lstream *st, uint32_t sid,
                                uint32_t peer_window, const struct up_lstream_ops *ops, void *ud);
/* Accept an attached stream (sends ACCEPT with our window). */
void up_link_accept(struct up_lstream *st);
/* Accept with window, for a stream whose credit follows the next hop (see
 * up_link_open_follow). */
void up_link_accept_follow(struct up_lstream *st, uint32_t window);
/* Grant the peer inc more bytes on a following stream. */
void up_link_credit(struct up_lstream *st, uint32_t inc);
/* The credit the peer granted st that is not spent yet (0 when detached). */
int64_t up_link_send_credit(const struct up_lstream *st);
/* Refuse a stream that was never attached. */
void up_link_refuse(struct up_link *l, uint32_t sid, uint32_t code, const char *reason);
/* Reset st (sends RST) and detach it; no on_close follows. No-op when detached. */
void up_link_reset(struct up_lstream *st, uint32_t code, const char *reason);
/* The owner has data (or a FIN) to send: schedule pull(). */
void up_link_ready(struct up_lstream *st);
/* Whether st waits in its link's ready list for a pull(). */
bool up_link_is_ready(const struct up_lstream *st);
/* Try to send bytes now (copying them into the output buffer within credit and room). Returns
 * how many were taken; the rest must be offered later through pull(). */
size_t up_link_send(struct up_lstream *st, const uint8_t *p, size_t n);
/* n received bytes reached the next hop: return credit. */
void up_link_consumed(struct up_lstream *st, size_t n);
/* As up_link_consumed, with held = bytes of st the owner still buffers afterwards: the window
 * auto-tunes only while the consumer keeps up (held == 0) and the loop's budget allows it.
 *
 * The budget (cfg.max_buffer, --max-buffer-memory) covers what the streams of a loop hold
 * (up_link_set_held) and the windows they were granted beyond the initial one: a window grows
 * only while the windows of the loop's streams add up to less than the budget, and while the
 * streams hold more than the budget in all, a stream that holds more than its share (budget /
 * streams holding anything) gets no credit back: the largest holders wait, and a stream that
 * holds little (an interactive one) never does. */
void up_link_consumed_held(struct up_lstream *st, size_t n, size_t held);
/* The owner now buffers held bytes of st (received, not yet at the next hop). */
void up_link_set_held(struct up_lstream *st, size_t held);

/* Microsecond monotonic clock used for flow control and RTT. */
uint64_t up_now_us(void);

#endif
