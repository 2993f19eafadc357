/* libFuzzer target for src/proto/url.c: the input (up to its first NUL) as a URL, with
 * invariants:
 *  - on UP_OK: a known scheme, tls exactly for wss/https, a host of 1..255 bytes without '/'
 *    or '@', a port that is not 0, a path under 512 bytes that starts with '/' and is the
 *    input's tail (or "/" when the input has none); and the URL written back as
 *    scheme://host:port/path (brackets when the host needs them) parses to the same fields;
 *  - on UP_EINVAL: a reason;
 *  - a prefix of the input, cut at a point taken from its first byte, parses without harm. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/url.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_url: check failed: %s (line %d)\n", #c, __LINE__);               \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool same(const struct up_url *a, const struct up_url *b)
{
    return strcmp(a->scheme, b->scheme) == 0 && a->tls == b->tls && strcmp(a->host, b->host) == 0 &&
           a->port == b->port && strcmp(a->path, b->path) == 0;
}

static void check(const char *s)
{
    struct up_url u, again;
    const char *why = NULL;
    int rv = up_url_parse(s, &u, &why);
    if (rv != UP_OK) {
        CHECK(rv == UP_EINVAL && why && why[0] != '\0');
        return;
    }
    bool tls = strcmp(u.scheme, "wss") == 0 || strcmp(u.scheme, "https") == 0;
    CHECK(tls || strcmp(u.scheme, "ws") == 0 || strcmp(u.scheme, "http") == 0 ||
          strcmp(u.scheme, "tcp") == 0);
    CHECK(u.tls == tls);
    size_t hl = strlen(u.host), pl = strlen(u.path), sl = strlen(s);
    CHECK(hl > 0 && hl < sizeof u.host && !strchr(u.host, '/') && !strchr(u.host, '@'));
    CHECK(u.port != 0);
    CHECK(pl >= 1 && pl < sizeof u.path && u.path[0] == '/');
    const char *slash = strchr(s + strlen(u.scheme) + 3, '/');
    CHECK(slash ? strcmp(slash, u.path) == 0 : strcmp(u.path, "/") == 0);
    CHECK(hl <= sl && pl <= sl + 1);

    char back[1024];
    bool v6 = strchr(u.host, ':') || u.host[0] == '[';
    int n = snprintf(back, sizeof back, "%s://%s%s%s:%u%s", u.scheme, v6 ? "[" : "", u.host,
                     v6 ? "]" : "", (unsigned)u.port, strcmp(u.path, "/") == 0 ? "" : u.path);
    CHECK(n > 0 && (size_t)n < sizeof back);
    rv = up_url_parse(back, &again, &why);
    CHECK(rv == UP_OK && same(&u, &again));
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
    check(s);
    if (size > 0) {
        s[data[0] % (size + 1)] = '\0';
        check(s);
    }
    free(s);
    return 0;
}
