/* An uplink keeps one link to the relay up: dial, upgrade, and on any loss reconnect with
 * capped, jittered exponential back-off (0.5 s doubling to 30 s by default) so that a fleet of
 * agents does not return in the same millisecond after a relay restart. */
#ifndef UP_LINK_UPLINK_H
#define UP_LINK_UPLINK_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "link/link.h"

struct up_uplink;
struct up_proxy;

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
};

struct up_uplink *up_uplink_new(uv_loop_t *loop, const struct up_uplink_cfg *cfg,
                                const struct up_uplink_ops *ops, void *ud);
void *up_uplink_ud(const struct up_uplink *u);
/* Stop: close the link (streams reset), cancel dials and timers. The uplink frees itself. */
void up_uplink_stop(struct up_uplink *u, const char *reason);

#endif
