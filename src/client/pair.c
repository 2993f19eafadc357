#include "client/pair.h"

#include <openssl/ssl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "base/crypto.h"
#include "base/log.h"
#include "net/sock.h"
#include "proto/ws.h"

/* A side is read only while the other side's buffer is below UP_PAIR_HIGH_BYTES, and one read
 * adds at most one chunk with its header (target → relay) or one read's payload (relay →
 * target); pongs and our Close ride on top. Beyond these the peer is misbehaving. */
#define WS_TX_CAP (UP_PAIR_HIGH_BYTES + 4u * (UP_PAIR_CHUNK_BYTES + UP_WS_MAX_HEADER))
#define TCP_TX_CAP (UP_PAIR_HIGH_BYTES + UP_PAIR_RX_BYTES)
#define TEXT_KEEP 32 /* bytes of a TEXT message kept, to compare with "paired" and to log */

enum pair_state {
    P_DIAL,    /* dialing the relay: TCP, proxy, TLS, upgrade */
    P_WAIT,    /* upgraded; waiting for "paired" and sending nothing (the relay enforces it) */
    P_TARGET,  /* paired; connecting to the target while relay bytes queue in tcp_tx */
    P_OPEN,    /* copying bytes both ways */
    P_CLOSING, /* a Close is out or answered; waiting for the other Close and for the buffers */
    P_DONE,    /* everything is closed or closing; the loop ends once the handles are */
};

struct up_pair {
    uv_loop_t *loop;
    struct up_pair_cfg cfg;
    enum pair_state state;
    struct up_dial *dial; /* owned: the relay dial, then the target dial; NULL otherwise */
    struct up_sock ws;    /* the relay connection once upgraded (ws_open) */
    struct up_sock tcp;   /* the target connection (tcp_open) */
    bool ws_open, tcp_open;
    bool paired;
    bool ws_eof, tcp_eof;
    bool close_sent, close_rcvd;
    struct up_ws_parser parser;
    struct up_buf ws_tx;  /* owned: frames for the relay */
    struct up_buf tcp_tx; /* owned: bytes for the target */
    bool msg_text;        /* the message in progress is TEXT */
    char text[TEXT_KEEP + 1];
    size_t text_len; /* length of that TEXT message so far (may exceed TEXT_KEEP) */
    uint8_t rnd[256];
    size_t rnd_off;
    uv_timer_t timer;             /* --pair-timeout while waiting, then the close wait */
    uint64_t bytes_in, bytes_out; /* payload relay → target, target → relay */
    int status;
    int http_status;
    char err[512];
    uint8_t rx[UP_PAIR_RX_BYTES]; /* one read from the relay, parsed (unmasked) in place */
};

static void pump(struct up_pair *p);

/* Record the failure; the first one is the one the user sees. */
static void set_err(struct up_pair *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void set_err(struct up_pair *p, const char *fmt, ...)
{
    if (p->status != 0) {
        return;
    }
    p->status = 1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err, sizeof p->err, fmt, ap);
    va_end(ap);
}

/* Printable copy of peer text for logs and messages. */
static void printable(const uint8_t *s, size_t n, char *out, size_t cap)
{
    size_t k = 0;
    for (size_t i = 0; i < n && k + 1 < cap; i++) {
        out[k++] = (s[i] >= 0x20 && s[i] < 0x7f) ? (char)s[i] : '.';
    }
    out[k] = '\0';
}

/* Close both sockets and the timer; the loop ends once their handles are closed. */
static void end(struct up_pair *p)
{
    if (p->state == P_DONE) {
        return;
    }
    p->state = P_DONE;
    if (p->dial) {
        up_dial_cancel(p->dial);
        p->dial = NULL;
    }
    uv_timer_stop(&p->timer);
    uv_close((uv_handle_t *)&p->timer, NULL);
    if (p->ws_open) {
        p->ws_open = false;
        up_sock_close(&p->ws, NULL);
    }
    if (p->tcp_open) {
        p->tcp_open = false;
        up_sock_close(&p->tcp, NULL);
    }
    UP_LOGD("relay to target %llu bytes, target to relay %llu bytes",
            (unsigned long long)p->bytes_in, (unsigned long long)p->bytes_out);
}

static int mask_key(struct up_pair *p, uint8_t key[4])
{
    if (p->rnd_off + 4 > sizeof p->rnd) {
        if (up_random_bytes(p->rnd, sizeof p->rnd) < 0) {
            return UP_ESYS;
        }
        p->rnd_off = 0;
    }
    memcpy(key, p->rnd + p->rnd_off, 4);
    p->rnd_off += 4;
    return UP_OK;
}

/* Queue a control frame (pong, close), masked as a client must (RFC 6455 §5.3). */
static void send_control(struct up_pair *p, uint8_t op, const uint8_t *d, size_t n, uint16_t code,
                         const char *reason)
{
    uint8_t key[4];
    if (mask_key(p, key) < 0) {
        set_err(p, "no randomness for WebSocket masks");
        end(p);
        return;
    }
    int rv = op == UP_WS_OP_CLOSE ? up_ws_write_close(&p->ws_tx, WS_TX_CAP, code, reason, key)
                                  : up_ws_write_frame(&p->ws_tx, WS_TX_CAP, op, true, d, n, key);
    if (rv < 0) {
        set_err(p, "the relay does not read what we send (output buffer full)");
        end(p);
    }
}

static void on_close_wait(uv_timer_t *t)
{
    struct up_pair *p = t->data;
    if (!p->close_rcvd) {
        UP_LOGW("the relay did not answer our Close within %d ms", UP_PAIR_CLOSE_WAIT_MS);
    } else {
        UP_LOGW("%zu byte(s) for the target and %zu for the relay not delivered within %d ms; "
                "dropped",
                up_buf_len(&p->tcp_tx), up_buf_len(&p->ws_tx), UP_PAIR_CLOSE_WAIT_MS);
    }
    end(p);
}

/* Start the closing handshake (RFC 6455 §7.1.2): our Close (code 0: none), after which no data
 * frame goes out; then wait, bounded, for the relay's Close and for both buffers to drain. */
static void start_close(struct up_pair *p, uint16_t code, const char *reason)
{
    if (p->state == P_CLOSING || p->state == P_DONE) {
        return;
    }
    if (p->dial) {
        up_dial_cancel(p->dial); /* the target dial */
        p->dial = NULL;
    }
    p->state = P_CLOSING;
    if (!p->close_sent) {
        p->close_sent = true;
        send_control(p, UP_WS_OP_CLOSE, NULL, 0, code, reason);
    }
    if (p->state == P_DONE) {
        return;
    }
    uv_timer_stop(&p->timer);
    uv_timer_start(&p->timer, on_close_wait, UP_PAIR_CLOSE_WAIT_MS, 0);
}

static bool ws_may_read(const struct up_pair *p)
{
    return p->ws_open && !p->ws_eof && !p->close_rcvd &&
           up_buf_len(&p->tcp_tx) < UP_PAIR_HIGH_BYTES;
}

static bool tcp_may_read(const struct up_pair *p)
{
    return p->tcp_open && !p->tcp_eof && !p->close_sent &&
           up_buf_len(&p->ws_tx) < UP_PAIR_HIGH_BYTES;
}

/* The target failed: close it now and tell the browser, unless it had already ended. */
static void target_failed(struct up_pair *p, const char *what, int rv)
{
    if (!p->tcp_eof) {
        set_err(p, "%s the target failed: %s", what, up_sock_strerror(&p->tcp, rv));
    } else {
        UP_LOGD("%s the target failed after its EOF: %s", what, up_sock_strerror(&p->tcp, rv));
    }
    p->tcp_open = false;
    up_sock_close(&p->tcp, NULL);
    up_buf_skip(&p->tcp_tx, up_buf_len(&p->tcp_tx)); /* nobody will take them */
    start_close(p, 1011, "target failed");
}

/* ---- target ---- */

static void on_tcp_sock(struct up_sock *s, bool readable, bool writable);

/* The last ": "-separated part of a dialer message ("Connection refused"): what the browser is
 * told, without our addresses. */
static const char *tail(const char *reason)
{
    const char *t = reason;
    for (const char *c = strstr(reason, ": "); c; c = strstr(c + 2, ": ")) {
        t = c + 2;
    }
    return t;
}

static void on_target(void *ud, int err, const char *reason, int http_status, int fd,
                      struct ssl_st *ssl, const uint8_t *leftover, size_t leftover_len)
{
    struct up_pair *p = ud;
    (void)http_status;
    (void)ssl;
    (void)leftover;
    (void)leftover_len;
    p->dial = NULL;
    if (err) {
        set_err(p, "cannot reach the target: %s", reason);
        char why[UP_WS_MAX_CONTROL];
        snprintf(why, sizeof why, "target refused: %s", tail(reason));
        start_close(p, 1011, why);
        pump(p);
        return;
    }
    if (up_sock_init(&p->tcp, p->loop, fd, on_tcp_sock, p) < 0) {
        set_err(p, "cannot watch the target connection");
        start_close(p, 1011, "target failed");
        pump(p);
        return;
    }
    p->tcp_open = true;
    p->state = P_OPEN;
    UP_LOGI("connected to the target %s:%u; copying bytes", p->cfg.target_host, p->cfg.target_port);
    pump(p);
}

/* Read target bytes straight into the relay's output buffer and frame them there: one copy,
 * then masking in place (the way link.c frames stream data). */
static void read_tcp(struct up_pair *p)
{
    size_t hmax = up_ws_header_size(UP_PAIR_CHUNK_BYTES, true);
    while (tcp_may_read(p)) {
        if (up_buf_reserve(&p->ws_tx, hmax + UP_PAIR_CHUNK_BYTES, WS_TX_CAP) < 0) {
            set_err(p, "out of memory");
            end(p);
            return;
        }
        uint8_t *base = up_buf_wptr(&p->ws_tx);
        size_t n = 0;
        int rv = up_sock_read(&p->tcp, base + hmax, UP_PAIR_CHUNK_BYTES, &n);
        if (rv == UP_EAGAIN) {
            return;
        }
        if (rv == UP_EOF) {
            p->tcp_eof = true;
            UP_LOGI("pairing ended: target closed");
            start_close(p, 1000, "target closed");
            return;
        }
        if (rv < 0) {
            target_failed(p, "reading from", rv);
            return;
        }
        uint8_t key[4];
        if (mask_key(p, key) < 0) {
            set_err(p, "no randomness for WebSocket masks");
            end(p);
            return;
        }
        size_t hsz = up_ws_header_size(n, true);
        if (hsz < hmax) {
            /* A short read (< 126 bytes) takes the shorter header. */
            memmove(base + hsz, base + hmax, n);
        }
        up_ws_encode_header(base, UP_WS_OP_BINARY, true, n, key);
        up_ws_mask(base + hsz, n, key, 0);
        up_buf_commit(&p->ws_tx, hsz + n);
        p->bytes_out += n;
    }
}

static void flush_tcp(struct up_pair *p)
{
    while (p->tcp_open && up_buf_len(&p->tcp_tx)) {
        size_t n = 0;
        int rv = up_sock_write(&p->tcp, up_buf_rptr(&p->tcp_tx), up_buf_len(&p->tcp_tx), &n);
        if (rv == UP_EAGAIN) {
            return;
        }
        if (rv < 0) {
            target_failed(p, "writing to", rv);
            return;
        }
        up_buf_skip(&p->tcp_tx, n);
    }
}

static void on_tcp_sock(struct up_sock *s, bool readable, bool writable)
{
    struct up_pair *p = s->ud;
    (void)writable;
    if (p->state == P_DONE) {
        return;
    }
    if (readable) {
        read_tcp(p);
    }
    pump(p);
}

/* ---- relay ---- */

static void on_pair_timeout(uv_timer_t *t)
{
    struct up_pair *p = t->data;
    set_err(p, "no browser joined within %.1fs (--pair-timeout)",
            (double)p->cfg.pair_timeout_ms / 1000.0);
    start_close(p, 1001, "pair timeout");
    pump(p);
}

static void on_paired(struct up_pair *p)
{
    p->paired = true;
    p->state = P_TARGET;
    uv_timer_stop(&p->timer);
    UP_LOGI("paired: a browser joined; connecting to the target %s:%u", p->cfg.target_host,
            p->cfg.target_port);
    struct up_dial_cfg dc = {
        .host = p->cfg.target_host,
        .port = p->cfg.target_port,
        .timeout_ms = p->cfg.target_timeout_ms,
    };
    p->dial = up_dial_start(p->loop, &dc, on_target, p);
    if (!p->dial) {
        set_err(p, "cannot start connecting to the target");
        start_close(p, 1011, "host out of resources");
    }
}

static void on_text(struct up_pair *p)
{
    char shown[TEXT_KEEP + 1];
    size_t kept = p->text_len < TEXT_KEEP ? p->text_len : TEXT_KEEP;
    printable((const uint8_t *)p->text, kept, shown, sizeof shown);
    if (p->paired) {
        UP_LOGD("ignoring a %zu-byte text message from the relay", p->text_len);
        return;
    }
    if (p->state != P_WAIT) {
        return; /* we are already closing */
    }
    if (p->text_len == strlen(UP_PAIR_PAIRED) && memcmp(p->text, UP_PAIR_PAIRED, kept) == 0) {
        on_paired(p);
        return;
    }
    set_err(p, "the relay sent \"%s%s\" where \"" UP_PAIR_PAIRED "\" was expected", shown,
            p->text_len > kept ? "..." : "");
    start_close(p, 1002, "expected paired");
}

static void on_close_frame(struct up_pair *p, uint16_t code, const uint8_t *reason, size_t len)
{
    char r[UP_WS_MAX_CONTROL + 1];
    printable(reason, len, r, sizeof r);
    p->close_rcvd = true;
    if (p->close_sent) {
        UP_LOGD("the relay answered our Close (%u%s%s)", code, len ? " " : "", r);
        return;
    }
    if (p->paired) {
        UP_LOGI("pairing ended: peer closed (%u%s%s)", code, len ? " " : "", r);
    } else {
        set_err(p, "the relay closed the pairing before a browser joined (%u%s%s)", code,
                len ? " " : "", r);
    }
    /* Echo the code (RFC 6455 §5.5.1); 1005 means the peer sent none. */
    start_close(p, code == 1005 ? 0 : code, NULL);
}

/* Parse one read from the relay (in place) and act on each event. */
static void ws_input(struct up_pair *p, uint8_t *in, size_t len)
{
    while (p->state != P_DONE) {
        struct up_ws_ev ev;
        size_t used = 0;
        int rv = up_ws_parse(&p->parser, in, len, &used, &ev);
        in += used;
        len -= used;
        if (rv < 0) {
            set_err(p, "the relay broke the WebSocket protocol: %s", p->parser.err_reason);
            p->ws_eof = true; /* the parser is spent: read nothing more */
            start_close(p, p->parser.close_code, p->parser.err_reason);
            return;
        }
        switch (ev.kind) {
        case UP_WS_EV_NONE:
            return;
        case UP_WS_EV_BEGIN:
            if (ev.first) {
                p->msg_text = ev.opcode == UP_WS_OP_TEXT;
                p->text_len = 0;
            }
            if (!p->msg_text && !p->paired && p->state == P_WAIT) {
                set_err(p, "the relay sent data before \"" UP_PAIR_PAIRED "\"");
                start_close(p, 1002, "data before paired");
                return;
            }
            break;
        case UP_WS_EV_DATA:
            if (p->msg_text) {
                if (p->text_len < TEXT_KEEP) {
                    size_t take =
                        TEXT_KEEP - p->text_len < ev.len ? TEXT_KEEP - p->text_len : ev.len;
                    memcpy(p->text + p->text_len, ev.data, take);
                }
                p->text_len += ev.len;
            } else if (p->paired && (p->tcp_open || p->state == P_TARGET)) {
                if (up_buf_append(&p->tcp_tx, ev.data, ev.len, TCP_TX_CAP) < 0) {
                    set_err(p, "out of memory");
                    end(p);
                    return;
                }
                p->bytes_in += ev.len;
            }
            break;
        case UP_WS_EV_END:
            if (ev.fin && p->msg_text) {
                on_text(p);
            }
            break;
        case UP_WS_EV_PING:
            if (!p->close_sent) {
                send_control(p, UP_WS_OP_PONG, ev.data, ev.len, 0, NULL);
            }
            break;
        case UP_WS_EV_PONG:
            break;
        case UP_WS_EV_CLOSE:
            on_close_frame(p, ev.close_code, ev.data, ev.len);
            return;
        }
    }
}

static void on_ws_eof(struct up_pair *p)
{
    p->ws_eof = true;
    if (p->close_sent) {
        UP_LOGD("the relay closed the connection%s", p->close_rcvd ? "" : " without its Close");
    } else if (p->paired) {
        set_err(p, "the relay connection ended without a WebSocket Close");
    } else {
        set_err(p, "the relay closed the connection before a browser joined");
    }
    end(p);
}

static void read_ws(struct up_pair *p)
{
    while (ws_may_read(p)) {
        size_t n = 0;
        int rv = up_sock_read(&p->ws, p->rx, sizeof p->rx, &n);
        if (rv == UP_EAGAIN) {
            return;
        }
        if (rv == UP_EOF) {
            on_ws_eof(p);
            return;
        }
        if (rv < 0) {
            if (!p->close_sent) {
                set_err(p, "reading from the relay failed: %s", up_sock_strerror(&p->ws, rv));
            }
            end(p);
            return;
        }
        ws_input(p, p->rx, n);
    }
}

static void flush_ws(struct up_pair *p)
{
    while (p->ws_open && up_buf_len(&p->ws_tx)) {
        size_t n = 0;
        int rv = up_sock_write(&p->ws, up_buf_rptr(&p->ws_tx), up_buf_len(&p->ws_tx), &n);
        if (rv == UP_EAGAIN) {
            return;
        }
        if (rv < 0) {
            if (!p->close_rcvd) {
                set_err(p, "writing to the relay failed: %s", up_sock_strerror(&p->ws, rv));
            }
            end(p);
            return;
        }
        up_buf_skip(&p->ws_tx, n);
    }
}

static void on_ws_sock(struct up_sock *s, bool readable, bool writable)
{
    struct up_pair *p = s->ud;
    if (p->state == P_DONE) {
        return;
    }
    if (readable || (s->ssl && writable) || up_sock_has_pending(s)) {
        read_ws(p);
    }
    pump(p);
}

/* Move what the reads produced, then set the poll interest from the buffers: the straight line
 * every callback ends with. */
static void pump(struct up_pair *p)
{
    for (int round = 0; round < 4 && p->state != P_DONE; round++) {
        flush_ws(p);
        flush_tcp(p);
        /* Records TLS already decrypted do not wake the poll: read them now there is room. */
        if (p->state == P_DONE || !ws_may_read(p) || !up_sock_has_pending(&p->ws)) {
            break;
        }
        read_ws(p);
    }
    if (p->state == P_DONE) {
        return;
    }
    if (p->state == P_CLOSING && p->close_sent && (p->close_rcvd || p->ws_eof) &&
        up_buf_len(&p->ws_tx) == 0 && (!p->tcp_open || up_buf_len(&p->tcp_tx) == 0)) {
        end(p);
        return;
    }
    if (p->ws_open) {
        up_sock_want(&p->ws, ws_may_read(p), up_buf_len(&p->ws_tx) > 0);
    }
    if (p->tcp_open) {
        up_sock_want(&p->tcp, tcp_may_read(p), up_buf_len(&p->tcp_tx) > 0);
    }
}

/* What the user can do about a refusal; the relay's own reason comes before it. */
static const char *refusal_hint(int status)
{
    switch (status) {
    case 404: /* unknown or expired token */
    case 409: /* already used */
    case 410: /* expired */
        return "; ask the platform for a new pairing token";
    default:
        return "";
    }
}

static void on_relay(void *ud, int err, const char *reason, int http_status, int fd,
                     struct ssl_st *ssl, const uint8_t *leftover, size_t leftover_len)
{
    struct up_pair *p = ud;
    p->dial = NULL;
    if (err) {
        p->http_status = http_status;
        set_err(p, "%s%s", reason, refusal_hint(http_status));
        end(p);
        return;
    }
    if (up_sock_init(&p->ws, p->loop, fd, on_ws_sock, p) < 0) {
        SSL_free(ssl);
        set_err(p, "cannot watch the relay connection");
        end(p);
        return;
    }
    p->ws.ssl = ssl;
    p->ws.tls = ssl ? UP_TLS_OPEN : UP_TLS_NONE;
    p->ws_open = true;
    p->state = P_WAIT;
    UP_LOGI("relay accepted the pairing token; waiting for the browser to join");
    if (p->cfg.pair_timeout_ms) {
        uv_timer_start(&p->timer, on_pair_timeout, p->cfg.pair_timeout_ms, 0);
    }
    if (leftover_len) {
        /* "paired" may have come with the 101 (the browser was there first). */
        uint8_t *copy = up_malloc(leftover_len);
        if (!copy) {
            set_err(p, "out of memory");
            end(p);
            return;
        }
        memcpy(copy, leftover, leftover_len);
        ws_input(p, copy, leftover_len);
        up_free(copy);
    }
    pump(p);
}

/* ---- public ---- */

int up_pair_path(const char *base, const char *token, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t bl = strlen(base);
    while (bl && base[bl - 1] == '/') {
        bl--;
    }
    if (!token[0]) {
        return UP_EINVAL;
    }
    size_t o = 0;
#define PUT(c)                                                                                     \
    do {                                                                                           \
        if (o + 1 >= cap) {                                                                        \
            return UP_ELIMIT;                                                                      \
        }                                                                                          \
        out[o++] = (c);                                                                            \
    } while (0)
    for (size_t i = 0; i < bl; i++) {
        PUT(base[i]);
    }
    for (const char *s = "/pair/"; *s; s++) {
        PUT(*s);
    }
    for (const unsigned char *t = (const unsigned char *)token; *t; t++) {
        /* RFC 3986 §2.3 unreserved; base64url tokens pass unchanged. */
        if ((*t >= 'A' && *t <= 'Z') || (*t >= 'a' && *t <= 'z') || (*t >= '0' && *t <= '9') ||
            *t == '-' || *t == '.' || *t == '_' || *t == '~') {
            PUT((char)*t);
        } else {
            PUT('%');
            PUT(hex[*t >> 4]);
            PUT(hex[*t & 15]);
        }
    }
    for (const char *s = "?side=host"; *s; s++) {
        PUT(*s);
    }
#undef PUT
    out[o] = '\0';
    return UP_OK;
}

struct up_pair *up_pair_new(uv_loop_t *loop, const struct up_pair_cfg *cfg)
{
    struct up_pair *p = up_calloc(1, sizeof(*p));
    if (!p) {
        return NULL;
    }
    p->loop = loop;
    p->cfg = *cfg;
    p->rnd_off = sizeof p->rnd;
    up_buf_init(&p->ws_tx);
    up_buf_init(&p->tcp_tx);
    struct up_ws_cfg wc = {
        .role = UP_WS_CLIENT,
        .max_frame_bytes = UP_PAIR_MAX_MESSAGE_BYTES,
        .max_message_bytes = UP_PAIR_MAX_MESSAGE_BYTES,
        .validate_utf8 = true,
    };
    up_ws_parser_init(&p->parser, &wc);
    struct up_dial_cfg dc = cfg->relay;
    dc.websocket = true;
    dc.bearer = NULL; /* the token is in the path, and only there */
    dc.pmd = NULL;
    p->dial = up_dial_start(loop, &dc, on_relay, p);
    if (!p->dial) {
        up_free(p);
        return NULL;
    }
    uv_timer_init(loop, &p->timer);
    p->timer.data = p;
    p->state = P_DIAL;
    return p;
}

void up_pair_stop(struct up_pair *p)
{
    switch (p->state) {
    case P_DIAL:
        UP_LOGI("pairing ended: stopped before the relay answered");
        end(p);
        return;
    case P_WAIT:
    case P_TARGET:
    case P_OPEN:
        UP_LOGI("pairing ended: stopped");
        start_close(p, 1001, "host going away");
        pump(p);
        return;
    case P_CLOSING:
    case P_DONE:
        return;
    }
}

int up_pair_status(const struct up_pair *p)
{
    return p->status;
}

const char *up_pair_error(const struct up_pair *p)
{
    return p->err;
}

int up_pair_http_status(const struct up_pair *p)
{
    return p->http_status;
}

void up_pair_free(struct up_pair *p)
{
    if (!p) {
        return;
    }
    up_buf_fini(&p->ws_tx);
    up_buf_fini(&p->tcp_tx);
    up_free(p);
}
