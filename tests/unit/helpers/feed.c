#include "feed.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TRACE_CAP 65536

/* Inputs up to SPLIT_ALL bytes are split at every offset. Longer ones (a 64 KiB frame) at
 * every offset within SPLIT_ALL / 2 of either end, where the headers and the frame boundaries
 * are, and at every SPLIT_STRIDE-th offset in between: splitting a long run of payload at each
 * of its bytes exercises the same code each time, and costs O(n^2) (minutes under ASan). */
#define SPLIT_ALL 4096
#define SPLIT_STRIDE 61 /* prime: the samples fall at every alignment */

static size_t next_cut(size_t cut, size_t len)
{
    if (len <= SPLIT_ALL || cut < SPLIT_ALL / 2 || cut + SPLIT_ALL / 2 >= len) {
        return cut + 1;
    }
    size_t next = cut + SPLIT_STRIDE;
    return next + SPLIT_ALL / 2 >= len ? len - SPLIT_ALL / 2 : next;
}

int feed_all_splits(feed_run_fn fn, void *ud, const uint8_t *in, size_t len, const char *want)
{
    char *ref = malloc(TRACE_CAP), *got = malloc(TRACE_CAP);
    size_t *cuts = malloc((len + 1) * sizeof(size_t));
    int rv = -1;
    if (!ref || !got || !cuts) {
        goto out;
    }
    fn(ud, in, len, NULL, 0, ref, TRACE_CAP);
    if (want && strcmp(ref, want) != 0) {
        fprintf(stderr, "feed: whole-input trace\n  got:  %s\n  want: %s\n", ref, want);
        goto out;
    }
    for (size_t cut = 1; cut < len; cut = next_cut(cut, len)) {
        cuts[0] = cut;
        fn(ud, in, len, cuts, 1, got, TRACE_CAP);
        if (strcmp(ref, got) != 0) {
            fprintf(stderr, "feed: split at %zu\n  got:  %s\n  want: %s\n", cut, got, ref);
            goto out;
        }
    }
    for (size_t i = 0; i + 1 < len; i++) {
        cuts[i] = i + 1;
    }
    fn(ud, in, len, cuts, len ? len - 1 : 0, got, TRACE_CAP);
    if (strcmp(ref, got) != 0) {
        fprintf(stderr, "feed: byte at a time\n  got:  %s\n  want: %s\n", got, ref);
        goto out;
    }
    rv = 0;
out:
    free(ref);
    free(got);
    free(cuts);
    return rv;
}
