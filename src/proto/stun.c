#include "proto/stun.h"

#include <string.h>
#include <zlib.h>

#include "base/bytes.h"
#include "base/cidr.h"
#include "base/crypto.h"

#define FINGERPRINT_XOR 0x5354554Eu /* RFC 8489 §14.7 */
#define ERROR_REASON_MAX_CHARS 127  /* RFC 8489 §14.8 */
#define ERROR_REASON_MAX_BYTES 763  /* RFC 8489 §14.8 */
#define FAMILY_V4 0x01
#define FAMILY_V6 0x02

static const uint8_t v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};

static size_t pad4(size_t n)
{
    return (n + 3) & ~(size_t)3;
}

static int fail(struct up_stun_msg *m, int err, const char *reason)
{
    m->err_reason = reason;
    return err;
}

static int bad(struct up_stun_msg *m, const char *reason)
{
    return fail(m, UP_EPROTO, reason);
}

/* The attributes of stun.h: every other comprehension-required one goes to m->unknown. */
static bool is_known(uint16_t type)
{
    switch (type) {
    case UP_STUN_A_MAPPED_ADDRESS:
    case UP_STUN_A_USERNAME:
    case UP_STUN_A_MESSAGE_INTEGRITY:
    case UP_STUN_A_ERROR_CODE:
    case UP_STUN_A_UNKNOWN_ATTRIBUTES:
    case UP_STUN_A_CHANNEL_NUMBER:
    case UP_STUN_A_LIFETIME:
    case UP_STUN_A_XOR_PEER_ADDRESS:
    case UP_STUN_A_DATA:
    case UP_STUN_A_REALM:
    case UP_STUN_A_NONCE:
    case UP_STUN_A_XOR_RELAYED_ADDRESS:
    case UP_STUN_A_REQUESTED_ADDRESS_FAMILY:
    case UP_STUN_A_EVEN_PORT:
    case UP_STUN_A_REQUESTED_TRANSPORT:
    case UP_STUN_A_DONT_FRAGMENT:
    case UP_STUN_A_MESSAGE_INTEGRITY_SHA256:
    case UP_STUN_A_PASSWORD_ALGORITHM:
    case UP_STUN_A_USERHASH:
    case UP_STUN_A_XOR_MAPPED_ADDRESS:
    case UP_STUN_A_RESERVATION_TOKEN:
    case UP_STUN_A_ADDITIONAL_ADDRESS_FAMILY:
    case UP_STUN_A_ADDRESS_ERROR_CODE:
    case UP_STUN_A_PASSWORD_ALGORITHMS:
    case UP_STUN_A_ALTERNATE_DOMAIN:
    case UP_STUN_A_ICMP:
    case UP_STUN_A_SOFTWARE:
    case UP_STUN_A_ALTERNATE_SERVER:
    case UP_STUN_A_FINGERPRINT:
        return true;
    default:
        return false;
    }
}

/* The size rules of the attributes whose value has a fixed layout (RFC 8489 §14, RFC 8656
 * §18): NULL when len fits type, else the reason. */
static const char *size_error(uint16_t type, size_t len)
{
    switch (type) {
    case UP_STUN_A_MAPPED_ADDRESS:
    case UP_STUN_A_XOR_MAPPED_ADDRESS:
    case UP_STUN_A_XOR_PEER_ADDRESS:
    case UP_STUN_A_XOR_RELAYED_ADDRESS:
    case UP_STUN_A_ALTERNATE_SERVER:
        return len == 8 || len == 20 ? NULL : "stun: bad address size";
    case UP_STUN_A_LIFETIME:
    case UP_STUN_A_CHANNEL_NUMBER:
    case UP_STUN_A_REQUESTED_TRANSPORT:
    case UP_STUN_A_REQUESTED_ADDRESS_FAMILY:
    case UP_STUN_A_ADDITIONAL_ADDRESS_FAMILY:
        return len == 4 ? NULL : "stun: bad 4-byte attribute size";
    case UP_STUN_A_EVEN_PORT:
        return len == 1 ? NULL : "stun: bad EVEN-PORT size";
    case UP_STUN_A_DONT_FRAGMENT:
        return len == 0 ? NULL : "stun: bad DONT-FRAGMENT size";
    case UP_STUN_A_RESERVATION_TOKEN:
        return len == 8 ? NULL : "stun: bad RESERVATION-TOKEN size";
    case UP_STUN_A_USERHASH:
        return len == 32 ? NULL : "stun: bad USERHASH size";
    case UP_STUN_A_ERROR_CODE:
    case UP_STUN_A_ADDRESS_ERROR_CODE:
        return len >= 4 ? NULL : "stun: bad error code size";
    case UP_STUN_A_UNKNOWN_ATTRIBUTES:
        return len % 2 == 0 ? NULL : "stun: bad UNKNOWN-ATTRIBUTES size";
    case UP_STUN_A_MESSAGE_INTEGRITY:
        return len == UP_SHA1_LEN ? NULL : "stun: bad MESSAGE-INTEGRITY size";
    case UP_STUN_A_MESSAGE_INTEGRITY_SHA256:
        /* RFC 8489 §14.6: truncated to no less than 16 bytes, a multiple of 4. */
        return len >= 16 && len <= UP_SHA256_LEN && len % 4 == 0
                   ? NULL
                   : "stun: bad MESSAGE-INTEGRITY-SHA256 size";
    case UP_STUN_A_FINGERPRINT:
        return len == 4 ? NULL : "stun: bad FINGERPRINT size";
    default:
        return NULL;
    }
}

static uint32_t crc32_of(const uint8_t *p, size_t n)
{
    /* n < UP_STUN_MAX_MESSAGE: one call suffices. */
    return (uint32_t)crc32(crc32(0L, Z_NULL, 0), p, (uInt)n);
}

static void note_unknown(struct up_stun_msg *m, uint16_t type)
{
    for (size_t i = 0; i < m->n_unknown; i++) {
        if (m->unknown[i] == type) {
            return;
        }
    }
    if (m->n_unknown < UP_STUN_MAX_UNKNOWN) {
        m->unknown[m->n_unknown++] = type;
    }
}

/* Whether the attribute at this point is one RFC 8489 §14.5/§14.6 says to ignore: after
 * MESSAGE-INTEGRITY only MESSAGE-INTEGRITY-SHA256 and FINGERPRINT count, after
 * MESSAGE-INTEGRITY-SHA256 only FINGERPRINT. */
static bool is_ignored(const struct up_stun_msg *m, uint16_t type)
{
    if (type == UP_STUN_A_FINGERPRINT) {
        return false;
    }
    if (m->mi256 >= 0) {
        return true;
    }
    return m->mi >= 0 && type != UP_STUN_A_MESSAGE_INTEGRITY_SHA256;
}

int up_stun_parse(const uint8_t *buf, size_t len, struct up_stun_msg *m)
{
    *m = (struct up_stun_msg){.mi = -1, .mi256 = -1, .fp = -1};
    if (len < UP_STUN_HDR) {
        return bad(m, "stun: shorter than a header");
    }
    /* RFC 8489 §5: the two most significant bits are zero. */
    if (buf[0] & 0xC0) {
        return bad(m, "stun: leading bits not zero");
    }
    if (up_rd_u32be(buf + 4) != UP_STUN_MAGIC) {
        return bad(m, "stun: bad magic cookie");
    }
    size_t body = up_rd_u16be(buf + 2);
    if (body % 4) {
        return bad(m, "stun: length not a multiple of 4");
    }
    if (UP_STUN_HDR + body != len) {
        return bad(m, "stun: length does not match the message");
    }
    /* Type: M11..M7 C1 M6..M4 C0 M3..M0 (RFC 8489 §5). */
    uint16_t t = up_rd_u16be(buf);
    m->method = (uint16_t)((t & 0x000F) | ((t >> 1) & 0x0070) | ((t >> 2) & 0x0F80));
    m->cls = (uint8_t)(((t >> 4) & 1) | ((t >> 7) & 2));
    memcpy(m->tid, buf + 8, sizeof m->tid);
    m->len = len;

    size_t off = UP_STUN_HDR;
    while (off < len) {
        /* off and len are multiples of 4: the attribute header is there. */
        uint16_t type = up_rd_u16be(buf + off);
        uint16_t alen = up_rd_u16be(buf + off + 2);
        size_t next = off + 4 + pad4(alen);
        if (next > len) {
            return bad(m, "stun: attribute overruns the message");
        }
        if (is_ignored(m, type)) {
            off = next;
            continue;
        }
        const char *why = size_error(type, alen);
        if (why) {
            return bad(m, why);
        }
        if (m->n_attrs == UP_STUN_MAX_ATTRS) {
            return fail(m, UP_ELIMIT, "stun: too many attributes");
        }
        int idx = (int)m->n_attrs;
        m->attrs[m->n_attrs++] = (struct up_stun_attr){
            .type = type,
            .len = alen,
            .value = buf + off + 4,
            .offset = off,
        };
        if (type == UP_STUN_A_MESSAGE_INTEGRITY) {
            m->mi = idx;
        } else if (type == UP_STUN_A_MESSAGE_INTEGRITY_SHA256) {
            m->mi256 = idx;
        } else if (type == UP_STUN_A_FINGERPRINT) {
            if (next != len) {
                return bad(m, "stun: FINGERPRINT not last");
            }
            /* The CRC covers the message before the attribute, whose header length already
             * counts FINGERPRINT since it is last (RFC 8489 §14.7). */
            if ((crc32_of(buf, off) ^ FINGERPRINT_XOR) != up_rd_u32be(buf + off + 4)) {
                return bad(m, "stun: bad FINGERPRINT");
            }
            m->fp = idx;
        } else if (type < 0x8000 && !is_known(type)) {
            note_unknown(m, type);
        }
        off = next;
    }
    return UP_OK;
}

const struct up_stun_attr *up_stun_find(const struct up_stun_msg *m, uint16_t type)
{
    for (size_t i = 0; i < m->n_attrs; i++) {
        if (m->attrs[i].type == type) {
            return &m->attrs[i];
        }
    }
    return NULL;
}

/* Family, port and address of an address attribute (RFC 8489 §14.1, §14.2), each byte XORed
 * with mask (cookie, then transaction id) when mask is not NULL. */
static int decode_addr(const struct up_stun_attr *a, const uint8_t *mask, struct up_stun_addr *out)
{
    static const uint8_t zero[16];
    const uint8_t *x = mask ? mask : zero;
    if (a->len < 4) {
        return UP_EPROTO;
    }
    const uint8_t *v = a->value;
    uint8_t family = v[1];
    if (!((family == FAMILY_V4 && a->len == 8) || (family == FAMILY_V6 && a->len == 20))) {
        return UP_EPROTO;
    }
    memset(out, 0, sizeof(*out));
    out->port = (uint16_t)(up_rd_u16be(v + 2) ^ up_rd_u16be(x));
    if (family == FAMILY_V4) {
        memcpy(out->ip, v4_mapped, sizeof v4_mapped);
        for (size_t i = 0; i < 4; i++) {
            out->ip[12 + i] = (uint8_t)(v[4 + i] ^ x[i]);
        }
    } else {
        for (size_t i = 0; i < 16; i++) {
            out->ip[i] = (uint8_t)(v[4 + i] ^ x[i]);
        }
    }
    return UP_OK;
}

/* The XOR mask of RFC 8489 §14.2: the magic cookie, then the transaction id. */
static void xor_mask(uint8_t mask[16], const uint8_t tid[12])
{
    up_wr_u32be(mask, UP_STUN_MAGIC);
    memcpy(mask + 4, tid, 12);
}

int up_stun_xaddr(const struct up_stun_msg *m, const struct up_stun_attr *a,
                  struct up_stun_addr *out)
{
    uint8_t mask[16];
    xor_mask(mask, m->tid);
    return decode_addr(a, mask, out);
}

int up_stun_addr(const struct up_stun_attr *a, struct up_stun_addr *out)
{
    return decode_addr(a, NULL, out);
}

int up_stun_u32(const struct up_stun_attr *a, uint32_t *out)
{
    if (a->len != 4) {
        return UP_EPROTO;
    }
    *out = up_rd_u32be(a->value);
    return UP_OK;
}

int up_stun_error(const struct up_stun_attr *a, int *code, const char **reason, size_t *reason_len)
{
    if (a->len < 4) {
        return UP_EPROTO;
    }
    /* 21 reserved bits, Class (3 bits, 3..6), Number (0..99): RFC 8489 §14.8. */
    int cls = a->value[2] & 7;
    int num = a->value[3];
    if (cls < 3 || cls > 6 || num > 99) {
        return UP_EPROTO;
    }
    *code = cls * 100 + num;
    *reason = (const char *)(a->value + 4);
    *reason_len = a->len - 4u;
    return UP_OK;
}

void up_stun_long_term_key(const char *user, size_t ulen, const char *realm, size_t rlen,
                           const char *pass, size_t plen, uint8_t key[16])
{
    const struct up_crypto_span parts[] = {
        {.p = user, .len = ulen}, {.p = ":", .len = 1},     {.p = realm, .len = rlen},
        {.p = ":", .len = 1},     {.p = pass, .len = plen},
    };
    up_md5_v(parts, sizeof parts / sizeof parts[0], key);
}

bool up_stun_check_integrity(const uint8_t *buf, const struct up_stun_msg *m, const uint8_t *key,
                             size_t key_len)
{
    bool sha256 = m->mi256 >= 0;
    int i = sha256 ? m->mi256 : m->mi;
    if (i < 0 || (size_t)i >= m->n_attrs) {
        return false;
    }
    const struct up_stun_attr *a = &m->attrs[i];
    size_t mac_len = sha256 ? UP_SHA256_LEN : UP_SHA1_LEN;
    if (a->offset < UP_STUN_HDR || a->len == 0 || a->len > mac_len) {
        return false;
    }
    /* RFC 8489 §14.5, §14.6: the MAC covers the message before the attribute, with the
     * header's length counting up to the end of the attribute (not what may follow it). The
     * header is rewritten in a copy: buf is the caller's. */
    uint8_t hdr[UP_STUN_HDR];
    memcpy(hdr, buf, UP_STUN_HDR);
    up_wr_u16be(hdr + 2, (uint16_t)(a->offset + 4 + a->len - UP_STUN_HDR));
    const struct up_crypto_span parts[] = {
        {.p = hdr, .len = UP_STUN_HDR},
        {.p = buf + UP_STUN_HDR, .len = a->offset - UP_STUN_HDR},
    };
    uint8_t mac[UP_SHA256_LEN];
    if (up_hmac_v(sha256, key, key_len, parts, 2, mac) != UP_OK) {
        return false;
    }
    return up_ct_equal(mac, a->value, a->len);
}

void up_stun_begin(struct up_stun_builder *b, uint8_t *buf, size_t cap, uint16_t method,
                   uint8_t cls, const uint8_t tid[12])
{
    *b = (struct up_stun_builder){.buf = buf, .cap = cap};
    if (cap < UP_STUN_HDR || method > 0x0FFF || cls > UP_STUN_ERROR) {
        b->overflow = true;
        return;
    }
    uint16_t t = (uint16_t)((method & 0x000F) | ((method & 0x0070) << 1) |
                            ((method & 0x0F80) << 2) | ((cls & 1) << 4) | ((cls & 2) << 7));
    up_wr_u16be(buf, t);
    up_wr_u16be(buf + 2, 0);
    up_wr_u32be(buf + 4, UP_STUN_MAGIC);
    memcpy(buf + 8, tid, 12);
    b->len = UP_STUN_HDR;
}

/* Append the header and padding of an attribute of len bytes, keep the message header's
 * length current, and return where the value goes; NULL (and sticky overflow) when it does
 * not fit the buffer or a STUN length. */
static uint8_t *reserve(struct up_stun_builder *b, uint16_t type, size_t len)
{
    if (b->overflow) {
        return NULL;
    }
    size_t need = 4 + pad4(len);
    if (len > UINT16_MAX || b->len - UP_STUN_HDR + need > UINT16_MAX || b->cap - b->len < need) {
        b->overflow = true;
        return NULL;
    }
    uint8_t *p = b->buf + b->len;
    up_wr_u16be(p, type);
    up_wr_u16be(p + 2, (uint16_t)len);
    memset(p + 4 + len, 0, need - 4 - len);
    b->len += need;
    up_wr_u16be(b->buf + 2, (uint16_t)(b->len - UP_STUN_HDR));
    return p + 4;
}

void up_stun_add(struct up_stun_builder *b, uint16_t type, const void *value, size_t len)
{
    uint8_t *p = reserve(b, type, len);
    if (p && len) {
        memcpy(p, value, len);
    }
}

void up_stun_add_u32(struct up_stun_builder *b, uint16_t type, uint32_t v)
{
    uint8_t *p = reserve(b, type, 4);
    if (p) {
        up_wr_u32be(p, v);
    }
}

void up_stun_add_xaddr(struct up_stun_builder *b, uint16_t type, const struct up_stun_addr *a)
{
    bool v4 = up_ip_is_v4(a->ip);
    uint8_t *p = reserve(b, type, v4 ? 8 : 20);
    if (!p) {
        return;
    }
    uint8_t mask[16];
    xor_mask(mask, b->buf + 8);
    p[0] = 0;
    p[1] = v4 ? FAMILY_V4 : FAMILY_V6;
    up_wr_u16be(p + 2, (uint16_t)(a->port ^ (UP_STUN_MAGIC >> 16)));
    if (v4) {
        for (size_t i = 0; i < 4; i++) {
            p[4 + i] = (uint8_t)(a->ip[12 + i] ^ mask[i]);
        }
    } else {
        for (size_t i = 0; i < 16; i++) {
            p[4 + i] = (uint8_t)(a->ip[i] ^ mask[i]);
        }
    }
}

void up_stun_add_error(struct up_stun_builder *b, int code, const char *reason)
{
    if (b->overflow) {
        return;
    }
    if (!reason) {
        reason = "";
    }
    size_t rlen = strlen(reason);
    size_t chars = 0;
    for (size_t i = 0; i < rlen; i++) {
        chars += ((uint8_t)reason[i] & 0xC0) != 0x80;
    }
    /* A code outside 300..699 or an over-long reason does not fit the attribute. */
    if (code < 300 || code > 699 || chars > ERROR_REASON_MAX_CHARS ||
        rlen > ERROR_REASON_MAX_BYTES) {
        b->overflow = true;
        return;
    }
    uint8_t *p = reserve(b, UP_STUN_A_ERROR_CODE, 4 + rlen);
    if (!p) {
        return;
    }
    p[0] = 0;
    p[1] = 0;
    p[2] = (uint8_t)(code / 100);
    p[3] = (uint8_t)(code % 100);
    memcpy(p + 4, reason, rlen);
}

static void add_mac(struct up_stun_builder *b, bool sha256, const uint8_t *key, size_t key_len)
{
    size_t mac_len = sha256 ? UP_SHA256_LEN : UP_SHA1_LEN;
    uint16_t type = sha256 ? UP_STUN_A_MESSAGE_INTEGRITY_SHA256 : UP_STUN_A_MESSAGE_INTEGRITY;
    /* reserve() already counts the attribute in the header's length, as the MAC needs. */
    uint8_t *p = reserve(b, type, mac_len);
    if (!p) {
        return;
    }
    const struct up_crypto_span part = {.p = b->buf, .len = (size_t)(p - 4 - b->buf)};
    if (up_hmac_v(sha256, key, key_len, &part, 1, p) != UP_OK) {
        b->overflow = true;
    }
}

void up_stun_add_integrity(struct up_stun_builder *b, const uint8_t *key, size_t key_len)
{
    add_mac(b, false, key, key_len);
}

void up_stun_add_integrity_sha256(struct up_stun_builder *b, const uint8_t *key, size_t key_len)
{
    add_mac(b, true, key, key_len);
}

void up_stun_add_fingerprint(struct up_stun_builder *b)
{
    uint8_t *p = reserve(b, UP_STUN_A_FINGERPRINT, 4);
    if (p) {
        up_wr_u32be(p, crc32_of(b->buf, (size_t)(p - 4 - b->buf)) ^ FINGERPRINT_XOR);
    }
}

int up_stun_end(struct up_stun_builder *b, size_t *len)
{
    if (b->overflow) {
        *len = 0;
        return UP_ELIMIT;
    }
    *len = b->len;
    return UP_OK;
}

int up_stun_channel_parse(const uint8_t *buf, size_t len, uint16_t *channel, const uint8_t **data,
                          size_t *dlen)
{
    if (len < UP_STUN_CHANNEL_HDR) {
        return UP_EPROTO;
    }
    uint16_t ch = up_rd_u16be(buf);
    size_t n = up_rd_u16be(buf + 2);
    if (ch < UP_STUN_CHANNEL_MIN || ch > UP_STUN_CHANNEL_MAX || n > len - UP_STUN_CHANNEL_HDR) {
        return UP_EPROTO;
    }
    *channel = ch;
    *data = buf + UP_STUN_CHANNEL_HDR;
    *dlen = n;
    return UP_OK;
}

void up_stun_channel_header(uint8_t hdr[UP_STUN_CHANNEL_HDR], uint16_t channel, uint16_t len)
{
    up_wr_u16be(hdr, channel);
    up_wr_u16be(hdr + 2, len);
}

int up_stun_frame_len(const uint8_t *buf, size_t len, size_t *frame)
{
    if (len < 4) {
        return UP_EAGAIN;
    }
    size_t n = up_rd_u16be(buf + 2);
    if (up_stun_is_stun(buf[0])) {
        *frame = UP_STUN_HDR + n;
    } else if (up_stun_is_channel(buf[0])) {
        /* RFC 8656 §12.5: over TCP and TLS, ChannelData is padded to a multiple of 4. */
        *frame = UP_STUN_CHANNEL_HDR + pad4(n);
    } else {
        return UP_EPROTO;
    }
    return UP_OK;
}
