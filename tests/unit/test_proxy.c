/* Unit tests for src/base/cidr.c (IP blocks) and src/proto/proxy.c (proxy URLs, NO_PROXY,
 * the choice of proxy from flags and environment, and the CONNECT request). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "base/cidr.h"
#include "proto/proxy.h"

/* ---- CIDR ---------------------------------------------------------------------------- */

static void ip(const char *s, uint8_t out[16])
{
    assert_int_equal(up_ip_parse(s, strlen(s), out), UP_OK);
}

static int cidr(const char *s, struct up_cidr *c)
{
    memset(c, 0xaa, sizeof *c);
    return up_cidr_parse(s, strlen(s), c);
}

static void test_cidr_ip_parse(void **state)
{
    (void)state;
    uint8_t a[16];
    /* RFC 4291 §2.5.5.2: IPv4 as ::ffff:a.b.c.d */
    static const uint8_t v4[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 1, 2, 3};
    ip("10.1.2.3", a);
    assert_memory_equal(a, v4, 16);
    ip("::ffff:10.1.2.3", a);
    assert_memory_equal(a, v4, 16);
    ip("::FFFF:a01:203", a);
    assert_memory_equal(a, v4, 16);

    static const uint8_t v6[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    ip("2001:db8::1", a);
    assert_memory_equal(a, v6, 16);
    ip("[2001:db8::1]", a);
    assert_memory_equal(a, v6, 16);
    ip("2001:0DB8:0:0:0:0:0:1", a);
    assert_memory_equal(a, v6, 16);

    /* Not NUL-terminated: only len bytes count. */
    assert_int_equal(up_ip_parse("10.1.2.3xyz", 8, a), UP_OK);
    assert_memory_equal(a, v4, 16);

    static const char *const bad[] = {
        "",          "1.2.3",     "1.2.3.4.5",   "256.1.1.1", "1.2.3.4 ", " 1.2.3.4",
        "[1.2.3.4]", "[::1",      "::1]",        "[]",        ":::",      "fe80::1%eth0",
        "host",      "1.2.3.4/8", "2001:db8::g", "[",         "1.2.3.-4",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(a, 0x55, sizeof a);
        assert_int_equal(up_ip_parse(bad[i], strlen(bad[i]), a), UP_EINVAL);
    }
    /* An embedded NUL must not cut the text short. */
    assert_int_equal(up_ip_parse("1.2.3.4\0", 8, a), UP_EINVAL);
    assert_int_equal(up_ip_parse(NULL, 0, a), UP_EINVAL);
    char longer[80];
    memset(longer, '1', sizeof longer);
    assert_int_equal(up_ip_parse(longer, sizeof longer, a), UP_EINVAL);
}

static void test_cidr_parse_v4(void **state)
{
    (void)state;
    struct up_cidr c;
    static const uint8_t want[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 0};
    assert_int_equal(cidr("10.1.2.3/8", &c), UP_OK);
    assert_memory_equal(c.addr, want, 16);
    assert_int_equal(c.bits, 104);

    /* Bare address: a /32, i.e. /128 in the mapped space. */
    static const uint8_t host[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 7};
    assert_int_equal(cidr("192.0.2.7", &c), UP_OK);
    assert_memory_equal(c.addr, host, 16);
    assert_int_equal(c.bits, 128);

    /* Host bits cleared across a byte boundary: 192.168.1.255/23 -> 192.168.0.0. */
    static const uint8_t net23[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 168, 0, 0};
    assert_int_equal(cidr("192.168.1.255/23", &c), UP_OK);
    assert_memory_equal(c.addr, net23, 16);
    assert_int_equal(c.bits, 119);

    /* /0 keeps the mapped prefix: all of IPv4, none of IPv6. */
    static const uint8_t all4[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0};
    assert_int_equal(cidr("1.2.3.4/0", &c), UP_OK);
    assert_memory_equal(c.addr, all4, 16);
    assert_int_equal(c.bits, 96);
    assert_int_equal(cidr("1.2.3.4/32", &c), UP_OK);
    assert_int_equal(c.bits, 128);
    assert_int_equal(c.addr[15], 4);

    assert_int_equal(cidr("1.2.3.4/33", &c), UP_EINVAL);
    assert_int_equal(cidr("1.2.3.4/100", &c), UP_EINVAL);
    assert_int_equal(cidr("1.2.3.4/", &c), UP_EINVAL);
    assert_int_equal(cidr("1.2.3.4/-1", &c), UP_EINVAL);
    assert_int_equal(cidr("1.2.3.4/+8", &c), UP_EINVAL);
    assert_int_equal(cidr("1.2.3.4/8a", &c), UP_EINVAL);
    assert_int_equal(cidr("1.2.3.4/0008", &c), UP_EINVAL);
    assert_int_equal(cidr("1.2.3.4/8/8", &c), UP_EINVAL);
    assert_int_equal(cidr("/8", &c), UP_EINVAL);
    assert_int_equal(cidr("10/8", &c), UP_EINVAL);
    assert_int_equal(cidr("example.com/8", &c), UP_EINVAL);
    assert_int_equal(cidr("", &c), UP_EINVAL);
    /* Only len bytes count. */
    assert_int_equal(up_cidr_parse("10.0.0.0/8garbage", 10, &c), UP_OK);
    assert_int_equal(c.bits, 104);
}

static void test_cidr_parse_v6(void **state)
{
    (void)state;
    struct up_cidr c;
    static const uint8_t want[16] = {0x20, 0x01, 0x0d, 0xb8};
    assert_int_equal(cidr("2001:db8:1234::1/32", &c), UP_OK);
    assert_memory_equal(c.addr, want, 16);
    assert_int_equal(c.bits, 32);

    /* ffff::ffff/15 -> fffe:: */
    static const uint8_t fffe[16] = {0xff, 0xfe};
    assert_int_equal(cidr("ffff::ffff/15", &c), UP_OK);
    assert_memory_equal(c.addr, fffe, 16);
    assert_int_equal(c.bits, 15);

    static const uint8_t one[16] = {[15] = 1};
    assert_int_equal(cidr("::1", &c), UP_OK);
    assert_memory_equal(c.addr, one, 16);
    assert_int_equal(c.bits, 128);
    assert_int_equal(cidr("[::1]/128", &c), UP_OK);
    assert_int_equal(c.bits, 128);

    static const uint8_t zero[16] = {0};
    assert_int_equal(cidr("fd00::1/0", &c), UP_OK);
    assert_memory_equal(c.addr, zero, 16);
    assert_int_equal(c.bits, 0);

    /* A v4-mapped block written in v6 takes a v6 prefix length. */
    static const uint8_t m[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 0};
    assert_int_equal(cidr("::ffff:10.9.9.9/104", &c), UP_OK);
    assert_memory_equal(c.addr, m, 16);
    assert_int_equal(c.bits, 104);

    assert_int_equal(cidr("::/129", &c), UP_EINVAL);
    assert_int_equal(cidr("::/1280", &c), UP_EINVAL);
    assert_int_equal(cidr("[::1/64]", &c), UP_EINVAL);
    assert_int_equal(cidr("fd00:::/8", &c), UP_EINVAL);
}

static void test_cidr_match(void **state)
{
    (void)state;
    struct up_cidr c;
    uint8_t a[16];
    assert_int_equal(cidr("10.0.0.0/8", &c), UP_OK);
    ip("10.1.2.3", a);
    assert_true(up_cidr_match(&c, a));
    ip("::ffff:10.255.255.255", a);
    assert_true(up_cidr_match(&c, a));
    ip("11.0.0.0", a);
    assert_false(up_cidr_match(&c, a));
    ip("9.255.255.255", a);
    assert_false(up_cidr_match(&c, a));
    ip("::a01:203", a); /* IPv4-compatible, not mapped: a different address */
    assert_false(up_cidr_match(&c, a));

    assert_int_equal(cidr("192.168.0.0/23", &c), UP_OK);
    ip("192.168.1.200", a);
    assert_true(up_cidr_match(&c, a));
    ip("192.168.2.0", a);
    assert_false(up_cidr_match(&c, a));

    /* All of IPv4 is not all of IPv6, but ::/0 is everything. */
    assert_int_equal(cidr("0.0.0.0/0", &c), UP_OK);
    ip("2001:db8::1", a);
    assert_false(up_cidr_match(&c, a));
    ip("8.8.8.8", a);
    assert_true(up_cidr_match(&c, a));
    assert_int_equal(cidr("::/0", &c), UP_OK);
    assert_true(up_cidr_match(&c, a));

    assert_int_equal(cidr("fd00::/8", &c), UP_OK);
    ip("fdff:1::2", a);
    assert_true(up_cidr_match(&c, a));
    ip("fe00::", a);
    assert_false(up_cidr_match(&c, a));

    assert_int_equal(cidr("192.0.2.7", &c), UP_OK);
    ip("192.0.2.7", a);
    assert_true(up_cidr_match(&c, a));
    ip("192.0.2.6", a);
    assert_false(up_cidr_match(&c, a));
}

static void test_cidr_list(void **state)
{
    (void)state;
    struct up_cidr_list l = {.n = 0};
    const char *why = "unset";
    assert_int_equal(up_cidr_list_add(&l, " 10.0.0.0/8 ,192.168.0.0/16,, fd00::/8 ,", &why), UP_OK);
    assert_null(why);
    assert_int_equal(l.n, 3);
    assert_int_equal(l.v[0].bits, 104);
    assert_int_equal(l.v[1].bits, 112);
    assert_int_equal(l.v[2].bits, 8);
    assert_int_equal(up_cidr_list_add(&l, "\t127.0.0.1\t", &why), UP_OK);
    assert_int_equal(l.n, 4);
    assert_int_equal(up_cidr_list_add(&l, "", &why), UP_OK);
    assert_int_equal(up_cidr_list_add(&l, " , ", &why), UP_OK);
    assert_int_equal(l.n, 4);

    uint8_t a[16];
    ip("10.9.8.7", a);
    assert_true(up_cidr_list_match(&l, a));
    ip("192.168.44.1", a);
    assert_true(up_cidr_list_match(&l, a));
    ip("fd12::1", a);
    assert_true(up_cidr_list_match(&l, a));
    ip("127.0.0.1", a);
    assert_true(up_cidr_list_match(&l, a));
    ip("127.0.0.2", a);
    assert_false(up_cidr_list_match(&l, a));
    ip("172.16.0.1", a);
    assert_false(up_cidr_list_match(&l, a));

    struct up_cidr_list empty = {.n = 0};
    assert_false(up_cidr_list_match(&empty, a));
}

static void test_cidr_list_errors(void **state)
{
    (void)state;
    struct up_cidr_list l = {.n = 0};
    const char *why = NULL;
    assert_int_equal(up_cidr_list_add(&l, "10.0.0.0/8", &why), UP_OK);

    /* A refused string leaves the list as it was, even when earlier entries parsed. */
    assert_int_equal(up_cidr_list_add(&l, "192.168.0.0/16, bogus", &why), UP_EINVAL);
    assert_string_equal(why, "cidr: bad address");
    assert_int_equal(l.n, 1);
    assert_int_equal(up_cidr_list_add(&l, "10.0.0.0/33", &why), UP_EINVAL);
    assert_string_equal(why, "cidr: IPv4 prefix length above 32");
    assert_int_equal(up_cidr_list_add(&l, "::/129", &why), UP_EINVAL);
    assert_string_equal(why, "cidr: IPv6 prefix length above 128");
    assert_int_equal(up_cidr_list_add(&l, "10.0.0.0/x", &why), UP_EINVAL);
    assert_string_equal(why, "cidr: bad prefix length");
    assert_int_equal(up_cidr_list_add(&l, "10.0.0.0 /8", &why), UP_EINVAL);
    assert_string_equal(why, "cidr: bad address");
    assert_int_equal(up_cidr_list_add(&l, "10.0.0.0;11.0.0.0", &why), UP_EINVAL);
    assert_int_equal(l.n, 1);
    assert_int_equal(up_cidr_list_add(&l, NULL, &why), UP_EINVAL);
    assert_non_null(why);
    /* why may be NULL. */
    assert_int_equal(up_cidr_list_add(&l, "nope", NULL), UP_EINVAL);
    assert_int_equal(l.n, 1);
}

static void test_cidr_list_limit(void **state)
{
    (void)state;
    struct up_cidr_list l = {.n = 0};
    const char *why = NULL;
    char buf[UP_CIDR_LIST_MAX * 16 + 16];
    size_t off = 0;
    /* UP_CIDR_LIST_MAX - 1 entries in one string, then the last one alone: limit-1, limit. */
    for (unsigned i = 0; i < UP_CIDR_LIST_MAX - 1; i++) {
        int n = snprintf(buf + off, sizeof buf - off, "%s10.%u.0.0/16", i ? "," : "", i);
        off += (size_t)n;
    }
    assert_int_equal(up_cidr_list_add(&l, buf, &why), UP_OK);
    assert_int_equal(l.n, UP_CIDR_LIST_MAX - 1);
    /* limit+1 in one call: refused as a whole. */
    assert_int_equal(up_cidr_list_add(&l, "1.1.1.1,2.2.2.2", &why), UP_ELIMIT);
    assert_string_equal(why, "cidr: too many blocks");
    assert_int_equal(l.n, UP_CIDR_LIST_MAX - 1);
    assert_int_equal(up_cidr_list_add(&l, "1.1.1.1", &why), UP_OK);
    assert_int_equal(l.n, UP_CIDR_LIST_MAX);
    assert_int_equal(up_cidr_list_add(&l, "2.2.2.2", &why), UP_ELIMIT);
    assert_int_equal(l.n, UP_CIDR_LIST_MAX);
    /* Nothing to add still fits. */
    assert_int_equal(up_cidr_list_add(&l, " ", &why), UP_OK);

    uint8_t a[16];
    ip("10.62.1.1", a);
    assert_true(up_cidr_list_match(&l, a));
    ip("1.1.1.1", a);
    assert_true(up_cidr_list_match(&l, a));
    ip("2.2.2.2", a);
    assert_false(up_cidr_list_match(&l, a));
}

/* ---- proxy URLs ---------------------------------------------------------------------- */

static struct up_proxy parse_ok(const char *url)
{
    struct up_proxy p;
    const char *why = "unset";
    memset(&p, 0x5a, sizeof p);
    assert_int_equal(up_proxy_parse(url, &p, &why), UP_OK);
    assert_null(why);
    return p;
}

static void parse_bad(const char *url, const char *want_why)
{
    struct up_proxy p;
    const char *why = NULL;
    memset(&p, 0x5a, sizeof p);
    assert_int_equal(up_proxy_parse(url, &p, &why), UP_EINVAL);
    assert_non_null(why);
    assert_string_equal(why, want_why);
    /* Nothing half-parsed survives, credentials least of all. */
    assert_false(p.has_auth);
    assert_string_equal(p.user, "");
    assert_string_equal(p.pass, "");
    assert_string_equal(p.host, "");
}

static void test_proxy_parse_basic(void **state)
{
    (void)state;
    struct up_proxy p = parse_ok("http://proxy.example.com:3128");
    assert_false(p.tls);
    assert_string_equal(p.host, "proxy.example.com");
    assert_int_equal(p.port, 3128);
    assert_false(p.has_auth);
    assert_string_equal(p.user, "");
    assert_string_equal(p.pass, "");

    p = parse_ok("http://proxy.example.com");
    assert_int_equal(p.port, 80);
    p = parse_ok("http://proxy.example.com/");
    assert_int_equal(p.port, 80);
    p = parse_ok("https://proxy.example.com");
    assert_true(p.tls);
    assert_int_equal(p.port, 443);
    p = parse_ok("https://proxy.example.com:8443/");
    assert_true(p.tls);
    assert_int_equal(p.port, 8443);
    p = parse_ok("HTTPS://Proxy.Example.COM");
    assert_true(p.tls);
    assert_string_equal(p.host, "Proxy.Example.COM");
    p = parse_ok("HtTp://10.0.0.1:8080");
    assert_false(p.tls);
    assert_string_equal(p.host, "10.0.0.1");
    assert_int_equal(p.port, 8080);
    /* RFC 3986 §3.2.3: an empty port is the default. */
    p = parse_ok("http://proxy:");
    assert_int_equal(p.port, 80);
    p = parse_ok("http://proxy:1");
    assert_int_equal(p.port, 1);
    p = parse_ok("http://proxy:65535");
    assert_int_equal(p.port, 65535);
    p = parse_ok("http://proxy:00080");
    assert_int_equal(p.port, 80);
    p = parse_ok("http://my_proxy-1.corp");
    assert_string_equal(p.host, "my_proxy-1.corp");
}

static void test_proxy_parse_bare(void **state)
{
    (void)state;
    /* A bare host:port is http://, as curl takes it. */
    struct up_proxy p = parse_ok("proxy.corp:3128");
    assert_false(p.tls);
    assert_string_equal(p.host, "proxy.corp");
    assert_int_equal(p.port, 3128);
    p = parse_ok("proxy.corp");
    assert_false(p.tls);
    assert_int_equal(p.port, 80);
    p = parse_ok("user:pw@proxy.corp:8080");
    assert_true(p.has_auth);
    assert_string_equal(p.user, "user");
    assert_string_equal(p.pass, "pw");
    assert_int_equal(p.port, 8080);
    p = parse_ok("[::1]:3128");
    assert_string_equal(p.host, "::1");
    assert_int_equal(p.port, 3128);
    /* "socks5h:1080" has no "://": a host called socks5h. */
    p = parse_ok("socks5h:1080");
    assert_string_equal(p.host, "socks5h");
    assert_int_equal(p.port, 1080);
}

static void test_proxy_parse_ipv6(void **state)
{
    (void)state;
    struct up_proxy p = parse_ok("http://[2001:db8::1]:8080/");
    assert_string_equal(p.host, "2001:db8::1");
    assert_int_equal(p.port, 8080);
    p = parse_ok("https://[::ffff:10.0.0.1]");
    assert_string_equal(p.host, "::ffff:10.0.0.1");
    assert_int_equal(p.port, 443);
    p = parse_ok("http://u:p@[::1]");
    assert_string_equal(p.host, "::1");
    assert_string_equal(p.user, "u");

    parse_bad("http://::1:8080", "proxy: IPv6 address must be in brackets");
    parse_bad("http://[::1:8080", "proxy: unclosed '[' in host");
    parse_bad("http://[10.0.0.1]:8080", "proxy: bad IPv6 address in brackets");
    parse_bad("http://[]:8080", "proxy: bad IPv6 address in brackets");
    parse_bad("http://[fe80::1%25eth0]", "proxy: bad IPv6 address in brackets");
    parse_bad("http://[::1]x", "proxy: junk after ']' in host");
    parse_bad("http://[::1]:0", "proxy: port out of range (1-65535)");
}

static void test_proxy_parse_credentials(void **state)
{
    (void)state;
    struct up_proxy p = parse_ok("http://user:pass@proxy:3128");
    assert_true(p.has_auth);
    assert_string_equal(p.user, "user");
    assert_string_equal(p.pass, "pass");
    assert_string_equal(p.host, "proxy");
    assert_int_equal(p.port, 3128);

    p = parse_ok("http://a%40b:p%3Ass%25@proxy:3128");
    assert_string_equal(p.user, "a@b");
    assert_string_equal(p.pass, "p:ss%");
    /* The first ':' splits; a raw ':' in the password stays. Lowercase hex too. */
    p = parse_ok("http://a%40b:p:ss%25@proxy");
    assert_string_equal(p.user, "a@b");
    assert_string_equal(p.pass, "p:ss%");
    p = parse_ok("http://%7e%7E:%2f@proxy");
    assert_string_equal(p.user, "~~");
    assert_string_equal(p.pass, "/");
    /* The last '@' ends the userinfo. */
    p = parse_ok("http://u:p@ss@proxy");
    assert_string_equal(p.user, "u");
    assert_string_equal(p.pass, "p@ss");
    assert_string_equal(p.host, "proxy");
    /* User only; empty password; empty user. */
    p = parse_ok("http://user@proxy");
    assert_true(p.has_auth);
    assert_string_equal(p.user, "user");
    assert_string_equal(p.pass, "");
    p = parse_ok("http://user:@proxy");
    assert_true(p.has_auth);
    assert_string_equal(p.pass, "");
    p = parse_ok("http://:secret@proxy");
    assert_true(p.has_auth);
    assert_string_equal(p.user, "");
    assert_string_equal(p.pass, "secret");
    /* "@" with nothing before it carries no credentials. */
    p = parse_ok("http://@proxy");
    assert_false(p.has_auth);
    /* Other bytes, decoded: tab, UTF-8, space. */
    p = parse_ok("http://%09x:%C3%A9%20@proxy");
    assert_string_equal(p.user, "\tx");
    assert_string_equal(p.pass, "\xc3\xa9 ");

    /* UP_PROXY_MAX_CRED at the limit and one above. */
    char url[1200];
    char cred[UP_PROXY_MAX_CRED + 2];
    memset(cred, 'x', sizeof cred);
    cred[UP_PROXY_MAX_CRED] = '\0';
    snprintf(url, sizeof url, "http://%s:%s@proxy", cred, cred);
    p = parse_ok(url);
    assert_int_equal(strlen(p.user), UP_PROXY_MAX_CRED);
    assert_int_equal(strlen(p.pass), UP_PROXY_MAX_CRED);
    cred[UP_PROXY_MAX_CRED] = 'x';
    cred[UP_PROXY_MAX_CRED + 1] = '\0';
    snprintf(url, sizeof url, "http://%s:pw@proxy", cred);
    parse_bad(url, "proxy: credentials too long");
    snprintf(url, sizeof url, "http://u:%s@proxy", cred);
    parse_bad(url, "proxy: credentials too long");
    /* 255 escapes decode to 255 bytes: fits. */
    size_t off = (size_t)snprintf(url, sizeof url, "http://u:");
    for (int i = 0; i < UP_PROXY_MAX_CRED; i++) {
        off += (size_t)snprintf(url + off, sizeof url - off, "%%41");
    }
    snprintf(url + off, sizeof url - off, "@proxy");
    p = parse_ok(url);
    assert_int_equal(strlen(p.pass), UP_PROXY_MAX_CRED);
    assert_int_equal(p.pass[0], 'A');
}

static void test_proxy_parse_credential_errors(void **state)
{
    (void)state;
    parse_bad("http://u:p%4@proxy", "proxy: bad percent escape in credentials");
    parse_bad("http://u:p%@proxy", "proxy: bad percent escape in credentials");
    parse_bad("http://u:p%zz@proxy", "proxy: bad percent escape in credentials");
    parse_bad("http://u%g1:p@proxy", "proxy: bad percent escape in credentials");
    parse_bad("http://u:%00@proxy", "proxy: control character in credentials");
    parse_bad("http://u:a%0db@proxy", "proxy: control character in credentials");
    parse_bad("http://u%0A:p@proxy", "proxy: control character in credentials");
    parse_bad("http://u:\r@proxy", "proxy: control character in credentials");
    parse_bad("http://a%3ab:p@proxy", "proxy: ':' in user name");
    parse_bad("http://a%3Ab@proxy", "proxy: ':' in user name");

    /* The reason never carries the password. */
    struct up_proxy p;
    const char *why = NULL;
    assert_int_equal(up_proxy_parse("http://u:hunter2%zz@proxy", &p, &why), UP_EINVAL);
    assert_null(strstr(why, "hunter2"));
}

static void test_proxy_parse_errors(void **state)
{
    (void)state;
    parse_bad("socks5://proxy:1080", "proxy: socks5:// is not supported (HTTP proxies only)");
    parse_bad("SOCKS5H://proxy:1080", "proxy: socks5h:// is not supported (HTTP proxies only)");
    parse_bad("socks4://proxy:1080", "proxy: socks4:// is not supported (HTTP proxies only)");
    parse_bad("socks4a://proxy", "proxy: socks4a:// is not supported (HTTP proxies only)");
    parse_bad("socks://proxy", "proxy: socks:// is not supported (HTTP proxies only)");
    parse_bad("ftp://proxy", "proxy: unsupported scheme (only http:// and https://)");
    parse_bad("httpx://proxy", "proxy: unsupported scheme (only http:// and https://)");
    parse_bad("", "proxy: empty URL");
    parse_bad("http://", "proxy: missing host");
    parse_bad("http:///", "proxy: missing host");
    parse_bad("http://:3128", "proxy: missing host");
    parse_bad("http://user:pw@", "proxy: missing host");
    parse_bad("http://user:pw@:80", "proxy: missing host");
    parse_bad(":3128", "proxy: missing host");
    parse_bad("http://proxy:80a", "proxy: bad port");
    parse_bad("http://proxy:-1", "proxy: bad port");
    parse_bad("http://proxy:+80", "proxy: bad port");
    parse_bad("http://proxy:8 0", "proxy: bad port");
    parse_bad("http://proxy:0", "proxy: port out of range (1-65535)");
    parse_bad("http://proxy:65536", "proxy: port out of range (1-65535)");
    parse_bad("http://proxy:99999", "proxy: port out of range (1-65535)");
    parse_bad("http://proxy:4294967377", "proxy: port out of range (1-65535)");
    parse_bad("http://proxy:3128/path", "proxy: URL has a path, query or fragment");
    parse_bad("http://proxy//", "proxy: URL has a path, query or fragment");
    parse_bad("http://proxy?x", "proxy: URL has a path, query or fragment");
    parse_bad("http://proxy#x", "proxy: URL has a path, query or fragment");
    parse_bad("http://pro xy", "proxy: bad character in host");
    parse_bad("http://proxy\r\n:80", "proxy: bad character in host");
    parse_bad("http://pr%6fxy", "proxy: bad character in host");
    parse_bad("http:/proxy", "proxy: URL has a path, query or fragment");

    char url[300];
    char host[257];
    memset(host, 'h', sizeof host);
    host[255] = '\0';
    snprintf(url, sizeof url, "http://%s:1", host);
    struct up_proxy p = parse_ok(url);
    assert_int_equal(strlen(p.host), 255);
    host[255] = 'h';
    host[256] = '\0';
    snprintf(url, sizeof url, "http://%s:1", host);
    parse_bad(url, "proxy: host name too long");

    const char *why = NULL;
    assert_int_equal(up_proxy_parse(NULL, &p, &why), UP_EINVAL);
    assert_non_null(why);
    assert_int_equal(up_proxy_parse("http://proxy", NULL, &why), UP_EINVAL);
    assert_int_equal(up_proxy_parse("http://proxy", &p, NULL), UP_OK);
}

/* ---- CONNECT ------------------------------------------------------------------------- */

static void connect_ok(const struct up_proxy *p, const char *host, uint16_t port, const char *want)
{
    char out[2048];
    size_t len = 12345;
    memset(out, 'z', sizeof out);
    assert_int_equal(up_proxy_connect_request(p, host, port, out, sizeof out, &len), UP_OK);
    assert_string_equal(out, want);
    assert_int_equal(len, strlen(want));
}

static void test_proxy_connect_request(void **state)
{
    (void)state;
    struct up_proxy p = parse_ok("http://proxy:3128");
    connect_ok(&p, "relay.example.com", 443,
               "CONNECT relay.example.com:443 HTTP/1.1\r\n"
               "Host: relay.example.com:443\r\n"
               "User-Agent: underpass\r\n"
               "\r\n");
    connect_ok(&p, "10.0.0.1", 80,
               "CONNECT 10.0.0.1:80 HTTP/1.1\r\n"
               "Host: 10.0.0.1:80\r\n"
               "User-Agent: underpass\r\n"
               "\r\n");
    /* IPv6 in brackets (RFC 3986 §3.2.2), given with or without them. */
    connect_ok(&p, "2001:db8::1", 8443,
               "CONNECT [2001:db8::1]:8443 HTTP/1.1\r\n"
               "Host: [2001:db8::1]:8443\r\n"
               "User-Agent: underpass\r\n"
               "\r\n");
    connect_ok(&p, "[::1]", 65535,
               "CONNECT [::1]:65535 HTTP/1.1\r\n"
               "Host: [::1]:65535\r\n"
               "User-Agent: underpass\r\n"
               "\r\n");
}

static void test_proxy_connect_request_auth(void **state)
{
    (void)state;
    /* RFC 7617 §2: base64("user:pass") = dXNlcjpwYXNz */
    struct up_proxy p = parse_ok("http://user:pass@proxy:3128");
    connect_ok(&p, "relay.example.com", 443,
               "CONNECT relay.example.com:443 HTTP/1.1\r\n"
               "Host: relay.example.com:443\r\n"
               "Proxy-Authorization: Basic dXNlcjpwYXNz\r\n"
               "User-Agent: underpass\r\n"
               "\r\n");
    /* base64("a@b:p:ss%") = YUBiOnA6c3Ml */
    p = parse_ok("https://a%40b:p%3Ass%25@proxy");
    connect_ok(&p, "::1", 443,
               "CONNECT [::1]:443 HTTP/1.1\r\n"
               "Host: [::1]:443\r\n"
               "Proxy-Authorization: Basic YUBiOnA6c3Ml\r\n"
               "User-Agent: underpass\r\n"
               "\r\n");
    /* base64("u:") = dTo= */
    p = parse_ok("http://u@proxy");
    connect_ok(&p, "h", 1,
               "CONNECT h:1 HTTP/1.1\r\n"
               "Host: h:1\r\n"
               "Proxy-Authorization: Basic dTo=\r\n"
               "User-Agent: underpass\r\n"
               "\r\n");

    /* Longest credentials: 511 bytes -> 684 base64 characters. */
    memset(&p, 0, sizeof p);
    p.has_auth = true;
    memset(p.user, 'x', UP_PROXY_MAX_CRED);
    memset(p.pass, 'y', UP_PROXY_MAX_CRED);
    char out[2048];
    size_t len = 0;
    assert_int_equal(up_proxy_connect_request(&p, "h", 1, out, sizeof out, &len), UP_OK);
    const char *want_head = "CONNECT h:1 HTTP/1.1\r\nHost: h:1\r\nProxy-Authorization: Basic "
                            "eHh4";
    assert_memory_equal(out, want_head, strlen(want_head));
    assert_int_equal(len, 22 + 11 + 27 + 684 + 2 + 25);
    assert_int_equal(len, strlen(out));
}

static void test_proxy_connect_request_errors(void **state)
{
    (void)state;
    struct up_proxy p = parse_ok("http://proxy:3128");
    char out[256];
    size_t len = 99;
    static const char *const bad[] = {
        "",     "a b",          "a\r\nX-Injected: 1",
        "a\n",  "a\r",          "a/b",
        "a@b",  "a?b",          "a#b",
        "1:2",  "fe80::1%eth0", "[::1",
        "[]",   "a%",           "a%4",
        "a%zz", "a\"b",         "a<b",
        "\x7f", "\xc3\xa9",     "[h]",
        "a[b]", "a\\b",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        len = 99;
        assert_int_equal(up_proxy_connect_request(&p, bad[i], 443, out, sizeof out, &len),
                         UP_EINVAL);
        assert_int_equal(len, 0);
    }
    /* RFC 3986 reg-name: sub-delims and percent escapes are allowed. */
    assert_int_equal(
        up_proxy_connect_request(&p, "a-b_c~d!$&'()*+,;=%41", 1, out, sizeof out, &len), UP_OK);
    assert_int_equal(up_proxy_connect_request(NULL, "h", 1, out, sizeof out, &len), UP_EINVAL);
    assert_int_equal(up_proxy_connect_request(&p, NULL, 1, out, sizeof out, &len), UP_EINVAL);
    assert_int_equal(up_proxy_connect_request(&p, "h", 1, out, sizeof out, NULL), UP_EINVAL);
}

static void test_proxy_connect_request_cap(void **state)
{
    (void)state;
    struct up_proxy p = parse_ok("http://user:pass@proxy");
    const char *want = "CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n"
                       "Proxy-Authorization: Basic dXNlcjpwYXNz\r\n"
                       "User-Agent: underpass\r\n\r\n";
    size_t n = strlen(want);
    char out[256];
    size_t len = 0;
    /* Exactly enough room (the NUL included), one byte short, and none. */
    memset(out, 'z', sizeof out);
    assert_int_equal(up_proxy_connect_request(&p, "h", 443, out, n + 1, &len), UP_OK);
    assert_int_equal(len, n);
    assert_string_equal(out, want);
    memset(out, 'z', sizeof out);
    len = 7;
    assert_int_equal(up_proxy_connect_request(&p, "h", 443, out, n, &len), UP_ELIMIT);
    assert_int_equal(len, 0);
    assert_int_equal(out[0], '\0');
    /* The partial output, credentials included, is scrubbed. */
    for (size_t i = 0; i < n; i++) {
        assert_true(out[i] == '\0' || out[i] == 'z');
    }
    assert_int_equal(up_proxy_connect_request(&p, "h", 443, out, 10, &len), UP_ELIMIT);
    assert_int_equal(out[0], '\0');
    assert_int_equal(up_proxy_connect_request(&p, "h", 443, out, 0, &len), UP_ELIMIT);
    assert_int_equal(len, 0);
}

/* ---- NO_PROXY ------------------------------------------------------------------------ */

static void test_proxy_no_proxy_names(void **state)
{
    (void)state;
    assert_true(up_proxy_no_proxy_match("*", "anything.example", 443));
    assert_true(up_proxy_no_proxy_match("a, *", "10.1.2.3", 443));
    assert_true(up_proxy_no_proxy_match("example.com", "example.com", 443));
    assert_true(up_proxy_no_proxy_match("example.com", "a.example.com", 443));
    assert_true(up_proxy_no_proxy_match("example.com", "x.y.example.com", 443));
    assert_false(up_proxy_no_proxy_match("example.com", "badexample.com", 443));
    assert_false(up_proxy_no_proxy_match("example.com", "example.com.evil", 443));
    assert_false(up_proxy_no_proxy_match("a.example.com", "example.com", 443));
    assert_true(up_proxy_no_proxy_match(".example.com", "example.com", 443));
    assert_true(up_proxy_no_proxy_match(".example.com", "a.example.com", 443));
    assert_false(up_proxy_no_proxy_match(".example.com", "badexample.com", 443));
    assert_true(up_proxy_no_proxy_match("EXAMPLE.Com", "a.Example.COM", 443));
    /* Fully qualified names, on either side. */
    assert_true(up_proxy_no_proxy_match("example.com.", "a.example.com", 443));
    assert_true(up_proxy_no_proxy_match("example.com", "a.example.com.", 443));
    /* Spaces and empty entries are ignored. */
    assert_true(up_proxy_no_proxy_match(" , ,foo.org ,  example.com  ,", "example.com", 1));
    assert_true(up_proxy_no_proxy_match("\texample.com\t", "example.com", 1));
    assert_false(up_proxy_no_proxy_match("", "example.com", 1));
    assert_false(up_proxy_no_proxy_match(" , ,", "example.com", 1));
    assert_false(up_proxy_no_proxy_match(".", "example.com", 1));
    assert_false(up_proxy_no_proxy_match("ex ample.com", "example.com", 1));
    assert_false(up_proxy_no_proxy_match("foo.org,bar.org", "example.com", 1));
    assert_false(up_proxy_no_proxy_match(NULL, "example.com", 1));
    assert_false(up_proxy_no_proxy_match("*", NULL, 1));
    assert_false(up_proxy_no_proxy_match("*", "", 1));
    /* "*" is the whole entry, not a glob. */
    assert_false(up_proxy_no_proxy_match("*.example.com", "a.example.com", 1));
    assert_false(up_proxy_no_proxy_match("**", "a", 1));
}

static void test_proxy_no_proxy_ips(void **state)
{
    (void)state;
    assert_true(up_proxy_no_proxy_match("10.1.2.3", "10.1.2.3", 443));
    assert_false(up_proxy_no_proxy_match("10.1.2.3", "10.1.2.4", 443));
    assert_true(up_proxy_no_proxy_match("::1", "::1", 443));
    assert_true(up_proxy_no_proxy_match("[::1]", "::1", 443));
    assert_true(up_proxy_no_proxy_match("2001:DB8::1", "2001:db8:0::1", 443));
    assert_false(up_proxy_no_proxy_match("::1", "::2", 443));
    /* The same address in either notation. */
    assert_true(up_proxy_no_proxy_match("::ffff:10.1.2.3", "10.1.2.3", 443));
    assert_true(up_proxy_no_proxy_match("10.1.2.3", "::ffff:10.1.2.3", 443));
    /* A host given in brackets anyway. */
    assert_true(up_proxy_no_proxy_match("::1", "[::1]", 443));
    /* Names do not suffix-match addresses, and addresses match only addresses. */
    assert_false(up_proxy_no_proxy_match("1.2.3", "10.1.2.3", 443));
    assert_false(up_proxy_no_proxy_match("2.3", "10.1.2.3", 443));
    assert_false(up_proxy_no_proxy_match("10.1.2.3", "10.1.2.3.example", 443));

    /* CIDR blocks match IP-literal hosts only. */
    assert_true(up_proxy_no_proxy_match("10.0.0.0/8", "10.1.2.3", 443));
    assert_false(up_proxy_no_proxy_match("10.0.0.0/8", "11.1.2.3", 443));
    assert_false(up_proxy_no_proxy_match("10.0.0.0/8", "10.example", 443));
    assert_false(up_proxy_no_proxy_match("10.0.0.0/8", "10.0.0.0.example", 443));
    assert_true(up_proxy_no_proxy_match("192.168.0.0/16, fd00::/8", "fd12:3456::1", 443));
    assert_true(up_proxy_no_proxy_match("[fd00::]/8", "fd12:3456::1", 443));
    assert_false(up_proxy_no_proxy_match("fd00::/8", "fe80::1", 443));
    assert_true(up_proxy_no_proxy_match("10.0.0.0/8", "::ffff:10.9.9.9", 443));
    /* A block that does not parse is ignored, not a match, and the rest still counts. */
    assert_false(up_proxy_no_proxy_match("10.0.0.0/33", "10.1.2.3", 443));
    assert_false(up_proxy_no_proxy_match("10.0.0.0/x", "10.1.2.3", 443));
    assert_false(up_proxy_no_proxy_match("bogus/8", "10.1.2.3", 443));
    assert_false(up_proxy_no_proxy_match("example.com/8", "example.com", 443));
    assert_true(up_proxy_no_proxy_match("10.0.0.0/33, 10.0.0.0/8", "10.1.2.3", 443));
}

static void test_proxy_no_proxy_ports(void **state)
{
    (void)state;
    assert_true(up_proxy_no_proxy_match("example.com:443", "a.example.com", 443));
    assert_false(up_proxy_no_proxy_match("example.com:443", "a.example.com", 8443));
    assert_true(up_proxy_no_proxy_match(".example.com:8443", "example.com", 8443));
    assert_true(up_proxy_no_proxy_match("10.1.2.3:80", "10.1.2.3", 80));
    assert_false(up_proxy_no_proxy_match("10.1.2.3:80", "10.1.2.3", 81));
    assert_true(up_proxy_no_proxy_match("[::1]:8080", "::1", 8080));
    assert_false(up_proxy_no_proxy_match("[::1]:8080", "::1", 8081));
    assert_true(up_proxy_no_proxy_match("10.0.0.0/8:443", "10.2.2.2", 443));
    assert_false(up_proxy_no_proxy_match("10.0.0.0/8:443", "10.2.2.2", 80));
    assert_true(up_proxy_no_proxy_match("[fd00::]/8:443", "fd00::5", 443));
    assert_false(up_proxy_no_proxy_match("[fd00::]/8:443", "fd00::5", 444));
    assert_true(up_proxy_no_proxy_match("*:443", "x", 443));
    assert_false(up_proxy_no_proxy_match("*:443", "x", 80));
    /* A bare IPv6 address cannot carry a port: "::1:80" is the address ::1:80. */
    assert_false(up_proxy_no_proxy_match("::1:80", "::1", 80));
    assert_true(up_proxy_no_proxy_match("::1:80", "::0.1.0.128", 1));
    /* A bad port makes the entry ignored. */
    assert_false(up_proxy_no_proxy_match("example.com:", "example.com", 443));
    assert_false(up_proxy_no_proxy_match("example.com:0", "example.com", 0));
    assert_false(up_proxy_no_proxy_match("example.com:65536", "example.com", 0));
    assert_false(up_proxy_no_proxy_match("example.com:x", "example.com", 443));
    assert_false(up_proxy_no_proxy_match("[::1]x", "::1", 443));
    assert_false(up_proxy_no_proxy_match("[::1", "::1", 443));
}

/* ---- choosing a proxy ---------------------------------------------------------------- */

struct fake_env {
    const char *names[8];
    const char *values[8];
    int calls;
};

static const char *fake_getenv(const char *name, void *ud)
{
    struct fake_env *env = ud;
    env->calls++;
    for (size_t i = 0; i < 8 && env->names[i]; i++) {
        if (strcmp(env->names[i], name) == 0) {
            return env->values[i];
        }
    }
    return NULL;
}

struct choice {
    int rv;
    bool use;
    const char *source, *why;
    struct up_proxy p;
};

static struct choice choose(bool tls, const char *host, uint16_t port, const char *explicit_url,
                            struct fake_env *env)
{
    struct choice c;
    memset(&c.p, 0x5a, sizeof c.p);
    c.use = true;
    c.source = c.why = "unset";
    c.rv = up_proxy_choose(tls, host, port, explicit_url, env ? fake_getenv : NULL, env, &c.p,
                           &c.use, &c.source, &c.why);
    return c;
}

static void test_proxy_choose_loopback_skips_env(void **state)
{
    (void)state;
    struct fake_env env = {
        .names = {"https_proxy", "http_proxy"},
        .values = {"http://envs:1", "http://env:2"},
    };
    static const char *const lo[] = {"localhost",   "LocalHost", "relay.localhost", "127.0.0.1",
                                     "127.255.0.9", "::1",       "::ffff:127.0.0.1"};
    for (size_t i = 0; i < sizeof lo / sizeof lo[0]; i++) {
        struct choice c = choose(true, lo[i], 443, NULL, &env);
        assert_int_equal(c.rv, UP_OK);
        assert_false(c.use);
        assert_null(c.source);
        c = choose(false, lo[i], 80, NULL, &env);
        assert_false(c.use);
        /* The flag still applies. */
        c = choose(false, lo[i], 80, "http://flag:3128", &env);
        assert_true(c.use);
        assert_string_equal(c.p.host, "flag");
    }
    static const char *const not_lo[] = {"localhost.example.com", "128.0.0.1", "::2", "mylocalhost",
                                         "10.0.0.1"};
    for (size_t i = 0; i < sizeof not_lo / sizeof not_lo[0]; i++) {
        struct choice c = choose(true, not_lo[i], 443, NULL, &env);
        assert_true(c.use);
        assert_string_equal(c.source, "https_proxy");
    }
}

static void test_proxy_choose_explicit(void **state)
{
    (void)state;
    struct fake_env env = {
        .names = {"https_proxy", "http_proxy"},
        .values = {"http://envs:1", "http://env:2"},
    };
    struct choice c = choose(true, "relay", 443, "http://flag:3128", &env);
    assert_int_equal(c.rv, UP_OK);
    assert_true(c.use);
    assert_string_equal(c.source, "--proxy");
    assert_null(c.why);
    assert_string_equal(c.p.host, "flag");
    assert_int_equal(c.p.port, 3128);

    /* "none" and "direct" turn proxies off, the environment included. */
    static const char *const off[] = {"none", "direct", "NONE", "Direct"};
    for (size_t i = 0; i < sizeof off / sizeof off[0]; i++) {
        c = choose(true, "relay", 443, off[i], &env);
        assert_int_equal(c.rv, UP_OK);
        assert_false(c.use);
        assert_string_equal(c.source, "--proxy");
        c = choose(false, "relay", 80, off[i], &env);
        assert_int_equal(c.rv, UP_OK);
        assert_false(c.use);
    }
    /* "" is no flag given: the environment applies. */
    c = choose(false, "relay", 80, "", &env);
    assert_true(c.use);
    assert_string_equal(c.source, "http_proxy");
    assert_string_equal(c.p.host, "env");

    /* No proxy anywhere. */
    c = choose(true, "relay", 443, NULL, NULL);
    assert_int_equal(c.rv, UP_OK);
    assert_false(c.use);
    assert_null(c.source);
    assert_null(c.why);
    struct fake_env empty = {.names = {NULL}};
    c = choose(true, "relay", 443, NULL, &empty);
    assert_int_equal(c.rv, UP_OK);
    assert_false(c.use);
    assert_null(c.source);

    /* A bad flag is an error, whatever the environment holds. */
    c = choose(true, "relay", 443, "socks5://x:1080", &env);
    assert_int_equal(c.rv, UP_EINVAL);
    assert_false(c.use);
    assert_string_equal(c.source, "--proxy");
    assert_string_equal(c.why, "proxy: socks5:// is not supported (HTTP proxies only)");
}

static void test_proxy_choose_env(void **state)
{
    (void)state;
    struct fake_env env = {
        .names = {"https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"},
        .values = {"http://lower-s:1", "http://upper-s:2", "http://lower:3", "http://upper:4"},
    };
    struct choice c = choose(true, "relay", 443, NULL, &env);
    assert_int_equal(c.rv, UP_OK);
    assert_true(c.use);
    assert_string_equal(c.source, "https_proxy");
    assert_string_equal(c.p.host, "lower-s");
    c = choose(false, "relay", 80, NULL, &env);
    assert_true(c.use);
    assert_string_equal(c.source, "http_proxy");
    assert_string_equal(c.p.host, "lower");

    /* Empty counts as unset: uppercase is next. */
    env.values[0] = "";
    env.values[2] = "";
    c = choose(true, "relay", 443, NULL, &env);
    assert_true(c.use);
    assert_string_equal(c.source, "HTTPS_PROXY");
    assert_string_equal(c.p.host, "upper-s");
    c = choose(false, "relay", 80, NULL, &env);
    assert_true(c.use);
    assert_string_equal(c.source, "HTTP_PROXY");
    assert_string_equal(c.p.host, "upper");

    /* wss never falls back to http_proxy, nor ws to https_proxy. */
    struct fake_env only_http = {.names = {"http_proxy"}, .values = {"http://h:1"}};
    c = choose(true, "relay", 443, NULL, &only_http);
    assert_int_equal(c.rv, UP_OK);
    assert_false(c.use);
    struct fake_env only_https = {.names = {"HTTPS_PROXY"}, .values = {"https://s"}};
    c = choose(false, "relay", 80, NULL, &only_https);
    assert_false(c.use);
    c = choose(true, "relay", 443, NULL, &only_https);
    assert_true(c.use);
    assert_true(c.p.tls);
    assert_int_equal(c.p.port, 443);
    assert_string_equal(c.source, "HTTPS_PROXY");

    /* A bad environment value is an error naming the variable. */
    struct fake_env bad = {.names = {"HTTPS_PROXY"}, .values = {"http://proxy:99999"}};
    c = choose(true, "relay", 443, NULL, &bad);
    assert_int_equal(c.rv, UP_EINVAL);
    assert_false(c.use);
    assert_string_equal(c.source, "HTTPS_PROXY");
    assert_string_equal(c.why, "proxy: port out of range (1-65535)");
    /* Even when NO_PROXY would exclude the host. */
    struct fake_env bad_np = {.names = {"http_proxy", "no_proxy"}, .values = {"socks5://x", "*"}};
    c = choose(false, "relay", 80, NULL, &bad_np);
    assert_int_equal(c.rv, UP_EINVAL);
    assert_string_equal(c.source, "http_proxy");
    assert_string_equal(c.why, "proxy: socks5:// is not supported (HTTP proxies only)");
}

static void test_proxy_choose_no_proxy(void **state)
{
    (void)state;
    struct fake_env env = {
        .names = {"https_proxy", "no_proxy", "NO_PROXY"},
        .values = {"http://u:secret@p:1", "internal.corp", "relay.example.com"},
    };
    /* Lowercase wins: NO_PROXY is not read while no_proxy is set. */
    struct choice c = choose(true, "relay.example.com", 443, NULL, &env);
    assert_int_equal(c.rv, UP_OK);
    assert_true(c.use);
    assert_string_equal(c.source, "https_proxy");
    assert_string_equal(c.p.pass, "secret");
    c = choose(true, "a.internal.corp", 443, NULL, &env);
    assert_int_equal(c.rv, UP_OK);
    assert_false(c.use);
    assert_string_equal(c.source, "no_proxy");
    /* Not used: the credentials are not left behind. */
    assert_false(c.p.has_auth);
    assert_string_equal(c.p.pass, "");

    /* Empty no_proxy is unset: NO_PROXY applies. */
    env.values[1] = "";
    c = choose(true, "relay.example.com", 443, NULL, &env);
    assert_false(c.use);
    assert_string_equal(c.source, "NO_PROXY");

    /* NO_PROXY excludes the explicit proxy too, as with curl. */
    c = choose(true, "relay.example.com", 443, "http://flag:8080", &env);
    assert_int_equal(c.rv, UP_OK);
    assert_false(c.use);
    assert_string_equal(c.source, "NO_PROXY");
    c = choose(true, "other.example.com", 443, "http://flag:8080", &env);
    assert_true(c.use);
    assert_string_equal(c.source, "--proxy");

    /* The relay port takes part. */
    struct fake_env ports = {.names = {"http_proxy", "no_proxy"},
                             .values = {"http://p:1", "relay:8080"}};
    c = choose(false, "relay", 8080, NULL, &ports);
    assert_false(c.use);
    c = choose(false, "relay", 80, NULL, &ports);
    assert_true(c.use);

    /* Caller misuse. */
    c = choose(false, NULL, 80, NULL, &ports);
    assert_int_equal(c.rv, UP_EINVAL);
    assert_non_null(c.why);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cidr_ip_parse),
        cmocka_unit_test(test_cidr_parse_v4),
        cmocka_unit_test(test_cidr_parse_v6),
        cmocka_unit_test(test_cidr_match),
        cmocka_unit_test(test_cidr_list),
        cmocka_unit_test(test_cidr_list_errors),
        cmocka_unit_test(test_cidr_list_limit),
        cmocka_unit_test(test_proxy_parse_basic),
        cmocka_unit_test(test_proxy_parse_bare),
        cmocka_unit_test(test_proxy_parse_ipv6),
        cmocka_unit_test(test_proxy_parse_credentials),
        cmocka_unit_test(test_proxy_parse_credential_errors),
        cmocka_unit_test(test_proxy_parse_errors),
        cmocka_unit_test(test_proxy_connect_request),
        cmocka_unit_test(test_proxy_connect_request_auth),
        cmocka_unit_test(test_proxy_connect_request_errors),
        cmocka_unit_test(test_proxy_connect_request_cap),
        cmocka_unit_test(test_proxy_no_proxy_names),
        cmocka_unit_test(test_proxy_no_proxy_ips),
        cmocka_unit_test(test_proxy_no_proxy_ports),
        cmocka_unit_test(test_proxy_choose_explicit),
        cmocka_unit_test(test_proxy_choose_loopback_skips_env),
        cmocka_unit_test(test_proxy_choose_env),
        cmocka_unit_test(test_proxy_choose_no_proxy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
