#include <stdio.h>
#include <string.h>

#include "base/log.h"
#include "cli/common.h"
#include "client/client.h"
#include "proto/token.h"

#define connect_opts up_connect_opts
#define NOPTS up_connect_nopts

static void say_stderr(void *ud, const char *line)
{
    (void)ud;
    fprintf(stderr, "underpass connect: %s\n", line);
}

static void stop(void *ud)
{
    up_client_stop(ud);
}

int cmd_connect(int argc, char **argv)
{
    static struct up_opt_val v[UP_OPT_MAX_TABLE];
    const char *pos[4];
    size_t npos;
    bool help;
    char err[512];
    if (up_opts_parse(connect_opts, NOPTS, argc, argv, 2, v, pos, 2, &npos, &help, err,
                      sizeof err) < 0) {
        return cli_fail("connect", "%s", err);
    }
    if (help) {
        up_opts_help(stdout,
                     "underpass connect --relay URL --token TOKEN SERVICE (--listen IP:PORT | "
                     "--stdio)",
                     "Reach SERVICE through the relay: from a local port (each accepted\n"
                     "connection becomes one stream) or from stdin/stdout (one stream; the\n"
                     "process exits when it ends, with status 1 if it failed). When the relay\n"
                     "drains (GOAWAY, e.g. before a restart), open streams finish on the old link\n"
                     "while a new link is dialed at once; local connections accepted meanwhile\n"
                     "wait for it (--hold).",
                     connect_opts, NOPTS,
                     "  underpass connect --relay wss://relay.example.com --token-file me.jwt ssh "
                     "--listen 127.0.0.1:2222\n"
                     "  ssh -o ProxyCommand='underpass connect --relay wss://relay.example.com "
                     "--token-file me.jwt ssh --stdio' user@box\n");
        return 0;
    }
    if (npos != 1) {
        return cli_fail("connect", "name exactly one SERVICE (see --help)");
    }
    if (!up_token_valid_service_name(pos[0], strlen(pos[0])) || strcmp(pos[0], "*") == 0) {
        return cli_fail("connect", "'%s' is not a valid service name", pos[0]);
    }
    static struct up_client_cfg cfg;
    static struct up_setup_store st; /* cfg points into it */
    cfg.listen = cli_val(connect_opts, NOPTS, v, "listen")->str;
    cfg.stdio = cli_val(connect_opts, NOPTS, v, "stdio")->num != 0;
    if (!cfg.stdio == !cfg.listen) {
        return cli_fail("connect", "give exactly one of --listen IP:PORT or --stdio");
    }
    if (cli_log_setup(connect_opts, NOPTS, v, "connect") != 0) {
        return 2;
    }
    if (cfg.stdio && !cli_val(connect_opts, NOPTS, v, "log-level")->set) {
        /* ssh shows our stderr: keep it quiet unless asked. */
        up_log_setup(UP_LOG_WARN, "connect", cli_log_stderr, NULL);
    }
    if (up_setup_client(v, pos[0], &st, &cfg, err, sizeof err) < 0) {
        return cli_fail("connect", "%s", err);
    }
    cfg.say = say_stderr;
    uv_loop_t *loop = uv_default_loop();
    struct up_client *c = up_client_new(loop, &cfg, st.base_path, err, sizeof err);
    if (!c) {
        return cli_fail("connect", "%s", err);
    }
    if (!cfg.stdio) {
        UP_LOGI("connect ready on %s for service '%s'", up_client_addr(c), cfg.service);
    }
    cli_signals(loop, stop, c);
    uv_run(loop, UV_RUN_DEFAULT);
    int status = up_client_status(c);
    up_client_free(c);
    uv_loop_close(loop);
    return status;
}
