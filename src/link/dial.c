#include "link/dial.h"

#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "base/crypto.h"
#include "net/sock.h"
#include "net/tls.h"
#include "proto/h1.h"
#include "proto/ws.h"

#define DIAL_MAX_HEAD 16384

enum dial_state {
    D_RESOLVE,  /* getaddrinfo in flight */
    D_CONNECT,  /* TCP connect in flight */
    D_TLS,      /* TLS handshake */
    D_REQUEST,  /* sending the upgrade request */
    D_RESPONSE, /* reading the response head */
    D_DONE,
};

struct up_dial {
    uv_loop_t *loop;
    enum dial_state state;
    char *host, *path, *host_header, *bearer;
    uint16_t port;
    struct ssl_ctx_st *tls;
    bool websocket;
    uv_getaddrinfo_t gai;
    struct addrinfo *ai, *cur;
    struct up_sock *sock; /* owned; freed in its close callback */
    uv_timer_t timer;
    bool cancelled;
    int pending_handles;
    up_dial_fn cb;
    void *ud;
    struct up_buf out, in;
    size_t scan;
    char key[UP_WS_KEY_LEN + 1];
    char last_err[200];
};

static void dial_free(struct up_dial *d)
{
    if (d->ai) {
        uv_freeaddrinfo(d->ai);
    }
    up_buf_fini(&d->out);
    up_buf_fini(&d->in);
    up_free(d->host);
    up_free(d->path);
    up_free(d->host_header);
    up_free(d->bearer);
    up_free(d);
}

static void handle_closed(uv_handle_t *h)
{
    struct up_dial *d = h->data;
    if (--d->pending_handles == 0) {
        dial_free(d);
    }
}

static void sock_closed(struct up_sock *s)
{
    struct up_dial *d = s->ud;
    up_free(s);
    if (--d->pending_handles == 0) {
        dial_free(d);
    }
}

static void drop_sock(struct up_dial *d, bool handed_over)
{
    if (!d->sock) {
        return;
    }
    if (handed_over) {
        up_sock_release(d->sock, sock_closed);
    } else {
        up_sock_close(d->sock, sock_closed);
    }
    d->sock = NULL;
}

/* Release everything; the sock is closed unless handed over. */
static void finish(struct up_dial *d, bool handed_over)
{
    d->state = D_DONE;
    uv_timer_stop(&d->timer);
    uv_close((uv_handle_t *)&d->timer, handle_closed);
    drop_sock(d, handed_over);
}

static void report_fail(struct up_dial *d, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void report_fail(struct up_dial *d, int status, const char *fmt, ...)
{
    char why[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    up_dial_fn cb = d->cb;
    void *ud = d->ud;
    bool cancelled = d->cancelled;
    finish(d, false);
    if (!cancelled) {
        cb(ud, -1, why, status, -1, NULL, NULL, 0);
    }
}

static void try_next(struct up_dial *d);
static void on_sock(struct up_sock *s, bool readable, bool writable);

static void start_request(struct up_dial *d)
{
    uint8_t raw[16];
    if (up_random_bytes(raw, sizeof raw) < 0) {
        report_fail(d, 0, "no randomness for the WebSocket key");
        return;
    }
    up_b64_encode(raw, sizeof raw, d->key, false);
    char req[4096];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\nUser-Agent: underpass\r\n%s%s%s\r\n",
                     d->path, d->host_header, d->key, d->bearer ? "Authorization: Bearer " : "",
                     d->bearer ? d->bearer : "", d->bearer ? "\r\n" : "");
    if (n < 0 || (size_t)n >= sizeof req) {
        report_fail(d, 0, "upgrade request too large (token or path too long)");
        return;
    }
    if (up_buf_append(&d->out, req, (size_t)n, sizeof req) < 0) {
        report_fail(d, 0, "out of memory");
        return;
    }
    d->state = D_REQUEST;
    up_sock_want(d->sock, false, true);
    on_sock(d->sock, false, true);
}

static void connected(struct up_dial *d)
{
    if (d->tls) {
        if (up_tls_attach(d->sock, d->tls, false, d->host) < 0) {
            report_fail(d, 0, "out of memory");
            return;
        }
        d->state = D_TLS;
        on_sock(d->sock, true, true);
        return;
    }
    if (d->websocket) {
        start_request(d);
        return;
    }
    int fd = d->sock->fd;
    up_dial_fn cb = d->cb;
    void *ud = d->ud;
    finish(d, true);
    cb(ud, 0, NULL, 0, fd, NULL, NULL, 0);
}

static void on_response(struct up_dial *d)
{
    struct up_h1_header hdrs[64];
    struct up_h1_msg m;
    int rv = up_h1_parse_response(up_buf_rptr(&d->in), up_buf_len(&d->in), &d->scan, &m, hdrs, 64,
                                  DIAL_MAX_HEAD);
    if (rv == UP_EAGAIN) {
        return;
    }
    if (rv < 0) {
        size_t show = up_buf_len(&d->in) < 60 ? up_buf_len(&d->in) : 60;
        char first[64];
        for (size_t i = 0; i < show; i++) {
            char c = (char)up_buf_rptr(&d->in)[i];
            first[i] = (c >= 0x20 && c < 0x7f) ? c : '.';
        }
        first[show] = '\0';
        report_fail(d, 0, "relay did not answer with HTTP (%s); first bytes: \"%s\"",
                    m.err_reason ? m.err_reason : "malformed", first);
        return;
    }
    if (m.status != 101) {
        /* Show the relay's one-line reason from the body when it came with the head. */
        const uint8_t *body = up_buf_rptr(&d->in) + m.head_len;
        size_t blen = up_buf_len(&d->in) - m.head_len;
        char b[200];
        size_t k = 0;
        for (size_t i = 0; i < blen && k + 1 < sizeof b; i++) {
            if (body[i] == '\n' || body[i] == '\r') {
                break;
            }
            b[k++] = (char)((body[i] >= 0x20 && body[i] < 0x7f) ? body[i] : '.');
        }
        b[k] = '\0';
        report_fail(d, m.status, "relay refused the upgrade: %d %.*s%s%s", m.status,
                    (int)m.reason_len, m.reason, k ? ": " : "", b);
        return;
    }
    const char *why = NULL;
    if (up_ws_check_response(&m, d->key, &why) < 0) {
        report_fail(d, 0, "bad WebSocket upgrade response: %s", why);
        return;
    }
    int fd = d->sock->fd;
    struct ssl_st *ssl = d->sock->ssl;
    up_buf_skip(&d->in, m.head_len);
    size_t left = up_buf_len(&d->in);
    uint8_t *copy = NULL;
    if (left) {
        copy = up_malloc(left);
        if (!copy) {
            report_fail(d, 0, "out of memory");
            return;
        }
        memcpy(copy, up_buf_rptr(&d->in), left);
    }
    up_dial_fn cb = d->cb;
    void *ud = d->ud;
    finish(d, true);
    cb(ud, 0, NULL, 101, fd, ssl, copy, left);
    up_free(copy);
}

static void on_sock(struct up_sock *s, bool readable, bool writable)
{
    struct up_dial *d = s->ud;
    (void)readable;
    (void)writable;
    switch (d->state) {
    case D_CONNECT: {
        int e = up_tcp_connect_result(s->fd);
        if (e) {
            snprintf(d->last_err, sizeof d->last_err, "%s", strerror(e));
            drop_sock(d, false);
            d->cur = d->cur->ai_next;
            try_next(d);
            return;
        }
        /* A dial to a port nobody listens on can be given that very port as its source port
         * and connect to itself (TCP simultaneous open): treat it as refused. */
        struct sockaddr_storage la, pa;
        socklen_t ll = sizeof la, pl = sizeof pa;
        if (getsockname(s->fd, (struct sockaddr *)&la, &ll) == 0 &&
            getpeername(s->fd, (struct sockaddr *)&pa, &pl) == 0 && ll == pl &&
            memcmp(&la, &pa, ll) == 0) {
            snprintf(d->last_err, sizeof d->last_err, "%s", strerror(ECONNREFUSED));
            drop_sock(d, false);
            d->cur = d->cur->ai_next;
            try_next(d);
            return;
        }
        up_sock_want(s, false, false);
        connected(d);
        return;
    }
    case D_TLS: {
        int rv = up_tls_handshake(s);
        if (rv == UP_EAGAIN) {
            return;
        }
        if (rv < 0) {
            char buf[256];
            report_fail(d, 0, "TLS handshake with %s failed: %s", d->host,
                        up_tls_error(s, buf, sizeof buf));
            return;
        }
        if (d->websocket) {
            start_request(d);
        } else {
            int fd = s->fd;
            struct ssl_st *ssl = s->ssl;
            up_dial_fn cb = d->cb;
            void *ud = d->ud;
            finish(d, true);
            cb(ud, 0, NULL, 0, fd, ssl, NULL, 0);
        }
        return;
    }
    case D_REQUEST: {
        while (up_buf_len(&d->out)) {
            size_t n = 0;
            int rv = up_sock_write(s, up_buf_rptr(&d->out), up_buf_len(&d->out), &n);
            if (rv == UP_EAGAIN) {
                return;
            }
            if (rv < 0) {
                report_fail(d, 0, "sending the upgrade request failed: %s",
                            up_sock_strerror(s, rv));
                return;
            }
            up_buf_skip(&d->out, n);
        }
        d->state = D_RESPONSE;
        up_sock_want(s, true, false);
        /* fall through to read whatever is there */
    }
    /* fallthrough */
    case D_RESPONSE:
        for (;;) {
            if (up_buf_reserve(&d->in, 4096, DIAL_MAX_HEAD + 65536) < 0) {
                report_fail(d, 0, "relay's response head is too large");
                return;
            }
            size_t n = 0;
            int rv = up_sock_read(s, up_buf_wptr(&d->in), up_buf_room(&d->in), &n);
            if (rv == UP_EAGAIN) {
                break;
            }
            if (rv == UP_EOF) {
                if (up_buf_len(&d->in)) {
                    on_response(d);
                    if (d->state == D_DONE) {
                        return;
                    }
                }
                report_fail(d, 0, "relay closed the connection during the upgrade%s",
                            up_buf_len(&d->in) ? " (incomplete response)" : "");
                return;
            }
            if (rv < 0) {
                report_fail(d, 0, "reading the upgrade response failed: %s",
                            up_sock_strerror(s, rv));
                return;
            }
            up_buf_commit(&d->in, n);
            on_response(d);
            if (d->state == D_DONE) {
                return;
            }
        }
        return;
    default:
        return;
    }
}

static void try_next(struct up_dial *d)
{
    while (d->cur) {
        int err = 0;
        int fd = up_tcp_connect_start(d->cur->ai_addr, d->cur->ai_addrlen, &err);
        if (fd < 0) {
            snprintf(d->last_err, sizeof d->last_err, "%s", strerror(err));
            d->cur = d->cur->ai_next;
            continue;
        }
        struct up_sock *s = up_calloc(1, sizeof(*s));
        if (!s) {
            close(fd);
            snprintf(d->last_err, sizeof d->last_err, "out of memory");
            break;
        }
        if (up_sock_init(s, d->loop, fd, on_sock, d) < 0) {
            up_free(s);
            snprintf(d->last_err, sizeof d->last_err, "cannot watch socket");
            d->cur = d->cur->ai_next;
            continue;
        }
        d->sock = s;
        d->pending_handles++;
        d->state = D_CONNECT;
        up_sock_want(s, false, true);
        return;
    }
    report_fail(d, 0, "cannot connect to %s:%u: %s", d->host, d->port,
                d->last_err[0] ? d->last_err : "no address");
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct up_dial *d = req->data;
    d->pending_handles--;
    if (d->cancelled) {
        if (res) {
            uv_freeaddrinfo(res);
        }
        finish(d, false);
        return;
    }
    if (status < 0) {
        report_fail(d, 0, "cannot resolve %s: %s", d->host, uv_strerror(status));
        return;
    }
    d->ai = res;
    d->cur = res;
    try_next(d);
}

static void on_timeout(uv_timer_t *t)
{
    struct up_dial *d = t->data;
    if (d->state == D_RESOLVE) {
        /* getaddrinfo cannot be interrupted; report now and free when it returns. */
        d->cancelled = true;
        d->cb(d->ud, -1, "timed out resolving the host", 0, -1, NULL, NULL, 0);
        return;
    }
    static const char *const what[] = {"resolving", "connecting", "in the TLS handshake",
                                       "sending the upgrade", "waiting for the upgrade"};
    report_fail(d, 0, "timed out %s (%s:%u)", what[d->state], d->host, d->port);
}

struct up_dial *up_dial_start(uv_loop_t *loop, const struct up_dial_cfg *cfg, up_dial_fn cb,
                              void *ud)
{
    struct up_dial *d = up_calloc(1, sizeof(*d));
    if (!d) {
        return NULL;
    }
    d->loop = loop;
    d->cb = cb;
    d->ud = ud;
    d->port = cfg->port;
    d->tls = cfg->tls;
    d->websocket = cfg->websocket;
    d->host = up_strdup(cfg->host);
    d->path = up_strdup(cfg->path ? cfg->path : "/");
    d->host_header = up_strdup(cfg->host_header ? cfg->host_header : cfg->host);
    d->bearer = cfg->bearer ? up_strdup(cfg->bearer) : NULL;
    up_buf_init(&d->out);
    up_buf_init(&d->in);
    if (!d->host || !d->path || !d->host_header || (cfg->bearer && !d->bearer)) {
        dial_free(d);
        return NULL;
    }
    uv_timer_init(loop, &d->timer);
    d->timer.data = d;
    d->pending_handles = 2; /* timer + getaddrinfo; each socket adds one */
    if (cfg->timeout_ms) {
        uv_timer_start(&d->timer, on_timeout, cfg->timeout_ms, 0);
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    char port[8];
    snprintf(port, sizeof port, "%u", cfg->port);
    d->gai.data = d;
    d->state = D_RESOLVE;
    int rv = uv_getaddrinfo(loop, &d->gai, on_resolved, d->host, port, &hints);
    if (rv < 0) {
        /* Nothing in flight but the timer: close it and let the caller see NULL. */
        d->pending_handles = 1;
        d->state = D_DONE;
        uv_timer_stop(&d->timer);
        uv_close((uv_handle_t *)&d->timer, handle_closed);
        return NULL;
    }
    return d;
}

void up_dial_cancel(struct up_dial *d)
{
    if (!d || d->cancelled || d->state == D_DONE) {
        return;
    }
    d->cancelled = true;
    if (d->state == D_RESOLVE) {
        uv_cancel((uv_req_t *)&d->gai);
        return; /* on_resolved finishes */
    }
    finish(d, false);
}
