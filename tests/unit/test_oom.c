/* Constructors free what they made on every error path: the relay, an agent and a connect
 * (through the public API, the path the CLI takes too) are started with their Nth allocation
 * failing, for every N until one starts. A start that fails must leave nothing on the loop
 * (uv_loop_close succeeds) and, in the sanitizer build, nothing leaked. Allocations go through
 * src/base/alloc.c; this executable wraps them at link time (-Wl,--wrap). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <uv.h>

#include "base/alloc.h"
#include "link/link.h"
#include "proto/token.h"
#include "relay/relay.h"
#include "relaycfg.h"
#include "underpass/underpass.h"

static long alloc_count;
static long fail_at; /* 0: never */

static bool fail_now(void)
{
    alloc_count++;
    return fail_at && alloc_count == fail_at;
}

void *__real_up_malloc(size_t n);
void *__real_up_calloc(size_t n, size_t size);
void *__real_up_realloc(void *p, size_t n);
char *__real_up_strndup(const char *s, size_t n);

void *__wrap_up_malloc(size_t n);
void *__wrap_up_calloc(size_t n, size_t size);
void *__wrap_up_realloc(void *p, size_t n);
char *__wrap_up_strndup(const char *s, size_t n);

void *__wrap_up_malloc(size_t n)
{
    return fail_now() ? NULL : __real_up_malloc(n);
}

void *__wrap_up_calloc(size_t n, size_t size)
{
    return fail_now() ? NULL : __real_up_calloc(n, size);
}

void *__wrap_up_realloc(void *p, size_t n)
{
    return fail_now() ? NULL : __real_up_realloc(p, n);
}

char *__wrap_up_strndup(const char *s, size_t n)
{
    return fail_now() ? NULL : __real_up_strndup(s, n);
}

#define SECRET "test-oom-secret-0123456789abcdefghijklmnopqrstuvwxyz0123"

static void on_stream(void *ud, const char *service, int fd, const char *client)
{
    (void)ud;
    (void)service;
    (void)client;
    (void)fd;
}

/* Run the loop until nothing of ours is left on it, then close it. */
static void drain_loop(uv_loop_t *loop)
{
    uv_run(loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(loop), 0);
}

static void test_oom_relay_new(void **state)
{
    (void)state;
    struct up_relay_cfg rc;
    test_relay_cfg(&rc, SECRET);
    for (long n = 1;; n++) {
        uv_loop_t loop;
        uv_loop_init(&loop);
        char err[256];
        alloc_count = 0;
        fail_at = n;
        struct up_relay *r = up_relay_new(&loop, &rc, err, sizeof err);
        fail_at = 0;
        if (r) {
            up_relay_shutdown(r);
            drain_loop(&loop);
            up_relay_free(r);
            assert_true(n > 1);
            break;
        }
        assert_string_equal(err, "out of memory");
        drain_loop(&loop);
    }
}

static void test_oom_agent_new(void **state)
{
    (void)state;
    char err[256];
    struct up_options *o = up_options_new(UP_OPTIONS_AGENT);
    assert_int_equal(up_options_set(o, "relay", "ws://127.0.0.1:9", err, sizeof err), 0);
    assert_int_equal(up_options_set(o, "token", "t", err, sizeof err), 0);
    assert_int_equal(up_options_set(o, "links", "3", err, sizeof err), 0);
    assert_int_equal(up_options_set(o, "service", "ssh=tcp://127.0.0.1:22", err, sizeof err), 0);
    assert_int_equal(up_options_serve(o, "echo", on_stream, NULL, err, sizeof err), 0);
    for (long n = 1;; n++) {
        uv_loop_t loop;
        uv_loop_init(&loop);
        struct up_agent *a = NULL;
        alloc_count = 0;
        fail_at = n;
        int rv = up_agent_new(&loop, o, &a, err, sizeof err);
        fail_at = 0;
        if (rv == 0) {
            up_agent_stop(a);
            uv_run(&loop, UV_RUN_DEFAULT);
            up_agent_free(a);
            assert_int_equal(uv_loop_close(&loop), 0);
            assert_true(n > 3);
            break;
        }
        assert_int_equal(rv, UP_E_NOMEM);
        assert_null(a);
        drain_loop(&loop);
    }
    up_options_free(o);
}

static void test_oom_connect_new(void **state)
{
    (void)state;
    char err[256];
    struct up_options *o = up_options_new(UP_OPTIONS_CONNECT);
    assert_int_equal(up_options_set(o, "relay", "ws://127.0.0.1:9", err, sizeof err), 0);
    assert_int_equal(up_options_set(o, "token", "t", err, sizeof err), 0);
    for (long n = 1;; n++) {
        uv_loop_t loop;
        uv_loop_init(&loop);
        struct up_connect *c = NULL;
        alloc_count = 0;
        fail_at = n;
        int rv = up_connect_new(&loop, o, "echo", &c, err, sizeof err);
        fail_at = 0;
        if (rv == 0) {
            up_connect_stop(c);
            uv_run(&loop, UV_RUN_DEFAULT);
            up_connect_free(c);
            assert_int_equal(uv_loop_close(&loop), 0);
            assert_true(n > 2);
            break;
        }
        assert_int_equal(rv, UP_E_NOMEM);
        assert_null(c);
        drain_loop(&loop);
    }
    up_options_free(o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_oom_relay_new),
        cmocka_unit_test(test_oom_agent_new),
        cmocka_unit_test(test_oom_connect_new),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
