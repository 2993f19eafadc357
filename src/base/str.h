/* Small string and number helpers. */
#ifndef UP_BASE_STR_H
#define UP_BASE_STR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

/* Case-insensitive ASCII comparison of a (alen bytes) with NUL-terminated b. */
bool up_str_ieq(const char *a, size_t alen, const char *b);
/* Trim optional white space (RFC 9110 OWS: spaces and tabs) from both ends of *s[0..*len). */
void up_str_trim_ows(const char **s, size_t *len);
/* Parse an unsigned decimal integer in [0, max]. Returns UP_OK or UP_EINVAL. */
UP_NODISCARD int up_parse_u64(const char *s, uint64_t max, uint64_t *out);
/* Parse a duration such as "500ms", "20s", "1h", "30m", "2d" or a bare number of seconds
 * into milliseconds. Returns UP_OK or UP_EINVAL. */
UP_NODISCARD int up_parse_duration_ms(const char *s, uint64_t *out_ms);
/* Parse a size such as "256k", "16m", "1g" or a number of bytes. UP_OK or UP_EINVAL. */
UP_NODISCARD int up_parse_size(const char *s, uint64_t *out);
/* snprintf that always NUL-terminates and returns UP_ELIMIT on truncation. */
UP_NODISCARD int up_fmt(char *dst, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
