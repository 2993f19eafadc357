/* Unit tests for RFC 7692 permessage-deflate (src/proto/pmd.c) and its use with the ws parser. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <zlib.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "feed.h"
#include "hexbytes.h"
#include "trace.h"
#include "proto/h1.h"
#include "proto/pmd.h"
#include "proto/ws.h"

/* ---- helpers ---------------------------------------------------------------------------- */

static const struct up_pmd_params default_params = {
    .server_max_window_bits = 15,
    .client_max_window_bits = 15,
};

static size_t hex(const char *s, uint8_t *out, size_t cap)
{
    size_t n = hex_bytes(s, out, cap);
    assert_true(n != (size_t)-1);
    return n;
}

static void pmd_open(struct up_pmd *z, const struct up_pmd_cfg *cfg,
                     const struct up_pmd_params *params, enum up_ws_role role)
{
    assert_int_equal(up_pmd_init(z, cfg, params, role), UP_OK);
}

/* Inflate one whole message given as payload slices, with an output buffer of cap bytes per
 * call. Returns the final rv; the inflated bytes go to out (out_cap), their count to *n. */
static int inflate_slices(struct up_pmd *z, const uint8_t *const *slices, const size_t *lens,
                          size_t nslices, bool utf8, size_t cap, uint8_t *out, size_t out_cap,
                          size_t *n)
{
    uint8_t buf[4096];
    assert_true(cap <= sizeof(buf));
    *n = 0;
    int rv = up_pmd_inflate_begin(z, utf8);
    if (rv < 0) {
        return rv;
    }
    for (size_t i = 0; i <= nslices; i++) {
        const uint8_t *p = i < nslices ? slices[i] : NULL;
        size_t len = i < nslices ? lens[i] : 0;
        bool fin = i == nslices;
        do {
            size_t used = 99, got = 99;
            rv = up_pmd_inflate(z, p, len, fin, buf, cap, &used, &got);
            assert_true(used <= len);
            assert_true(got <= cap);
            if (rv < 0 && rv != UP_EAGAIN) {
                return rv;
            }
            assert_true(*n + got <= out_cap);
            memcpy(out + *n, buf, got);
            *n += got;
            p += used;
            len -= used;
        } while (rv == UP_EAGAIN);
        assert_int_equal(len, 0);
    }
    return rv;
}

static int inflate_one(struct up_pmd *z, const uint8_t *in, size_t len, bool utf8, uint8_t *out,
                       size_t out_cap, size_t *n)
{
    const uint8_t *s[1] = {in};
    size_t l[1] = {len};
    return inflate_slices(z, s, l, 1, utf8, 4096, out, out_cap, n);
}

static void expect_inflate(struct up_pmd *z, const char *hexin, const char *want)
{
    uint8_t in[256], out[256];
    size_t len = hex(hexin, in, sizeof(in)), n;
    assert_int_equal(inflate_one(z, in, len, true, out, sizeof(out), &n), UP_OK);
    assert_int_equal(n, strlen(want));
    assert_memory_equal(out, want, n);
}

static void expect_deflate(struct up_pmd *z, const char *msg, const char *hexwant)
{
    uint8_t want[256];
    size_t wlen = hex(hexwant, want, sizeof(want));
    struct up_buf b;
    up_buf_init(&b);
    assert_int_equal(up_pmd_deflate(z, (const uint8_t *)msg, strlen(msg), true, &b, 1 << 20),
                     UP_OK);
    assert_int_equal(up_buf_len(&b), wlen);
    assert_memory_equal(up_buf_rptr(&b), want, wlen);
    up_buf_fini(&b);
}

/* ---- RFC 7692 §7.2.3 examples ----------------------------------------------------------- */

static void test_pmd_rfc_hello(void **state)
{
    (void)state;
    struct up_pmd_cfg cfg = {0};
    struct up_pmd tx, rx;
    pmd_open(&tx, &cfg, &default_params, UP_WS_SERVER);
    pmd_open(&rx, &cfg, &default_params, UP_WS_CLIENT);
    /* RFC 7692 §7.2.3.1: c1 07 f2 48 cd c9 c9 07 00 */
    expect_deflate(&tx, "Hello", "f2 48 cd c9 c9 07 00");
    expect_inflate(&rx, "f2 48 cd c9 c9 07 00", "Hello");
    /* §7.2.3.2: the same message again with context takeover: c1 05 f2 00 11 00 00 */
    expect_deflate(&tx, "Hello", "f2 00 11 00 00");
    expect_inflate(&rx, "f2 00 11 00 00", "Hello");
    up_pmd_fini(&tx);
    up_pmd_fini(&rx);
    up_pmd_fini(&rx); /* idempotent */
}

static void test_pmd_rfc_no_context_takeover(void **state)
{
    (void)state;
    struct up_pmd_cfg cfg = {0};
    struct up_pmd_params p = default_params;
    p.server_no_context_takeover = true;
    struct up_pmd tx, rx;
    pmd_open(&tx, &cfg, &p, UP_WS_SERVER);
    pmd_open(&rx, &cfg, &p, UP_WS_CLIENT);
    /* §7.2.3.2: without context takeover both messages are f2 48 cd c9 c9 07 00 */
    for (int i = 0; i < 3; i++) {
        expect_deflate(&tx, "Hello", "f2 48 cd c9 c9 07 00");
        expect_inflate(&rx, "f2 48 cd c9 c9 07 00", "Hello");
    }
    /* The receiver resets too: a back-reference into the last message is now corrupt. */
    uint8_t in[8], out[64];
    size_t n, len = hex("f2 00 11 00 00", in, sizeof(in));
    assert_int_equal(inflate_one(&rx, in, len, true, out, sizeof(out), &n), UP_EPROTO);
    assert_int_equal(rx.close_code, 1002);
    up_pmd_fini(&tx);
    up_pmd_fini(&rx);
}

static void test_pmd_rfc_fragmented(void **state)
{
    (void)state;
    /* §7.2.3.1: "Hello" in two fragments: 41 03 f2 48 cd, 80 04 c9 c9 07 00 */
    static const uint8_t a[] = {0xf2, 0x48, 0xcd}, b[] = {0xc9, 0xc9, 0x07, 0x00};
    const uint8_t *s[2] = {a, b};
    size_t l[2] = {sizeof(a), sizeof(b)};
    struct up_pmd_cfg cfg = {0};
    struct up_pmd rx;
    pmd_open(&rx, &cfg, &default_params, UP_WS_SERVER);
    uint8_t out[64];
    size_t n;
    /* One output byte per call as well: the slices and the tail cross call boundaries. */
    assert_int_equal(inflate_slices(&rx, s, l, 2, true, 1, out, sizeof(out), &n), UP_OK);
    assert_int_equal(n, 5);
    assert_memory_equal(out, "Hello", 5);
    /* Literals only: the same frames inflate again with the window carried over. */
    assert_int_equal(inflate_slices(&rx, s, l, 2, true, 4096, out, sizeof(out), &n), UP_OK);
    assert_int_equal(n, 5);
    up_pmd_fini(&rx);
}

static void test_pmd_rfc_stored_bfinal_two_blocks(void **state)
{
    (void)state;
    struct up_pmd_cfg cfg = {0};
    struct up_pmd rx;
    pmd_open(&rx, &cfg, &default_params, UP_WS_CLIENT);
    /* §7.2.3.3: no compression: c1 0b 00 05 00 fa ff 48 65 6c 6c 6f 00 */
    expect_inflate(&rx, "00 05 00 fa ff 48 65 6c 6c 6f 00", "Hello");
    /* §7.2.3.4: a block with BFINAL set: c1 08 f3 48 cd c9 c9 07 00 00 */
    expect_inflate(&rx, "f3 48 cd c9 c9 07 00 00", "Hello");
    /* The window survives the BFINAL block: a back-reference to "Hello" still works. */
    expect_inflate(&rx, "f2 00 11 00 00", "Hello");
    /* §7.2.3.5: two DEFLATE blocks in one message */
    expect_inflate(&rx, "f2 48 05 00 00 00 ff ff ca c9 c9 07 00", "Hello");
    /* §7.2.3.6? an empty message: c1 01 00, and a payload of zero bytes */
    expect_inflate(&rx, "00", "");
    expect_inflate(&rx, "", "");
    expect_inflate(&rx, "f2 00 11 00 00", "Hello");
    /* A BFINAL block without the trailing 00 is accepted as a complete message too. */
    expect_inflate(&rx, "f3 48 cd c9 c9 07 00", "Hello");
    expect_inflate(&rx, "f2 00 11 00 00", "Hello");
    up_pmd_fini(&rx);
}

static void test_pmd_empty_message(void **state)
{
    (void)state;
    struct up_pmd_cfg cfg = {0};
    struct up_pmd tx, rx;
    pmd_open(&tx, &cfg, &default_params, UP_WS_CLIENT);
    pmd_open(&rx, &cfg, &default_params, UP_WS_SERVER);
    /* First message, and after another one (zlib then writes nothing at all). */
    expect_deflate(&tx, "", "00");
    expect_deflate(&tx, "Hello", "f2 48 cd c9 c9 07 00");
    expect_deflate(&tx, "", "00");
    expect_deflate(&tx, "", "00");
    expect_deflate(&tx, "Hello", "f2 00 11 00 00");
    expect_inflate(&rx, "00", "");
    expect_inflate(&rx, "f2 48 cd c9 c9 07 00", "Hello");
    expect_inflate(&rx, "00", "");
    expect_inflate(&rx, "00", "");
    expect_inflate(&rx, "f2 00 11 00 00", "Hello");
    up_pmd_fini(&tx);
    up_pmd_fini(&rx);
}

/* ---- round trips -------------------------------------------------------------------------- */

static void fill_text(uint8_t *p, size_t n, uint32_t seed)
{
    static const char *const words[] = {"relay ",  "agent ", "tunnel ",  "stream ",
                                        "credit ", "frame ", "deflate ", "window "};
    size_t i = 0;
    while (i < n) {
        seed = seed * 1103515245u + 12345u;
        const char *w = words[(seed >> 16) & 7];
        for (size_t j = 0; w[j] && i < n; j++) {
            p[i++] = (uint8_t)w[j];
        }
    }
}

/* Compress msgs in chunks of chunk bytes (0: whole), inflate with cap bytes per call. */
static void roundtrip(const struct up_pmd_cfg *cfg, const struct up_pmd_params *p, size_t msg_len,
                      size_t chunk, size_t cap, int nmsgs)
{
    struct up_pmd tx, rx;
    pmd_open(&tx, cfg, p, UP_WS_CLIENT);
    pmd_open(&rx, cfg, p, UP_WS_SERVER);
    uint8_t *msg = up_malloc(msg_len + 1), *out = up_malloc(msg_len + 1);
    assert_non_null(msg);
    assert_non_null(out);
    for (int m = 0; m < nmsgs; m++) {
        fill_text(msg, msg_len, (uint32_t)m * 7u + 1u);
        struct up_buf b;
        up_buf_init(&b);
        /* Each call's output is one frame's payload, fed as one slice. */
        const uint8_t *slices[512];
        size_t lens[512], offs[512], ns = 0, off = 0;
        size_t step = chunk ? chunk : msg_len;
        do {
            size_t k = msg_len - off < step ? msg_len - off : step;
            size_t before = up_buf_len(&b);
            assert_int_equal(up_pmd_deflate(&tx, msg + off, k, off + k == msg_len, &b, 1 << 24),
                             UP_OK);
            assert_true(ns < 512);
            offs[ns] = before;
            lens[ns++] = up_buf_len(&b) - before;
            off += k;
        } while (off < msg_len);
        assert_true(up_buf_len(&b) <= up_pmd_deflate_bound(msg_len));
        for (size_t i = 0; i < ns; i++) {
            slices[i] = up_buf_rptr(&b) + offs[i];
        }
        size_t n;
        assert_int_equal(inflate_slices(&rx, slices, lens, ns, true, cap, out, msg_len + 1, &n),
                         UP_OK);
        assert_int_equal(n, msg_len);
        assert_memory_equal(out, msg, msg_len);
        up_buf_fini(&b);
    }
    up_free(msg);
    up_free(out);
    up_pmd_fini(&tx);
    up_pmd_fini(&rx);
}

static void test_pmd_roundtrip(void **state)
{
    (void)state;
    struct up_pmd_cfg cfg = {0};
    struct up_pmd_params p = default_params;
    roundtrip(&cfg, &p, 1, 0, 4096, 3);
    roundtrip(&cfg, &p, 100000, 0, 4096, 3);
    roundtrip(&cfg, &p, 100000, 777, 97, 2); /* streamed, small output per call */
    p.client_no_context_takeover = true;
    p.server_no_context_takeover = true;
    roundtrip(&cfg, &p, 70000, 0, 4096, 3);
    for (uint8_t bits = 8; bits <= 15; bits++) {
        p = default_params;
        p.client_max_window_bits = bits;
        p.server_max_window_bits = bits;
        roundtrip(&cfg, &p, 20000, 3000, 4096, 2);
    }
    cfg.level = 1;
    cfg.mem_level = 1;
    roundtrip(&cfg, &default_params, 50000, 0, 4096, 2);
}

/* RFC 7692 §7.1.2: zlib cannot deflate with an 8-bit raw window; literals-only output must
 * still inflate with a strict 8-bit window (what a conforming peer may use). */
static void test_pmd_window_bits_8(void **state)
{
    (void)state;
    struct up_pmd_cfg cfg = {0};
    struct up_pmd_params p = default_params;
    p.server_max_window_bits = 8;
    struct up_pmd tx;
    pmd_open(&tx, &cfg, &p, UP_WS_SERVER);
    size_t len = 65536;
    uint8_t *msg = up_malloc(len), *out = up_malloc(len);
    fill_text(msg, len, 3);
    for (int m = 0; m < 2; m++) {
        struct up_buf b;
        up_buf_init(&b);
        assert_int_equal(up_pmd_deflate(&tx, msg, len, true, &b, 1 << 24), UP_OK);
        assert_true(up_buf_len(&b) < len); /* entropy coding still compresses */
        static const uint8_t tail[] = {0x00, 0x00, 0xff, 0xff};
        assert_int_equal(up_buf_append(&b, tail, 4, 1 << 24), UP_OK);
        z_stream s;
        memset(&s, 0, sizeof(s));
        assert_int_equal(inflateInit2(&s, -8), Z_OK);
        s.next_in = up_buf_rptr(&b);
        s.avail_in = (uInt)up_buf_len(&b);
        s.next_out = out;
        s.avail_out = (uInt)len;
        int zrv = inflate(&s, Z_SYNC_FLUSH);
        assert_true(zrv == Z_OK || zrv == Z_BUF_ERROR);
        assert_int_equal(s.avail_out, 0);
        assert_memory_equal(out, msg, len);
        inflateEnd(&s);
        up_buf_fini(&b);
    }
    up_free(msg);
    up_free(out);
    up_pmd_fini(&tx);
}

/* ---- limits and errors -------------------------------------------------------------------- */

static size_t zlib_raw(const uint8_t *in, size_t len, uint8_t *out, size_t cap)
{
    z_stream s;
    memset(&s, 0, sizeof(s));
    assert_int_equal(deflateInit2(&s, 9, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
    s.next_in = (Bytef *)in;
    s.avail_in = (uInt)len;
    s.next_out = out;
    s.avail_out = (uInt)cap;
    assert_int_equal(deflate(&s, Z_SYNC_FLUSH), Z_OK);
    assert_true(s.avail_out > 0);
    size_t n = cap - s.avail_out;
    deflateEnd(&s);
    return n - 4; /* strip 00 00 ff ff */
}

static void test_pmd_zip_bomb_limit(void **state)
{
    (void)state;
    /* 1 MiB of zeros deflates to about a kilobyte. */
    size_t big = 1u << 20;
    uint8_t *zeros = up_calloc(1, big), *bomb = up_malloc(8192), *out = up_malloc(big + 1);
    size_t blen = zlib_raw(zeros, big, bomb, 8192);
    assert_true(blen < 2048);
    struct up_pmd_cfg cfg = {.max_message_bytes = 65536};
    struct up_pmd rx;
    pmd_open(&rx, &cfg, &default_params, UP_WS_SERVER);
    size_t n;
    assert_int_equal(inflate_one(&rx, bomb, blen, false, out, big + 1, &n), UP_ELIMIT);
    assert_true(n <= 65536);
    assert_int_equal(rx.close_code, 1009);
    assert_non_null(rx.err_reason);
    /* Sticky. */
    size_t used, got;
    assert_int_equal(up_pmd_inflate(&rx, bomb, blen, true, out, 16, &used, &got), UP_ELIMIT);
    assert_int_equal(used, 0);
    assert_int_equal(got, 0);
    up_pmd_fini(&rx);

    /* limit-1, limit, limit+1 */
    for (size_t msg = 65535; msg <= 65537; msg++) {
        blen = zlib_raw(zeros, msg, bomb, 8192);
        pmd_open(&rx, &cfg, &default_params, UP_WS_SERVER);
        int rv = inflate_one(&rx, bomb, blen, false, out, big + 1, &n);
        assert_int_equal(rv, msg <= 65536 ? UP_OK : UP_ELIMIT);
        if (rv == UP_OK) {
            assert_int_equal(n, msg);
        }
        up_pmd_fini(&rx);
    }
    up_free(zeros);
    up_free(bomb);
    up_free(out);
}

static void test_pmd_output_per_call_bound(void **state)
{
    (void)state;
    size_t big = 300000;
    uint8_t *zeros = up_calloc(1, big), *comp = up_malloc(8192);
    size_t clen = zlib_raw(zeros, big, comp, 8192);
    struct up_pmd_cfg cfg = {0};
    struct up_pmd rx;
    pmd_open(&rx, &cfg, &default_params, UP_WS_SERVER);
    assert_int_equal(up_pmd_inflate_begin(&rx, false), UP_OK);
    uint8_t out[1000];
    size_t total = 0, calls = 0, used, got;
    const uint8_t *p = comp;
    size_t left = clen;
    int rv;
    do {
        rv = up_pmd_inflate(&rx, p, left, true, out, sizeof(out), &used, &got);
        assert_true(got <= sizeof(out));
        total += got;
        p += used;
        left -= used;
        calls++;
    } while (rv == UP_EAGAIN);
    assert_int_equal(rv, UP_OK);
    assert_int_equal(total, big);
    assert_true(calls >= big / sizeof(out));
    /* Outside a message. */
    assert_int_equal(up_pmd_inflate(&rx, comp, 1, false, out, sizeof(out), &used, &got), UP_ESTATE);
    assert_int_equal(up_pmd_inflate_begin(&rx, false), UP_OK);
    assert_int_equal(up_pmd_inflate_begin(&rx, false), UP_ESTATE);
    assert_int_equal(up_pmd_inflate(&rx, comp, 1, false, out, 0, &used, &got), UP_EINVAL);
    up_pmd_fini(&rx);
    up_free(zeros);
    up_free(comp);
}

static void test_pmd_corrupt(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "ff ff ff",                   /* BTYPE 11 is reserved */
        "00 05 00 00 00 48 65 6c 6c", /* stored block LEN/NLEN mismatch */
        "f2 00 11 00 00",             /* back-reference before any data */
        "07",                         /* BFINAL with the reserved BTYPE again, bit-packed */
        "f2 48 cd c9",                /* truncated: ends inside a block */
        "00 05 00 fa ff 48 65",       /* truncated stored block */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct up_pmd_cfg cfg = {0};
        struct up_pmd rx;
        pmd_open(&rx, &cfg, &default_params, UP_WS_CLIENT);
        uint8_t in[64], out[256];
        size_t n, len = hex(bad[i], in, sizeof(in));
        int rv = inflate_one(&rx, in, len, false, out, sizeof(out), &n);
        assert_int_equal(rv, UP_EPROTO);
        assert_int_equal(rx.close_code, 1002);
        assert_non_null(rx.err_reason);
        assert_int_equal(up_pmd_inflate_begin(&rx, false), UP_ESTATE);
        up_pmd_fini(&rx);
    }
}

static void test_pmd_utf8(void **state)
{
    (void)state;
    struct up_pmd_cfg cfg = {0};
    struct up_pmd tx, rx;
    static const uint8_t bad[] = {'o', 'k', 0xc0, 0xaf}; /* overlong '/' */
    static const uint8_t cut[] = {'o', 'k', 0xe2, 0x82}; /* € cut short */
    static const uint8_t good[] = {'o', 'k', 0xe2, 0x82, 0xac};
    const uint8_t *msgs[3] = {good, bad, cut};
    size_t lens[3] = {sizeof(good), sizeof(bad), sizeof(cut)};
    int want[3] = {UP_OK, UP_EPROTO, UP_EPROTO};
    for (int i = 0; i < 3; i++) {
        pmd_open(&tx, &cfg, &default_params, UP_WS_CLIENT);
        pmd_open(&rx, &cfg, &default_params, UP_WS_SERVER);
        struct up_buf b;
        up_buf_init(&b);
        assert_int_equal(up_pmd_deflate(&tx, msgs[i], lens[i], true, &b, 4096), UP_OK);
        uint8_t out[64];
        size_t n;
        assert_int_equal(
            inflate_one(&rx, up_buf_rptr(&b), up_buf_len(&b), true, out, sizeof(out), &n), want[i]);
        if (want[i] < 0) {
            assert_int_equal(rx.close_code, 1007);
        }
        /* Binary messages are not checked. */
        up_pmd_fini(&rx);
        pmd_open(&rx, &cfg, &default_params, UP_WS_SERVER);
        assert_int_equal(
            inflate_one(&rx, up_buf_rptr(&b), up_buf_len(&b), false, out, sizeof(out), &n), UP_OK);
        assert_int_equal(n, lens[i]);
        up_buf_fini(&b);
        up_pmd_fini(&tx);
        up_pmd_fini(&rx);
    }
}

static void test_pmd_memory_budget(void **state)
{
    (void)state;
    struct up_pmd_cfg cfg = {.max_mem_bytes = 16384};
    struct up_pmd z;
    pmd_open(&z, &cfg, &default_params, UP_WS_SERVER);
    struct up_buf b;
    up_buf_init(&b);
    assert_int_equal(up_pmd_deflate(&z, (const uint8_t *)"x", 1, true, &b, 4096), UP_ENOMEM);
    /* The inflate state fits; its 32 KiB window, allocated on first output, does not. */
    assert_int_equal(up_pmd_inflate_begin(&z, false), UP_OK);
    uint8_t in[8], out[16];
    size_t used, got, len = hex("f2 48 cd c9 c9 07 00", in, sizeof(in));
    assert_int_equal(up_pmd_inflate(&z, in, len, true, out, sizeof(out), &used, &got), UP_ENOMEM);
    assert_int_equal(up_pmd_inflate(&z, in, len, true, out, sizeof(out), &used, &got), UP_ENOMEM);
    assert_true(z.mem_used <= cfg.max_mem_bytes);
    up_pmd_fini(&z);
    assert_int_equal(z.mem_used, 0);
    /* Enough for both at small windows; memory returns to zero after fini. */
    cfg.max_mem_bytes = 64 << 10;
    cfg.mem_level = 1;
    struct up_pmd_params p = {.server_max_window_bits = 9, .client_max_window_bits = 9};
    pmd_open(&z, &cfg, &p, UP_WS_SERVER);
    assert_int_equal(up_pmd_deflate(&z, (const uint8_t *)"x", 1, true, &b, 4096), UP_OK);
    assert_int_equal(up_pmd_inflate_begin(&z, false), UP_OK);
    assert_true(z.mem_used > 0 && z.mem_used <= cfg.max_mem_bytes);
    up_pmd_fini(&z);
    assert_int_equal(z.mem_used, 0);
    up_buf_fini(&b);
}

static void test_pmd_deflate_out_limit(void **state)
{
    (void)state;
    struct up_pmd_cfg cfg = {0};
    struct up_pmd tx;
    pmd_open(&tx, &cfg, &default_params, UP_WS_SERVER);
    uint8_t msg[4096];
    fill_text(msg, sizeof(msg), 9);
    struct up_buf b;
    up_buf_init(&b);
    assert_int_equal(up_pmd_deflate(&tx, msg, sizeof(msg), true, &b, 16), UP_ELIMIT);
    assert_int_equal(up_pmd_deflate(&tx, msg, sizeof(msg), true, &b, 1 << 20), UP_ESTATE);
    up_buf_fini(&b);
    up_pmd_fini(&tx);
    struct up_pmd_params p = default_params;
    assert_int_equal(up_pmd_init(&tx, &cfg,
                                 &(struct up_pmd_params){.server_max_window_bits = 7,
                                                         .client_max_window_bits = 15},
                                 UP_WS_SERVER),
                     UP_EINVAL);
    cfg.max_window_bits = 16;
    assert_int_equal(up_pmd_init(&tx, &cfg, &p, UP_WS_SERVER), UP_EINVAL);
}

/* ---- negotiation: server ------------------------------------------------------------------ */

struct accept_case {
    const char *offer;
    int rv;
    bool accepted;
    const char *resp;
};

static void run_accept(const struct up_pmd_cfg *cfg, const struct accept_case *c, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        bool acc = !c[i].accepted;
        struct up_pmd_params p;
        char resp[UP_PMD_MAX_HEADER];
        const char *why = "unset";
        int rv = up_pmd_server_accept(cfg, c[i].offer, strlen(c[i].offer), &acc, &p, resp,
                                      sizeof(resp), &why);
        if (rv != c[i].rv || acc != c[i].accepted ||
            (c[i].accepted && strcmp(resp, c[i].resp) != 0)) {
            print_error("offer [%s]: rv %d acc %d resp [%s]\n", c[i].offer, rv, acc,
                        acc ? resp : "");
        }
        assert_int_equal(rv, c[i].rv);
        assert_int_equal(acc, c[i].accepted);
        if (rv == UP_EPROTO) {
            assert_non_null(why);
        }
        if (c[i].accepted) {
            assert_string_equal(resp, c[i].resp);
        }
    }
}

static void test_pmd_server_accept(void **state)
{
    (void)state;
    static const struct accept_case cases[] = {
        /* RFC 7692 §5 and §7.1 examples */
        {"permessage-deflate", UP_OK, true, "permessage-deflate"},
        {"permessage-deflate; client_max_window_bits", UP_OK, true, "permessage-deflate"},
        {"permessage-deflate; client_max_window_bits; server_max_window_bits=10, "
         "permessage-deflate; client_max_window_bits",
         UP_OK, true, "permessage-deflate; server_max_window_bits=10"},
        {"permessage-deflate; server_max_window_bits=10, permessage-deflate", UP_OK, true,
         "permessage-deflate; server_max_window_bits=10"},
        {"permessage-deflate; server_no_context_takeover; client_no_context_takeover", UP_OK, true,
         "permessage-deflate; server_no_context_takeover; client_no_context_takeover"},
        {"permessage-deflate;server_max_window_bits=8", UP_OK, true,
         "permessage-deflate; server_max_window_bits=8"},
        {"permessage-deflate; server_max_window_bits=15", UP_OK, true,
         "permessage-deflate; server_max_window_bits=15"},
        /* quoted values (RFC 6455 §9.1) */
        {"permessage-deflate; server_max_window_bits=\"10\"", UP_OK, true,
         "permessage-deflate; server_max_window_bits=10"},
        {"permessage-deflate; server_max_window_bits=\"1\\2\"", UP_OK, true,
         "permessage-deflate; server_max_window_bits=12"},
        {"permessage-deflate; server_max_window_bits=\" 10\"", UP_OK, false, NULL},
        {"permessage-deflate; server_max_window_bits=\"\"", UP_OK, false, NULL},
        /* declined offers: bad values, duplicates, unknown parameters */
        {"permessage-deflate; server_max_window_bits=7", UP_OK, false, NULL},
        {"permessage-deflate; server_max_window_bits=16", UP_OK, false, NULL},
        {"permessage-deflate; server_max_window_bits=08", UP_OK, false, NULL},
        {"permessage-deflate; server_max_window_bits=100", UP_OK, false, NULL},
        {"permessage-deflate; server_max_window_bits=1a", UP_OK, false, NULL},
        {"permessage-deflate; server_max_window_bits", UP_OK, false, NULL},
        {"permessage-deflate; client_max_window_bits=0", UP_OK, false, NULL},
        {"permessage-deflate; client_max_window_bits=9; client_max_window_bits", UP_OK, false,
         NULL},
        {"permessage-deflate; server_no_context_takeover; server_no_context_takeover", UP_OK, false,
         NULL},
        {"permessage-deflate; server_no_context_takeover=1", UP_OK, false, NULL},
        {"permessage-deflate; client_no_context_takeover=\"x\"", UP_OK, false, NULL},
        {"permessage-deflate; foo", UP_OK, false, NULL},
        {"permessage-deflate; foo=1", UP_OK, false, NULL},
        /* a declined offer falls through to the next one */
        {"permessage-deflate; foo, permessage-deflate; client_max_window_bits=9", UP_OK, true,
         "permessage-deflate"},
        {"permessage-deflate; server_max_window_bits=7, permessage-deflate; "
         "server_no_context_takeover",
         UP_OK, true, "permessage-deflate; server_no_context_takeover"},
        /* other extensions are skipped; names are case-insensitive; empty elements */
        {"x-webkit-deflate-frame; no_context_takeover, permessage-deflate", UP_OK, true,
         "permessage-deflate"},
        {"foo; bar=\"a,b;c\", Permessage-Deflate", UP_OK, true, "permessage-deflate"},
        {" , ,permessage-deflate ; server_max_window_bits = 9 ,", UP_OK, true,
         "permessage-deflate; server_max_window_bits=9"},
        {"", UP_OK, false, NULL},
        {"foo", UP_OK, false, NULL},
        {"permessage-deflate-x", UP_OK, false, NULL},
        /* syntax errors */
        {"permessage-deflate;", UP_EPROTO, false, NULL},
        {"permessage-deflate; =3", UP_EPROTO, false, NULL},
        {"permessage-deflate; server_max_window_bits=", UP_EPROTO, false, NULL},
        {"permessage-deflate; server_max_window_bits=\"10", UP_EPROTO, false, NULL},
        {"permessage-deflate server_no_context_takeover", UP_EPROTO, false, NULL},
        {"permessage-deflate, @", UP_EPROTO, false, NULL},
        {"permessage-deflate; a=\"\x01\"", UP_EPROTO, false, NULL},
    };
    struct up_pmd_cfg cfg = {0};
    run_accept(&cfg, cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_pmd_server_accept_cfg(void **state)
{
    (void)state;
    /* Our preferences: smaller windows, no context takeover on both sides. */
    static const struct accept_case cases[] = {
        {"permessage-deflate", UP_OK, true,
         "permessage-deflate; server_no_context_takeover; client_no_context_takeover"},
        {"permessage-deflate; server_max_window_bits=12; client_max_window_bits", UP_OK, true,
         "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
         "server_max_window_bits=10; client_max_window_bits=11"},
        {"permessage-deflate; server_max_window_bits=9; client_max_window_bits=9", UP_OK, true,
         "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
         "server_max_window_bits=9"},
    };
    struct up_pmd_cfg cfg = {.max_window_bits = 10,
                             .peer_max_window_bits = 11,
                             .no_context_takeover = true,
                             .peer_no_context_takeover = true};
    run_accept(&cfg, cases, sizeof(cases) / sizeof(cases[0]));

    bool acc;
    struct up_pmd_params p;
    char resp[UP_PMD_MAX_HEADER];
    const char *why;
    const char *o = "permessage-deflate; server_max_window_bits=12; client_max_window_bits";
    assert_int_equal(up_pmd_server_accept(&cfg, o, strlen(o), &acc, &p, resp, sizeof(resp), &why),
                     UP_OK);
    assert_true(p.server_no_context_takeover && p.client_no_context_takeover);
    assert_int_equal(p.server_max_window_bits, 10);
    assert_int_equal(p.client_max_window_bits, 11);
    /* Misuse */
    assert_int_equal(up_pmd_server_accept(&cfg, o, strlen(o), &acc, &p, resp, 10, &why), UP_EINVAL);
    cfg.max_window_bits = 7;
    assert_int_equal(up_pmd_server_accept(&cfg, o, strlen(o), &acc, &p, resp, sizeof(resp), &why),
                     UP_EINVAL);
}

static void test_pmd_server_accept_h1(void **state)
{
    (void)state;
    static const char req[] = "GET /ws HTTP/1.1\r\nHost: x\r\n"
                              "Sec-WebSocket-Extensions: foo, permessage-deflate; bad\r\n"
                              "X: y\r\n"
                              "Sec-WebSocket-Extensions: permessage-deflate; "
                              "client_max_window_bits\r\n\r\n";
    struct up_h1_msg m;
    struct up_h1_header hs[16];
    size_t scan = 0;
    assert_true(up_h1_parse_request((const uint8_t *)req, sizeof(req) - 1, &scan, &m, hs, 16,
                                    4096) == UP_OK);
    struct up_pmd_cfg cfg = {.peer_max_window_bits = 10};
    bool acc;
    struct up_pmd_params p;
    char resp[UP_PMD_MAX_HEADER];
    const char *why;
    assert_int_equal(up_pmd_server_accept_h1(&cfg, &m, &acc, &p, resp, sizeof(resp), &why), UP_OK);
    assert_true(acc);
    assert_string_equal(resp, "permessage-deflate; client_max_window_bits=10");
    assert_int_equal(p.client_max_window_bits, 10);
    /* No header at all */
    m.n_headers = 1;
    assert_int_equal(up_pmd_server_accept_h1(&cfg, &m, &acc, &p, resp, sizeof(resp), &why), UP_OK);
    assert_false(acc);
}

/* ---- negotiation: client ------------------------------------------------------------------ */

static void test_pmd_client_offer(void **state)
{
    (void)state;
    char out[UP_PMD_MAX_HEADER];
    struct up_pmd_cfg cfg = {0};
    assert_int_equal(up_pmd_client_offer(&cfg, out, sizeof(out)), UP_OK);
    assert_string_equal(out, "permessage-deflate; client_max_window_bits");
    cfg = (struct up_pmd_cfg){
        .peer_max_window_bits = 10, .no_context_takeover = true, .peer_no_context_takeover = true};
    assert_int_equal(up_pmd_client_offer(&cfg, out, sizeof(out)), UP_OK);
    assert_string_equal(out, "permessage-deflate; client_no_context_takeover; "
                             "server_no_context_takeover; server_max_window_bits=10; "
                             "client_max_window_bits");
    assert_int_equal(up_pmd_client_offer(&cfg, out, 8), UP_EINVAL);
    /* Our own server accepts our own offer. */
    bool acc;
    struct up_pmd_params p;
    char resp[UP_PMD_MAX_HEADER];
    const char *why;
    struct up_pmd_cfg scfg = {0};
    assert_int_equal(
        up_pmd_server_accept(&scfg, out, strlen(out), &acc, &p, resp, sizeof(resp), &why), UP_OK);
    assert_true(acc);
    assert_int_equal(up_pmd_client_check(&cfg, resp, strlen(resp), &p, &why), UP_OK);
    assert_int_equal(p.server_max_window_bits, 10);
    assert_true(p.server_no_context_takeover && p.client_no_context_takeover);
}

struct check_case {
    const char *resp;
    int rv;
};

static void test_pmd_client_check(void **state)
{
    (void)state;
    static const struct check_case plain[] = {
        {"permessage-deflate", UP_OK},
        {"permessage-deflate; server_no_context_takeover", UP_OK},
        {"permessage-deflate; client_no_context_takeover", UP_OK},
        {"permessage-deflate; server_max_window_bits=10", UP_OK}, /* server may announce */
        {"permessage-deflate; client_max_window_bits=8", UP_OK},
        {"permessage-deflate; client_max_window_bits=\"9\"", UP_OK},
        {"permessage-deflate; client_max_window_bits", UP_EPROTO}, /* needs a value */
        {"permessage-deflate; client_max_window_bits=16", UP_EPROTO},
        {"permessage-deflate; server_max_window_bits=7", UP_EPROTO},
        {"permessage-deflate; foo", UP_EPROTO},
        {"permessage-deflate; server_no_context_takeover; server_no_context_takeover", UP_EPROTO},
        {"permessage-deflate, permessage-deflate", UP_EPROTO},
        {"permessage-deflate, x-webkit-deflate-frame", UP_EPROTO},
        {"x-webkit-deflate-frame", UP_EPROTO},
        {"permessage-deflate;", UP_EPROTO},
        {"", UP_EPROTO},
    };
    struct up_pmd_cfg cfg = {0};
    for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++) {
        struct up_pmd_params p;
        const char *why = NULL;
        int rv = up_pmd_client_check(&cfg, plain[i].resp, strlen(plain[i].resp), &p, &why);
        if (rv != plain[i].rv) {
            print_error("response [%s]: rv %d\n", plain[i].resp, rv);
        }
        assert_int_equal(rv, plain[i].rv);
        if (rv < 0) {
            assert_non_null(why);
        }
    }
    /* We asked for server_max_window_bits=10 and server_no_context_takeover. */
    static const struct check_case asked[] = {
        {"permessage-deflate; server_max_window_bits=10; server_no_context_takeover", UP_OK},
        {"permessage-deflate; server_max_window_bits=9; server_no_context_takeover", UP_OK},
        {"permessage-deflate; server_max_window_bits=11; server_no_context_takeover", UP_EPROTO},
        {"permessage-deflate; server_no_context_takeover", UP_EPROTO},
        {"permessage-deflate; server_max_window_bits=10", UP_EPROTO},
    };
    cfg = (struct up_pmd_cfg){.peer_max_window_bits = 10, .peer_no_context_takeover = true};
    for (size_t i = 0; i < sizeof(asked) / sizeof(asked[0]); i++) {
        struct up_pmd_params p;
        const char *why = NULL;
        int rv = up_pmd_client_check(&cfg, asked[i].resp, strlen(asked[i].resp), &p, &why);
        if (rv != asked[i].rv) {
            print_error("response [%s]: rv %d\n", asked[i].resp, rv);
        }
        assert_int_equal(rv, asked[i].rv);
    }
    struct up_pmd_params p;
    const char *why;
    cfg = (struct up_pmd_cfg){0};
    const char *r = "permessage-deflate; client_max_window_bits=9; client_no_context_takeover";
    assert_int_equal(up_pmd_client_check(&cfg, r, strlen(r), &p, &why), UP_OK);
    assert_int_equal(p.client_max_window_bits, 9);
    assert_int_equal(p.server_max_window_bits, 15);
    assert_true(p.client_no_context_takeover);
    assert_false(p.server_no_context_takeover);
    /* The client's compressor follows the server's choice. */
    struct up_pmd z;
    pmd_open(&z, &cfg, &p, UP_WS_CLIENT);
    assert_int_equal(z.tx_bits, 9);
    assert_true(z.tx_no_ctx);
    assert_int_equal(z.rx_bits, 15);
    assert_false(z.rx_no_ctx);
    up_pmd_fini(&z);
}

static void test_pmd_client_check_h1(void **state)
{
    (void)state;
    static const char with[] = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                               "Connection: Upgrade\r\n"
                               "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                               "Sec-WebSocket-Extensions: permessage-deflate; "
                               "server_no_context_takeover\r\n\r\n";
    struct up_h1_msg m;
    struct up_h1_header hs[16];
    size_t scan = 0;
    assert_true(up_h1_parse_response((const uint8_t *)with, sizeof(with) - 1, &scan, &m, hs, 16,
                                     4096) == UP_OK);
    const char *why;
    /* RFC 6455 §1.3 key; the plain check refuses extensions, the _ext one leaves them to us */
    assert_int_equal(up_ws_check_response(&m, "dGhlIHNhbXBsZSBub25jZQ==", &why), UP_EPROTO);
    assert_int_equal(up_ws_check_response_ext(&m, "dGhlIHNhbXBsZSBub25jZQ==", true, &why), UP_OK);
    assert_int_equal(up_ws_check_response_ext(&m, "dGhlIHNhbXBsZSBub25jZQ==", false, &why),
                     UP_EPROTO);
    struct up_pmd_cfg cfg = {0};
    struct up_pmd_params p;
    bool acc = false;
    assert_int_equal(up_pmd_client_check_h1(&cfg, &m, &acc, &p, &why), UP_OK);
    assert_true(acc);
    assert_true(p.server_no_context_takeover);
    /* Declined: no header. */
    m.n_headers = 3;
    assert_int_equal(up_pmd_client_check_h1(&cfg, &m, &acc, &p, &why), UP_OK);
    assert_false(acc);
    /* pmd listed on two lines is listed twice. */
    hs[2] = hs[3];
    m.n_headers = 4;
    assert_int_equal(up_pmd_client_check_h1(&cfg, &m, &acc, &p, &why), UP_EPROTO);
    assert_false(acc);
}

/* ---- end to end through the ws parser ------------------------------------------------------ */

struct e2e_ctx {
    enum up_ws_role role;
    bool pmd;
    size_t inflate_cap;
};

/* feed_run_fn: parse with up_ws_parse, inflate compressed messages, trace whole messages. */
static void e2e_run(void *ud, const uint8_t *in, size_t len, const size_t *cuts, size_t ncuts,
                    char *trace, size_t cap)
{
    const struct e2e_ctx *ctx = ud;
    struct tr t = {.s = trace, .cap = cap, .len = 0};
    struct up_ws_cfg wcfg = {.role = ctx->role,
                             .max_frame_bytes = 1 << 20,
                             .max_message_bytes = 1 << 20,
                             .validate_utf8 = true,
                             .permessage_deflate = ctx->pmd};
    struct up_ws_parser p;
    up_ws_parser_init(&p, &wcfg);
    struct up_pmd_cfg zcfg = {.max_message_bytes = 4096};
    struct up_pmd z;
    pmd_open(&z, &zcfg, &default_params, ctx->role);
    uint8_t *copy = up_malloc(len ? len : 1);
    memcpy(copy, in, len);
    uint8_t msg[8192];
    size_t msg_len = 0;
    uint8_t buf[4096];
    trace[0] = '\0';
    size_t start = 0;
    bool failed = false;
    for (size_t c = 0; c <= ncuts && !failed; c++) {
        size_t end = c < ncuts ? cuts[c] : len, off = start;
        for (;;) {
            struct up_ws_ev ev;
            size_t used;
            int rv = up_ws_parse(&p, copy + off, end - off, &used, &ev);
            off += used;
            if (rv < 0) {
                tr_add(&t, "ERR:%u:%s ", p.close_code, p.err_reason);
                failed = true;
                break;
            }
            if (ev.kind == UP_WS_EV_NONE) {
                break;
            }
            int zrv = UP_OK;
            if (ev.kind == UP_WS_EV_BEGIN && ev.first) {
                msg_len = 0;
                if (ev.compressed) {
                    zrv = up_pmd_inflate_begin(&z, ev.opcode == UP_WS_OP_TEXT);
                }
            } else if (ev.kind == UP_WS_EV_DATA || (ev.kind == UP_WS_EV_END && ev.fin)) {
                const uint8_t *d = ev.kind == UP_WS_EV_DATA ? ev.data : NULL;
                size_t n = ev.kind == UP_WS_EV_DATA ? ev.len : 0;
                bool fin = ev.kind == UP_WS_EV_END;
                if (ev.kind == UP_WS_EV_DATA && !p.msg_compressed) {
                    memcpy(msg + msg_len, d, n);
                    msg_len += n;
                } else if (ev.compressed || p.msg_compressed) {
                    do {
                        size_t u, got;
                        zrv = up_pmd_inflate(&z, d, n, fin, buf, ctx->inflate_cap, &u, &got);
                        assert_true(msg_len + got <= sizeof(msg));
                        memcpy(msg + msg_len, buf, got);
                        msg_len += got;
                        d += u;
                        n -= u;
                    } while (zrv == UP_EAGAIN);
                }
            }
            if (zrv < 0) {
                tr_add(&t, "ZERR:%u:%s ", z.close_code, z.err_reason);
                failed = true;
                break;
            }
            switch (ev.kind) {
            case UP_WS_EV_BEGIN:
                tr_add(&t, "B%s%s ", ev.first ? "1" : "", ev.compressed ? "z" : "");
                break;
            case UP_WS_EV_END:
                if (ev.fin) {
                    tr_add(&t, "M:%c%s:'%.*s' ", ev.opcode == UP_WS_OP_TEXT ? 't' : 'b',
                           ev.compressed ? "z" : "", (int)msg_len, (const char *)msg);
                }
                break;
            case UP_WS_EV_PING:
                tr_add(&t, "PING:'%.*s' ", (int)ev.len, (const char *)ev.data);
                break;
            case UP_WS_EV_CLOSE:
                tr_add(&t, "CLOSE:%u ", ev.close_code);
                break;
            default:
                break;
            }
        }
        start = end;
    }
    up_free(copy);
    up_pmd_fini(&z);
}

static void test_pmd_e2e_rfc_frames(void **state)
{
    (void)state;
    /* Server → client (unmasked), RFC 7692 §7.2.3: "Hello" in two fragments with a ping
     * between them, "Hello" again with context takeover, an uncompressed text message, the
     * BFINAL form, an empty compressed binary message, then a close. */
    static const char *frames = "41 03 f2 48 cd"
                                "89 02 68 69"
                                "80 04 c9 c9 07 00"
                                "c1 05 f2 00 11 00 00"
                                "81 02 6f 6b"
                                "c1 08 f3 48 cd c9 c9 07 00 00"
                                "c2 01 00"
                                "88 02 03 e8";
    uint8_t in[128];
    size_t len = hex(frames, in, sizeof(in));
    struct e2e_ctx ctx = {.role = UP_WS_CLIENT, .pmd = true, .inflate_cap = 2};
    assert_int_equal(feed_all_splits(e2e_run, &ctx, in, len,
                                     "B1z PING:'hi' Bz M:tz:'Hello' B1z M:tz:'Hello' B1 M:t:'ok' "
                                     "B1z M:tz:'Hello' B1z M:bz:'' CLOSE:1000 "),
                     0);
    /* Without the flag the same bytes fail at the first RSV1. */
    ctx.pmd = false;
    assert_int_equal(feed_all_splits(e2e_run, &ctx, in, len, "ERR:1002:ws: reserved bits set "), 0);
}

/* Build a masked client → server stream from (opcode, fin, rsv, payload) frames. */
static size_t build(uint8_t *dst, size_t cap, const uint8_t *ops, const bool *fins,
                    const uint8_t *rsvs, const uint8_t *const *pl, const size_t *pl_len, size_t n)
{
    static const uint8_t mask[4] = {0x37, 0xfa, 0x21, 0x3d};
    struct up_buf b;
    up_buf_init(&b);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(
            up_ws_write_frame_rsv(&b, 1 << 20, ops[i], fins[i], rsvs[i], pl[i], pl_len[i], mask),
            UP_OK);
    }
    size_t len = up_buf_len(&b);
    assert_true(len <= cap);
    memcpy(dst, up_buf_rptr(&b), len);
    up_buf_fini(&b);
    return len;
}

static void test_pmd_e2e_masked_roundtrip(void **state)
{
    (void)state;
    /* Client side: compress a text message in two streamed chunks, one frame per chunk, and a
     * binary message whole; the server parses and inflates under every split. */
    struct up_pmd_cfg cfg = {0};
    struct up_pmd tx;
    pmd_open(&tx, &cfg, &default_params, UP_WS_CLIENT);
    struct up_buf a, b2, c;
    up_buf_init(&a);
    up_buf_init(&b2);
    up_buf_init(&c);
    const char *t1 = "caf\xc3\xa9 caf\xc3", *t2 = "\xa9 caf\xc3\xa9";
    assert_int_equal(up_pmd_deflate(&tx, (const uint8_t *)t1, strlen(t1), false, &a, 4096), UP_OK);
    assert_int_equal(up_pmd_deflate(&tx, (const uint8_t *)t2, strlen(t2), true, &b2, 4096), UP_OK);
    assert_int_equal(up_pmd_deflate(&tx, (const uint8_t *)"bin", 3, true, &c, 4096), UP_OK);
    const uint8_t ops[] = {UP_WS_OP_TEXT, UP_WS_OP_PING, UP_WS_OP_CONT, UP_WS_OP_BINARY};
    const bool fins[] = {false, true, true, true};
    const uint8_t rsvs[] = {UP_WS_RSV1, 0, 0, UP_WS_RSV1};
    const uint8_t *pl[] = {up_buf_rptr(&a), (const uint8_t *)"p", up_buf_rptr(&b2),
                           up_buf_rptr(&c)};
    const size_t pl_len[] = {up_buf_len(&a), 1, up_buf_len(&b2), up_buf_len(&c)};
    uint8_t in[256];
    size_t len = build(in, sizeof(in), ops, fins, rsvs, pl, pl_len, 4);
    struct e2e_ctx ctx = {.role = UP_WS_SERVER, .pmd = true, .inflate_cap = 3};
    assert_int_equal(feed_all_splits(e2e_run, &ctx, in, len,
                                     "B1z PING:'p' Bz M:tz:'caf\xc3\xa9 caf\xc3\xa9 caf\xc3\xa9' "
                                     "B1z M:bz:'bin' "),
                     0);
    up_buf_fini(&a);
    up_buf_fini(&b2);
    up_buf_fini(&c);
    up_pmd_fini(&tx);
}

static void test_pmd_e2e_errors(void **state)
{
    (void)state;
    struct e2e_ctx ctx = {.role = UP_WS_CLIENT, .pmd = true, .inflate_cap = 64};
    static const struct {
        const char *hex;
        const char *want;
    } cases[] = {
        /* RFC 7692 §6.1: RSV1 on a continuation frame */
        {"41 03 f2 48 cd c0 04 c9 c9 07 00", "B1z ERR:1002:ws: RSV1 on a continuation frame "},
        {"01 01 61 c0 01 62", "B1 ERR:1002:ws: RSV1 on a continuation frame "},
        /* RFC 7692 §6: control frames are never compressed */
        {"c9 00", "ERR:1002:ws: RSV1 on a control frame "},
        {"c8 02 03 e8", "ERR:1002:ws: RSV1 on a control frame "},
        /* RSV2/RSV3 stay reserved */
        {"a1 00", "ERR:1002:ws: reserved bits set "},
        {"91 00", "ERR:1002:ws: reserved bits set "},
        {"e1 00", "ERR:1002:ws: reserved bits set "},
        /* an unknown opcode stays unknown with RSV1 */
        {"c3 00", "ERR:1002:ws: unknown opcode "},
        /* corrupt deflate data: the inflater fails, 1002 */
        {"c1 03 ff ff ff", "B1z ZERR:1002:pmd: corrupt deflate data "},
        /* compressed invalid UTF-8 (c0 af as a stored block): only the inflater sees it */
        {"c1 08 00 02 00 fd ff c0 af 00", "B1z ZERR:1007:pmd: invalid UTF-8 in a text message "},
        {"c2 08 00 02 00 fd ff c0 af 00", "B1z M:bz:'\xc0\xaf' "},
        /* a stored block without the final empty block (RFC 7692 §7.2.1): truncated */
        {"c2 07 00 02 00 fd ff c0 af",
         "B1z ZERR:1002:pmd: message does not end on a DEFLATE block boundary "},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t in[64];
        size_t len = hex(cases[i].hex, in, sizeof(in));
        assert_int_equal(feed_all_splits(e2e_run, &ctx, in, len, cases[i].want), 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pmd_rfc_hello),
        cmocka_unit_test(test_pmd_rfc_no_context_takeover),
        cmocka_unit_test(test_pmd_rfc_fragmented),
        cmocka_unit_test(test_pmd_rfc_stored_bfinal_two_blocks),
        cmocka_unit_test(test_pmd_empty_message),
        cmocka_unit_test(test_pmd_roundtrip),
        cmocka_unit_test(test_pmd_window_bits_8),
        cmocka_unit_test(test_pmd_zip_bomb_limit),
        cmocka_unit_test(test_pmd_output_per_call_bound),
        cmocka_unit_test(test_pmd_corrupt),
        cmocka_unit_test(test_pmd_utf8),
        cmocka_unit_test(test_pmd_memory_budget),
        cmocka_unit_test(test_pmd_deflate_out_limit),
        cmocka_unit_test(test_pmd_server_accept),
        cmocka_unit_test(test_pmd_server_accept_cfg),
        cmocka_unit_test(test_pmd_server_accept_h1),
        cmocka_unit_test(test_pmd_client_offer),
        cmocka_unit_test(test_pmd_client_check),
        cmocka_unit_test(test_pmd_client_check_h1),
        cmocka_unit_test(test_pmd_e2e_rfc_frames),
        cmocka_unit_test(test_pmd_e2e_masked_roundtrip),
        cmocka_unit_test(test_pmd_e2e_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
