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
    struct up_uplink_cfg cfg;
    const struct up_uplink_ops *ops;
    void *ud;
    struct up_dial *dial;
    struct up_link *link;
    uv_timer_t timer;
    uint64_t backoff_ms;
    bool stopping;
    bool timer_closed;
};

static void dial_now(struct up_uplink *u);

static void maybe_free(struct up_uplink *u)
{
    if (u->stopping && u->timer_closed && !u->link && !u->dial) {
        up_free(u);
    }
}

static void timer_closed(uv_handle_t *h)
{
    struct up_uplink *u = h->data;
    u->timer_closed = true;
    maybe_free(u);
}

static void on_timer(uv_timer_t *t)
{
    dial_now(t->data);
}

/* Delay for the next attempt: exponential with "equal jitter" (half fixed, half random). */
static uint64_t next_delay(struct up_uplink *u)
{
    uint64_t d = u->backoff_ms;
    u->backoff_ms =
        u->backoff_ms * 2 > u->cfg.backoff_max_ms ? u->cfg.backoff_max_ms : u->backoff_ms * 2;
    uint32_t r = 0;
    if (up_random_bytes(&r, sizeof r) < 0) {
        r = 0x7fffffff;
    }
    return d / 2 + (d / 2 + 1) * r / UINT32_MAX;
}

static void schedule_retry(struct up_uplink *u, const char *reason, int status)
{
    uint64_t delay = (u->cfg.reconnect && !u->stopping) ? next_delay(u) : 0;
    u->ops->on_down(u, reason, status, delay);
    if (delay && !u->stopping) {
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

static void on_link_goaway(struct up_link *l, uint32_t code, const char *reason)
{
    struct up_uplink *u = up_link_ud(l);
    UP_LOGI("relay asked us to go away (%s: %s)", up_mux_code_name(code), reason);
    (void)u;
}

static void on_link_close(struct up_link *l, const char *reason)
{
    struct up_uplink *u = up_link_ud(l);
    u->link = NULL;
    if (u->stopping) {
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
    if (u->stopping) {
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
    u->link = up_link_new(u->loop, fd, ssl, true, &u->cfg.link, &uplink_link_ops, u, leftover,
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

struct up_uplink *up_uplink_new(uv_loop_t *loop, const struct up_uplink_cfg *cfg,
                                const struct up_uplink_ops *ops, void *ud)
{
    struct up_uplink *u = up_calloc(1, sizeof(*u));
    if (!u) {
        return NULL;
    }
    u->loop = loop;
    u->cfg = *cfg;
    u->ops = ops;
    u->ud = ud;
    u->backoff_ms = cfg->backoff_min_ms ? cfg->backoff_min_ms : 500;
    if (u->cfg.backoff_max_ms < u->backoff_ms) {
        u->cfg.backoff_max_ms = u->backoff_ms;
    }
    uv_timer_init(loop, &u->timer);
    u->timer.data = u;
    dial_now(u);
    return u;
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
    uv_timer_stop(&u->timer);
    uv_close((uv_handle_t *)&u->timer, timer_closed);
    if (u->dial) {
        up_dial_cancel(u->dial);
        u->dial = NULL;
    }
    if (u->link) {
        up_link_close(u->link, reason);
    }
}
