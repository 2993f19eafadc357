#include "agent/agent.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/log.h"
#include "link/dial.h"
#include "link/pipe.h"
#include "net/sock.h"
#include "proto/fwd.h"
#include "proto/mux.h"
#include "proto/svcspec.h"

/* One of the agent's uplinks. */
struct alink {
    struct up_agent *agent;
    struct up_uplink *up; /* NULL once it has been stopped or drained */
    size_t idx;           /* 1-based, for logs */
    uint64_t streams_total;
};

struct up_agent {
    uv_loop_t *loop;
    struct up_agent_cfg cfg;
    char path[2048];
    struct alink links[UP_AGENT_MAX_LINKS];
    size_t nlinks;
    size_t nstreams; /* backend connections (pipes) alive */
    uv_timer_t drain_timer;
    uint64_t drain_started_ms;
    bool drain_timer_on;
    struct bconn *dq_head, *dq_tail; /* streams waiting for their backend dial to start */
    uv_idle_t dialer;                /* starts AGENT_DIALS_PER_TURN of them per loop turn */
    bool dialer_made;
    bool draining;
    bool stopping;
    void *embed; /* borrowed: the embedding layer's */
};

/* Backend dials started per loop turn. A thousand streams opened at once would otherwise be a
 * thousand connect()s (and their completions) in one turn, and every other stream of the
 * agent would wait behind them (issue 25: 20-50 ms round trips beside such a burst). */
#define AGENT_DIALS_PER_TURN 32

/* One backend connection: the pipe plus the dial that precedes it. */
struct bconn {
    struct up_agent *agent;
    struct up_pipe *pipe;
    struct up_dial *dial;
    const struct up_agent_service *svc; /* while queued for its dial */
    struct bconn *qnext, *qprev;
    bool queued;
    char service[64];
    char client[80];
    uint8_t preface[UP_FWD_PROXY_MAX]; /* PROXY protocol header for the backend */
    size_t preface_len;
};

int up_agent_parse_service(const char *spec, struct up_agent_service *s, char *err, size_t cap)
{
    _Static_assert(sizeof s->name == sizeof((struct up_svcspec *)0)->name, "name size");
    _Static_assert(sizeof s->host == sizeof((struct up_svcspec *)0)->host, "host size");
    struct up_svcspec sp;
    memset(s, 0, sizeof(*s));
    if (up_svcspec_parse(spec, &sp, err, cap) < 0) {
        return -1;
    }
    memcpy(s->name, sp.name, sizeof s->name);
    memcpy(s->host, sp.host, sizeof s->host);
    s->port = sp.port;
    s->proxy_protocol = sp.proxy_protocol;
    s->http = sp.http;
    return 0;
}

/* The PROXY protocol header for a stream: the client's address from the relay's metadata as
 * the source, the relay's end of the client's connection as the destination. When either is
 * missing (an older relay) or unparseable, the header says "unknown origin" (v1 UNKNOWN, v2
 * LOCAL): the backend then uses the connection's own addresses, which is the truth about
 * this hop. */
static void build_preface(struct bconn *b, int version, const uint8_t *meta, size_t meta_len)
{
    char cl[80], rl[80];
    uint8_t src[16], dst[16];
    uint16_t sport = 0, dport = 0;
    bool known = up_mux_meta_get(meta, meta_len, "client", cl, sizeof cl) &&
                 up_mux_meta_get(meta, meta_len, "relay", rl, sizeof rl) &&
                 up_fwd_addr_parse(cl, strlen(cl), src, &sport) == UP_OK &&
                 up_fwd_addr_parse(rl, strlen(rl), dst, &dport) == UP_OK;
    int rv;
    if (version == 1) {
        char *t = (char *)b->preface;
        rv = known ? up_fwd_proxy_v1(src, sport, dst, dport, t, sizeof b->preface, &b->preface_len)
                   : up_fwd_proxy_v1_unknown(t, sizeof b->preface, &b->preface_len);
    } else {
        rv = known ? up_fwd_proxy_v2(src, sport, dst, dport, b->preface, sizeof b->preface,
                                     &b->preface_len)
                   : up_fwd_proxy_v2_local(b->preface, sizeof b->preface, &b->preface_len);
    }
    if (rv < 0) {
        b->preface_len = 0; /* cannot happen: UP_FWD_PROXY_MAX fits every header */
    }
    if (!known) {
        UP_LOGD("service '%s': client address unknown, PROXY v%d says so", b->service, version);
    }
}

static void dq_remove(struct up_agent *a, struct bconn *b)
{
    if (!b->queued) {
        return;
    }
    *(b->qprev ? &b->qprev->qnext : &a->dq_head) = b->qnext;
    *(b->qnext ? &b->qnext->qprev : &a->dq_tail) = b->qprev;
    b->qnext = b->qprev = NULL;
    b->queued = false;
}

static void on_pipe_done(struct up_pipe *p, uint32_t code, const char *reason)
{
    struct bconn *b = p->ud;
    dq_remove(b->agent, b);
    b->agent->nstreams--;
    if (b->dial) {
        up_dial_cancel(b->dial);
        b->dial = NULL;
    }
    if (code != 0 && code != UP_MUX_C_CANCEL) {
        UP_LOGI("stream %u to '%s' (client %s) ended: %s%s%s", p->st.sid, b->service, b->client,
                up_mux_code_name(code), reason ? ": " : "", reason ? reason : "");
    }
    up_free(b);
}

static void on_backend(void *ud, int err, const char *reason, int status, int fd,
                       struct ssl_st *ssl, const uint8_t *left, size_t left_len)
{
    struct bconn *b = ud;
    (void)status;
    (void)ssl;
    (void)left;
    (void)left_len;
    b->dial = NULL;
    if (err) {
        char why[300];
        snprintf(why, sizeof why, "agent: %s", reason);
        UP_LOGW("service '%s': %s", b->service, reason);
        up_pipe_abort(b->pipe, UP_MUX_C_REFUSED, why); /* frees b */
        return;
    }
    struct up_pipe *p = b->pipe;
    if (up_pipe_start(p, fd, fd) < 0) {
        return;
    }
    /* Queued before the ACCEPT lets the client's bytes come, so it goes out first even when
     * the backend's socket is not writable yet. */
    if (b->preface_len && up_pipe_preface(p, b->preface, b->preface_len) < 0) {
        up_pipe_abort(p, UP_MUX_C_INTERNAL, "agent out of memory"); /* frees b */
        return;
    }
    up_link_accept(&p->st);
}

/* An in-process service: the stream's pipe gets one end of a socketpair, the application the
 * other, as if the backend had been dialed and had answered at once. */
static void serve_in_process(struct bconn *b, const struct up_agent_service *svc)
{
    int fds[2];
    struct up_pipe *p = b->pipe;
    if (up_sock_pair(fds) < 0) {
        UP_LOGW("service '%s': no socketpair for a stream (out of descriptors?)", b->service);
        up_pipe_abort(p, UP_MUX_C_INTERNAL, "agent: out of descriptors"); /* frees b */
        return;
    }
    if (up_pipe_start(p, fds[0], fds[0]) < 0) {
        close(fds[1]); /* the pipe failed, closed fds[0] and reports done */
        return;
    }
    if (b->preface_len && up_pipe_preface(p, b->preface, b->preface_len) < 0) {
        close(fds[1]);
        up_pipe_abort(p, UP_MUX_C_INTERNAL, "agent out of memory"); /* frees b */
        return;
    }
    up_link_accept(&p->st);
    svc->fn(svc->fn_ud, svc->name, fds[1], b->client);
}

static const struct up_agent_service *find_service(const struct up_agent *a, const char *name,
                                                   size_t len)
{
    for (size_t i = 0; i < a->cfg.n_services; i++) {
        if (strlen(a->cfg.services[i].name) == len &&
            memcmp(a->cfg.services[i].name, name, len) == 0) {
            return &a->cfg.services[i];
        }
    }
    return NULL;
}

/* " (link 2/3)" when there are several, "" otherwise. */
static const char *link_label(const struct alink *al, char *buf, size_t cap)
{
    if (al->agent->nlinks < 2) {
        return "";
    }
    snprintf(buf, cap, " (link %zu/%zu)", al->idx, al->agent->nlinks);
    return buf;
}

static void dial_backend(struct bconn *b)
{
    struct up_agent *a = b->agent;
    struct up_dial_cfg dc = {
        .host = b->svc->host,
        .port = b->svc->port,
        .timeout_ms = a->cfg.backend_timeout_ms,
    };
    b->dial = up_dial_start(a->loop, &dc, on_backend, b);
    if (!b->dial) {
        up_pipe_abort(b->pipe, UP_MUX_C_INTERNAL, "agent cannot start connecting");
    }
}

static void on_dialer(uv_idle_t *h)
{
    struct up_agent *a = h->data;
    for (int k = 0; k < AGENT_DIALS_PER_TURN && a->dq_head; k++) {
        struct bconn *b = a->dq_head;
        dq_remove(a, b);
        dial_backend(b); /* may free b */
    }
    if (!a->dq_head) {
        uv_idle_stop(&a->dialer);
    }
}

static void on_open(struct up_uplink *u, struct up_link *l, uint32_t sid, uint32_t window,
                    const char *name, size_t name_len, const uint8_t *meta, size_t meta_len)
{
    struct alink *al = up_uplink_ud(u);
    struct up_agent *a = al->agent;
    if (a->draining || a->stopping) {
        /* The link refuses OPENs after our GOAWAY; this is the belt to those braces. */
        up_link_refuse(l, sid, UP_MUX_C_SHUTDOWN, "refused: agent shutting down");
        return;
    }
    const struct up_agent_service *svc = find_service(a, name, name_len);
    if (!svc) {
        char why[128];
        snprintf(why, sizeof why, "agent has no service '%.*s'", (int)name_len, name);
        up_link_refuse(l, sid, UP_MUX_C_NO_SERVICE, why);
        return;
    }
    struct bconn *b = up_calloc(1, sizeof(*b));
    struct up_pipe *p = b ? up_pipe_new(a->loop, on_pipe_done, b) : NULL;
    if (!p) {
        up_free(b);
        up_link_refuse(l, sid, UP_MUX_C_INTERNAL, "agent out of memory");
        return;
    }
    b->agent = a;
    b->pipe = p;
    a->nstreams++; /* from here on_pipe_done runs exactly once */
    al->streams_total++;
    snprintf(b->service, sizeof b->service, "%s", svc->name);
    /* The relay tells us the client's address: "client=IP:PORT\n..." (docs/PROTOCOL.md). */
    if (!up_mux_meta_get(meta, meta_len, "client", b->client, sizeof b->client)) {
        b->client[0] = '\0';
    }
    if (svc->proxy_protocol) {
        build_preface(b, svc->proxy_protocol, meta, meta_len);
    }
    UP_LOGD("link %zu: stream %u for '%s' from %s (%llu on this link)", al->idx, sid, b->service,
            b->client[0] ? b->client : "-", (unsigned long long)al->streams_total);
    if (up_link_attach(l, &p->st, sid, window, &up_pipe_stream_ops, p) < 0) {
        up_link_refuse(l, sid, UP_MUX_C_INTERNAL, "agent out of memory");
        p->link_done = true;
        up_pipe_abort(p, UP_MUX_C_INTERNAL, "out of memory");
        return;
    }
    if (svc->fn) {
        serve_in_process(b, svc);
        return;
    }
    /* Dial from the queue, a few per loop turn. */
    b->svc = svc;
    b->qprev = a->dq_tail;
    *(a->dq_tail ? &a->dq_tail->qnext : &a->dq_head) = b;
    a->dq_tail = b;
    b->queued = true;
    if (!a->dialer_made) {
        uv_idle_init(a->loop, &a->dialer);
        a->dialer.data = a;
        a->dialer_made = true;
    }
    uv_idle_start(&a->dialer, on_dialer);
}

static void on_up(struct up_uplink *u, struct up_link *l)
{
    struct alink *al = up_uplink_ud(u);
    struct up_agent *a = al->agent;
    char lb[32];
    (void)l;
    UP_LOGI("connected to relay %s:%u, serving %zu service(s)%s", a->cfg.up.host, a->cfg.up.port,
            a->cfg.n_services, link_label(al, lb, sizeof lb));
    if (a->cfg.on_event) {
        char where[300];
        snprintf(where, sizeof where, "%s:%u", a->cfg.up.host, a->cfg.up.port);
        a->cfg.on_event(a->cfg.event_ud, UP_AGENT_EV_UP, where, 0);
    }
}

static void on_down(struct up_uplink *u, const char *reason, int status, uint64_t retry_ms)
{
    struct alink *al = up_uplink_ud(u);
    struct up_agent *a = al->agent;
    char lb[32];
    if (a->stopping || a->draining) {
        return;
    }
    if (status == 401 || status == 403) {
        UP_LOGE("relay refused this agent%s: %s (retrying in %.1fs)", link_label(al, lb, sizeof lb),
                reason, (double)retry_ms / 1000.0);
    } else {
        UP_LOGW("relay link down%s: %s (retrying in %.1fs)", link_label(al, lb, sizeof lb), reason,
                (double)retry_ms / 1000.0);
    }
    if (a->cfg.on_event) {
        bool refused = status == 401 || status == 403;
        a->cfg.on_event(a->cfg.event_ud, refused ? UP_AGENT_EV_REFUSED : UP_AGENT_EV_DOWN, reason,
                        status);
    }
}

static void on_drain(struct up_uplink *u, struct up_link *l, const char *reason)
{
    struct alink *al = up_uplink_ud(u);
    struct up_agent *a = al->agent;
    (void)l;
    if (a->cfg.on_event && !a->stopping && !a->draining) {
        a->cfg.on_event(a->cfg.event_ud, UP_AGENT_EV_DRAIN, reason, 0);
    }
}

static void drain_timer_closed(uv_handle_t *h)
{
    (void)h;
}

static void dialer_closed(uv_handle_t *h)
{
    (void)h;
}

static void drain_end(struct up_agent *a)
{
    if (a->drain_timer_on) {
        a->drain_timer_on = false;
        uv_timer_stop(&a->drain_timer);
        uv_close((uv_handle_t *)&a->drain_timer, drain_timer_closed);
    }
}

static void on_drained(struct up_uplink *u)
{
    struct alink *al = up_uplink_ud(u);
    struct up_agent *a = al->agent;
    al->up = NULL;
    for (size_t i = 0; i < a->nlinks; i++) {
        if (a->links[i].up) {
            return;
        }
    }
    if (a->drain_timer_on) {
        UP_LOGI("drained: all streams ended in %.3fs",
                (double)(uv_now(a->loop) - a->drain_started_ms) / 1000.0);
    }
    drain_end(a);
}

static const struct up_uplink_ops agent_ops = {
    .on_up = on_up,
    .on_down = on_down,
    .on_open = on_open,
    .on_drain = on_drain,
    .on_drained = on_drained,
};

struct up_agent *up_agent_start_cfg(uv_loop_t *loop, struct up_agent_cfg *cfg,
                                    const char *base_path, char *err, size_t cap)
{
    struct up_agent *a = up_calloc(1, sizeof(*a));
    if (!a) {
        snprintf(err, cap, "out of memory");
        return NULL;
    }
    a->loop = loop;
    a->cfg = *cfg;
    size_t bl = strlen(base_path);
    while (bl && base_path[bl - 1] == '/') {
        bl--;
    }
    int o = snprintf(a->path, sizeof a->path, "%.*s/v1/agent?services=", (int)bl, base_path);
    for (size_t i = 0; i < cfg->n_services && o > 0 && (size_t)o < sizeof a->path; i++) {
        o += snprintf(a->path + o, sizeof a->path - (size_t)o, "%s%s", i ? "," : "",
                      cfg->services[i].name);
    }
    /* How the relay should treat them: "&http=web&protect=web". */
    for (int pass = 0; pass < 2; pass++) {
        bool first = true;
        for (size_t i = 0; i < cfg->n_services && o > 0 && (size_t)o < sizeof a->path; i++) {
            const struct up_agent_service *sv = &cfg->services[i];
            if (pass == 0 ? !sv->http : !sv->protect) {
                continue;
            }
            o += snprintf(a->path + o, sizeof a->path - (size_t)o, "%s%s",
                          first ? (pass == 0 ? "&http=" : "&protect=") : ",", sv->name);
            first = false;
        }
    }
    if (o < 0 || (size_t)o >= sizeof a->path) {
        snprintf(err, cap, "too many services");
        up_free(a);
        return NULL;
    }
    a->cfg.up.path = a->path;
    a->nlinks = cfg->links ? cfg->links : 1;
    if (a->nlinks > UP_AGENT_MAX_LINKS) {
        snprintf(err, cap, "at most %d links", UP_AGENT_MAX_LINKS);
        up_free(a);
        return NULL;
    }
    /* Each uplink holds the loop's flusher; ours goes once they are made. Every uplink is
     * made before any starts, so running out of memory half-way leaves nothing behind. */
    struct up_linkloop *ll = up_linkloop_new(loop);
    if (!ll) {
        snprintf(err, cap, "out of memory");
        up_free(a);
        return NULL;
    }
    for (size_t i = 0; i < a->nlinks; i++) {
        struct alink *al = &a->links[i];
        al->agent = a;
        al->idx = i + 1;
        al->up = up_uplink_new(ll, &a->cfg.up, &agent_ops, al);
        if (!al->up) {
            for (size_t j = 0; j < i; j++) {
                up_uplink_discard(a->links[j].up);
            }
            up_linkloop_unref(ll);
            snprintf(err, cap, "out of memory");
            up_free(a);
            return NULL;
        }
    }
    for (size_t i = 0; i < a->nlinks; i++) {
        up_uplink_start(a->links[i].up);
    }
    up_linkloop_unref(ll);
    return a;
}

void up_agent_close(struct up_agent *a)
{
    if (a->stopping) {
        return;
    }
    a->stopping = true;
    for (size_t i = 0; i < a->nlinks; i++) {
        if (a->links[i].up) {
            up_uplink_stop(a->links[i].up, "agent shutting down");
            a->links[i].up = NULL;
        }
    }
    drain_end(a);
    if (a->dialer_made) {
        /* The links' streams are gone, and with them every queued dial. */
        a->dialer_made = false;
        uv_idle_stop(&a->dialer);
        uv_close((uv_handle_t *)&a->dialer, dialer_closed);
    }
}

static void on_drain_timeout(uv_timer_t *t)
{
    struct up_agent *a = t->data;
    UP_LOGI("drain timeout after %gs: resetting %zu stream(s)",
            (double)a->cfg.drain_timeout_ms / 1000.0, a->nstreams);
    up_agent_close(a);
}

void up_agent_drain(struct up_agent *a)
{
    if (a->stopping || a->draining) {
        return;
    }
    if (a->cfg.drain_timeout_ms == 0) {
        up_agent_close(a);
        return;
    }
    a->draining = true;
    a->drain_started_ms = uv_now(a->loop);
    UP_LOGI("draining: %zu streams, up to %gs", a->nstreams,
            (double)a->cfg.drain_timeout_ms / 1000.0);
    uv_timer_init(a->loop, &a->drain_timer);
    a->drain_timer.data = a;
    a->drain_timer_on = true;
    uv_timer_start(&a->drain_timer, on_drain_timeout, a->cfg.drain_timeout_ms, 0);
    for (size_t i = 0; i < a->nlinks; i++) {
        if (a->links[i].up) {
            up_uplink_drain(a->links[i].up, "agent shutting down");
        }
    }
}

void up_agent_release(struct up_agent *a)
{
    up_free(a);
}

void up_agent_set_embed(struct up_agent *a, void *embed)
{
    a->embed = embed;
}

void *up_agent_embed(const struct up_agent *a)
{
    return a->embed;
}
