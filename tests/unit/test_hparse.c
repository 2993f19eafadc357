/* The relay's small HTTP field parsers (src/proto/hparse.c): query parameters, Bearer,
 * Cookie, X-Forwarded-Proto, Host, Sec-WebSocket-Protocol, an agent's ?services= and the
 * --route spec. Every limit at limit-1 / limit / limit+1; the error texts are the ones the
 * relay answers with (tests/integration checks them end to end). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "proto/hparse.h"

/* The value of key in q as a string, "(null)" when absent. */
static const char *qp(const char *q, const char *key)
{
    static char out[256];
    size_t vl = 0;
    const char *v = up_hparse_query_param(q, strlen(q), key, &vl);
    if (!v) {
        return "(null)";
    }
    snprintf(out, sizeof out, "%.*s", (int)vl, v);
    return out;
}

static void test_hparse_query_param_finds_exact_names(void **state)
{
    (void)state;
    assert_string_equal(qp("services=a,b&http=b", "services"), "a,b");
    assert_string_equal(qp("services=a,b&http=b", "http"), "b");
    assert_string_equal(qp("a=1&token=T&token=U", "token"), "T"); /* the first wins */
    assert_string_equal(qp("token=", "token"), "");
    assert_string_equal(qp("&&token=x&", "token"), "x");
    assert_string_equal(qp("x=token=y", "token"), "(null)");
    /* Negative: prefixes, no '=', other names, case, empty input. */
    assert_string_equal(qp("tokens=x", "token"), "(null)");
    assert_string_equal(qp("toke=x", "token"), "(null)");
    assert_string_equal(qp("token", "token"), "(null)");
    assert_string_equal(qp("TOKEN=x", "token"), "(null)");
    assert_string_equal(qp("", "token"), "(null)");
    size_t vl = 7;
    assert_null(up_hparse_query_param(NULL, 0, "token", &vl));
    assert_int_equal(vl, 7);
}

static void test_hparse_query_next_iterates_every_value(void **state)
{
    (void)state;
    static const char q[] = "t=1&x=2&t=&t=3";
    const char *p = q, *end = q + strlen(q);
    size_t vl = 0;
    const char *v = up_hparse_query_next(&p, end, "t", &vl);
    assert_non_null(v);
    assert_memory_equal(v, "1", 1);
    assert_int_equal(vl, 1);
    v = up_hparse_query_next(&p, end, "t", &vl);
    assert_non_null(v);
    assert_int_equal(vl, 0);
    v = up_hparse_query_next(&p, end, "t", &vl);
    assert_non_null(v);
    assert_int_equal(vl, 1);
    assert_memory_equal(v, "3", 1);
    assert_null(up_hparse_query_next(&p, end, "t", &vl));
    assert_ptr_equal(p, end);
    assert_null(up_hparse_query_next(&p, end, "t", &vl));
}

/* The token as a string, "-" when up_hparse_bearer() is false. */
static const char *bearer(const char *v)
{
    static char out[256];
    const char *t = NULL;
    size_t tl = 0;
    if (!up_hparse_bearer(v, strlen(v), &t, &tl)) {
        return "-";
    }
    snprintf(out, sizeof out, "%.*s", (int)tl, t);
    return out;
}

static void test_hparse_bearer(void **state)
{
    (void)state;
    /* RFC 6750 §2.1 */
    assert_string_equal(bearer("Bearer mF_9.B5f-4.1JqM"), "mF_9.B5f-4.1JqM");
    assert_string_equal(bearer("bearer abc"), "abc");
    assert_string_equal(bearer("BEARER \t abc \t"), "abc");
    /* 8 bytes is the shortest that can carry a token; 7 cannot. */
    assert_string_equal(bearer("Bearer x"), "x");
    assert_string_equal(bearer("Bearer "), "-");
    assert_string_equal(bearer("Bearer  "), "-");
    assert_string_equal(bearer("Basic dXNlcjpwYXNz"), "-");
    assert_string_equal(bearer("Bearerx abc"), "-");
    assert_string_equal(bearer("Bear"), "-");
    assert_string_equal(bearer(""), "-");
    /* An empty token after the scheme still sets the outputs (the relay then refuses it as
     * an invalid token); anything else leaves them alone. */
    const char *t = "keep";
    size_t tl = 4;
    assert_false(up_hparse_bearer("Bearer  ", 8, &t, &tl));
    assert_int_equal(tl, 0);
    t = "keep";
    tl = 4;
    assert_false(up_hparse_bearer("Basic abc", 9, &t, &tl));
    assert_string_equal(t, "keep");
    assert_int_equal(tl, 4);
}

static const char *cookie(const char *v, const char *name)
{
    static char out[256];
    size_t vl = 0;
    const char *c = up_hparse_cookie(v, strlen(v), name, &vl);
    if (!c) {
        return "(null)";
    }
    snprintf(out, sizeof out, "%.*s", (int)vl, c);
    return out;
}

static void test_hparse_cookie(void **state)
{
    (void)state;
    /* RFC 6265 §4.2.1 cookie-string: pairs separated by "; ". */
    assert_string_equal(cookie("underpass_token=abc", "underpass_token"), "abc");
    assert_string_equal(cookie("a=1; underpass_token=abc; b=2", "underpass_token"), "abc");
    assert_string_equal(cookie("a=1;underpass_token=abc", "underpass_token"), "abc");
    assert_string_equal(cookie(" \tunderpass_token=abc \t; b=2", "underpass_token"), "abc");
    assert_string_equal(cookie("underpass_token=", "underpass_token"), "");
    assert_string_equal(cookie("t=1; t=2", "t"), "1");
    /* Negative */
    assert_string_equal(cookie("xunderpass_token=abc", "underpass_token"), "(null)");
    assert_string_equal(cookie("underpass_tokens=abc", "underpass_token"), "(null)");
    assert_string_equal(cookie("underpass_token", "underpass_token"), "(null)");
    assert_string_equal(cookie("a=underpass_token=abc", "underpass_token"), "(null)");
    assert_string_equal(cookie("", "underpass_token"), "(null)");
    assert_string_equal(cookie(";;;", "underpass_token"), "(null)");
}

static const char *xfp(const char *v)
{
    const char *p = up_hparse_forwarded_proto(v, strlen(v));
    return p ? p : "(null)";
}

static void test_hparse_forwarded_proto_takes_the_rightmost(void **state)
{
    (void)state;
    assert_string_equal(xfp("https"), "https");
    assert_string_equal(xfp("HTTP"), "http");
    assert_string_equal(xfp("http, https"), "https");
    assert_string_equal(xfp("https,\t http"), "http");
    /* Negative */
    assert_string_equal(xfp("https, ws"), "(null)");
    assert_string_equal(xfp("https,"), "(null)");
    assert_string_equal(xfp("httpss"), "(null)");
    assert_string_equal(xfp(""), "(null)");
}

static const char *host(const char *v, size_t cap)
{
    static char out[300];
    assert_true(cap <= sizeof out);
    return up_hparse_host(v, strlen(v), out, cap) ? out : "(false)";
}

static void test_hparse_host(void **state)
{
    (void)state;
    assert_string_equal(host("Web.Example.COM", 256), "web.example.com");
    assert_string_equal(host("web.example.com:8443", 256), "web.example.com");
    assert_string_equal(host("web.example.com.", 256), "web.example.com");
    assert_string_equal(host("[2001:DB8::1]:443", 256), "[2001:db8::1]");
    assert_string_equal(host("[::1", 256), "[::1");
    /* The value must be shorter than cap: cap-1 bytes fit, cap do not. */
    assert_string_equal(host("abcd", 5), "abcd");
    assert_string_equal(host("abcde", 5), "(false)");
    assert_string_equal(host("abc", 5), "abc");
    /* Negative: empty, nothing left. */
    assert_string_equal(host("", 256), "(false)");
    assert_string_equal(host(":80", 256), "(false)");
    assert_string_equal(host("...", 256), "(false)");
}

/* Feed the header lines, then "pick|token" ("-" for none). */
static const char *wsproto(const char *const *lines, size_t n)
{
    static char out[512];
    struct up_hparse_wsproto sp;
    up_hparse_wsproto_init(&sp);
    for (size_t i = 0; i < n; i++) {
        up_hparse_wsproto_feed(&sp, lines[i], strlen(lines[i]));
    }
    size_t pl = 0, tl = 0;
    const char *p = up_hparse_wsproto_pick(&sp, &pl);
    const char *t = up_hparse_wsproto_token(&sp, &tl);
    snprintf(out, sizeof out, "%.*s|%.*s", p ? (int)pl : 1, p ? p : "-", t ? (int)tl : 1,
             t ? t : "-");
    return out;
}

static void test_hparse_wsproto_choice(void **state)
{
    (void)state;
    static const char *const a[] = {"chat, binary, bearer.TOK"};
    assert_string_equal(wsproto(a, 1), "binary|TOK");
    static const char *const b[] = {"bearer.TOK", " chat ,superchat"};
    assert_string_equal(wsproto(b, 2), "chat|TOK");
    static const char *const c[] = {"bearer.ONE, bearer.TWO"};
    assert_string_equal(wsproto(c, 1), "bearer.ONE|ONE");
    static const char *const d[] = {"chat", "binary"};
    assert_string_equal(wsproto(d, 2), "binary|-");
    /* Negative: "bearer." alone is no token (it is an ordinary entry), nor is "Bearer.X";
     * empty entries are skipped; nothing offered picks nothing. */
    static const char *const e[] = {"bearer."};
    assert_string_equal(wsproto(e, 1), "bearer.|-");
    static const char *const f[] = {"Bearer.X"};
    assert_string_equal(wsproto(f, 1), "Bearer.X|-");
    static const char *const g[] = {" , ,\t,"};
    assert_string_equal(wsproto(g, 1), "-|-");
    assert_string_equal(wsproto(NULL, 0), "-|-");
    static const char *const h[] = {"binaryx, binar"};
    assert_string_equal(wsproto(h, 1), "binaryx|-");
}

static struct up_token_claims claims(const char *const *svcs, size_t n)
{
    struct up_token_claims cl;
    memset(&cl, 0, sizeof cl);
    cl.role = UP_ROLE_AGENT;
    for (size_t i = 0; i < n; i++) {
        snprintf(cl.services[i], sizeof cl.services[i], "%s", svcs[i]);
    }
    cl.n_services = n;
    return cl;
}

static int services(const char *q, const struct up_token_claims *cl, struct up_hparse_services *out,
                    char *why)
{
    return up_hparse_services(q, strlen(q), cl, out, why, 160);
}

static void test_hparse_services_registers_names_and_flags(void **state)
{
    (void)state;
    static const char *const any[] = {"*"};
    struct up_token_claims cl = claims(any, 1);
    struct up_hparse_services s;
    char why[160] = "";
    assert_int_equal(services("services=ssh,web,api&http=web,api&protect=api", &cl, &s, why),
                     UP_OK);
    assert_int_equal(s.n, 3);
    assert_string_equal(s.names[0], "ssh");
    assert_string_equal(s.names[2], "api");
    assert_int_equal(s.flags[0], 0);
    assert_int_equal(s.flags[1], UP_HPARSE_SVC_HTTP);
    assert_int_equal(s.flags[2], UP_HPARSE_SVC_HTTP | UP_HPARSE_SVC_PROTECT);
    /* A trailing comma ends the list; empty flag lists set nothing. */
    assert_int_equal(services("x=1&services=a.b-c_d,&http=&protect=", &cl, &s, why), UP_OK);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.names[0], "a.b-c_d");
    assert_int_equal(s.flags[0], 0);
    /* protect without http parses: the relay refuses it with its own reason. */
    assert_int_equal(services("services=a&protect=a", &cl, &s, why), UP_OK);
    assert_int_equal(s.flags[0], UP_HPARSE_SVC_PROTECT);
}

static void test_hparse_services_refuses(void **state)
{
    (void)state;
    static const char *const some[] = {"ssh", "web"};
    struct up_token_claims cl = claims(some, 2);
    struct up_hparse_services s;
    char why[160];
    assert_int_equal(up_hparse_services(NULL, 0, &cl, &s, why, sizeof why), UP_EPROTO);
    assert_string_equal(why, "no services listed (?services=name,...)");
    assert_int_equal(services("services=", &cl, &s, why), UP_EPROTO);
    assert_string_equal(why, "no services listed (?services=name,...)");
    assert_int_equal(services("services=ssh,,web", &cl, &s, why), UP_EPROTO);
    assert_string_equal(why, "invalid service name ''");
    assert_int_equal(services("services=*", &cl, &s, why), UP_EPROTO);
    assert_string_equal(why, "invalid service name '*'");
    assert_int_equal(services("services=a/b", &cl, &s, why), UP_EPROTO);
    assert_string_equal(why, "invalid service name 'a/b'");
    assert_int_equal(services("services=ssh,db", &cl, &s, why), UP_EAUTH);
    assert_string_equal(why, "token does not allow service 'db'");
    /* The first error in the list wins. */
    assert_int_equal(services("services=db,a/b", &cl, &s, why), UP_EAUTH);
    assert_int_equal(services("services=ssh&http=web", &cl, &s, why), UP_EPROTO);
    assert_string_equal(why, "http=web names no service of this agent");
    assert_int_equal(services("services=ssh&http=ssh&protect=,ssh", &cl, &s, why), UP_EPROTO);
    assert_string_equal(why, "protect= names no service of this agent");
}

/* "services=s0,s1,...,s(n-1)" */
static void name_list(char *q, size_t cap, size_t n, size_t name_len)
{
    size_t o = (size_t)snprintf(q, cap, "services=");
    for (size_t i = 0; i < n; i++) {
        o += (size_t)snprintf(q + o, cap - o, "%s%0*zu", i ? "," : "", (int)name_len, i);
    }
}

static void test_hparse_services_limits(void **state)
{
    (void)state;
    static const char *const any[] = {"*"};
    struct up_token_claims cl = claims(any, 1);
    struct up_hparse_services s;
    char q[4096], why[160];
    /* UP_TOKEN_MAX_SERVICES (32) names: 31 and 32 fit, 33 do not. */
    name_list(q, sizeof q, UP_TOKEN_MAX_SERVICES - 1, 2);
    assert_int_equal(services(q, &cl, &s, why), UP_OK);
    assert_int_equal(s.n, UP_TOKEN_MAX_SERVICES - 1);
    name_list(q, sizeof q, UP_TOKEN_MAX_SERVICES, 2);
    assert_int_equal(services(q, &cl, &s, why), UP_OK);
    assert_int_equal(s.n, UP_TOKEN_MAX_SERVICES);
    name_list(q, sizeof q, UP_TOKEN_MAX_SERVICES + 1, 2);
    assert_int_equal(services(q, &cl, &s, why), UP_ELIMIT);
    assert_string_equal(why, "too many services");
    /* UP_TOKEN_MAX_NAME (63) bytes per name: 62 and 63 fit, 64 do not. */
    name_list(q, sizeof q, 1, UP_TOKEN_MAX_NAME - 1);
    assert_int_equal(services(q, &cl, &s, why), UP_OK);
    name_list(q, sizeof q, 1, UP_TOKEN_MAX_NAME);
    assert_int_equal(services(q, &cl, &s, why), UP_OK);
    assert_int_equal(strlen(s.names[0]), UP_TOKEN_MAX_NAME);
    name_list(q, sizeof q, 1, UP_TOKEN_MAX_NAME + 1);
    assert_int_equal(services(q, &cl, &s, why), UP_EPROTO);
    assert_int_equal(strncmp(why, "invalid service name '", 22), 0);
}

static int route(const char *spec, struct up_hparse_route *rt, char *err)
{
    return up_hparse_route(spec, rt, err, 200);
}

static void test_hparse_route_parses(void **state)
{
    (void)state;
    struct up_hparse_route rt;
    char err[200];
    assert_int_equal(route("Web.Example.com/api=web", &rt, err), UP_OK);
    assert_string_equal(rt.host, "web.example.com");
    assert_string_equal(rt.prefix, "/api");
    assert_string_equal(rt.service, "web");
    assert_int_equal(route("/=root", &rt, err), UP_OK);
    assert_string_equal(rt.host, "");
    assert_string_equal(rt.prefix, "/");
    assert_int_equal(route("[::1]:8080=v6", &rt, err), UP_OK);
    assert_string_equal(rt.host, "[::1]:8080");
    assert_string_equal(rt.prefix, "");
    /* The last '=' separates the service: a prefix may hold '='. */
    assert_int_equal(route("/a=b=svc", &rt, err), UP_OK);
    assert_string_equal(rt.prefix, "/a=b");
    assert_string_equal(rt.service, "svc");
}

static void test_hparse_route_refuses(void **state)
{
    (void)state;
    struct up_hparse_route rt;
    char err[200];
    assert_int_equal(route("web", &rt, err), UP_EINVAL);
    assert_string_equal(err, "--route 'web': expected [HOST][/PREFIX]=SERVICE");
    assert_int_equal(route("=web", &rt, err), UP_EINVAL);
    assert_string_equal(err, "--route '=web': expected [HOST][/PREFIX]=SERVICE");
    assert_int_equal(route("/api=", &rt, err), UP_EINVAL);
    assert_string_equal(err, "--route '/api=': '' is not a valid service name");
    assert_int_equal(route("/api=a b", &rt, err), UP_EINVAL);
    assert_string_equal(err, "--route '/api=a b': 'a b' is not a valid service name");
    assert_int_equal(route("we b/x=svc", &rt, err), UP_EINVAL);
    assert_string_equal(err, "--route 'we b/x=svc': 'we b' is not a host name");
    assert_int_equal(route("/a b=svc", &rt, err), UP_EINVAL);
    assert_string_equal(err, "--route '/a b=svc': bad character in the path prefix");
    assert_int_equal(route("/a?b=svc", &rt, err), UP_EINVAL);
    assert_int_equal(route("/a#b=svc", &rt, err), UP_EINVAL);
}

static void test_hparse_route_limits(void **state)
{
    (void)state;
    struct up_hparse_route rt;
    char spec[700], err[200];
    /* Host and prefix: up to 255 bytes each (they are kept NUL-terminated in 256). */
    for (size_t n = 254; n <= 256; n++) {
        memset(spec, 'h', n);
        snprintf(spec + n, sizeof spec - n, "=svc");
        assert_int_equal(route(spec, &rt, err), n <= 255 ? UP_OK : UP_EINVAL);
        spec[0] = '/';
        assert_int_equal(route(spec, &rt, err), n <= 255 ? UP_OK : UP_EINVAL);
        if (n == 256) {
            assert_non_null(strstr(err, "': host or prefix too long"));
        } else {
            assert_int_equal(strlen(rt.prefix), n);
        }
    }
    /* Service name: 63 bytes fit, 64 do not. */
    for (size_t n = 62; n <= 64; n++) {
        int o = snprintf(spec, sizeof spec, "/x=");
        memset(spec + o, 's', n);
        spec[(size_t)o + n] = '\0';
        assert_int_equal(route(spec, &rt, err), n <= UP_TOKEN_MAX_NAME ? UP_OK : UP_EINVAL);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hparse_query_param_finds_exact_names),
        cmocka_unit_test(test_hparse_query_next_iterates_every_value),
        cmocka_unit_test(test_hparse_bearer),
        cmocka_unit_test(test_hparse_cookie),
        cmocka_unit_test(test_hparse_forwarded_proto_takes_the_rightmost),
        cmocka_unit_test(test_hparse_host),
        cmocka_unit_test(test_hparse_wsproto_choice),
        cmocka_unit_test(test_hparse_services_registers_names_and_flags),
        cmocka_unit_test(test_hparse_services_refuses),
        cmocka_unit_test(test_hparse_services_limits),
        cmocka_unit_test(test_hparse_route_parses),
        cmocka_unit_test(test_hparse_route_refuses),
        cmocka_unit_test(test_hparse_route_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
