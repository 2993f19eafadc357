/* WebSocket echo connection for the Autobahn runs (see echo_conn.h). */
#include "echo_conn.h"

#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "base/crypto.h"
#include "proto/h1.h"

#define ECHO_MAX_HEADERS 64

static void conn_log(const struct echo_conn *c, const char *what, const char *detail)
{
    if (c->cfg.verbose) {
        fprintf(stderr, "echo %s: %s%s%s\n", c->cfg.role == UP_WS_SERVER ? "server" : "client",
                what, detail ? ": " : "", detail ? detail : "");
    }
}

static void handle_closed(struct echo_conn *c)
{
    if (--c->open_handles > 0) {
        return;
    }
    echo_done_fn done = c->cfg.on_done;
    void *ud = c->cfg.ud;
    up_buf_fini(&c->in);
    up_buf_fini(&c->out);
    up_buf_fini(&c->msg);
    up_buf_fini(&c->zout);
    if (c->pmd_on) {
        up_pmd_fini(&c->pmd);
    }
    up_free(c);
    if (done) {
        done(ud);
    }
}

static void timer_closed(uv_handle_t *h)
{
    handle_closed(h->data);
}

static void sock_closed(struct up_sock *s)
{
    handle_closed(s->ud);
}

/* Release the connection: the loop frees it once both handles are closed. */
static void conn_close(struct echo_conn *c, const char *why)
{
    if (c->state == EC_GONE) {
        return;
    }
    conn_log(c, "closed", why);
    c->state = EC_GONE;
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, timer_closed);
    up_sock_close(&c->sock, sock_closed);
}

static void on_timer(uv_timer_t *t)
{
    struct echo_conn *c = t->data;
    conn_close(c, c->state == EC_CLOSING ? "linger timeout" : "idle timeout");
}

/* RFC 6455 §5.3: a client masks every frame with a fresh, unpredictable key. */
static const uint8_t *frame_mask(const struct echo_conn *c, uint8_t key[4])
{
    if (c->cfg.role == UP_WS_SERVER) {
        return NULL;
    }
    if (up_random_bytes(key, 4) < 0) {
        memset(key, 0x5a, 4);
    }
    return key;
}

/* Queue our close frame (once) and enter EC_CLOSING; code 0 sends an empty close. */
static void start_closing(struct echo_conn *c, uint16_t code, const char *reason)
{
    if (!c->close_sent) {
        uint8_t key[4];
        const uint8_t *mask = frame_mask(c, key);
        if (up_ws_write_close(&c->out, ECHO_MAX_OUT_BYTES, code, reason, mask) < 0) {
            conn_close(c, "cannot queue the close frame");
            return;
        }
        c->close_sent = true;
    }
    c->state = EC_CLOSING;
    /* The linger deadline replaces the idle one. */
    uv_timer_start(&c->timer, on_timer, ECHO_LINGER_MS, 0);
}

static void queue_frame(struct echo_conn *c, uint8_t opcode, const uint8_t *p, size_t len)
{
    uint8_t key[4];
    const uint8_t *mask = frame_mask(c, key);
    if (up_ws_write_frame(&c->out, ECHO_MAX_OUT_BYTES, opcode, true, p, len, mask) < 0) {
        start_closing(c, 1009, "echo: output buffer full");
    }
}

/* RFC 7692 §7.2.1: compress the whole message, send it as one frame with RSV1. */
static void queue_compressed(struct echo_conn *c, uint8_t opcode, const uint8_t *p, size_t len)
{
    size_t bound = up_pmd_deflate_bound(len);
    uint8_t key[4];
    const uint8_t *mask = frame_mask(c, key);
    if (bound == SIZE_MAX || up_pmd_deflate(&c->pmd, p, len, true, &c->zout, bound) < 0) {
        start_closing(c, 1011, "echo: deflate failed");
        return;
    }
    size_t zlen = up_buf_len(&c->zout);
    const uint8_t *z = zlen ? up_buf_rptr(&c->zout) : (const uint8_t *)"";
    if (up_ws_write_frame_rsv(&c->out, ECHO_MAX_OUT_BYTES, opcode, true, UP_WS_RSV1, z, zlen,
                              mask) < 0) {
        start_closing(c, 1009, "echo: output buffer full");
    }
    up_buf_skip(&c->zout, zlen);
}

/* Inflate a slice of the current compressed message into msg (fin: the message's end). */
static void inflate_slice(struct echo_conn *c, const uint8_t *in, size_t len, bool fin)
{
    for (;;) {
        size_t left = ECHO_MAX_MESSAGE_BYTES - up_buf_len(&c->msg);
        size_t want = left < ECHO_INFLATE_CHUNK ? left : ECHO_INFLATE_CHUNK;
        if (want == 0 || up_buf_reserve(&c->msg, want, ECHO_MAX_MESSAGE_BYTES) < 0) {
            start_closing(c, 1009, "echo: message too big");
            return;
        }
        size_t used = 0, n = 0;
        int rv = up_pmd_inflate(&c->pmd, in, len, fin, up_buf_wptr(&c->msg), up_buf_room(&c->msg),
                                &used, &n);
        up_buf_commit(&c->msg, n);
        in += used;
        len -= used;
        if (rv == UP_OK) {
            return;
        }
        if (rv != UP_EAGAIN) {
            conn_log(c, "inflate error", c->pmd.err_reason);
            start_closing(c, c->pmd.close_code ? c->pmd.close_code : 1002, NULL);
            return;
        }
    }
}

static void message_done(struct echo_conn *c)
{
    const uint8_t *p = up_buf_len(&c->msg) ? up_buf_rptr(&c->msg) : (const uint8_t *)"";
    size_t len = up_buf_len(&c->msg);
    if (c->cfg.echo && c->pmd_on) {
        queue_compressed(c, c->msg_opcode, p, len);
    } else if (c->cfg.echo) {
        queue_frame(c, c->msg_opcode, p, len);
    } else if (c->cfg.on_msg) {
        c->cfg.on_msg(c->cfg.ud, c->msg_opcode, p, len);
    }
    up_buf_skip(&c->msg, len);
    c->msg_opcode = 0;
}

static void dispatch(struct echo_conn *c, const struct up_ws_ev *ev)
{
    switch (ev->kind) {
    case UP_WS_EV_NONE:
        return;
    case UP_WS_EV_BEGIN:
        if (ev->first) {
            c->msg_opcode = ev->opcode;
            c->msg_compressed = ev->compressed;
            up_buf_skip(&c->msg, up_buf_len(&c->msg));
            if (ev->compressed && up_pmd_inflate_begin(&c->pmd, ev->opcode == UP_WS_OP_TEXT) < 0) {
                start_closing(c, 1011, "echo: inflate state");
                return;
            }
        }
        if (c->msg_compressed) {
            return;
        }
        /* frame_len is already bound-checked by the codec against max_message_bytes. */
        if (ev->frame_len &&
            up_buf_reserve(&c->msg, (size_t)ev->frame_len, ECHO_MAX_MESSAGE_BYTES) < 0) {
            start_closing(c, 1009, "echo: message too big");
        }
        return;
    case UP_WS_EV_DATA:
        if (c->msg_compressed) {
            inflate_slice(c, ev->data, ev->len, false);
        } else if (up_buf_append(&c->msg, ev->data, ev->len, ECHO_MAX_MESSAGE_BYTES) < 0) {
            start_closing(c, 1009, "echo: message too big");
        }
        return;
    case UP_WS_EV_END:
        if (ev->fin && c->msg_compressed) {
            inflate_slice(c, NULL, 0, true);
        }
        if (ev->fin && c->state == EC_OPEN) {
            message_done(c);
        }
        return;
    case UP_WS_EV_PING:
        /* RFC 6455 §5.5.2: answer with a pong carrying the same payload. */
        queue_frame(c, UP_WS_OP_PONG, ev->data, ev->len);
        return;
    case UP_WS_EV_PONG:
        return;
    case UP_WS_EV_CLOSE:
        /* RFC 6455 §5.5.1: echo the status code; 1005 means the close had none. */
        c->close_rcvd = true;
        conn_log(c, "close received", NULL);
        start_closing(c, ev->close_code == 1005 ? 0 : ev->close_code, NULL);
        return;
    }
}

static void process_ws(struct echo_conn *c)
{
    while (c->state == EC_OPEN) {
        size_t used = 0;
        struct up_ws_ev ev;
        int rv = up_ws_parse(&c->ws, up_buf_rptr(&c->in), up_buf_len(&c->in), &used, &ev);
        if (rv < 0) {
            up_buf_skip(&c->in, used);
            /* RFC 6455 §7.1.7: fail the connection with the code the codec chose. */
            conn_log(c, "protocol error", c->ws.err_reason);
            start_closing(c, c->ws.close_code ? c->ws.close_code : 1002, NULL);
            return;
        }
        /* Dispatch before skipping: ev borrows the input. */
        dispatch(c, &ev);
        up_buf_skip(&c->in, used);
        if (ev.kind == UP_WS_EV_NONE) {
            return;
        }
    }
}

static void open_ws(struct echo_conn *c)
{
    struct up_ws_cfg wcfg = {
        .role = c->cfg.role,
        .max_frame_bytes = ECHO_MAX_MESSAGE_BYTES,
        .max_message_bytes = ECHO_MAX_MESSAGE_BYTES,
        .validate_utf8 = true,
        .permessage_deflate = c->pmd_on,
    };
    up_ws_parser_init(&c->ws, &wcfg);
    c->state = EC_OPEN;
}

static void http_refuse(struct echo_conn *c, int status, const char *why)
{
    char resp[512];
    int n = snprintf(resp, sizeof resp,
                     "HTTP/1.1 %d %s\r\nConnection: close\r\nContent-Type: text/plain\r\n%s"
                     "Content-Length: %zu\r\n\r\n%s\n",
                     status, status == 426 ? "Upgrade Required" : "Bad Request",
                     status == 426 ? "Sec-WebSocket-Version: 13\r\n" : "", strlen(why) + 1, why);
    conn_log(c, "upgrade refused", why);
    c->close_sent = true; /* no WebSocket: nothing to close but TCP */
    c->state = EC_CLOSING;
    uv_timer_start(&c->timer, on_timer, ECHO_LINGER_MS, 0);
    if (n < 0 || (size_t)n >= sizeof resp ||
        up_buf_append(&c->out, resp, (size_t)n, ECHO_MAX_HEAD) < 0) {
        conn_close(c, "cannot answer");
    }
}

/* Server role: read the upgrade request the way the relay does and answer 101. */
static void process_head(struct echo_conn *c)
{
    struct up_h1_header hdrs[ECHO_MAX_HEADERS];
    struct up_h1_msg m;
    int rv = up_h1_parse_request(up_buf_rptr(&c->in), up_buf_len(&c->in), &c->scan, &m, hdrs,
                                 ECHO_MAX_HEADERS, ECHO_MAX_HEAD);
    if (rv == UP_EAGAIN) {
        return;
    }
    if (rv < 0) {
        http_refuse(c, 400, m.err_reason ? m.err_reason : "malformed request");
        return;
    }
    const char *key = NULL, *why = NULL;
    size_t key_len = 0;
    int status = 400;
    if (up_ws_check_upgrade(&m, &key, &key_len, &why, &status) < 0) {
        http_refuse(c, status, why);
        return;
    }
    char accept[UP_WS_ACCEPT_LEN + 1];
    up_ws_accept(key, key_len, accept);
    /* RFC 7692 §5: accept the first acceptable permessage-deflate offer; an offer that does
     * not parse is declined (answered without the extension), like an unknown extension. */
    struct up_pmd_cfg pcfg;
    echo_pmd_cfg(&pcfg);
    struct up_pmd_params params;
    char ext[UP_PMD_MAX_HEADER];
    bool accepted = false;
    if (up_pmd_server_accept_h1(&pcfg, &m, &accepted, &params, ext, sizeof ext, &why) < 0) {
        accepted = false;
    }
    if (accepted && up_pmd_init(&c->pmd, &pcfg, &params, UP_WS_SERVER) < 0) {
        accepted = false;
    }
    c->pmd_on = accepted;
    char resp[512];
    int n = snprintf(resp, sizeof resp,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s%s%s\r\n",
                     accept, accepted ? "Sec-WebSocket-Extensions: " : "", accepted ? ext : "",
                     accepted ? "\r\n" : "");
    up_buf_skip(&c->in, m.head_len);
    if (n < 0 || (size_t)n >= sizeof resp ||
        up_buf_append(&c->out, resp, (size_t)n, ECHO_MAX_OUT_BYTES) < 0) {
        conn_close(c, "cannot answer the upgrade");
        return;
    }
    open_ws(c);
    /* Frames may have come in the same segment as the head. */
    process_ws(c);
}

static void process(struct echo_conn *c)
{
    switch (c->state) {
    case EC_HEAD:
        process_head(c);
        return;
    case EC_OPEN:
        process_ws(c);
        return;
    case EC_CLOSING:
        /* Our close is out: whatever still comes (the peer's close, late frames) is read
         * only to see its FIN. */
        up_buf_skip(&c->in, up_buf_len(&c->in));
        return;
    case EC_GONE:
        return;
    }
}

static void flush(struct echo_conn *c)
{
    while (c->state != EC_GONE && up_buf_len(&c->out)) {
        size_t n = 0;
        int rv = up_sock_write(&c->sock, up_buf_rptr(&c->out), up_buf_len(&c->out), &n);
        if (rv == UP_EAGAIN) {
            return;
        }
        if (rv < 0) {
            conn_close(c, up_sock_strerror(&c->sock, rv));
            return;
        }
        up_buf_skip(&c->out, n);
    }
    /* RFC 6455 §7.1.1: the server closes the TCP connection first; the client waits for
     * it (the linger timer bounds the wait). */
    if (c->state == EC_CLOSING && c->close_sent && !c->shut_wr && c->cfg.role == UP_WS_SERVER) {
        up_sock_shutdown_write(&c->sock);
        c->shut_wr = true;
    }
}

static void do_read(struct echo_conn *c)
{
    for (int i = 0; i < 16 && c->state != EC_GONE; i++) {
        if (up_buf_reserve(&c->in, ECHO_READ_CHUNK, ECHO_MAX_HEAD + ECHO_READ_CHUNK) < 0) {
            conn_close(c, "out of memory");
            return;
        }
        size_t n = 0;
        int rv = up_sock_read(&c->sock, up_buf_wptr(&c->in), up_buf_room(&c->in), &n);
        if (rv == UP_EAGAIN) {
            return;
        }
        if (rv < 0) {
            conn_close(c, rv == UP_EOF ? "peer closed" : up_sock_strerror(&c->sock, rv));
            return;
        }
        up_buf_commit(&c->in, n);
        if (c->state == EC_HEAD || c->state == EC_OPEN) {
            uv_timer_start(&c->timer, on_timer, ECHO_IDLE_MS, 0);
        }
        process(c);
        /* Backpressure: do not read more while a big echo is still unsent. */
        if (up_buf_len(&c->out) > ECHO_MAX_MESSAGE_BYTES) {
            return;
        }
    }
}

static void update_interest(struct echo_conn *c)
{
    if (c->state == EC_GONE) {
        return;
    }
    bool pending = up_buf_len(&c->out) > 0;
    up_sock_want(&c->sock, up_buf_len(&c->out) <= ECHO_MAX_MESSAGE_BYTES, pending);
}

static void on_sock(struct up_sock *s, bool readable, bool writable)
{
    struct echo_conn *c = s->ud;
    if (c->state == EC_GONE) {
        return;
    }
    if (writable && up_buf_len(&c->out)) {
        flush(c);
    }
    if (readable && c->state != EC_GONE) {
        do_read(c);
    }
    if (c->state != EC_GONE) {
        flush(c);
    }
    update_interest(c);
}

void echo_pmd_cfg(struct up_pmd_cfg *pcfg)
{
    memset(pcfg, 0, sizeof(*pcfg));
    pcfg->max_message_bytes = ECHO_MAX_MESSAGE_BYTES;
}

int echo_conn_start(uv_loop_t *loop, int fd, struct ssl_st *ssl, const uint8_t *pre, size_t pre_len,
                    const struct echo_conn_cfg *cfg)
{
    struct echo_conn *c = up_calloc(1, sizeof(*c));
    if (!c) {
        return UP_ENOMEM;
    }
    c->cfg = *cfg;
    up_buf_init(&c->in);
    up_buf_init(&c->out);
    up_buf_init(&c->msg);
    up_buf_init(&c->zout);
    int rv = up_sock_init(&c->sock, loop, fd, on_sock, c);
    if (rv < 0) {
        up_free(c);
        return rv;
    }
    if (ssl) {
        c->sock.ssl = ssl;
        c->sock.tls = UP_TLS_OPEN;
    }
    c->open_handles = 2;
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
    uv_timer_start(&c->timer, on_timer, ECHO_IDLE_MS, 0);
    if (cfg->role == UP_WS_SERVER) {
        c->state = EC_HEAD;
    } else {
        if (cfg->pmd) {
            struct up_pmd_cfg pcfg;
            echo_pmd_cfg(&pcfg);
            if (up_pmd_init(&c->pmd, &pcfg, cfg->pmd, UP_WS_CLIENT) < 0) {
                conn_close(c, "bad permessage-deflate parameters");
                return UP_OK;
            }
            c->pmd_on = true;
        }
        open_ws(c);
        if (pre_len && up_buf_append(&c->in, pre, pre_len, ECHO_MAX_HEAD + ECHO_READ_CHUNK) < 0) {
            conn_close(c, "out of memory");
            return UP_OK;
        }
        if (pre_len) {
            process(c);
            flush(c);
        }
    }
    update_interest(c);
    return UP_OK;
}
