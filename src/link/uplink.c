#include "link/uplink.h"

#include <openssl/ssl.h>
#include <string.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/crypto.h"
#include "base/log.h"
#include "link/dial.h"

struct up_uplink {
    uv_loop_t *loop;
    struct up_linkloop *ll; /* one reference held */
    struct up_uplink_cfg cfg;
    const struct up_uplink_ops *ops;
    void *ud;
    struct up_dial *dial;
    struct up_link *link;                             /* the active link; NULL while down */
    struct up_link *draining[UP_UPLINK_MAX_DRAINING]; /* after a GOAWAY, oldest first */
    size_t ndraining;
    uv_timer_t timer;
    uint64_t backoff_ms;
    bool stopping;     /* up_uplink_stop(): free once everything is closed */
    bool draining_all; /* up_uplink_drain(): report on_drained, then free */
    bool timer_closing;
    bool timer_closed;
};

static void dial_now(struct up_uplink *u);

static void maybe_free(struct up_uplink *u)
{
    if (!(u->stopping || u->draining_all) || !u->timer_closed || u->link || u->ndraining ||
        u->dial) {
        return;
    }
    if (!u->stopping && u->ops->on_drained) {
        u->ops->on_drained(u);
    }
    up_linkloop_unref(u->ll);
    up_free(u);
}

static void timer_closed(uv_handle_t *h)
{
    struct up_uplink *u = h->data;
    u->timer_closed = true;
    maybe_free(u);
}

static void close_timer(struct up_uplink *u)
{
    if (u->timer_closing) {
        return;
    }
    u->timer_closing = true;
    uv_timer_stop(&u->timer);
    uv_close((uv_handle_t *)&u->timer, timer_closed);
}

static void on_timer(uv_timer_t *t)
{
    dial_now(t->data);
}

static uint32_t random_u32(void)
{
    uint32_t r = 0;
    if (up_random_bytes(&r, sizeof r) < 0) {
        r = 0x7fffffff;
    }
    return r;
}

/* Delay for the next attempt: exponential with "equal jitter" (half fixed, half random). */
static uint64_t next_delay(struct up_uplink *u)
{
    uint64_t d = u->backoff_ms;
    u->backoff_ms =
        u->backoff_ms * 2 > u->cfg.backoff_max_ms ? u->cfg.backoff_max_ms : u->backoff_ms * 2;
    uint32_t r = random_u32();
    return d / 2 + (d / 2 + 1) * r / UINT32_MAX;
}

static bool winding_down(const struct up_uplink *u)
{
    return u->stopping || u->draining_all;
}

static void schedule_retry(struct up_uplink *u, const char *reason, int status)
{
    uint64_t delay = (u->cfg.reconnect && !winding_down(u)) ? next_delay(u) : 0;
    u->ops->on_down(u, reason, status, delay);
    if (delay && !winding_down(u)) {
        uv_timer_start(&u->timer, on_timer, delay, 0);
    }
}

static void on_link_open(struct up_link *l, uint32_t sid, uint32_t window, const char *name,
                         size_t name_len, const uint8_t *meta, size_t meta_len)
{
    struct up_uplink *u = up_link_ud(l);
    if (u->ops->on_open) {
        u->ops->on_open(u, l, sid, window, name, name_len, meta, meta_len);
    } else {
        up_link_refuse(l, sid, UP_MUX_C_PROTOCOL, "this side does not accept streams");
    }
}

static bool drop_draining(struct up_uplink *u, struct up_link *l)
{
    for (size_t i = 0; i < u->ndraining; i++) {
        if (u->draining[i] == l) {
            memmove(&u->draining[i], &u->draining[i + 1],
                    (u->ndraining - i - 1) * sizeof(u->draining[0]));
            u->ndraining--;
            return true;
        }
    }
    return false;
}

static void on_link_goaway(struct up_link *l, uint32_t code, const char *reason)
{
    struct up_uplink *u = up_link_ud(l);
    if (l != u->link) {
        return; /* already draining, or we are the ones going away */
    }
    u->link = NULL;
    if (u->ndraining == UP_UPLINK_MAX_DRAINING) {
        /* Bounded: a relay that keeps sending GOAWAY costs us the oldest link's streams. */
        struct up_link *oldest = u->draining[0];
        drop_draining(u, oldest);
        up_link_close(oldest, "too many draining links to the relay");
    }
    u->draining[u->ndraining++] = l;
    up_link_close_when_idle(l, "its streams finished");
    size_t n = up_link_nstreams(l);
    bool redial = u->cfg.reconnect && !winding_down(u);
    UP_LOGI("relay asked us to go away (%s: %s); %s%zu stream(s) finish on the old link",
            up_mux_code_name(code), reason, redial ? "dialing a new link, " : "", n);
    if (u->ops->on_drain) {
        u->ops->on_drain(u, l, reason);
    }
    if (redial && !u->dial) {
        /* Right away, but not the whole fleet in the same millisecond. */
        uint64_t jitter = (uint64_t)random_u32() % (UP_UPLINK_GOAWAY_JITTER_MS + 1);
        uv_timer_stop(&u->timer);
        uv_timer_start(&u->timer, on_timer, jitter, 0);
    }
}

static void on_link_close(struct up_link *l, const char *reason)
{
    struct up_uplink *u = up_link_ud(l);
    if (l != u->link) {
        if (drop_draining(u, l)) {
            UP_LOGI("old link to the relay closed: %s", reason);
        }
        maybe_free(u);
        return;
    }
    u->link = NULL;
    if (winding_down(u)) {
        maybe_free(u);
        return;
    }
    schedule_retry(u, reason, 0);
}

static const struct up_link_ops uplink_link_ops = {
    .on_open = on_link_open,
    .on_goaway = on_link_goaway,
    .on_close = on_link_close,
};

static void on_dialed(void *ud, int err, const char *reason, int http_status, int fd,
                      struct ssl_st *ssl, const uint8_t *leftover, size_t leftover_len)
{
    struct up_uplink *u = ud;
    u->dial = NULL;
    if (winding_down(u)) {
        if (err == 0) {
            SSL_free(ssl);
            close(fd);
        }
        maybe_free(u);
        return;
    }
    if (err) {
        schedule_retry(u, reason, http_status);
        return;
    }
    u->link = up_link_new(u->ll, fd, ssl, true, &u->cfg.link, &uplink_link_ops, u, leftover,
                          leftover_len);
    if (!u->link) {
        schedule_retry(u, "out of memory", 0);
        return;
    }
    u->backoff_ms = u->cfg.backoff_min_ms;
    u->ops->on_up(u, u->link);
}

static void dial_now(struct up_uplink *u)
{
    if (u->dial || u->link || winding_down(u)) {
        return;
    }
    struct up_dial_cfg dc = {
        .host = u->cfg.host,
        .port = u->cfg.port,
        .tls = u->cfg.tls,
        .websocket = true,
        .path = u->cfg.path,
        .host_header = u->cfg.host_header,
        .bearer = u->cfg.token,
        .timeout_ms = u->cfg.dial_timeout_ms,
        .proxy = u->cfg.proxy,
        .proxy_tls = u->cfg.proxy_tls,
    };
    u->dial = up_dial_start(u->loop, &dc, on_dialed, u);
    if (!u->dial) {
        schedule_retry(u, "cannot start dialing", 0);
    }
}

struct up_uplink *up_uplink_new(struct up_linkloop *ll, const struct up_uplink_cfg *cfg,
                                const struct up_uplink_ops *ops, void *ud)
{
    struct up_uplink *u = up_calloc(1, sizeof(*u));
    if (!u) {
        return NULL;
    }
    uv_loop_t *loop = up_linkloop_loop(ll);
    u->loop = loop;
    u->ll = up_linkloop_ref(ll);
    u->cfg = *cfg;
    u->ops = ops;
    u->ud = ud;
    u->backoff_ms = cfg->backoff_min_ms ? cfg->backoff_min_ms : 500;
    if (u->cfg.backoff_max_ms < u->backoff_ms) {
        u->cfg.backoff_max_ms = u->backoff_ms;
    }
    return u;
}

void up_uplink_start(struct up_uplink *u)
{
    uv_timer_init(u->loop, &u->timer);
    u->timer.data = u;
    dial_now(u);
}

void up_uplink_discard(struct up_uplink *u)
{
    if (u) {
        up_linkloop_unref(u->ll);
        up_free(u);
    }
}

void *up_uplink_ud(const struct up_uplink *u)
{
    return u->ud;
}

void up_uplink_stop(struct up_uplink *u, const char *reason)
{
    if (u->stopping) {
        return;
    }
    u->stopping = true;
    close_timer(u);
    if (u->dial) {
        up_dial_cancel(u->dial);
        u->dial = NULL;
    }
    /* up_link_close() only marks the links; their on_close runs from the loop. */
    if (u->link) {
        up_link_close(u->link, reason);
    }
    for (size_t i = 0; i < u->ndraining; i++) {
        up_link_close(u->draining[i], reason);
    }
}

void up_uplink_drain(struct up_uplink *u, const char *reason)
{
    if (winding_down(u)) {
        return;
    }
    u->draining_all = true;
    close_timer(u);
    if (u->dial) {
        up_dial_cancel(u->dial);
        u->dial = NULL;
    }
    if (u->link) {
        up_link_goaway(u->link, UP_MUX_C_SHUTDOWN, reason);
        up_link_close_when_idle(u->link, reason);
    }
    for (size_t i = 0; i < u->ndraining; i++) {
        up_link_goaway(u->draining[i], UP_MUX_C_SHUTDOWN, reason);
    }
}
