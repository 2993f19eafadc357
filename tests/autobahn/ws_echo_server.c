/* WebSocket echo server for Autobahn's fuzzingclient: listens on 127.0.0.1:PORT (0 picks a
 * free port) and echoes every message on every connection. Prints one ready line,
 * "ws_echo_server: listening on 127.0.0.1:PORT", once it accepts connections.
 *
 *   ws_echo_server [-v] [HOST:]PORT */
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "echo_conn.h"
#include "net/addr.h"
#include "net/sock.h"

struct server {
    uv_loop_t *loop;
    struct up_sock lsock;
    bool verbose;
    uv_signal_t sigint, sigterm;
};

static void on_accept(struct up_sock *ls, bool readable, bool writable)
{
    struct server *srv = ls->ud;
    (void)readable;
    (void)writable;
    for (int i = 0; i < 64; i++) {
        struct sockaddr_storage peer;
        socklen_t plen;
        int fd = up_tcp_accept(ls->fd, &peer, &plen);
        if (fd == UP_EAGAIN) {
            return;
        }
        if (fd < 0) {
            fprintf(stderr, "ws_echo_server: accept: %s\n", strerror(errno));
            return;
        }
        struct echo_conn_cfg cfg = {
            .role = UP_WS_SERVER,
            .echo = true,
            .verbose = srv->verbose,
        };
        if (echo_conn_start(srv->loop, fd, NULL, NULL, 0, &cfg) < 0) {
            fprintf(stderr, "ws_echo_server: cannot start a connection\n");
        }
    }
}

static void on_signal(uv_signal_t *h, int signum)
{
    (void)signum;
    uv_stop(h->loop);
}

static int usage(void)
{
    fprintf(stderr, "usage: ws_echo_server [-v] [HOST:]PORT   (PORT 0 picks a free port)\n");
    return 2;
}

int main(int argc, char **argv)
{
    struct server srv = {.loop = uv_default_loop()};
    const char *where = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-v") == 0) {
            srv.verbose = true;
        } else if (!where) {
            where = argv[i];
        } else {
            return usage();
        }
    }
    if (!where) {
        return usage();
    }
    char host[256] = "127.0.0.1";
    uint16_t port = 0;
    if (strchr(where, ':')) {
        if (up_addr_split(where, host, sizeof host, &port) < 0) {
            return usage();
        }
    } else {
        char *end = NULL;
        unsigned long p = strtoul(where, &end, 10);
        if (*where == '\0' || *end != '\0' || p > 65535) {
            return usage();
        }
        port = (uint16_t)p;
    }
    struct sockaddr_storage sa;
    socklen_t salen;
    if (up_addr_numeric(host, port, &sa, &salen) < 0) {
        fprintf(stderr, "ws_echo_server: '%s' is not a numeric address\n", host);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    int err = 0;
    int fd = up_tcp_listen((struct sockaddr *)&sa, salen, 128, &err);
    if (fd < 0) {
        fprintf(stderr, "ws_echo_server: cannot listen on %s: %s\n", where, strerror(err));
        return 1;
    }
    struct sockaddr_storage bound;
    socklen_t blen = sizeof bound;
    char addr[128] = "?";
    if (getsockname(fd, (struct sockaddr *)&bound, &blen) == 0) {
        up_addr_format((struct sockaddr *)&bound, addr, sizeof addr);
    }
    if (up_sock_init(&srv.lsock, srv.loop, fd, on_accept, &srv) < 0) {
        fprintf(stderr, "ws_echo_server: cannot watch the listening socket\n");
        return 1;
    }
    up_sock_want(&srv.lsock, true, false);
    uv_signal_init(srv.loop, &srv.sigint);
    uv_signal_init(srv.loop, &srv.sigterm);
    uv_signal_start(&srv.sigint, on_signal, SIGINT);
    uv_signal_start(&srv.sigterm, on_signal, SIGTERM);
    printf("ws_echo_server: listening on %s\n", addr);
    fflush(stdout);
    uv_run(srv.loop, UV_RUN_DEFAULT);
    return 0;
}
