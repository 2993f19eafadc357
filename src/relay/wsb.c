/* Browsers' WebSockets on the relay, bridged to bytes:
 *  - /s/<service>: a tcp (or any) service of an agent, the websockify convention: binary
 *    message payloads are the stream's bytes, both ways (text payloads are taken as bytes
 *    too). The client token comes in Authorization: Bearer, a ?token= parameter or a
 *    Sec-WebSocket-Protocol entry "bearer.<token>" (browsers cannot set headers); it is never
 *    logged.
 *  - /pair/<token>: one-time pairing (the DeltaBlue flow). POST /api/pairings (admin token)
 *    mints a single-use token. A rendezvous joins the host side (`underpass pair`,
 *    ?side=host) and the browser side; a service pairing joins the browser to a stream on the
 *    named service. When joined, both sides get one text message "paired"; data sent before
 *    it is refused (close 1008). A token works once per side, expires (default 60 s) unless
 *    joined by then, and a waiting side is closed at expiry. When one side closes, so does
 *    the other. */
#include "relay/wsb.h"

#include <stdio.h>
#include <string.h>

#include "base/log.h"
#include "base/str.h"
#include "proto/hparse.h"
#include "proto/ws.h"
#include "relay/auth.h"
#include "relay/conn.h"
#include "relay/pair.h"
#include "relay/registry.h"

#define WSB_IN_MAX (64u * 1024u)    /* browser bytes read ahead */
#define WSB_OUT_HIGH (256u * 1024u) /* a rendezvous peer's output above this: stop reading */
#define WSB_OUT_MAX (UP_MUX_MAX_WINDOW + WSB_OUT_HIGH + 64u * 1024u)

static void wsb_end(struct hconn *c, uint16_t code, const char *reason);
static void wsb_want(struct hconn *c, bool kick);
static void wsb_start(struct hconn *c);
static void wsb_close(struct hconn *c);

/* ---- output ---- */

static int wsb_frame(struct hconn *c, uint8_t opcode, const uint8_t *p, size_t n)
{
    return up_ws_write_frame(&c->out, WSB_OUT_MAX, opcode, true, p, n, NULL);
}

/* Write c->out; credit for stream bytes goes back as they leave. False when c closed. */
static bool wsb_flush(struct hconn *c)
{
    struct hwsb *w = &c->ws;
    size_t before = up_buf_len(&c->out);
    if (!hc_write_owed(c, &w->owed, w->on_link ? &w->st : NULL)) {
        return false;
    }
    /* The peer may be holding bytes for us until we had room. */
    if (w->peer && before >= WSB_OUT_HIGH && up_buf_len(&c->out) < WSB_OUT_HIGH) {
        wsb_want(w->peer, true);
    }
    if (w->ending && up_buf_len(&c->out) == 0) {
        /* Our close frame is out: shut down and drain the browser's side briefly. */
        wsb_close(c);
        c->state = HC_WRITE;
        c->upgrade_after = false;
        hc_flush(c);
        return false;
    }
    wsb_want(c, false); /* what the socket did not take: watch for room */
    return true;
}

static void wsb_want(struct hconn *c, bool kick)
{
    struct hwsb *w = &c->ws;
    if (!c->wsb_on || c->closing || c->state != HC_WSB) {
        return;
    }
    bool r = !w->ending && up_buf_len(&w->pend) == 0 && up_buf_len(&c->in) < WSB_IN_MAX;
    if (r && up_sock_has_pending(c->sock)) {
        kick = true;
    }
    w->kicked = w->kicked || kick; /* one-shot: kept until the callback runs */
    up_sock_want(c->sock, r, w->kicked || up_buf_len(&c->out) > 0);
}

/* Queue a close frame and end the connection once it is written. */
static void wsb_end(struct hconn *c, uint16_t code, const char *reason)
{
    struct hwsb *w = &c->ws;
    if (!c->wsb_on || c->closing || w->ending) {
        return;
    }
    w->ending = true;
    if (up_ws_write_close(&c->out, WSB_OUT_MAX + 256, code, reason, NULL) < 0) {
        hc_close(c, false);
        return;
    }
    if (c->state == HC_WSB) {
        wsb_flush(c);
    }
}

/* ---- the stream (WSB_SERVICE) ---- */

static size_t wsb_pull(struct up_lstream *st, uint8_t *dst, size_t max, bool *fin)
{
    struct hconn *c = st->ud;
    struct hwsb *w = &c->ws;
    size_t n = up_buf_len(&w->pend);
    if (n > max) {
        n = max;
    }
    if (n) {
        memcpy(dst, up_buf_rptr(&w->pend), n);
        up_buf_skip(&w->pend, n);
    }
    *fin = false;
    if (up_buf_len(&w->pend) == 0) {
        up_buf_release_if_empty(&w->pend);
        *fin = w->fin_out;
        wsb_want(c, true); /* go on parsing what the browser sent */
    }
    return n;
}

static void wsb_on_accept(struct up_lstream *st)
{
    struct hconn *c = st->ud;
    struct hwsb *w = &c->ws;
    w->accepted = true;
    if (w->announce) {
        w->paired = true;
        if (wsb_frame(c, UP_WS_OP_TEXT, (const uint8_t *)"paired", 6) < 0) {
            hc_close(c, false);
            return;
        }
        UP_LOGI("pairing for '%s' joined: %s", w->service, c->client);
        wsb_flush(c);
    }
    up_link_ready(st);
}

static void wsb_on_data(struct up_lstream *st, const uint8_t *p, size_t n)
{
    struct hconn *c = st->ud;
    struct hwsb *w = &c->ws;
    if (!c->wsb_on || c->closing || w->ending) {
        up_link_consumed(st, n);
        return;
    }
    if (wsb_frame(c, UP_WS_OP_BINARY, p, n) < 0) {
        hc_close(c, false);
        return;
    }
    w->owed += n;
    if (c->state == HC_WSB) {
        wsb_flush(c);
    }
}

static void wsb_on_fin(struct up_lstream *st)
{
    struct hconn *c = st->ud;
    struct hwsb *w = &c->ws;
    w->fin_out = true; /* nothing more will be read from the browser either */
    up_link_ready(st);
    wsb_end(c, 1000, "the service closed the connection");
}

static void wsb_on_close(struct up_lstream *st, uint32_t code, const char *reason)
{
    struct hconn *c = st->ud;
    struct hwsb *w = &c->ws;
    w->on_link = false;
    c->relay->n.streams_active--;
    if (code == UP_MUX_C_NONE) {
        wsb_end(c, 1000, "the service closed the connection");
        return;
    }
    char why[120];
    snprintf(why, sizeof why, "%s%s%.80s", up_mux_code_name(code), reason && *reason ? ": " : "",
             reason ? reason : "");
    /* 1014 Bad Gateway (RFC 6455 registry) when the service could not be reached. */
    wsb_end(c, w->accepted ? 1011 : 1014, why);
}

static const struct up_lstream_ops wsb_ops = {
    .on_accept = wsb_on_accept,
    .on_data = wsb_on_data,
    .on_fin = wsb_on_fin,
    .on_close = wsb_on_close,
    .pull = wsb_pull,
};

/* ---- the browser's input ---- */

/* A slice of message payload from the browser. Returns false when reading must pause. */
static bool wsb_deliver(struct hconn *c, const uint8_t *p, size_t n)
{
    struct hwsb *w = &c->ws;
    if (!w->paired) {
        wsb_end(c, 1008, "data before pairing");
        return false;
    }
    size_t k = 0;
    if (w->kind == WSB_SERVICE) {
        if (w->accepted && w->on_link) {
            k = up_link_send(&w->st, p, n);
        }
    } else if (w->peer) {
        struct hconn *o = w->peer;
        if (up_buf_len(&o->out) < WSB_OUT_HIGH) {
            if (wsb_frame(o, UP_WS_OP_BINARY, p, n) < 0) {
                hc_close(o, false);
                return false;
            }
            k = n;
            wsb_flush(o);
        }
    } else {
        return false; /* the peer left; we are closing */
    }
    if (k < n) {
        if (up_buf_append(&w->pend, p + k, n - k, WSB_IN_MAX + 16384) < 0) {
            hc_close(c, false);
            return false;
        }
        if (w->on_link && w->accepted) {
            up_link_ready(&w->st);
        }
        return false;
    }
    return true;
}

/* Move pending bytes to the peer (rendezvous) when it has room again. */
static void wsb_drain_pend(struct hconn *c)
{
    struct hwsb *w = &c->ws;
    if (w->kind == WSB_SERVICE || !up_buf_len(&w->pend) || !w->peer) {
        return;
    }
    struct hconn *o = w->peer;
    if (up_buf_len(&o->out) >= WSB_OUT_HIGH) {
        return;
    }
    if (wsb_frame(o, UP_WS_OP_BINARY, up_buf_rptr(&w->pend), up_buf_len(&w->pend)) < 0) {
        hc_close(o, false);
        return;
    }
    up_buf_skip(&w->pend, up_buf_len(&w->pend));
    up_buf_release_if_empty(&w->pend);
    wsb_flush(o);
}

static void wsb_parse(struct hconn *c)
{
    struct hwsb *w = &c->ws;
    while (up_buf_len(&c->in) && up_buf_len(&w->pend) == 0 && !w->ending && !c->closing) {
        size_t used = 0;
        struct up_ws_ev ev;
        int rv = up_ws_parse(&w->wp, up_buf_rptr(&c->in), up_buf_len(&c->in), &used, &ev);
        up_buf_skip(&c->in, used);
        if (rv < 0) {
            wsb_end(c, w->wp.close_code ? w->wp.close_code : 1002,
                    w->wp.err_reason ? w->wp.err_reason : "protocol error");
            return;
        }
        switch (ev.kind) {
        case UP_WS_EV_DATA:
            if (!wsb_deliver(c, ev.data, ev.len)) {
                return;
            }
            break;
        case UP_WS_EV_PING:
            if (up_ws_write_frame(&c->out, WSB_OUT_MAX + 256, UP_WS_OP_PONG, true, ev.data, ev.len,
                                  NULL) < 0) {
                hc_close(c, false);
                return;
            }
            break;
        case UP_WS_EV_CLOSE: {
            uint16_t code = ev.close_code == 1005 ? 1000 : ev.close_code;
            if (w->kind == WSB_SERVICE) {
                w->fin_out = true;
                if (w->on_link && w->accepted) {
                    up_link_ready(&w->st);
                }
            } else if (w->peer) {
                wsb_end(w->peer, 1000, "the other side closed");
            }
            wsb_end(c, code, NULL);
            return;
        }
        default:
            break;
        }
    }
}

void wsb_sock_cb(struct hconn *c, bool readable, bool writable)
{
    struct hwsb *w = &c->ws;
    (void)writable;
    w->kicked = false;
    if (up_buf_len(&c->out) && !wsb_flush(c)) {
        return;
    }
    wsb_drain_pend(c);
    if (c->closing || !c->wsb_on) {
        return;
    }
    if ((readable || up_sock_has_pending(c->sock)) && up_buf_len(&w->pend) == 0) {
        while (up_buf_len(&c->in) < WSB_IN_MAX && !w->ending) {
            if (up_buf_reserve(&c->in, 16384, WSB_IN_MAX + 16384) < 0) {
                hc_close(c, false);
                return;
            }
            size_t n = 0;
            int rv = up_sock_read(c->sock, up_buf_wptr(&c->in), up_buf_room(&c->in), &n);
            if (rv == UP_EAGAIN) {
                break;
            }
            if (rv < 0) {
                /* Gone without a close frame. */
                if (w->peer) {
                    wsb_end(w->peer, 1001, "the other side went away");
                }
                hc_close(c, false);
                return;
            }
            up_buf_commit(&c->in, n);
        }
    }
    wsb_parse(c);
    if (!c->closing && c->wsb_on && c->state == HC_WSB) {
        if (up_buf_len(&c->out) && !wsb_flush(c)) {
            return;
        }
        wsb_want(c, false);
    }
}

/* ---- pairings ---- */

/* Both sides of a rendezvous are here: tell them, and bytes flow. */
static void pairing_join(struct up_relay *r, struct pairing *p)
{
    struct hconn *h = p->host, *b = p->browser;
    p->joined = true;
    p->host = p->browser = NULL;
    h->ws.pair = b->ws.pair = NULL;
    h->ws.peer = b;
    b->ws.peer = h;
    h->ws.paired = b->ws.paired = true;
    UP_LOGI("pairing joined: host %s, browser %s", h->client, b->client);
    (void)r;
    if (wsb_frame(h, UP_WS_OP_TEXT, (const uint8_t *)"paired", 6) < 0 ||
        wsb_frame(b, UP_WS_OP_TEXT, (const uint8_t *)"paired", 6) < 0) {
        hc_close(h, false);
        hc_close(b, false);
        return;
    }
    if (wsb_flush(h)) {
        wsb_want(h, true);
    }
    if (wsb_flush(b)) {
        wsb_want(b, true);
    }
}

/* ---- the requests ---- */

/* The Sec-WebSocket-Protocol entry to answer with and a "bearer.<token>" entry's token
 * (up_hparse_wsproto); *tok is left alone when there is none. */
static void subprotocols(const struct up_h1_msg *m, const char **pick, size_t *pick_len,
                         const char **tok, size_t *tok_len)
{
    struct up_hparse_wsproto sp;
    up_hparse_wsproto_init(&sp);
    for (size_t i = 0; i < m->n_headers; i++) {
        const struct up_h1_header *h = &m->headers[i];
        if (up_str_ieq(h->name, h->name_len, "sec-websocket-protocol")) {
            up_hparse_wsproto_feed(&sp, h->value, h->value_len);
        }
    }
    *pick = up_hparse_wsproto_pick(&sp, pick_len);
    size_t tl = 0;
    const char *t = up_hparse_wsproto_token(&sp, &tl);
    if (t) {
        *tok = t;
        *tok_len = tl;
    }
}

/* Answer 101 and become a bridge once it is written. */
static void wsb_accept(struct hconn *c, const struct up_h1_msg *m, const char *key, size_t key_len,
                       const char *proto, size_t proto_len)
{
    char accept[UP_WS_ACCEPT_LEN + 1];
    up_ws_accept(key, key_len, accept);
    char resp[512];
    int n = snprintf(resp, sizeof resp,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s%.*s%s\r\n",
                     accept, proto ? "Sec-WebSocket-Protocol: " : "", proto ? (int)proto_len : 0,
                     proto ? proto : "", proto ? "\r\n" : "");
    up_buf_skip(&c->in, m->head_len);
    if (n < 0 || (size_t)n >= sizeof resp || up_buf_append(&c->out, resp, (size_t)n, 8192) < 0) {
        hc_close(c, false);
        return;
    }
    c->relay->n.http_requests++;
    /* A browser bridge wakes its peer by asking for writability (wsb_want's kick), which the
     * front's 16 KiB unsent bound would withhold while this browser reads slowly: back to the
     * kernel's default here. (Its slow readers' kernel buffers are left for later.) */
    up_tcp_set_notsent_lowat(c->sock->fd, UP_SOCK_NOTSENT_DEFAULT);
    c->wsb_on = true;
    c->on_close = wsb_close;
    c->on_upgraded = wsb_start;
    c->upgrade_after = true;
    c->state = HC_WRITE;
    hc_flush(c);
}

static bool check_upgrade(struct hconn *c, const struct up_h1_msg *m, const char **key,
                          size_t *key_len)
{
    const char *why = NULL;
    int status = 400;
    if (!(m->method_len == 3 && memcmp(m->method, "GET", 3) == 0)) {
        hc_error(c, 405, "Method Not Allowed", "use GET with a WebSocket upgrade");
        return false;
    }
    if (c->relay->shutting) {
        hc_error(c, 503, "Service Unavailable", "relay is shutting down");
        return false;
    }
    if (up_ws_check_upgrade(m, key, key_len, &why, &status) < 0) {
        hc_respond(c, status, status == 426 ? "Upgrade Required" : "Bad Request", why, "text/plain",
                   status == 426 ? "Sec-WebSocket-Version: 13\r\n" : NULL);
        return false;
    }
    return true;
}

static void wsb_init(struct hconn *c, enum wsb_kind kind, const char *service)
{
    struct hwsb *w = &c->ws;
    memset(w, 0, sizeof *w);
    w->kind = (uint8_t)kind;
    up_buf_init(&w->pend);
    snprintf(w->service, sizeof w->service, "%s", service ? service : "");
    struct up_ws_cfg wc = {
        .role = UP_WS_SERVER,
        .max_frame_bytes = UINT64_C(1) << 40, /* streamed, never held whole */
        .max_message_bytes = UINT64_C(1) << 40,
        .validate_utf8 = true,
    };
    up_ws_parser_init(&w->wp, &wc);
}

/* GET /s/<service>: a client token allowing service. */
static void serve_s(struct hconn *c, const struct up_h1_msg *m, const char *name)
{
    struct up_relay *r = c->relay;
    size_t nl = strlen(name);
    const char *key;
    size_t key_len;
    if (nl == 0 || nl > UP_TOKEN_MAX_NAME || !up_token_valid_service_name(name, nl)) {
        hc_error(c, 404, "Not Found", "no such service (the path is /s/<service>)");
        return;
    }
    if (!check_upgrade(c, m, &key, &key_len)) {
        return;
    }
    const char *tok = NULL, *proto = NULL;
    size_t tok_len = 0, proto_len = 0;
    subprotocols(m, &proto, &proto_len, &tok, &tok_len);
    relay_bearer(m, &tok, &tok_len);
    const char *q = memchr(m->target, '?', m->target_len);
    size_t qv = 0;
    const char *qt =
        q ? up_hparse_query_param(q + 1, m->target_len - (size_t)(q + 1 - m->target), "token", &qv)
          : NULL;
    if (!tok && qt) {
        tok = qt;
        tok_len = qv;
    }
    if (!tok) {
        hc_error(c, 401, "Unauthorized",
                 "missing client token (Authorization: Bearer, ?token=, or a "
                 "Sec-WebSocket-Protocol entry bearer.<token>)");
        return;
    }
    struct up_token_claims cl;
    const char *reason = NULL;
    if (relay_verify(r, tok, tok_len, &cl, &reason) < 0) {
        char w[160];
        snprintf(w, sizeof w, "invalid token: %s", reason ? reason : "refused");
        hc_error(c, 401, "Unauthorized", w);
        return;
    }
    if (cl.role != UP_ROLE_CLIENT || !up_token_allows(&cl, name, nl)) {
        char w[160];
        snprintf(w, sizeof w, "token does not allow service '%s'", name);
        hc_error(c, 403, "Forbidden", w);
        return;
    }
    if (!relay_find_agent(r, name, nl, NULL)) {
        char w[160];
        bool seen = relay_service_seen(r, name, nl);
        snprintf(w, sizeof w, "%s '%s'", seen ? "no agent online for service" : "no such service",
                 name);
        hc_respond(c, seen ? 503 : 404, seen ? "Service Unavailable" : "Not Found", w,
                   "text/plain; charset=utf-8", seen ? "Retry-After: 5\r\n" : NULL);
        return;
    }
    wsb_init(c, WSB_SERVICE, name);
    c->ws.paired = true;
    wsb_accept(c, m, key, key_len, proto, proto_len);
}

/* GET /pair/<token>[?side=host] */
static void serve_pair(struct hconn *c, const struct up_h1_msg *m, const char *tok)
{
    struct up_relay *r = c->relay;
    const char *key;
    size_t key_len;
    struct pairing *p = pair_find(r, tok, strlen(tok));
    if (!p) {
        hc_error(c, 404, "Not Found", "unknown or expired pairing token");
        return;
    }
    if (uv_now(r->loop) >= p->expires_ms && !p->joined) {
        hc_error(c, 410, "Gone", "pairing token expired");
        return;
    }
    const char *q = memchr(m->target, '?', m->target_len);
    size_t sl = 0;
    const char *side =
        q ? up_hparse_query_param(q + 1, m->target_len - (size_t)(q + 1 - m->target), "side", &sl)
          : NULL;
    bool host = side && sl == 4 && memcmp(side, "host", 4) == 0;
    if (side && !host && !(sl == 7 && memcmp(side, "browser", 7) == 0)) {
        hc_error(c, 400, "Bad Request", "side must be host or browser");
        return;
    }
    if (host && p->service[0]) {
        hc_error(c, 400, "Bad Request",
                 "this pairing names a service: only the browser side connects");
        return;
    }
    if (host ? p->host_used : p->browser_used) {
        hc_error(c, 409, "Conflict", "pairing token already used");
        return;
    }
    if (!check_upgrade(c, m, &key, &key_len)) {
        return;
    }
    const char *stok = NULL, *proto = NULL;
    size_t stok_len = 0, proto_len = 0;
    subprotocols(m, &proto, &proto_len, &stok, &stok_len);
    if (host) {
        p->host_used = true;
    } else {
        p->browser_used = true;
    }
    wsb_init(c, p->service[0] ? WSB_SERVICE : host ? WSB_PAIR_HOST : WSB_PAIR_BROWSER, p->service);
    c->ws.pair = p;
    if (host) {
        p->host = c;
    } else {
        p->browser = c;
    }
    wsb_accept(c, m, key, key_len, proto, proto_len);
}

bool wsb_try(struct hconn *c, const struct up_h1_msg *m, const char *path)
{
    if (strncmp(path, "/s/", 3) == 0) {
        serve_s(c, m, path + 3);
        return true;
    }
    if (strncmp(path, "/pair/", 6) == 0) {
        serve_pair(c, m, path + 6);
        return true;
    }
    return false;
}

/* ---- start and end ---- */

/* The 101 went out: start bridging. */
static void wsb_start(struct hconn *c)
{
    struct up_relay *r = c->relay;
    struct hwsb *w = &c->ws;
    c->state = HC_WSB;
    c->upgrade_after = false;
    uv_timer_stop(&c->timer);
    if (w->kind == WSB_SERVICE) {
        uint8_t flags = 0;
        struct rlink *agent = relay_find_agent(r, w->service, strlen(w->service), &flags);
        char meta[320];
        int ml = snprintf(meta, sizeof meta, "client=%s\nrelay=%s\nsub=\n", c->client, c->local);
        if (!agent) {
            wsb_end(c, 1014, "no agent online for the service");
            return;
        }
        int rv = up_link_open(agent->link, &w->st, w->service, (const uint8_t *)meta,
                              ml > 0 && (size_t)ml < sizeof meta ? (size_t)ml : 0, &wsb_ops, c);
        if (rv < 0) {
            wsb_end(c, 1013, rv == UP_ELIMIT ? "the agent's link is full" : "cannot open a stream");
            return;
        }
        w->on_link = true;
        w->announce = w->pair != NULL;
        if (w->pair) {
            /* A service pairing is used up by the browser that came. */
            struct pairing *p = w->pair;
            p->joined = true;
            p->browser = NULL;
            w->pair = NULL;
        }
        r->n.streams_total++;
        r->n.streams_active++;
        UP_LOGD("websocket bridge to '%s' for %s", w->service, c->client);
    } else if (w->pair && w->pair->host && w->pair->browser) {
        pairing_join(r, w->pair);
    }
    /* Bytes that came right after the head (a frame pipelined with the upgrade). */
    wsb_sock_cb(c, false, false);
}

/* The connection is closing: leave the link, the peer, the pairing. */
static void wsb_close(struct hconn *c)
{
    struct hwsb *w = &c->ws;
    if (!c->wsb_on) {
        return;
    }
    c->wsb_on = false;
    if (w->on_link) {
        up_link_reset(&w->st, UP_MUX_C_CANCEL, "websocket closed");
        w->on_link = false;
        c->relay->n.streams_active--;
    }
    if (w->pair) {
        if (w->pair->host == c) {
            w->pair->host = NULL;
        }
        if (w->pair->browser == c) {
            w->pair->browser = NULL;
        }
        w->pair = NULL;
    }
    struct hconn *o = w->peer;
    w->peer = NULL;
    if (o) {
        o->ws.peer = NULL;
        wsb_end(o, 1000, "the other side closed");
    }
    up_buf_fini(&w->pend);
}

void wsb_pair_expired(struct hconn *c)
{
    wsb_end(c, 1008, "pairing expired");
}
