/* The public API's option handling (include/underpass/underpass.h): every bad input is an
 * error value with a message that names it, nothing is printed, nothing is started. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "underpass/underpass.h"

static void on_stream(void *ud, const char *service, int fd, const char *client)
{
    (void)ud;
    (void)service;
    (void)client;
    close(fd);
}

static void test_api_version(void **state)
{
    (void)state;
    assert_string_equal(up_version(), UNDERPASS_VERSION);
    assert_int_equal(up_abi_version(), UNDERPASS_VERSION_MAJOR);
    assert_string_equal(up_error_name(UP_E_INVAL), "invalid argument");
    assert_string_equal(up_error_name(UP_E_NOMEM), "out of memory");
}

static void test_api_options_bad_values(void **state)
{
    (void)state;
    char err[256];
    struct up_options *o = up_options_new(UP_OPTIONS_AGENT);
    assert_non_null(o);
    assert_int_equal(up_options_set(o, "nonsense", "1", err, sizeof err), UP_E_INVAL);
    assert_string_equal(err, "unknown option 'nonsense'");
    assert_int_equal(up_options_set(o, "window", "lots", err, sizeof err), UP_E_INVAL);
    assert_non_null(strstr(err, "is not a size"));
    assert_int_equal(up_options_set(o, "dial-timeout", "soon", err, sizeof err), UP_E_INVAL);
    assert_non_null(strstr(err, "is not a duration"));
    assert_int_equal(up_options_set(o, "insecure", "maybe", err, sizeof err), UP_E_INVAL);
    assert_int_equal(up_options_set(o, "log-level", "loud", err, sizeof err), UP_E_INVAL);
    assert_non_null(strstr(err, "log-level"));
    assert_int_equal(up_options_set(o, "token-file", "/nonexistent/token", err, sizeof err),
                     UP_E_INVAL);
    assert_non_null(strstr(err, "/nonexistent/token"));
    assert_int_equal(up_options_set(o, "relay", NULL, err, sizeof err), UP_E_INVAL);
    /* connect's options are not an agent's */
    assert_int_equal(up_options_set(o, "hold", "5s", err, sizeof err), UP_E_INVAL);
    up_options_free(o);
    assert_null(up_options_new((enum up_options_kind)7));
    up_options_free(NULL);
}

static void test_api_serve_names(void **state)
{
    (void)state;
    char err[256];
    struct up_options *o = up_options_new(UP_OPTIONS_AGENT);
    assert_int_equal(up_options_serve(o, "", on_stream, NULL, err, sizeof err), UP_E_INVAL);
    assert_int_equal(up_options_serve(o, "*", on_stream, NULL, err, sizeof err), UP_E_INVAL);
    assert_int_equal(up_options_serve(o, "a b", on_stream, NULL, err, sizeof err), UP_E_INVAL);
    char name[65];
    memset(name, 'n', 64);
    name[64] = '\0';
    assert_int_equal(up_options_serve(o, name, on_stream, NULL, err, sizeof err), UP_E_INVAL);
    name[63] = '\0'; /* 63: the longest name */
    assert_int_equal(up_options_serve(o, name, on_stream, NULL, err, sizeof err), 0);
    assert_int_equal(up_options_serve(o, "echo", on_stream, NULL, err, sizeof err), 0);
    assert_int_equal(up_options_serve(o, "echo", on_stream, NULL, err, sizeof err), UP_E_INVAL);
    assert_string_equal(err, "service 'echo' given twice");
    assert_int_equal(up_options_serve(o, "x", NULL, NULL, err, sizeof err), UP_E_INVAL);
    for (int i = 2; i < 32; i++) {
        char n[16];
        snprintf(n, sizeof n, "s%d", i);
        assert_int_equal(up_options_serve(o, n, on_stream, NULL, err, sizeof err), 0);
    }
    assert_int_equal(up_options_serve(o, "one-too-many", on_stream, NULL, err, sizeof err),
                     UP_E_INVAL);
    up_options_free(o);
    struct up_options *c = up_options_new(UP_OPTIONS_CONNECT);
    assert_int_equal(up_options_serve(c, "echo", on_stream, NULL, err, sizeof err), UP_E_INVAL);
    up_options_free(c);
}

/* Starting checks what the command line checks, with its messages, before anything runs. */
static void test_api_start_errors(void **state)
{
    (void)state;
    char err[256];
    struct up_agent *a = NULL;
    struct up_options *o = up_options_new(UP_OPTIONS_AGENT);
    assert_int_equal(up_agent_start_thread(o, &a, err, sizeof err), UP_E_INVAL);
    assert_non_null(strstr(err, "--relay is required"));
    assert_int_equal(up_options_set(o, "relay", "ftp://x", err, sizeof err), 0);
    assert_int_equal(up_agent_start_thread(o, &a, err, sizeof err), UP_E_INVAL);
    assert_non_null(strstr(err, "unsupported scheme"));
    assert_int_equal(up_options_set(o, "relay", "ws://127.0.0.1:9", err, sizeof err), 0);
    assert_int_equal(up_agent_start_thread(o, &a, err, sizeof err), UP_E_INVAL);
    assert_non_null(strstr(err, "--token is required"));
    assert_int_equal(up_options_set(o, "token", "t", err, sizeof err), 0);
    assert_int_equal(up_agent_start_thread(o, &a, err, sizeof err), UP_E_INVAL);
    assert_non_null(strstr(err, "at least one --service"));
    assert_int_equal(up_options_set(o, "service", "web=tcp://127.0.0.1:1", err, sizeof err), 0);
    assert_int_equal(up_options_serve(o, "web", on_stream, NULL, err, sizeof err), 0);
    assert_int_equal(up_agent_start_thread(o, &a, err, sizeof err), UP_E_INVAL);
    assert_string_equal(err, "service 'web' given twice");
    assert_int_equal(up_options_set(o, "ca", "ca.pem", err, sizeof err), 0);
    assert_int_equal(up_agent_start_thread(o, &a, err, sizeof err), UP_E_INVAL);
    assert_non_null(strstr(err, "only apply to wss://"));
    assert_null(a);
    up_options_free(o);
    assert_int_equal(up_agent_new(NULL, NULL, &a, err, sizeof err), UP_E_INVAL);

    struct up_options *c = up_options_new(UP_OPTIONS_CONNECT);
    assert_int_equal(up_options_set(c, "relay", "ws://127.0.0.1:9", err, sizeof err), 0);
    assert_int_equal(up_options_set(c, "token", "t", err, sizeof err), 0);
    assert_int_equal(up_options_set(c, "listen", "127.0.0.1:0", err, sizeof err), 0);
    struct up_connect *k = NULL;
    uv_loop_t loop;
    uv_loop_init(&loop);
    assert_int_equal(up_connect_new(&loop, c, "echo", &k, err, sizeof err), UP_E_INVAL);
    assert_non_null(strstr(err, "up_connect_open"));
    up_options_free(c);
    c = up_options_new(UP_OPTIONS_CONNECT);
    assert_int_equal(up_options_set(c, "relay", "ws://127.0.0.1:9", err, sizeof err), 0);
    assert_int_equal(up_options_set(c, "token", "t", err, sizeof err), 0);
    assert_int_equal(up_connect_new(&loop, c, "no such*", &k, err, sizeof err), UP_E_INVAL);
    assert_non_null(strstr(err, "not a valid service name"));
    assert_null(k);
    up_options_free(c);
    assert_int_equal(uv_loop_close(&loop), 0);
    assert_int_equal(up_connect_open(NULL, NULL), UP_E_INVAL);
    up_agent_free(NULL);
    up_connect_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_api_version),
        cmocka_unit_test(test_api_options_bad_values),
        cmocka_unit_test(test_api_serve_names),
        cmocka_unit_test(test_api_start_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
