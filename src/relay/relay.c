/* The relay: up_relay_new() wires the modules together, up_relay_shutdown() drains.
 *
 * The modules of src/relay and who calls whom (an arrow: "calls into"; nothing calls up):
 *
 *   relay.c   new, shutdown (drain), free; composes the link ops and the hooks below
 *     |
 *   front.c   accept, TLS, request head, who is calling, routing, links' auth and upgrade
 *     |     \____________________________________
 *     |      |                 |                  |
 *   http.c  wsb.c ---------> pair.c             stats.c
 *   (proxy) (browser WS)     (pairings, /api)   (/stats)
 *     |      |                 |                  |
 *     +------+-----------------+------------------+---> conn.c (an hconn: answers, flush,
 *     |      |                 |                          linger, close), auth.c (tokens)
 *   bridge.c (the stream switch between two links) --+
 *     |                                               |
 *   registry.c (links, services, names seen) <--------+--- (every module above)
 *
 * Every module includes relay/types.h, which has the shared layouts and includes nothing
 * from src/relay. Where a lower module must reach the one above it, it calls a hook that the
 * upper one set: hconn's on_close, on_upgraded and on_request (conn.c, http.c), up_relay's
 * link_ops (front.c upgrades a connection to a link with relay.c's ops) and pair_expired
 * (pair.c's sweep closes a waiting wsb.c side). */
#include "relay/relay.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "base/alloc.h"
#include "base/log.h"
#include "net/addr.h"
#include "net/sock.h"
#include "net/tls.h"
#include "relay/bridge.h"
#include "relay/conn.h"
#include "relay/front.h"
#include "relay/pair.h"
#include "relay/registry.h"
#include "relay/types.h"
#include "relay/wsb.h"

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

/* The relay and its copy of the config in one allocation (types.h holds only a pointer to
 * the config: its layout is relay.h's). up_free(r) frees both. */
struct relay_box {
    struct up_relay r; /* first: the box is freed through &box->r */
    struct up_relay_cfg cfg;
};

struct up_relay *up_relay_new(uv_loop_t *loop, const struct up_relay_cfg *cfg, char *err,
                              size_t cap)
{
    struct sockaddr_storage sa;
    socklen_t salen;
    if (up_addr_parse(cfg->listen, &sa, &salen) < 0) { /* before anything else is checked */
        snprintf(err, cap,
                 "--listen: '%.80s' is not IP:PORT (for example 0.0.0.0:8080 or "
                 "[::]:443)",
                 cfg->listen);
        return NULL;
    }
    struct relay_box *box = up_calloc(1, sizeof(*box));
    if (!box) {
        snprintf(err, cap, "out of memory");
        return NULL;
    }
    struct up_relay *r = &box->r;
    box->cfg = *cfg;
    r->loop = loop;
    r->cfg = &box->cfg;
    r->link_ops = &link_ops;
    r->pair_expired = wsb_pair_expired;
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
    /* The listener last: once it is started, r could only be freed from the loop. */
    r->ll = up_linkloop_new(loop);
    int e = 0;
    int rv = r->ll ? up_listener_open(&r->lsock, loop, cfg->listen, 1024, front_accept, r, r->addr,
                                      sizeof r->addr, &e)
                   : UP_ENOMEM;
    if (rv < 0) {
        if (rv == UP_ENOMEM) {
            snprintf(err, cap, "out of memory");
        } else if (e) {
            snprintf(err, cap, "cannot listen on %.80s: %s", cfg->listen, strerror(e));
        } else {
            snprintf(err, cap, "cannot watch the listening socket");
        }
        up_linkloop_unref(r->ll);
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
            (double)r->cfg->drain_timeout_ms / 1000.0, (unsigned long long)r->n.streams_active,
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
    /* No link is made after this; the ones alive hold the flusher until they are gone. */
    up_linkloop_unref(r->ll);
    r->ll = NULL;
    pair_shutdown(r);
    /* Closed now, not at exit: a replacement relay can bind the port while we drain. */
    up_listener_close(&r->lsock);
    while (r->conns) {
        hc_close(r->conns, false);
    }
    if (r->cfg->drain_timeout_ms == 0) {
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
            (double)r->cfg->drain_timeout_ms / 1000.0);
    uv_timer_init(r->loop, &r->drain_timer);
    r->drain_timer.data = r;
    r->drain_timer_on = true;
    uv_timer_start(&r->drain_timer, on_drain_timeout, r->cfg->drain_timeout_ms, 0);
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
    up_linkloop_unref(r->ll);
    up_tls_ctx_free(r->tls);
    up_free(r->seen);
    up_free(r);
}
