/* libFuzzer target for the HTTP/1.1 body framer (src/proto/h1body.c), STYLE §14.
 *
 * Input: three control bytes, then the bytes that follow a head on the wire. Control byte 0:
 * bits 0-1 pick the kind (NONE, LENGTH, CHUNKED, CLOSE), bit 2 tight limits, bits 3-7 a split
 * point as a fraction of the input. Bytes 1 and 2: the Content-Length (byte 2 = 0xff means
 * 2^64 - 1), or with tight limits the chunk-line and trailer-section limits. For each input:
 *   1. frame it whole;
 *   2. frame it again in two chunks cut at the split point, and then one byte at a time: the
 *      answer, the total of *used and done must be identical, and nothing may be consumed
 *      once the body is done or failed;
 *   3. check what each kind promises (NONE: 0 and done; LENGTH: min(length, len); CLOSE:
 *      everything, never done; an incomplete body consumes all of its input);
 *   4. round trip: chunk-encode the input bytes with valid sizes (either case, leading zeros),
 *      extensions and trailers, append a next request, and require the framer to accept it
 *      whole and byte by byte and stop exactly at the end of the encoded body.
 * Every piece is fed from a copy that ends where its allocation ends, so that ASan sees any
 * read past it. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "proto/h1body.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_h1body: check failed: %s (line %d)\n", #c, __LINE__);            \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

struct cfg {
    enum up_h1b_kind kind;
    uint64_t length;
    bool limits;
    size_t max_line;
    size_t max_trailers;
};

struct result {
    int rv;
    size_t used; /* total over the calls */
    bool done;
    const char *reason;
};

static void start(struct up_h1body *b, const struct cfg *c)
{
    up_h1body_init(b, c->kind, c->length);
    if (c->limits) {
        up_h1body_set_limits(b, c->max_line, c->max_trailers);
    }
}

/* Feed in[0..len) in pieces of at most step bytes (the first piece is first bytes long when
 * first > 0), and keep feeding after the body ended or failed. */
static struct result run(const struct cfg *c, const uint8_t *in, size_t len, size_t first,
                         size_t step)
{
    struct up_h1body b;
    start(&b, c);
    struct result r = {.rv = UP_OK};
    bool stopped = false;
    size_t off = 0;
    /* Each piece is copied to the end of one allocation, so a read past it is a read past
     * the allocation, without an allocation per byte. */
    size_t cap = first > step ? first : step;
    uint8_t *buf = up_malloc(cap);
    CHECK(buf != NULL);
    do {
        size_t n = len - off;
        size_t want = off == 0 && first > 0 ? first : step;
        if (n > want) {
            n = want;
        }
        uint8_t *piece = buf + cap - n;
        memcpy(piece, in + off, n);
        size_t used = SIZE_MAX;
        bool done = false;
        int rv = up_h1body_feed(&b, piece, n, &used, &done);
        CHECK(used <= n);
        CHECK(rv == UP_OK || rv == UP_EPROTO || rv == UP_ELIMIT);
        if (!stopped) {
            r.used += used;
            r.rv = rv;
            r.done = done;
            stopped = rv < 0 || done;
            if (!stopped) {
                CHECK(used == n);
            }
            if (rv < 0) {
                CHECK(b.err_reason != NULL && b.state == UP_H1B_ST_ERROR);
                r.reason = b.err_reason;
            } else {
                CHECK(b.err_reason == NULL);
            }
        } else {
            CHECK(rv == r.rv && used == 0 && done == r.done);
        }
        off += n;
    } while (off < len);
    up_free(buf);
    return r;
}

static void check_same(const struct result *a, const struct result *b)
{
    CHECK(a->rv == b->rv);
    CHECK(a->used == b->used);
    CHECK(a->done == b->done);
    CHECK((a->reason == NULL) == (b->reason == NULL));
    CHECK(a->reason == NULL || strcmp(a->reason, b->reason) == 0);
}

static void check_kind(const struct cfg *c, const uint8_t *in, size_t len, const struct result *r)
{
    switch (c->kind) {
    case UP_H1B_NONE:
        CHECK(r->rv == UP_OK && r->used == 0 && r->done);
        break;
    case UP_H1B_LENGTH:
        CHECK(r->rv == UP_OK);
        CHECK(r->used == (c->length < len ? c->length : len));
        CHECK(r->done == (c->length <= len));
        break;
    case UP_H1B_CLOSE:
        CHECK(r->rv == UP_OK && r->used == len && !r->done);
        break;
    case UP_H1B_CHUNKED:
        if (r->rv == UP_OK && !r->done) {
            CHECK(r->used == len);
        }
        if (r->done) {
            /* The final CRLF, right after the last-chunk line or a trailer line. */
            CHECK(r->used >= 5 && memcmp(in + r->used - 2, "\r\n", 2) == 0);
        }
        if (r->rv == UP_ELIMIT) {
            CHECK(c->limits || len > UP_H1B_MAX_CHUNK_LINE);
        }
        break;
    }
}

/* ---- round trip -------------------------------------------------------------------------- */

static const char *const exts[] = {
    "",
    ";a",
    ";name=value",
    " ;a=b",
    "\t; x \t=\t\"q \\\" \\\\ ;=,\"",
    ";a=\"\";b;c=!#$%&'*+-.^_`|~",
    ";x=\"\xc3\xa9\\\xff\"",
};

static const char *const trailers[] = {
    "",
    "A: b\r\n",
    "Expires: Wed, 21 Oct 2015 07:28:00 GMT\r\nX-Empty:\r\nx:\t v \t\r\n",
    "!#$%&'*+-.^_`|~09:caf\xc3\xa9 \xff\r\n",
};

struct out {
    uint8_t *p;
    size_t len, cap;
};

static void put(struct out *o, const void *p, size_t n)
{
    CHECK(o->len + n <= o->cap);
    memcpy(o->p + o->len, p, n);
    o->len += n;
}

static void put_str(struct out *o, const char *s)
{
    put(o, s, strlen(s));
}

/* A chunk-size line for size, in a style chosen by sel: case and leading zeros (the total
 * stays within 16 digits). */
static void put_size(struct out *o, uint64_t size, uint8_t sel)
{
    const char *digits = (sel & 1) ? "0123456789ABCDEF" : "0123456789abcdef";
    char hex[16];
    size_t n = 0;
    do {
        hex[n++] = digits[size & 15];
        size >>= 4;
    } while (size > 0);
    size_t zeros = (sel >> 1) % 4;
    if (n + zeros > 16) {
        zeros = 16 - n;
    }
    for (size_t i = 0; i < zeros; i++) {
        put_str(o, "0");
    }
    while (n > 0) {
        put(o, &hex[--n], 1);
    }
    put_str(o, exts[(sel >> 3) % (sizeof exts / sizeof exts[0])]);
    put_str(o, "\r\n");
}

static void round_trip(const uint8_t *data, size_t len)
{
    /* Worst case per chunk: 16 digits, the longest extension, CRLF, one data byte, CRLF. */
    size_t cap = len * 64 + 256;
    struct out o = {.p = up_malloc(cap), .cap = cap};
    CHECK(o.p != NULL);
    size_t off = 0;
    uint8_t sel = 0;
    while (off < len) {
        size_t n = 1 + data[off] % 23;
        if (n > len - off) {
            n = len - off;
        }
        sel = (uint8_t)(sel * 31 + data[off]);
        put_size(&o, n, sel);
        put(&o, data + off, n);
        put_str(&o, "\r\n");
        off += n;
    }
    sel = (uint8_t)(sel * 31 + len);
    put_size(&o, 0, sel);
    put_str(&o, trailers[(sel >> 5) % (sizeof trailers / sizeof trailers[0])]);
    put_str(&o, "\r\n");
    size_t body_len = o.len;
    put_str(&o, "GET / HTTP/1.1\r\n\r\n");

    const struct cfg c = {.kind = UP_H1B_CHUNKED};
    struct result whole = run(&c, o.p, o.len, 0, o.len);
    CHECK(whole.rv == UP_OK && whole.done && whole.used == body_len);
    /* Byte at a time only for short payloads: the cost is per byte, and long payloads repeat
     * the same chunk shapes. */
    if (len <= 256) {
        struct result bytes = run(&c, o.p, o.len, 0, 1);
        check_same(&whole, &bytes);
    }
    up_free(o.p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3) {
        return 0;
    }
    uint8_t c0 = data[0], c1 = data[1], c2 = data[2];
    const uint8_t *in = data + 3;
    size_t len = size - 3;
    struct cfg c = {.kind = (enum up_h1b_kind)(c0 & 3)};
    if (c0 & 4) {
        c.limits = true;
        c.max_line = c1 % 32;
        c.max_trailers = c2 % 64;
        c.length = c1;
    } else {
        c.length = c2 == 0xff ? UINT64_MAX : ((uint64_t)c2 << 8 | c1);
    }

    /* (1) whole, (2) split and one byte at a time. */
    struct result whole = run(&c, in, len, 0, len ? len : 1);
    check_kind(&c, in, len, &whole);
    size_t cut = len * (size_t)(c0 >> 3) / 31;
    struct result split = run(&c, in, len, cut, len ? len : 1);
    check_same(&whole, &split);
    struct result bytes = run(&c, in, len, 0, 1);
    check_same(&whole, &bytes);

    /* (4) round trip of the input as a chunked payload (bounded to keep runs fast). */
    round_trip(in, len < 2048 ? len : 2048);
    return 0;
}
