#include <stdio.h>
#include <string.h>

#include "base/log.h"
#include "base/cidr.h"
#include "cli/common.h"
#include "proto/h1.h"
#include "proto/token.h"
#include "relay/relay.h"

static const struct up_opt relay_opts[] = {
    {"listen", UP_OPT_STR, "0.0.0.0:8080", "IP:PORT", "address to serve agents and clients on"},
    {"tls-cert", UP_OPT_STR, NULL, "FILE", "serve wss:// with this certificate chain (PEM)"},
    {"tls-key", UP_OPT_STR, NULL, "FILE", "private key for --tls-cert (PEM)"},
    {"secret", UP_OPT_SECRET, NULL, "SECRET",
     "HS256 key (>= 32 bytes) that tokens are signed with (required)"},
    {"token-leeway", UP_OPT_DURATION, "30s", "DURATION", "clock skew allowed on exp/nbf/iat"},
    {"head-timeout", UP_OPT_DURATION, "10s", "DURATION",
     "time a peer has to send its request head"},
    {"max-head", UP_OPT_SIZE, "16k", "BYTES", "largest request head accepted (431 above)"},
    {"max-streams", UP_OPT_U64, "10240", "N", "concurrent streams per link"},
    {"stats-public", UP_OPT_FLAG, NULL, NULL, "serve /stats to everyone, not only loopback"},
    {"drain-timeout", UP_OPT_DURATION, "30s", "DURATION",
     "on SIGTERM/SIGINT, time bridged streams get to finish before the relay exits (0 = close "
     "at once)"},
    {"trusted-proxy", UP_OPT_LIST, NULL, "CIDR[,CIDR...]",
     "reverse proxies in front of the relay (addresses or blocks: 127.0.0.1, 10.0.0.0/8); "
     "X-Forwarded-For/-Proto are believed from these peers only, ignored from anyone else"},
    {"domain", UP_OPT_STR, NULL, "DOMAIN",
     "serve http services by name: a request for Host NAME.DOMAIN goes to the http service "
     "NAME (point *.DOMAIN at the relay)"},
    {"route", UP_OPT_LIST, NULL, "[HOST][/PREFIX]=SERVICE",
     "send requests for HOST (any host if omitted) whose path starts with /PREFIX to the http "
     "service SERVICE; the longest prefix wins, a route with a host beats one without; the path "
     "is passed on unchanged (repeat for more)"},
    {"upstream-timeout", UP_OPT_DURATION, "60s", "DURATION",
     "http services: time a backend has to start answering a request (504 after)"},
    {"keepalive-timeout", UP_OPT_DURATION, "60s", "DURATION",
     "http services: an idle client connection is closed after this long"},
    {"real-ip-header", UP_OPT_STR, "X-Real-IP", "NAME",
     "header that gives http backends the client's address"},
    {"forwarded-for-header", UP_OPT_STR, "X-Forwarded-For", "NAME",
     "header that gives http backends the chain of addresses (appended to when the relay trusts "
     "the proxy in front of it)"},
    UP_LINK_OPTS,
};

static bool header_name_ok(const char *s)
{
    if (!*s || strlen(s) > 64) {
        return false;
    }
    for (; *s; s++) {
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '-' || *s == '_')) {
            return false;
        }
    }
    return true;
}
#define NOPTS (sizeof relay_opts / sizeof relay_opts[0])

static void stop(void *ud)
{
    up_relay_shutdown(ud);
}

int cmd_relay(int argc, char **argv)
{
    struct up_opt_val v[NOPTS];
    const char *pos[4];
    size_t npos;
    bool help;
    char err[512];
    if (up_opts_parse(relay_opts, NOPTS, argc, argv, 2, v, pos, 0, &npos, &help, err, sizeof err) <
        0) {
        return cli_fail("relay", "%s", err);
    }
    if (help) {
        up_opts_help(stdout, "underpass relay [options]",
                     "Run the public relay. Agents dial in on /v1/agent and register services;\n"
                     "clients (`underpass connect`) dial in on /v1/connect and open streams to\n"
                     "those services by name. Every link is authenticated with a token signed\n"
                     "with --secret. GET /healthz answers 200 once the relay is ready; GET /stats\n"
                     "gives counters as JSON. The relay pings every link (--ping-interval) and\n"
                     "closes one that misses --ping-misses answers, resetting its streams.\n"
                     "\n"
                     "SIGTERM or SIGINT drains the relay: it closes the listening socket at once\n"
                     "(a new relay can take the port), sends GOAWAY on every link so agents and\n"
                     "clients dial a new link for new streams, lets bridged streams finish, and\n"
                     "exits when none is left or after --drain-timeout (the rest are reset).\n"
                     "A second SIGTERM/SIGINT ends the relay at once.\n"
                     "\n"
                     "Behind a TLS-terminating reverse proxy (nginx, haproxy) the relay listens\n"
                     "on plain HTTP; name the proxy with --trusted-proxy so that the client\n"
                     "address it forwards in X-Forwarded-For is logged and passed to agents\n"
                     "(and /stats is judged by the client's address, not the proxy's).",
                     relay_opts, NOPTS,
                     "  UNDERPASS_SECRET=$(openssl rand -hex 32) underpass relay --listen "
                     "0.0.0.0:8080\n"
                     "  underpass relay --listen [::]:443 --tls-cert cert.pem --tls-key key.pem "
                     "--secret-file /etc/underpass/secret\n"
                     "  underpass relay --listen 127.0.0.1:8080 --trusted-proxy 127.0.0.1 "
                     "--secret-file /etc/underpass/secret\n");
        return 0;
    }
    if (cli_log_setup(relay_opts, NOPTS, v, "relay") != 0) {
        return 2;
    }
    const struct up_opt_val *secret = cli_val(relay_opts, NOPTS, v, "secret");
    if (!secret->str) {
        return cli_fail("relay", "--secret is required (or --secret-file, UNDERPASS_SECRET); "
                                 "generate one with: openssl rand -hex 32");
    }
    if (strlen(secret->str) < UP_TOKEN_MIN_SECRET) {
        return cli_fail("relay", "%s: the secret must be at least %d bytes (openssl rand -hex 32)",
                        secret->source, UP_TOKEN_MIN_SECRET);
    }
    struct up_relay_cfg cfg = {
        .listen = cli_val(relay_opts, NOPTS, v, "listen")->str,
        .tls_cert = cli_val(relay_opts, NOPTS, v, "tls-cert")->str,
        .tls_key = cli_val(relay_opts, NOPTS, v, "tls-key")->str,
        .secret = (const uint8_t *)secret->str,
        .secret_len = strlen(secret->str),
        .head_timeout_ms = cli_val(relay_opts, NOPTS, v, "head-timeout")->num,
        .max_head = cli_val(relay_opts, NOPTS, v, "max-head")->num,
        .leeway_s = cli_val(relay_opts, NOPTS, v, "token-leeway")->num / 1000,
        .stats_public = cli_val(relay_opts, NOPTS, v, "stats-public")->num != 0,
        .drain_timeout_ms = cli_val(relay_opts, NOPTS, v, "drain-timeout")->num,
    };
    if (cfg.max_head < 1024 || cfg.max_head > 1024 * 1024) {
        return cli_fail("relay", "--max-head must be between 1k and 1m");
    }
    if (cfg.head_timeout_ms == 0) {
        return cli_fail("relay", "--head-timeout must be > 0");
    }
    const struct up_opt_val *tp = cli_val(relay_opts, NOPTS, v, "trusted-proxy");
    for (size_t i = 0; i < tp->nlist; i++) {
        const char *why = NULL;
        if (up_cidr_list_add(&cfg.trusted_proxies, tp->list[i], &why) < 0) {
            return cli_fail("relay",
                            "%s: '%s': %s (expected addresses or CIDR blocks such as "
                            "127.0.0.1, 10.0.0.0/8, ::1, separated by commas)",
                            tp->source, tp->list[i], why ? why : "invalid");
        }
    }
    cfg.domain = cli_val(relay_opts, NOPTS, v, "domain")->str;
    static char domain[256];
    if (cfg.domain) {
        if (strlen(cfg.domain) >= sizeof domain) {
            return cli_fail("relay", "--domain is too long");
        }
        snprintf(domain, sizeof domain, "%s", cfg.domain);
        char *d = domain; /* lowercase, no leading or trailing dots */
        while (*d == '.') {
            d++;
        }
        for (char *p = d; *p; p++) {
            *p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
        }
        size_t dl = strlen(d);
        while (dl && d[dl - 1] == '.') {
            d[--dl] = '\0';
        }
        if (dl == 0 || dl > 200 || strspn(d, "abcdefghijklmnopqrstuvwxyz0123456789.-") != dl) {
            return cli_fail("relay", "--domain '%s' is not a domain name", cfg.domain);
        }
        cfg.domain = d;
    }
    const struct up_opt_val *routes = cli_val(relay_opts, NOPTS, v, "route");
    if (routes->nlist > UP_RELAY_MAX_ROUTES) {
        return cli_fail("relay", "at most %d --route", UP_RELAY_MAX_ROUTES);
    }
    for (size_t i = 0; i < routes->nlist; i++) {
        if (up_hparse_route(routes->list[i], &cfg.routes[i], err, sizeof err) < 0) {
            return cli_fail("relay", "%s", err);
        }
    }
    cfg.n_routes = routes->nlist;
    cfg.upstream_timeout_ms = cli_val(relay_opts, NOPTS, v, "upstream-timeout")->num;
    cfg.keepalive_timeout_ms = cli_val(relay_opts, NOPTS, v, "keepalive-timeout")->num;
    if (cfg.upstream_timeout_ms == 0 || cfg.keepalive_timeout_ms == 0) {
        return cli_fail("relay", "--upstream-timeout and --keepalive-timeout must be > 0");
    }
    cfg.real_ip_header = cli_val(relay_opts, NOPTS, v, "real-ip-header")->str;
    cfg.xff_header = cli_val(relay_opts, NOPTS, v, "forwarded-for-header")->str;
    if (!header_name_ok(cfg.real_ip_header) || !header_name_ok(cfg.xff_header)) {
        return cli_fail("relay", "--real-ip-header and --forwarded-for-header take a header name "
                                 "([A-Za-z0-9_-], up to 64)");
    }
    if (cli_link_cfg("relay", relay_opts, NOPTS, v, &cfg.link) != 0) {
        return 2;
    }
    uint64_t ms = cli_val(relay_opts, NOPTS, v, "max-streams")->num;
    if (ms < 1 || ms > 1000000) {
        return cli_fail("relay", "--max-streams must be 1..1000000");
    }
    cfg.link.max_streams = (uint32_t)ms;
    uv_loop_t *loop = uv_default_loop();
    struct up_relay *r = up_relay_new(loop, &cfg, err, sizeof err);
    if (!r) {
        return cli_fail("relay", "%s", err);
    }
    cli_signals(loop, stop, r);
    UP_LOGI("relay ready on %s://%s", cfg.tls_cert ? "wss" : "ws", up_relay_addr(r));
    uv_run(loop, UV_RUN_DEFAULT);
    up_relay_free(r);
    uv_loop_close(loop);
    return 0;
}
