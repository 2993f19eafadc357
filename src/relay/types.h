/* The layouts the relay's modules share, and nothing else: no functions, and no header from
 * src/relay, so every module can include it without a cycle (STYLE §2, a `*_types.h`). Each
 * struct's fields are touched only by the modules named on it. Not a public interface. */
#ifndef UP_RELAY_TYPES_H
#define UP_RELAY_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <uv.h>

#include "base/buf.h"
#include "net/sock.h"
#include "link/link.h"
#include "proto/h1.h"
#include "proto/h1body.h"
#include "proto/hparse.h"
#include "proto/token.h"
#include "proto/ws.h"

struct up_relay_cfg;

#define HCONN_MAX_HEADERS 64
#define API_MAX_BODY 8192 /* /api/ request bodies (JSON) */

enum rlink_role { RL_AGENT, RL_CLIENT };

/* What an agent registered a service as (?http=a,b&protect=a). */
#define RS_HTTP UP_HPARSE_SVC_HTTP       /* an HTTP backend: reachable through the proxy */
#define RS_PROTECT UP_HPARSE_SVC_PROTECT /* ... only with a client token (Bearer or cookie) */

/* A link that passed the front door (front.c makes it, registry.c lists and frees it). */
struct rlink {
    struct up_relay *relay;
    struct up_link *link; /* owned by itself; NULL once closed */
    enum rlink_role role;
    struct up_token_claims claims;
    char peer[64];  /* the client: the TCP peer, or X-Forwarded-For's from a trusted proxy */
    char local[64]; /* our end of the TCP connection: the PROXY protocol destination */
    char desc[160]; /* peer for logs, with " (via proxy P, https)" when it came through one */
    char services[UP_TOKEN_MAX_SERVICES][UP_TOKEN_MAX_NAME + 1]; /* agents: what it serves */
    uint8_t svc_flags[UP_TOKEN_MAX_SERVICES]; /* RS_HTTP, RS_PROTECT per service */
    size_t n_services;
    bool draining; /* GOAWAY sent or received: no new stream goes to this link */
    struct rlink *next, *prev;
};

/* The front door's connection states (conn.c, front.c; HC_PROXY http.c, HC_WSB wsb.c). */
enum hc_state {
    HC_TLS,    /* TLS handshake */
    HC_PROXY,  /* proxying requests to an http service (http.c) */
    HC_WSB,    /* a browser's WebSocket: /s/<service> or /pair/<token> (wsb.c) */
    HC_HEAD,   /* reading the request head */
    HC_WRITE,  /* writing a response, then either upgrade or linger */
    HC_LINGER, /* response sent, write side shut, draining input until EOF or timeout */
};

/* Reverse proxy state of a client connection (http.c): requests go to one stream on an agent
 * link, unchanged but for their heads, responses come back unchanged. */
enum px_rq {
    PXQ_HEAD,    /* waiting for the next request head */
    PXQ_BODY,    /* forwarding a request body (rqb frames it) */
    PXQ_UPGRADE, /* an Upgrade request went out: hold the client's bytes until the answer */
    PXQ_TUNNEL,  /* the backend answered 101: raw bytes both ways */
    PXQ_DONE,    /* no more requests on this connection (Connection: close, or EOF) */
};
enum px_rs {
    PXS_HEAD,   /* waiting for (or collecting) a response head */
    PXS_BODY,   /* forwarding a response body (rsb frames it) */
    PXS_TUNNEL, /* after 101 */
};
#define PX_MAX_PIPELINE 16 /* requests forwarded and not yet answered */
#define PXR_HEAD 1u        /* queued request flags: a HEAD request (answer has no body) */
#define PXR_UPGRADE 2u     /* asked for an Upgrade */
#define PXR_CONNECT 4u

struct hproxy {
    struct up_lstream st; /* on the agent's link while on_link */
    bool on_link;         /* st is registered with a link */
    bool accepted;
    bool fin_out; /* we will send FIN once head/in are drained (client EOF) */
    bool fin_in;  /* the agent sent FIN */
    bool client_eof;
    bool close_after; /* close the client connection once out drains */
    bool rs_sent;     /* bytes of the current response went to the client */
    bool timer_on;
    uint8_t timer_kind;  /* what the timer is for (http.c) */
    bool bad_body;       /* the client's body framing broke: answer 400 */
    bool req_close;      /* the client asked to close after its last request */
    bool close_after_rs; /* ... the backend did, after the current response */
    bool shut_client;    /* after 101, the backend finished: our write side to the client shut */
    uint8_t rq_flags;    /* PXR_* of the request being sent */
    uint8_t svc_flags;   /* RS_* of the service the stream goes to */
    bool kicked;         /* a callback was asked for (write interest), not yet come */
    char service[UP_TOKEN_MAX_NAME + 1];
    enum px_rq rq;
    enum px_rs rs;
    struct up_buf head;   /* rewritten request head waiting for the stream */
    struct up_h1body rqb; /* the request body in flight */
    struct up_h1body rsb; /* the response body in flight */
    struct up_buf rhead;  /* a response head being collected */
    size_t rscan;
    uint8_t q[PX_MAX_PIPELINE]; /* flags of requests sent and not answered, oldest first */
    size_t qh, qn;
    size_t owed;      /* stream bytes taken from the link and not yet written to the client */
    uv_timer_t timer; /* upstream (504) and keep-alive idle timeouts */
};

/* A browser's WebSocket bridged to a stream (/s/<service>, a service pairing) or to the other
 * side of a rendezvous pairing (wsb.c): binary (and text) message payloads are bytes. */
enum wsb_kind { WSB_SERVICE, WSB_PAIR_HOST, WSB_PAIR_BROWSER };
#define PAIR_TOKEN_LEN 32 /* base64url of 24 random bytes: 192 bits */

/* A pairing token (pair.c; wsb.c joins the sides). */
struct pairing {
    char token[PAIR_TOKEN_LEN + 1];
    uint64_t expires_ms;                 /* uv_now() */
    char service[UP_TOKEN_MAX_NAME + 1]; /* "" for a rendezvous */
    struct hconn *host, *browser;        /* waiting sides (borrowed) */
    bool host_used, browser_used;
    bool joined;
    struct pairing *next;
};

struct hwsb {
    struct up_lstream st; /* WSB_SERVICE: on the agent's link while on_link */
    bool on_link;
    bool accepted;
    bool paired;   /* data may flow (always for /s/) */
    bool announce; /* send the text message "paired" when the stream is accepted */
    bool fin_out;  /* the browser finished: FIN the stream once pend is drained */
    bool ending;   /* our close frame is queued: flush it, then close the connection */
    bool kicked;   /* a callback was asked for (write interest), not yet come */
    uint8_t kind;  /* enum wsb_kind */
    struct up_ws_parser wp;
    struct up_buf pend; /* payload read from the browser, waiting for credit / the peer's room */
    size_t owed;        /* stream bytes in c->out not yet written (their credit is owed) */
    struct hconn *peer; /* rendezvous: the other side, once joined */
    struct pairing *pair;
    char service[UP_TOKEN_MAX_NAME + 1];
};

/* A connection at the front door (conn.c, front.c), and what it turned into: px (http.c) or
 * ws (wsb.c). The hooks let conn.c and http.c call up into the module that owns the
 * connection's current use, so that no module calls into one above it. */
struct hconn {
    struct up_relay *relay;
    struct up_sock *sock; /* owned */
    uv_timer_t timer;
    enum hc_state state;
    struct up_buf in, out;
    size_t scan;
    bool upgrade_after;    /* after out drains, become a link */
    struct rlink *pending; /* the link-to-be */
    int open_handles;
    bool closing;
    char peer[64];        /* the TCP peer, IP:PORT */
    uint8_t peer_ip[16];  /* ... as an address, for --trusted-proxy */
    char local[64];       /* our end of the connection, IP:PORT */
    char client[64];      /* who is calling: peer, or the client a trusted proxy names */
    char via[64];         /* the trusted proxy (peer) when client came from it, else "" */
    char proto[8];        /* X-Forwarded-Proto from a trusted proxy, or "" */
    bool client_loopback; /* /stats is served to loopback clients only */
    bool px_on;           /* px is in use (its timer is open) */
    struct hproxy px;
    bool wsb_on; /* ws is in use: the upgrade becomes a bridge, not a link */
    struct hwsb ws;
    /* The connection closes: leave links, peers, timers (http.c, wsb.c). May be NULL. */
    void (*on_close)(struct hconn *c);
    /* The 101 is written (upgrade_after): become a link (front.c) or a bridge (wsb.c). */
    void (*on_upgraded)(struct hconn *c);
    /* A request head for the relay itself, at the start of in (front.c's router; http.c
     * hands back the requests of a proxied connection that name no service). */
    void (*on_request)(struct hconn *c, const struct up_h1_msg *m);
    struct hconn *next, *prev;
};

/* The relay (relay.c makes and ends it; the lists and counters are their modules'). */
struct up_relay {
    uv_loop_t *loop;
    struct up_linkloop *ll;             /* the links' flusher; released at shutdown */
    const struct up_relay_cfg *cfg;     /* owned: a copy of up_relay_new()'s */
    const struct up_link_ops *link_ops; /* relay.c's, for the links front.c makes */
    struct up_listener lsock;
    struct ssl_ctx_st *tls;
    char addr[80];
    struct hconn *conns;
    struct rlink *links;
    bool shutting;
    bool drain_timer_on;
    bool drain_expired;
    uv_timer_t drain_timer;
    uint64_t drain_started_ms;
    time_t started;
    struct {
        uint64_t links_total, rejected, http_requests, http_errors;
        uint64_t streams_total, streams_refused, streams_active;
        uint64_t bytes_relayed;
        uint64_t http_proxied; /* requests forwarded to http services */
    } n;
    /* Service names agents registered since start: a request for one of them that is offline
     * gets 503, for a name never seen 404. */
    char (*seen)[UP_TOKEN_MAX_NAME + 1];
    size_t n_seen, cap_seen;
    struct pairing *pairings;
    size_t n_pairings;
    uv_timer_t pair_timer; /* expiry sweep, while pairings exist */
    bool pair_timer_init;
    /* A side that waited for a pairing that expired: close it (wsb.c's, set by relay.c). */
    void (*pair_expired)(struct hconn *c);
};

#endif
