/* libFuzzer target for the HTTP/1.1 head parser (src/proto/h1.c), STYLE §14:
 * (1) the whole input as a request and as a response, under the default limits and under
 *     tight ones; (2) the same input arriving one byte more per call with the scan hint,
 *     which must stop at the same answer as a fresh parse of the final buffer; (3) a hint
 *     the caller got wrong, which may change the answer but never the memory safety.
 * Every UP_OK is checked for head_len <= len and for slices inside the head. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "proto/h1.h"

#define FUZZ_MAX_HEADERS UP_H1_DEFAULT_MAX_HEADERS

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_h1: check failed: %s (line %d)\n", #c, __LINE__);                \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

struct limits {
    size_t max_headers;
    size_t max_head;
};

static int parse(bool request, const uint8_t *buf, size_t len, size_t *scan, struct up_h1_msg *m,
                 struct up_h1_header *h, const struct limits *lim)
{
    return request ? up_h1_parse_request(buf, len, scan, m, h, lim->max_headers, lim->max_head)
                   : up_h1_parse_response(buf, len, scan, m, h, lim->max_headers, lim->max_head);
}

static bool in_head(const uint8_t *buf, size_t head_len, const char *p, size_t n)
{
    uintptr_t lo = (uintptr_t)buf, at = (uintptr_t)p;
    return p && at >= lo && n <= head_len && at - lo <= head_len - n;
}

static void check_result(bool request, const uint8_t *buf, size_t len, int rv,
                         const struct up_h1_msg *m, const struct limits *lim)
{
    switch (rv) {
    case UP_OK:
        break;
    case UP_EAGAIN:
        CHECK(len < lim->max_head);
        return;
    case UP_ELIMIT:
        CHECK(m->err_status == 431 && m->err_reason);
        return;
    case UP_EPROTO:
        CHECK((m->err_status == 400 || m->err_status == 505) && m->err_reason);
        return;
    default:
        CHECK(!"unexpected return value");
    }
    size_t hl = m->head_len;
    CHECK(hl >= 4 && hl <= len && hl <= lim->max_head);
    CHECK(memcmp(buf + hl - 4, "\r\n\r\n", 4) == 0);
    CHECK(m->n_headers <= lim->max_headers);
    CHECK(m->minor_version == 0 || m->minor_version == 1);
    CHECK(m->content_length >= -1);
    CHECK(!(m->chunked && m->content_length >= 0));
    CHECK(m->err_reason == NULL);
    if (request) {
        CHECK(m->method_len > 0 && in_head(buf, hl, m->method, m->method_len));
        CHECK(m->target_len > 0 && in_head(buf, hl, m->target, m->target_len));
        CHECK(m->status == 0);
    } else {
        CHECK(m->status >= 100 && m->status <= 599);
        CHECK(in_head(buf, hl, m->reason, m->reason_len));
        CHECK(m->method == NULL && m->target == NULL);
    }
    for (size_t i = 0; i < m->n_headers; i++) {
        const struct up_h1_header *h = &m->headers[i];
        CHECK(h->name_len > 0 && in_head(buf, hl, h->name, h->name_len));
        CHECK(in_head(buf, hl, h->value, h->value_len));
        CHECK(memchr(h->value, '\r', h->value_len) == NULL);
        CHECK(memchr(h->value, '\n', h->value_len) == NULL);
        CHECK(h->value_len == 0 || (h->value[0] != ' ' && h->value[h->value_len - 1] != ' ' &&
                                    h->value[0] != '\t' && h->value[h->value_len - 1] != '\t'));
    }
}

static void check_same(int ra, const struct up_h1_msg *a, const struct up_h1_header *ah, int rb,
                       const struct up_h1_msg *b, const struct up_h1_header *bh)
{
    CHECK(ra == rb);
    if (ra != UP_OK) {
        if (ra != UP_EAGAIN) {
            CHECK(a->err_status == b->err_status);
            CHECK(strcmp(a->err_reason, b->err_reason) == 0);
        }
        return;
    }
    CHECK(a->method == b->method && a->method_len == b->method_len);
    CHECK(a->target == b->target && a->target_len == b->target_len);
    CHECK(a->status == b->status && a->reason == b->reason && a->reason_len == b->reason_len);
    CHECK(a->minor_version == b->minor_version);
    CHECK(a->head_len == b->head_len && a->content_length == b->content_length);
    CHECK(a->chunked == b->chunked && a->conn_close == b->conn_close);
    CHECK(a->conn_upgrade == b->conn_upgrade);
    CHECK(a->n_headers == b->n_headers);
    for (size_t i = 0; i < a->n_headers; i++) {
        CHECK(ah[i].name == bh[i].name && ah[i].name_len == bh[i].name_len);
        CHECK(ah[i].value == bh[i].value && ah[i].value_len == bh[i].value_len);
    }
}

static void run(bool request, const uint8_t *data, size_t size, const struct limits *lim)
{
    static struct up_h1_header wh[FUZZ_MAX_HEADERS], gh[FUZZ_MAX_HEADERS];
    struct up_h1_msg whole, got;

    /* (1) The whole input, no hint. */
    int rw = parse(request, data, size, NULL, &whole, wh, lim);
    check_result(request, data, size, rw, &whole, lim);

    /* (2) A growing buffer with the hint. The answer depends only on a prefix, so the first
     * non-EAGAIN answer must already be the whole input's answer, and for a complete head it
     * must come exactly when the last byte of the head arrives. */
    size_t scan = 0, k = 0;
    int rg = UP_EAGAIN;
    while (rg == UP_EAGAIN && k < size) {
        k++;
        size_t before = scan;
        rg = parse(request, data, k, &scan, &got, gh, lim);
        CHECK(scan >= before && scan <= k);
    }
    if (size == 0) {
        rg = parse(request, data, 0, &scan, &got, gh, lim);
    }
    check_result(request, data, k, rg, &got, lim);
    check_same(rw, &whole, wh, rg, &got, gh);
    if (rw == UP_OK) {
        CHECK(k == whole.head_len);
    }
    /* A fresh parse of the buffer where the growing parse stopped agrees as well. */
    struct up_h1_msg fresh;
    static struct up_h1_header fh[FUZZ_MAX_HEADERS];
    int rf = parse(request, data, k, NULL, &fresh, fh, lim);
    check_same(rf, &fresh, fh, rg, &got, gh);

    /* (3) A wrong hint: any answer, but never an out-of-bounds slice. */
    if (size > 0) {
        size_t lie = data[size - 1] % (size + 1);
        int rl = parse(request, data, size, &lie, &got, gh, lim);
        if (rl == UP_OK) {
            check_result(request, data, size, rl, &got, lim);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Copy into an exact-size allocation so ASan sees any read past len. */
    uint8_t *buf = up_malloc(size ? size : 1);
    if (!buf) {
        return 0;
    }
    memcpy(buf, data, size);
    const struct limits lims[] = {
        {.max_headers = FUZZ_MAX_HEADERS, .max_head = UP_H1_DEFAULT_MAX_HEAD},
        /* Tight limits derived from the input so ELIMIT paths get exercised too. */
        {.max_headers = size % 5, .max_head = size / 2 + (size > 0 ? buf[0] % 16 : 0)},
    };
    for (size_t i = 0; i < sizeof lims / sizeof lims[0]; i++) {
        run(true, buf, size, &lims[i]);
        run(false, buf, size, &lims[i]);
    }
    up_free(buf);
    return 0;
}
