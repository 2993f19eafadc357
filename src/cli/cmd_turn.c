#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include "base/cidr.h"
#include "base/log.h"
#include "cli/common.h"
#include "net/addr.h"
#include "turn/server.h"

static const struct up_opt turn_opts[] = {
    {"listen", UP_OPT_STR, "0.0.0.0:3478", "IP:PORT",
     "address for STUN/TURN over UDP and TCP (and TLS on the same port with --tls-cert)"},
    {"realm", UP_OPT_STR, "underpass", "REALM", "long-term credential realm"},
    {"relay-ip", UP_OPT_LIST, NULL, "IP",
     "address of relayed ports, as peers see it (one IPv4 and/or one IPv6); default: the "
     "--listen address when it is not a wildcard"},
    {"user", UP_OPT_LIST, NULL, "NAME:PASSWORD", "a static user (repeat for more)"},
    {"auth-secret", UP_OPT_SECRET, NULL, "SECRET",
     "shared secret for time-limited credentials: the TURN REST API scheme (coturn's "
     "--static-auth-secret: username EXPIRY[:NAME], password base64(HMAC-SHA1(secret, "
     "username))) and Firezone's (username EXPIRY:SALT, password "
     "base64-nopad(SHA-256(\"EXPIRY:SECRET:SALT\")))"},
    {"allow-peer", UP_OPT_LIST, NULL, "CIDR",
     "peers to relay to even though they are in a refused range (loopback, private, "
     "link-local, multicast ...); repeat for more"},
    {"min-port", UP_OPT_U64, "49152", "PORT", "lowest relay port"},
    {"max-port", UP_OPT_U64, "65535", "PORT", "highest relay port"},
    {"tls-cert", UP_OPT_STR, NULL, "FILE", "serve TURN over TLS too, with this certificate (PEM)"},
    {"tls-key", UP_OPT_STR, NULL, "FILE", "private key for --tls-cert (PEM)"},
    {"default-lifetime", UP_OPT_DURATION, "600s", "DURATION",
     "allocation lifetime when the client asks for less (RFC 8656's default is 600 s)"},
    {"max-lifetime", UP_OPT_DURATION, "3600s", "DURATION", "longest allocation lifetime granted"},
    {"user-quota", UP_OPT_U64, "256", "N", "allocations one user may hold at once (0 = no limit)"},
    {"max-allocations", UP_OPT_U64, "100000", "N", "allocations at once, all users"},
    {"unauth-rate", UP_OPT_U64, "200", "N",
     "unauthenticated requests (Binding, and those answered 401/438) one source IP may make per "
     "second; more are dropped (0 = no limit)"},
    {"software", UP_OPT_STR, "underpass", "TEXT", "SOFTWARE attribute in answers"},
    {"log-level", UP_OPT_STR, "info", "LEVEL", "error, warn, info, debug or trace"},
};
#define NOPTS (sizeof turn_opts / sizeof turn_opts[0])

static void stop(void *ud)
{
    up_turn_server_stop(ud);
}

/* An IP literal into the 16-byte form; false when it is not one. */
static bool parse_ip(const char *s, struct up_stun_addr *a)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    if (up_addr_numeric(s, 0, &ss, &sl) < 0) {
        return false;
    }
    memset(a, 0, sizeof *a);
    if (ss.ss_family == AF_INET) {
        a->ip[10] = a->ip[11] = 0xff;
        memcpy(a->ip + 12, &((struct sockaddr_in *)&ss)->sin_addr, 4);
    } else {
        memcpy(a->ip, &((struct sockaddr_in6 *)&ss)->sin6_addr, 16);
    }
    return true;
}

static bool is_v4(const struct up_stun_addr *a)
{
    static const uint8_t pfx[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return memcmp(a->ip, pfx, 12) == 0;
}

static bool is_any(const struct up_stun_addr *a)
{
    static const uint8_t zero[16];
    return memcmp(a->ip + (is_v4(a) ? 12 : 0), zero, is_v4(a) ? 4 : 16) == 0;
}

/* Take a as the relay address of its family; false when that family has one already. */
static bool set_relay(struct up_turn_cfg *c, const struct up_stun_addr *a)
{
    bool v4 = is_v4(a);
    if (v4 ? c->has_relay4 : c->has_relay6) {
        return false;
    }
    if (v4) {
        c->relay4 = *a;
        c->has_relay4 = true;
    } else {
        c->relay6 = *a;
        c->has_relay6 = true;
    }
    return true;
}

/* Many TURN allocations are many sockets: take what the hard limit allows. */
static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int cmd_turn(int argc, char **argv)
{
    struct up_opt_val v[NOPTS];
    const char *pos[1];
    size_t npos;
    bool help;
    char err[512];
    if (up_opts_parse(turn_opts, NOPTS, argc, argv, 2, v, pos, 0, &npos, &help, err, sizeof err) <
        0) {
        return cli_fail("turn", "%s", err);
    }
    if (help) {
        up_opts_help(
            stdout,
            "underpass turn --listen IP:PORT --realm REALM --relay-ip IP (--user NAME:PASSWORD | "
            "--auth-secret SECRET)",
            "A STUN/TURN server (RFC 8489, RFC 8656) for WebRTC and VPN clients whose traffic\n"
            "needs UDP through NAT. Clients reach it over UDP, TCP or TLS (one port: TLS is\n"
            "recognised by its first byte); relayed traffic to peers is UDP, one port per\n"
            "allocation from --min-port..--max-port on --relay-ip. Every request but Binding\n"
            "needs long-term credentials (--user, or --auth-secret for time-limited ones).\n"
            "Peers in loopback, private, link-local and multicast ranges are refused unless\n"
            "--allow-peer lists them: a TURN server must not open a way into the network it\n"
            "runs in.",
            turn_opts, NOPTS,
            "  underpass turn --listen 0.0.0.0:3478 --realm example.org --relay-ip 203.0.113.7 \\\n"
            "      --user alice:s3cret --tls-cert cert.pem --tls-key key.pem\n"
            "  UNDERPASS_AUTH_SECRET=$(cat /etc/turn.secret) underpass turn --realm example.org "
            "\\\n      --listen 203.0.113.7:3478\n");
        return 0;
    }
    if (cli_log_setup(turn_opts, NOPTS, v, "turn") != 0) {
        return 2;
    }
    static struct up_turn_server_cfg cfg;
    static char names[UP_TURN_MAX_USERS][128];
    up_turn_cfg_defaults(&cfg.core);
    cfg.listen = cli_val(turn_opts, NOPTS, v, "listen")->str;
    cfg.tls_cert = cli_val(turn_opts, NOPTS, v, "tls-cert")->str;
    cfg.tls_key = cli_val(turn_opts, NOPTS, v, "tls-key")->str;
    cfg.core.realm = cli_val(turn_opts, NOPTS, v, "realm")->str;
    cfg.core.software = cli_val(turn_opts, NOPTS, v, "software")->str;
    if (!cfg.core.realm[0] || strlen(cfg.core.realm) > 127) {
        return cli_fail("turn", "--realm must be 1-127 characters");
    }
    const struct up_opt_val *users = cli_val(turn_opts, NOPTS, v, "user");
    if (users->nlist > UP_TURN_MAX_USERS) {
        return cli_fail("turn", "at most %d --user", UP_TURN_MAX_USERS);
    }
    for (size_t i = 0; i < users->nlist; i++) {
        const char *u = users->list[i];
        const char *colon = strchr(u, ':');
        if (!colon || colon == u || !colon[1] || (size_t)(colon - u) >= sizeof names[i]) {
            return cli_fail("turn", "--user '%s': expected NAME:PASSWORD", u);
        }
        snprintf(names[i], sizeof names[i], "%.*s", (int)(colon - u), u);
        cfg.core.users[i].name = names[i];
        cfg.core.users[i].pass = colon + 1;
    }
    cfg.core.n_users = users->nlist;
    const struct up_opt_val *secret = cli_val(turn_opts, NOPTS, v, "auth-secret");
    if (secret->str) {
        if (strlen(secret->str) < 16) {
            return cli_fail("turn", "%s: the secret must be at least 16 bytes", secret->source);
        }
        cfg.core.auth_secret = (const uint8_t *)secret->str;
        cfg.core.auth_secret_len = strlen(secret->str);
    }
    if (cfg.core.n_users == 0 && !cfg.core.auth_secret) {
        return cli_fail("turn", "no credentials: give --user NAME:PASSWORD or --auth-secret "
                                "(an open relay would relay for anyone)");
    }
    const struct up_opt_val *allow = cli_val(turn_opts, NOPTS, v, "allow-peer");
    for (size_t i = 0; i < allow->nlist; i++) {
        const char *why = NULL;
        if (up_cidr_list_add(&cfg.core.allow_peers, allow->list[i], &why) < 0) {
            return cli_fail("turn", "--allow-peer '%s': %s", allow->list[i],
                            why ? why : "not an address or CIDR block");
        }
    }
    uint64_t minp = cli_val(turn_opts, NOPTS, v, "min-port")->num;
    uint64_t maxp = cli_val(turn_opts, NOPTS, v, "max-port")->num;
    if (minp < 1024 || maxp > 65535 || minp > maxp) {
        return cli_fail("turn", "--min-port/--max-port must satisfy 1024 <= min <= max <= 65535");
    }
    cfg.core.min_port = (uint16_t)minp;
    cfg.core.max_port = (uint16_t)maxp;
    uint64_t dl = cli_val(turn_opts, NOPTS, v, "default-lifetime")->num / 1000;
    uint64_t ml = cli_val(turn_opts, NOPTS, v, "max-lifetime")->num / 1000;
    if (dl < 1 || ml < dl || ml > 86400) {
        return cli_fail("turn", "lifetimes must satisfy 1s <= --default-lifetime <= "
                                "--max-lifetime <= 24h");
    }
    cfg.core.default_lifetime_s = (uint32_t)dl;
    cfg.core.max_lifetime_s = (uint32_t)ml;
    cfg.core.user_quota = (uint32_t)cli_val(turn_opts, NOPTS, v, "user-quota")->num;
    cfg.core.unauth_budget = (uint32_t)cli_val(turn_opts, NOPTS, v, "unauth-rate")->num;
    uint64_t maxa = cli_val(turn_opts, NOPTS, v, "max-allocations")->num;
    if (maxa < 1 || maxa > 1000000) {
        return cli_fail("turn", "--max-allocations must be 1..1000000");
    }
    cfg.core.max_allocations = (uint32_t)maxa;
    const struct up_opt_val *rip = cli_val(turn_opts, NOPTS, v, "relay-ip");
    for (size_t i = 0; i < rip->nlist; i++) {
        struct up_stun_addr a;
        if (!parse_ip(rip->list[i], &a) || is_any(&a)) {
            return cli_fail("turn", "--relay-ip '%s' is not a unicast IP address", rip->list[i]);
        }
        if (!set_relay(&cfg.core, &a)) {
            return cli_fail("turn", "--relay-ip: at most one IPv4 and one IPv6 address");
        }
    }
    if (rip->nlist == 0) {
        char host[256];
        uint16_t port;
        struct up_stun_addr a;
        if (up_addr_split(cfg.listen, host, sizeof host, &port) < 0 || !parse_ip(host, &a)) {
            return cli_fail("turn", "--listen: '%s' is not IP:PORT", cfg.listen);
        }
        if (is_any(&a)) {
            return cli_fail("turn", "--relay-ip is required when --listen is a wildcard address "
                                    "(peers must be told where to send)");
        }
        (void)set_relay(&cfg.core, &a);
    }
    raise_nofile();
    uv_loop_t *loop = uv_default_loop();
    struct up_turn_server *s = up_turn_server_new(loop, &cfg, err, sizeof err);
    if (!s) {
        return cli_fail("turn", "%s", err);
    }
    cli_signals(loop, stop, s);
    UP_LOGI("turn ready on %s (udp, tcp%s), relay ports %u-%u", up_turn_server_addr(s),
            cfg.tls_cert ? ", tls" : "", cfg.core.min_port, cfg.core.max_port);
    uv_run(loop, UV_RUN_DEFAULT);
    up_turn_server_free(s);
    uv_loop_close(loop);
    return 0;
}
