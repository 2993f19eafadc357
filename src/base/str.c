#include "base/str.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static char lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

bool up_str_ieq(const char *a, size_t alen, const char *b)
{
    size_t blen = strlen(b);
    if (alen != blen) {
        return false;
    }
    for (size_t i = 0; i < alen; i++) {
        if (lower(a[i]) != lower(b[i])) {
            return false;
        }
    }
    return true;
}

static int parse_digits(const char **sp, uint64_t max, uint64_t *out)
{
    const char *s = *sp;
    uint64_t v = 0;
    if (*s < '0' || *s > '9') {
        return UP_EINVAL;
    }
    while (*s >= '0' && *s <= '9') {
        uint64_t d = (uint64_t)(*s - '0');
        if (v > (max - d) / 10) {
            return UP_EINVAL;
        }
        v = v * 10 + d;
        s++;
    }
    *sp = s;
    *out = v;
    return UP_OK;
}

int up_parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    uint64_t v;
    if (!s || parse_digits(&s, max, &v) < 0 || *s != '\0') {
        return UP_EINVAL;
    }
    *out = v;
    return UP_OK;
}

int up_parse_duration_ms(const char *s, uint64_t *out_ms)
{
    uint64_t v, mul;
    if (!s || parse_digits(&s, UINT64_MAX / 1000, &v) < 0) {
        return UP_EINVAL;
    }
    if (strcmp(s, "ms") == 0) {
        mul = 1;
    } else if (*s == '\0' || strcmp(s, "s") == 0) {
        mul = 1000;
    } else if (strcmp(s, "m") == 0) {
        mul = 60000;
    } else if (strcmp(s, "h") == 0) {
        mul = 3600000;
    } else if (strcmp(s, "d") == 0) {
        mul = 86400000;
    } else {
        return UP_EINVAL;
    }
    if (v > UINT64_MAX / mul) {
        return UP_EINVAL;
    }
    *out_ms = v * mul;
    return UP_OK;
}

int up_parse_size(const char *s, uint64_t *out)
{
    uint64_t v, mul = 1;
    if (!s || parse_digits(&s, UINT64_MAX, &v) < 0) {
        return UP_EINVAL;
    }
    char c = lower(*s);
    if (c == 'k') {
        mul = 1024;
    } else if (c == 'm') {
        mul = 1024 * 1024;
    } else if (c == 'g') {
        mul = 1024 * 1024 * 1024;
    } else if (c != '\0') {
        return UP_EINVAL;
    }
    if (c != '\0') {
        s++;
        if (lower(*s) == 'i') {
            s++;
        }
        if (lower(*s) == 'b') {
            s++;
        }
        if (*s != '\0') {
            return UP_EINVAL;
        }
    }
    if (v > UINT64_MAX / mul) {
        return UP_EINVAL;
    }
    *out = v * mul;
    return UP_OK;
}

int up_fmt(char *dst, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(dst, cap, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= cap) {
        return UP_ELIMIT;
    }
    return n;
}

void up_str_trim_ows(const char **s, size_t *len)
{
    while (*len && (**s == ' ' || **s == '\t')) {
        (*s)++;
        (*len)--;
    }
    while (*len && ((*s)[*len - 1] == ' ' || (*s)[*len - 1] == '\t')) {
        (*len)--;
    }
}
