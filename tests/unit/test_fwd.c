/* X-Forwarded-For from trusted proxies and PROXY protocol headers (src/proto/fwd.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "proto/fwd.h"

static struct up_cidr_list trusted(const char *s)
{
    struct up_cidr_list l;
    memset(&l, 0, sizeof l);
    const char *why = NULL;
    assert_int_equal(up_cidr_list_add(&l, s, &why), UP_OK);
    return l;
}

/* The client XFF names, as text ("" when UP_EPROTO). */
static const char *client(const char *xff, const struct up_cidr_list *t)
{
    static char text[64];
    uint8_t a[16];
    if (up_fwd_xff_client(xff, strlen(xff), t, a) != UP_OK) {
        return "";
    }
    up_ip_format(a, text, sizeof text);
    return text;
}

static void test_xff_walks_from_the_right(void **state)
{
    (void)state;
    struct up_cidr_list t = trusted("10.0.0.0/8, 192.168.1.1, fd00::/8");
    /* One proxy: the single entry is the client. */
    assert_string_equal(client("203.0.113.7", &t), "203.0.113.7");
    /* A forged left part is ignored: the rightmost untrusted entry wins. */
    assert_string_equal(client("1.2.3.4, 203.0.113.7", &t), "203.0.113.7");
    assert_string_equal(client("1.2.3.4, 203.0.113.7, 10.1.1.1", &t), "203.0.113.7");
    assert_string_equal(client("1.2.3.4,203.0.113.7,10.1.1.1,192.168.1.1", &t), "203.0.113.7");
    /* Every entry trusted: the leftmost. */
    assert_string_equal(client("10.9.9.9, 192.168.1.1", &t), "10.9.9.9");
    /* Ports and IPv6. */
    assert_string_equal(client("203.0.113.7:4711", &t), "203.0.113.7");
    assert_string_equal(client("[2001:db8::1]:4711, fd00::5", &t), "2001:db8::1");
    assert_string_equal(client("2001:db8::1", &t), "2001:db8::1");
    assert_string_equal(client("[2001:db8::3]", &t), "2001:db8::3");
    assert_string_equal(client("  2001:db8::2  ,\t10.0.0.1 ", &t), "2001:db8::2");
    /* No trusted list: the rightmost entry. */
    assert_string_equal(client("1.2.3.4, 5.6.7.8", NULL), "5.6.7.8");
}

static void test_xff_refuses_what_is_not_an_address(void **state)
{
    (void)state;
    struct up_cidr_list t = trusted("10.0.0.0/8");
    static const char *const bad[] = {
        "",
        " ",
        "unknown",
        "203.0.113.7, ",
        "203.0.113.7,,10.0.0.1",
        "_hidden, 10.0.0.1",
        "203.0.113.7:",
        "203.0.113.7:123456",
        "203.0.113.7:12a",
        "[2001:db8::1]x",
        "1.2.3.4:5:6",
        "2001:db8::1]:80",
        "[1.2.3.4]:80",
        "300.1.1.1",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint8_t a[16];
        int rv = up_fwd_xff_client(bad[i], strlen(bad[i]), &t, a);
        if (rv != UP_EPROTO) {
            fail_msg("'%s' gave %d", bad[i], rv);
        }
    }
    /* A malformed entry left of the client is never reached. */
    assert_string_equal(client("garbage, 203.0.113.7", &t), "203.0.113.7");
    /* ...but one the walk must pass through stops it. */
    assert_string_equal(client("203.0.113.7, garbage, 10.0.0.1", &t), "");
    uint8_t a[16];
    assert_int_equal(up_fwd_xff_client(NULL, 0, &t, a), UP_EPROTO);
}

static void ip(const char *s, uint8_t a[16])
{
    assert_int_equal(up_ip_parse(s, strlen(s), a), UP_OK);
}

static void test_proxy_v1_exact(void **state)
{
    (void)state;
    uint8_t s[16], d[16];
    char out[128];
    size_t n = 0;
    ip("192.0.2.1", s);
    ip("198.51.100.2", d);
    assert_int_equal(up_fwd_proxy_v1(s, 4711, d, 443, out, sizeof out, &n), UP_OK);
    assert_string_equal(out, "PROXY TCP4 192.0.2.1 198.51.100.2 4711 443\r\n");
    assert_int_equal(n, strlen(out));
    ip("2001:db8::1", s);
    ip("::1", d);
    assert_int_equal(up_fwd_proxy_v1(s, 1, d, 65535, out, sizeof out, &n), UP_OK);
    assert_string_equal(out, "PROXY TCP6 2001:db8::1 ::1 1 65535\r\n");
    /* Mixed families: both as IPv6. */
    ip("192.0.2.1", s);
    assert_int_equal(up_fwd_proxy_v1(s, 5, d, 6, out, sizeof out, &n), UP_OK);
    assert_string_equal(out, "PROXY TCP6 ::ffff:192.0.2.1 ::1 5 6\r\n");
    /* The longest line fits the spec's 107 bytes. */
    ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", s);
    ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffd", d);
    assert_int_equal(up_fwd_proxy_v1(s, 65535, d, 65535, out, sizeof out, &n), UP_OK);
    assert_true(n <= 107);
    /* Too small a buffer. */
    assert_int_equal(up_fwd_proxy_v1(s, 1, d, 2, out, 20, &n), UP_ELIMIT);
    assert_int_equal(n, 0);
}

static void test_proxy_v2_exact(void **state)
{
    (void)state;
    uint8_t s[16], d[16], out[64];
    size_t n = 0;
    ip("192.0.2.1", s);
    ip("198.51.100.2", d);
    assert_int_equal(up_fwd_proxy_v2(s, 0x1267, d, 443, out, sizeof out, &n), UP_OK);
    static const uint8_t want4[28] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49,
                                      0x54, 0x0A, 0x21, 0x11, 0x00, 0x0C, 192,  0,    2,    1,
                                      198,  51,   100,  2,    0x12, 0x67, 0x01, 0xBB};
    assert_int_equal(n, 28);
    assert_memory_equal(out, want4, 28);
    ip("2001:db8::1", s);
    ip("::1", d);
    assert_int_equal(up_fwd_proxy_v2(s, 80, d, 8080, out, sizeof out, &n), UP_OK);
    assert_int_equal(n, 52);
    assert_int_equal(out[13], 0x21);
    assert_int_equal(out[15], 36);
    assert_memory_equal(out + 16, s, 16);
    assert_memory_equal(out + 32, d, 16);
    assert_int_equal(out[48], 0);
    assert_int_equal(out[49], 80);
    assert_int_equal(out[50], 0x1f);
    assert_int_equal(out[51], 0x90);
    assert_int_equal(up_fwd_proxy_v2(s, 80, d, 8080, out, 51, &n), UP_ELIMIT);
    assert_int_equal(n, 0);
}

static void test_addr_parse_with_and_without_port(void **state)
{
    (void)state;
    static const struct {
        const char *in, *ip;
        uint16_t port;
    } good[] = {
        {"192.0.2.1", "192.0.2.1", 0},
        {"192.0.2.1:4711", "192.0.2.1", 4711},
        {"192.0.2.1:0", "192.0.2.1", 0},
        {"192.0.2.1:65535", "192.0.2.1", 65535},
        {"2001:db8::1", "2001:db8::1", 0},
        {"[2001:db8::1]", "2001:db8::1", 0},
        {"[2001:db8::1]:443", "2001:db8::1", 443},
        {"[::ffff:192.0.2.1]:80", "192.0.2.1", 80}, /* IPv4-mapped: an IPv4 client */
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        uint8_t a[16];
        uint16_t port = 1;
        char text[64];
        if (up_fwd_addr_parse(good[i].in, strlen(good[i].in), a, &port) != UP_OK) {
            fail_msg("'%s' refused", good[i].in);
        }
        up_ip_format(a, text, sizeof text);
        assert_string_equal(text, good[i].ip);
        assert_int_equal(port, good[i].port);
    }
    static const char *const bad[] = {
        "",
        "192.0.2.1:",
        "192.0.2.1:65536",
        "192.0.2.1:99999",
        "192.0.2.1:123456",
        "192.0.2.1:8a",
        " 192.0.2.1",
        "[192.0.2.1]:80",
        "[2001:db8::1]80",
        "2001:db8::1]:80",
        "host:80",
        "unknown",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint8_t a[16];
        uint16_t port = 7;
        if (up_fwd_addr_parse(bad[i], strlen(bad[i]), a, &port) != UP_EPROTO) {
            fail_msg("'%s' accepted", bad[i]);
        }
        assert_int_equal(port, 7);
    }
    uint8_t a[16];
    uint16_t port;
    assert_int_equal(up_fwd_addr_parse(NULL, 0, a, &port), UP_EPROTO);
}

static void test_proxy_unknown_and_local_exact(void **state)
{
    (void)state;
    char line[UP_FWD_PROXY_MAX];
    size_t n = 99;
    /* proxy-protocol.txt §2.1: "PROXY UNKNOWN\r\n" for connections of unknown origin. */
    assert_int_equal(up_fwd_proxy_v1_unknown(line, sizeof line, &n), UP_OK);
    assert_int_equal(n, 15);
    assert_memory_equal(line, "PROXY UNKNOWN\r\n", 15);
    assert_int_equal(up_fwd_proxy_v1_unknown(line, 16, &n), UP_OK);
    assert_int_equal(up_fwd_proxy_v1_unknown(line, 15, &n), UP_ELIMIT);
    assert_int_equal(n, 0);
    /* §2.2: LOCAL is version 2 command 0 (0x20), family/protocol UNSPEC (0x00), length 0. */
    static const uint8_t want[16] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51,
                                     0x55, 0x49, 0x54, 0x0A, 0x20, 0x00, 0x00, 0x00};
    uint8_t out[UP_FWD_PROXY_MAX];
    assert_int_equal(up_fwd_proxy_v2_local(out, sizeof out, &n), UP_OK);
    assert_int_equal(n, 16);
    assert_memory_equal(out, want, 16);
    assert_int_equal(up_fwd_proxy_v2_local(out, 15, &n), UP_ELIMIT);
    assert_int_equal(n, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_xff_walks_from_the_right),
        cmocka_unit_test(test_xff_refuses_what_is_not_an_address),
        cmocka_unit_test(test_proxy_v1_exact),
        cmocka_unit_test(test_proxy_v2_exact),
        cmocka_unit_test(test_addr_parse_with_and_without_port),
        cmocka_unit_test(test_proxy_unknown_and_local_exact),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
