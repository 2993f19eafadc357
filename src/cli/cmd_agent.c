#include <stdio.h>
#include <string.h>

#include "agent/agent.h"
#include "base/log.h"
#include "cli/common.h"

static const struct up_opt agent_opts[] = {
    UP_DIAL_OPTS,
    {"service", UP_OPT_LIST, NULL, "NAME=tcp://HOST:PORT",
     "a service to offer through the relay (repeat for more)"},
    {"backend-timeout", UP_OPT_DURATION, "10s", "DURATION", "limit for connecting to a backend"},
    UP_LINK_OPTS,
};
#define NOPTS (sizeof agent_opts / sizeof agent_opts[0])

static void stop(void *ud)
{
    up_agent_stop(ud);
}

int cmd_agent(int argc, char **argv)
{
    struct up_opt_val v[NOPTS];
    const char *pos[4];
    size_t npos;
    bool help;
    char err[512];
    if (up_opts_parse(agent_opts, NOPTS, argc, argv, 2, v, pos, 0, &npos, &help, err, sizeof err) <
        0) {
        return cli_fail("agent", "%s", err);
    }
    if (help) {
        up_opts_help(stdout,
                     "underpass agent --relay URL --token TOKEN --service NAME=tcp://HOST:PORT...",
                     "Run next to private services. The agent dials out to the relay (no inbound\n"
                     "port is opened), registers the named services, and for each stream a client\n"
                     "opens connects to the service and copies bytes both ways. It reconnects by\n"
                     "itself with jittered exponential back-off and pings the relay to detect a\n"
                     "dead link.",
                     agent_opts, NOPTS,
                     "  underpass agent --relay wss://relay.example.com --token-file agent.jwt \\\n"
                     "      --service ssh=tcp://127.0.0.1:22 --service web=tcp://127.0.0.1:8080\n");
        return 0;
    }
    if (cli_log_setup(agent_opts, NOPTS, v, "agent") != 0) {
        return 2;
    }
    static struct up_agent_cfg cfg;
    char base[512];
    if (cli_uplink_cfg("agent", agent_opts, NOPTS, v, &cfg.up, base, sizeof base) != 0) {
        return 2;
    }
    const struct up_opt_val *svc = cli_val(agent_opts, NOPTS, v, "service");
    if (svc->nlist == 0) {
        return cli_fail("agent", "at least one --service NAME=tcp://HOST:PORT is required");
    }
    if (svc->nlist > UP_AGENT_MAX_SERVICES) {
        return cli_fail("agent", "at most %d services", UP_AGENT_MAX_SERVICES);
    }
    for (size_t i = 0; i < svc->nlist; i++) {
        if (up_agent_parse_service(svc->list[i], &cfg.services[i], err, sizeof err) < 0) {
            return cli_fail("agent", "%s", err);
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(cfg.services[i].name, cfg.services[j].name) == 0) {
                return cli_fail("agent", "service '%s' given twice", cfg.services[i].name);
            }
        }
    }
    cfg.n_services = svc->nlist;
    cfg.backend_timeout_ms = cli_val(agent_opts, NOPTS, v, "backend-timeout")->num;
    uv_loop_t *loop = uv_default_loop();
    struct up_agent *a = up_agent_new(loop, &cfg, base, err, sizeof err);
    if (!a) {
        return cli_fail("agent", "%s", err);
    }
    cli_signals(loop, stop, a);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);
    return 0;
}
