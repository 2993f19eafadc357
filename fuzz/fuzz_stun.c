/* libFuzzer target for the STUN/TURN codec (STYLE §14).
 *
 * The input is one datagram and, at the same time, a TCP/TLS byte stream. For each input:
 *   1. parse it as a STUN message; on success check the invariants of the result, decode
 *      every attribute with a typed reader, check integrity with a fixed key and with the
 *      long-term key of its USERNAME/REALM, then re-build the message from its attributes
 *      (MESSAGE-INTEGRITY, -SHA256 and FINGERPRINT recomputed) and parse that: the same
 *      attributes must come back, and the recomputed MACs must verify;
 *   2. parse it as ChannelData, and round-trip that through the header writer;
 *   3. cut it into frames with up_stun_frame_len() and parse each complete frame. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/cidr.h"
#include "proto/stun.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static const uint8_t fixed_key[] = "VOkJxbRl1RmTxUk/WvJxBt";
#define FIXED_KEY_LEN (sizeof fixed_key - 1)

static bool is_address(uint16_t type)
{
    return type == UP_STUN_A_MAPPED_ADDRESS || type == UP_STUN_A_ALTERNATE_SERVER ||
           type == UP_STUN_A_XOR_MAPPED_ADDRESS || type == UP_STUN_A_XOR_PEER_ADDRESS ||
           type == UP_STUN_A_XOR_RELAYED_ADDRESS;
}

static bool is_xor(uint16_t type)
{
    return type == UP_STUN_A_XOR_MAPPED_ADDRESS || type == UP_STUN_A_XOR_PEER_ADDRESS ||
           type == UP_STUN_A_XOR_RELAYED_ADDRESS;
}

static bool is_mac(uint16_t type)
{
    return type == UP_STUN_A_MESSAGE_INTEGRITY || type == UP_STUN_A_MESSAGE_INTEGRITY_SHA256 ||
           type == UP_STUN_A_FINGERPRINT;
}

static void check_msg(const uint8_t *buf, size_t len, const struct up_stun_msg *m)
{
    CHECK(m->len == len && len >= UP_STUN_HDR && len % 4 == 0);
    CHECK(m->method <= 0x0FFF && m->cls <= UP_STUN_ERROR);
    CHECK(memcmp(m->tid, buf + 8, 12) == 0);
    CHECK(m->n_attrs <= UP_STUN_MAX_ATTRS && m->n_unknown <= UP_STUN_MAX_UNKNOWN);
    size_t prev_end = UP_STUN_HDR;
    for (size_t i = 0; i < m->n_attrs; i++) {
        const struct up_stun_attr *a = &m->attrs[i];
        CHECK(a->offset >= prev_end && a->offset % 4 == 0);
        CHECK(a->offset + 4 + a->len <= len && a->value == buf + a->offset + 4);
        prev_end = a->offset + 4 + a->len;
        /* Only integrity attributes may follow MESSAGE-INTEGRITY. */
        if (m->mi >= 0 && (int)i > m->mi) {
            CHECK(a->type == UP_STUN_A_MESSAGE_INTEGRITY_SHA256 ||
                  a->type == UP_STUN_A_FINGERPRINT);
        }
        if (m->mi256 >= 0 && (int)i > m->mi256) {
            CHECK(a->type == UP_STUN_A_FINGERPRINT);
        }
    }
    CHECK(m->mi < 0 || m->attrs[m->mi].type == UP_STUN_A_MESSAGE_INTEGRITY);
    CHECK(m->mi256 < 0 || m->attrs[m->mi256].type == UP_STUN_A_MESSAGE_INTEGRITY_SHA256);
    if (m->fp >= 0) {
        CHECK((size_t)m->fp == m->n_attrs - 1);
        CHECK(m->attrs[m->fp].type == UP_STUN_A_FINGERPRINT);
        CHECK(m->attrs[m->fp].offset + 8 == len);
    }
    for (size_t i = 0; i < m->n_unknown; i++) {
        CHECK(m->unknown[i] < 0x8000);
        CHECK(up_stun_find(m, m->unknown[i]) != NULL);
    }
}

/* Every typed reader on every attribute: they must fail cleanly on the wrong ones. */
static void decode_all(const struct up_stun_msg *m)
{
    for (size_t i = 0; i < m->n_attrs; i++) {
        const struct up_stun_attr *a = &m->attrs[i];
        struct up_stun_addr addr;
        int rv = up_stun_addr(a, &addr);
        CHECK(rv == UP_OK || rv == UP_EPROTO);
        int rv2 = up_stun_xaddr(m, a, &addr);
        CHECK(rv2 == rv);
        if (rv == UP_OK) {
            CHECK(a->len == 8 || a->len == 20);
        }
        if (is_address(a->type)) {
            CHECK(a->len == 8 || a->len == 20);
        }
        uint32_t u = 0;
        rv = up_stun_u32(a, &u);
        CHECK(rv == (a->len == 4 ? UP_OK : UP_EPROTO));
        int code = 0;
        const char *reason = NULL;
        size_t rlen = 0;
        rv = up_stun_error(a, &code, &reason, &rlen);
        CHECK(rv == UP_OK || rv == UP_EPROTO);
        if (rv == UP_OK) {
            CHECK(code >= 300 && code <= 699 && rlen + 4 == a->len);
            CHECK(reason == (const char *)a->value + 4);
        }
    }
}

/* Build m again into out: its attributes in order, the integrity ones recomputed. Returns 0
 * when it does not fit. */
static size_t rebuild(const struct up_stun_msg *m, uint8_t *out, size_t cap)
{
    struct up_stun_builder b;
    up_stun_begin(&b, out, cap, m->method, m->cls, m->tid);
    for (size_t i = 0; i < m->n_attrs; i++) {
        const struct up_stun_attr *a = &m->attrs[i];
        if (!is_mac(a->type)) {
            if (is_xor(a->type) && i % 2 == 0) {
                /* Through the typed writer, when the value decodes. */
                struct up_stun_addr addr;
                if (up_stun_xaddr(m, a, &addr) == UP_OK && (a->len == 8) == up_ip_is_v4(addr.ip)) {
                    up_stun_add_xaddr(&b, a->type, &addr);
                    continue;
                }
            }
            up_stun_add(&b, a->type, a->value, a->len);
        }
    }
    if (m->mi >= 0) {
        up_stun_add_integrity(&b, fixed_key, FIXED_KEY_LEN);
    }
    if (m->mi256 >= 0) {
        up_stun_add_integrity_sha256(&b, fixed_key, FIXED_KEY_LEN);
    }
    if (m->fp >= 0) {
        up_stun_add_fingerprint(&b);
    }
    size_t len = 0;
    if (up_stun_end(&b, &len) != UP_OK) {
        CHECK(len == 0);
    }
    return len;
}

static void same_attrs(const struct up_stun_msg *a, const struct up_stun_msg *b)
{
    CHECK(a->method == b->method && a->cls == b->cls && memcmp(a->tid, b->tid, 12) == 0);
    CHECK(a->n_attrs == b->n_attrs);
    CHECK((a->mi < 0) == (b->mi < 0) && (a->mi256 < 0) == (b->mi256 < 0) &&
          (a->fp < 0) == (b->fp < 0));
    for (size_t i = 0; i < a->n_attrs; i++) {
        const struct up_stun_attr *x = &a->attrs[i], *y = &b->attrs[i];
        CHECK(x->type == y->type);
        if (is_xor(x->type) && x->len > 0) {
            /* The typed writer zeroes the first byte, which receivers ignore (RFC 8489
             * §14.1). */
            CHECK(x->len == y->len && memcmp(x->value + 1, y->value + 1, x->len - 1u) == 0);
        } else if (!is_mac(x->type)) {
            CHECK(x->len == y->len && memcmp(x->value, y->value, x->len) == 0);
        }
    }
    CHECK(a->n_unknown == b->n_unknown);
    CHECK(memcmp(a->unknown, b->unknown, a->n_unknown * sizeof a->unknown[0]) == 0);
}

static void stun_one(const uint8_t *buf, size_t len)
{
    struct up_stun_msg m;
    int rv = up_stun_parse(buf, len, &m);
    if (rv != UP_OK) {
        CHECK(rv == UP_EPROTO || rv == UP_ELIMIT);
        CHECK(m.err_reason != NULL);
        return;
    }
    check_msg(buf, len, &m);
    decode_all(&m);
    bool has_mac = m.mi >= 0 || m.mi256 >= 0;
    CHECK(!up_stun_check_integrity(buf, &m, fixed_key, FIXED_KEY_LEN) || has_mac);
    const struct up_stun_attr *user = up_stun_find(&m, UP_STUN_A_USERNAME);
    const struct up_stun_attr *realm = up_stun_find(&m, UP_STUN_A_REALM);
    if (user && realm) {
        uint8_t key[16];
        up_stun_long_term_key((const char *)user->value, user->len, (const char *)realm->value,
                              realm->len, "pass", 4, key);
        (void)up_stun_check_integrity(buf, &m, key, sizeof key);
    }

    /* A truncated MESSAGE-INTEGRITY-SHA256 comes back 32 bytes long: 16 more at most. */
    size_t cap = len + 16;
    uint8_t *out = up_malloc(cap);
    CHECK(out != NULL);
    size_t n = rebuild(&m, out, cap);
    if (n == 0) {
        /* Only a near-65535 body with a truncated MAC grows past a STUN length. */
        CHECK(m.mi256 >= 0 && len + 16 > UP_STUN_MAX_MESSAGE);
        up_free(out);
        return;
    }
    struct up_stun_msg again;
    CHECK(up_stun_parse(out, n, &again) == UP_OK);
    check_msg(out, n, &again);
    same_attrs(&m, &again);
    if (has_mac) {
        CHECK(up_stun_check_integrity(out, &again, fixed_key, FIXED_KEY_LEN));
        CHECK(!up_stun_check_integrity(out, &again, fixed_key, FIXED_KEY_LEN - 1));
    }
    /* Built from the same pieces, the rebuild is a fixed point. */
    uint8_t *out2 = up_malloc(cap);
    CHECK(out2 != NULL);
    CHECK(rebuild(&again, out2, cap) == n && memcmp(out, out2, n) == 0);
    up_free(out2);
    up_free(out);
}

static void channel_one(const uint8_t *buf, size_t len)
{
    uint16_t ch = 0;
    const uint8_t *data = NULL;
    size_t dlen = 0;
    if (up_stun_channel_parse(buf, len, &ch, &data, &dlen) != UP_OK) {
        return;
    }
    CHECK(ch >= UP_STUN_CHANNEL_MIN && ch <= UP_STUN_CHANNEL_MAX);
    CHECK(data == buf + UP_STUN_CHANNEL_HDR && UP_STUN_CHANNEL_HDR + dlen <= len);
    CHECK(up_stun_is_channel(buf[0]));
    uint8_t hdr[UP_STUN_CHANNEL_HDR];
    up_stun_channel_header(hdr, ch, (uint16_t)dlen);
    CHECK(memcmp(hdr, buf, UP_STUN_CHANNEL_HDR) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A copy of the exact size, so that ASan sees any read past the end. */
    uint8_t *in = up_malloc(size ? size : 1);
    CHECK(in != NULL);
    if (size) {
        memcpy(in, data, size);
    }
    stun_one(in, size);
    channel_one(in, size);

    size_t off = 0;
    for (;;) {
        size_t frame = 0;
        int rv = up_stun_frame_len(in + off, size - off, &frame);
        if (rv == UP_EAGAIN) {
            CHECK(size - off < 4);
            break;
        }
        if (rv != UP_OK) {
            CHECK(rv == UP_EPROTO);
            CHECK(!up_stun_is_stun(in[off]) && !up_stun_is_channel(in[off]));
            break;
        }
        CHECK(frame >= 4);
        if (up_stun_is_stun(in[off])) {
            CHECK(frame >= UP_STUN_HDR);
        } else {
            CHECK(frame % 4 == 0);
        }
        if (frame > size - off) {
            break; /* read more */
        }
        if (up_stun_is_stun(in[off])) {
            stun_one(in + off, frame);
        } else {
            uint16_t ch;
            const uint8_t *d;
            size_t dlen;
            CHECK(up_stun_channel_parse(in + off, frame, &ch, &d, &dlen) == UP_OK);
            CHECK(frame - UP_STUN_CHANNEL_HDR - dlen < 4);
        }
        off += frame;
    }
    up_free(in);
    return 0;
}
