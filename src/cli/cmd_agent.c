#include <stdio.h>
#include <string.h>

#include "agent/agent.h"
#include "base/log.h"
#include "cli/common.h"

static const struct up_opt agent_opts[] = {
    UP_DIAL_OPTS,
    {"service", UP_OPT_LIST, NULL, "NAME=tcp|http://HOST:PORT[?proxy-protocol=v1|v2]",
     "a service to offer through the relay (repeat for more). tcp:// services are reached with a "
     "client token (underpass connect, wss://relay/s/NAME); http:// services also through the "
     "relay's HTTP reverse proxy, without a token unless --protect names them. ?proxy-protocol=v1 "
     "or =v2 sends the backend a PROXY protocol header (haproxy's) with the client's address "
     "first"},
    {"protect", UP_OPT_LIST, NULL, "NAME",
     "an http service that needs a client token on the relay's reverse proxy too (Authorization: "
     "Bearer, or once ?underpass_token=TOKEN, which sets a cookie); repeat for more"},
    {"backend-timeout", UP_OPT_DURATION, "10s", "DURATION", "limit for connecting to a backend"},
    {"links", UP_OPT_U64, "1", "N",
     "independent links to the relay (1-16), each serving every service; the relay spreads new "
     "streams over them"},
    {"drain-timeout", UP_OPT_DURATION, "30s", "DURATION",
     "on SIGTERM/SIGINT, time streams get to finish before the agent exits (0 = exit at once)"},
    UP_LINK_OPTS,
    {"no-splice", UP_OPT_FLAG, NULL, NULL,
     "copy relayed bytes through user space instead of moving them with splice(2) "
     "(plain ws:// links only; for kernels or sockets where splice misbehaves)"},
};
#define NOPTS (sizeof agent_opts / sizeof agent_opts[0])

static void stop(void *ud)
{
    up_agent_shutdown(ud);
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
        up_opts_help(
            stdout, "underpass agent --relay URL --token TOKEN --service NAME=tcp://HOST:PORT...",
            "Run next to private services. The agent dials out to the relay (no inbound\n"
            "port is opened), registers the named services, and for each stream a client\n"
            "opens connects to the service and copies bytes both ways. It reconnects by\n"
            "itself with jittered exponential back-off and pings the relay to detect a\n"
            "dead link. When the relay drains (GOAWAY, e.g. before a restart) the agent\n"
            "dials a new link at once and keeps the old one until its streams end.\n"
            "SIGTERM or SIGINT drains the agent: it sends GOAWAY so the relay routes new\n"
            "streams elsewhere, waits up to --drain-timeout for its streams, then exits.\n"
            "A second SIGTERM/SIGINT ends it at once.\n"
            "\n"
            "With ?proxy-protocol=v1 (text) or =v2 (binary) on a service, every\n"
            "connection to its backend starts with a PROXY protocol header naming the\n"
            "client as the relay saw it (behind a reverse proxy: as the proxy forwarded\n"
            "it, if the relay trusts that proxy) and the relay's address as the\n"
            "destination; when the relay did not say, the header says so (v1 UNKNOWN,\n"
            "v2 LOCAL). The backend must expect the header (nginx: listen ...\n"
            "proxy_protocol; haproxy: accept-proxy; sshd cannot).",
            agent_opts, NOPTS,
            "  underpass agent --relay wss://relay.example.com --token-file agent.jwt \\\n"
            "      --service ssh=tcp://127.0.0.1:22 --service web=tcp://127.0.0.1:8080\n"
            "  underpass agent --relay wss://relay.example.com --token-file agent.jwt \\\n"
            "      --service 'web=tcp://127.0.0.1:8081?proxy-protocol=v2'\n"
            "  underpass agent --relay wss://relay.example.com --token-file agent.jwt \\\n"
            "      --service web=http://127.0.0.1:8080 --service admin=http://127.0.0.1:9090 "
            "--protect admin\n");
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
    const struct up_opt_val *prot = cli_val(agent_opts, NOPTS, v, "protect");
    for (size_t i = 0; i < prot->nlist; i++) {
        size_t j = 0;
        while (j < cfg.n_services && strcmp(cfg.services[j].name, prot->list[i]) != 0) {
            j++;
        }
        if (j == cfg.n_services) {
            return cli_fail("agent", "--protect %s: no such --service", prot->list[i]);
        }
        if (!cfg.services[j].http) {
            return cli_fail("agent",
                            "--protect %s: only http:// services are protected this way (a tcp "
                            "service always needs a client token)",
                            prot->list[i]);
        }
        cfg.services[j].protect = true;
    }
    cfg.backend_timeout_ms = cli_val(agent_opts, NOPTS, v, "backend-timeout")->num;
    uint64_t links = cli_val(agent_opts, NOPTS, v, "links")->num;
    if (links < 1 || links > UP_AGENT_MAX_LINKS) {
        return cli_fail("agent", "--links must be 1..%d", UP_AGENT_MAX_LINKS);
    }
    cfg.links = (size_t)links;
    cfg.drain_timeout_ms = cli_val(agent_opts, NOPTS, v, "drain-timeout")->num;
    uv_loop_t *loop = uv_default_loop();
    struct up_agent *a = up_agent_new(loop, &cfg, base, err, sizeof err);
    if (!a) {
        return cli_fail("agent", "%s", err);
    }
    cli_signals(loop, stop, a);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);
    up_agent_free(a);
    return 0;
}
