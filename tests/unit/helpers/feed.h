/* Test helper: feed an input to a codec under every 2-way split and then one byte at a time,
 * and require the same event trace each time (STYLE §12). */
#ifndef UP_TEST_FEED_H
#define UP_TEST_FEED_H

#include <stddef.h>
#include <stdint.h>

/* A trace run: reset the codec, feed the chunks in order (the input is split at the offsets
 * in cuts[0..ncuts)), and write a textual trace of the events into trace (cap bytes,
 * NUL-terminated). Chunks are copies the run may modify (the WS parser unmasks in place). */
typedef void (*feed_run_fn)(void *ud, const uint8_t *in, size_t len, const size_t *cuts,
                            size_t ncuts, char *trace, size_t cap);

/* Run fn on the whole input, then on every 2-way split (for inputs over 4 KiB: every split
 * within 2 KiB of either end, and every 61st in between), then split at every byte. Returns 0
 * when all traces are identical; otherwise prints the first difference and returns -1. If
 * want is not NULL the whole-input trace must also equal want. */
int feed_all_splits(feed_run_fn fn, void *ud, const uint8_t *in, size_t len, const char *want);

#endif
