/* The pipe's preface (src/link/pipe.c): bytes of our own, such as a PROXY protocol header, that
 * reach the local socket before any stream byte, also when the socket is not writable yet. A
 * real libuv loop over a socketpair; the stream is not on a link (credit calls are no-ops). */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "link/pipe.h"

struct done {
    int calls;
    uint32_t code;
};

static void on_done(struct up_pipe *p, uint32_t code, const char *reason)
{
    struct done *d = p->ud;
    (void)reason;
    d->calls++;
    d->code = code;
}

static void pair(int sv[2])
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    for (int i = 0; i < 2; i++) {
        int fl = fcntl(sv[i], F_GETFL);
        assert_int_equal(fcntl(sv[i], F_SETFL, fl | O_NONBLOCK), 0);
    }
}

/* Run the loop and read what the pipe wrote to fd until want bytes arrived (or give up). */
static size_t collect(uv_loop_t *loop, int fd, uint8_t *buf, size_t want)
{
    size_t got = 0;
    for (int i = 0; i < 100000 && got < want; i++) {
        uv_run(loop, UV_RUN_NOWAIT);
        ssize_t n = read(fd, buf + got, want - got);
        if (n > 0) {
            got += (size_t)n;
        } else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
            break;
        }
    }
    return got;
}

/* A pipe whose stream is set up as up_link_attach() would, minus the link. */
static struct up_pipe *new_pipe(uv_loop_t *loop, struct done *d)
{
    struct up_pipe *p = up_pipe_new(loop, on_done, d);
    assert_non_null(p);
    p->st.ops = &up_pipe_stream_ops;
    p->st.ud = p;
    return p;
}

static void finish(uv_loop_t *loop, struct up_pipe *p, struct done *d, int other)
{
    up_pipe_abort(p, 1, "test over");
    assert_int_equal(d->calls, 1);
    uv_run(loop, UV_RUN_DEFAULT); /* the socket's handle closes, the pipe frees itself */
    close(other);
    assert_int_equal(uv_loop_close(loop), 0);
}

static void test_pipe_preface_before_stream_bytes(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    int sv[2];
    pair(sv);
    struct done d = {0};
    struct up_pipe *p = new_pipe(&loop, &d);
    assert_int_equal(up_pipe_preface(p, (const uint8_t *)"PROXY ", 6), UP_OK);
    assert_int_equal(up_pipe_start(p, sv[0], sv[0]), UP_OK);
    /* A second preface after start is fine as long as no stream byte came. */
    assert_int_equal(up_pipe_preface(p, (const uint8_t *)"UNKNOWN\r\n", 9), UP_OK);
    up_pipe_stream_ops.on_data(&p->st, (const uint8_t *)"hello", 5);
    /* Too late now: the header would land behind the stream's bytes. */
    assert_int_equal(up_pipe_preface(p, (const uint8_t *)"x", 1), UP_ESTATE);
    uint8_t buf[64];
    size_t n = collect(&loop, sv[1], buf, 20);
    assert_int_equal(n, 20);
    assert_memory_equal(buf, "PROXY UNKNOWN\r\nhello", 20);
    assert_int_equal(up_buf_len(&p->out), 0);
    assert_int_equal(p->out_preface, 0);
    finish(&loop, p, &d, sv[1]);
}

static void test_pipe_preface_waits_for_a_full_socket(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    int sv[2];
    pair(sv);
    /* Fill the socket first, so that nothing of ours can be written at start. */
    static uint8_t fill[65536];
    memset(fill, 'F', sizeof fill);
    size_t filled = 0;
    for (;;) {
        ssize_t k = write(sv[0], fill, sizeof fill);
        if (k <= 0) {
            break;
        }
        filled += (size_t)k;
    }
    assert_true(filled > 0);
    struct done d = {0};
    struct up_pipe *p = new_pipe(&loop, &d);
    assert_int_equal(up_pipe_start(p, sv[0], sv[0]), UP_OK);
    static const uint8_t hdr[16] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51,
                                    0x55, 0x49, 0x54, 0x0A, 0x20, 0x00, 0x00, 0x00};
    assert_int_equal(up_pipe_preface(p, hdr, sizeof hdr), UP_OK);
    uv_run(&loop, UV_RUN_NOWAIT);
    assert_int_equal(up_buf_len(&p->out), sizeof hdr); /* still waiting */
    /* Stream bytes meeting the waiting header queue behind it. */
    up_pipe_stream_ops.on_data(&p->st, (const uint8_t *)"data", 4);
    assert_int_equal(up_buf_len(&p->out), sizeof hdr + 4);
    size_t want = filled + sizeof hdr + 4;
    uint8_t *buf = test_malloc(want);
    assert_int_equal(collect(&loop, sv[1], buf, want), want);
    assert_memory_equal(buf + filled, hdr, sizeof hdr);
    assert_memory_equal(buf + filled + sizeof hdr, "data", 4);
    assert_int_equal(p->out_preface, 0);
    test_free(buf);
    finish(&loop, p, &d, sv[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pipe_preface_before_stream_bytes),
        cmocka_unit_test(test_pipe_preface_waits_for_a_full_socket),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
