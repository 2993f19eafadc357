/* libFuzzer target for the incremental UTF-8 validator (src/proto/utf8.c), STYLE §14: the whole
 * input in one call, the input split at a point taken from the first byte, and one byte at a
 * time, all against an independent reference that knows, for each prefix, whether some
 * continuation could still make it valid (fail fast). */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "proto/utf8.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_utf8: check failed: %s (line %d)\n", #c, __LINE__);              \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* Whether code points [lo, hi] hold a scalar value valid for an L-byte sequence (RFC 3629 §3:
 * shortest form only, no surrogates, nothing above U+10FFFF). */
static bool range_viable(uint32_t lo, uint32_t hi, size_t seq_len)
{
    static const uint32_t min_cp[5] = {[1] = 0, [2] = 0x80, [3] = 0x800, [4] = 0x10000};
    static const uint32_t max_cp[5] = {[1] = 0x7F, [2] = 0x7FF, [3] = 0xFFFF, [4] = 0x10FFFF};
    uint32_t a = lo > min_cp[seq_len] ? lo : min_cp[seq_len];
    uint32_t b = hi < max_cp[seq_len] ? hi : max_cp[seq_len];
    if (a > b) {
        return false;
    }
    return !(a >= 0xD800 && b <= 0xDFFF);
}

/* Index of the first byte after which no continuation can be valid, or n when there is none.
 * *complete tells whether buf[0..n) ends on a code point boundary. */
static size_t ref_fail_pos(const uint8_t *buf, size_t n, bool *complete)
{
    uint32_t bits = 0;
    size_t seq_len = 0, have = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = buf[i];
        if (have == seq_len) {
            have = 1;
            if (c < 0x80) {
                seq_len = 1;
                bits = c;
            } else if (c >= 0xC0 && c < 0xE0) {
                seq_len = 2;
                bits = c & 0x1Fu;
            } else if (c >= 0xE0 && c < 0xF0) {
                seq_len = 3;
                bits = c & 0x0Fu;
            } else if (c >= 0xF0 && c < 0xF8) {
                seq_len = 4;
                bits = c & 0x07u;
            } else {
                return i;
            }
        } else {
            if (c < 0x80 || c > 0xBF) {
                return i;
            }
            bits = bits << 6 | (c & 0x3Fu);
            have++;
        }
        unsigned rest = (unsigned)(6 * (seq_len - have));
        uint32_t lo = bits << rest;
        uint32_t hi = lo | ((1u << rest) - 1);
        if (!range_viable(lo, hi, seq_len)) {
            return i;
        }
    }
    *complete = have == seq_len;
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    bool ref_complete = false;
    size_t ref_fail = ref_fail_pos(data, size, &ref_complete);
    bool ref_ok = ref_fail == size;

    struct up_utf8 whole;
    up_utf8_init(&whole);
    bool ok = up_utf8_feed(&whole, data, size);
    CHECK(ok == ref_ok);
    if (ok) {
        CHECK(up_utf8_is_complete(&whole) == ref_complete);
    }

    size_t cut = size > 0 ? data[0] % (size + 1) : 0;
    struct up_utf8 split;
    up_utf8_init(&split);
    bool ok1 = up_utf8_feed(&split, data, cut);
    bool ok2 = up_utf8_feed(&split, data + cut, size - cut);
    CHECK(ok2 == ok);
    CHECK(ok1 == (ref_fail >= cut));
    CHECK(up_utf8_is_complete(&split) == up_utf8_is_complete(&whole));

    struct up_utf8 bytes;
    up_utf8_init(&bytes);
    size_t first_fail = size;
    for (size_t i = 0; i < size; i++) {
        if (!up_utf8_feed(&bytes, data + i, 1)) {
            first_fail = i;
            break;
        }
    }
    CHECK(first_fail == ref_fail);
    return 0;
}
