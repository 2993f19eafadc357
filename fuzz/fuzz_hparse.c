/* libFuzzer target for src/proto/hparse.c: every parser on the input, with invariants:
 *  - every returned slice lies inside the input and holds what its parser promised (a query
 *    value follows "key=", a cookie value follows "name=", a Bearer token has no blank ends);
 *  - query_param is the first value query_next yields;
 *  - services: on UP_OK, 1..32 valid names, flags only HTTP|PROTECT; on an error, a reason;
 *  - route: on UP_OK, a host of [a-z0-9.-_[]:], a prefix without blanks, '?' or '#', and the
 *    spec parses to the same route again; on UP_EINVAL, a reason that names the spec;
 *  - the input split at a point taken from its first byte into two Sec-WebSocket-Protocol
 *    lines gives a pick that is one of the entries. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/hparse.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_hparse: check failed: %s (line %d)\n", #c, __LINE__);            \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int inside(const char *p, size_t n, const char *base, size_t size)
{
    return p >= base && p + n <= base + size;
}

static void queries(const char *s, size_t n)
{
    static const char *const keys[] = {"services", "http", "protect", "token", "side", ""};
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        size_t vl = 0, vl2 = 0;
        const char *v = up_hparse_query_param(s, n, keys[k], &vl);
        const char *pos = s;
        const char *w = up_hparse_query_next(&pos, s + n, keys[k], &vl2);
        CHECK(v == w);
        if (v) {
            size_t kl = strlen(keys[k]);
            CHECK(vl == vl2 && inside(v, vl, s, n));
            CHECK(v - s >= (ptrdiff_t)(kl + 1) && v[-1] == '=');
            CHECK(memcmp(v - kl - 1, keys[k], kl) == 0);
            CHECK(!memchr(v, '&', vl));
        }
        size_t count = 0;
        pos = s;
        while (up_hparse_query_next(&pos, s + n, keys[k], &vl) && count <= n) {
            CHECK(pos >= s && pos <= s + n);
            count++;
        }
        CHECK(count <= n);
    }
}

static void fields(const char *s, size_t n)
{
    const char *t = NULL;
    size_t tl = 0;
    if (up_hparse_bearer(s, n, &t, &tl)) {
        CHECK(tl > 0 && inside(t, tl, s, n));
        CHECK(t[0] != ' ' && t[0] != '\t' && t[tl - 1] != ' ' && t[tl - 1] != '\t');
    }
    size_t vl = 0;
    const char *v = up_hparse_cookie(s, n, "underpass_token", &vl);
    if (v) {
        CHECK(inside(v, vl, s, n) && v - s >= 16 && memcmp(v - 16, "underpass_token=", 16) == 0);
        CHECK(!memchr(v, ';', vl));
    }
    const char *proto = up_hparse_forwarded_proto(s, n);
    CHECK(!proto || strcmp(proto, "http") == 0 || strcmp(proto, "https") == 0);
    char host[256];
    if (up_hparse_host(s, n, host, sizeof host)) {
        size_t hl = strlen(host);
        /* A NUL in the value ends the name early (the relay compares it as a C string). */
        CHECK(hl <= n && (memchr(s, '\0', n) || (hl > 0 && host[hl - 1] != '.')));
        for (size_t i = 0; i < hl; i++) {
            CHECK(!(host[i] >= 'A' && host[i] <= 'Z'));
        }
    }
}

static void wsproto(const char *s, size_t n, size_t cut)
{
    struct up_hparse_wsproto sp;
    up_hparse_wsproto_init(&sp);
    up_hparse_wsproto_feed(&sp, s, cut);
    up_hparse_wsproto_feed(&sp, s + cut, n - cut);
    size_t pl = 0, tl = 0;
    const char *p = up_hparse_wsproto_pick(&sp, &pl);
    const char *t = up_hparse_wsproto_token(&sp, &tl);
    if (p) {
        CHECK(pl > 0 && inside(p, pl, s, n) && !memchr(p, ',', pl));
        CHECK(p[0] != ' ' && p[0] != '\t' && p[pl - 1] != ' ' && p[pl - 1] != '\t');
    }
    if (t) {
        CHECK(p && tl > 0 && inside(t, tl, s, n) && memcmp(t - 7, "bearer.", 7) == 0);
    }
}

static void services(const char *s, size_t n)
{
    static const struct up_token_claims any = {.services = {"*"}, .n_services = 1};
    struct up_hparse_services out;
    char why[160] = "";
    int rv = up_hparse_services(s, n, &any, &out, why, sizeof why);
    if (rv == UP_OK) {
        CHECK(out.n >= 1 && out.n <= UP_TOKEN_MAX_SERVICES);
        for (size_t i = 0; i < out.n; i++) {
            size_t l = strlen(out.names[i]);
            CHECK(up_token_valid_service_name(out.names[i], l) && strcmp(out.names[i], "*") != 0);
            CHECK((out.flags[i] & ~(UP_HPARSE_SVC_HTTP | UP_HPARSE_SVC_PROTECT)) == 0);
        }
    } else {
        /* The token allows any name: only a bad list or too many names fail. */
        CHECK((rv == UP_EPROTO || rv == UP_ELIMIT) && why[0] != '\0');
    }
}

static void route(const char *s, size_t n)
{
    char spec[1024];
    if (n >= sizeof spec) {
        n = sizeof spec - 1;
    }
    memcpy(spec, s, n);
    spec[n] = '\0';
    struct up_hparse_route rt, again;
    char err[256] = "";
    if (up_hparse_route(spec, &rt, err, sizeof err) != UP_OK) {
        CHECK(strncmp(err, "--route '", 9) == 0);
        return;
    }
    CHECK(rt.host[0] || rt.prefix[0]);
    CHECK(!rt.prefix[0] || rt.prefix[0] == '/');
    for (const char *p = rt.host; *p; p++) {
        CHECK(strchr("abcdefghijklmnopqrstuvwxyz0123456789.-_[]:", *p) != NULL);
    }
    for (const char *p = rt.prefix; *p; p++) {
        CHECK((unsigned char)*p > ' ' && *p != '?' && *p != '#');
    }
    char back[600];
    snprintf(back, sizeof back, "%s%s=%s", rt.host, rt.prefix, rt.service);
    CHECK(up_hparse_route(back, &again, err, sizeof err) == UP_OK);
    CHECK(memcmp(&rt, &again, sizeof rt) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A copy of exactly size bytes, so ASan sees any read past the end. */
    char *s = malloc(size ? size : 1);
    if (!s) {
        return 0;
    }
    memcpy(s, data, size);
    queries(s, size);
    fields(s, size);
    wsproto(s, size, size ? data[0] % (size + 1) : 0);
    services(s, size);
    route(s, size);
    free(s);
    return 0;
}
