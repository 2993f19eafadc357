/* Per-loop state only: two whole stacks (relay + agent + connect, each with a stream carrying
 * 8 MiB through an in-process echo) run at the same time on two loops in two threads of one
 * process, byte for byte, and each loop ends with nothing of ours left on it. Before the
 * flusher became per loop (up_linkloop) the second loop's links were flushed from the first
 * loop's idle handle, from the other thread. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sys/socket.h>
#include <uv.h>

#include "base/alloc.h"
#include "link/link.h"
#include "proto/token.h"
#include "relay/relay.h"
#include "relaycfg.h"
#include "underpass/underpass.h"

#define SECRET "test-loops-secret-0123456789abcdefghijklmnopqrstuvwxyz"
#define BYTES (8u << 20)

struct echo {
    uv_poll_t poll;
    int fd;
    uint8_t buf[65536];
    size_t len;
    int eof;
    struct stack *st;
};

struct stack {
    uint32_t seed;
    bool closer; /* the service closes each stream at once (SIGPIPE check) */
    uv_loop_t loop;
    struct up_relay *relay;
    struct up_agent *agent;
    struct up_connect *conn;
    uv_poll_t poll;
    int fd;
    bool poll_on;
    uint8_t *data;
    size_t sent, got;
    int failed;
    int done;
    uv_timer_t timer;
    uint64_t started_ms;
    int echoes_open;
    char why[160];
};

static uint8_t pattern(uint32_t seed, size_t i)
{
    uint32_t x = (uint32_t)i * 2654435761u ^ seed;
    x ^= x >> 15;
    return (uint8_t)(x * 2246822519u >> 24);
}

static void mint(const char *role_services, enum up_token_role role, char *out, size_t cap)
{
    struct up_token_claims c = {.role = role, .n_services = 1, .exp = time(NULL) + 3600};
    snprintf(c.services[0], sizeof c.services[0], "%s", role_services);
    size_t len;
    assert_int_equal(up_token_sign((const uint8_t *)SECRET, strlen(SECRET), &c, out, cap, &len), 0);
}

static void echo_closed(uv_handle_t *h)
{
    struct echo *e = h->data;
    e->st->echoes_open--;
    close(e->fd);
    up_free(e);
}

static void echo_cb(uv_poll_t *h, int status, int events)
{
    struct echo *e = h->data;
    if (status < 0) {
        uv_close((uv_handle_t *)h, echo_closed);
        return;
    }
    if ((events & UV_READABLE) && e->len == 0 && !e->eof) {
        ssize_t n = read(e->fd, e->buf, sizeof e->buf);
        if (n > 0) {
            e->len = (size_t)n;
        } else if (n == 0) {
            e->eof = 1;
        }
    }
    while (e->len) {
        ssize_t n = write(e->fd, e->buf, e->len);
        if (n <= 0) {
            break;
        }
        memmove(e->buf, e->buf + n, e->len - (size_t)n);
        e->len -= (size_t)n;
    }
    if (e->eof && e->len == 0) {
        shutdown(e->fd, SHUT_WR);
        uv_close((uv_handle_t *)h, echo_closed);
        return;
    }
    uv_poll_start(h, e->len ? UV_WRITABLE : UV_READABLE, echo_cb);
}

struct closer {
    uv_timer_t t;
    int fd;
};

static void closer_freed(uv_handle_t *h)
{
    up_free(h->data);
}

static void closer_cb(uv_timer_t *t)
{
    struct closer *k = t->data;
    close(k->fd);
    uv_close((uv_handle_t *)t, closer_freed);
}

static void on_stream(void *ud, const char *service, int fd, const char *client)
{
    struct stack *st = ud;
    (void)service;
    (void)client;
    if (st->closer) {
        /* Let the client's bytes pile up in the socket first, unread, then close: the agent is
         * in the middle of writing to it. */
        struct closer *k = up_calloc(1, sizeof(*k));
        assert_non_null(k);
        k->fd = fd;
        k->t.data = k;
        uv_timer_init(&st->loop, &k->t);
        uv_timer_start(&k->t, closer_cb, 300, 0);
        return;
    }
    struct echo *e = up_calloc(1, sizeof(*e));
    assert_non_null(e);
    e->fd = fd;
    e->st = st;
    e->poll.data = e;
    assert_int_equal(uv_poll_init(&st->loop, &e->poll, fd), 0);
    st->echoes_open++;
    uv_poll_start(&e->poll, UV_READABLE, echo_cb);
}

static void finish(struct stack *st, const char *why)
{
    if (st->done) {
        return;
    }
    st->done = 1;
    if (why) {
        st->failed = 1;
        snprintf(st->why, sizeof st->why, "%s", why);
    }
    if (st->poll_on) {
        uv_poll_stop(&st->poll);
        uv_close((uv_handle_t *)&st->poll, NULL);
    }
    uv_timer_stop(&st->timer);
    uv_close((uv_handle_t *)&st->timer, NULL);
    up_connect_stop(st->conn);
    up_agent_stop(st->agent);
    up_relay_shutdown(st->relay);
}

static void on_io(uv_poll_t *h, int status, int events)
{
    struct stack *st = h->data;
    if (status < 0) {
        /* The far end reset our socket: the end of the closer's stream, an error otherwise. */
        finish(st, st->closer ? NULL : "poll error");
        return;
    }
    if ((events & UV_WRITABLE) && st->sent < BYTES) {
        ssize_t n = send(st->fd, st->data + st->sent, BYTES - st->sent, MSG_NOSIGNAL);
        if (n < 0 && st->closer && (errno == EPIPE || errno == ECONNRESET)) {
            finish(st, NULL);
            return;
        }
        if (n > 0) {
            st->sent += (size_t)n;
            if (st->sent == BYTES) {
                shutdown(st->fd, SHUT_WR);
            }
        }
    }
    if (events & UV_READABLE) {
        uint8_t buf[65536];
        ssize_t n = read(st->fd, buf, sizeof buf);
        if (st->closer && (n == 0 || (n < 0 && errno == ECONNRESET))) {
            finish(st, st->got == 0 ? NULL : "bytes from a service that closed at once");
            return;
        }
        if (n == 0) {
            finish(st, st->got == BYTES ? NULL : "EOF before every byte came back");
            return;
        }
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] != pattern(st->seed, st->got + (size_t)i)) {
                finish(st, "a byte differs");
                return;
            }
        }
        if (n > 0) {
            st->got += (size_t)n;
        }
    }
    uv_poll_start(h, UV_READABLE | (st->sent < BYTES ? UV_WRITABLE : 0), on_io);
}

static void on_timer(uv_timer_t *t)
{
    struct stack *st = t->data;
    if (uv_now(&st->loop) - st->started_ms > 30000) {
        finish(st, "timed out");
        return;
    }
    if (st->poll_on || up_connect_open(st->conn, &st->fd) < 0) {
        return;
    }
    /* The stream waits (held) until connect's link is up and the agent registered. */
    st->poll_on = true;
    st->poll.data = st;
    assert_int_equal(uv_poll_init(&st->loop, &st->poll, st->fd), 0);
    uv_poll_start(&st->poll, UV_READABLE | UV_WRITABLE, on_io);
}

static void run_stack(void *arg)
{
    struct stack *st = arg;
    char err[512], agent_tok[1024], client_tok[1024], url[128];
    st->data = up_malloc(BYTES);
    for (size_t i = 0; i < BYTES; i++) {
        st->data[i] = pattern(st->seed, i);
    }
    if (uv_loop_init(&st->loop) != 0) {
        st->failed = 1;
        return;
    }
    struct up_relay_cfg rc;
    test_relay_cfg(&rc, SECRET);
    st->relay = up_relay_new(&st->loop, &rc, err, sizeof err);
    assert_non_null(st->relay);
    snprintf(url, sizeof url, "ws://%s", up_relay_addr(st->relay));
    mint("echo", UP_ROLE_AGENT, agent_tok, sizeof agent_tok);
    mint("echo", UP_ROLE_CLIENT, client_tok, sizeof client_tok);

    struct up_options *ao = up_options_new(UP_OPTIONS_AGENT);
    assert_int_equal(up_options_set(ao, "relay", url, err, sizeof err), 0);
    assert_int_equal(up_options_set(ao, "token", agent_tok, err, sizeof err), 0);
    assert_int_equal(up_options_serve(ao, "echo", on_stream, st, err, sizeof err), 0);
    assert_int_equal(up_agent_new(&st->loop, ao, &st->agent, err, sizeof err), 0);
    up_options_free(ao);

    struct up_options *co = up_options_new(UP_OPTIONS_CONNECT);
    assert_int_equal(up_options_set(co, "relay", url, err, sizeof err), 0);
    assert_int_equal(up_options_set(co, "token", client_tok, err, sizeof err), 0);
    assert_int_equal(up_connect_new(&st->loop, co, "echo", &st->conn, err, sizeof err), 0);
    up_options_free(co);

    uv_timer_init(&st->loop, &st->timer);
    st->timer.data = st;
    st->started_ms = uv_now(&st->loop);
    uv_timer_start(&st->timer, on_timer, 50, 50);
    uv_run(&st->loop, UV_RUN_DEFAULT);
    if (st->fd > 0) {
        close(st->fd);
    }
    up_connect_free(st->conn);
    up_agent_free(st->agent);
    up_relay_free(st->relay);
    if (uv_loop_close(&st->loop) != 0) {
        st->failed = 1;
        snprintf(st->why, sizeof st->why, "handles left on the loop");
    }
    up_free(st->data);
}

static void test_loops_two_stacks_two_threads(void **state)
{
    (void)state;
    struct stack a = {.seed = 0x1234567}, b = {.seed = 0x7654321};
    uv_thread_t ta, tb;
    assert_int_equal(uv_thread_create(&ta, run_stack, &a), 0);
    assert_int_equal(uv_thread_create(&tb, run_stack, &b), 0);
    uv_thread_join(&ta);
    uv_thread_join(&tb);
    if (a.failed || b.failed) {
        fail_msg("stack a: %s (%zu/%u back); stack b: %s (%zu/%u back)", a.why, a.got, BYTES, b.why,
                 b.got, BYTES);
    }
    assert_int_equal(a.got, BYTES);
    assert_int_equal(b.got, BYTES);
    assert_int_equal(a.echoes_open, 0);
    assert_int_equal(b.echoes_open, 0);
}

/* An in-process service that closes its stream while the client still sends: the stream ends
 * for the client (EOF or reset), and the process, which keeps SIGPIPE's default (fatal)
 * disposition, lives on. (test_sock checks each write path for EPIPE without SIGPIPE.) */
static void test_loops_service_closing_mid_stream(void **state)
{
    (void)state;
    struct sigaction sa;
    assert_int_equal(sigaction(SIGPIPE, NULL, &sa), 0);
    assert_true(sa.sa_handler == SIG_DFL);
    struct stack a = {.seed = 42, .closer = true};
    run_stack(&a);
    if (a.failed) {
        fail_msg("%s", a.why);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loops_two_stacks_two_threads),
        cmocka_unit_test(test_loops_service_closing_mid_stream),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
