/* Test helper: an event trace appended into a fixed buffer (truncates, never overflows). */
#ifndef UP_TEST_TRACE_H
#define UP_TEST_TRACE_H

#include <stddef.h>

struct tr {
    char *s;
    size_t cap;
    size_t len;
};

/* Append printf-style text to t; output beyond the capacity is dropped. */
void tr_add(struct tr *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
