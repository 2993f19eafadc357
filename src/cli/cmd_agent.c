#include <stdio.h>
#include <string.h>

#include "agent/agent.h"
#include "base/log.h"
#include "cli/common.h"

#define agent_opts up_agent_opts
#define NOPTS up_agent_nopts

static void stop(void *ud)
{
    up_agent_drain(ud);
}

int cmd_agent(int argc, char **argv)
{
    static struct up_opt_val v[UP_OPT_MAX_TABLE];
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
    static struct up_setup_store st; /* cfg points into it */
    if (up_setup_agent(v, &st, &cfg, 0, err, sizeof err) < 0) {
        return cli_fail("agent", "%s", err);
    }
    uv_loop_t *loop = uv_default_loop();
    struct up_agent *a = up_agent_start_cfg(loop, &cfg, st.base_path, err, sizeof err);
    if (!a) {
        return cli_fail("agent", "%s", err);
    }
    cli_signals(loop, stop, a);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);
    up_agent_release(a);
    return 0;
}
