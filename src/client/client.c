#include "client/client.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/log.h"
#include "link/pipe.h"
#include "net/addr.h"
#include "net/sock.h"

struct up_client {
    uv_loop_t *loop;
    struct up_client_cfg cfg;
    char path[1024];
    struct up_uplink *up;
    struct up_link *link; /* borrowed from the uplink: the active link, NULL while down or
                             while a replacement for a draining link is dialed */
    struct up_listener lsock;
    bool listening;
    bool stopping;
    bool stdio_started;
    int status;
    size_t active;
    char addr[80];
    /* Local connections accepted while the relay link is down wait here (bounded in count and
     * time) instead of being dropped: a user who starts ssh right after connect, or during a
     * relay restart, gets through once the link is back. */
    /* The same holds while no agent serves the service yet (the relay refused the stream
     * with no-service before it began): after a relay restart, connect is often back before
     * the agent is. */
    struct {
        int fd;
        uint64_t since_ms; /* accepted at */
        uint64_t retry_ms; /* not before (a no-service refusal backs off) */
        bool no_agent;     /* waiting for an agent, not for the link */
        char peer[80];
    } held[UP_CLIENT_MAX_HELD];
    size_t nheld;
    uv_timer_t held_timer;
    bool held_timer_init;
};

/* One local connection's stream: what a retry needs to know. */
struct cconn {
    struct up_client *c;
    uint64_t since_ms;
    bool was_held; /* accepted while there was no link: it may wait for an agent too */
    char peer[80];
};

#define NO_SERVICE_RETRY_MS 300

static bool hold_at(struct up_client *c, int fd, const char *peer, uint64_t since_ms,
                    uint64_t retry_ms, bool no_agent);

/* A line for the user of connect --stdio (see up_client_cfg.say). */
static void say(struct up_client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(struct up_client *c, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (c->cfg.say) {
        c->cfg.say(c->cfg.say_ud, line);
    } else {
        UP_LOGW("%s", line);
    }
}

static void on_pipe_done(struct up_pipe *p, uint32_t code, const char *reason)
{
    struct cconn *cc = p->ud;
    struct up_client *c = cc->c;
    c->active--;
    if (p->returned_fd >= 0) {
        /* The relay refused the stream before it began (the pipe gave the socket back):
         * - it crossed the relay's GOAWAY (shutdown): try again on the replacement link;
         * - a connection that waited out a relay restart came back before the agent did
         *   (no-service): it waits for the agent too.
         * Both within the same --hold. A connection made while the link was up and no agent
         * serves the name fails at once, as before. */
        int fd = p->returned_fd;
        uint64_t now = uv_now(c->loop);
        bool crossed = code == UP_MUX_C_SHUTDOWN && !c->stopping;
        bool no_agent = code == UP_MUX_C_NO_SERVICE && cc->was_held && !c->stopping;
        uint64_t retry = crossed ? now : now + NO_SERVICE_RETRY_MS;
        if ((crossed || no_agent) && retry - cc->since_ms < c->cfg.hold_ms &&
            hold_at(c, fd, cc->peer, cc->since_ms, retry, no_agent)) {
            UP_LOGD("connection from %s waits: %s", cc->peer, reason ? reason : "refused");
            up_free(cc);
            return;
        }
        if (no_agent) {
            UP_LOGW("closing connection from %s: no agent served '%s' within %.1fs", cc->peer,
                    c->cfg.service, (double)c->cfg.hold_ms / 1000.0);
        }
        /* Close it as a reset stream would have been (RST). */
        up_tcp_reset_close(fd);
        if (no_agent) {
            up_free(cc);
            return;
        }
    }
    up_free(cc);
    if (code != 0) {
        if (c->cfg.stdio) {
            say(c, "stream to '%s' closed: %s%s%s", c->cfg.service, up_mux_code_name(code),
                reason && *reason ? ": " : "", reason ? reason : "");
        } else {
            UP_LOGI("stream %u to '%s' closed: %s%s%s", p->st.sid, c->cfg.service,
                    up_mux_code_name(code), reason && *reason ? ": " : "", reason ? reason : "");
        }
    }
    if (c->cfg.stdio) {
        c->status = code ? 1 : 0;
        up_client_stop(c);
    }
}

static int open_stream(struct up_client *c, int rfd, int wfd, const char *peer, uint64_t since_ms,
                       bool was_held)
{
    struct cconn *cc = up_calloc(1, sizeof(*cc));
    struct up_pipe *p = cc ? up_pipe_new(c->loop, on_pipe_done, cc) : NULL;
    if (!p) {
        up_free(cc);
        return UP_ENOMEM;
    }
    cc->c = c;
    cc->since_ms = since_ms;
    cc->was_held = was_held;
    snprintf(cc->peer, sizeof cc->peer, "%s", peer);
    p->keep_on_refusal = !c->cfg.stdio && c->cfg.hold_ms > 0;
    char meta[128];
    int ml = snprintf(meta, sizeof meta, "peer=%s\n", peer);
    int rv =
        up_link_open(c->link, &p->st, c->cfg.service, (const uint8_t *)meta,
                     ml > 0 && (size_t)ml < sizeof meta ? (size_t)ml : 0, &up_pipe_stream_ops, p);
    if (rv < 0) {
        up_free(p);
        up_free(cc);
        return rv;
    }
    c->active++;
    return up_pipe_start(p, rfd, wfd);
}

static bool hold_at(struct up_client *c, int fd, const char *peer, uint64_t since_ms,
                    uint64_t retry_ms, bool no_agent)
{
    if (c->nheld == UP_CLIENT_MAX_HELD) {
        return false;
    }
    c->held[c->nheld].fd = fd;
    c->held[c->nheld].since_ms = since_ms;
    c->held[c->nheld].retry_ms = retry_ms;
    c->held[c->nheld].no_agent = no_agent;
    snprintf(c->held[c->nheld].peer, sizeof c->held[c->nheld].peer, "%s", peer);
    c->nheld++;
    return true;
}

static void hold(struct up_client *c, int fd, const char *peer)
{
    uint64_t now = uv_now(c->loop);
    if (!hold_at(c, fd, peer, now, now, false)) {
        UP_LOGW("closing connection from %s: no link to the relay and %d waiting already", peer,
                UP_CLIENT_MAX_HELD);
        close(fd);
        return;
    }
    UP_LOGI("connection from %s waits for the relay link", peer);
}

static void on_accept(void *ud, int fd, const struct sockaddr_storage *peer)
{
    struct up_client *c = ud;
    char pa[80];
    up_addr_format((const struct sockaddr *)peer, pa, sizeof pa);
    if (up_client_adopt(c, fd, pa) < 0) {
        close(fd); /* stopping: the listener is about to close */
    }
}

/* Open streams for held connections (link up), or close those that waited too long. */
static void release_held(struct up_client *c, bool expire_only)
{
    size_t keep = 0;
    uint64_t now = uv_now(c->loop);
    size_t n = c->nheld;
    for (size_t i = 0; i < n; i++) {
        int fd = c->held[i].fd;
        if (!expire_only && c->link && now >= c->held[i].retry_ms && !c->stopping) {
            int rv = open_stream(c, fd, fd, c->held[i].peer, c->held[i].since_ms, true);
            if (rv < 0 && rv != UP_ESYS) {
                UP_LOGW("cannot open a stream for %s: %s", c->held[i].peer, up_strerror(rv));
                close(fd);
            }
            continue;
        }
        if (c->stopping || now - c->held[i].since_ms >= c->cfg.hold_ms) {
            if (c->held[i].no_agent) {
                UP_LOGW("closing connection from %s: no agent served '%s' within %.1fs",
                        c->held[i].peer, c->cfg.service, (double)c->cfg.hold_ms / 1000.0);
            } else {
                UP_LOGW("closing connection from %s: no link to the relay within %.1fs",
                        c->held[i].peer, (double)c->cfg.hold_ms / 1000.0);
            }
            close(fd);
            continue;
        }
        c->held[keep++] = c->held[i];
    }
    /* Anything held again while we went through the list sits past n. */
    for (size_t i = n; i < c->nheld; i++) {
        c->held[keep++] = c->held[i];
    }
    c->nheld = keep;
}

static void on_held_timer(uv_timer_t *t)
{
    struct up_client *c = t->data;
    release_held(c, c->link == NULL);
}

static void on_up(struct up_uplink *u, struct up_link *l)
{
    struct up_client *c = up_uplink_ud(u);
    c->link = l;
    release_held(c, false);
    if (c->cfg.stdio) {
        if (c->stdio_started) {
            return;
        }
        c->stdio_started = true;
        int rv = open_stream(c, 0, 1, "stdio", uv_now(c->loop), false);
        if (rv < 0) {
            say(c, "cannot open stream: %s", up_strerror(rv));
            c->status = 1;
            up_client_stop(c);
        }
        return;
    }
    UP_LOGI("connected to relay %s:%u; %s reaches service '%s'", c->cfg.up.host, c->cfg.up.port,
            c->addr, c->cfg.service);
}

static void on_down(struct up_uplink *u, const char *reason, int status, uint64_t retry_ms)
{
    struct up_client *c = up_uplink_ud(u);
    c->link = NULL;
    if (c->stopping) {
        return;
    }
    if (c->cfg.stdio) {
        say(c, "%s", reason);
        c->status = 1;
        up_client_stop(c);
        return;
    }
    if (status == 401 || status == 403) {
        UP_LOGE("relay refused: %s (retrying in %.1fs)", reason, (double)retry_ms / 1000.0);
    } else {
        UP_LOGW("relay link down: %s (retrying in %.1fs)", reason, (double)retry_ms / 1000.0);
    }
}

/* The relay is draining this link: streams on it go on, new local connections wait (as with
 * --hold) for the replacement link the uplink is dialing. */
static void on_drain(struct up_uplink *u, struct up_link *l, const char *reason)
{
    struct up_client *c = up_uplink_ud(u);
    (void)reason;
    if (c->link == l) {
        c->link = NULL;
    }
}

static const struct up_uplink_ops client_ops = {
    .on_up = on_up,
    .on_down = on_down,
    .on_open = NULL,
    .on_drain = on_drain,
};

struct up_client *up_client_new(uv_loop_t *loop, struct up_client_cfg *cfg, const char *base_path,
                                char *err, size_t cap)
{
    struct up_client *c = up_calloc(1, sizeof(*c));
    if (!c) {
        snprintf(err, cap, "out of memory");
        return NULL;
    }
    c->loop = loop;
    c->cfg = *cfg;
    size_t bl = strlen(base_path);
    while (bl && base_path[bl - 1] == '/') {
        bl--;
    }
    snprintf(c->path, sizeof c->path, "%.*s/v1/connect", (int)(bl > 900 ? 900 : bl), base_path);
    c->cfg.up.path = c->path;
    c->cfg.up.reconnect = !cfg->stdio;
    /* The uplink is made first and started last: a failure in between leaves nothing. */
    struct up_linkloop *ll = up_linkloop_new(loop);
    c->up = ll ? up_uplink_new(ll, &c->cfg.up, &client_ops, c) : NULL;
    up_linkloop_unref(ll); /* the uplink holds it */
    if (!c->up) {
        snprintf(err, cap, "out of memory");
        up_free(c);
        return NULL;
    }
    if (cfg->listen) {
        int e = 0;
        int rv = up_listener_open(&c->lsock, loop, cfg->listen, 1024, on_accept, c, c->addr,
                                  sizeof c->addr, &e);
        if (rv < 0) {
            if (rv == UP_EINVAL) {
                snprintf(err, cap, "--listen: '%.80s' is not IP:PORT (for example 127.0.0.1:2222)",
                         cfg->listen);
            } else if (e) {
                snprintf(err, cap, "cannot listen on %.80s: %s", cfg->listen, strerror(e));
            } else {
                snprintf(err, cap, "cannot watch the listening socket");
            }
            up_uplink_discard(c->up);
            up_free(c);
            return NULL;
        }
        c->listening = true;
    }
    if (!cfg->stdio) {
        uv_timer_init(loop, &c->held_timer);
        c->held_timer.data = c;
        c->held_timer_init = true;
        uv_timer_start(&c->held_timer, on_held_timer, 250, 250);
    }
    up_uplink_start(c->up);
    return c;
}

int up_client_adopt(struct up_client *c, int fd, const char *peer)
{
    if (c->stopping || c->cfg.stdio) {
        return UP_ESTATE;
    }
    int rv = c->link ? open_stream(c, fd, fd, peer, uv_now(c->loop), false) : UP_ESTATE;
    if (rv == UP_ESTATE) {
        hold(c, fd, peer);
        return UP_OK;
    }
    if (rv < 0 && rv != UP_ESYS) {
        UP_LOGW("cannot open a stream for %s: %s", peer, up_strerror(rv));
        close(fd);
    }
    return UP_OK;
}

int up_client_status(const struct up_client *c)
{
    return c->status;
}

const char *up_client_addr(const struct up_client *c)
{
    return c->addr;
}

void up_client_stop(struct up_client *c)
{
    if (c->stopping) {
        return;
    }
    c->stopping = true;
    if (c->listening) {
        up_listener_close(&c->lsock);
        c->listening = false;
    }
    if (c->held_timer_init) {
        uv_timer_stop(&c->held_timer);
        uv_close((uv_handle_t *)&c->held_timer, NULL);
        c->held_timer_init = false;
    }
    release_held(c, true);
    if (c->up) {
        up_uplink_stop(c->up, "connect shutting down");
        c->up = NULL;
    }
    c->link = NULL;
}

void up_client_free(struct up_client *c)
{
    up_free(c);
}
