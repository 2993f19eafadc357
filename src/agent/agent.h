/* The agent: dials out to the relay, registers named services, and for every stream the relay
 * opens connects to the service's backend and pipes bytes both ways. With links > 1 it keeps
 * that many independent uplinks, each registering the same services: the relay spreads new
 * streams over them and a lost link costs only its own streams. */
#ifndef UP_AGENT_AGENT_H
#define UP_AGENT_AGENT_H

#include <stdint.h>
#include <uv.h>

#include "link/uplink.h"

#define UP_AGENT_MAX_SERVICES 32
#define UP_AGENT_MAX_LINKS 16 /* --links: enough to spread load, few enough to stay polite */

/* An in-process service's stream: fd is the service's end of a socketpair (non-blocking),
 * owned by the callee from here. */
typedef void (*up_agent_stream_fn)(void *ud, const char *service, int fd, const char *client);

/* Link state, for an embedding application (include/underpass/underpass.h, enum up_event). */
enum up_agent_event { UP_AGENT_EV_UP, UP_AGENT_EV_REFUSED, UP_AGENT_EV_DOWN, UP_AGENT_EV_DRAIN };
typedef void (*up_agent_event_fn)(void *ud, enum up_agent_event ev, const char *detail,
                                  int http_status);

struct up_agent_service {
    char name[64];
    up_agent_stream_fn fn; /* set: served in-process (no host/port) */
    void *fn_ud;
    char host[256];
    uint16_t port;
    uint8_t proxy_protocol; /* 0: off; 1, 2: send a PROXY protocol v1/v2 header first */
    bool http;              /* http://: the relay reverse-proxies HTTP requests to it */
    bool protect;           /* --protect: an http service needs a client token */
};

struct up_agent_cfg {
    struct up_uplink_cfg up; /* path is built from the services */
    struct up_agent_service services[UP_AGENT_MAX_SERVICES];
    size_t n_services;
    uint64_t backend_timeout_ms; /* connect to a backend */
    size_t links;                /* independent uplinks, 1..UP_AGENT_MAX_LINKS (0 = 1) */
    uint64_t drain_timeout_ms;   /* up_agent_drain(): time streams get to finish, 0 = none */
    up_agent_event_fn on_event;  /* may be NULL */
    void *event_ud;
};

struct up_agent;

/* Parse "name=tcp://host:port[?proxy-protocol=v1|v2]" (or http://) into s. Returns 0, or -1 with a
 * reason in err. */
int up_agent_parse_service(const char *spec, struct up_agent_service *s, char *err, size_t cap);
/* Start the agent (cfg->up.path is filled here from base_path and the services). The CLI and
 * the embedding API (src/lib/api.c) both start agents here. */
struct up_agent *up_agent_start_cfg(uv_loop_t *loop, struct up_agent_cfg *cfg,
                                    const char *base_path, char *err, size_t cap);
/* Stop at once: close every link (streams reset). The loop ends once handles are closed. */
void up_agent_close(struct up_agent *a);
/* Graceful stop: GOAWAY on every link (the relay routes no new stream here; streams crossing
 * it are refused with a reason), let the streams finish for up to cfg.drain_timeout_ms, then
 * close what is left. With drain_timeout_ms 0 this is up_agent_close(). Idempotent. */
void up_agent_drain(struct up_agent *a);
/* Free the agent after the loop ended. NULL is a no-op. */
void up_agent_release(struct up_agent *a);
/* A pointer the embedding layer keeps with the agent (its options and thread). */
void up_agent_set_embed(struct up_agent *a, void *embed);
void *up_agent_embed(const struct up_agent *a);

#endif
