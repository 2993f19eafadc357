/* The agent's --service spec (src/proto/svcspec.c): NAME=tcp://HOST:PORT or http://, with
 * ?proxy-protocol=v1|v2. The error texts are the ones `underpass agent` prints
 * (tests/integration/test_front.py checks one end to end); the name and target limits are
 * tested at limit-1 / limit / limit+1. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "proto/svcspec.h"

static char err[2048];

/* Parse spec and return err, or "ok". */
static const char *parse(const char *spec, struct up_svcspec *s)
{
    err[0] = '\0';
    int rv = up_svcspec_parse(spec, s, err, sizeof err);
    if (rv == UP_OK) {
        return "ok";
    }
    assert_int_equal(rv, UP_EINVAL);
    assert_true(err[0] != '\0');
    return err;
}

static void expect(const char *spec, const char *name, const char *host, uint16_t port, bool http,
                   uint8_t pp)
{
    struct up_svcspec s;
    assert_string_equal(parse(spec, &s), "ok");
    assert_string_equal(s.name, name);
    assert_string_equal(s.host, host);
    assert_int_equal(s.port, port);
    assert_int_equal(s.http, http);
    assert_int_equal(s.proxy_protocol, pp);
}

static void refuse(const char *spec, const char *why)
{
    struct up_svcspec s;
    assert_string_equal(parse(spec, &s), why);
}

static void test_svcspec_tcp_and_http(void **state)
{
    (void)state;
    expect("ssh=tcp://127.0.0.1:22", "ssh", "127.0.0.1", 22, false, 0);
    expect("web=http://localhost:8080", "web", "localhost", 8080, true, 0);
    expect("web=http://localhost", "web", "localhost", 80, true, 0); /* http's default port */
    expect("v6=tcp://[::1]:5432", "v6", "::1", 5432, false, 0);
    expect("A.b_c-9=tcp://db.internal:65535", "A.b_c-9", "db.internal", 65535, false, 0);
    /* A path is accepted and ignored; '=' in the target is part of it. */
    expect("web=http://h:81/ignored", "web", "h", 81, true, 0);
    expect("web=http://h:81/a=b", "web", "h", 81, true, 0);
    /* Every field comes from this spec alone: out is zeroed first. */
    struct up_svcspec s;
    memset(&s, 0x5a, sizeof s);
    assert_string_equal(parse("a=tcp://h:1", &s), "ok");
    assert_int_equal(s.proxy_protocol, 0);
    assert_false(s.http);
    assert_int_equal(s.name[2], '\0');
}

static void test_svcspec_proxy_protocol(void **state)
{
    (void)state;
    expect("pp=tcp://127.0.0.1:22?proxy-protocol=v1", "pp", "127.0.0.1", 22, false, 1);
    expect("pp=tcp://127.0.0.1:22?proxy-protocol=v2", "pp", "127.0.0.1", 22, false, 2);
    expect("web=http://h:80?proxy-protocol=v2", "web", "h", 80, true, 2);
    /* The last one wins; empty pairs and an empty query are nothing. */
    expect("pp=tcp://h:1?proxy-protocol=v1&proxy-protocol=v2", "pp", "h", 1, false, 2);
    expect("pp=tcp://h:1?&&proxy-protocol=v1&", "pp", "h", 1, false, 1);
    expect("pp=tcp://h:1?", "pp", "h", 1, false, 0);
    /* The query starts at the first '?', even after a path. */
    expect("pp=tcp://h:1/x?proxy-protocol=v1", "pp", "h", 1, false, 1);
}

static void test_svcspec_bad_option_or_value(void **state)
{
    (void)state;
    refuse("pp=tcp://127.0.0.1:22?proxy-protocol=v3",
           "--service 'pp=tcp://127.0.0.1:22?proxy-protocol=v3': proxy-protocol must be v1 or "
           "v2, not 'v3'");
    refuse("pp=tcp://h:1?proxy-protocol=", "--service 'pp=tcp://h:1?proxy-protocol=': "
                                           "proxy-protocol must be v1 or v2, not ''");
    refuse("pp=tcp://h:1?proxy-protocol=V1", "--service 'pp=tcp://h:1?proxy-protocol=V1': "
                                             "proxy-protocol must be v1 or v2, not 'V1'");
    refuse("pp=tcp://h:1?proxy-protocol=v1x", "--service 'pp=tcp://h:1?proxy-protocol=v1x': "
                                              "proxy-protocol must be v1 or v2, not 'v1x'");
    refuse("pp=tcp://h:1?foo=1", "--service 'pp=tcp://h:1?foo=1': unknown option 'foo=1' (the "
                                 "only one is ?proxy-protocol=v1 or =v2)");
    refuse("pp=tcp://h:1?proxy-protocol", "--service 'pp=tcp://h:1?proxy-protocol': unknown "
                                          "option 'proxy-protocol' (the only one is "
                                          "?proxy-protocol=v1 or =v2)");
    refuse("pp=tcp://h:1?proxy-protocol=v1&x", "--service 'pp=tcp://h:1?proxy-protocol=v1&x': "
                                               "unknown option 'x' (the only one is "
                                               "?proxy-protocol=v1 or =v2)");
    /* The option or value shown is cut to 32 bytes. */
    char spec[256], want[512];
    snprintf(spec, sizeof spec, "pp=tcp://h:1?%s", "abcdefghijklmnopqrstuvwxyz0123456789");
    snprintf(want, sizeof want,
             "--service '%s': unknown option 'abcdefghijklmnopqrstuvwxyz012345' (the only one is "
             "?proxy-protocol=v1 or =v2)",
             spec);
    refuse(spec, want);
    snprintf(spec, sizeof spec, "pp=tcp://h:1?proxy-protocol=%s",
             "abcdefghijklmnopqrstuvwxyz0123456789");
    snprintf(want, sizeof want,
             "--service '%s': proxy-protocol must be v1 or v2, not "
             "'abcdefghijklmnopqrstuvwxyz012345'",
             spec);
    refuse(spec, want);
}

static void test_svcspec_bad_name(void **state)
{
    (void)state;
    refuse("ssh", "--service 'ssh': expected NAME=tcp://HOST:PORT");
    refuse("", "--service '': expected NAME=tcp://HOST:PORT");
    refuse("=tcp://h:1", "--service '=tcp://h:1': expected NAME=tcp://HOST:PORT");
    refuse("*=tcp://h:1", "--service '*=tcp://h:1': name must be 1-63 of [A-Za-z0-9._-]");
    refuse("a*=tcp://h:1", "--service 'a*=tcp://h:1': name must be 1-63 of [A-Za-z0-9._-]");
    refuse("a b=tcp://h:1", "--service 'a b=tcp://h:1': name must be 1-63 of [A-Za-z0-9._-]");
    refuse("a/b=tcp://h:1", "--service 'a/b=tcp://h:1': name must be 1-63 of [A-Za-z0-9._-]");
    refuse("\xc3\xa9=tcp://h:1",
           "--service '\xc3\xa9=tcp://h:1': name must be 1-63 of [A-Za-z0-9._-]");
    /* The name ends at the first '='. */
    refuse("a?b=tcp://h:1", "--service 'a?b=tcp://h:1': name must be 1-63 of [A-Za-z0-9._-]");
}

static void test_svcspec_name_limit(void **state)
{
    (void)state;
    /* 63 bytes fit; 64 do not fit the field and get the "expected" reason. */
    for (size_t n = UP_TOKEN_MAX_NAME - 1; n <= UP_TOKEN_MAX_NAME + 1; n++) {
        char spec[256], want[512], name[80];
        memset(name, 'n', n);
        name[n] = '\0';
        snprintf(spec, sizeof spec, "%s=tcp://h:1", name);
        struct up_svcspec s;
        if (n <= UP_TOKEN_MAX_NAME) {
            assert_string_equal(parse(spec, &s), "ok");
            assert_string_equal(s.name, name);
        } else {
            snprintf(want, sizeof want, "--service '%s': expected NAME=tcp://HOST:PORT", spec);
            refuse(spec, want);
        }
    }
}

static void test_svcspec_bad_target(void **state)
{
    (void)state;
    static const char scheme[] = "the target must be tcp://HOST:PORT or http://HOST:PORT";
    char want[256];
    snprintf(want, sizeof want, "--service 'x=ws://h:1': %s", scheme);
    refuse("x=ws://h:1", want);
    snprintf(want, sizeof want, "--service 'x=wss://h': %s", scheme);
    refuse("x=wss://h", want);
    snprintf(want, sizeof want, "--service 'x=https://h:443': %s", scheme);
    refuse("x=https://h:443", want);
    /* The URL parser's reasons come through. */
    refuse("x=ftp://h:1", "--service 'x=ftp://h:1': unsupported scheme (use ws://, wss:// or "
                          "tcp://)");
    refuse("x=tcp://h", "--service 'x=tcp://h': a port is required");
    refuse("x=tcp://h:0", "--service 'x=tcp://h:0': bad port");
    refuse("x=tcp://h:65536", "--service 'x=tcp://h:65536': bad port");
    refuse("x=tcp://u@h:1", "--service 'x=tcp://u@h:1': credentials in the URL are not "
                            "supported here");
    refuse("x=tcp://[::1:22", "--service 'x=tcp://[::1:22': unterminated [IPv6] address");
    refuse("x=", "--service 'x=': expected scheme://host:port (ws://, wss://, tcp://)");
    refuse("x=?proxy-protocol=v1", "--service 'x=?proxy-protocol=v1': expected "
                                   "scheme://host:port (ws://, wss://, tcp://)");
    refuse("x=127.0.0.1:22", "--service 'x=127.0.0.1:22': expected scheme://host:port (ws://, "
                             "wss://, tcp://)");
    /* The target is checked before the query. */
    snprintf(want, sizeof want, "--service 'x=ws://h:1?bogus': %s", scheme);
    refuse("x=ws://h:1?bogus", want);
}

static void test_svcspec_target_limit(void **state)
{
    (void)state;
    /* "tcp://" + 255-byte host + ":1" + a path: UP_SVCSPEC_MAX_TARGET bytes fit, one more does
     * not (the query does not count). */
    for (size_t tl = UP_SVCSPEC_MAX_TARGET - 1; tl <= UP_SVCSPEC_MAX_TARGET + 1; tl++) {
        char spec[1024], want[256];
        size_t o = (size_t)snprintf(spec, sizeof spec, "x=tcp://");
        memset(spec + o, 'h', 255);
        o += 255;
        o += (size_t)snprintf(spec + o, sizeof spec - o, ":1/");
        size_t path = tl - (o - 2);
        memset(spec + o, 'p', path);
        o += path;
        snprintf(spec + o, sizeof spec - o, "?proxy-protocol=v2");
        assert_int_equal(strchr(spec, '?') - spec - 2, (ptrdiff_t)tl);
        struct up_svcspec s;
        if (tl <= UP_SVCSPEC_MAX_TARGET) {
            assert_string_equal(parse(spec, &s), "ok");
            assert_int_equal(strlen(s.host), 255);
            assert_int_equal(s.port, 1);
            assert_int_equal(s.proxy_protocol, 2);
        } else {
            snprintf(want, sizeof want, "--service '%.80s...': target too long", spec);
            refuse(spec, want);
        }
    }
}

static void test_svcspec_err_is_cut_to_cap(void **state)
{
    (void)state;
    struct up_svcspec s;
    char small[16];
    memset(small, 'z', sizeof small);
    assert_int_equal(up_svcspec_parse("ssh", &s, small, sizeof small), UP_EINVAL);
    assert_string_equal(small, "--service 'ssh'");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_svcspec_tcp_and_http),
        cmocka_unit_test(test_svcspec_proxy_protocol),
        cmocka_unit_test(test_svcspec_bad_option_or_value),
        cmocka_unit_test(test_svcspec_bad_name),
        cmocka_unit_test(test_svcspec_name_limit),
        cmocka_unit_test(test_svcspec_bad_target),
        cmocka_unit_test(test_svcspec_target_limit),
        cmocka_unit_test(test_svcspec_err_is_cut_to_cap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
