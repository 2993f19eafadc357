#include "base/buf.h"

#include <string.h>

#include "base/alloc.h"

void up_buf_init(struct up_buf *b)
{
    memset(b, 0, sizeof(*b));
}

void up_buf_fini(struct up_buf *b)
{
    UP_FREE(b->base);
    b->cap = b->rd = b->wr = 0;
}

void up_buf_compact(struct up_buf *b)
{
    if (b->rd == 0) {
        return;
    }
    size_t len = b->wr - b->rd;
    if (len) {
        memmove(b->base, b->base + b->rd, len);
    }
    b->rd = 0;
    b->wr = len;
}

int up_buf_reserve(struct up_buf *b, size_t n, size_t max_cap)
{
    if (up_buf_room(b) >= n) {
        return UP_OK;
    }
    size_t len = up_buf_len(b);
    /* Compact when that moves no more bytes than it frees at the front; otherwise prefer to
     * grow (a partly written output buffer would be moved again and again). */
    if (b->cap - len >= n && (b->rd >= len || b->cap * 2 > max_cap || b->cap - len >= 2 * n)) {
        up_buf_compact(b);
        return UP_OK;
    }
    if (len + n > max_cap || len + n < len) {
        return UP_ELIMIT;
    }
    size_t ncap = b->cap ? b->cap : 1024;
    while (ncap < len + n) {
        ncap *= 2;
    }
    if (ncap > max_cap) {
        ncap = max_cap;
    }
    up_buf_compact(b);
    uint8_t *p = up_realloc(b->base, ncap);
    if (!p) {
        return UP_ENOMEM;
    }
    b->base = p;
    b->cap = ncap;
    return UP_OK;
}

int up_buf_append(struct up_buf *b, const void *p, size_t n, size_t max_cap)
{
    int rv = up_buf_reserve(b, n, max_cap);
    if (rv < 0) {
        return rv;
    }
    if (n) {
        memcpy(up_buf_wptr(b), p, n);
    }
    b->wr += n;
    return UP_OK;
}

void up_buf_release_if_empty(struct up_buf *b)
{
    if (b->base && b->rd == b->wr) {
        up_buf_fini(b);
    }
}
