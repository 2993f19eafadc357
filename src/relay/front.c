/* The front door (see front.h). */
#include "relay/front.h"

#include <netinet/in.h>
#include <stdio.h>
#include <openssl/ssl.h>
#include <string.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/log.h"
#include "base/str.h"
#include "net/addr.h"
#include "net/sock.h"
#include "net/tls.h"
#include "proto/fwd.h"
#include "proto/h1.h"
#include "proto/hparse.h"
#include "proto/token.h"
#include "proto/ws.h"
#include "relay/auth.h"
#include "relay/conn.h"
#include "relay/http.h"
#include "relay/pair.h"
#include "relay/registry.h"
#include "relay/relay.h"
#include "relay/stats.h"
#include "relay/wsb.h"

/* The 16-byte form of src/base/cidr.h (IPv4 as IPv4-mapped). */
static void sa_ip16(const struct sockaddr_storage *ss, uint8_t out[16])
{
    memset(out, 0, 16);
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &s4->sin_addr, 4);
    } else if (ss->ss_family == AF_INET6) {
        memcpy(out, &((const struct sockaddr_in6 *)ss)->sin6_addr, 16);
    }
}

static bool is_loopback(const uint8_t a[16])
{
    static const uint8_t v6_loopback[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    return (up_ip_is_v4(a) && a[12] == 127) || memcmp(a, v6_loopback, 16) == 0;
}

static void become_link(struct hconn *c)
{
    struct up_relay *r = c->relay;
    struct rlink *rl = c->pending;
    c->pending = NULL;
    int fd = c->sock->fd;
    struct ssl_st *ssl = c->sock->ssl;
    /* Bytes after the head (pipelined WS frames) belong to the link. */
    size_t left = up_buf_len(&c->in);
    uint8_t *copy = NULL;
    if (left) {
        copy = up_malloc(left);
        if (copy) {
            memcpy(copy, up_buf_rptr(&c->in), left);
        }
    }
    hc_close(c, true);
    if (!r->ll) { /* shut down meanwhile: hc_close of every connection makes this unreachable */
        SSL_free(ssl);
        close(fd);
        up_free(copy);
        up_free(rl);
        return;
    }
    rl->link =
        up_link_new(r->ll, fd, ssl, false, &r->cfg->link, r->link_ops, rl, copy, copy ? left : 0);
    up_free(copy);
    if (!rl->link) {
        up_free(rl);
        return;
    }
    relay_link_add(r, rl);
    r->n.links_total++;
    if (rl->role == RL_AGENT) {
        char list[512] = "";
        size_t o = 0;
        for (size_t i = 0; i < rl->n_services && o < sizeof list; i++) {
            int k = snprintf(list + o, sizeof list - o, "%s%s", i ? "," : "", rl->services[i]);
            if (k < 0) {
                break;
            }
            o += (size_t)k;
        }
        UP_LOGI("agent %s connected from %s serving %s", rl->claims.sub[0] ? rl->claims.sub : "-",
                rl->desc, list);
    } else {
        UP_LOGI("client %s connected from %s", rl->claims.sub[0] ? rl->claims.sub : "-", rl->desc);
    }
}

/* Register the agent's services from its query q[0..qlen) ("?services=a,b[&http=b]
 * [&protect=b]", up_hparse_services): every name valid and allowed by the token. */
static int parse_services(struct hconn *c, struct rlink *rl, const char *q, size_t qlen)
{
    struct up_hparse_services svcs;
    char why[160];
    int rv = up_hparse_services(q, qlen, &rl->claims, &svcs, why, sizeof why);
    if (rv < 0) {
        if (rv == UP_EAUTH) {
            hc_error(c, 403, "Forbidden", why);
        } else {
            hc_error(c, 400, "Bad Request", why);
        }
        return -1;
    }
    for (size_t i = 0; i < svcs.n; i++) {
        snprintf(rl->services[i], sizeof rl->services[i], "%s", svcs.names[i]);
        rl->svc_flags[i] = svcs.flags[i];
    }
    rl->n_services = svcs.n;
    for (size_t i = 0; i < rl->n_services; i++) {
        if ((rl->svc_flags[i] & RS_PROTECT) && !(rl->svc_flags[i] & RS_HTTP)) {
            snprintf(why, sizeof why,
                     "protect=%s: only http services are protected this way (a tcp service "
                     "always needs a client token)",
                     rl->services[i]);
            hc_error(c, 400, "Bad Request", why);
            return -1;
        }
        relay_service_note(c->relay, rl->services[i]);
    }
    return 0;
}

/* X-Forwarded-Proto's last element, if it is one we know; "" otherwise. */
static void forwarded_proto(struct hconn *c, const struct up_h1_msg *m)
{
    const struct up_h1_header *last = NULL;
    for (size_t i = 0; i < m->n_headers; i++) {
        if (up_str_ieq(m->headers[i].name, m->headers[i].name_len, "x-forwarded-proto")) {
            last = &m->headers[i];
        }
    }
    if (!last) {
        return;
    }
    const char *proto = up_hparse_forwarded_proto(last->value, last->value_len);
    if (proto) {
        snprintf(c->proto, sizeof c->proto, "%s", proto);
    } else {
        UP_LOGD("X-Forwarded-Proto from %s ignored: not http or https", c->peer);
    }
}

/* Who is calling. From a trusted front proxy (--trusted-proxy), X-Forwarded-For names the
 * client, walked from the right so entries a client wrote itself are never believed, and
 * X-Forwarded-Proto the scheme it used. From anyone else both headers are ignored: a client
 * cannot claim an address. The TCP peer stays the client when the proxy sent no usable
 * X-Forwarded-For. */
static void resolve_client(struct hconn *c, const struct up_h1_msg *m)
{
    const struct up_cidr_list *t = &c->relay->cfg->trusted_proxies;
    size_t n = 0, total = 0;
    for (size_t i = 0; i < m->n_headers; i++) {
        if (up_str_ieq(m->headers[i].name, m->headers[i].name_len, "x-forwarded-for")) {
            total += m->headers[i].value_len + (n ? 2 : 0);
            n++;
        }
    }
    if (t->n == 0 || !up_cidr_list_match(t, c->peer_ip)) {
        /* Some proxy forwarded this request: it is not a local one, whatever the peer. */
        if (n) {
            c->client_loopback = false;
        }
        return;
    }
    forwarded_proto(c, m);
    if (n == 0) {
        return;
    }
    /* Forwarded for someone, even if we cannot tell whom: not a local request. */
    c->client_loopback = false;
    /* Several header lines are one list, joined in order (RFC 9110 §5.3). */
    char *xff = up_malloc(total + 1);
    if (!xff) {
        UP_LOGD("X-Forwarded-For from %s ignored: out of memory", c->peer);
        return;
    }
    size_t o = 0;
    for (size_t i = 0; i < m->n_headers; i++) {
        const struct up_h1_header *h = &m->headers[i];
        if (up_str_ieq(h->name, h->name_len, "x-forwarded-for")) {
            if (o) {
                memcpy(xff + o, ", ", 2);
                o += 2;
            }
            memcpy(xff + o, h->value, h->value_len);
            o += h->value_len;
        }
    }
    uint8_t ip[16];
    int rv = up_fwd_xff_client(xff, o, t, ip);
    if (rv < 0) {
        UP_LOGD("X-Forwarded-For from trusted proxy %s is not a list of addresses: using the "
                "proxy's address (%.*s)",
                c->peer, (int)(o > 200 ? 200 : o), xff);
        up_free(xff);
        return;
    }
    up_free(xff);
    up_ip_format(ip, c->client, sizeof c->client);
    snprintf(c->via, sizeof c->via, "%s", c->peer);
    c->client_loopback = is_loopback(ip);
}

static void hc_on_request(struct hconn *c, const struct up_h1_msg *m)
{
    struct up_relay *r = c->relay;
    resolve_client(c, m);
    if (px_try(c, m)) {
        return;
    }
    const char *q = memchr(m->target, '?', m->target_len);
    size_t plen = q ? (size_t)(q - m->target) : m->target_len;
    char path[256];
    if (plen >= sizeof path) {
        hc_error(c, 404, "Not Found", "no such path");
        return;
    }
    memcpy(path, m->target, plen);
    path[plen] = '\0';
    bool get = m->method_len == 3 && memcmp(m->method, "GET", 3) == 0;
    bool head = m->method_len == 4 && memcmp(m->method, "HEAD", 4) == 0;
    if (strcmp(path, "/healthz") == 0) {
        if (!get && !head) {
            hc_error(c, 405, "Method Not Allowed", "use GET");
            return;
        }
        hc_respond(c, r->shutting ? 503 : 200, r->shutting ? "Service Unavailable" : "OK",
                   r->shutting ? "shutting down\n" : "ok\n", "text/plain", NULL);
        return;
    }
    if (strcmp(path, "/stats") == 0) {
        if (!c->client_loopback && !r->cfg->stats_public) {
            hc_error(c, 403, "Forbidden", "/stats is served to loopback only (--stats-public)");
            return;
        }
        stats_respond(c);
        return;
    }
    if (wsb_try(c, m, path)) {
        return;
    }
    if (strcmp(path, "/api/pairings") == 0) {
        pair_api(c, m);
        return;
    }
    bool agent = strcmp(path, "/v1/agent") == 0;
    bool client = strcmp(path, "/v1/connect") == 0;
    if (!agent && !client) {
        hc_error(c, 404, "Not Found",
                 "no such path (the relay serves /v1/agent, /v1/connect, "
                 "/healthz, /stats)");
        return;
    }
    if (!get) {
        hc_error(c, 405, "Method Not Allowed", "use GET with a WebSocket upgrade");
        return;
    }
    if (r->shutting) {
        hc_error(c, 503, "Service Unavailable", "relay is shutting down");
        return;
    }
    const char *key = NULL, *why = NULL;
    size_t key_len = 0;
    int status = 400;
    if (up_ws_check_upgrade(m, &key, &key_len, &why, &status) < 0) {
        hc_respond(c, status, status == 426 ? "Upgrade Required" : "Bad Request", why, "text/plain",
                   status == 426 ? "Sec-WebSocket-Version: 13\r\n" : NULL);
        return;
    }
    const char *tok = NULL;
    size_t tok_len = 0;
    if (!relay_bearer(m, &tok, &tok_len)) {
        hc_error(c, 401, "Unauthorized", "missing bearer token (Authorization: Bearer ...)");
        return;
    }
    struct rlink *rl = up_calloc(1, sizeof(*rl));
    if (!rl) {
        hc_error(c, 503, "Service Unavailable", "out of memory");
        return;
    }
    rl->relay = r;
    rl->role = agent ? RL_AGENT : RL_CLIENT;
    snprintf(rl->peer, sizeof rl->peer, "%s", c->client);
    snprintf(rl->local, sizeof rl->local, "%s", c->local);
    hc_desc(c, rl->desc, sizeof rl->desc);
    const char *reason = NULL;
    int rv = relay_verify(r, tok, tok_len, &rl->claims, &reason);
    if (rv < 0) {
        up_free(rl);
        char w[160];
        snprintf(w, sizeof w, "invalid token: %s", reason ? reason : up_strerror(rv));
        hc_error(c, 401, "Unauthorized", w);
        return;
    }
    enum up_token_role want = agent ? UP_ROLE_AGENT : UP_ROLE_CLIENT;
    if (rl->claims.role != want) {
        char w[160];
        snprintf(w, sizeof w, "token role is '%s' but %.40s needs '%s'",
                 up_token_role_name(rl->claims.role), path, up_token_role_name(want));
        up_free(rl);
        hc_error(c, 403, "Forbidden", w);
        return;
    }
    if (agent && parse_services(c, rl, q ? q + 1 : "", q ? m->target_len - plen - 1 : 0) < 0) {
        up_free(rl);
        return;
    }
    char accept[UP_WS_ACCEPT_LEN + 1];
    up_ws_accept(key, key_len, accept);
    char resp[256];
    int n = snprintf(resp, sizeof resp,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                     accept);
    up_buf_skip(&c->in, m->head_len);
    if (n < 0 || up_buf_append(&c->out, resp, (size_t)n, 4096) < 0) {
        up_free(rl);
        hc_close(c, false);
        return;
    }
    r->n.http_requests++;
    c->pending = rl;
    c->on_upgraded = become_link;
    c->upgrade_after = true;
    c->state = HC_WRITE;
    hc_flush(c);
}

static void hc_read_head(struct hconn *c)
{
    struct up_relay *r = c->relay;
    for (;;) {
        if (up_buf_reserve(&c->in, 4096, r->cfg->max_head + API_MAX_BODY + 4096) < 0) {
            hc_error(c, 431, "Request Header Fields Too Large", "request head too large");
            return;
        }
        size_t n = 0;
        int rv = up_sock_read(c->sock, up_buf_wptr(&c->in), up_buf_room(&c->in), &n);
        if (rv == UP_EAGAIN) {
            return;
        }
        if (rv < 0) {
            hc_close(c, false);
            return;
        }
        up_buf_commit(&c->in, n);
        /* Fail fast on what cannot be an HTTP request (every method starts with a letter),
         * instead of waiting for a head that will never end. */
        uint8_t first = up_buf_rptr(&c->in)[0];
        if (!((first >= 'A' && first <= 'Z') || (first >= 'a' && first <= 'z'))) {
            uv_timer_stop(&c->timer);
            hc_error(c, 400, "Bad Request",
                     first == 0x16 ? "TLS sent to a plain-HTTP port (use ws://, or start the "
                                     "relay with --tls-cert/--tls-key)"
                                   : "not an HTTP request");
            return;
        }
        struct up_h1_header hdrs[HCONN_MAX_HEADERS];
        struct up_h1_msg m;
        rv = up_h1_parse_request(up_buf_rptr(&c->in), up_buf_len(&c->in), &c->scan, &m, hdrs,
                                 HCONN_MAX_HEADERS, r->cfg->max_head);
        if (rv == UP_EAGAIN) {
            continue;
        }
        if (rv == UP_OK && m.content_length > 0 && m.target_len >= 5 &&
            memcmp(m.target, "/api/", 5) == 0) {
            /* The API takes small JSON bodies: wait for all of it. */
            if (m.content_length > API_MAX_BODY) {
                uv_timer_stop(&c->timer);
                hc_error(c, 413, "Content Too Large", "API bodies are limited to 8 KiB");
                return;
            }
            if (up_buf_len(&c->in) < m.head_len + (size_t)m.content_length) {
                continue;
            }
        }
        uv_timer_stop(&c->timer);
        if (rv == UP_ELIMIT) {
            hc_error(c, 431, "Request Header Fields Too Large",
                     m.err_reason ? m.err_reason : "request head too large");
            return;
        }
        if (rv < 0) {
            int st = m.err_status ? m.err_status : 400;
            hc_error(c, st, st == 505 ? "HTTP Version Not Supported" : "Bad Request",
                     m.err_reason ? m.err_reason : "malformed request");
            return;
        }
        hc_on_request(c, &m);
        return;
    }
}

static void hc_sock_cb(struct up_sock *s, bool readable, bool writable)
{
    struct hconn *c = s->ud;
    if (c->closing) {
        return;
    }
    switch (c->state) {
    case HC_TLS: {
        int rv = up_tls_handshake(s);
        if (rv == UP_EAGAIN) {
            return;
        }
        if (rv < 0) {
            char buf[200];
            UP_LOGD("TLS handshake from %s failed: %s", c->peer, up_tls_error(s, buf, sizeof buf));
            hc_close(c, false);
            return;
        }
        c->state = HC_HEAD;
        up_sock_want(s, true, false);
        hc_read_head(c);
        return;
    }
    case HC_HEAD:
        hc_read_head(c);
        return;
    case HC_PROXY:
        px_sock_cb(c, readable, writable);
        return;
    case HC_WSB:
        wsb_sock_cb(c, readable, writable);
        return;
    case HC_WRITE:
        if (writable) {
            hc_flush(c);
        }
        return;
    case HC_LINGER: {
        uint8_t junk[4096];
        for (int i = 0; i < 16; i++) {
            size_t n;
            int rv = up_sock_read(s, junk, sizeof junk, &n);
            if (rv == UP_EAGAIN) {
                return;
            }
            if (rv < 0) {
                hc_close(c, false);
                return;
            }
        }
        (void)readable;
        return;
    }
    }
}

void front_accept(void *ud, int fd, const struct sockaddr_storage *peer)
{
    struct up_relay *r = ud;
    struct hconn *c = up_calloc(1, sizeof(*c));
    struct up_sock *s = c ? up_calloc(1, sizeof(*s)) : NULL;
    if (!c || !s) {
        up_free(c);
        close(fd);
        return;
    }
    if (up_sock_init(s, r->loop, fd, hc_sock_cb, c) < 0) {
        up_free(s);
        up_free(c);
        return;
    }
    up_tcp_set_notsent_lowat(fd, UP_SOCK_ENDPOINT_LOWAT); /* a link sets its own */
    c->relay = r;
    c->sock = s;
    c->open_handles = 2;
    up_buf_init(&c->in);
    up_buf_init(&c->out);
    up_addr_format((const struct sockaddr *)peer, c->peer, sizeof c->peer);
    sa_ip16(peer, c->peer_ip);
    c->client_loopback = is_loopback(c->peer_ip);
    snprintf(c->client, sizeof c->client, "%s", c->peer);
    (void)up_sock_local_addr(fd, c->local, sizeof c->local);
    uv_timer_init(r->loop, &c->timer);
    c->timer.data = c;
    uv_timer_start(&c->timer, hc_timeout, r->cfg->head_timeout_ms, 0);
    c->on_request = hc_on_request;
    hc_list(c);
    if (r->tls) {
        if (up_tls_attach(s, r->tls, true, NULL) < 0) {
            hc_close(c, false);
            return;
        }
        c->state = HC_TLS;
        hc_sock_cb(s, true, true);
    } else {
        c->state = HC_HEAD;
        up_sock_want(s, true, false);
    }
}
