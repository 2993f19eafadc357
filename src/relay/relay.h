/* The relay: one listening port for agents (GET /v1/agent, WebSocket), clients (GET
 * /v1/connect, WebSocket), /healthz and /stats. It authenticates every link with a token, keeps
 * the registry of services, and switches streams from client links onto agent links. */
#ifndef UP_RELAY_RELAY_H
#define UP_RELAY_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "base/cidr.h"
#include "link/link.h"
#include "proto/hparse.h"

#define UP_RELAY_MAX_ROUTES 64

struct up_relay_cfg {
    const char *listen; /* host:port */
    const char *tls_cert, *tls_key;
    const uint8_t *secret;
    size_t secret_len;
    uint64_t head_timeout_ms; /* time to send a complete request head */
    size_t max_head;
    uint64_t leeway_s;
    bool stats_public;         /* serve /stats to non-loopback peers */
    uint64_t drain_timeout_ms; /* up_relay_shutdown(): time streams get to finish, 0 = none */
    /* Front proxies (--trusted-proxy): only from a TCP peer in this list are X-Forwarded-For
     * (the client's address) and X-Forwarded-Proto believed; from anyone else both are
     * ignored. Empty: nobody is trusted. */
    struct up_cidr_list trusted_proxies;
    struct up_link_cfg link;
    /* HTTP services (http.c). */
    const char *domain; /* --domain D: Host "NAME.D" reaches the http service NAME */
    struct up_hparse_route routes[UP_RELAY_MAX_ROUTES]; /* --route, up_hparse_route() */
    size_t n_routes;
    uint64_t upstream_timeout_ms;  /* request sent, no answer from the backend: 504 */
    uint64_t keepalive_timeout_ms; /* idle client connection between requests */
    const char *real_ip_header;    /* "X-Real-IP": the client's address, for the backend */
    const char *xff_header;        /* "X-Forwarded-For" */
};

struct up_relay;

/* Create the relay and start listening. On failure returns NULL with a one-line reason. */
struct up_relay *up_relay_new(uv_loop_t *loop, const struct up_relay_cfg *cfg, char *err,
                              size_t cap);
/* The address actually bound (useful with port 0). */
const char *up_relay_addr(const struct up_relay *r);
/* Stop: close the listening socket at once (a new relay may bind the port), send GOAWAY on
 * every link, route no new stream (a client OPEN after the GOAWAY is refused: RST shutdown,
 * "refused: relay is draining ..."), and let the bridged streams finish. Each link closes once
 * it has no stream left; when cfg.drain_timeout_ms expires the rest are closed and their
 * streams reset. With drain_timeout_ms 0 every link is closed at once. Logs one line when the
 * drain starts and one when it ends; the loop ends when everything is closed. Idempotent. */
void up_relay_shutdown(struct up_relay *r);
void up_relay_free(struct up_relay *r);

#endif
