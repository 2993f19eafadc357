/* Linear byte buffer with read/write cursors (STYLE §6). Storage is allocated on demand and
 * can be released when empty, so an idle owner costs only the struct. */
#ifndef UP_BASE_BUF_H
#define UP_BASE_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

struct up_buf {
    uint8_t *base; /* owned; NULL until the first reserve */
    size_t cap;
    size_t rd; /* first unread byte */
    size_t wr; /* first free byte */
};

static inline size_t up_buf_len(const struct up_buf *b)
{
    return b->wr - b->rd;
}

static inline size_t up_buf_room(const struct up_buf *b)
{
    return b->cap - b->wr;
}

static inline uint8_t *up_buf_rptr(const struct up_buf *b)
{
    return b->base + b->rd;
}

static inline uint8_t *up_buf_wptr(const struct up_buf *b)
{
    return b->base + b->wr;
}

/* Mark n bytes at the write cursor as written. n must be <= up_buf_room(). */
static inline void up_buf_commit(struct up_buf *b, size_t n)
{
    b->wr += n;
}

/* Drop n bytes from the front. When the buffer becomes empty the cursors rewind to 0. */
static inline void up_buf_skip(struct up_buf *b, size_t n)
{
    b->rd += n;
    if (b->rd == b->wr) {
        b->rd = b->wr = 0;
    }
}

/* Zero the struct; owns no storage yet. */
void up_buf_init(struct up_buf *b);
/* Release the storage. Idempotent. */
void up_buf_fini(struct up_buf *b);
/* Move unread bytes to the front. */
void up_buf_compact(struct up_buf *b);
/* Make room for at least n more bytes, compacting first and growing the storage (doubling)
 * but never beyond max_cap. Returns UP_OK, UP_ELIMIT when max_cap does not allow it, or
 * UP_ENOMEM. */
UP_NODISCARD int up_buf_reserve(struct up_buf *b, size_t n, size_t max_cap);
/* Append n bytes (reserving as above). Returns UP_OK, UP_ELIMIT or UP_ENOMEM. */
UP_NODISCARD int up_buf_append(struct up_buf *b, const void *p, size_t n, size_t max_cap);
/* Free the storage if the buffer is empty, so that idle owners cost no memory. */
void up_buf_release_if_empty(struct up_buf *b);

#endif
