/* libFuzzer target for src/proto/proxy.c and src/base/cidr.c.
 * (1) Parse the input (up to the first NUL) as a proxy URL. A refusal must give a one-line
 *     reason and leave nothing behind; an accepted URL must give a sane struct, build a
 *     CONNECT request to its own host (exactly-sized buffer too) and survive a round trip
 *     through a canonical, fully percent-encoded URL.
 * (2) Split the input at its first two '\n' into a NO_PROXY list, a host and a decimal port,
 *     and match: any answer but a crash, and adding entries never drops a match, "*" always
 *     matches, and ASCII case never matters.
 * (3) Parse the raw input as a CIDR block and as an address, and as a list: blocks hold only
 *     prefix bits and match their own address; a refused list leaves the list unchanged.
 * (4) Build a CONNECT request to the input taken as a host: if accepted, the request is
 *     exactly the documented lines, with no stray CR or LF. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/cidr.h"
#include "proto/proxy.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_proxy: check failed: %s (line %d)\n", #c, __LINE__);             \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* Big enough for any request: 256-byte host twice, 684 bytes of credentials, the rest. */
#define REQ_CAP 2048

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *dup_text(const uint8_t *p, size_t n)
{
    char *s = up_malloc(n + 1);
    if (s) {
        memcpy(s, p, n);
        s[n] = '\0';
    }
    return s;
}

static bool one_line(const char *why)
{
    return why && why[0] != '\0' && !strchr(why, '\n') && !strchr(why, '\r');
}

static size_t count(const char *s, size_t len, const char *needle)
{
    size_t n = 0, nl = strlen(needle);
    for (size_t i = 0; i + nl <= len; i++) {
        if (memcmp(s + i, needle, nl) == 0) {
            n++;
        }
    }
    return n;
}

/* A request from up_proxy_connect_request: documented shape, one CRLF per line, no bare
 * CR or LF anywhere. */
static void check_request(const char *req, size_t len, bool auth)
{
    CHECK(len == strlen(req));
    CHECK(strncmp(req, "CONNECT ", 8) == 0);
    CHECK(len >= 4 && memcmp(req + len - 4, "\r\n\r\n", 4) == 0);
    CHECK(count(req, len, "\r\n") == (auth ? 5u : 4u));
    CHECK(count(req, len, "\r") == count(req, len, "\r\n"));
    CHECK(count(req, len, "\n") == count(req, len, "\r\n"));
    CHECK(strstr(req, " HTTP/1.1\r\nHost: ") != NULL);
    CHECK((strstr(req, "\r\nProxy-Authorization: Basic ") != NULL) == auth);
    CHECK(strstr(req, "\r\nUser-Agent: underpass\r\n\r\n") == req + len - 27);
}

static void pct_encode(const char *s, char *out)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; *s; s++) {
        uint8_t b = (uint8_t)*s;
        *out++ = '%';
        *out++ = hex[b >> 4];
        *out++ = hex[b & 15];
    }
    *out = '\0';
}

static void check_parse(const char *url)
{
    struct up_proxy p;
    const char *why = NULL;
    int rv = up_proxy_parse(url, &p, &why);
    if (rv != UP_OK) {
        CHECK(rv == UP_EINVAL && one_line(why));
        CHECK(!p.has_auth && p.user[0] == '\0' && p.pass[0] == '\0' && p.host[0] == '\0');
        return;
    }
    CHECK(why == NULL);
    size_t hlen = strnlen(p.host, sizeof p.host);
    CHECK(hlen > 0 && hlen < sizeof p.host);
    CHECK(p.port != 0);
    CHECK(strnlen(p.user, sizeof p.user) <= UP_PROXY_MAX_CRED);
    CHECK(strnlen(p.pass, sizeof p.pass) <= UP_PROXY_MAX_CRED);
    CHECK(!strpbrk(p.user, "\r\n:") && !strpbrk(p.pass, "\r\n"));
    CHECK(p.has_auth || (p.user[0] == '\0' && p.pass[0] == '\0'));

    /* The proxy's own host is a valid CONNECT target. */
    char *req = up_malloc(REQ_CAP);
    if (!req) {
        return;
    }
    size_t len = 0;
    rv = up_proxy_connect_request(&p, p.host, p.port, req, REQ_CAP, &len);
    CHECK(rv == UP_OK);
    check_request(req, len, p.has_auth);
    size_t full = len;
    rv = up_proxy_connect_request(&p, p.host, p.port, req, full + 1, &len);
    CHECK(rv == UP_OK && len == full);
    rv = up_proxy_connect_request(&p, p.host, p.port, req, full, &len);
    CHECK(rv == UP_ELIMIT && len == 0 && req[0] == '\0');
    up_free(req);

    /* Round trip through a canonical URL with every credential byte escaped. */
    char user[3 * UP_PROXY_MAX_CRED + 1], pass[3 * UP_PROXY_MAX_CRED + 1];
    char again[sizeof user + sizeof pass + sizeof p.host + 32];
    pct_encode(p.user, user);
    pct_encode(p.pass, pass);
    bool v6 = strchr(p.host, ':') != NULL;
    int n = snprintf(again, sizeof again, "%s://%s%s%s%s%s%s%s:%u/", p.tls ? "https" : "http", user,
                     p.has_auth ? ":" : "", pass, p.has_auth ? "@" : "", v6 ? "[" : "", p.host,
                     v6 ? "]" : "", (unsigned)p.port);
    CHECK(n > 0 && (size_t)n < sizeof again);
    struct up_proxy q;
    rv = up_proxy_parse(again, &q, &why);
    CHECK(rv == UP_OK);
    CHECK(q.tls == p.tls && q.port == p.port && strcmp(q.host, p.host) == 0);
    /* "user:" with an empty password and "user" alone both mean no password. */
    CHECK(q.has_auth == p.has_auth || (p.has_auth && p.user[0] == '\0' && p.pass[0] == '\0'));
    CHECK(strcmp(q.user, p.user) == 0 && strcmp(q.pass, p.pass) == 0);
}

static char *lower_copy(const char *s)
{
    size_t n = strlen(s);
    char *d = up_malloc(n + 1);
    if (!d) {
        return NULL;
    }
    for (size_t i = 0; i <= n; i++) {
        d[i] = (s[i] >= 'A' && s[i] <= 'Z') ? (char)(s[i] - 'A' + 'a') : s[i];
    }
    return d;
}

static void check_no_proxy(char *text)
{
    char *host = strchr(text, '\n');
    if (!host) {
        (void)up_proxy_no_proxy_match(text, "example.com", 443);
        (void)up_proxy_no_proxy_match(text, "10.1.2.3", 443);
        (void)up_proxy_no_proxy_match(text, "2001:db8::1", 443);
        return;
    }
    *host++ = '\0';
    char *ptext = strchr(host, '\n');
    uint16_t port = 443;
    if (ptext) {
        *ptext++ = '\0';
        unsigned v = 0;
        for (size_t i = 0; i < 5 && ptext[i] >= '0' && ptext[i] <= '9'; i++) {
            v = v * 10 + (unsigned)(ptext[i] - '0');
        }
        port = (uint16_t)v;
    }
    const char *list = text;
    bool m = up_proxy_no_proxy_match(list, host, port);

    size_t llen = strlen(list);
    char *more = up_malloc(llen + 32);
    if (more) {
        memcpy(more, list, llen);
        memcpy(more + llen, ",example.org", sizeof ",example.org");
        CHECK(!m || up_proxy_no_proxy_match(more, host, port));
        memcpy(more, "other.test,", 11);
        memcpy(more + 11, list, llen + 1);
        CHECK(up_proxy_no_proxy_match(more, host, port) == m ||
              up_proxy_no_proxy_match("other.test", host, port));
        memcpy(more, "*,", 2);
        memcpy(more + 2, list, llen + 1);
        CHECK(up_proxy_no_proxy_match(more, host, port) || host[0] == '\0' ||
              strcmp(host, "[]") == 0 || strcmp(host, ".") == 0);
        up_free(more);
    }
    char *ll = lower_copy(list);
    char *lh = lower_copy(host);
    if (ll && lh) {
        CHECK(up_proxy_no_proxy_match(ll, lh, port) == m);
    }
    up_free(ll);
    up_free(lh);
}

static bool host_bits_clear(const struct up_cidr *c)
{
    for (unsigned i = c->bits; i < 128; i++) {
        if (c->addr[i / 8] & (0x80u >> (i % 8))) {
            return false;
        }
    }
    return true;
}

static void check_cidr(const uint8_t *data, size_t size, const char *text)
{
    struct up_cidr c;
    if (up_cidr_parse((const char *)data, size, &c) == UP_OK) {
        CHECK(c.bits <= 128 && host_bits_clear(&c));
        CHECK(up_cidr_match(&c, c.addr));
    }
    uint8_t a[16];
    if (up_ip_parse((const char *)data, size, a) == UP_OK) {
        CHECK(up_cidr_parse((const char *)data, size, &c) == UP_OK);
        CHECK(c.bits == 128 && memcmp(c.addr, a, 16) == 0 && up_cidr_match(&c, a));
    }

    struct up_cidr_list *l = up_calloc(1, sizeof *l);
    if (!l) {
        return;
    }
    const char *why = NULL;
    int rv = up_cidr_list_add(l, text, &why);
    if (rv == UP_OK) {
        CHECK(why == NULL && l->n <= UP_CIDR_LIST_MAX);
        for (size_t i = 0; i < l->n; i++) {
            CHECK(l->v[i].bits <= 128 && host_bits_clear(&l->v[i]));
            CHECK(up_cidr_list_match(l, l->v[i].addr));
        }
        /* A second add of the same text refuses or fits, never overflows. */
        size_t n1 = l->n;
        rv = up_cidr_list_add(l, text, &why);
        CHECK(rv == UP_OK ? l->n == 2 * n1 : (rv == UP_ELIMIT && l->n == n1 && one_line(why)));
    } else {
        CHECK((rv == UP_EINVAL || rv == UP_ELIMIT) && one_line(why) && l->n == 0);
    }
    up_free(l);
}

static void check_connect_host(const char *host)
{
    struct up_proxy p;
    memset(&p, 0, sizeof p);
    p.has_auth = true;
    memcpy(p.user, "u", 2);
    memcpy(p.pass, "p", 2);
    char *req = up_malloc(REQ_CAP + strlen(host) * 2);
    if (!req) {
        return;
    }
    size_t len = 0;
    int rv = up_proxy_connect_request(&p, host, 8443, req, REQ_CAP + strlen(host) * 2, &len);
    if (rv == UP_OK) {
        check_request(req, len, true);
    } else {
        CHECK(rv == UP_EINVAL && len == 0);
    }
    up_free(req);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = dup_text(data, size);
    if (!text) {
        return 0;
    }
    check_parse(text);
    check_cidr(data, size, text);
    check_connect_host(text);
    check_no_proxy(text); /* last: it cuts text into pieces */
    up_free(text);
    return 0;
}
