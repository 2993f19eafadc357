/* The agent: dials out to the relay, registers named services, and for every stream the relay
 * opens connects to the service's backend and pipes bytes both ways. */
#ifndef UP_AGENT_AGENT_H
#define UP_AGENT_AGENT_H

#include <stdint.h>
#include <uv.h>

#include "link/uplink.h"

#define UP_AGENT_MAX_SERVICES 32

struct up_agent_service {
    char name[64];
    char host[256];
    uint16_t port;
};

struct up_agent_cfg {
    struct up_uplink_cfg up; /* path is built from the services */
    struct up_agent_service services[UP_AGENT_MAX_SERVICES];
    size_t n_services;
    uint64_t backend_timeout_ms; /* connect to a backend */
};

struct up_agent;

/* Parse "name=tcp://host:port" into s. Returns 0, or -1 with a reason in err. */
int up_agent_parse_service(const char *spec, struct up_agent_service *s, char *err, size_t cap);
/* Start the agent (cfg->up.path is filled here from base_path and the services). */
struct up_agent *up_agent_new(uv_loop_t *loop, struct up_agent_cfg *cfg, const char *base_path,
                              char *err, size_t cap);
void up_agent_stop(struct up_agent *a);

#endif
