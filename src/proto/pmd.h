/* RFC 7692 permessage-deflate for the WebSocket codec (proto/ws). Sans-IO: negotiation works
 * on header values and writes response/offer strings into caller buffers; the compressor
 * appends to a caller-owned up_buf; the decompressor fills a caller-provided buffer from the
 * payload slices the ws parser returns. zlib allocates through src/base/alloc.h, bounded by
 * max_mem_bytes.
 *
 * Wiring (STYLE §7 pull model):
 *   receive: up_ws_parse() → BEGIN with ev.compressed (first frame had RSV1): on ev.first call
 *            up_pmd_inflate_begin(z, ev.opcode == TEXT && validate_utf8); each DATA slice goes
 *            to up_pmd_inflate(.., fin = false ..) looped while it returns UP_EAGAIN; at END
 *            with ev.fin call up_pmd_inflate(z, NULL, 0, true, ..) looped the same way. The
 *            ws parser does not check UTF-8 in compressed text messages (it only sees
 *            compressed bytes): this module does, on the inflated bytes, when asked to.
 *   send:    up_pmd_deflate(z, msg, len, true, &buf, cap) then up_ws_write_frame_rsv(..,
 *            UP_WS_RSV1, buf bytes ..) for the first (or only) frame; continuation frames of a
 *            streamed message carry no RSV bit. Control frames are never compressed. */
#ifndef UP_PROTO_PMD_H
#define UP_PROTO_PMD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <zlib.h>

#include "base/buf.h"
#include "base/err.h"
#include "proto/h1.h"
#include "proto/utf8.h"
#include "proto/ws.h"

#define UP_PMD_NAME "permessage-deflate" /* RFC 7692 §6 */
#define UP_PMD_MIN_WINDOW_BITS 8         /* RFC 7692 §7.1.2 */
#define UP_PMD_MAX_WINDOW_BITS 15
/* Longest header value up_pmd_server_accept/up_pmd_client_offer write, with the NUL. */
#define UP_PMD_MAX_HEADER 160
/* Defaults for zero fields of up_pmd_cfg. */
#define UP_PMD_DEFAULT_MAX_MESSAGE (16u << 20) /* inflated bytes of one message */
/* zlib needs about 262 KiB for a 15-bit deflate at memLevel 8 and 40 KiB for an inflate. */
#define UP_PMD_DEFAULT_MAX_MEM (512u << 10)

/* The negotiated parameters (RFC 7692 §7.1). Window bits are 8..15 (15 when absent). */
struct up_pmd_params {
    bool server_no_context_takeover;
    bool client_no_context_takeover;
    uint8_t server_max_window_bits;
    uint8_t client_max_window_bits;
};

/* Our preferences. "peer" is the other endpoint's compressor, whose window is our inflate
 * memory. A zero field takes the default. */
struct up_pmd_cfg {
    uint8_t max_window_bits;       /* our compressor's LZ77 window, 8..15 (0: 15) */
    bool no_context_takeover;      /* reset our compressor per message, and announce it */
    uint8_t peer_max_window_bits;  /* ask the peer for at most this window, 8..15 (0: 15) */
    bool peer_no_context_takeover; /* ask the peer to reset its compressor per message */
    int level;                     /* zlib level 1..9 (0: 6) */
    int mem_level;                 /* zlib memLevel 1..9 (0: 8) */
    uint64_t max_message_bytes;    /* inflated size of one message; more → UP_ELIMIT, 1009 */
    size_t max_mem_bytes;          /* all zlib allocations of one connection */
};

/* ---- negotiation (RFC 7692 §5, §7.1; RFC 6455 §9.1 grammar) -------------------------- */

/* Server: pick the first acceptable permessage-deflate offer in a Sec-WebSocket-Extensions
 * value[0..len) (comma-separated extensions, each with ';'-separated params; quoted values
 * are unescaped and must then be tokens). Offers with an unknown or duplicate parameter or
 * a bad value are declined (RFC 7692 §7.1), not an error; other extensions are skipped. On
 * acceptance set *accepted, fill *params and write the response value, NUL-terminated, into
 * resp (resp_cap >= UP_PMD_MAX_HEADER). Returns UP_OK (*accepted false: answer without the
 * extension), UP_EPROTO with *reason when the value does not parse (the caller answers 400
 * or ignores the header), UP_EINVAL for a bad cfg or a short resp. */
UP_NODISCARD int up_pmd_server_accept(const struct up_pmd_cfg *cfg, const char *value, size_t len,
                                      bool *accepted, struct up_pmd_params *params, char *resp,
                                      size_t resp_cap, const char **reason);

/* Same over every Sec-WebSocket-Extensions line of a request head (RFC 9110 §5.3: lines
 * combine into one list). */
UP_NODISCARD int up_pmd_server_accept_h1(const struct up_pmd_cfg *cfg, const struct up_h1_msg *m,
                                         bool *accepted, struct up_pmd_params *params, char *resp,
                                         size_t resp_cap, const char **reason);

/* Client: write our offer, NUL-terminated, into out (cap >= UP_PMD_MAX_HEADER). It always
 * carries client_max_window_bits (no value: the server may limit our window). Returns UP_OK
 * or UP_EINVAL. */
UP_NODISCARD int up_pmd_client_offer(const struct up_pmd_cfg *cfg, char *out, size_t cap);

/* Client: validate the server's Sec-WebSocket-Extensions value[0..len) against the offer
 * up_pmd_client_offer(cfg) made (RFC 7692 §5.1, §7.1): exactly one permessage-deflate, no
 * other extension, known parameters once each with valid values, server_max_window_bits
 * present and not above ours when we sent one, server_no_context_takeover present when we
 * asked, client_max_window_bits with a value. Returns UP_OK with *params filled, or
 * UP_EPROTO with *reason: the client must fail the connection (RFC 6455 §9.1). */
UP_NODISCARD int up_pmd_client_check(const struct up_pmd_cfg *cfg, const char *value, size_t len,
                                     struct up_pmd_params *params, const char **reason);

/* Same over a response head: *accepted is false when it has no Sec-WebSocket-Extensions
 * (the server declined; send uncompressed), true with *params when it validated. Several
 * lines are one list. Use with up_ws_check_response_ext(m, key, true, ..). */
UP_NODISCARD int up_pmd_client_check_h1(const struct up_pmd_cfg *cfg, const struct up_h1_msg *m,
                                        bool *accepted, struct up_pmd_params *params,
                                        const char **reason);

/* ---- per-connection compression state ------------------------------------------------ */

enum up_pmd_rx_state {
    UP_PMD_RX_IDLE,  /* between messages */
    UP_PMD_RX_MSG,   /* inside a compressed message */
    UP_PMD_RX_ERROR, /* failed; sticky */
};

/* Holds two z_streams, which point back at themselves: do not move or copy after the first
 * inflate/deflate. The streams are created on first use. */
struct up_pmd {
    struct up_pmd_params params;
    bool server; /* our role: picks which parameters apply to which direction */
    int level, mem_level;
    uint64_t max_message_bytes;
    size_t mem_max, mem_used; /* zlib allocations, bounded */
    /* Compressor (our messages). */
    z_stream tx;
    uint8_t tx_bits; /* negotiated window; 8 means literals only (zlib has no 8-bit raw) */
    bool tx_no_ctx;
    bool tx_init;   /* deflateInit2 done */
    bool tx_in_msg; /* a streamed message is in progress */
    bool tx_broken; /* a failed call left output half-written: only fini remains */
    /* Decompressor (peer messages). */
    z_stream rx;
    uint8_t rx_bits;
    bool rx_no_ctx;
    bool rx_init;
    enum up_pmd_rx_state rx_state;
    bool rx_any;      /* the message had payload bytes (an empty one inflates to nothing) */
    bool rx_fresh;    /* a BFINAL block ended the raw stream and nothing was fed since */
    bool rx_boundary; /* the last call that moved data left zlib between blocks */
    uint8_t tail_off; /* bytes of 00 00 ff ff fed at the end of the message */
    bool rx_utf8_on;
    struct up_utf8 utf8;
    uint64_t rx_out; /* inflated bytes of the current message */
    int rx_err;
    /* Set on UP_EPROTO/UP_ELIMIT from inflate: static reason and close code (1002 corrupt
     * data, 1007 bad UTF-8, 1009 too big). */
    const char *err_reason;
    uint16_t close_code;
};

/* Initialise for one connection with negotiated params; role is ours. Allocates nothing.
 * Returns UP_OK or UP_EINVAL for a bad cfg or params. */
UP_NODISCARD int up_pmd_init(struct up_pmd *z, const struct up_pmd_cfg *cfg,
                             const struct up_pmd_params *params, enum up_ws_role role);

/* Free the zlib streams. Idempotent. */
void up_pmd_fini(struct up_pmd *z);

/* Start inflating a compressed message (a BEGIN event with first && compressed). With
 * validate_utf8 the inflated bytes are checked as UTF-8 (a text message; RFC 6455 §8.1),
 * failing fast with 1007. Resets the decompressor when the peer has no context takeover.
 * Returns UP_OK, UP_ESTATE inside a message or after an error. */
UP_NODISCARD int up_pmd_inflate_begin(struct up_pmd *z, bool validate_utf8);

/* Inflate compressed payload in[0..len) of the current message into out[0..cap) (cap > 0).
 * fin marks the end of the message: the 00 00 ff ff tail is appended (RFC 7692 §7.2.2) and
 * the message completes. *used is the input consumed and *out_len the bytes written; they are
 * always set. Returns UP_OK when all input is consumed and nothing is pending (with fin: the
 * message is done), UP_EAGAIN when out filled up: deliver it and call again with the rest of
 * the input (in + *used, same fin). At most cap bytes come out per call. Errors are sticky:
 * UP_ELIMIT when the message inflates beyond max_message_bytes (1009), UP_EPROTO for corrupt
 * data (1002) or invalid UTF-8 (1007), with err_reason/close_code set; UP_ENOMEM;
 * UP_ESTATE outside a message; UP_EINVAL for cap 0. */
UP_NODISCARD int up_pmd_inflate(struct up_pmd *z, const uint8_t *in, size_t len, bool fin,
                                uint8_t *out, size_t cap, size_t *used, size_t *out_len);

/* Compress in[0..len), part of one message, appending to out (grown up to max_cap). fin
 * ends the message: the output is flushed, its 00 00 ff ff tail removed (RFC 7692 §7.2.1)
 * and an empty message becomes the single byte 00. Without fin the call may append nothing
 * (zlib buffers); each call's output is a frame's payload (the first with RSV1). Resets the
 * compressor per message when negotiated. Returns UP_OK, UP_ELIMIT (max_cap too small) or
 * UP_ENOMEM; after those the compressor is unusable (UP_ESTATE) because the stream lost
 * bytes. up_pmd_deflate_bound() sizes out for a whole message. */
UP_NODISCARD int up_pmd_deflate(struct up_pmd *z, const uint8_t *in, size_t len, bool fin,
                                struct up_buf *out, size_t max_cap);

/* Most bytes up_pmd_deflate(.., fin = true, ..) appends for a whole message of len bytes
 * (stored blocks in the worst case), or SIZE_MAX when that overflows. */
size_t up_pmd_deflate_bound(size_t len);

#endif
