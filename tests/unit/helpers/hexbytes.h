/* Test helper: turn "81 82 0a0b" style hex text into bytes. */
#ifndef UP_TEST_HEXBYTES_H
#define UP_TEST_HEXBYTES_H

#include <stddef.h>
#include <stdint.h>

/* Decode hex digits from s, ignoring spaces, newlines and ':' into out (cap bytes). Returns
 * the number of bytes, or (size_t)-1 on a bad digit or overflow. */
size_t hex_bytes(const char *s, uint8_t *out, size_t cap);

#endif
