/* STUN message codec (RFC 8489) with the TURN additions (RFC 8656): parse a message into
 * attribute slices, check MESSAGE-INTEGRITY / MESSAGE-INTEGRITY-SHA256 / FINGERPRINT, build
 * messages into a caller buffer, frame ChannelData, and find message boundaries on a TCP or
 * TLS stream. Sans-IO: no sockets, no clocks, no allocation, no global state. */
#ifndef UP_PROTO_STUN_H
#define UP_PROTO_STUN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

#define UP_STUN_HDR 20
#define UP_STUN_MAGIC 0x2112A442u
#define UP_STUN_MAX_ATTRS 32  /* more attributes in one message: UP_ELIMIT */
#define UP_STUN_MAX_UNKNOWN 8 /* comprehension-required attributes reported for 420 */
#define UP_STUN_CHANNEL_MIN 0x4000u
/* RFC 8656 §12 assigns 0x4000-0x4FFF; RFC 5766 allowed up to 0x7FFF and clients still use the
 * whole range (coturn's turnutils_uclient, libre), so it is accepted. */
#define UP_STUN_CHANNEL_MAX 0x7FFFu
#define UP_STUN_CHANNEL_HDR 4
#define UP_STUN_MAX_MESSAGE (65535 + UP_STUN_HDR)

/* Classes (the C1 C0 bits). */
enum up_stun_class {
    UP_STUN_REQUEST = 0,
    UP_STUN_INDICATION = 1,
    UP_STUN_SUCCESS = 2,
    UP_STUN_ERROR = 3,
};

/* Methods. */
enum {
    UP_STUN_BINDING = 0x001,
    UP_TURN_ALLOCATE = 0x003,
    UP_TURN_REFRESH = 0x004,
    UP_TURN_SEND = 0x006,
    UP_TURN_DATA = 0x007,
    UP_TURN_CREATE_PERMISSION = 0x008,
    UP_TURN_CHANNEL_BIND = 0x009,
};

/* Attribute types (RFC 8489 §18.3, RFC 8656 §18). */
enum {
    UP_STUN_A_MAPPED_ADDRESS = 0x0001,
    UP_STUN_A_USERNAME = 0x0006,
    UP_STUN_A_MESSAGE_INTEGRITY = 0x0008,
    UP_STUN_A_ERROR_CODE = 0x0009,
    UP_STUN_A_UNKNOWN_ATTRIBUTES = 0x000A,
    UP_STUN_A_CHANNEL_NUMBER = 0x000C,
    UP_STUN_A_LIFETIME = 0x000D,
    UP_STUN_A_XOR_PEER_ADDRESS = 0x0012,
    UP_STUN_A_DATA = 0x0013,
    UP_STUN_A_REALM = 0x0014,
    UP_STUN_A_NONCE = 0x0015,
    UP_STUN_A_XOR_RELAYED_ADDRESS = 0x0016,
    UP_STUN_A_REQUESTED_ADDRESS_FAMILY = 0x0017,
    UP_STUN_A_EVEN_PORT = 0x0018,
    UP_STUN_A_REQUESTED_TRANSPORT = 0x0019,
    UP_STUN_A_DONT_FRAGMENT = 0x001A,
    UP_STUN_A_MESSAGE_INTEGRITY_SHA256 = 0x001C,
    UP_STUN_A_PASSWORD_ALGORITHM = 0x001D,
    UP_STUN_A_USERHASH = 0x001E,
    UP_STUN_A_XOR_MAPPED_ADDRESS = 0x0020,
    UP_STUN_A_RESERVATION_TOKEN = 0x0022,
    UP_STUN_A_ADDITIONAL_ADDRESS_FAMILY = 0x8000,
    UP_STUN_A_ADDRESS_ERROR_CODE = 0x8001,
    UP_STUN_A_PASSWORD_ALGORITHMS = 0x8002,
    UP_STUN_A_ALTERNATE_DOMAIN = 0x8003,
    UP_STUN_A_ICMP = 0x8004,
    UP_STUN_A_SOFTWARE = 0x8022,
    UP_STUN_A_ALTERNATE_SERVER = 0x8023,
    UP_STUN_A_FINGERPRINT = 0x8028,
};

/* A transport address in the 16-byte form of base/cidr.h (IPv4 as IPv4-mapped IPv6). */
struct up_stun_addr {
    uint8_t ip[16];
    uint16_t port;
};

struct up_stun_attr {
    uint16_t type;
    uint16_t len;         /* value length, without padding */
    const uint8_t *value; /* borrowed: points into the parsed message */
    size_t offset;        /* of the attribute's 4-byte header from the message start */
};

struct up_stun_msg {
    uint16_t method;
    uint8_t cls; /* enum up_stun_class */
    uint8_t tid[12];
    size_t len; /* whole message: 20 + the header's length */
    struct up_stun_attr attrs[UP_STUN_MAX_ATTRS];
    size_t n_attrs;
    /* Indexes into attrs of the integrity attributes, -1 when absent. Attributes after
     * MESSAGE-INTEGRITY other than MESSAGE-INTEGRITY-SHA256 and FINGERPRINT, and after
     * MESSAGE-INTEGRITY-SHA256 other than FINGERPRINT, are ignored (RFC 8489 §14.5, §14.6):
     * they are not in attrs. */
    int mi, mi256, fp;
    /* Comprehension-required (type < 0x8000) attributes this codec does not know, for a 420
     * answer with UNKNOWN-ATTRIBUTES. */
    uint16_t unknown[UP_STUN_MAX_UNKNOWN];
    size_t n_unknown;
    const char *err_reason; /* static, set on UP_EPROTO/UP_ELIMIT */
};

/* Whether the first byte starts a STUN message (0x00..0x03) or ChannelData (0x40..0x7F:
 * RFC 7983's 64..79 plus the rest of RFC 5766's channel range). */
static inline bool up_stun_is_stun(uint8_t first)
{
    return first <= 3;
}
static inline bool up_stun_is_channel(uint8_t first)
{
    return first >= 0x40 && first <= 0x7F;
}

/* Parse the STUN message buf[0..len) (a whole datagram, or one frame from
 * up_stun_frame_len()). Checked: the two leading zero bits, the magic cookie, the length (a
 * multiple of 4, equal to len - 20), every attribute inside the message with its padding,
 * FINGERPRINT last and correct (CRC-32 of the message before it XOR 0x5354554e), the size of
 * known fixed-size attributes (addresses 8 or 20 bytes, LIFETIME 4, CHANNEL-NUMBER 4,
 * REQUESTED-TRANSPORT 4, MESSAGE-INTEGRITY 20, MESSAGE-INTEGRITY-SHA256 16..32 in steps of 4,
 * ERROR-CODE >= 4 ...). Returns UP_OK, UP_EPROTO or UP_ELIMIT (too many attributes) with
 * m->err_reason. Integrity is not checked here (the key depends on USERNAME/REALM). */
UP_NODISCARD int up_stun_parse(const uint8_t *buf, size_t len, struct up_stun_msg *m);

/* The first attribute of type, or NULL. */
const struct up_stun_attr *up_stun_find(const struct up_stun_msg *m, uint16_t type);

/* Decode an XOR-*-ADDRESS attribute (XORed with the magic cookie and, for IPv6, the
 * transaction id) or a plain (MAPPED-/ALTERNATE-) address. UP_OK or UP_EPROTO (bad family,
 * bad length). */
UP_NODISCARD int up_stun_xaddr(const struct up_stun_msg *m, const struct up_stun_attr *a,
                               struct up_stun_addr *out);
UP_NODISCARD int up_stun_addr(const struct up_stun_attr *a, struct up_stun_addr *out);
/* A 4-byte attribute as a big-endian number (LIFETIME); UP_EPROTO when len != 4. */
UP_NODISCARD int up_stun_u32(const struct up_stun_attr *a, uint32_t *out);
/* ERROR-CODE: class*100 + number, and the reason phrase (not NUL-terminated). */
UP_NODISCARD int up_stun_error(const struct up_stun_attr *a, int *code, const char **reason,
                               size_t *reason_len);

/* Long-term credential key (RFC 8489 §9.2.2): MD5(username ":" realm ":" password), 16
 * bytes. (SASLprep is not applied: callers use ASCII credentials.) */
void up_stun_long_term_key(const char *user, size_t ulen, const char *realm, size_t rlen,
                           const char *pass, size_t plen, uint8_t key[16]);

/* Check the message's integrity with key (the long-term key, or a short-term password):
 * MESSAGE-INTEGRITY-SHA256 when present (HMAC-SHA256, truncated to its length), else
 * MESSAGE-INTEGRITY (HMAC-SHA1), each over the message up to the attribute with the header
 * length adjusted as RFC 8489 §14.5 says. buf is the parsed message. False when neither is
 * present or the one checked does not match (compared in constant time). */
bool up_stun_check_integrity(const uint8_t *buf, const struct up_stun_msg *m, const uint8_t *key,
                             size_t key_len);

/* Building a message into buf[0..cap). Errors are sticky: once something did not fit, every
 * call does nothing and up_stun_end() returns UP_ELIMIT. */
struct up_stun_builder {
    uint8_t *buf;
    size_t cap;
    size_t len;
    bool overflow;
};
void up_stun_begin(struct up_stun_builder *b, uint8_t *buf, size_t cap, uint16_t method,
                   uint8_t cls, const uint8_t tid[12]);
/* Append an attribute with its padding (zero bytes). */
void up_stun_add(struct up_stun_builder *b, uint16_t type, const void *value, size_t len);
void up_stun_add_u32(struct up_stun_builder *b, uint16_t type, uint32_t v);
/* XOR-*-ADDRESS from the builder's transaction id. */
void up_stun_add_xaddr(struct up_stun_builder *b, uint16_t type, const struct up_stun_addr *a);
/* ERROR-CODE with a reason phrase (UTF-8, at most 127 characters and 763 bytes; NULL for
 * none). A code outside 300..699 or a longer reason counts as not fitting. */
void up_stun_add_error(struct up_stun_builder *b, int code, const char *reason);
/* MESSAGE-INTEGRITY (HMAC-SHA1, 20 bytes) and MESSAGE-INTEGRITY-SHA256 (32 bytes) over what
 * is in the buffer so far; add FINGERPRINT last. */
void up_stun_add_integrity(struct up_stun_builder *b, const uint8_t *key, size_t key_len);
void up_stun_add_integrity_sha256(struct up_stun_builder *b, const uint8_t *key, size_t key_len);
void up_stun_add_fingerprint(struct up_stun_builder *b);
/* Finish: the message is buf[0..*len). UP_OK or UP_ELIMIT. */
UP_NODISCARD int up_stun_end(struct up_stun_builder *b, size_t *len);

/* ChannelData (RFC 8656 §12.4): channel number and length, then the data. Parse buf[0..len)
 * (a datagram, or a frame from up_stun_frame_len(): over TCP the data is padded to 4 bytes
 * and the padding is not part of *data). UP_OK or UP_EPROTO (number outside 0x4000..0x7FFF,
 * length longer than the buffer). */
UP_NODISCARD int up_stun_channel_parse(const uint8_t *buf, size_t len, uint16_t *channel,
                                       const uint8_t **data, size_t *dlen);
void up_stun_channel_header(uint8_t hdr[UP_STUN_CHANNEL_HDR], uint16_t channel, uint16_t len);

/* On a stream (TCP, TLS): the size of the message at the front of buf[0..len) — 20 + length
 * for STUN, 4 + length rounded up to 4 for ChannelData. UP_OK with *frame (which may be >
 * len: read more), UP_EAGAIN when fewer than 4 bytes are there, UP_EPROTO when the first
 * byte is neither. */
UP_NODISCARD int up_stun_frame_len(const uint8_t *buf, size_t len, size_t *frame);

#endif
