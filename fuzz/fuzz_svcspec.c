/* libFuzzer target for src/proto/svcspec.c: the input (up to its first NUL) as a --service
 * spec, with invariants:
 *  - on UP_OK: the name is the spec up to its first '=', a valid service name and not "*"; a
 *    host of 1..255 bytes, a port that is not 0, proxy_protocol 0, 1 or 2; and the spec
 *    written back as NAME=tcp|http://HOST:PORT[?proxy-protocol=vN] parses to the same fields;
 *  - on UP_EINVAL: a reason that starts "--service '", cut to the buffer;
 *  - the same again with the input cut at a point taken from its first byte, and with a
 *    short error buffer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/svcspec.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_svcspec: check failed: %s (line %d)\n", #c, __LINE__);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool same(const struct up_svcspec *a, const struct up_svcspec *b)
{
    return strcmp(a->name, b->name) == 0 && strcmp(a->host, b->host) == 0 && a->port == b->port &&
           a->proxy_protocol == b->proxy_protocol && a->http == b->http;
}

static void check(const char *spec, size_t errcap)
{
    struct up_svcspec s, again;
    char err[1024];
    memset(err, 'z', sizeof err);
    int rv = up_svcspec_parse(spec, &s, err, errcap);
    if (rv != UP_OK) {
        CHECK(rv == UP_EINVAL);
        CHECK(memchr(err, '\0', errcap) != NULL);
        CHECK(strncmp(err, "--service '", errcap - 1 < 11 ? errcap - 1 : 11) == 0);
        return;
    }
    size_t nl = strlen(s.name);
    CHECK(spec[nl] == '=' && strncmp(spec, s.name, nl) == 0);
    CHECK(up_token_valid_service_name(s.name, nl) && strcmp(s.name, "*") != 0);
    size_t hl = strlen(s.host);
    CHECK(hl > 0 && hl < sizeof s.host);
    CHECK(s.port != 0 && s.proxy_protocol <= 2);

    char back[1024];
    bool v6 = strchr(s.host, ':') || s.host[0] == '[';
    char pp[32] = "";
    if (s.proxy_protocol) {
        snprintf(pp, sizeof pp, "?proxy-protocol=v%u", (unsigned)s.proxy_protocol);
    }
    int n = snprintf(back, sizeof back, "%s=%s://%s%s%s:%u%s", s.name, s.http ? "http" : "tcp",
                     v6 ? "[" : "", s.host, v6 ? "]" : "", (unsigned)s.port, pp);
    CHECK(n > 0 && (size_t)n < sizeof back);
    CHECK(up_svcspec_parse(back, &again, err, sizeof err) == UP_OK && same(&s, &again));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A copy of exactly size + 1 bytes, so ASan sees any read past the NUL. */
    char *s = malloc(size + 1);
    if (!s) {
        return 0;
    }
    memcpy(s, data, size);
    s[size] = '\0';
    check(s, 1024);
    if (size > 0) {
        check(s, 1 + data[0] % 64);
        s[data[0] % (size + 1)] = '\0';
        check(s, 1024);
    }
    free(s);
    return 0;
}
