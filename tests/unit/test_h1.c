/* Unit tests for the HTTP/1.1 head parser (src/proto/h1.c). RFC references are to RFC 9110
 * (semantics), RFC 9112 (HTTP/1.1) and RFC 6455 (the WebSocket opening handshake). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "base/alloc.h"
#include "feed.h"
#include "proto/h1.h"

#define MAX_HDRS 128

static struct up_h1_header hdrs[MAX_HDRS];
static struct up_h1_msg msg;

/* The copy behind msg's slices: freed on the next parse and by the group teardown. */
static uint8_t *last_copy;

/* Parse buf[0..len) from a heap copy of exactly len bytes, so ASan sees any over-read. */
static int parse_n(bool request, const char *s, size_t len, size_t max_headers, size_t max_head)
{
    up_free(last_copy);
    last_copy = up_malloc(len ? len : 1);
    assert_non_null(last_copy);
    memcpy(last_copy, s, len);
    size_t scan = 0;
    return request ? up_h1_parse_request(last_copy, len, &scan, &msg, hdrs, max_headers, max_head)
                   : up_h1_parse_response(last_copy, len, &scan, &msg, hdrs, max_headers, max_head);
}

static int teardown(void **state)
{
    (void)state;
    UP_FREE(last_copy);
    return 0;
}

static int req(const char *s)
{
    return parse_n(true, s, strlen(s), UP_H1_DEFAULT_MAX_HEADERS, UP_H1_DEFAULT_MAX_HEAD);
}

static int req_n_default(const char *s, size_t len)
{
    return parse_n(true, s, len, UP_H1_DEFAULT_MAX_HEADERS, UP_H1_DEFAULT_MAX_HEAD);
}

static int resp(const char *s)
{
    return parse_n(false, s, strlen(s), UP_H1_DEFAULT_MAX_HEADERS, UP_H1_DEFAULT_MAX_HEAD);
}

static void assert_slice(const char *p, size_t n, const char *want)
{
    if (n != strlen(want) || memcmp(p, want, n) != 0) {
        fail_msg("slice \"%.*s\" != \"%s\"", (int)n, p, want);
    }
}

static void assert_header(size_t i, const char *name, const char *value)
{
    assert_true(i < msg.n_headers);
    assert_slice(hdrs[i].name, hdrs[i].name_len, name);
    assert_slice(hdrs[i].value, hdrs[i].value_len, value);
}

static void expect_err(bool request, const char *s, size_t len, int err, int status,
                       const char *reason)
{
    int rv = parse_n(request, s, len, UP_H1_DEFAULT_MAX_HEADERS, UP_H1_DEFAULT_MAX_HEAD);
    if (rv != err) {
        fail_msg("\"%.*s\": rv %d want %d (%s)", (int)len, s, rv, err,
                 msg.err_reason ? msg.err_reason : "-");
    }
    assert_int_equal(msg.err_status, status);
    assert_non_null(msg.err_reason);
    if (!strstr(msg.err_reason, reason)) {
        fail_msg("\"%.*s\": reason \"%s\" want \"%s\"", (int)len, s, msg.err_reason, reason);
    }
}

static void req_err(const char *s, int status, const char *reason)
{
    expect_err(true, s, strlen(s), UP_EPROTO, status, reason);
}

static void resp_err(const char *s, int status, const char *reason)
{
    expect_err(false, s, strlen(s), UP_EPROTO, status, reason);
}

/* Field-by-field equality, slices included (same buffer, so same pointers). */
static void assert_msg_equal(const struct up_h1_msg *a, const struct up_h1_header *ah,
                             const struct up_h1_msg *b, const struct up_h1_header *bh)
{
    assert_ptr_equal(a->method, b->method);
    assert_int_equal(a->method_len, b->method_len);
    assert_ptr_equal(a->target, b->target);
    assert_int_equal(a->target_len, b->target_len);
    assert_int_equal(a->status, b->status);
    assert_ptr_equal(a->reason, b->reason);
    assert_int_equal(a->reason_len, b->reason_len);
    assert_int_equal(a->minor_version, b->minor_version);
    assert_int_equal(a->n_headers, b->n_headers);
    for (size_t i = 0; i < a->n_headers; i++) {
        assert_ptr_equal(ah[i].name, bh[i].name);
        assert_int_equal(ah[i].name_len, bh[i].name_len);
        assert_ptr_equal(ah[i].value, bh[i].value);
        assert_int_equal(ah[i].value_len, bh[i].value_len);
    }
    assert_int_equal(a->head_len, b->head_len);
    assert_int_equal(a->content_length, b->content_length);
    assert_int_equal(a->chunked, b->chunked);
    assert_int_equal(a->conn_close, b->conn_close);
    assert_int_equal(a->conn_upgrade, b->conn_upgrade);
}

static int parse_at(bool request, const uint8_t *buf, size_t len, size_t *scan, struct up_h1_msg *m,
                    struct up_h1_header *h)
{
    return request ? up_h1_parse_request(buf, len, scan, m, h, MAX_HDRS, UP_H1_DEFAULT_MAX_HEAD)
                   : up_h1_parse_response(buf, len, scan, m, h, MAX_HDRS, UP_H1_DEFAULT_MAX_HEAD);
}

/* The "incomplete at every prefix" rule: every strict prefix of a valid head is UP_EAGAIN
 * (fresh parse, and incrementally with the scan hint), the whole is UP_OK with the same
 * fields either way. */
static void check_every_prefix(bool request, const char *s)
{
    size_t len = strlen(s);
    uint8_t *buf = up_malloc(len);
    assert_non_null(buf);
    memcpy(buf, s, len);
    static struct up_h1_header want_h[MAX_HDRS], got_h[MAX_HDRS];
    struct up_h1_msg want, got;
    assert_int_equal(parse_at(request, buf, len, NULL, &want, want_h), UP_OK);
    assert_int_equal(want.head_len, len);
    for (size_t k = 0; k < len; k++) {
        uint8_t *prefix = up_malloc(k ? k : 1);
        assert_non_null(prefix);
        memcpy(prefix, buf, k);
        size_t scan = 0;
        int rv = parse_at(request, prefix, k, &scan, &got, got_h);
        up_free(prefix);
        if (rv != UP_EAGAIN) {
            fail_msg("prefix %zu of %zu: rv %d (%s)", k, len, rv,
                     got.err_reason ? got.err_reason : "-");
        }
    }
    size_t scan = 0;
    for (size_t k = 1; k <= len; k++) {
        int rv = parse_at(request, buf, k, &scan, &got, got_h);
        if (k < len) {
            assert_int_equal(rv, UP_EAGAIN);
            assert_int_equal(scan, k);
        } else {
            assert_int_equal(rv, UP_OK);
            assert_true(scan < len);
        }
    }
    assert_msg_equal(&want, want_h, &got, got_h);
    up_free(buf);
}

/* RFC 6455 §1.2 client handshake. */
static const char ws_upgrade_req[] = "GET /chat HTTP/1.1\r\n"
                                     "Host: server.example.com\r\n"
                                     "Upgrade: websocket\r\n"
                                     "Connection: Upgrade\r\n"
                                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                     "Origin: http://example.com\r\n"
                                     "Sec-WebSocket-Protocol: chat, superchat\r\n"
                                     "Sec-WebSocket-Version: 13\r\n"
                                     "\r\n";

/* RFC 6455 §1.2 server handshake. */
static const char ws_upgrade_resp[] = "HTTP/1.1 101 Switching Protocols\r\n"
                                      "Upgrade: websocket\r\n"
                                      "Connection: Upgrade\r\n"
                                      "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                                      "Sec-WebSocket-Protocol: chat\r\n"
                                      "\r\n";

static const char chunked_resp[] = "HTTP/1.1 200 OK\r\n"
                                   "Content-Type: text/plain\r\n"
                                   "Transfer-Encoding: chunked\r\n"
                                   "\r\n";

/* ---- requests ---------------------------------------------------------------------------- */

static void test_h1_simple_get(void **state)
{
    (void)state;
    const char *s = "GET /index.html?q=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n";
    assert_int_equal(req(s), UP_OK);
    assert_slice(msg.method, msg.method_len, "GET");
    assert_slice(msg.target, msg.target_len, "/index.html?q=1");
    assert_int_equal(msg.minor_version, 1);
    assert_int_equal(msg.n_headers, 2);
    assert_ptr_equal(msg.headers, hdrs);
    assert_header(0, "Host", "example.com");
    assert_header(1, "Accept", "*/*");
    assert_int_equal(msg.head_len, strlen(s));
    assert_int_equal(msg.content_length, -1);
    assert_false(msg.chunked);
    assert_false(msg.conn_close);
    assert_false(msg.conn_upgrade);
    assert_int_equal(msg.status, 0);
    assert_null(msg.err_reason);
}

static void test_h1_no_headers(void **state)
{
    (void)state;
    assert_int_equal(req("OPTIONS * HTTP/1.1\r\n\r\n"), UP_OK);
    assert_slice(msg.method, msg.method_len, "OPTIONS");
    assert_slice(msg.target, msg.target_len, "*");
    assert_int_equal(msg.n_headers, 0);
    assert_int_equal(msg.head_len, 22);
}

static void test_h1_target_forms(void **state)
{
    (void)state;
    /* RFC 9112 §3.2: origin, absolute, authority and asterisk forms. */
    assert_int_equal(req("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"),
                     UP_OK);
    assert_slice(msg.target, msg.target_len, "example.com:443");
    assert_int_equal(req("GET http://example.com/a%20b HTTP/1.1\r\n\r\n"), UP_OK);
    assert_slice(msg.target, msg.target_len, "http://example.com/a%20b");
    /* Methods are case-sensitive tokens: any token is syntactically fine. */
    assert_int_equal(req("M-SEARCH! / HTTP/1.1\r\n\r\n"), UP_OK);
    assert_slice(msg.method, msg.method_len, "M-SEARCH!");
}

static void test_h1_body_bytes_not_in_head(void **state)
{
    (void)state;
    const char *head = "POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n";
    char s[256];
    snprintf(s, sizeof s, "%shello", head);
    assert_int_equal(req(s), UP_OK);
    assert_int_equal(msg.head_len, strlen(head));
    assert_int_equal(msg.content_length, 5);
    /* A pipelined second head after the first is not looked at. */
    snprintf(s, sizeof s, "%sGET / HTTP/1.1\r\n\r\n", "GET /a HTTP/1.1\r\n\r\n");
    assert_int_equal(req(s), UP_OK);
    assert_slice(msg.target, msg.target_len, "/a");
    assert_int_equal(msg.head_len, 19);
}

static void test_h1_websocket_upgrade_request(void **state)
{
    (void)state;
    assert_int_equal(req(ws_upgrade_req), UP_OK);
    assert_slice(msg.method, msg.method_len, "GET");
    assert_slice(msg.target, msg.target_len, "/chat");
    assert_int_equal(msg.n_headers, 7);
    assert_header(0, "Host", "server.example.com");
    assert_header(6, "Sec-WebSocket-Version", "13");
    assert_true(msg.conn_upgrade);
    assert_false(msg.conn_close);
    assert_int_equal(msg.content_length, -1);
    assert_int_equal(msg.head_len, strlen(ws_upgrade_req));
    const struct up_h1_header *h = up_h1_find(&msg, "sec-websocket-key");
    assert_non_null(h);
    assert_slice(h->value, h->value_len, "dGhlIHNhbXBsZSBub25jZQ==");
    h = up_h1_find(&msg, "UPGRADE");
    assert_non_null(h);
    assert_true(up_h1_list_has(h->value, h->value_len, "websocket"));
    h = up_h1_find(&msg, "Sec-WebSocket-Protocol");
    assert_non_null(h);
    assert_true(up_h1_list_has(h->value, h->value_len, "superchat"));
    assert_true(up_h1_list_has(h->value, h->value_len, "chat"));
    assert_false(up_h1_list_has(h->value, h->value_len, "chat, superchat"));
}

static void test_h1_incomplete_at_every_prefix(void **state)
{
    (void)state;
    check_every_prefix(true, ws_upgrade_req);
    check_every_prefix(true, "GET / HTTP/1.0\r\n\r\n");
    check_every_prefix(true, "POST /x HTTP/1.1\r\nContent-Length: 10\r\nX-Empty:\r\n\r\n");
    check_every_prefix(true, "POST /x HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
    check_every_prefix(false, ws_upgrade_resp);
    check_every_prefix(false, chunked_resp);
    check_every_prefix(false, "HTTP/1.1 204\r\n\r\n");
}

static void test_h1_ows_trimmed_and_value_chars(void **state)
{
    (void)state;
    const char *s = "GET / HTTP/1.1\r\n"
                    "A: \t  x y\t z \t \r\n"
                    "B:\r\n"
                    "C:   \r\n"
                    "D:v\r\n"
                    "E: caf\xc3\xa9 \xff\x80\r\n"
                    "F: \"quoted, list\"; a=b (comment) ~!\r\n"
                    "\r\n";
    assert_int_equal(req(s), UP_OK);
    assert_int_equal(msg.n_headers, 6);
    assert_header(0, "A", "x y\t z");
    assert_header(1, "B", "");
    assert_header(2, "C", "");
    assert_header(3, "D", "v");
    assert_header(4, "E", "caf\xc3\xa9 \xff\x80");
    assert_header(5, "F", "\"quoted, list\"; a=b (comment) ~!");
    /* Empty values still point inside the buffer. */
    assert_true(hdrs[1].value >= hdrs[1].name && hdrs[1].value <= hdrs[1].name + 2);
}

static void test_h1_header_name_token_chars(void **state)
{
    (void)state;
    assert_int_equal(req("GET / HTTP/1.1\r\nX-a.b_c!#$%&'*+^`|~9: v\r\n\r\n"), UP_OK);
    assert_header(0, "X-a.b_c!#$%&'*+^`|~9", "v");
}

static void test_h1_rejects_bare_lf(void **state)
{
    (void)state;
    req_err("GET / HTTP/1.1\nHost: a\r\n\r\n", 400, "bare LF");
    req_err("GET / HTTP/1.1\r\nHost: a\n\r\n", 400, "bare LF");
    req_err("GET / HTTP/1.1\r\nHost: a\r\n\n", 400, "bare LF");
    req_err("\n", 400, "bare LF");
    /* Fails as soon as the LF is seen, without waiting for a complete head. */
    req_err("GET / HTTP/1.1\n", 400, "bare LF");
    req_err("GET / HTTP/1.1\n\n", 400, "bare LF");
    resp_err("HTTP/1.1 200 OK\nA: b\r\n\r\n", 400, "bare LF");
}

static void test_h1_rejects_bare_cr(void **state)
{
    (void)state;
    req_err("GET / HTTP/1.1\rHost: a\r\n\r\n", 400, "bare CR");
    req_err("GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", 400, "bare CR");
    req_err("GET / HTTP/1.1\r\r\n\r\n", 400, "bare CR");
    /* A CR as the last byte is not yet known to be bare. */
    assert_int_equal(req("GET / HTTP/1.1\r"), UP_EAGAIN);
}

static void test_h1_rejects_obs_fold(void **state)
{
    (void)state;
    req_err("GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", 400, "obs-fold");
    req_err("GET / HTTP/1.1\r\nX: a\r\n\tb\r\n\r\n", 400, "obs-fold");
    /* Whitespace before the first field line (RFC 9112 §2.2). */
    req_err("GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400, "obs-fold");
    resp_err("HTTP/1.1 200 OK\r\nX: a\r\n  b\r\n\r\n", 400, "obs-fold");
}

static void test_h1_rejects_bad_header_names(void **state)
{
    (void)state;
    req_err("GET / HTTP/1.1\r\n: v\r\n\r\n", 400, "empty header name");
    req_err("GET / HTTP/1.1\r\nX(y): v\r\n\r\n", 400, "invalid header name");
    req_err("GET / HTTP/1.1\r\nX/y: v\r\n\r\n", 400, "invalid header name");
    req_err("GET / HTTP/1.1\r\nX\x01y: v\r\n\r\n", 400, "invalid header name");
    req_err("GET / HTTP/1.1\r\nX\x80y: v\r\n\r\n", 400, "invalid header name");
    req_err("GET / HTTP/1.1\r\nX y: v\r\n\r\n", 400, "invalid header name");
    req_err("GET / HTTP/1.1\r\nHost a\r\n\r\n", 400, "invalid header name");
    req_err("GET / HTTP/1.1\r\nHost\r\n\r\n", 400, "without colon");
    static const char nul_name[] = "GET / HTTP/1.1\r\nX\0: v\r\n\r\n";
    expect_err(true, nul_name, sizeof nul_name - 1, UP_EPROTO, 400, "invalid header name");
}

static void test_h1_rejects_whitespace_before_colon(void **state)
{
    (void)state;
    req_err("GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400, "whitespace before colon");
    req_err("GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", 400, "whitespace before colon");
    req_err("GET / HTTP/1.1\r\nContent-Length \t : 5\r\n\r\n", 400, "whitespace before colon");
    resp_err("HTTP/1.1 200 OK\r\nTransfer-Encoding : chunked\r\n\r\n", 400,
             "whitespace before colon");
}

static void test_h1_rejects_ctl_in_value(void **state)
{
    (void)state;
    req_err("GET / HTTP/1.1\r\nX: a\x01"
            "b\r\n\r\n",
            400, "control character in header value");
    req_err("GET / HTTP/1.1\r\nX: a\x1b[0m\r\n\r\n", 400, "control character in header value");
    req_err("GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n", 400, "control character in header value");
    req_err("GET / HTTP/1.1\r\nX: \x0b\r\n\r\n", 400, "control character in header value");
    static const char nul_value[] = "GET / HTTP/1.1\r\nX: a\0b\r\n\r\n";
    expect_err(true, nul_value, sizeof nul_value - 1, UP_EPROTO, 400,
               "control character in header value");
}

static void test_h1_rejects_bad_method(void **state)
{
    (void)state;
    req_err("G(ET / HTTP/1.1\r\n\r\n", 400, "invalid method");
    req_err(" / HTTP/1.1\r\n\r\n", 400, "invalid method");
    req_err("GET\t/ HTTP/1.1\r\n\r\n", 400, "invalid method");
    req_err("GET\r\n\r\n", 400, "invalid method");
    req_err("G\xc3\x89T / HTTP/1.1\r\n\r\n", 400, "invalid method");
    static const char nul_method[] = "G\0T / HTTP/1.1\r\n\r\n";
    expect_err(true, nul_method, sizeof nul_method - 1, UP_EPROTO, 400, "invalid method");
}

static void test_h1_rejects_bad_target(void **state)
{
    (void)state;
    req_err("GET  HTTP/1.1\r\n\r\n", 400, "invalid request target");
    req_err("GET /a\x01 HTTP/1.1\r\n\r\n", 400, "invalid request target");
    req_err("GET /a\x7f HTTP/1.1\r\n\r\n", 400, "invalid request target");
    req_err("GET /caf\xc3\xa9 HTTP/1.1\r\n\r\n", 400, "invalid request target");
    req_err("GET /a\tb HTTP/1.1\r\n\r\n", 400, "invalid request target");
    req_err("GET /\r\n\r\n", 400, "invalid request target");
    /* A space in the target pushes the rest into the version. */
    req_err("GET /a b HTTP/1.1\r\n\r\n", 400, "malformed HTTP version");
}

static void test_h1_rejects_malformed_version(void **state)
{
    (void)state;
    req_err("GET / HTTP/1.1 \r\n\r\n", 400, "malformed HTTP version");
    req_err("GET / HTTP/1\r\n\r\n", 400, "malformed HTTP version");
    req_err("GET / http/1.1\r\n\r\n", 400, "malformed HTTP version");
    req_err("GET / HTTP/1.10\r\n\r\n", 400, "malformed HTTP version");
    req_err("GET / HTTP/11\r\n\r\n", 400, "malformed HTTP version");
    req_err("GET / HTTP/1,1\r\n\r\n", 400, "malformed HTTP version");
    req_err("GET / \r\n\r\n", 400, "malformed HTTP version");
}

static void test_h1_rejects_unsupported_version_505(void **state)
{
    (void)state;
    req_err("GET / HTTP/2.0\r\n\r\n", 505, "unsupported HTTP version");
    req_err("PRI * HTTP/2.0\r\n\r\n", 505, "unsupported HTTP version");
    req_err("GET / HTTP/0.9\r\n\r\n", 505, "unsupported HTTP version");
    req_err("GET / HTTP/1.2\r\n\r\n", 505, "unsupported HTTP version");
    req_err("GET / HTTP/3.0\r\n\r\n", 505, "unsupported HTTP version");
    resp_err("HTTP/2.0 200 OK\r\n\r\n", 505, "unsupported HTTP version");
    assert_int_equal(req("GET / HTTP/1.0\r\n\r\n"), UP_OK);
    assert_int_equal(msg.minor_version, 0);
}

static void test_h1_rejects_empty_request_line(void **state)
{
    (void)state;
    req_err("\r\n\r\n", 400, "empty request line");
    /* RFC 9112 §2.2 lets a server skip leading CRLFs; a strict relay does not. */
    req_err("\r\nGET / HTTP/1.1\r\n\r\n", 400, "empty request line");
}

static void test_h1_content_length(void **state)
{
    (void)state;
    assert_int_equal(req("POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n"), UP_OK);
    assert_int_equal(msg.content_length, 0);
    assert_int_equal(req("POST / HTTP/1.1\r\ncontent-length:  42 \r\n\r\n"), UP_OK);
    assert_int_equal(msg.content_length, 42);
    assert_int_equal(req("POST / HTTP/1.1\r\nContent-Length: 9223372036854775807\r\n\r\n"), UP_OK);
    assert_int_equal(msg.content_length, INT64_MAX);
    assert_int_equal(req("POST / HTTP/1.1\r\nContent-Length: 0000000000000000000000007\r\n\r\n"),
                     UP_OK);
    assert_int_equal(msg.content_length, 7);
}

static void test_h1_content_length_duplicate_same_value_folded(void **state)
{
    (void)state;
    assert_int_equal(req("POST / HTTP/1.1\r\nContent-Length: 5\r\nX: y\r\n"
                         "CONTENT-LENGTH: 5\r\n\r\n"),
                     UP_OK);
    assert_int_equal(msg.content_length, 5);
    assert_int_equal(msg.n_headers, 3);
    /* Same number, same length of body: folded too. */
    assert_int_equal(req("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 005\r\n\r\n"),
                     UP_OK);
    assert_int_equal(msg.content_length, 5);
}

static void test_h1_rejects_bad_content_length(void **state)
{
    (void)state;
    req_err("POST / HTTP/1.1\r\nContent-Length:\r\n\r\n", 400, "empty Content-Length");
    req_err("POST / HTTP/1.1\r\nContent-Length:  \t \r\n\r\n", 400, "empty Content-Length");
    req_err("POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n", 400, "invalid Content-Length");
    req_err("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400, "invalid Content-Length");
    req_err("POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\n", 400, "invalid Content-Length");
    req_err("POST / HTTP/1.1\r\nContent-Length: 1.0\r\n\r\n", 400, "invalid Content-Length");
    req_err("POST / HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n", 400, "invalid Content-Length");
    req_err("POST / HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n", 400, "invalid Content-Length");
    req_err("POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n", 400, "invalid Content-Length");
    req_err("POST / HTTP/1.1\r\nContent-Length: 5,5\r\n\r\n", 400, "invalid Content-Length");
    req_err("POST / HTTP/1.1\r\nContent-Length: \xd9\xa5\r\n\r\n", 400, "invalid Content-Length");
    /* INT64_MAX + 1 and far beyond UINT64_MAX. */
    req_err("POST / HTTP/1.1\r\nContent-Length: 9223372036854775808\r\n\r\n", 400, "too large");
    req_err("POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n", 400, "too large");
}

static void test_h1_rejects_conflicting_content_length(void **state)
{
    (void)state;
    req_err("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400,
            "conflicting Content-Length");
    req_err("POST / HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 10\r\n\r\n", 400,
            "conflicting Content-Length");
    resp_err("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 50\r\n\r\n", 400,
             "conflicting Content-Length");
}

static void test_h1_rejects_te_with_content_length(void **state)
{
    (void)state;
    req_err("POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
            "Transfer-Encoding with Content-Length");
    req_err("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 400,
            "Transfer-Encoding with Content-Length");
    req_err("POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\ncontent-length: 0\r\n\r\n", 400,
            "Transfer-Encoding with Content-Length");
    resp_err("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 400,
             "Transfer-Encoding with Content-Length");
}

static void test_h1_transfer_encoding_chunked(void **state)
{
    (void)state;
    assert_int_equal(req("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"), UP_OK);
    assert_true(msg.chunked);
    assert_int_equal(msg.content_length, -1);
    assert_int_equal(req("POST / HTTP/1.1\r\nTransfer-Encoding: gzip , CHUNKED \r\n\r\n"), UP_OK);
    assert_true(msg.chunked);
    /* Codings may be split over fields; only their order matters (RFC 9110 §5.3). */
    assert_int_equal(req("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n"
                         "Transfer-Encoding: chunked\r\n\r\n"),
                     UP_OK);
    assert_true(msg.chunked);
}

static void test_h1_rejects_te_not_ending_in_chunked(void **state)
{
    (void)state;
    req_err("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 400, "does not end in chunked");
    req_err("POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400,
            "does not end in chunked");
    req_err("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n", 400,
            "does not end in chunked");
    req_err("POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n", 400,
            "does not end in chunked");
    req_err("POST / HTTP/1.1\r\nTransfer-Encoding: chunked;ext=1\r\n\r\n", 400,
            "does not end in chunked");
}

static void test_h1_rejects_te_empty(void **state)
{
    (void)state;
    req_err("POST / HTTP/1.1\r\nTransfer-Encoding:\r\n\r\n", 400, "empty Transfer-Encoding");
    req_err("POST / HTTP/1.1\r\nTransfer-Encoding: , ,\r\n\r\n", 400, "empty Transfer-Encoding");
    resp_err("HTTP/1.1 200 OK\r\nTransfer-Encoding: \r\n\r\n", 400, "empty Transfer-Encoding");
}

static void test_h1_rejects_chunked_twice(void **state)
{
    (void)state;
    req_err("POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 400,
            "chunked applied twice");
    req_err("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            400, "chunked applied twice");
}

static void test_h1_rejects_te_in_http10_request(void **state)
{
    (void)state;
    req_err("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
            "Transfer-Encoding in HTTP/1.0");
}

static void test_h1_connection_semantics(void **state)
{
    (void)state;
    assert_int_equal(req("GET / HTTP/1.0\r\n\r\n"), UP_OK);
    assert_true(msg.conn_close);
    assert_int_equal(req("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"), UP_OK);
    assert_false(msg.conn_close);
    assert_int_equal(req("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"), UP_OK);
    assert_true(msg.conn_close);
    assert_int_equal(req("GET / HTTP/1.1\r\n\r\n"), UP_OK);
    assert_false(msg.conn_close);
    assert_int_equal(req("GET / HTTP/1.1\r\nConnection: close\r\n\r\n"), UP_OK);
    assert_true(msg.conn_close);
    assert_int_equal(req("GET / HTTP/1.1\r\nConnection: foo,\tCLOSE \r\n\r\n"), UP_OK);
    assert_true(msg.conn_close);
    assert_false(msg.conn_upgrade);
    assert_int_equal(req("GET / HTTP/1.1\r\nConnection: keep-alive, Upgrade\r\n\r\n"), UP_OK);
    assert_true(msg.conn_upgrade);
    assert_false(msg.conn_close);
    /* Several Connection fields form one list. */
    assert_int_equal(req("GET / HTTP/1.1\r\nConnection: keep-alive\r\nConnection: upgrade\r\n"
                         "Connection: close\r\n\r\n"),
                     UP_OK);
    assert_true(msg.conn_upgrade);
    assert_true(msg.conn_close);
    /* Substrings do not count. */
    assert_int_equal(req("GET / HTTP/1.1\r\nConnection: upgraded, closed\r\n\r\n"), UP_OK);
    assert_false(msg.conn_upgrade);
    assert_false(msg.conn_close);
    assert_int_equal(req("GET / HTTP/1.1\r\nX-Connection: close, upgrade\r\n\r\n"), UP_OK);
    assert_false(msg.conn_upgrade);
    assert_false(msg.conn_close);
}

/* ---- limits ------------------------------------------------------------------------------ */

/* A request with n headers "Hnn: v". */
static size_t build_headers(char *out, size_t cap, size_t n)
{
    size_t len = (size_t)snprintf(out, cap, "GET / HTTP/1.1\r\n");
    for (size_t i = 0; i < n; i++) {
        len += (size_t)snprintf(out + len, cap - len, "H%zu: v\r\n", i);
    }
    len += (size_t)snprintf(out + len, cap - len, "\r\n");
    assert_true(len < cap);
    return len;
}

static void test_h1_max_headers_limit(void **state)
{
    (void)state;
    char s[4096];
    size_t len = build_headers(s, sizeof s, 4);
    assert_int_equal(parse_n(true, s, len, 5, UP_H1_DEFAULT_MAX_HEAD), UP_OK);
    assert_int_equal(msg.n_headers, 4);
    assert_int_equal(parse_n(true, s, len, 4, UP_H1_DEFAULT_MAX_HEAD), UP_OK);
    assert_int_equal(msg.n_headers, 4);
    assert_int_equal(parse_n(true, s, len, 3, UP_H1_DEFAULT_MAX_HEAD), UP_ELIMIT);
    assert_int_equal(msg.err_status, 431);
    assert_string_equal(msg.err_reason, "h1: too many headers");
    /* Default limit: 63, 64, 65 headers. */
    for (size_t n = UP_H1_DEFAULT_MAX_HEADERS - 1; n <= UP_H1_DEFAULT_MAX_HEADERS + 1; n++) {
        len = build_headers(s, sizeof s, n);
        int rv = parse_n(true, s, len, UP_H1_DEFAULT_MAX_HEADERS, UP_H1_DEFAULT_MAX_HEAD);
        if (n <= UP_H1_DEFAULT_MAX_HEADERS) {
            assert_int_equal(rv, UP_OK);
            assert_int_equal(msg.n_headers, n);
        } else {
            assert_int_equal(rv, UP_ELIMIT);
            assert_int_equal(msg.err_status, 431);
        }
    }
    /* Responses too. */
    assert_int_equal(parse_n(false, "HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\n\r\n", 31, 1, 100),
                     UP_ELIMIT);
    assert_int_equal(msg.err_status, 431);
}

static void test_h1_max_headers_zero(void **state)
{
    (void)state;
    const char *s = "GET / HTTP/1.1\r\n\r\n";
    size_t scan = 0;
    assert_int_equal(up_h1_parse_request((const uint8_t *)s, strlen(s), &scan, &msg, NULL, 0,
                                         UP_H1_DEFAULT_MAX_HEAD),
                     UP_OK);
    assert_int_equal(msg.n_headers, 0);
    s = "GET / HTTP/1.1\r\nA: b\r\n\r\n";
    scan = 0;
    assert_int_equal(up_h1_parse_request((const uint8_t *)s, strlen(s), &scan, &msg, NULL, 0,
                                         UP_H1_DEFAULT_MAX_HEAD),
                     UP_ELIMIT);
    assert_int_equal(msg.err_status, 431);
}

static void test_h1_max_head_limit(void **state)
{
    (void)state;
    const char *s = "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n";
    size_t n = strlen(s);
    /* Complete head of n bytes against max_head n+1, n, n-1. */
    assert_int_equal(parse_n(true, s, n, 64, n + 1), UP_OK);
    assert_int_equal(msg.head_len, n);
    assert_int_equal(parse_n(true, s, n, 64, n), UP_OK);
    assert_int_equal(msg.head_len, n);
    assert_int_equal(parse_n(true, s, n, 64, n - 1), UP_ELIMIT);
    assert_int_equal(msg.err_status, 431);
    assert_string_equal(msg.err_reason, "h1: head too large");
    /* Incomplete input: EAGAIN below the limit, ELIMIT as soon as len reaches it. */
    const size_t max = 20;
    assert_int_equal(parse_n(true, s, max - 1, 64, max), UP_EAGAIN);
    assert_int_equal(parse_n(true, s, max, 64, max), UP_ELIMIT);
    assert_int_equal(msg.err_status, 431);
    assert_int_equal(parse_n(true, s, max + 1, 64, max), UP_ELIMIT);
    assert_int_equal(msg.err_status, 431);
    /* A body after a head that fits does not count. */
    const char *b = "GET / HTTP/1.1\r\n\r\nxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";
    assert_int_equal(parse_n(true, b, strlen(b), 64, 18), UP_OK);
    assert_int_equal(msg.head_len, 18);
    /* max_head 0 refuses everything, even an empty buffer. */
    assert_int_equal(parse_n(true, s, 0, 64, 0), UP_ELIMIT);
    /* Responses too. */
    assert_int_equal(parse_n(false, "HTTP/1.1 200 OK\r\n\r\n", 19, 64, 19), UP_OK);
    assert_int_equal(parse_n(false, "HTTP/1.1 200 OK\r\n\r\n", 19, 64, 18), UP_ELIMIT);
    assert_int_equal(msg.err_status, 431);
}

static void test_h1_max_head_default(void **state)
{
    (void)state;
    static char s[UP_H1_DEFAULT_MAX_HEAD + 64];
    const char *pre = "GET / HTTP/1.1\r\nX: ";
    const char *post = "\r\n\r\n";
    size_t fixed = strlen(pre) + strlen(post);
    for (size_t total = UP_H1_DEFAULT_MAX_HEAD - 1; total <= UP_H1_DEFAULT_MAX_HEAD + 1; total++) {
        memcpy(s, pre, strlen(pre));
        memset(s + strlen(pre), 'a', total - fixed);
        memcpy(s + total - strlen(post), post, strlen(post));
        int rv = req_n_default(s, total);
        if (total <= UP_H1_DEFAULT_MAX_HEAD) {
            assert_int_equal(rv, UP_OK);
            assert_int_equal(msg.head_len, total);
            assert_int_equal(hdrs[0].value_len, total - fixed);
        } else {
            assert_int_equal(rv, UP_ELIMIT);
            assert_int_equal(msg.err_status, 431);
        }
    }
}

/* ---- scan hint --------------------------------------------------------------------------- */

static void test_h1_scan_hint_byte_at_a_time(void **state)
{
    (void)state;
    size_t len = strlen(ws_upgrade_req);
    uint8_t *buf = up_malloc(len);
    assert_non_null(buf);
    size_t scan = 0;
    int rv = UP_EAGAIN;
    size_t k;
    for (k = 1; k <= len && rv == UP_EAGAIN; k++) {
        buf[k - 1] = (uint8_t)ws_upgrade_req[k - 1];
        rv = up_h1_parse_request(buf, k, &scan, &msg, hdrs, MAX_HDRS, UP_H1_DEFAULT_MAX_HEAD);
        if (rv == UP_EAGAIN) {
            /* Everything seen so far was scanned once and need not be scanned again. */
            assert_int_equal(scan, k);
        }
    }
    assert_int_equal(rv, UP_OK);
    assert_int_equal(k - 1, len);
    assert_int_equal(msg.head_len, len);
    assert_true(msg.conn_upgrade);
    assert_int_equal(msg.n_headers, 7);
    assert_header(2, "Connection", "Upgrade");
    /* Calling again on the same complete buffer with the hint gives the same answer. */
    assert_int_equal(
        up_h1_parse_request(buf, len, &scan, &msg, hdrs, MAX_HDRS, UP_H1_DEFAULT_MAX_HEAD), UP_OK);
    assert_int_equal(msg.head_len, len);
    up_free(buf);
}

static void test_h1_scan_hint_errors_across_calls(void **state)
{
    (void)state;
    /* A bare CR split from the byte that proves it bare. */
    const uint8_t a[] = "GET / HTTP/1.1\rX";
    size_t scan = 0;
    assert_int_equal(up_h1_parse_request(a, 15, &scan, &msg, hdrs, MAX_HDRS, 100), UP_EAGAIN);
    assert_int_equal(scan, 15);
    assert_int_equal(up_h1_parse_request(a, 16, &scan, &msg, hdrs, MAX_HDRS, 100), UP_EPROTO);
    assert_int_equal(msg.err_status, 400);
    /* A terminator split across calls. */
    const uint8_t b[] = "GET / HTTP/1.1\r\n\r\n";
    scan = 0;
    for (size_t k = 14; k < 18; k++) {
        assert_int_equal(up_h1_parse_request(b, k, &scan, &msg, hdrs, MAX_HDRS, 100), UP_EAGAIN);
    }
    assert_int_equal(up_h1_parse_request(b, 18, &scan, &msg, hdrs, MAX_HDRS, 100), UP_OK);
    /* The limit is hit by the growing buffer even though earlier calls saw less. */
    scan = 0;
    assert_int_equal(up_h1_parse_request(b, 9, &scan, &msg, hdrs, MAX_HDRS, 10), UP_EAGAIN);
    assert_int_equal(up_h1_parse_request(b, 10, &scan, &msg, hdrs, MAX_HDRS, 10), UP_ELIMIT);
    assert_int_equal(up_h1_parse_request(b, 18, &scan, &msg, hdrs, MAX_HDRS, 10), UP_ELIMIT);
}

static void test_h1_scan_hint_out_of_range_or_null(void **state)
{
    (void)state;
    const uint8_t b[] = "GET / HTTP/1.1\r\nA: b\r\n\r\n";
    size_t len = sizeof b - 1;
    size_t scan = 1000;
    assert_int_equal(up_h1_parse_request(b, len, &scan, &msg, hdrs, MAX_HDRS, 100), UP_OK);
    assert_int_equal(msg.head_len, len);
    assert_int_equal(up_h1_parse_request(b, len, NULL, &msg, hdrs, MAX_HDRS, 100), UP_OK);
    assert_int_equal(msg.head_len, len);
}

static void test_h1_scan_hint_skips_scanned_bytes(void **state)
{
    (void)state;
    /* White box: bytes below *scan are not scanned again, which is what makes a trickled head
     * O(total). A hint past a bare LF hides it from the scan, yet the line parser still
     * refuses the LF as a control character, so even a lying hint cannot get it accepted. */
    const uint8_t b[] = "GET / HTTP/1.1\r\nA: b\nc\r\n\r\n";
    size_t len = sizeof b - 1;
    size_t scan = 0;
    assert_int_equal(up_h1_parse_request(b, len, &scan, &msg, hdrs, MAX_HDRS, 100), UP_EPROTO);
    assert_string_equal(msg.err_reason, "h1: bare LF");
    scan = 22;
    assert_int_equal(up_h1_parse_request(b, len, &scan, &msg, hdrs, MAX_HDRS, 100), UP_EPROTO);
    assert_string_equal(msg.err_reason, "h1: control character in header value");
    assert_int_equal(msg.err_status, 400);
}

static struct h1_trace_cfg {
    bool request;
} trace_req = {true}, trace_resp = {false};

/* Feed chunks into a growing buffer, calling the parser with the scan hint after each one
 * and stopping at the first answer that is not UP_EAGAIN (STYLE §12 scripted feeds). */
static void h1_trace_run(void *ud, const uint8_t *in, size_t len, const size_t *cuts, size_t ncuts,
                         char *trace, size_t cap)
{
    const struct h1_trace_cfg *cfg = ud;
    uint8_t *buf = up_malloc(len ? len : 1);
    assert_non_null(buf);
    static struct up_h1_header th[MAX_HDRS];
    struct up_h1_msg m;
    size_t scan = 0, off = 0;
    int rv = UP_EAGAIN;
    for (size_t c = 0; c <= ncuts && rv == UP_EAGAIN; c++) {
        size_t end = c < ncuts ? cuts[c] : len;
        memcpy(buf + off, in + off, end - off);
        off = end;
        rv = parse_at(cfg->request, buf, end, &scan, &m, th);
    }
    size_t n = (size_t)snprintf(trace, cap, "rv=%d", rv);
    if (rv == UP_OK) {
        n += (size_t)snprintf(trace + n, cap - n, " %.*s|%.*s|%d|%.*s|1.%d head=%zu cl=%lld%s%s%s",
                              (int)m.method_len, m.method ? m.method : "", (int)m.target_len,
                              m.target ? m.target : "", m.status, (int)m.reason_len,
                              m.reason ? m.reason : "", m.minor_version, m.head_len,
                              (long long)m.content_length, m.chunked ? " chunked" : "",
                              m.conn_close ? " close" : "", m.conn_upgrade ? " upgrade" : "");
        for (size_t i = 0; i < m.n_headers && n < cap; i++) {
            n += (size_t)snprintf(trace + n, cap - n, " [%.*s=%.*s]", (int)th[i].name_len,
                                  th[i].name, (int)th[i].value_len, th[i].value);
        }
    } else if (rv != UP_EAGAIN) {
        snprintf(trace + n, cap - n, " %d %s", m.err_status, m.err_reason);
    }
    up_free(buf);
}

static void test_h1_split_feeding_every_boundary(void **state)
{
    (void)state;
    assert_int_equal(feed_all_splits(h1_trace_run, &trace_req, (const uint8_t *)ws_upgrade_req,
                                     strlen(ws_upgrade_req), NULL),
                     0);
    const char *body = "POST /p HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc";
    assert_int_equal(feed_all_splits(h1_trace_run, &trace_req, (const uint8_t *)body, strlen(body),
                                     "rv=0 POST|/p|0||1.1 head=39 cl=3 [Content-Length=3]"),
                     0);
    const char *smuggle = "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n"
                          "\r\n0\r\n\r\n";
    assert_int_equal(feed_all_splits(h1_trace_run, &trace_req, (const uint8_t *)smuggle,
                                     strlen(smuggle),
                                     "rv=-200 400 h1: Transfer-Encoding with Content-Length"),
                     0);
    const char *bare = "GET / HTTP/1.1\r\nA: b\nC: d\r\n\r\n";
    assert_int_equal(feed_all_splits(h1_trace_run, &trace_req, (const uint8_t *)bare, strlen(bare),
                                     "rv=-200 400 h1: bare LF"),
                     0);
    assert_int_equal(feed_all_splits(h1_trace_run, &trace_resp, (const uint8_t *)ws_upgrade_resp,
                                     strlen(ws_upgrade_resp), NULL),
                     0);
    assert_int_equal(feed_all_splits(h1_trace_run, &trace_resp, (const uint8_t *)chunked_resp,
                                     strlen(chunked_resp), NULL),
                     0);
}

/* ---- responses --------------------------------------------------------------------------- */

static void test_h1_response_101_upgrade(void **state)
{
    (void)state;
    assert_int_equal(resp(ws_upgrade_resp), UP_OK);
    assert_int_equal(msg.status, 101);
    assert_slice(msg.reason, msg.reason_len, "Switching Protocols");
    assert_int_equal(msg.minor_version, 1);
    assert_null(msg.method);
    assert_null(msg.target);
    assert_int_equal(msg.n_headers, 4);
    assert_true(msg.conn_upgrade);
    assert_false(msg.conn_close);
    assert_int_equal(msg.head_len, strlen(ws_upgrade_resp));
    const struct up_h1_header *h = up_h1_find(&msg, "sec-websocket-accept");
    assert_non_null(h);
    assert_slice(h->value, h->value_len, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

static void test_h1_response_200_chunked(void **state)
{
    (void)state;
    assert_int_equal(resp(chunked_resp), UP_OK);
    assert_int_equal(msg.status, 200);
    assert_slice(msg.reason, msg.reason_len, "OK");
    assert_true(msg.chunked);
    assert_int_equal(msg.content_length, -1);
    assert_false(msg.conn_close);
    assert_int_equal(msg.n_headers, 2);
}

static void test_h1_response_204(void **state)
{
    (void)state;
    assert_int_equal(resp("HTTP/1.1 204 No Content\r\nDate: Mon, 27 Jul 2009 12:28:53 GMT\r\n\r\n"),
                     UP_OK);
    assert_int_equal(msg.status, 204);
    assert_slice(msg.reason, msg.reason_len, "No Content");
    assert_header(0, "Date", "Mon, 27 Jul 2009 12:28:53 GMT");
    assert_int_equal(msg.content_length, -1);
    assert_false(msg.chunked);
}

static void test_h1_response_reason_forms(void **state)
{
    (void)state;
    /* Empty reason with and without its SP; curl accepts both. */
    assert_int_equal(resp("HTTP/1.1 200\r\n\r\n"), UP_OK);
    assert_int_equal(msg.status, 200);
    assert_int_equal(msg.reason_len, 0);
    assert_non_null(msg.reason);
    assert_int_equal(resp("HTTP/1.1 200 \r\n\r\n"), UP_OK);
    assert_int_equal(msg.reason_len, 0);
    assert_int_equal(resp("HTTP/1.1 404 Not  Found \t\xe2\x9c\x97\r\n\r\n"), UP_OK);
    assert_slice(msg.reason, msg.reason_len, "Not  Found \t\xe2\x9c\x97");
    assert_int_equal(resp("HTTP/1.1 100 Continue\r\n\r\n"), UP_OK);
    assert_int_equal(msg.status, 100);
    assert_int_equal(resp("HTTP/1.1 599 x\r\n\r\n"), UP_OK);
    assert_int_equal(msg.status, 599);
}

static void test_h1_response_connection_and_framing(void **state)
{
    (void)state;
    assert_int_equal(resp("HTTP/1.0 200 OK\r\nContent-Length: 42\r\n\r\n"), UP_OK);
    assert_int_equal(msg.minor_version, 0);
    assert_true(msg.conn_close);
    assert_int_equal(msg.content_length, 42);
    assert_int_equal(resp("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n"), UP_OK);
    assert_false(msg.conn_close);
    assert_int_equal(resp("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"), UP_OK);
    assert_true(msg.conn_close);
    /* A response body not ending in chunked runs to the close (RFC 9112 §6.3). */
    assert_int_equal(resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"), UP_OK);
    assert_false(msg.chunked);
    assert_true(msg.conn_close);
    assert_int_equal(resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"), UP_OK);
    assert_false(msg.chunked);
    assert_true(msg.conn_close);
}

static void test_h1_response_bad_status(void **state)
{
    (void)state;
    resp_err("HTTP/1.1 099 Low\r\n\r\n", 400, "status code out of range");
    resp_err("HTTP/1.1 600 High\r\n\r\n", 400, "status code out of range");
    resp_err("HTTP/1.1 000\r\n\r\n", 400, "status code out of range");
    resp_err("HTTP/1.1 20 OK\r\n\r\n", 400, "malformed status code");
    resp_err("HTTP/1.1 2000 OK\r\n\r\n", 400, "malformed status code");
    resp_err("HTTP/1.1 2x0 OK\r\n\r\n", 400, "malformed status code");
    resp_err("HTTP/1.1 -20 OK\r\n\r\n", 400, "malformed status code");
    resp_err("HTTP/1.1  200 OK\r\n\r\n", 400, "malformed status code");
    resp_err("HTTP/1.1 200OK\r\n\r\n", 400, "malformed status code");
    resp_err("HTTP/1.1\t200 OK\r\n\r\n", 400, "malformed status code");
    resp_err("HTTP/1.1\r\n\r\n", 400, "malformed status code");
    resp_err("HTTP/1.1 \r\n\r\n", 400, "malformed status code");
    resp_err("HTTP/1.1 200 O\x01K\r\n\r\n", 400, "control character in reason phrase");
    resp_err("HTTP/1.1 200 OK\x7f\r\n\r\n", 400, "control character in reason phrase");
    resp_err("ICY 200 OK\r\n\r\n", 400, "malformed HTTP version");
    resp_err("ICY\r\n\r\n", 400, "malformed status line");
    resp_err("\r\n\r\n", 400, "malformed status line");
    resp_err("HTTP/1.x 200 OK\r\n\r\n", 400, "malformed HTTP version");
    resp_err("http/1.1 200 OK\r\n\r\n", 400, "malformed HTTP version");
}

static void test_h1_response_rejects_bad_headers(void **state)
{
    (void)state;
    resp_err("HTTP/1.1 200 OK\r\nX: a\x01\r\n\r\n", 400, "control character in header value");
    resp_err("HTTP/1.1 200 OK\r\nContent-Length: 1, 1\r\n\r\n", 400, "invalid Content-Length");
    resp_err("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 400,
             "chunked applied twice");
}

/* ---- helpers and misuse ------------------------------------------------------------------ */

static void test_h1_find_case_insensitive(void **state)
{
    (void)state;
    assert_int_equal(req("GET / HTTP/1.1\r\nX-One: 1\r\nx-two: 2\r\nX-ONE: 3\r\n\r\n"), UP_OK);
    const struct up_h1_header *h = up_h1_find(&msg, "x-one");
    assert_ptr_equal(h, &hdrs[0]);
    h = up_h1_find(&msg, "X-TWO");
    assert_ptr_equal(h, &hdrs[1]);
    assert_null(up_h1_find(&msg, "X-Three"));
    assert_null(up_h1_find(&msg, "X-On"));
    assert_null(up_h1_find(&msg, "X-One-"));
    assert_null(up_h1_find(&msg, ""));
    assert_null(up_h1_find(NULL, "x"));
    assert_null(up_h1_find(&msg, NULL));
}

static void test_h1_list_has(void **state)
{
    (void)state;
    const char *v = "keep-alive, Upgrade";
    assert_true(up_h1_list_has(v, strlen(v), "upgrade"));
    assert_true(up_h1_list_has(v, strlen(v), "KEEP-ALIVE"));
    assert_false(up_h1_list_has(v, strlen(v), "keep"));
    assert_false(up_h1_list_has(v, strlen(v), "close"));
    v = " \t,, a ,\tb\t,c,";
    assert_true(up_h1_list_has(v, strlen(v), "a"));
    assert_true(up_h1_list_has(v, strlen(v), "b"));
    assert_true(up_h1_list_has(v, strlen(v), "c"));
    assert_false(up_h1_list_has(v, strlen(v), ""));
    assert_false(up_h1_list_has(v, strlen(v), "a ,\tb"));
    /* Only len bytes are looked at. */
    v = "abc, upgrade";
    assert_false(up_h1_list_has(v, 3, "upgrade"));
    assert_true(up_h1_list_has(v, 3, "abc"));
    assert_false(up_h1_list_has(v, 2, "abc"));
    assert_false(up_h1_list_has("", 0, "a"));
    assert_false(up_h1_list_has(NULL, 0, "a"));
    assert_false(up_h1_list_has("a", 1, NULL));
}

static void test_h1_invalid_arguments(void **state)
{
    (void)state;
    const uint8_t b[] = "GET / HTTP/1.1\r\n\r\n";
    size_t scan = 0;
    assert_int_equal(up_h1_parse_request(b, 18, &scan, NULL, hdrs, MAX_HDRS, 100), UP_EINVAL);
    assert_int_equal(up_h1_parse_request(NULL, 18, &scan, &msg, hdrs, MAX_HDRS, 100), UP_EINVAL);
    assert_int_equal(up_h1_parse_request(b, 18, &scan, &msg, NULL, MAX_HDRS, 100), UP_EINVAL);
    assert_int_equal(up_h1_parse_response(b, 18, &scan, NULL, hdrs, MAX_HDRS, 100), UP_EINVAL);
    assert_int_equal(up_h1_parse_request(NULL, 0, &scan, &msg, hdrs, MAX_HDRS, 100), UP_EAGAIN);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_h1_simple_get),
        cmocka_unit_test(test_h1_no_headers),
        cmocka_unit_test(test_h1_target_forms),
        cmocka_unit_test(test_h1_body_bytes_not_in_head),
        cmocka_unit_test(test_h1_websocket_upgrade_request),
        cmocka_unit_test(test_h1_incomplete_at_every_prefix),
        cmocka_unit_test(test_h1_ows_trimmed_and_value_chars),
        cmocka_unit_test(test_h1_header_name_token_chars),
        cmocka_unit_test(test_h1_rejects_bare_lf),
        cmocka_unit_test(test_h1_rejects_bare_cr),
        cmocka_unit_test(test_h1_rejects_obs_fold),
        cmocka_unit_test(test_h1_rejects_bad_header_names),
        cmocka_unit_test(test_h1_rejects_whitespace_before_colon),
        cmocka_unit_test(test_h1_rejects_ctl_in_value),
        cmocka_unit_test(test_h1_rejects_bad_method),
        cmocka_unit_test(test_h1_rejects_bad_target),
        cmocka_unit_test(test_h1_rejects_malformed_version),
        cmocka_unit_test(test_h1_rejects_unsupported_version_505),
        cmocka_unit_test(test_h1_rejects_empty_request_line),
        cmocka_unit_test(test_h1_content_length),
        cmocka_unit_test(test_h1_content_length_duplicate_same_value_folded),
        cmocka_unit_test(test_h1_rejects_bad_content_length),
        cmocka_unit_test(test_h1_rejects_conflicting_content_length),
        cmocka_unit_test(test_h1_rejects_te_with_content_length),
        cmocka_unit_test(test_h1_transfer_encoding_chunked),
        cmocka_unit_test(test_h1_rejects_te_not_ending_in_chunked),
        cmocka_unit_test(test_h1_rejects_te_empty),
        cmocka_unit_test(test_h1_rejects_chunked_twice),
        cmocka_unit_test(test_h1_rejects_te_in_http10_request),
        cmocka_unit_test(test_h1_connection_semantics),
        cmocka_unit_test(test_h1_max_headers_limit),
        cmocka_unit_test(test_h1_max_headers_zero),
        cmocka_unit_test(test_h1_max_head_limit),
        cmocka_unit_test(test_h1_max_head_default),
        cmocka_unit_test(test_h1_scan_hint_byte_at_a_time),
        cmocka_unit_test(test_h1_scan_hint_errors_across_calls),
        cmocka_unit_test(test_h1_scan_hint_out_of_range_or_null),
        cmocka_unit_test(test_h1_scan_hint_skips_scanned_bytes),
        cmocka_unit_test(test_h1_split_feeding_every_boundary),
        cmocka_unit_test(test_h1_response_101_upgrade),
        cmocka_unit_test(test_h1_response_200_chunked),
        cmocka_unit_test(test_h1_response_204),
        cmocka_unit_test(test_h1_response_reason_forms),
        cmocka_unit_test(test_h1_response_connection_and_framing),
        cmocka_unit_test(test_h1_response_bad_status),
        cmocka_unit_test(test_h1_response_rejects_bad_headers),
        cmocka_unit_test(test_h1_find_case_insensitive),
        cmocka_unit_test(test_h1_list_has),
        cmocka_unit_test(test_h1_invalid_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, teardown);
}
