/* The relay's reverse proxy for http services (--service web=http://... on an agent).
 *
 * A client connection whose request routes to an http service (--route, --domain) turns into
 * a proxy: one stream on the agent's link carries its requests, unchanged except for the head
 * (X-Forwarded-* and X-Real-IP set by us), and the responses come back unchanged. Bodies are
 * never buffered whole: h1body frames them as they pass so that the next head on a keep-alive
 * connection is found, and credit goes back to the agent only for bytes written to the client.
 * An Upgrade request holds the client's further bytes until the backend answers; after a 101
 * both directions are raw, so the backend's own WebSocket works end to end untouched.
 *
 * Errors are short text answers: 404 no such service, 503 no agent online (Retry-After), 502
 * backend refused, reset or answered garbage, 504 no answer within --upstream-timeout, 400 and
 * 431 for bad requests, 401 for a protected service without a token. A failure ends only this
 * client's connection. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "relay/http.h"

#include <uv.h>

#include "base/alloc.h"
#include "base/cidr.h"
#include "base/log.h"
#include "base/str.h"
#include "proto/hparse.h"
#include "relay/auth.h"
#include "relay/conn.h"
#include "relay/registry.h"
#include "relay/relay.h"

#define PX_IN_MAX (64u * 1024u)                      /* client bytes read ahead */
#define PX_OUT_MAX (UP_MUX_MAX_WINDOW + 64u * 1024u) /* bytes for the client: window + heads */
#define PX_RETRY_AFTER_S 5                           /* 503: try again in this many seconds */
#define PX_COOKIE "underpass_token"                  /* cookie and query parameter name */

enum px_timer { PXT_NONE, PXT_UPSTREAM, PXT_IDLE };

static void px_pump(struct hconn *c);
static void px_want(struct hconn *c, bool kick);

/* ---- small helpers ---- */

static bool px_timer_running(const struct hconn *c)
{
    return c->px.timer_on;
}

static void px_timer_stop(struct hconn *c)
{
    if (c->px.timer_on) {
        uv_timer_stop(&c->px.timer);
        c->px.timer_on = false;
    }
}

static void px_timeout(uv_timer_t *t);

static void px_timer_start(struct hconn *c, enum px_timer kind, uint64_t ms)
{
    px_timer_stop(c);
    if (ms == 0) {
        return;
    }
    c->px.timer.data = c;
    c->px.timer_kind = (uint8_t)kind;
    c->px.timer_on = true;
    uv_timer_start(&c->px.timer, px_timeout, ms, 0);
}

/* The address part of "IP:PORT" / "[v6]:PORT" as stored in hconn.peer / client. */
static void ip_only(const char *hostport, char *out, size_t cap)
{
    const char *s = hostport;
    size_t n = strlen(s);
    if (n && s[0] == '[') {
        const char *e = memchr(s, ']', n);
        n = e ? (size_t)(e - s - 1) : n - 1;
        s++;
    } else {
        const char *colon = strchr(s, ':');
        if (colon && !strchr(colon + 1, ':')) {
            n = (size_t)(colon - s);
        }
    }
    snprintf(out, cap, "%.*s", (int)n, s);
}

/* ---- routing ---- */

/* Host header without port, lowercase, no trailing dot. False when absent or too long. */
static bool req_host(const struct up_h1_msg *m, char *out, size_t cap)
{
    const struct up_h1_header *h = up_h1_find(m, "host");
    return h && up_hparse_host(h->value, h->value_len, out, cap);
}

/* The relay's own endpoints (front.c, wsb.c, pair.c, stats.c). */
static bool own_path(const char *p, size_t n)
{
    static const char *const exact[] = {"/v1/agent", "/v1/connect", "/healthz", "/stats",
                                        "/api/pairings"};
    static const char *const prefix[] = {"/s/", "/pair/"};
    for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++) {
        if (n == strlen(exact[i]) && memcmp(p, exact[i], n) == 0) {
            return true;
        }
    }
    for (size_t i = 0; i < sizeof prefix / sizeof prefix[0]; i++) {
        if (n >= strlen(prefix[i]) && memcmp(p, prefix[i], strlen(prefix[i])) == 0) {
            return true;
        }
    }
    return false;
}

/* The service a request goes to, by --route (host and longest path prefix; a route naming a
 * host beats one that does not) and then --domain ("NAME.DOMAIN"). */
static bool px_route(const struct hconn *c, const struct up_h1_msg *m, char svc[64])
{
    const struct up_relay_cfg *cfg = c->relay->cfg;
    char host[256];
    bool have_host = req_host(m, host, sizeof host);
    const char *q = memchr(m->target, '?', m->target_len);
    size_t plen = q ? (size_t)(q - m->target) : m->target_len;
    const struct up_hparse_route *best = NULL;
    size_t best_score = 0;
    for (size_t i = 0; i < cfg->n_routes; i++) {
        const struct up_hparse_route *rt = &cfg->routes[i];
        if (rt->host[0] && (!have_host || strcmp(rt->host, host) != 0)) {
            continue;
        }
        size_t pl = strlen(rt->prefix);
        if (pl) {
            if (plen < pl || memcmp(m->target, rt->prefix, pl) != 0) {
                continue;
            }
            if (plen > pl && rt->prefix[pl - 1] != '/' && m->target[pl] != '/') {
                continue; /* "/api" matches "/api" and "/api/x", not "/apix" */
            }
        }
        size_t score = (rt->host[0] ? 100000u : 1u) + pl;
        if (score > best_score) {
            best = rt;
            best_score = score;
        }
    }
    if (best && !best->host[0] && own_path(m->target, plen)) {
        best = NULL; /* a route for any host does not take the relay's own endpoints */
    }
    if (best) {
        snprintf(svc, 64, "%s", best->service);
        return true;
    }
    if (cfg->domain && cfg->domain[0] && have_host) {
        size_t hl = strlen(host), dl = strlen(cfg->domain);
        if (hl > dl + 1 && host[hl - dl - 1] == '.' && strcmp(host + hl - dl, cfg->domain) == 0) {
            size_t ll = hl - dl - 1;
            if (ll <= UP_TOKEN_MAX_NAME && !memchr(host, '.', ll) &&
                up_token_valid_service_name(host, ll)) {
                memcpy(svc, host, ll);
                svc[ll] = '\0';
                return true;
            }
        }
    }
    return false;
}

/* ---- authentication for --protect ---- */

static bool token_ok(struct hconn *c, const char *tok, size_t len, const char *svc)
{
    struct up_token_claims cl;
    const char *reason = NULL;
    if (relay_verify(c->relay, tok, len, &cl, &reason) < 0) {
        UP_LOGD("token for http service '%s' refused: %s", svc, reason ? reason : "invalid");
        return false;
    }
    return cl.role == UP_ROLE_CLIENT && up_token_allows(&cl, svc, strlen(svc));
}

/* The value of cookie name in the request's Cookie headers. */
static const char *find_cookie(const struct up_h1_msg *m, const char *name, size_t *vlen)
{
    for (size_t i = 0; i < m->n_headers; i++) {
        const struct up_h1_header *h = &m->headers[i];
        if (!up_str_ieq(h->name, h->name_len, "cookie")) {
            continue;
        }
        const char *v = up_hparse_cookie(h->value, h->value_len, name, vlen);
        if (v) {
            return v;
        }
    }
    return NULL;
}

/* Answer a request that carries ?underpass_token=T: set the cookie and send the browser to the
 * same URL without the token (so it is neither bookmarked nor sent on). */
static void set_cookie_redirect(struct hconn *c, const struct up_h1_msg *m, const char *tok,
                                size_t tlen)
{
    char loc[2048], extra[4096 + 256];
    const char *q = memchr(m->target, '?', m->target_len);
    size_t plen = (size_t)(q - m->target);
    size_t o = 0;
    o += (size_t)snprintf(loc, sizeof loc, "%.*s", (int)(plen < 1024 ? plen : 1024), m->target);
    /* Keep the other parameters. */
    const char *p = q + 1, *end = m->target + m->target_len;
    char sep = '?';
    while (p < end && o < sizeof loc - 1) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *pe = amp ? amp : end;
        size_t l = (size_t)(pe - p);
        if (!(l > sizeof PX_COOKIE && memcmp(p, PX_COOKIE "=", sizeof PX_COOKIE) == 0) && l) {
            int k = snprintf(loc + o, sizeof loc - o, "%c%.*s", sep, (int)l, p);
            if (k < 0 || (size_t)k >= sizeof loc - o) {
                break;
            }
            o += (size_t)k;
            sep = '&';
        }
        p = pe + 1;
    }
    bool https = c->relay->tls || strcmp(c->proto, "https") == 0;
    snprintf(extra, sizeof extra,
             "Location: %s\r\nSet-Cookie: " PX_COOKIE "=%.*s; Path=/; HttpOnly; SameSite=Lax%s\r\n",
             loc, (int)tlen, tok, https ? "; Secure" : "");
    hc_respond(c, 302, "Found", "token accepted: cookie set\n", "text/plain; charset=utf-8", extra);
}

enum { AUTH_OK, AUTH_STRIP, AUTH_DENY, AUTH_COOKIE };

/* A protected service wants a client token allowing it: Authorization: Bearer (AUTH_STRIP: it
 * is removed before the request goes on), the cookie (AUTH_OK), or ?underpass_token=
 * (AUTH_COOKIE: *tok is to be set as the cookie). */
static int px_auth(struct hconn *c, const struct up_h1_msg *m, const char *svc, const char **tok,
                   size_t *tlen)
{
    const char *t = NULL;
    size_t tl = 0;
    if (relay_bearer(m, &t, &tl) && token_ok(c, t, tl, svc)) {
        return AUTH_STRIP;
    }
    size_t vl = 0;
    const char *v = find_cookie(m, PX_COOKIE, &vl);
    if (v && token_ok(c, v, vl, svc)) {
        return AUTH_OK;
    }
    const char *q = memchr(m->target, '?', m->target_len);
    if (q) {
        const char *p = q + 1, *end = m->target + m->target_len;
        while ((v = up_hparse_query_next(&p, end, PX_COOKIE, &vl)) != NULL) {
            if (vl && token_ok(c, v, vl, svc)) {
                *tok = v;
                *tlen = vl;
                return AUTH_COOKIE;
            }
        }
    }
    c->relay->n.rejected++;
    return AUTH_DENY;
}

/* ---- the forwarded head ---- */

static bool is_forwarding_header(const struct up_relay_cfg *cfg, const struct up_h1_header *h)
{
    return up_str_ieq(h->name, h->name_len, cfg->xff_header) ||
           up_str_ieq(h->name, h->name_len, cfg->real_ip_header) ||
           up_str_ieq(h->name, h->name_len, "x-forwarded-proto") ||
           up_str_ieq(h->name, h->name_len, "x-forwarded-host");
}

static int put(struct up_buf *b, const char *p, size_t n)
{
    return up_buf_append(b, p, n, UP_H1_DEFAULT_MAX_HEAD * 4);
}

static int putf(struct up_buf *b, const char *name, const char *v1, size_t l1, const char *v2)
{
    if (put(b, name, strlen(name)) < 0 || put(b, ": ", 2) < 0 || put(b, v1, l1) < 0 ||
        (v2 && put(b, v2, strlen(v2)) < 0) || put(b, "\r\n", 2) < 0) {
        return -1;
    }
    return 0;
}

/* The request head as the backend gets it: request line and headers as the client sent them,
 * minus the forwarding headers (unless from a trusted proxy, whose values are extended) and
 * minus our bearer token, plus X-Forwarded-For (appended to), X-Forwarded-Proto,
 * X-Forwarded-Host and X-Real-IP. */
static int px_rewrite(struct hconn *c, const struct up_h1_msg *m, const uint8_t *raw,
                      bool strip_auth, struct up_buf *out)
{
    const struct up_relay_cfg *cfg = c->relay->cfg;
    bool trusted = cfg->trusted_proxies.n && up_cidr_list_match(&cfg->trusted_proxies, c->peer_ip);
    const uint8_t *nl = memchr(raw, '\n', m->head_len);
    if (!nl || put(out, (const char *)raw, (size_t)(nl - raw + 1)) < 0) {
        return -1;
    }
    const struct up_h1_header *xfh = NULL;
    for (size_t i = 0; i < m->n_headers; i++) {
        const struct up_h1_header *h = &m->headers[i];
        if (is_forwarding_header(cfg, h)) {
            if (trusted && up_str_ieq(h->name, h->name_len, "x-forwarded-host")) {
                xfh = h;
            }
            continue;
        }
        if (strip_auth && up_str_ieq(h->name, h->name_len, "authorization")) {
            continue;
        }
        if (put(out, h->name, h->name_len) < 0 || put(out, ": ", 2) < 0 ||
            put(out, h->value, h->value_len) < 0 || put(out, "\r\n", 2) < 0) {
            return -1;
        }
    }
    char peer_ip[64], client_ip[64];
    up_ip_format(c->peer_ip, peer_ip, sizeof peer_ip);
    ip_only(c->client, client_ip, sizeof client_ip);
    /* X-Forwarded-For: what a trusted proxy sent, in order, then the address we saw. */
    if (put(out, cfg->xff_header, strlen(cfg->xff_header)) < 0 || put(out, ": ", 2) < 0) {
        return -1;
    }
    if (trusted) {
        for (size_t i = 0; i < m->n_headers; i++) {
            const struct up_h1_header *h = &m->headers[i];
            if (up_str_ieq(h->name, h->name_len, cfg->xff_header) && h->value_len &&
                (put(out, h->value, h->value_len) < 0 || put(out, ", ", 2) < 0)) {
                return -1;
            }
        }
    }
    if (put(out, peer_ip, strlen(peer_ip)) < 0 || put(out, "\r\n", 2) < 0) {
        return -1;
    }
    const char *proto = trusted && c->proto[0] ? c->proto : (c->relay->tls ? "https" : "http");
    const struct up_h1_header *host = xfh ? xfh : up_h1_find(m, "host");
    if (putf(out, "X-Forwarded-Proto", proto, strlen(proto), NULL) < 0 ||
        (host && putf(out, "X-Forwarded-Host", host->value, host->value_len, NULL) < 0) ||
        putf(out, cfg->real_ip_header, client_ip, strlen(client_ip), NULL) < 0 ||
        put(out, "\r\n", 2) < 0) {
        return -1;
    }
    return 0;
}

/* ---- leaving ---- */

static void px_leave_link(struct hconn *c, uint32_t code, const char *why)
{
    struct hproxy *px = &c->px;
    if (px->on_link) {
        up_link_reset(&px->st, code, why);
        px->on_link = false;
        c->relay->n.streams_active--;
    }
}

/* The connection is closing: leave the link, stop the timer (counted in open_handles). */
static void px_close(struct hconn *c)
{
    struct hproxy *px = &c->px;
    if (!c->px_on) {
        return;
    }
    c->px_on = false;
    px_leave_link(c, UP_MUX_C_CANCEL, "client connection closed");
    px_timer_stop(c);
    uv_close((uv_handle_t *)&px->timer, hc_closed);
    up_buf_fini(&px->head);
    up_buf_fini(&px->rhead);
}

/* End the proxy with an answer of our own (when no byte of the current response went out) or
 * by closing the connection (when one did: the client sees a truncated response). */
static void px_fail(struct hconn *c, int status, const char *text, const char *why)
{
    struct hproxy *px = &c->px;
    UP_LOGI("http %s for '%s' from %s: %d %s", px->qn ? "request" : "connection", px->service,
            c->client, status, why);
    px_leave_link(c, UP_MUX_C_CANCEL, why);
    bool answer = !px->rs_sent;
    px_close(c);
    if (!answer) {
        hc_close(c, false);
        return;
    }
    if (status == 503) {
        char body[300], extra[64];
        snprintf(body, sizeof body, "%s\n", why);
        snprintf(extra, sizeof extra, "Retry-After: %d\r\n", PX_RETRY_AFTER_S);
        hc_respond(c, status, text, body, "text/plain; charset=utf-8", extra);
        return;
    }
    hc_error(c, status, text, why);
}

/* Nothing more to say: write what is left for the client, then close gracefully. */
static void px_finish(struct hconn *c)
{
    px_close(c);
    c->state = HC_WRITE;
    c->upgrade_after = false;
    hc_flush(c);
}

/* ---- client → backend ---- */

static void px_timeout(uv_timer_t *t)
{
    struct hconn *c = t->data;
    struct hproxy *px = &c->px;
    px->timer_on = false;
    if (px->timer_kind == PXT_UPSTREAM) {
        char why[160];
        snprintf(why, sizeof why, "service '%s' did not answer within %gs", px->service,
                 (double)c->relay->cfg->upstream_timeout_ms / 1000.0);
        px_fail(c, 504, "Gateway Timeout", why);
        return;
    }
    UP_LOGD("http connection from %s idle: closed", c->client);
    px_finish(c);
}

/* Written to the client: directly when nothing is queued, else queued. Credit for stream
 * bytes returns as they reach the socket. */
static int px_out(struct hconn *c, const uint8_t *p, size_t n)
{
    struct hproxy *px = &c->px;
    size_t k = 0;
    if (up_buf_len(&c->out) == 0) {
        while (k < n) {
            size_t w = 0;
            int rv = up_sock_write(c->sock, p + k, n - k, &w);
            if (rv == UP_EAGAIN) {
                break;
            }
            if (rv < 0) {
                return -1;
            }
            k += w;
        }
        if (k && px->on_link) {
            up_link_consumed(&px->st, k);
        }
    }
    if (k < n) {
        if (up_buf_append(&c->out, p + k, n - k, PX_OUT_MAX) < 0) {
            return -1;
        }
        px->owed += n - k;
    }
    return 0;
}

static bool px_flush_out(struct hconn *c)
{
    struct hproxy *px = &c->px;
    return hc_write_owed(c, &px->owed, px->on_link ? &px->st : NULL);
}

static void px_want(struct hconn *c, bool kick)
{
    struct hproxy *px = &c->px;
    if (!c->px_on || c->closing || c->state != HC_PROXY) {
        return;
    }
    bool room = up_buf_len(&c->in) < PX_IN_MAX;
    bool r = !px->client_eof && room && px->rq != PXQ_DONE;
    if (r && up_sock_has_pending(c->sock)) {
        kick = true; /* TLS holds decrypted bytes the poll cannot see */
    }
    /* A kick is a one-shot "call back soon" (the socket is almost always writable): it stays
     * until the callback runs, whatever is asked in between. */
    px->kicked = px->kicked || kick;
    up_sock_want(c->sock, r, px->kicked || up_buf_len(&c->out) > 0);
}

/* The stream's pull: the rewritten head, then body (or tunnel) bytes from the client. */
static size_t px_pull(struct up_lstream *st, uint8_t *dst, size_t max, bool *fin)
{
    struct hconn *c = st->ud;
    struct hproxy *px = &c->px;
    size_t n = 0;
    *fin = false;
    size_t hl = up_buf_len(&px->head);
    if (hl) {
        n = hl < max ? hl : max;
        memcpy(dst, up_buf_rptr(&px->head), n);
        up_buf_skip(&px->head, n);
        if (up_buf_len(&px->head)) {
            return n;
        }
        up_buf_release_if_empty(&px->head);
    }
    size_t avail = up_buf_len(&c->in);
    if (avail > max - n) {
        avail = max - n;
    }
    if (px->rq == PXQ_BODY) {
        size_t used = 0;
        bool done = false;
        int rv = up_h1body_feed(&px->rqb, up_buf_rptr(&c->in), avail, &used, &done);
        if (rv < 0) {
            px->bad_body = true;
            px_want(c, true);
            return n;
        }
        if (used) {
            memcpy(dst + n, up_buf_rptr(&c->in), used);
            up_buf_skip(&c->in, used);
            n += used;
        }
        if (done) {
            px->rq = (px->rq_flags & PXR_UPGRADE) ? PXQ_UPGRADE
                     : px->req_close              ? PXQ_DONE
                                                  : PXQ_HEAD;
            if (!px_timer_running(c) && px->rs == PXS_HEAD && !px->rs_sent) {
                px_timer_start(c, PXT_UPSTREAM, c->relay->cfg->upstream_timeout_ms);
            }
            px_want(c, true); /* the next head may be waiting in c->in */
        }
    } else if (px->rq == PXQ_TUNNEL && avail) {
        memcpy(dst + n, up_buf_rptr(&c->in), avail);
        up_buf_skip(&c->in, avail);
        n += avail;
    }
    if (px->fin_out && up_buf_len(&px->head) == 0 && up_buf_len(&c->in) == 0 &&
        px->rq != PXQ_BODY) {
        *fin = true;
    }
    px_want(c, false);
    return n;
}

static void px_on_accept(struct up_lstream *st)
{
    struct hconn *c = st->ud;
    c->px.accepted = true;
    up_link_ready(st);
}

/* ---- backend → client ---- */

static void px_response_done(struct hconn *c)
{
    struct hproxy *px = &c->px;
    px->qh = (px->qh + 1) % PX_MAX_PIPELINE;
    px->qn--;
    px->rs = PXS_HEAD;
    px->rs_sent = false;
    if (px->close_after_rs) {
        px->close_after = true;
    }
    px_timer_stop(c);
    if (px->qn && (px->rq != PXQ_BODY || px->qn > 1)) {
        px_timer_start(c, PXT_UPSTREAM, c->relay->cfg->upstream_timeout_ms);
    }
    px_want(c, true); /* a head that waited for the answers may go now */
}

static void px_rx(struct hconn *c, struct up_lstream *st, const uint8_t *p, size_t n)
{
    struct hproxy *px = &c->px;
    if (px->timer_on && px->timer_kind == PXT_UPSTREAM) {
        px_timer_stop(c);
    }
    while (n) {
        if (px->close_after || px->qn == 0) {
            if (px->rs != PXS_TUNNEL) {
                /* Bytes after the last answer: nobody asked for them. */
                up_link_consumed(st, n);
                if (!px->close_after) {
                    px_fail(c, 502, "Bad Gateway", "the backend sent bytes nobody asked for");
                }
                return;
            }
        }
        if (px->rs == PXS_TUNNEL) {
            if (px_out(c, p, n) < 0) {
                hc_close(c, false);
            }
            return;
        }
        if (px->rs == PXS_BODY) {
            size_t used = 0;
            bool done = false;
            if (up_h1body_feed(&px->rsb, p, n, &used, &done) < 0) {
                up_link_consumed(st, n);
                px_fail(c, 502, "Bad Gateway", px->rsb.err_reason);
                return;
            }
            if (px_out(c, p, used) < 0) {
                hc_close(c, false);
                return;
            }
            p += used;
            n -= used;
            if (done) {
                px_response_done(c);
            }
            continue;
        }
        /* PXS_HEAD: collect until the head is complete. */
        /* Only what can still be head: the bytes after it (a body) stay in p. */
        size_t before = up_buf_len(&px->rhead);
        size_t take = c->relay->cfg->max_head - before;
        if (take > n) {
            take = n;
        }
        if (up_buf_append(&px->rhead, p, take, c->relay->cfg->max_head) < 0) {
            up_link_consumed(st, n);
            px_fail(c, 502, "Bad Gateway", "the backend's response head is too large");
            return;
        }
        struct up_h1_header hdrs[HCONN_MAX_HEADERS];
        struct up_h1_msg m;
        int rv = up_h1_parse_response(up_buf_rptr(&px->rhead), up_buf_len(&px->rhead), &px->rscan,
                                      &m, hdrs, HCONN_MAX_HEADERS, c->relay->cfg->max_head);
        if (rv == UP_EAGAIN) {
            return; /* credit for these bytes returns when the head is written */
        }
        if (rv == UP_ELIMIT) {
            up_link_consumed(st, n);
            px_fail(c, 502, "Bad Gateway", "the backend's response head is too large");
            return;
        }
        if (rv < 0) {
            up_link_consumed(st, n);
            char why[160];
            snprintf(why, sizeof why, "the backend's response is not HTTP: %s",
                     m.err_reason ? m.err_reason : "malformed");
            px_fail(c, 502, "Bad Gateway", why);
            return;
        }
        size_t from_this = m.head_len - before; /* head bytes that came in this call */
        uint8_t flags = px->q[px->qh];
        bool ok = true;
        if (m.status == 101) {
            if (!(flags & PXR_UPGRADE)) {
                up_link_consumed(st, n);
                px_fail(c, 502, "Bad Gateway", "the backend switched protocols unasked");
                return;
            }
            px->rs = PXS_TUNNEL;
            px->rq = PXQ_TUNNEL;
            px->qn = 0;
            ok = px_out(c, up_buf_rptr(&px->rhead), m.head_len) == 0;
            px_want(c, true);
        } else if (m.status < 200) {
            ok = px_out(c, up_buf_rptr(&px->rhead), m.head_len) == 0; /* 100, 103: interim */
        } else {
            uint64_t len = 0;
            enum up_h1b_kind k =
                up_h1body_response(&m, flags & PXR_HEAD, flags & PXR_CONNECT, &len);
            up_h1body_init(&px->rsb, k, len);
            if (m.conn_close || k == UP_H1B_CLOSE) {
                px->close_after_rs = true;
            }
            if (px->rq == PXQ_UPGRADE) {
                px->rq = px->req_close ? PXQ_DONE : PXQ_HEAD; /* refused: go on as HTTP */
                px_want(c, true);
            }
            px->rs = PXS_BODY;
            px->rs_sent = true;
            ok = px_out(c, up_buf_rptr(&px->rhead), m.head_len) == 0;
        }
        px->rs_sent = true;
        up_buf_skip(&px->rhead, up_buf_len(&px->rhead));
        up_buf_release_if_empty(&px->rhead);
        px->rscan = 0;
        if (!ok) {
            hc_close(c, false);
            return;
        }
        p += from_this;
        n -= from_this;
        if (px->rs == PXS_BODY) {
            /* A body that is empty (HEAD, 204, 304, Content-Length: 0) is done already. */
            size_t used = 0;
            bool done = false;
            if (up_h1body_feed(&px->rsb, p, 0, &used, &done) == 0 && done) {
                px_response_done(c);
            }
        }
    }
}

static void px_on_data(struct up_lstream *st, const uint8_t *p, size_t n)
{
    struct hconn *c = st->ud;
    if (c->closing || !c->px_on) {
        return;
    }
    px_rx(c, st, p, n);
    px_want(c, false); /* what did not fit in the socket waits in c->out: watch for room */
}

static void px_on_fin(struct up_lstream *st)
{
    struct hconn *c = st->ud;
    struct hproxy *px = &c->px;
    px->fin_in = true;
    if (c->closing || !c->px_on) {
        return;
    }
    if (px->rs == PXS_BODY && px->rsb.kind == UP_H1B_CLOSE) {
        px_response_done(c);
        px->close_after = true;
    } else if (px->rs == PXS_TUNNEL) {
        /* The backend is done sending: shut our write side once the client has it all, and
         * keep carrying the client's bytes until it finishes too. */
        if (px->client_eof) {
            px->close_after = true;
        }
    } else if (px->rs == PXS_BODY || up_buf_len(&px->rhead) || px->qn) {
        px_fail(c, 502, "Bad Gateway", "the backend closed the connection before answering");
        return;
    } else {
        /* An idle keep-alive connection the backend closed: finish the stream too; the
         * client's next request opens a new one. */
        px->fin_out = true;
        up_link_ready(st);
    }
    px_want(c, true);
}

static void px_on_close(struct up_lstream *st, uint32_t code, const char *reason)
{
    struct hconn *c = st->ud;
    struct hproxy *px = &c->px;
    px->on_link = false;
    c->relay->n.streams_active--;
    if (c->closing || !c->px_on) {
        return;
    }
    if (code == UP_MUX_C_NONE) {
        if (px->rs == PXS_TUNNEL || px->client_eof) {
            px->close_after = true;
        }
        px_want(c, true);
        return;
    }
    char why[200];
    snprintf(why, sizeof why, "%s%s%s", up_mux_code_name(code), reason && *reason ? ": " : "",
             reason ? reason : "");
    if (!px->accepted) {
        switch (code) {
        case UP_MUX_C_NO_SERVICE:
        case UP_MUX_C_SHUTDOWN:
        case UP_MUX_C_LIMIT:
            px_fail(c, 503, "Service Unavailable", why);
            return;
        case UP_MUX_C_TIMEOUT:
            px_fail(c, 504, "Gateway Timeout", why);
            return;
        default:
            px_fail(c, 502, "Bad Gateway", why);
            return;
        }
    }
    if (px->qn || px->rs != PXS_HEAD) {
        px_fail(c, 502, "Bad Gateway", why);
        return;
    }
    px_want(c, true); /* idle: the next request opens a new stream */
}

static const struct up_lstream_ops px_ops = {
    .on_accept = px_on_accept,
    .on_data = px_on_data,
    .on_fin = px_on_fin,
    .on_close = px_on_close,
    .pull = px_pull,
};

/* ---- requests ---- */

/* The agent link for service svc, or NULL after answering 404/503. */
static struct rlink *px_agent(struct hconn *c, const char *svc, uint8_t *flags)
{
    struct up_relay *r = c->relay;
    char why[200];
    snprintf(c->px.service, sizeof c->px.service, "%s", svc);
    if (r->shutting) {
        px_fail(c, 503, "Service Unavailable", "relay is shutting down");
        return NULL;
    }
    struct rlink *agent = relay_find_agent(r, svc, strlen(svc), flags);
    if (!agent) {
        if (relay_service_seen(r, svc, strlen(svc))) {
            snprintf(why, sizeof why, "no agent online for service '%s'", svc);
            px_fail(c, 503, "Service Unavailable", why);
        } else {
            snprintf(why, sizeof why, "no such service '%s'", svc);
            px_fail(c, 404, "Not Found", why);
        }
        return NULL;
    }
    if (!(*flags & RS_HTTP)) {
        snprintf(why, sizeof why, "service '%s' is not an http service", svc);
        px_fail(c, 404, "Not Found", why);
        return NULL;
    }
    return agent;
}

/* Open the stream to svc on agent. Returns true, or false after answering an error. */
static bool px_open(struct hconn *c, struct rlink *agent, const char *svc, uint8_t flags)
{
    struct up_relay *r = c->relay;
    struct hproxy *px = &c->px;
    char m[320];
    int ml = snprintf(m, sizeof m, "client=%s\nrelay=%s\nsub=\n", c->client, c->local);
    px->accepted = false;
    px->fin_in = px->fin_out = false;
    px->rs = PXS_HEAD;
    px->svc_flags = flags;
    int rv = up_link_open(agent->link, &px->st, svc, (const uint8_t *)m,
                          ml > 0 && (size_t)ml < sizeof m ? (size_t)ml : 0, &px_ops, c);
    if (rv < 0) {
        px_fail(c, 503, "Service Unavailable",
                rv == UP_ELIMIT ? "the agent's link is full" : "cannot open a stream to the agent");
        return false;
    }
    px->on_link = true;
    r->n.streams_total++;
    r->n.streams_active++;
    return true;
}

enum { PX_GO, PX_WAIT, PX_ENDED };

/* A complete request head m at the start of c->in, routed to svc. */
static int px_request(struct hconn *c, const struct up_h1_msg *m, const char *svc)
{
    struct hproxy *px = &c->px;
    bool same = px->on_link && strcmp(px->service, svc) == 0 && !px->fin_in && !px->fin_out;
    if (!same) {
        if (px->qn || up_buf_len(&px->head)) {
            return PX_WAIT; /* answers for the current service first */
        }
        px_leave_link(c, UP_MUX_C_CANCEL, "client moved to another service");
    }
    if (px->qn == PX_MAX_PIPELINE) {
        return PX_WAIT;
    }
    if (m->method_len == 7 && memcmp(m->method, "CONNECT", 7) == 0) {
        if (px->qn) {
            return PX_WAIT;
        }
        px_fail(c, 405, "Method Not Allowed", "CONNECT is not forwarded to http services");
        return PX_ENDED;
    }
    uint8_t flags = px->svc_flags;
    struct rlink *agent = NULL;
    if (!same && !(agent = px_agent(c, svc, &flags))) {
        return PX_ENDED;
    }
    int auth = AUTH_OK;
    if (flags & RS_PROTECT) {
        if (px->qn) {
            return PX_WAIT; /* an answer of ours must not overtake the backend's */
        }
        const char *tok = NULL;
        size_t tlen = 0;
        auth = px_auth(c, m, svc, &tok, &tlen);
        if (auth == AUTH_DENY || auth == AUTH_COOKIE) {
            px_close(c);
            if (auth == AUTH_COOKIE) {
                set_cookie_redirect(c, m, tok, tlen);
            } else {
                char why[160];
                snprintf(why, sizeof why,
                         "service '%s' needs a client token (Authorization: Bearer, or "
                         "?" PX_COOKIE "=)",
                         svc);
                hc_error(c, 401, "Unauthorized", why);
            }
            return PX_ENDED;
        }
    }
    if (!same && !px_open(c, agent, svc, flags)) {
        return PX_ENDED;
    }
    if (px_rewrite(c, m, up_buf_rptr(&c->in), auth == AUTH_STRIP, &px->head) < 0) {
        px_fail(c, 431, "Request Header Fields Too Large", "request head too large to forward");
        return PX_ENDED;
    }
    uint64_t len = 0;
    enum up_h1b_kind k = up_h1body_request(m, &len);
    up_h1body_init(&px->rqb, k, len);
    uint8_t rf = 0;
    if (m->method_len == 4 && memcmp(m->method, "HEAD", 4) == 0) {
        rf |= PXR_HEAD;
    }
    if (m->conn_upgrade && up_h1_find(m, "upgrade")) {
        rf |= PXR_UPGRADE;
    }
    px->q[(px->qh + px->qn) % PX_MAX_PIPELINE] = rf;
    px->qn++;
    px->req_close = m->conn_close;
    px->rq = PXQ_BODY;
    up_buf_skip(&c->in, m->head_len);
    c->scan = 0;
    c->relay->n.http_requests++;
    c->relay->n.http_proxied++;
    if (px->accepted) {
        up_link_ready(&px->st);
    }
    return PX_GO;
}

/* Parse and route the heads waiting in c->in, as far as the state allows. */
static void px_pump(struct hconn *c)
{
    struct hproxy *px = &c->px;
    struct up_relay *r = c->relay;
    for (int round = 0; round < PX_MAX_PIPELINE + 1 && c->px_on && !c->closing; round++) {
        if (px->bad_body) {
            px_fail(c, 400, "Bad Request",
                    px->rqb.err_reason ? px->rqb.err_reason : "malformed request body");
            return;
        }
        if (px->close_after) {
            if (up_buf_len(&c->out) == 0) {
                px_finish(c);
            }
            return;
        }
        if (px->rq == PXQ_DONE) {
            if (px->qn == 0 && up_buf_len(&c->out) == 0) {
                px_finish(c);
            }
            return;
        }
        if (px->rq == PXQ_TUNNEL && px->fin_in && !px->shut_client && up_buf_len(&c->out) == 0) {
            px->shut_client = true;
            up_sock_shutdown_write(c->sock);
        }
        if (px->rq == PXQ_BODY || px->rq == PXQ_TUNNEL) {
            if (px->accepted && (up_buf_len(&c->in) || up_buf_len(&px->head) || px->fin_out)) {
                up_link_ready(&px->st);
            }
            if (px->client_eof && px->rq == PXQ_BODY && up_buf_len(&c->in) == 0) {
                px_fail(c, 400, "Bad Request", "client closed the connection inside a body");
            }
            return;
        }
        if (px->rq != PXQ_HEAD) {
            return;
        }
        if (up_buf_len(&c->in) == 0) {
            if (px->client_eof) {
                px->rq = PXQ_DONE;
                if (!px->on_link || (px->qn == 0 && !px->fin_in)) {
                    px_finish(c);
                    return;
                }
                px->fin_out = true; /* let the answers in flight finish */
                up_link_ready(&px->st);
            } else if (px->qn == 0 && !px_timer_running(c)) {
                px_timer_start(c, PXT_IDLE, r->cfg->keepalive_timeout_ms);
            }
            return;
        }
        if (px->timer_on && px->timer_kind == PXT_IDLE) {
            px_timer_stop(c);
        }
        struct up_h1_header hdrs[HCONN_MAX_HEADERS];
        struct up_h1_msg m;
        int rv = up_h1_parse_request(up_buf_rptr(&c->in), up_buf_len(&c->in), &c->scan, &m, hdrs,
                                     HCONN_MAX_HEADERS, r->cfg->max_head);
        if (rv == UP_EAGAIN) {
            if (up_buf_len(&c->in) >= PX_IN_MAX) {
                px_fail(c, 431, "Request Header Fields Too Large", "request head too large");
            }
            return;
        }
        if (rv < 0) {
            if (px->qn) {
                return; /* answer in order, after the backend's */
            }
            int st = rv == UP_ELIMIT ? 431 : m.err_status ? m.err_status : 400;
            px_fail(c, st,
                    st == 431   ? "Request Header Fields Too Large"
                    : st == 505 ? "HTTP Version Not Supported"
                                : "Bad Request",
                    m.err_reason ? m.err_reason : "malformed request");
            return;
        }
        char svc[64];
        if (!px_route(c, &m, svc)) {
            /* Not for a service (say /healthz on the relay's own name): the relay answers,
             * once the backend's answers are out. */
            if (px->qn || up_buf_len(&px->head)) {
                return;
            }
            px_close(c);
            c->state = HC_HEAD;
            c->on_request(c, &m);
            return;
        }
        if (px_request(c, &m, svc) != PX_GO) {
            return;
        }
    }
}

void px_sock_cb(struct hconn *c, bool readable, bool writable)
{
    struct hproxy *px = &c->px;
    (void)writable;
    px->kicked = false;
    if (up_buf_len(&c->out) && !px_flush_out(c)) {
        return;
    }
    if (readable || up_sock_has_pending(c->sock)) {
        while (!px->client_eof && up_buf_len(&c->in) < PX_IN_MAX) {
            if (up_buf_reserve(&c->in, 16384, PX_IN_MAX + 16384) < 0) {
                hc_close(c, false);
                return;
            }
            size_t n = 0;
            int rv = up_sock_read(c->sock, up_buf_wptr(&c->in), up_buf_room(&c->in), &n);
            if (rv == UP_EAGAIN) {
                break;
            }
            if (rv == UP_EOF) {
                px->client_eof = true;
                break;
            }
            if (rv < 0) {
                hc_close(c, false);
                return;
            }
            up_buf_commit(&c->in, n);
        }
        if (px->rq == PXQ_TUNNEL && px->client_eof) {
            px->fin_out = true;
        }
    }
    px_pump(c);
    if (c->px_on && !c->closing && c->state == HC_PROXY) {
        px_want(c, false);
    }
}

bool px_try(struct hconn *c, const struct up_h1_msg *m)
{
    char svc[64];
    if (!px_route(c, m, svc)) {
        return false;
    }
    struct hproxy *px = &c->px;
    memset(px, 0, sizeof *px);
    up_buf_init(&px->head);
    up_buf_init(&px->rhead);
    uv_timer_init(c->relay->loop, &px->timer);
    px->timer.data = c;
    c->open_handles++;
    c->px_on = true;
    c->on_close = px_close;
    c->state = HC_PROXY;
    uv_timer_stop(&c->timer); /* the head timeout: ours from now on */
    if (px_request(c, m, svc) == PX_GO) {
        px_want(c, false);
    }
    return true;
}
