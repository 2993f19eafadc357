#include <stdio.h>
#include <string.h>

#include "base/log.h"
#include "cli/common.h"
#include "client/pair.h"
#include "proto/url.h"
#include "net/tls.h"

int cmd_pair(int argc, char **argv);

static const struct up_opt pair_opts[] = {
    {"relay", UP_OPT_STR, NULL, "URL", "relay to dial: ws://HOST:PORT or wss://HOST:PORT"},
    {"token", UP_OPT_SECRET, NULL, "TOKEN",
     "one-time pairing token (the platform got it from the relay's /api/pairings)"},
    {"target", UP_OPT_STR, NULL, "tcp://HOST:PORT",
     "what the browser reaches once paired, e.g. tcp://127.0.0.1:22 (connected only then)"},
    {"pair-timeout", UP_OPT_DURATION, "0", "DURATION",
     "give up when no browser joined within this (0 = as long as the relay keeps the pairing "
     "open)"},
    {"ca", UP_OPT_STR, NULL, "FILE", "trust this CA (PEM) for wss:// instead of the system's"},
    {"insecure", UP_OPT_FLAG, NULL, NULL, "do not verify the relay's certificate (testing only)"},
    {"dial-timeout", UP_OPT_DURATION, "10s", "DURATION",
     "limit for connect + TLS + upgrade to the relay, and for the connect to the target"},
    {"proxy", UP_OPT_STR, NULL, "URL",
     "HTTP proxy to go out through: http://[USER:PASS@]HOST:PORT or https://...; default from "
     "https_proxy/HTTPS_PROXY (wss://) or http_proxy/HTTP_PROXY (ws://), minus "
     "no_proxy/NO_PROXY; 'none' ignores them"},
    {"proxy-ca", UP_OPT_STR, NULL, "FILE",
     "trust this CA (PEM) for an https:// proxy instead of the system's"},
    {"log-level", UP_OPT_STR, "info", "LEVEL", "error, warn, info, debug or trace"},
};
#define NOPTS (sizeof pair_opts / sizeof pair_opts[0])

static void stop(void *ud)
{
    up_pair_stop(ud);
}

int cmd_pair(int argc, char **argv)
{
    struct up_opt_val v[NOPTS];
    const char *pos[1];
    size_t npos;
    bool help;
    char err[512];
    if (up_opts_parse(pair_opts, NOPTS, argc, argv, 2, v, pos, 0, &npos, &help, err, sizeof err) <
        0) {
        return cli_fail("pair", "%s", err);
    }
    if (help) {
        up_opts_help(
            stdout, "underpass pair --relay URL --token TOKEN --target tcp://HOST:PORT",
            "The host side of one-time pairing. A platform asked the relay for a pairing\n"
            "(POST /api/pairings) and got a token; the browser opens wss://RELAY/pair/TOKEN and\n"
            "this command, on the host, dials wss://RELAY/pair/TOKEN?side=host and waits,\n"
            "sending nothing. Once the browser has joined, the relay says \"paired\"; only then\n"
            "is the target connected, and bytes flow both ways (WebSocket binary messages on the\n"
            "relay side) until one side ends:\n"
            "  - the browser leaves: exit 0 (\"pairing ended: peer closed (CODE REASON)\");\n"
            "  - the target closes: the browser is told (close 1000 \"target closed\"), exit 0;\n"
            "  - the target refuses: the browser is told (close 1011), exit 1;\n"
            "  - the relay refuses the token (404 unknown or expired, 409 already used, 410\n"
            "    expired), drops the pairing, or --pair-timeout passes first: exit 1;\n"
            "  - SIGINT/SIGTERM: close 1001 to the relay, exit 0.\n"
            "The token is spent once both sides met: there is no reconnect.",
            pair_opts, NOPTS,
            "  underpass pair --relay wss://relay.example.com --token \"$TOKEN\" "
            "--target tcp://127.0.0.1:22\n"
            "  UNDERPASS_TOKEN_FILE=/run/pair.token underpass pair --relay "
            "wss://relay.example.com \\\n"
            "      --target tcp://127.0.0.1:5900 --pair-timeout 2m\n");
        return 0;
    }
    const struct up_opt_val *token = cli_val(pair_opts, NOPTS, v, "token");
    const struct up_opt_val *target = cli_val(pair_opts, NOPTS, v, "target");
    if (!token->str) {
        return cli_fail("pair", "--token is required (or --token-file, UNDERPASS_TOKEN): the "
                                "one-time pairing token the platform got from the relay");
    }
    if (!target->str) {
        return cli_fail("pair", "--target is required (or UNDERPASS_TARGET), e.g. "
                                "tcp://127.0.0.1:22");
    }
    static struct up_url turl; /* lives for the process: the pair borrows its host */
    const char *why = NULL;
    if (up_url_parse(target->str, &turl, &why) < 0 || strcmp(turl.scheme, "tcp") != 0 ||
        strcmp(turl.path, "/") != 0) {
        return cli_fail("pair", "%s: '%s': %s", target->source, target->str,
                        why ? why : "the target must be tcp://HOST:PORT");
    }
    if (cli_log_setup(pair_opts, NOPTS, v, "pair") != 0) {
        return 2;
    }
    struct up_uplink_cfg uc;
    char base[512];
    if (cli_dial_cfg("pair", pair_opts, NOPTS, v, &uc, base, sizeof base) != 0) {
        return 2;
    }
    static char path[2048];
    if (up_pair_path(base, token->str, path, sizeof path) < 0) {
        up_tls_ctx_free(uc.tls);
        up_tls_ctx_free(uc.proxy_tls);
        return cli_fail("pair", "%s: the token is empty or too long", token->source);
    }
    struct up_pair_cfg cfg = {
        .relay =
            {
                .host = uc.host,
                .port = uc.port,
                .tls = uc.tls,
                .path = path,
                .host_header = uc.host_header,
                .timeout_ms = uc.dial_timeout_ms,
                .proxy = uc.proxy,
                .proxy_tls = uc.proxy_tls,
            },
        .target_host = turl.host,
        .target_port = turl.port,
        .target_timeout_ms = uc.dial_timeout_ms,
        .pair_timeout_ms = cli_val(pair_opts, NOPTS, v, "pair-timeout")->num,
    };
    uv_loop_t *loop = uv_default_loop();
    struct up_pair *p = up_pair_new(loop, &cfg);
    if (!p) {
        up_tls_ctx_free(uc.tls);
        up_tls_ctx_free(uc.proxy_tls);
        return cli_fail("pair", "cannot start dialing the relay (out of memory?)");
    }
    UP_LOGI("dialing relay %s:%u for pairing (target %s:%u)", uc.host, uc.port, turl.host,
            turl.port);
    cli_signals(loop, stop, p);
    uv_run(loop, UV_RUN_DEFAULT);
    int status = up_pair_status(p);
    if (status != 0) {
        fprintf(stderr, "underpass pair: %s\n", up_pair_error(p));
    }
    up_pair_free(p);
    up_tls_ctx_free(uc.tls);
    up_tls_ctx_free(uc.proxy_tls);
    (void)uv_loop_close(loop);
    return status;
}
