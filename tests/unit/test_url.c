/* The URL parser (src/proto/url.c): the relay's ws:// and wss:// URL, tcp:// and http:// service
 * targets, --proxy http(s):// URLs. Every scheme and its default port, ports at the edges, IPv6
 * in brackets, userinfo refused, path and query kept, every size limit at limit-1 / limit /
 * limit+1, and each reason (the CLI prints them after the flag's name). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "proto/url.h"

/* Parse s and return the reason, or "ok". */
static const char *parse(const char *s, struct up_url *u)
{
    const char *why = NULL;
    int rv = up_url_parse(s, u, &why);
    if (rv == UP_OK) {
        return "ok";
    }
    assert_int_equal(rv, UP_EINVAL);
    assert_non_null(why);
    return why;
}

static void expect(const char *s, const char *scheme, bool tls, const char *host, uint16_t port,
                   const char *path)
{
    struct up_url u;
    assert_string_equal(parse(s, &u), "ok");
    assert_string_equal(u.scheme, scheme);
    assert_int_equal(u.tls, tls);
    assert_string_equal(u.host, host);
    assert_int_equal(u.port, port);
    assert_string_equal(u.path, path);
}

static void refuse(const char *s, const char *why)
{
    struct up_url u;
    assert_string_equal(parse(s, &u), why);
}

static void test_url_every_scheme_and_default_port(void **state)
{
    (void)state;
    expect("ws://relay.example", "ws", false, "relay.example", 80, "/");
    expect("wss://relay.example", "wss", true, "relay.example", 443, "/");
    expect("http://proxy.example", "http", false, "proxy.example", 80, "/");
    expect("https://proxy.example", "https", true, "proxy.example", 443, "/");
    expect("tcp://127.0.0.1:22", "tcp", false, "127.0.0.1", 22, "/");
    expect("ws://relay.example:8080", "ws", false, "relay.example", 8080, "/");
    expect("wss://relay.example:8443/", "wss", true, "relay.example", 8443, "/");
    expect("http://proxy.example:3128", "http", false, "proxy.example", 3128, "/");
    expect("https://proxy.example:80", "https", true, "proxy.example", 80, "/");
    /* tcp has no default port. */
    refuse("tcp://127.0.0.1", "a port is required");
    refuse("tcp://127.0.0.1/x", "a port is required");
    /* Schemes are compared as written: lowercase only. */
    refuse("WS://relay.example", "unsupported scheme (use ws://, wss:// or tcp://)");
    refuse("ftp://relay.example", "unsupported scheme (use ws://, wss:// or tcp://)");
    refuse("udp://127.0.0.1:53", "unsupported scheme (use ws://, wss:// or tcp://)");
    refuse("w://relay.example", "unsupported scheme (use ws://, wss:// or tcp://)");
    /* The scheme field holds 7 bytes: a longer scheme is not even a scheme. */
    refuse("wssssss://x", "unsupported scheme (use ws://, wss:// or tcp://)");
    refuse("wsssssss://x", "expected scheme://host:port (ws://, wss://, tcp://)");
}

static void test_url_port_edges(void **state)
{
    (void)state;
    refuse("ws://h:0", "bad port");
    expect("ws://h:1", "ws", false, "h", 1, "/");
    expect("ws://h:65535", "ws", false, "h", 65535, "/");
    refuse("ws://h:65536", "bad port");
    refuse("ws://h:99999999999999999999999", "bad port");
    refuse("ws://h:", "bad port");
    refuse("ws://h:-1", "bad port");
    refuse("ws://h:+80", "bad port");
    refuse("ws://h: 80", "bad port");
    refuse("ws://h:80 ", "bad port");
    refuse("ws://h:0x50", "bad port");
    refuse("ws://h:80:81", "bad port");
    /* Leading zeros are digits like any other. */
    expect("tcp://h:00022", "tcp", false, "h", 22, "/");
    expect("tcp://h:22/", "tcp", false, "h", 22, "/");
}

static void test_url_ipv6(void **state)
{
    (void)state;
    expect("ws://[::1]:8080", "ws", false, "::1", 8080, "/");
    expect("wss://[::1]", "wss", true, "::1", 443, "/");
    expect("ws://[2001:db8::7]/tunnel", "ws", false, "2001:db8::7", 80, "/tunnel");
    expect("tcp://[fe80::1%eth0]:22", "tcp", false, "fe80::1%eth0", 22, "/");
    refuse("tcp://[::1]", "a port is required");
    refuse("ws://[::1]:", "bad port");
    refuse("ws://[::1]:0", "bad port");
    refuse("ws://[::1]:65536", "bad port");
    refuse("ws://[::1", "unterminated [IPv6] address");
    refuse("ws://[::1:80", "unterminated [IPv6] address");
    refuse("ws://[::1]80", "garbage after [IPv6] address");
    refuse("ws://[::1]]:80", "garbage after [IPv6] address");
    refuse("ws://[::1] :80", "garbage after [IPv6] address");
    /* Without brackets the first ':' starts the port. */
    refuse("ws://::1:80", "missing or overlong host");
    refuse("ws://2001:db8::1", "bad port");
    /* A ']' without '[' is part of a name (the resolver refuses it later). */
    expect("ws://a]:80", "ws", false, "a]", 80, "/");
}

static void test_url_userinfo_refused(void **state)
{
    (void)state;
    static const char why[] = "credentials in the URL are not supported here";
    refuse("ws://user:pass@relay.example", why);
    refuse("ws://user@relay.example:80/", why);
    refuse("wss://@relay.example", why);
    refuse("http://u:p@[::1]:3128", why);
    /* An '@' in the path is not userinfo. */
    expect("ws://relay.example/a@b", "ws", false, "relay.example", 80, "/a@b");
}

static void test_url_empty_or_missing_parts(void **state)
{
    (void)state;
    static const char scheme[] = "expected scheme://host:port (ws://, wss://, tcp://)";
    static const char host[] = "missing or overlong host";
    const char *why = "unset";
    struct up_url u;
    assert_int_equal(up_url_parse(NULL, &u, &why), UP_EINVAL);
    assert_string_equal(why, scheme);
    refuse("", scheme);
    refuse("relay.example:80", scheme);
    refuse("://relay.example", scheme);
    refuse("ws:/relay.example", scheme);
    refuse("ws//relay.example", scheme);
    refuse("ws://", host);
    refuse("ws:///", host);
    refuse("ws:///path", host);
    refuse("ws://:80", host);
    refuse("tcp://:22", host);
    refuse("ws://[]:80", host);
    refuse("wss://[]", host);
}

static void test_url_path_and_query_kept(void **state)
{
    (void)state;
    expect("ws://h/", "ws", false, "h", 80, "/");
    expect("ws://h/v1/agent", "ws", false, "h", 80, "/v1/agent");
    expect("ws://h:81/v1/agent?services=a,b&x=1", "ws", false, "h", 81,
           "/v1/agent?services=a,b&x=1");
    expect("wss://h/p#frag", "wss", true, "h", 443, "/p#frag");
    expect("ws://h//a//b/", "ws", false, "h", 80, "//a//b/");
    expect("ws://h/?", "ws", false, "h", 80, "/?");
    /* The path starts at the first '/' after the scheme: a '?' before it is part of the host
     * (or of the port, which then does not parse). */
    expect("ws://h?x=1", "ws", false, "h?x=1", 80, "/");
    refuse("ws://h:80?x=1", "bad port");
}

/* s = prefix + n times c + suffix, in buf. */
static const char *build(char *buf, size_t cap, const char *prefix, char c, size_t n,
                         const char *suffix)
{
    size_t pl = strlen(prefix), sl = strlen(suffix);
    assert_true(pl + n + sl < cap);
    memcpy(buf, prefix, pl);
    memset(buf + pl, c, n);
    memcpy(buf + pl + n, suffix, sl + 1);
    return buf;
}

static void test_url_limits(void **state)
{
    (void)state;
    char s[2048];
    struct up_url u;
    const size_t host_cap = sizeof u.host, path_cap = sizeof u.path;
    /* Host: 255 bytes fit, 256 do not (the field is 256 with its NUL). */
    for (size_t n = host_cap - 2; n <= host_cap; n++) {
        const char *why = parse(build(s, sizeof s, "ws://", 'h', n, ":80"), &u);
        assert_string_equal(why, n < host_cap ? "ok" : "missing or overlong host");
        if (n < host_cap) {
            assert_int_equal(strlen(u.host), n);
            assert_int_equal(u.port, 80);
        }
    }
    for (size_t n = host_cap - 2; n <= host_cap; n++) {
        const char *why = parse(build(s, sizeof s, "ws://[", 'a', n, "]:80"), &u);
        assert_string_equal(why, n < host_cap ? "ok" : "host too long");
    }
    /* host[:port] (before the path): 299 bytes fit, 300 do not, whatever fills them; here a
     * 255-byte host and a port with leading zeros. */
    for (size_t n = 42; n <= 44; n++) {
        char port[64];
        memset(port, '0', n - 2);
        memcpy(port + n - 2, "80", 3);
        build(s, sizeof s, "ws://", 'h', host_cap - 1, ":");
        memcpy(s + strlen(s), port, n + 1);
        const char *why = parse(s, &u);
        assert_int_equal(strlen(s) - strlen("ws://"), host_cap + n);
        assert_string_equal(why, host_cap + n < 300 ? "ok" : "missing or overlong host");
    }
    /* Path: 511 bytes fit, 512 do not. */
    for (size_t n = path_cap - 2; n <= path_cap; n++) {
        const char *why = parse(build(s, sizeof s, "ws://h/", 'p', n - 1, ""), &u);
        assert_string_equal(why, n < path_cap ? "ok" : "path too long");
        if (n < path_cap) {
            assert_int_equal(strlen(u.path), n);
            assert_int_equal(u.path[0], '/');
        }
    }
    /* Scheme: the longest supported one has 5 bytes; a 7-byte unknown one gets its own
     * reason, an 8-byte one does not (see test_url_every_scheme_and_default_port). */
}

static void test_url_garbage(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "ws:",
        "ws:/",
        "://",
        ":///",
        "ws://@",
        "ws://[",
        "ws://[]]",
        "ws://:",
        "ws://::",
        "ws://\x01\x02:\xff",
        "\xff\xfe://x",
        "ws://h:8\x30\x30\x30\x30\x30",
        "ws://h:\xd9\xa1\xd9\xa2",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct up_url u;
        const char *why = "unset";
        assert_int_equal(up_url_parse(bad[i], &u, &why), UP_EINVAL);
        assert_true(why[0] != '\0');
    }
    /* A failed parse leaves no half-filled host behind. */
    struct up_url u;
    const char *why;
    memset(&u, 0x5a, sizeof u);
    assert_int_equal(up_url_parse("ftp://x", &u, &why), UP_EINVAL);
    assert_string_equal(u.host, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_every_scheme_and_default_port),
        cmocka_unit_test(test_url_port_edges),
        cmocka_unit_test(test_url_ipv6),
        cmocka_unit_test(test_url_userinfo_refused),
        cmocka_unit_test(test_url_empty_or_missing_parts),
        cmocka_unit_test(test_url_path_and_query_kept),
        cmocka_unit_test(test_url_limits),
        cmocka_unit_test(test_url_garbage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
