/* RFC 6455 WebSocket codec for both roles. Sans-IO: parse() unmasks payload in place and
 * returns borrowed slices; write helpers append to caller buffers. No allocation: control
 * frame payloads (<= 125 bytes) are assembled in the parser struct. */
#ifndef UP_PROTO_WS_H
#define UP_PROTO_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/err.h"
#include "proto/h1.h"
#include "proto/utf8.h"

#define UP_WS_MAX_HEADER 14   /* 2 + 8 (length) + 4 (mask): RFC 6455 §5.2 */
#define UP_WS_MAX_CONTROL 125 /* RFC 6455 §5.5 */
#define UP_WS_ACCEPT_LEN 28   /* base64 of a SHA-1 */
#define UP_WS_KEY_LEN 24      /* base64 of 16 bytes */
#define UP_WS_RSV1 0x40       /* RFC 6455 §5.2; "compressed" under RFC 7692 §6 */

enum up_ws_opcode {
    UP_WS_OP_CONT = 0x0,
    UP_WS_OP_TEXT = 0x1,
    UP_WS_OP_BINARY = 0x2,
    UP_WS_OP_CLOSE = 0x8,
    UP_WS_OP_PING = 0x9,
    UP_WS_OP_PONG = 0xA,
};

enum up_ws_role {
    UP_WS_SERVER, /* expects masked frames from the peer, sends unmasked */
    UP_WS_CLIENT, /* expects unmasked frames, sends masked */
};

struct up_ws_cfg {
    enum up_ws_role role;
    uint64_t max_frame_bytes;   /* payload of one data frame; larger → UP_ELIMIT, 1009 */
    uint64_t max_message_bytes; /* sum over a fragmented message; larger → UP_ELIMIT, 1009 */
    bool validate_utf8;         /* check text messages and close reasons (1007) */
    /* permessage-deflate (RFC 7692, proto/pmd.h) was negotiated: RSV1 is allowed on the
     * first frame of a data message and marks it compressed (ev.compressed). The limits
     * above then count compressed (wire) bytes; the inflated size is bounded by the pmd
     * module. The parser cannot check UTF-8 in a compressed text message: the caller does,
     * on the inflated bytes, with up_pmd_inflate_begin(z, true), which reports 1007 like the
     * parser would. Uncompressed messages are checked here as before. */
    bool permessage_deflate;
};

enum up_ws_ev_kind {
    UP_WS_EV_NONE,  /* all input consumed, no event completed */
    UP_WS_EV_BEGIN, /* a data frame's header: opcode (message type), fin, frame_len */
    UP_WS_EV_DATA,  /* data/len: a slice of the current data frame's payload, unmasked */
    UP_WS_EV_END,   /* end of a data frame; fin tells whether the message is complete */
    UP_WS_EV_PING,  /* data/len: whole payload (<=125) */
    UP_WS_EV_PONG,  /* data/len: whole payload */
    UP_WS_EV_CLOSE, /* close_code (1005 if none), data/len: reason (validated UTF-8) */
};

struct up_ws_ev {
    enum up_ws_ev_kind kind;
    uint8_t opcode;      /* BEGIN/END: TEXT or BINARY (the message's type, never CONT) */
    bool fin;            /* BEGIN/END: FIN bit of this frame */
    bool first;          /* BEGIN: first frame of a message */
    uint64_t frame_len;  /* BEGIN: declared payload length, already bound-checked */
    const uint8_t *data; /* borrowed: valid until the next call */
    size_t len;
    uint16_t close_code; /* CLOSE */
    /* BEGIN/END: the message is compressed (RSV1 on its first frame; only with
     * permessage_deflate). Repeated on every frame of the message: route its DATA through
     * up_pmd_inflate. */
    bool compressed;
};

/* Parser states (explicit, STYLE §7). */
enum up_ws_state {
    UP_WS_ST_HDR,     /* collecting the 2..14 header bytes */
    UP_WS_ST_PAYLOAD, /* streaming a data frame's payload */
    UP_WS_ST_CONTROL, /* collecting a control frame's payload into ctl[] */
    UP_WS_ST_END,     /* data frame payload complete; END event pending */
    UP_WS_ST_CLOSED,  /* close frame received; further input is an error */
    UP_WS_ST_ERROR,   /* a protocol error occurred; parse returns the same error again */
};

struct up_ws_parser {
    struct up_ws_cfg cfg;
    enum up_ws_state state;
    uint8_t hdr[UP_WS_MAX_HEADER];
    uint8_t hdr_len; /* header bytes collected */
    uint8_t opcode;  /* current frame's opcode */
    bool fin;
    bool masked;
    uint8_t mask[4];
    uint64_t frame_len;  /* payload length of current frame */
    uint64_t frame_off;  /* payload bytes consumed */
    uint8_t msg_opcode;  /* opcode of the message in progress, 0 when none */
    uint64_t msg_len;    /* bytes of the message so far */
    bool rsv1;           /* current frame's RSV1 */
    bool msg_compressed; /* the message in progress had RSV1 on its first frame */
    struct up_utf8 utf8;
    uint8_t ctl[UP_WS_MAX_CONTROL];
    /* Set on UP_EPROTO/UP_ELIMIT: static reason and the close code to send (1002, 1007,
     * 1009). */
    const char *err_reason;
    uint16_t close_code;
};

/* Initialise a parser. */
void up_ws_parser_init(struct up_ws_parser *p, const struct up_ws_cfg *cfg);

/* Consume bytes from in[0..len) (unmasking them in place) and produce at most one event.
 * *used is always set. Returns UP_OK with ev->kind == UP_WS_EV_NONE when all input was
 * consumed without completing an event; UP_EPROTO/UP_ELIMIT with p->err_reason and
 * p->close_code set. Checked: RSV bits (all clear unless permessage_deflate, and then only
 * RSV1 on the first frame of a data message, never on continuation or control frames:
 * RFC 7692 §6.1), unknown opcodes, masking by role, control frames fragmented or > 125
 * bytes, continuation without a message, a new message inside a fragmented one, non-minimal
 * length encodings, the 64-bit length MSB,
 * frame/message limits (before any arithmetic), UTF-8 of uncompressed text (fail fast) and
 * of close reasons, close payload of 1 byte, invalid close codes. */
UP_NODISCARD int up_ws_parse(struct up_ws_parser *p, uint8_t *in, size_t len, size_t *used,
                             struct up_ws_ev *ev);

/* Out-of-band payload (splice): how many bytes of the current data frame's payload are still
 * to come when they may bypass the parser, i.e. the frame is unmasked, uncompressed and part
 * of a BINARY message; 0 otherwise (also between frames). */
uint64_t up_ws_parser_payload_left(const struct up_ws_parser *p);

/* The caller moved n (<= up_ws_parser_payload_left) payload bytes past the parser itself:
 * account for them as if they had been parsed and delivered. When the frame is complete, the
 * next up_ws_parse call (input may be empty) reports its END. */
void up_ws_parser_skip(struct up_ws_parser *p, uint64_t n);

/* Size of a frame header for a payload of len bytes, masked or not. */
size_t up_ws_header_size(uint64_t len, bool masked);

/* Encode a frame header into dst (at least UP_WS_MAX_HEADER bytes) with the minimal length
 * encoding and return its size. len must be below 2^63. mask4 NULL means unmasked (server
 * role). The caller masks the payload itself. */
size_t up_ws_encode_header(uint8_t *dst, uint8_t opcode, bool fin, uint64_t len,
                           const uint8_t *mask4);

/* Same with RSV bits rsv (a mask of UP_WS_RSV1 and the RSV2/3 bits 0x20, 0x10; other bits
 * are ignored), e.g. UP_WS_RSV1 for the first frame of a compressed message. */
size_t up_ws_encode_header_rsv(uint8_t *dst, uint8_t opcode, bool fin, uint8_t rsv, uint64_t len,
                               const uint8_t *mask4);

/* XOR p[0..n) with mask4, as if p started at payload offset off (RFC 6455 §5.3). Processes
 * eight bytes at a time. */
void up_ws_mask(uint8_t *p, size_t n, const uint8_t mask4[4], uint64_t off);

/* Append a whole frame (header + payload, masked when mask4 != NULL) to out, growing it up to
 * max_cap. Returns UP_OK, UP_ELIMIT or UP_ENOMEM, or UP_EINVAL for an unknown opcode or a
 * control frame that is not FIN or is longer than 125 bytes. */
UP_NODISCARD int up_ws_write_frame(struct up_buf *out, size_t max_cap, uint8_t opcode, bool fin,
                                   const uint8_t *payload, size_t len, const uint8_t *mask4);

/* Same with RSV bits: UP_WS_RSV1 on the first frame (TEXT/BINARY) of a message compressed
 * with up_pmd_deflate, 0 otherwise. Returns as up_ws_write_frame, and UP_EINVAL for RSV
 * bits on a control or continuation frame or outside 0x70. */
UP_NODISCARD int up_ws_write_frame_rsv(struct up_buf *out, size_t max_cap, uint8_t opcode, bool fin,
                                       uint8_t rsv, const uint8_t *payload, size_t len,
                                       const uint8_t *mask4);

/* Append a close frame with code (0: no code and no reason) and an optional NUL-terminated
 * reason (truncated on a UTF-8 code point boundary so the payload stays <= 125 bytes).
 * Returns as up_ws_write_frame, or UP_EINVAL for a code not valid on the wire (1004-1006,
 * 1015, outside 1000-4999). */
UP_NODISCARD int up_ws_write_close(struct up_buf *out, size_t max_cap, uint16_t code,
                                   const char *reason, const uint8_t *mask4);

/* Compute Sec-WebSocket-Accept for a key (RFC 6455 §4.2.2) into out (29 bytes, NUL-terminated).
 * A key longer than 256 bytes (a valid one has 24) yields the empty string. */
void up_ws_accept(const char *key, size_t key_len, char out[UP_WS_ACCEPT_LEN + 1]);

/* Validate a parsed request head as a WebSocket upgrade (GET, HTTP/1.1, Upgrade: websocket,
 * Connection: upgrade, Sec-WebSocket-Version: 13, a Sec-WebSocket-Key that decodes to 16
 * bytes). Returns UP_OK and sets *key and *key_len (borrowed from m), *reason to NULL and
 * *status to 101, or UP_EPROTO with *reason and *status (400, or 426 for a missing or wrong
 * version). */
UP_NODISCARD int up_ws_check_upgrade(const struct up_h1_msg *m, const char **key, size_t *key_len,
                                     const char **reason, int *status);

/* Validate a parsed response head against the key we sent: 101, Upgrade: websocket,
 * Connection: upgrade, the right Sec-WebSocket-Accept, and no extension we did not offer.
 * Returns UP_OK or UP_EPROTO with *reason. */
UP_NODISCARD int up_ws_check_response(const struct up_h1_msg *m, const char *key,
                                      const char **reason);

/* Same, but with allow_extensions a Sec-WebSocket-Extensions header is left for the caller
 * to validate against its offer (up_pmd_client_check_h1); false is up_ws_check_response. */
UP_NODISCARD int up_ws_check_response_ext(const struct up_h1_msg *m, const char *key,
                                          bool allow_extensions, const char **reason);

#endif
