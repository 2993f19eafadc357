/* libFuzzer target for src/proto/fwd.c: X-Forwarded-For walking against a fixed trusted list,
 * with invariants (the answer is an address that appears in the value, and it is untrusted
 * unless every entry is trusted), and PROXY protocol headers for addresses taken from the
 * input (v1 within 107 bytes and well-formed, v2 of the exact length). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/fwd.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_fwd: check failed: %s (line %d)\n", #c, __LINE__);               \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct up_cidr_list trusted;
    static int init;
    if (!init) {
        const char *why = NULL;
        CHECK(up_cidr_list_add(&trusted, "10.0.0.0/8, 127.0.0.1, fd00::/8", &why) == UP_OK);
        init = 1;
    }
    uint8_t a[16];
    if (up_fwd_xff_client((const char *)data, size, &trusted, a) == UP_OK) {
        /* The client, written back as text, parses to the same address. */
        char text[64];
        uint8_t b[16];
        up_ip_format(a, text, sizeof text);
        CHECK(up_ip_parse(text, strlen(text), b) == UP_OK && memcmp(a, b, 16) == 0);
        /* Untrusted, or the value has no untrusted entry at all (then it is the leftmost). */
        if (up_cidr_list_match(&trusted, a)) {
            /* A trusted answer means every entry was trusted: it is the leftmost one. */
            const char *comma = memchr(data, ',', size);
            size_t flen = comma ? (size_t)(comma - (const char *)data) : size;
            uint8_t first[16];
            CHECK(up_fwd_xff_client((const char *)data, flen, NULL, first) == UP_OK);
            CHECK(memcmp(first, a, 16) == 0);
        }
    }
    if (size >= 36) {
        uint8_t src[16], dst[16];
        memcpy(src, data, 16);
        memcpy(dst, data + 16, 16);
        uint16_t sp = (uint16_t)(data[32] << 8 | data[33]);
        uint16_t dp = (uint16_t)(data[34] << 8 | data[35]);
        char line[128];
        size_t n = 0;
        CHECK(up_fwd_proxy_v1(src, sp, dst, dp, line, sizeof line, &n) == UP_OK);
        CHECK(n <= 107 && n == strlen(line) && memcmp(line, "PROXY TCP", 9) == 0);
        CHECK(line[n - 2] == '\r' && line[n - 1] == '\n');
        uint8_t bin[64];
        CHECK(up_fwd_proxy_v2(src, sp, dst, dp, bin, sizeof bin, &n) == UP_OK);
        CHECK(n == (up_ip_is_v4(src) && up_ip_is_v4(dst) ? 28u : 52u));
        CHECK(bin[15] == n - 16);
    }
    return 0;
}
