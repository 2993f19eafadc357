/* Built by test_install.py against an installed libunderpass, with nothing but what
 * `pkg-config underpass` gives: an agent on a thread of its own serving an in-process echo,
 * and a connect on this thread's loop opening a stream to it through the relay.
 *
 *   pc_echo RELAY_URL AGENT_TOKEN CLIENT_TOKEN BYTES
 *
 * Sends BYTES pseudo-random bytes, checks the echo byte for byte, stops both, frees both, and
 * checks that nothing of the library is left on the loop. Exit 0 on success. */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <underpass/underpass.h>
#include <unistd.h>
#include <uv.h>

/* The echo runs on the agent's thread: a blocking copy loop per stream, on a thread. */
static void echo_main(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char buf[65536];
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        (void)poll(&p, 1, 10000);
        ssize_t n = read(fd, buf, sizeof buf);
        if (n == 0) {
            break;
        }
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                continue;
            }
            break;
        }
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(fd, buf + off, (size_t)(n - off));
            if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
                struct pollfd q = {.fd = fd, .events = POLLOUT};
                (void)poll(&q, 1, 10000);
                continue;
            }
            if (w < 0) {
                close(fd);
                return;
            }
            off += w;
        }
    }
    close(fd);
}

static void on_stream(void *ud, const char *service, int fd, const char *client)
{
    (void)ud;
    (void)service;
    (void)client;
    uv_thread_t t;
    if (uv_thread_create(&t, echo_main, (void *)(intptr_t)fd) != 0) {
        close(fd);
    }
}

static volatile int agent_up;

static void on_event(void *ud, enum up_event ev, const char *detail, int status)
{
    (void)ud;
    (void)status;
    fprintf(stderr, "pc_echo: agent event %d: %s\n", (int)ev, detail);
    if (ev == UP_EVENT_CONNECTED) {
        agent_up = 1;
    }
}

/* The client side of the test, on the main loop. */
struct run {
    uv_loop_t *loop;
    struct up_connect *conn;
    uv_poll_t poll;
    int fd;
    unsigned char *data;
    size_t len, sent, got;
    int failed;
    uv_timer_t deadline;
};

static unsigned char expect(size_t i)
{
    return (unsigned char)((i * 2654435761u) >> 13);
}

static void finish(struct run *r)
{
    uv_poll_stop(&r->poll);
    uv_close((uv_handle_t *)&r->poll, NULL);
    uv_close((uv_handle_t *)&r->deadline, NULL);
    up_connect_stop(r->conn);
}

static void on_io(uv_poll_t *h, int status, int events)
{
    struct run *r = h->data;
    if (status < 0) {
        r->failed = 1;
        finish(r);
        return;
    }
    if ((events & UV_WRITABLE) && r->sent < r->len) {
        ssize_t n = write(r->fd, r->data + r->sent, r->len - r->sent);
        if (n > 0) {
            r->sent += (size_t)n;
            if (r->sent == r->len) {
                shutdown(r->fd, SHUT_WR);
            }
        }
    }
    if (events & UV_READABLE) {
        unsigned char buf[65536];
        ssize_t n = read(r->fd, buf, sizeof buf);
        if (n == 0) {
            if (r->got != r->len) {
                fprintf(stderr, "pc_echo: EOF after %zu of %zu bytes\n", r->got, r->len);
                r->failed = 1;
            }
            finish(r);
            return;
        }
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] != expect(r->got + (size_t)i)) {
                fprintf(stderr, "pc_echo: byte %zu differs\n", r->got + (size_t)i);
                r->failed = 1;
                finish(r);
                return;
            }
        }
        if (n > 0) {
            r->got += (size_t)n;
        }
    }
    uv_poll_start(h, UV_READABLE | (r->sent < r->len ? UV_WRITABLE : 0), on_io);
}

static void on_deadline(uv_timer_t *t)
{
    struct run *r = t->data;
    fprintf(stderr, "pc_echo: timed out (sent %zu, got %zu)\n", r->sent, r->got);
    r->failed = 1;
    finish(r);
}

static void walk_cb(uv_handle_t *h, void *arg)
{
    (void)arg;
    fprintf(stderr, "pc_echo: handle left on the loop: %s\n", uv_handle_type_name(h->type));
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: pc_echo RELAY AGENT_TOKEN CLIENT_TOKEN BYTES\n");
        return 2;
    }
    char err[512];
    printf("libunderpass %s (abi %d)\n", up_version(), up_abi_version());
    struct up_options *ao = up_options_new(UP_OPTIONS_AGENT);
    if (up_options_set(ao, "relay", argv[1], err, sizeof err) < 0 ||
        up_options_set(ao, "token", argv[2], err, sizeof err) < 0 ||
        up_options_serve(ao, "echo", on_stream, NULL, err, sizeof err) < 0 ||
        up_options_set(ao, "nonsense", "1", err, sizeof err) != UP_E_INVAL) {
        fprintf(stderr, "pc_echo: options: %s\n", err);
        return 1;
    }
    up_options_events(ao, on_event, NULL);
    struct up_agent *agent;
    if (up_agent_start_thread(ao, &agent, err, sizeof err) < 0) {
        fprintf(stderr, "pc_echo: agent: %s\n", err);
        return 1;
    }
    up_options_free(ao);
    for (int i = 0; i < 1000 && !agent_up; i++) {
        usleep(10000);
    }
    if (!agent_up) {
        fprintf(stderr, "pc_echo: the agent did not connect\n");
        return 1;
    }

    uv_loop_t loop;
    uv_loop_init(&loop);
    struct up_options *co = up_options_new(UP_OPTIONS_CONNECT);
    struct run r = {.loop = &loop, .len = strtoul(argv[4], NULL, 10)};
    if (up_options_set(co, "relay", argv[1], err, sizeof err) < 0 ||
        up_options_set(co, "token", argv[3], err, sizeof err) < 0 ||
        up_connect_new(&loop, co, "echo", &r.conn, err, sizeof err) < 0) {
        fprintf(stderr, "pc_echo: connect: %s\n", err);
        return 1;
    }
    up_options_free(co);
    r.data = malloc(r.len);
    for (size_t i = 0; i < r.len; i++) {
        r.data[i] = expect(i);
    }
    if (up_connect_open(r.conn, &r.fd) < 0) {
        fprintf(stderr, "pc_echo: up_connect_open failed\n");
        return 1;
    }
    uv_poll_init(&loop, &r.poll, r.fd);
    r.poll.data = &r;
    uv_poll_start(&r.poll, UV_READABLE | UV_WRITABLE, on_io);
    uv_timer_init(&loop, &r.deadline);
    r.deadline.data = &r;
    uv_timer_start(&r.deadline, on_deadline, 30000, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    close(r.fd);
    up_connect_free(r.conn);
    up_agent_stop(agent);
    up_agent_free(agent);
    uv_walk(&loop, walk_cb, NULL);
    if (uv_loop_close(&loop) != 0) {
        fprintf(stderr, "pc_echo: the loop still has handles\n");
        return 1;
    }
    free(r.data);
    if (r.failed) {
        return 1;
    }
    printf("pc_echo: %zu bytes echoed\n", r.got);
    return 0;
}
