/* An uplink keeps one link to the relay up: dial, upgrade, and on any loss reconnect with
 * capped, jittered exponential back-off (0.5 s doubling to 30 s by default) so that a fleet of
 * agents does not return in the same millisecond after a relay restart.
 *
 * When the relay sends GOAWAY (it is draining, e.g. before a restart), the link becomes a
 * draining link: no new streams go to it, its streams go on, and it closes once they ended (or
 * the relay closes it). A replacement is dialed at once, after 0-250 ms of random jitter, so an
 * uplink holds one active link plus up to UP_UPLINK_MAX_DRAINING draining ones. */
#ifndef UP_LINK_UPLINK_H
#define UP_LINK_UPLINK_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "link/link.h"

struct up_uplink;
struct up_proxy;

#define UP_UPLINK_MAX_DRAINING 4       /* old links kept for their streams; the oldest is closed */
#define UP_UPLINK_GOAWAY_JITTER_MS 250 /* spread a fleet's replacement dials after a GOAWAY */

struct up_uplink_cfg {
    const char *host;
    uint16_t port;
    const char *host_header;
    const char *path; /* request target, e.g. /v1/agent?services=ssh */
    const char *token;
    struct ssl_ctx_st *tls;       /* NULL for ws:// */
    const struct up_proxy *proxy; /* HTTP proxy on the way out; NULL = direct */
    struct ssl_ctx_st *proxy_tls; /* for an https:// proxy */
    struct up_link_cfg link;
    uint64_t backoff_min_ms, backoff_max_ms, dial_timeout_ms;
    bool reconnect; /* false: report the first failure and stop */
};

struct up_uplink_ops {
    void (*on_up)(struct up_uplink *u, struct up_link *l);
    /* The link failed or went down. http_status is set when the relay refused the upgrade.
     * retry_ms is the delay before the next attempt (0: no retry). */
    void (*on_down)(struct up_uplink *u, const char *reason, int http_status, uint64_t retry_ms);
    /* Streams the relay opens (agents). */
    void (*on_open)(struct up_uplink *u, struct up_link *l, uint32_t sid, uint32_t window,
                    const char *name, size_t name_len, const uint8_t *meta, size_t meta_len);
    /* The relay sent GOAWAY on l, the active link: open no new streams on l (it stays up for
     * its streams, then closes by itself; on_down is not called for it). A replacement is on
     * its way (on_up) unless cfg.reconnect is false. May be NULL. */
    void (*on_drain)(struct up_uplink *u, struct up_link *l, const char *reason);
    /* After up_uplink_drain(): every link has closed. The uplink frees itself right after
     * this returns; the owner must forget u and not call into it. May be NULL. */
    void (*on_drained)(struct up_uplink *u);
};

/* Make an uplink for ll's loop (it holds a reference to ll until it has freed itself); nothing
 * runs until up_uplink_start(), so an owner that fails half-way through its own start-up can
 * drop it with up_uplink_discard(). Returns NULL when out of memory. */
struct up_uplink *up_uplink_new(struct up_linkloop *ll, const struct up_uplink_cfg *cfg,
                                const struct up_uplink_ops *ops, void *ud);
/* Start dialing (and reconnecting). */
void up_uplink_start(struct up_uplink *u);
/* Free an uplink that was never started. NULL is a no-op. */
void up_uplink_discard(struct up_uplink *u);
void *up_uplink_ud(const struct up_uplink *u);
/* Stop: close every link, active and draining (their streams reset), cancel dials and timers.
 * The uplink frees itself once its handles are closed; on_drained is not called. Idempotent;
 * may also cut short an up_uplink_drain() (until on_drained has run). */
void up_uplink_stop(struct up_uplink *u, const char *reason);
/* Drain: send GOAWAY (code shutdown, reason) on every link so the relay routes no new stream
 * here, refuse what crosses it, stop dialing, and let each link close once its streams ended.
 * Then ops->on_drained runs and the uplink frees itself. No-op after up_uplink_stop(). */
void up_uplink_drain(struct up_uplink *u, const char *reason);

#endif
