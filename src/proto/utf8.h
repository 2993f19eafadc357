/* Incremental UTF-8 validator (RFC 3629), usable across fragment boundaries. */
#ifndef UP_PROTO_UTF8_H
#define UP_PROTO_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct up_utf8 {
    uint32_t state; /* 0 = accept; internal DFA state otherwise */
};

static inline void up_utf8_init(struct up_utf8 *u)
{
    u->state = 0;
}

/* Feed bytes. Returns false as soon as the input can no longer be valid UTF-8 (fail fast:
 * overlong forms, surrogates and code points above U+10FFFF are invalid). */
bool up_utf8_feed(struct up_utf8 *u, const uint8_t *p, size_t n);

/* Whether the input fed so far ends on a code point boundary. */
static inline bool up_utf8_is_complete(const struct up_utf8 *u)
{
    return u->state == 0;
}

#endif
