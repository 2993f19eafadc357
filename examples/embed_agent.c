/* embed_agent: an application that serves an in-process echo service named "echo" through an
 * underpass relay, with libunderpass. No second process, no local port: every stream a client
 * opens (`underpass connect ... echo`) arrives here as a socket, and we write back what we read.
 *
 *   embed_agent --relay ws://127.0.0.1:8080 --token AGENT_TOKEN [--ca ca.pem]
 *
 * It runs the agent on this program's libuv loop; SIGINT/SIGTERM stop it gracefully. Build it
 * against an installed libunderpass with:
 *   cc embed_agent.c $(pkg-config --cflags --libs underpass) -o embed_agent */
#include <errno.h>
#include <signal.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <underpass/underpass.h>
#include <unistd.h>
#include <uv.h>

/* One echo stream: what we read waits here until the socket takes it. */
struct echo {
    uv_poll_t poll;
    int fd;
    char buf[65536];
    size_t len;
    int eof; /* the client half-closed: finish writing, then close */
};

static void echo_closed(uv_handle_t *h)
{
    struct echo *e = h->data;
    close(e->fd);
    free(e);
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
        } else if (errno != EAGAIN && errno != EINTR) {
            uv_close((uv_handle_t *)h, echo_closed);
            return;
        }
    }
    while (e->len) {
        /* The stream's end may be closed under us (the client went away, the link was
         * lost): send() with MSG_NOSIGNAL gets EPIPE where write() would raise SIGPIPE. */
        ssize_t n = send(e->fd, e->buf, e->len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                break;
            }
            uv_close((uv_handle_t *)h, echo_closed);
            return;
        }
        memmove(e->buf, e->buf + n, e->len - (size_t)n);
        e->len -= (size_t)n;
    }
    if (e->eof && e->len == 0) {
        uv_close((uv_handle_t *)h, echo_closed);
        return;
    }
    /* Read only when the last bytes went out: the client's window does the rest. */
    uv_poll_start(h, e->len ? UV_WRITABLE : UV_READABLE, echo_cb);
}

static void on_stream(void *ud, const char *service, int fd, const char *client)
{
    uv_loop_t *loop = ud;
    (void)service;
    (void)client;
    struct echo *e = calloc(1, sizeof(*e));
    if (!e || uv_poll_init(loop, &e->poll, fd) != 0) {
        free(e);
        close(fd);
        return;
    }
    e->fd = fd;
    e->poll.data = e;
    uv_poll_start(&e->poll, UV_READABLE, echo_cb);
}

static void on_log(void *ud, int level, const char *line)
{
    (void)ud;
    (void)level;
    fprintf(stderr, "%s\n", line);
}

static void on_event(void *ud, enum up_event ev, const char *detail, int http_status)
{
    static const char *const names[] = {"connected", "refused", "reconnecting", "draining"};
    (void)ud;
    fprintf(stderr, "embed_agent: %s: %s%s\n", names[ev], detail, http_status ? " (HTTP)" : "");
    if (ev == UP_EVENT_CONNECTED) {
        printf("embed_agent: serving echo\n");
        fflush(stdout);
    }
}

static struct up_agent *agent;
static uv_signal_t sigint, sigterm;

static void on_signal(uv_signal_t *h, int signum)
{
    (void)h;
    (void)signum;
    uv_close((uv_handle_t *)&sigint, NULL);
    uv_close((uv_handle_t *)&sigterm, NULL);
    up_agent_shutdown(agent);
}

static int usage(void)
{
    fprintf(stderr, "usage: embed_agent --relay URL --token TOKEN [--ca FILE]\n");
    return 2;
}

int main(int argc, char **argv)
{
    const char *relay = NULL, *token = NULL, *ca = NULL;
    for (int i = 1; i < argc; i++) {
        if (i + 1 < argc && strcmp(argv[i], "--relay") == 0) {
            relay = argv[++i];
        } else if (i + 1 < argc && strcmp(argv[i], "--token") == 0) {
            token = argv[++i];
        } else if (i + 1 < argc && strcmp(argv[i], "--ca") == 0) {
            ca = argv[++i];
        } else {
            return usage();
        }
    }
    if (!relay || !token) {
        return usage();
    }
    uv_loop_t *loop = uv_default_loop();
    char err[512];
    struct up_options *o = up_options_new(UP_OPTIONS_AGENT);
    if (!o) {
        fprintf(stderr, "embed_agent: out of memory\n");
        return 1;
    }
    if (up_options_set(o, "relay", relay, err, sizeof err) < 0 ||
        up_options_set(o, "token", token, err, sizeof err) < 0 ||
        (ca && up_options_set(o, "ca", ca, err, sizeof err) < 0) ||
        up_options_set(o, "backoff-max", "2s", err, sizeof err) < 0 ||
        up_options_serve(o, "echo", on_stream, loop, err, sizeof err) < 0) {
        fprintf(stderr, "embed_agent: %s\n", err);
        up_options_free(o);
        return 2;
    }
    up_options_log(o, 2, on_log, NULL);
    up_options_events(o, on_event, NULL);
    int rv = up_agent_new(loop, o, &agent, err, sizeof err);
    up_options_free(o);
    if (rv < 0) {
        fprintf(stderr, "embed_agent: %s (%s)\n", err, up_error_name(rv));
        return 2;
    }
    uv_signal_init(loop, &sigint);
    uv_signal_init(loop, &sigterm);
    uv_signal_start(&sigint, on_signal, SIGINT);
    uv_signal_start(&sigterm, on_signal, SIGTERM);
    uv_run(loop, UV_RUN_DEFAULT);
    up_agent_free(agent);
    uv_loop_close(loop);
    return 0;
}
