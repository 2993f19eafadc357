/* Outbound connections: resolve, TCP connect (each address in turn), then optionally TLS and
 * the WebSocket upgrade. Used by the agent and connect for the relay link, and by the agent for
 * backends (plain TCP). One callback reports success (fd and TLS object handed over) or a
 * one-line reason a user can act on. */
#ifndef UP_LINK_DIAL_H
#define UP_LINK_DIAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct ssl_ctx_st;
struct ssl_st;
struct up_dial;
struct up_proxy;
struct up_pmd_cfg;
struct up_pmd_params;

struct up_dial_cfg {
    const char *host;
    uint16_t port;
    struct ssl_ctx_st *tls; /* NULL: plain */
    bool websocket;         /* do the HTTP upgrade */
    const char *path;       /* request target for the upgrade */
    const char *host_header;
    const char *bearer;           /* Authorization: Bearer (may be NULL) */
    uint64_t timeout_ms;          /* whole dial, 0 = none */
    const struct up_proxy *proxy; /* go through this HTTP proxy (CONNECT); NULL = direct */
    struct ssl_ctx_st *proxy_tls; /* client context for an https:// proxy */
    /* Offer permessage-deflate (RFC 7692) with these preferences (NULL: do not). The answer
     * is validated against the offer; before the callback runs, *pmd_on_out tells whether
     * the server accepted it and *pmd_out holds the negotiated parameters. */
    const struct up_pmd_cfg *pmd;
    struct up_pmd_params *pmd_out;
    bool *pmd_on_out;
};

/* err == 0: success; fd and ssl belong to the callee; leftover holds bytes read past the
 * response head. err != 0: reason explains; fd is -1. http_status is the relay's answer when
 * it refused the upgrade (401, 403 ...), else 0. */
typedef void (*up_dial_fn)(void *ud, int err, const char *reason, int http_status, int fd,
                           struct ssl_st *ssl, const uint8_t *leftover, size_t leftover_len);

/* Start dialing. Returns NULL on allocation failure. The callback runs exactly once, from the
 * loop, unless up_dial_cancel() is called first. */
struct up_dial *up_dial_start(uv_loop_t *loop, const struct up_dial_cfg *cfg, up_dial_fn cb,
                              void *ud);
/* Cancel: no callback will run; resources are released. */
void up_dial_cancel(struct up_dial *d);

#endif
