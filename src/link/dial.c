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
#include "proto/pmd.h"
#include "proto/proxy.h"
#include "proto/ws.h"

#define DIAL_MAX_HEAD 16384

enum dial_state {
    D_RESOLVE,  /* getaddrinfo in flight */
    D_CONNECT,  /* TCP connect in flight */
    D_PTLS,     /* TLS handshake with an https:// proxy */
    D_PREQ,     /* sending CONNECT to the proxy */
    D_PRESP,    /* reading the proxy's answer */
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
    bool via_proxy;
    struct up_proxy proxy;
    struct ssl_ctx_st *proxy_tls;
    char where[300]; /* "proxy HOST:PORT" or "HOST:PORT": what the TCP connect goes to */
    bool offer_pmd;
    struct up_pmd_cfg pmd_cfg;
    struct up_pmd_params *pmd_out;
    bool *pmd_on_out;
    uv_getaddrinfo_t gai;
    bool numeric; /* D_RESOLVE without getaddrinfo: the timer fires at once */
    uint64_t timeout_ms;
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

/* Printable copy of the first bytes of b, for messages about unexpected answers. */
static void first_bytes_at(const struct up_buf *b, size_t off, char *out, size_t cap)
{
    size_t len = up_buf_len(b) > off ? up_buf_len(b) - off : 0;
    size_t show = len < cap - 1 ? len : cap - 1;
    for (size_t i = 0; i < show; i++) {
        char c = (char)up_buf_rptr(b)[off + i];
        out[i] = (c >= 0x20 && c < 0x7f) ? c : '.';
    }
    out[show] = '\0';
}

static void first_bytes(const struct up_buf *b, char *out, size_t cap)
{
    first_bytes_at(b, 0, out, cap);
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
    char offer[UP_PMD_MAX_HEADER] = "";
    if (d->offer_pmd && up_pmd_client_offer(&d->pmd_cfg, offer, sizeof offer) < 0) {
        report_fail(d, 0, "bad permessage-deflate settings");
        return;
    }
    char req[4096];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\nUser-Agent: underpass\r\n%s%s%s%s%s%s\r\n",
                     d->path, d->host_header, d->key, d->bearer ? "Authorization: Bearer " : "",
                     d->bearer ? d->bearer : "", d->bearer ? "\r\n" : "",
                     d->offer_pmd ? "Sec-WebSocket-Extensions: " : "", offer,
                     d->offer_pmd ? "\r\n" : "");
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

static void start_relay_tls(struct up_dial *d)
{
    int rv = d->via_proxy && d->proxy.tls ? up_tls_attach_inner(d->sock, d->tls, d->host)
                                          : up_tls_attach(d->sock, d->tls, false, d->host);
    if (rv < 0) {
        report_fail(d, 0, "out of memory");
        return;
    }
    d->state = D_TLS;
    on_sock(d->sock, true, true);
}

static void start_connect_request(struct up_dial *d)
{
    char req[2048];
    size_t n = 0;
    if (up_proxy_connect_request(&d->proxy, d->host, d->port, req, sizeof req, &n) < 0 ||
        up_buf_append(&d->out, req, n, sizeof req) < 0) {
        report_fail(d, 0, "cannot build the CONNECT request for %s:%u", d->host, d->port);
        return;
    }
    d->state = D_PREQ;
    up_sock_want(d->sock, false, true);
    on_sock(d->sock, false, true);
}

/* The proxy answered CONNECT (head parsed into m). */
static void on_proxy_response(struct up_dial *d)
{
    struct up_h1_header hdrs[64];
    struct up_h1_msg m;
    int rv = up_h1_parse_response(up_buf_rptr(&d->in), up_buf_len(&d->in), &d->scan, &m, hdrs, 64,
                                  DIAL_MAX_HEAD);
    uint8_t b0 = up_buf_len(&d->in) ? up_buf_rptr(&d->in)[0] : 0;
    if (rv == UP_EAGAIN && b0 == 'H') {
        return;
    }
    char first[64];
    first_bytes(&d->in, first, sizeof first);
    if (rv < 0 || b0 != 'H') {
        report_fail(d, 0, "%s did not answer CONNECT with HTTP (%s)%s; first bytes: \"%s\"",
                    d->where, rv < 0 && m.err_reason ? m.err_reason : "not a status line",
                    b0 == 0x15 || b0 == 0x16 ? "; it speaks TLS: use https:// in the proxy URL"
                                             : "",
                    first);
        return;
    }
    /* Some proxies (tinyproxy 1.11) answer bad credentials with 401 instead of 407. */
    if (m.status == 407 || m.status == 401) {
        /* Status 0: these are the proxy's answers, not the relay's. */
        int rl = (int)(m.reason_len > 60 ? 60 : m.reason_len);
        report_fail(d, 0,
                    d->proxy.has_auth
                        ? "%s refused the credentials (%d %.*s): check the user and password in "
                          "the proxy URL"
                        : "%s requires authentication (%d %.*s): put them in the proxy URL, "
                          "http://USER:PASSWORD@HOST:PORT",
                    d->where, m.status, rl, m.reason);
        return;
    }
    if (m.status == 403) {
        report_fail(d, 0,
                    "%s refused to connect to %s:%u (403 Forbidden): its policy does not allow "
                    "this destination or port",
                    d->where, d->host, d->port);
        return;
    }
    if (m.status < 200 || m.status > 299) {
        report_fail(d, 0, "%s could not connect to %s:%u: %d %.*s", d->where, d->host, d->port,
                    m.status, (int)(m.reason_len > 80 ? 80 : m.reason_len), m.reason);
        return;
    }
    if (up_buf_len(&d->in) != m.head_len) {
        /* We have not sent anything through the tunnel yet, so nothing may come back. */
        report_fail(d, 0, "%s sent bytes after its %d answer to CONNECT", d->where, m.status);
        return;
    }
    up_buf_skip(&d->in, m.head_len);
    up_buf_release_if_empty(&d->in);
    d->scan = 0;
    up_sock_want(d->sock, false, false);
    if (d->tls) {
        start_relay_tls(d);
    } else if (d->websocket) {
        start_request(d);
    } else {
        report_fail(d, 0, "internal: proxy dial without a WebSocket");
    }
}

static void connected(struct up_dial *d)
{
    if (d->via_proxy) {
        if (d->proxy.tls) {
            if (up_tls_attach(d->sock, d->proxy_tls, false, d->proxy.host) < 0) {
                report_fail(d, 0, "out of memory");
                return;
            }
            d->state = D_PTLS;
            on_sock(d->sock, true, true);
            return;
        }
        start_connect_request(d);
        return;
    }
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
        char first[64];
        first_bytes(&d->in, first, sizeof first);
        report_fail(d, 0, "relay did not answer with HTTP (%s); first bytes: \"%s\"%s",
                    m.err_reason ? m.err_reason : "malformed", first,
                    first[0] == 0x15 || first[0] == 0x16 ? " (it speaks TLS: use wss://)" : "");
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
        if (m.status >= 200 && m.status < 400) {
            /* Not our relay talking: something answered in its place. */
            char first[64];
            first_bytes_at(&d->in, m.head_len, first, sizeof first);
            report_fail(d, m.status,
                        "relay answered %d %.*s without upgrading to WebSocket: a captive "
                        "portal or a proxy that strips Upgrade may be in the way; first bytes: "
                        "\"%s\"",
                        m.status, (int)(m.reason_len > 60 ? 60 : m.reason_len), m.reason, first);
            return;
        }
        bool stripped = (m.status == 400 || m.status == 426) && strstr(b, "Upgrade") != NULL;
        report_fail(d, m.status, "relay refused the upgrade: %d %.*s%s%s%s", m.status,
                    (int)m.reason_len, m.reason, k ? ": " : "", b,
                    stripped ? " (a proxy on the way may strip the Upgrade header)" : "");
        return;
    }
    const char *why = NULL;
    if (up_ws_check_response_ext(&m, d->key, d->offer_pmd, &why) < 0) {
        report_fail(d, 0, "bad WebSocket upgrade response: %s", why);
        return;
    }
    if (d->offer_pmd) {
        struct up_pmd_params params;
        bool accepted = false;
        if (up_pmd_client_check_h1(&d->pmd_cfg, &m, &accepted, &params, &why) < 0) {
            /* RFC 6455 §9.1: an answer outside our offer fails the connection. */
            report_fail(d, 0, "bad permessage-deflate answer: %s", why);
            return;
        }
        if (d->pmd_on_out) {
            *d->pmd_on_out = accepted;
        }
        if (accepted && d->pmd_out) {
            *d->pmd_out = params;
        }
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

/* Write what is queued in d->out; false when it must wait (or failed: then reported). */
static bool flush_out(struct up_dial *d, const char *what)
{
    while (up_buf_len(&d->out)) {
        size_t n = 0;
        int rv = up_sock_write(d->sock, up_buf_rptr(&d->out), up_buf_len(&d->out), &n);
        if (rv == UP_EAGAIN) {
            return false;
        }
        if (rv < 0) {
            report_fail(d, 0, "sending %s to %s failed: %s", what, d->where,
                        up_sock_strerror(d->sock, rv));
            return false;
        }
        up_buf_skip(&d->out, n);
    }
    return true;
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
        if (up_tcp_is_self_connected(s->fd)) {
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
    case D_PTLS: {
        int rv = up_tls_handshake(s);
        if (rv == UP_EAGAIN) {
            return;
        }
        if (rv < 0) {
            char buf[256];
            report_fail(d, 0, "TLS handshake with %s failed: %s", d->where,
                        up_tls_error(s, buf, sizeof buf));
            return;
        }
        start_connect_request(d);
        return;
    }
    case D_PREQ:
        if (!flush_out(d, "CONNECT")) {
            return;
        }
        d->state = D_PRESP;
        up_sock_want(s, true, false);
        /* fallthrough */
    case D_PRESP:
        for (;;) {
            if (up_buf_reserve(&d->in, 4096, DIAL_MAX_HEAD + 4096) < 0) {
                report_fail(d, 0, "%s sent a response head that is too large", d->where);
                return;
            }
            /* Read no further than the head could reach: bytes after it belong to TLS. */
            size_t n = 0;
            int rv = up_sock_read(s, up_buf_wptr(&d->in), 1, &n);
            if (rv == UP_EAGAIN) {
                return;
            }
            if (rv == UP_EOF) {
                char first[64];
                first_bytes(&d->in, first, sizeof first);
                report_fail(d, 0, "%s closed the connection %s%s%s", d->where,
                            up_buf_len(&d->in) ? "in the middle of its answer to CONNECT"
                                               : "without answering CONNECT",
                            up_buf_len(&d->in) ? "; first bytes: " : "", first);
                return;
            }
            if (rv < 0) {
                report_fail(d, 0, "reading the answer of %s failed: %s", d->where,
                            up_sock_strerror(s, rv));
                return;
            }
            up_buf_commit(&d->in, n);
            uint8_t c = up_buf_rptr(&d->in)[up_buf_len(&d->in) - 1];
            if (c == '\n' || up_buf_len(&d->in) < 8) {
                on_proxy_response(d);
                if (d->state != D_PRESP) {
                    return;
                }
            }
        }
    case D_TLS: {
        int rv = up_tls_handshake(s);
        if (rv == UP_EAGAIN) {
            return;
        }
        if (rv < 0) {
            char buf[256];
            if (up_tls_verify_failed(s)) {
                char issuer[256];
                up_tls_peer_issuer(s, issuer, sizeof issuer);
                up_tls_error(s, buf, sizeof buf);
                report_fail(d, 0, "relay %s:%u is not trusted: %s%s%s%s", d->host, d->port, buf,
                            issuer[0] ? "; its certificate was issued by " : "", issuer,
                            d->via_proxy ? " (an intercepting, TLS-inspecting proxy may be in "
                                           "the way: ask for its CA and pass it with --ca)"
                                         : " (use --ca FILE for a private CA; a TLS-inspecting "
                                           "middlebox may also be in the way)");
                return;
            }
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
        if (!flush_out(d, "the upgrade request")) {
            return;
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
    report_fail(d, 0, "cannot connect to %s: %s%s", d->where,
                d->last_err[0] ? d->last_err : "no address",
                d->via_proxy ? " (is the proxy running and reachable?)" : "");
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
        report_fail(d, 0, "cannot resolve %s%s: %s", d->via_proxy ? "proxy " : "",
                    d->via_proxy ? d->proxy.host : d->host, uv_strerror(status));
        return;
    }
    d->ai = res;
    d->cur = res;
    try_next(d);
}

static void on_timeout(uv_timer_t *t)
{
    struct up_dial *d = t->data;
    if (d->state == D_RESOLVE && d->numeric) {
        /* A numeric address, parsed already: connect from the loop, not from the caller's
         * up_dial_start, so a failure is reported after the caller has its handle. */
        d->numeric = false;
        if (d->timeout_ms) {
            uv_timer_start(&d->timer, on_timeout, d->timeout_ms, 0);
        }
        try_next(d);
        return;
    }
    if (d->state == D_RESOLVE) {
        /* getaddrinfo cannot be interrupted; report now and free when it returns. */
        d->cancelled = true;
        d->cb(d->ud, -1,
              d->via_proxy ? "timed out resolving the proxy's host"
                           : "timed out resolving the host",
              0, -1, NULL, NULL, 0);
        return;
    }
    static const char *const what[] = {
        "resolving",
        "connecting to",
        "in the TLS handshake with",
        "sending CONNECT to",
        "waiting for the answer to CONNECT from",
        "in the TLS handshake with the relay through",
        "sending the upgrade to",
        "waiting for the upgrade from",
    };
    const char *w = what[d->state];
    if (d->state == D_TLS && !d->via_proxy) {
        w = "in the TLS handshake with";
    }
    report_fail(d, 0, "timed out %s %s", w, d->where);
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
    if (cfg->pmd) {
        d->offer_pmd = true;
        d->pmd_cfg = *cfg->pmd;
        d->pmd_out = cfg->pmd_out;
        d->pmd_on_out = cfg->pmd_on_out;
    }
    if (cfg->proxy) {
        d->via_proxy = true;
        d->proxy = *cfg->proxy;
        d->proxy_tls = cfg->proxy_tls;
    }
    d->host = up_strdup(cfg->host);
    d->path = up_strdup(cfg->path ? cfg->path : "/");
    d->host_header = up_strdup(cfg->host_header ? cfg->host_header : cfg->host);
    d->bearer = cfg->bearer ? up_strdup(cfg->bearer) : NULL;
    up_buf_init(&d->out);
    up_buf_init(&d->in);
    bool v6 = d->via_proxy ? strchr(d->proxy.host, ':') != NULL : strchr(cfg->host, ':') != NULL;
    snprintf(d->where, sizeof d->where, v6 ? "%s[%s]:%u" : "%s%s:%u", d->via_proxy ? "proxy " : "",
             d->via_proxy ? d->proxy.host : cfg->host, d->via_proxy ? d->proxy.port : cfg->port);
    if (d->via_proxy && d->proxy.tls && !d->proxy_tls) {
        dial_free(d);
        return NULL;
    }
    if (!d->host || !d->path || !d->host_header || (cfg->bearer && !d->bearer)) {
        dial_free(d);
        return NULL;
    }
    uv_timer_init(loop, &d->timer);
    d->timer.data = d;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    char port[8];
    snprintf(port, sizeof port, "%u", d->via_proxy ? d->proxy.port : cfg->port);
    d->state = D_RESOLVE;
    d->timeout_ms = cfg->timeout_ms;
    /* A numeric address needs no resolver: parse it here instead of sending it through the
     * thread pool (an agent dialing a thousand backends at once spent its loop waiting on
     * getaddrinfo and its threads, which delayed every other stream). */
    struct addrinfo nh = hints;
    nh.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    if (getaddrinfo(d->via_proxy ? d->proxy.host : d->host, port, &nh, &d->ai) == 0) {
        d->cur = d->ai;
        d->numeric = true;
        d->pending_handles = 1; /* the timer; each socket adds one */
        uv_timer_start(&d->timer, on_timeout, 0, 0);
        return d;
    }
    d->ai = NULL;
    d->pending_handles = 2; /* timer + getaddrinfo; each socket adds one */
    if (cfg->timeout_ms) {
        uv_timer_start(&d->timer, on_timeout, cfg->timeout_ms, 0);
    }
    d->gai.data = d;
    int rv = uv_getaddrinfo(loop, &d->gai, on_resolved, d->via_proxy ? d->proxy.host : d->host,
                            port, &hints);
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
    if (d->state == D_RESOLVE && !d->numeric) {
        uv_cancel((uv_req_t *)&d->gai);
        return; /* on_resolved finishes */
    }
    finish(d, false);
}
