/* The underpass mux protocol (docs/PROTOCOL.md): many streams over one WebSocket link, each
 * with its own credit-based flow control. Sans-IO: the parser turns link bytes into events;
 * encoders write frames into caller buffers; per-stream flow-control state lives in a struct
 * the caller embeds in its own stream object (the caller owns the stream table). */
#ifndef UP_PROTO_MUX_H
#define UP_PROTO_MUX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

#define UP_MUX_HDR 9          /* length u24, type u8, flags u8, stream u32 */
#define UP_MUX_MAX_CTRL 1536  /* payload bound for every non-DATA frame */
#define UP_MUX_MAX_NAME 63    /* service name in OPEN */
#define UP_MUX_MAX_META 1024  /* metadata in OPEN */
#define UP_MUX_MAX_REASON 256 /* reason text in RST/GOAWAY */
#define UP_MUX_MAX_WINDOW 0x7fffffffu
#define UP_MUX_DEFAULT_WINDOW (16u * 1024u) /* initial per-stream receive window */
/* Auto-tuning cap. 4 MiB keeps 670 Mbit/s per stream at 50 ms RTT; larger windows let one
 * bulk stream fill the link's TCP queues and delay every other stream on it (bench: 16 MiB
 * gave p50 11 ms for an interactive stream beside a bulk one, 4 MiB 4 ms, at equal
 * throughput). Raise it with --max-window on long fat links. */
#define UP_MUX_DEFAULT_MAX_WINDOW (4u * 1024u * 1024u)
#define UP_MUX_DEFAULT_MAX_FRAME (256u * 1024u) /* largest DATA payload accepted */

enum up_mux_type {
    UP_MUX_DATA = 0x0,
    UP_MUX_OPEN = 0x1,
    UP_MUX_ACCEPT = 0x2,
    UP_MUX_CREDIT = 0x3,
    UP_MUX_RST = 0x4,
    UP_MUX_PING = 0x5,
    UP_MUX_GOAWAY = 0x6,
};

#define UP_MUX_FLAG_FIN 0x01 /* DATA: last bytes of this direction */
#define UP_MUX_FLAG_ACK 0x01 /* PING: this is the answer (pong) */

/* RST and GOAWAY codes (docs/PROTOCOL.md §Reset codes). */
enum up_mux_code {
    UP_MUX_C_NONE = 0,          /* normal close / no error */
    UP_MUX_C_PROTOCOL = 1,      /* peer broke the protocol */
    UP_MUX_C_FLOW = 2,          /* sent more than the window allowed */
    UP_MUX_C_REFUSED = 3,       /* the backend refused the connection */
    UP_MUX_C_NO_SERVICE = 4,    /* unknown service or no agent online for it */
    UP_MUX_C_FORBIDDEN = 5,     /* the token does not allow this service */
    UP_MUX_C_LIMIT = 6,         /* too many streams or another limit */
    UP_MUX_C_LINK_LOST = 7,     /* a link on the path went away */
    UP_MUX_C_BACKEND_RESET = 8, /* the backend or local socket failed or reset */
    UP_MUX_C_TIMEOUT = 9,       /* a timeout on the path */
    UP_MUX_C_CANCEL = 10,       /* the opener gave up (local socket closed early) */
    UP_MUX_C_SHUTDOWN = 11,     /* the peer is shutting down */
    UP_MUX_C_INTERNAL = 12,     /* resource failure (out of memory ...) */
};

/* Return a short name for a code ("refused", "link-lost" ...). Never NULL. */
const char *up_mux_code_name(uint32_t code);

struct up_mux_cfg {
    bool odd_ids;       /* we open odd stream ids (the WebSocket client side) */
    uint32_t max_frame; /* largest DATA payload accepted (and sent) */
};

enum up_mux_ev_kind {
    UP_MUX_EV_NONE,   /* input consumed, nothing complete */
    UP_MUX_EV_DATA,   /* sid, data/len: a slice of a DATA payload (len > 0) */
    UP_MUX_EV_FIN,    /* sid: the peer will send no more data on this stream */
    UP_MUX_EV_OPEN,   /* sid, window, name/name_len, data/len = metadata */
    UP_MUX_EV_ACCEPT, /* sid, window */
    UP_MUX_EV_CREDIT, /* sid, window = increment (> 0) */
    UP_MUX_EV_RST,    /* sid, code, data/len = reason */
    UP_MUX_EV_PING,   /* opaque = 8 bytes to echo */
    UP_MUX_EV_PONG,   /* opaque = the 8 bytes we sent */
    UP_MUX_EV_GOAWAY, /* sid = last stream id the sender will accept, code, data/len = reason */
};

struct up_mux_ev {
    enum up_mux_ev_kind kind;
    uint32_t sid;
    uint32_t window;
    uint32_t code;
    const char *name; /* OPEN: borrowed */
    size_t name_len;
    const uint8_t *data; /* borrowed: valid until the next call on the parser */
    size_t len;
    uint8_t opaque[8];
};

enum up_mux_state {
    UP_MUX_ST_HDR,   /* collecting the 9 header bytes */
    UP_MUX_ST_DATA,  /* streaming a DATA payload */
    UP_MUX_ST_CTRL,  /* collecting a control payload into ctl[] */
    UP_MUX_ST_SKIP,  /* skipping the payload of an unknown frame type */
    UP_MUX_ST_ERROR, /* protocol error: only fini is allowed */
};

struct up_mux_parser {
    struct up_mux_cfg cfg;
    enum up_mux_state state;
    uint8_t hdr[UP_MUX_HDR];
    uint8_t hdr_len;
    uint8_t type, flags;
    uint32_t sid;
    uint32_t len; /* payload length of the current frame */
    uint32_t off; /* payload bytes consumed */
    uint8_t ctl[UP_MUX_MAX_CTRL];
    const char *err_reason; /* static, set with UP_EPROTO/UP_ELIMIT */
};

void up_mux_parser_init(struct up_mux_parser *p, const struct up_mux_cfg *cfg);

/* Consume bytes from in[0..len) and produce at most one event; *used is always set. Returns
 * UP_OK (ev->kind may be NONE), or UP_EPROTO/UP_ELIMIT with p->err_reason: DATA larger than
 * max_frame, control payload larger than UP_MUX_MAX_CTRL or of the wrong size, a stream frame on
 * stream 0 or a connection frame on a stream, the reserved stream-id bit, CREDIT of 0 or above
 * 2^31-1, an OPEN whose id has our parity, an empty or invalid service name. Frames of unknown
 * type are skipped (extensibility, docs/PROTOCOL.md). Stream existence is the caller's check. */
UP_NODISCARD int up_mux_parse(struct up_mux_parser *p, const uint8_t *in, size_t len, size_t *used,
                              struct up_mux_ev *ev);

/* Frame encoders. Each writes one whole frame into dst (cap bytes) and returns its size, or
 * UP_ELIMIT if cap is too small / UP_EINVAL for a bad argument. */
/* Out-of-band payload (splice): the bytes of the current DATA frame's payload still to come
 * (0 outside a DATA payload), and its stream in *sid. */
uint32_t up_mux_parser_data_left(const struct up_mux_parser *p, uint32_t *sid);

/* The caller moved n (<= up_mux_parser_data_left) payload bytes past the parser: account for
 * them as delivered. A FIN on the frame is reported by the next up_mux_parse call (input may
 * be empty). */
void up_mux_parser_skip(struct up_mux_parser *p, uint32_t n);

void up_mux_encode_hdr(uint8_t dst[UP_MUX_HDR], uint32_t len, uint8_t type, uint8_t flags,
                       uint32_t sid);
UP_NODISCARD int up_mux_encode_open(uint8_t *dst, size_t cap, uint32_t sid, uint32_t window,
                                    const char *name, const uint8_t *meta, size_t meta_len);
UP_NODISCARD int up_mux_encode_accept(uint8_t *dst, size_t cap, uint32_t sid, uint32_t window);
UP_NODISCARD int up_mux_encode_credit(uint8_t *dst, size_t cap, uint32_t sid, uint32_t inc);
UP_NODISCARD int up_mux_encode_rst(uint8_t *dst, size_t cap, uint32_t sid, uint32_t code,
                                   const char *reason);
UP_NODISCARD int up_mux_encode_ping(uint8_t *dst, size_t cap, const uint8_t opaque[8], bool ack);
UP_NODISCARD int up_mux_encode_goaway(uint8_t *dst, size_t cap, uint32_t last_sid, uint32_t code,
                                      const char *reason);

/* OPEN metadata (docs/PROTOCOL.md §5.2) is "key=value" lines, each ended by '\n' (the last
 * one may lack it). Copy the value of the first line whose key is key into out (cap bytes) and
 * NUL-terminate it; the value is copied as it is (a NUL in it ends the text early). Returns
 * false, out untouched, when no line has the key or when the first one's value has cap bytes
 * or more (later lines are not tried). */
bool up_mux_meta_get(const uint8_t *meta, size_t len, const char *key, char *out, size_t cap);

/* Per-stream flow control. The receiver grants window; the sender spends it. Credit goes back
 * only through up_mux_flow_consumed(), which the caller calls once bytes reached the next hop
 * (BRIEF rule 3). The window grows (doubling, up to max_window) when a half window is consumed
 * within 4 RTTs of the previous grant (HTTP/2 and QUIC receive-window auto-tuning), so fast
 * streams are not capped at window/RTT while idle streams keep a small window. */
struct up_mux_flow {
    int64_t send_avail;    /* bytes we may still send; grows with CREDIT */
    uint32_t recv_window;  /* window we currently grant */
    uint32_t recv_avail;   /* bytes the peer may still send */
    uint32_t recv_pending; /* consumed bytes not yet returned as credit */
    uint32_t max_window;
    uint64_t last_grant_us; /* when we last granted credit */
};

/* Start a stream's flow state: we grant recv_window, the peer granted send_window (0 until
 * its ACCEPT or OPEN told us). */
void up_mux_flow_init(struct up_mux_flow *f, uint32_t recv_window, uint32_t max_window,
                      uint32_t send_window, uint64_t now_us);
/* Account n received DATA bytes. Returns UP_OK or UP_EPROTO when the peer overran the
 * window. */
UP_NODISCARD int up_mux_flow_on_data(struct up_mux_flow *f, size_t n);
/* Add a CREDIT increment. Returns UP_OK or UP_EPROTO if the window would pass 2^31-1. */
UP_NODISCARD int up_mux_flow_on_credit(struct up_mux_flow *f, uint32_t inc);
/* Record n bytes delivered to the next hop. Returns the credit increment to send now (0 when
 * less than half the window is pending). srtt_us is the link's smoothed RTT (0 = unknown). */
uint32_t up_mux_flow_consumed(struct up_mux_flow *f, size_t n, uint64_t now_us, uint64_t srtt_us);
/* As up_mux_flow_consumed, but the window only grows when may_grow: the receiver says whether
 * its consumer actually keeps up (nothing of the stream left waiting at this hop), so a
 * reader that stopped does not earn a larger window by filling kernel buffers. */
uint32_t up_mux_flow_consumed_ex(struct up_mux_flow *f, size_t n, uint64_t now_us, uint64_t srtt_us,
                                 bool may_grow);

#endif
