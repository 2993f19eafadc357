#include "relay/relay.h"
#include "relay/internal.h"
#include "relay/bridge.h"
#include "relay/registry.h"

#include <jansson.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/log.h"
#include "base/str.h"
#include "net/addr.h"
#include "net/sock.h"
#include "net/tls.h"
#include "proto/fwd.h"
#include "proto/h1.h"
#include "proto/token.h"
#include "proto/ws.h"

/* ---- helpers ---- */

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

/* ---- links ---- */

static void drain_end(struct up_relay *r);

static void on_link_close(struct up_link *l, const char *reason)
{
    struct rlink *rl = up_link_ud(l);
    struct up_relay *r = rl->relay;
    relay_link_closed(rl, reason);
    if (r->shutting && !r->links) {
        drain_end(r);
    }
}

static const struct up_link_ops link_ops = {
    .on_open = bridge_link_open,
    .on_goaway = relay_link_goaway,
    .on_close = on_link_close,
};

/* ---- HTTP front door ---- */

void hc_closed(uv_handle_t *h)
{
    struct hconn *c = h->data;
    if (--c->open_handles == 0) {
        up_buf_fini(&c->in);
        up_buf_fini(&c->out);
        up_free(c->pending);
        up_free(c);
    }
}

static void hc_sock_closed(struct up_sock *s)
{
    struct hconn *c = s->ud;
    up_free(s);
    hc_closed((uv_handle_t *)&c->timer);
}

static void hc_unlist(struct hconn *c)
{
    struct up_relay *r = c->relay;
    if (c->prev) {
        c->prev->next = c->next;
    } else if (r->conns == c) {
        r->conns = c->next;
    }
    if (c->next) {
        c->next->prev = c->prev;
    }
    c->next = c->prev = NULL;
}

void hc_close(struct hconn *c, bool release)
{
    if (c->closing) {
        return;
    }
    c->closing = true;
    if (c->px_on) {
        px_close(c);
    }
    if (c->wsb_on) {
        wsb_close(c);
    }
    hc_unlist(c);
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, hc_closed);
    if (release) {
        up_sock_release(c->sock, hc_sock_closed);
    } else {
        up_sock_close(c->sock, hc_sock_closed);
    }
}

static void hc_timeout(uv_timer_t *t);

void hc_respond(struct hconn *c, int status, const char *text, const char *body, const char *ctype,
                const char *extra)
{
    char head[1024];
    size_t blen = strlen(body);
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Cache-Control: no-store\r\nConnection: close\r\n%s\r\n",
                     status, text, ctype, blen, extra ? extra : "");
    c->relay->n.http_requests++;
    if (status >= 400) {
        c->relay->n.http_errors++;
    }
    if (n < 0 || (size_t)n >= sizeof head || up_buf_append(&c->out, head, (size_t)n, 1 << 20) < 0 ||
        up_buf_append(&c->out, body, blen, 1 << 20) < 0) {
        hc_close(c, false);
        return;
    }
    c->state = HC_WRITE;
    c->upgrade_after = false;
    hc_flush(c);
}

/* Who is calling, for logs: "A", or "A (via proxy P, https)" when a trusted proxy named A. */
static const char *hc_desc(const struct hconn *c, char *buf, size_t cap)
{
    if (!c->via[0]) {
        snprintf(buf, cap, "%s", c->client);
    } else {
        snprintf(buf, cap, "%s (via proxy %s%s%s)", c->client, c->via, c->proto[0] ? ", " : "",
                 c->proto);
    }
    return buf;
}

void hc_error(struct hconn *c, int status, const char *text, const char *why)
{
    char body[300];
    snprintf(body, sizeof body, "%s\n", why);
    if (status == 401 || status == 403) {
        char who[160];
        c->relay->n.rejected++;
        UP_LOGI("rejected %s: %d %s", hc_desc(c, who, sizeof who), status, why);
    }
    hc_respond(c, status, text, body, "text/plain; charset=utf-8",
               status == 401 ? "WWW-Authenticate: Bearer\r\n" : NULL);
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
    rl->link =
        up_link_new(r->loop, fd, ssl, false, &r->cfg.link, &link_ops, rl, copy, copy ? left : 0);
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

void hc_flush(struct hconn *c)
{
    while (up_buf_len(&c->out)) {
        size_t n = 0;
        int rv = up_sock_write(c->sock, up_buf_rptr(&c->out), up_buf_len(&c->out), &n);
        if (rv == UP_EAGAIN) {
            up_sock_want(c->sock, false, true);
            return;
        }
        if (rv < 0) {
            hc_close(c, false);
            return;
        }
        up_buf_skip(&c->out, n);
    }
    if (c->upgrade_after) {
        if (c->wsb_on) {
            wsb_start(c);
        } else {
            become_link(c);
        }
        return;
    }
    /* Lingering close: shut our side, drain theirs briefly, so the response is not lost to
     * an RST caused by unread input. */
    c->state = HC_LINGER;
    up_sock_shutdown_write(c->sock);
    up_sock_want(c->sock, true, false);
    uv_timer_start(&c->timer, hc_timeout, LINGER_MS, 0);
}

static void stats_json(struct hconn *c)
{
    struct up_relay *r = c->relay;
    size_t agents = 0, clients = 0, streams = 0, draining = 0;
    uint64_t frames_in = 0, data_in = 0;
    for (struct rlink *rl = r->links; rl; rl = rl->next) {
        if (!rl->link) {
            continue;
        }
        const struct up_link_stats *ls = up_link_stats(rl->link);
        frames_in += ls->frames_in;
        data_in += ls->bytes_in;
        if (rl->draining) {
            draining++;
        }
        if (rl->role == RL_AGENT) {
            agents++;
        } else {
            clients++;
        }
        streams += up_link_nstreams(rl->link);
    }
    json_t *o = json_pack(
        "{s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:b,s:I,s:I,s:I,s:I,s:I}", "version",
        "0.1.0", "uptime_s", (json_int_t)(time(NULL) - r->started), "agents", (json_int_t)agents,
        "clients", (json_int_t)clients, "link_streams", (json_int_t)streams, "streams_active",
        (json_int_t)r->n.streams_active, "streams_total", (json_int_t)r->n.streams_total,
        "streams_refused", (json_int_t)r->n.streams_refused, "links_total",
        (json_int_t)r->n.links_total, "rejected", (json_int_t)r->n.rejected, "http_errors",
        (json_int_t)r->n.http_errors, "bytes_relayed", (json_int_t)r->n.bytes_relayed, "draining",
        (int)r->shutting, "links_draining", (json_int_t)draining, "http_proxied",
        (json_int_t)r->n.http_proxied, "pairings_waiting", (json_int_t)r->n_pairings,
        "link_frames_in", (json_int_t)frames_in, "link_data_in", (json_int_t)data_in);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!s) {
        hc_error(c, 500, "Internal Server Error", "out of memory");
        return;
    }
    char body[2048];
    snprintf(body, sizeof body, "%s\n", s);
    free(s); /* allocated by jansson */
    hc_respond(c, 200, "OK", body, "application/json", NULL);
}

/* The value of parameter key in the query q[0..qlen), or NULL. */
const char *relay_query_param(const char *q, size_t qlen, const char *key, size_t *vlen)
{
    size_t kl = strlen(key);
    const char *p = q, *end = q + qlen;
    while (p && p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *pe = amp ? amp : end;
        if ((size_t)(pe - p) > kl && memcmp(p, key, kl) == 0 && p[kl] == '=') {
            *vlen = (size_t)(pe - p) - kl - 1;
            return p + kl + 1;
        }
        p = pe + 1;
    }
    return NULL;
}

bool relay_bearer(const struct up_h1_msg *m, const char **tok, size_t *len)
{
    const struct up_h1_header *auth = up_h1_find(m, "authorization");
    if (!auth || auth->value_len < 8 || !up_str_ieq(auth->value, 7, "bearer ")) {
        return false;
    }
    *tok = auth->value + 7;
    *len = auth->value_len - 7;
    up_str_trim_ows(tok, len);
    return *len > 0;
}

int relay_verify(const struct up_relay *r, const char *tok, size_t len, struct up_token_claims *cl,
                 const char **reason)
{
    return up_token_verify(tok, len, r->cfg.secret, r->cfg.secret_len, (int64_t)time(NULL),
                           (int64_t)r->cfg.leeway_s, cl, reason);
}

bool hc_write_owed(struct hconn *c, size_t *owed, struct up_lstream *st)
{
    while (up_buf_len(&c->out)) {
        size_t n = 0;
        int rv = up_sock_write(c->sock, up_buf_rptr(&c->out), up_buf_len(&c->out), &n);
        if (rv == UP_EAGAIN) {
            break;
        }
        if (rv < 0) {
            hc_close(c, false);
            return false;
        }
        up_buf_skip(&c->out, n);
        size_t k = n < *owed ? n : *owed;
        *owed -= k;
        if (k && st) {
            up_link_consumed(st, k);
        }
    }
    up_buf_release_if_empty(&c->out);
    return true;
}

/* Mark the services listed in parameter key ("http=web,api") with flag; each must be one of
 * the agent's services. */
static int parse_service_flags(struct hconn *c, struct rlink *rl, const char *q, size_t qlen,
                               const char *key, uint8_t flag)
{
    size_t vlen = 0;
    const char *v = relay_query_param(q, qlen, key, &vlen);
    const char *s = v, *end = v ? v + vlen : NULL;
    while (s && s < end) {
        const char *comma = memchr(s, ',', (size_t)(end - s));
        const char *se = comma ? comma : end;
        size_t len = (size_t)(se - s), i;
        for (i = 0; i < rl->n_services; i++) {
            if (strlen(rl->services[i]) == len && memcmp(rl->services[i], s, len) == 0) {
                rl->svc_flags[i] |= flag;
                break;
            }
        }
        if (i == rl->n_services) {
            char why[160];
            snprintf(why, sizeof why, "%s=%.*s names no service of this agent", key,
                     (int)(len > 64 ? 64 : len), s);
            hc_error(c, 400, "Bad Request", why);
            return -1;
        }
        s = se + 1;
    }
    return 0;
}

/* Parse "?services=a,b[&http=b][&protect=b]" into the agent's list; every name valid and
 * allowed by the token. */
static int parse_services(struct hconn *c, struct rlink *rl, const char *q, size_t qlen)
{
    size_t vlen = 0;
    const char *v = relay_query_param(q, qlen, "services", &vlen);
    const char *s = v, *pe = v ? v + vlen : NULL;
    while (s && s < pe) {
        const char *comma = memchr(s, ',', (size_t)(pe - s));
        const char *se = comma ? comma : pe;
        size_t len = (size_t)(se - s);
        char why[160];
        if (len == 0 || len > UP_TOKEN_MAX_NAME || !up_token_valid_service_name(s, len) ||
            (len == 1 && s[0] == '*')) {
            snprintf(why, sizeof why, "invalid service name '%.*s'", (int)(len > 64 ? 64 : len), s);
            hc_error(c, 400, "Bad Request", why);
            return -1;
        }
        if (!up_token_allows(&rl->claims, s, len)) {
            snprintf(why, sizeof why, "token does not allow service '%.*s'", (int)len, s);
            hc_error(c, 403, "Forbidden", why);
            return -1;
        }
        if (rl->n_services >= UP_TOKEN_MAX_SERVICES) {
            hc_error(c, 400, "Bad Request", "too many services");
            return -1;
        }
        memcpy(rl->services[rl->n_services], s, len);
        rl->services[rl->n_services][len] = '\0';
        rl->n_services++;
        s = se + 1;
    }
    if (rl->n_services == 0) {
        hc_error(c, 400, "Bad Request", "no services listed (?services=name,...)");
        return -1;
    }
    if (parse_service_flags(c, rl, q, qlen, "http", RS_HTTP) < 0 ||
        parse_service_flags(c, rl, q, qlen, "protect", RS_PROTECT) < 0) {
        return -1;
    }
    for (size_t i = 0; i < rl->n_services; i++) {
        if ((rl->svc_flags[i] & RS_PROTECT) && !(rl->svc_flags[i] & RS_HTTP)) {
            char why[160];
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
    /* The nearest proxy appends (or sets) the value: take the rightmost element. */
    const char *v = last->value;
    size_t len = last->value_len;
    const char *comma = len ? memrchr(v, ',', len) : NULL;
    if (comma) {
        len -= (size_t)(comma + 1 - v);
        v = comma + 1;
    }
    while (len && (*v == ' ' || *v == '\t')) {
        v++;
        len--;
    }
    if (up_str_ieq(v, len, "https") || up_str_ieq(v, len, "http")) {
        snprintf(c->proto, sizeof c->proto, "%s", len == 5 ? "https" : "http");
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
    const struct up_cidr_list *t = &c->relay->cfg.trusted_proxies;
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

void hc_on_request(struct hconn *c, const struct up_h1_msg *m)
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
        if (!c->client_loopback && !r->cfg.stats_public) {
            hc_error(c, 403, "Forbidden", "/stats is served to loopback only (--stats-public)");
            return;
        }
        stats_json(c);
        return;
    }
    if (wsb_try(c, m, path)) {
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
    c->upgrade_after = true;
    c->state = HC_WRITE;
    hc_flush(c);
}

static void hc_read_head(struct hconn *c)
{
    struct up_relay *r = c->relay;
    for (;;) {
        if (up_buf_reserve(&c->in, 4096, r->cfg.max_head + API_MAX_BODY + 4096) < 0) {
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
                                 HCONN_MAX_HEADERS, r->cfg.max_head);
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

static void hc_timeout(uv_timer_t *t)
{
    struct hconn *c = t->data;
    if (c->state == HC_HEAD || c->state == HC_TLS) {
        if (c->state == HC_HEAD && up_buf_len(&c->in)) {
            hc_error(c, 408, "Request Timeout", "request head not complete in time");
            uv_timer_start(&c->timer, hc_timeout, LINGER_MS, 0);
            return;
        }
    }
    hc_close(c, false);
}

static void on_accept(void *ud, int fd, const struct sockaddr_storage *peer)
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
    c->relay = r;
    c->sock = s;
    c->open_handles = 2;
    up_buf_init(&c->in);
    up_buf_init(&c->out);
    up_addr_format((const struct sockaddr *)peer, c->peer, sizeof c->peer);
    sa_ip16(peer, c->peer_ip);
    c->client_loopback = is_loopback(c->peer_ip);
    snprintf(c->client, sizeof c->client, "%s", c->peer);
    struct sockaddr_storage local;
    socklen_t llen = sizeof local;
    if (getsockname(fd, (struct sockaddr *)&local, &llen) == 0) {
        up_addr_format((struct sockaddr *)&local, c->local, sizeof c->local);
    }
    uv_timer_init(r->loop, &c->timer);
    c->timer.data = c;
    uv_timer_start(&c->timer, hc_timeout, r->cfg.head_timeout_ms, 0);
    c->next = r->conns;
    if (r->conns) {
        r->conns->prev = c;
    }
    r->conns = c;
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

struct up_relay *up_relay_new(uv_loop_t *loop, const struct up_relay_cfg *cfg, char *err,
                              size_t cap)
{
    char host[256];
    uint16_t port;
    struct sockaddr_storage sa;
    socklen_t salen;
    if (up_addr_split(cfg->listen, host, sizeof host, &port) < 0 ||
        up_addr_numeric(host, port, &sa, &salen) < 0) {
        snprintf(err, cap,
                 "--listen: '%.80s' is not IP:PORT (for example 0.0.0.0:8080 or "
                 "[::]:443)",
                 cfg->listen);
        return NULL;
    }
    struct up_relay *r = up_calloc(1, sizeof(*r));
    if (!r) {
        snprintf(err, cap, "out of memory");
        return NULL;
    }
    r->loop = loop;
    r->cfg = *cfg;
    r->started = time(NULL);
    if (cfg->tls_cert || cfg->tls_key) {
        if (!cfg->tls_cert || !cfg->tls_key) {
            snprintf(err, cap, "--tls-cert and --tls-key go together");
            up_free(r);
            return NULL;
        }
        r->tls = up_tls_server_ctx(cfg->tls_cert, cfg->tls_key, err, cap);
        if (!r->tls) {
            up_free(r);
            return NULL;
        }
    }
    int e = 0;
    int fd = up_tcp_listen((struct sockaddr *)&sa, salen, 1024, &e);
    if (fd < 0) {
        snprintf(err, cap, "cannot listen on %.80s: %s", cfg->listen, strerror(e));
        up_tls_ctx_free(r->tls);
        up_free(r);
        return NULL;
    }
    struct sockaddr_storage bound;
    socklen_t blen = sizeof bound;
    if (getsockname(fd, (struct sockaddr *)&bound, &blen) == 0) {
        up_addr_format((struct sockaddr *)&bound, r->addr, sizeof r->addr);
    }
    if (up_listener_start(&r->lsock, loop, fd, on_accept, r) < 0) {
        snprintf(err, cap, "cannot watch the listening socket");
        up_tls_ctx_free(r->tls);
        up_free(r);
        return NULL;
    }
    return r;
}

const char *up_relay_addr(const struct up_relay *r)
{
    return r->addr;
}

static void drain_timer_closed(uv_handle_t *h)
{
    (void)h;
}

/* Every link has closed (after a drain or a timeout). */
static void drain_end(struct up_relay *r)
{
    if (!r->drain_timer_on) {
        return;
    }
    r->drain_timer_on = false;
    if (!r->drain_expired) {
        UP_LOGI("drained: all streams ended in %.3fs",
                (double)(uv_now(r->loop) - r->drain_started_ms) / 1000.0);
    }
    uv_timer_stop(&r->drain_timer);
    uv_close((uv_handle_t *)&r->drain_timer, drain_timer_closed);
}

static void on_drain_timeout(uv_timer_t *t)
{
    struct up_relay *r = t->data;
    size_t nlinks = 0;
    for (struct rlink *rl = r->links; rl; rl = rl->next) {
        nlinks++;
    }
    r->drain_expired = true;
    UP_LOGI("drain timeout after %gs: resetting %llu stream(s) on %zu link(s)",
            (double)r->cfg.drain_timeout_ms / 1000.0, (unsigned long long)r->n.streams_active,
            nlinks);
    for (struct rlink *rl = r->links; rl; rl = rl->next) {
        if (rl->link) {
            up_link_close(rl->link, "relay drain timeout");
        }
    }
}

void up_relay_shutdown(struct up_relay *r)
{
    if (r->shutting) {
        return;
    }
    r->shutting = true;
    pairings_shutdown(r);
    /* Closed now, not at exit: a replacement relay can bind the port while we drain. */
    up_listener_close(&r->lsock);
    while (r->conns) {
        hc_close(r->conns, false);
    }
    if (r->cfg.drain_timeout_ms == 0) {
        for (struct rlink *rl = r->links; rl; rl = rl->next) {
            if (rl->link) {
                up_link_goaway(rl->link, UP_MUX_C_SHUTDOWN, "relay shutting down");
                up_link_close(rl->link, "relay shutting down");
            }
        }
        return;
    }
    r->drain_started_ms = uv_now(r->loop);
    UP_LOGI("draining: %llu streams, up to %gs", (unsigned long long)r->n.streams_active,
            (double)r->cfg.drain_timeout_ms / 1000.0);
    uv_timer_init(r->loop, &r->drain_timer);
    r->drain_timer.data = r;
    r->drain_timer_on = true;
    uv_timer_start(&r->drain_timer, on_drain_timeout, r->cfg.drain_timeout_ms, 0);
    for (struct rlink *rl = r->links; rl; rl = rl->next) {
        if (rl->link) {
            rl->draining = true;
            up_link_goaway(rl->link, UP_MUX_C_SHUTDOWN,
                           "relay is draining: open new streams on a new link");
            up_link_close_when_idle(rl->link, "relay drained");
        }
    }
    if (!r->links) {
        drain_end(r);
    }
}

void up_relay_free(struct up_relay *r)
{
    if (!r) {
        return;
    }
    up_tls_ctx_free(r->tls);
    up_free(r->seen);
    up_free(r);
}
