/* libFuzzer target for RFC 7692 permessage-deflate (STYLE §14).
 *
 * Input: two control bytes, then data. Control byte 0 picks the mode (bits 0-1) and options;
 * control byte 1 picks the configuration (window bits, context takeover, chunk sizes).
 *   mode 0, negotiation: the data is a Sec-WebSocket-Extensions value. The server parser
 *     must either decline, fail with a reason, or accept with a response that is short,
 *     re-parses as an acceptable offer, and has parameters in range; the client check must
 *     fail with a reason or give parameters in range. Our own offer for the configuration
 *     must be accepted by our server and its response by our client.
 *   mode 1, inflate: the data is a sequence of messages ([len byte][payload]), each fed in
 *     slices to the inflater with small output buffers and a small message limit: no crash,
 *     output per call <= cap, message output <= the limit, errors sticky with a reason.
 *   mode 2, round trip: the data, split into messages and chunks, is deflated and inflated
 *     back, and must come back identical. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "proto/pmd.h"
#include "proto/ws.h"

#define FUZZ_MAX_MESSAGE 4096
#define FUZZ_MAX_OUT (1u << 20)

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static struct up_pmd_cfg cfg_from(uint8_t b)
{
    static const uint8_t bits[4] = {0, 8, 9, 12};
    return (struct up_pmd_cfg){
        .max_window_bits = bits[b & 3],
        .peer_max_window_bits = bits[(b >> 2) & 3],
        .no_context_takeover = (b & 0x10) != 0,
        .peer_no_context_takeover = (b & 0x20) != 0,
        .level = (b & 0x40) ? 1 : 0,
        .mem_level = (b & 0x80) ? 1 : 0,
        .max_message_bytes = FUZZ_MAX_MESSAGE,
    };
}

static void check_params(const struct up_pmd_params *p)
{
    CHECK(p->server_max_window_bits >= 8 && p->server_max_window_bits <= 15);
    CHECK(p->client_max_window_bits >= 8 && p->client_max_window_bits <= 15);
}

static void negotiate(const struct up_pmd_cfg *cfg, const char *v, size_t len)
{
    bool acc = false;
    struct up_pmd_params p;
    char resp[UP_PMD_MAX_HEADER];
    const char *why = NULL;
    int rv = up_pmd_server_accept(cfg, v, len, &acc, &p, resp, sizeof(resp), &why);
    CHECK(rv == UP_OK || rv == UP_EPROTO);
    if (rv == UP_EPROTO) {
        CHECK(why != NULL && !acc);
    } else if (acc) {
        size_t rlen = strlen(resp);
        CHECK(rlen < UP_PMD_MAX_HEADER);
        check_params(&p);
        /* A response is also a valid offer, and asks for what it grants. */
        bool acc2 = false;
        struct up_pmd_params p2;
        char resp2[UP_PMD_MAX_HEADER];
        CHECK(up_pmd_server_accept(cfg, resp, rlen, &acc2, &p2, resp2, sizeof(resp2), &why) ==
              UP_OK);
        CHECK(acc2);
        CHECK(p2.server_max_window_bits <= p.server_max_window_bits);
        struct up_pmd z;
        CHECK(up_pmd_init(&z, cfg, &p, UP_WS_SERVER) == UP_OK);
        up_pmd_fini(&z);
    }
    why = NULL;
    rv = up_pmd_client_check(cfg, v, len, &p, &why);
    CHECK(rv == UP_OK || rv == UP_EPROTO);
    if (rv == UP_OK) {
        check_params(&p);
    } else {
        CHECK(why != NULL);
    }

    /* Our own offer round-trips through our server and back through our client. */
    char offer[UP_PMD_MAX_HEADER];
    CHECK(up_pmd_client_offer(cfg, offer, sizeof(offer)) == UP_OK);
    CHECK(up_pmd_server_accept(cfg, offer, strlen(offer), &acc, &p, resp, sizeof(resp), &why) ==
          UP_OK);
    CHECK(acc);
    CHECK(up_pmd_client_check(cfg, resp, strlen(resp), &p, &why) == UP_OK);
}

/* Feed one message's payload in slices of `slice` bytes with `cap`-byte output buffers. */
static int inflate_msg(struct up_pmd *z, const uint8_t *in, size_t len, size_t slice, size_t cap,
                       bool utf8, uint8_t *out, size_t *total)
{
    uint8_t buf[512];
    int rv = up_pmd_inflate_begin(z, utf8);
    if (rv < 0) {
        return rv;
    }
    *total = 0;
    size_t off = 0;
    for (;;) {
        size_t n = len - off < slice ? len - off : slice;
        bool fin = off + n == len;
        const uint8_t *p = in + off;
        size_t left = n;
        do {
            size_t used = 0, got = 0;
            rv = up_pmd_inflate(z, p, left, fin, buf, cap, &used, &got);
            CHECK(used <= left && got <= cap);
            if (rv < 0 && rv != UP_EAGAIN) {
                CHECK(z->err_reason != NULL || rv == UP_ENOMEM);
                size_t u2, g2;
                CHECK(up_pmd_inflate(z, p, left, fin, buf, cap, &u2, &g2) == rv);
                return rv;
            }
            CHECK(*total + got <= FUZZ_MAX_MESSAGE);
            if (out) {
                memcpy(out + *total, buf, got);
            }
            *total += got;
            p += used;
            left -= used;
        } while (rv == UP_EAGAIN);
        CHECK(left == 0);
        off += n;
        if (fin) {
            return rv;
        }
    }
}

static void inflate_stream(const struct up_pmd_cfg *cfg, uint8_t ctl, const uint8_t *d, size_t len)
{
    struct up_pmd_params p = {
        .server_max_window_bits = (uint8_t)(8 + (ctl >> 4) % 8),
        .client_max_window_bits = 15,
        .server_no_context_takeover = (ctl & 0x04) != 0,
    };
    struct up_pmd z;
    CHECK(up_pmd_init(&z, cfg, &p, UP_WS_CLIENT) == UP_OK);
    size_t slice = 1 + (size_t)(cfg->max_window_bits & 7) * 5;
    size_t cap = (ctl & 0x08) ? 1 : 1 + (size_t)(ctl >> 4) * 17;
    bool utf8 = (ctl & 0x80) != 0;
    size_t off = 0;
    while (off < len) {
        size_t n = d[off++];
        if (n > len - off) {
            n = len - off;
        }
        size_t total;
        int rv = inflate_msg(&z, d + off, n, slice, cap, utf8, NULL, &total);
        off += n;
        if (rv < 0) {
            break;
        }
    }
    up_pmd_fini(&z);
}

static void roundtrip(const struct up_pmd_cfg *cfg, uint8_t ctl, const uint8_t *d, size_t len)
{
    struct up_pmd_params p = {
        .client_max_window_bits = (uint8_t)(8 + (ctl >> 4) % 8),
        .server_max_window_bits = (uint8_t)(8 + (ctl >> 5) % 8),
        .client_no_context_takeover = (ctl & 0x04) != 0,
    };
    struct up_pmd tx, rx;
    CHECK(up_pmd_init(&tx, cfg, &p, UP_WS_CLIENT) == UP_OK);
    CHECK(up_pmd_init(&rx, cfg, &p, UP_WS_SERVER) == UP_OK);
    size_t chunk = 1 + (ctl & 0x08 ? 3 : 100);
    uint8_t *out = up_malloc(FUZZ_MAX_MESSAGE);
    CHECK(out != NULL);
    size_t off = 0;
    while (off < len) {
        size_t n = d[off++];
        if (n > len - off) {
            n = len - off;
        }
        struct up_buf b;
        up_buf_init(&b);
        size_t done = 0;
        do {
            size_t k = n - done < chunk ? n - done : chunk;
            CHECK(up_pmd_deflate(&tx, d + off + done, k, done + k == n, &b, FUZZ_MAX_OUT) == UP_OK);
            done += k;
        } while (done < n);
        CHECK(up_buf_len(&b) <= up_pmd_deflate_bound(n) + n / chunk * 8);
        size_t total;
        CHECK(inflate_msg(&rx, up_buf_rptr(&b), up_buf_len(&b), 7, 64, false, out, &total) ==
              UP_OK);
        CHECK(total == n);
        CHECK(n == 0 || memcmp(out, d + off, n) == 0);
        up_buf_fini(&b);
        off += n;
    }
    up_free(out);
    up_pmd_fini(&tx);
    up_pmd_fini(&rx);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) {
        return 0;
    }
    uint8_t ctl = data[0];
    struct up_pmd_cfg cfg = cfg_from(data[1]);
    data += 2;
    size -= 2;
    switch (ctl & 3) {
    case 0:
    case 3:
        negotiate(&cfg, (const char *)data, size);
        break;
    case 1:
        inflate_stream(&cfg, ctl, data, size);
        break;
    default:
        roundtrip(&cfg, ctl, data, size);
        break;
    }
    return 0;
}
