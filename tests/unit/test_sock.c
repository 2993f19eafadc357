/* The shell's write paths never raise SIGPIPE (libunderpass installs no handler and runs on
 * threads and loops that are not its own): each one gets EPIPE from a socket whose peer is
 * gone, with SIGPIPE at its default, fatal disposition in this process. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "net/sock.h"

struct fixture {
    uv_loop_t loop;
    struct up_sock s;
};

static void closed_cb(struct up_sock *s)
{
    (void)s;
}

/* A socket whose peer has closed. */
static void dead_peer(struct fixture *f)
{
    struct sigaction sa;
    assert_int_equal(sigaction(SIGPIPE, NULL, &sa), 0);
    assert_true(sa.sa_handler == SIG_DFL);
    int fds[2];
    assert_int_equal(uv_loop_init(&f->loop), 0);
    assert_int_equal(up_sock_pair(fds), UP_OK);
    close(fds[1]);
    memset(&f->s, 0, sizeof f->s);
    assert_int_equal(up_sock_init(&f->s, &f->loop, fds[0], NULL, NULL), UP_OK);
}

static void done(struct fixture *f)
{
    up_sock_close(&f->s, closed_cb);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
}

static void test_sock_write_epipe_not_sigpipe(void **state)
{
    (void)state;
    struct fixture f;
    dead_peer(&f);
    static const uint8_t b[4096];
    size_t n = 99;
    assert_int_equal(up_sock_write(&f.s, b, sizeof b, &n), UP_ESYS);
    assert_int_equal(n, 0);
    assert_int_equal(f.s.last_errno, EPIPE);
    done(&f);
}

static void test_sock_writev_epipe_not_sigpipe(void **state)
{
    (void)state;
    struct fixture f;
    dead_peer(&f);
    static uint8_t b[4096];
    struct iovec iov[2] = {{b, 100}, {b, sizeof b}};
    size_t n = 99;
    assert_int_equal(up_sock_writev(&f.s, iov, 2, &n), UP_ESYS);
    assert_int_equal(f.s.last_errno, EPIPE);
    done(&f);
}

static void test_sock_splice_out_epipe_not_sigpipe(void **state)
{
    (void)state;
    struct fixture f;
    dead_peer(&f);
    int kp[2];
    assert_int_equal(up_kpipe_open(kp, 65536), UP_OK);
    static const uint8_t b[4096];
    assert_int_equal(write(kp[1], b, sizeof b), (ssize_t)sizeof b);
    size_t n = 99;
    int rv = up_sock_splice_out(&f.s, kp[0], sizeof b, &n);
    assert_true(rv == UP_ESYS || rv == UP_EINVAL); /* EINVAL: this kernel cannot splice here */
    if (rv == UP_ESYS) {
        assert_int_equal(f.s.last_errno, EPIPE);
    }
    /* A SIGPIPE we caused was taken back, not left pending for the application. */
    sigset_t pending;
    assert_int_equal(sigpending(&pending), 0);
    assert_false(sigismember(&pending, SIGPIPE));
    up_kpipe_close(kp);
    done(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sock_write_epipe_not_sigpipe),
        cmocka_unit_test(test_sock_writev_epipe_not_sigpipe),
        cmocka_unit_test(test_sock_splice_out_epipe_not_sigpipe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
