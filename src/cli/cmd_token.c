#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli/common.h"
#include "proto/token.h"

static const struct up_opt token_opts[] = {
    {"secret", UP_OPT_SECRET, NULL, "SECRET", "the relay's HS256 secret (>= 32 bytes)"},
    {"role", UP_OPT_STR, NULL, "agent|client|admin",
     "what the token may do (required): agent registers services, client opens them, admin "
     "uses the relay's /api (pairings)"},
    {"services", UP_OPT_STR, NULL, "NAME,...",
     "services it may register (agent) or open (client); * for all (required)"},
    {"ttl", UP_OPT_DURATION, "1h", "DURATION", "lifetime (exp = now + ttl)"},
    {"sub", UP_OPT_STR, NULL, "NAME", "subject shown in the relay's logs"},
};
#define NOPTS (sizeof token_opts / sizeof token_opts[0])

int cmd_token(int argc, char **argv)
{
    struct up_opt_val v[NOPTS];
    const char *pos[4];
    size_t npos;
    bool help;
    char err[512];
    if (up_opts_parse(token_opts, NOPTS, argc, argv, 2, v, pos, 0, &npos, &help, err, sizeof err) <
        0) {
        return cli_fail("token", "%s", err);
    }
    if (help) {
        up_opts_help(stdout,
                     "underpass token --role agent|client|admin --services NAME,... [--ttl 1h]",
                     "Mint a token (a JWT signed with HS256 by the relay's secret) and print it.",
                     token_opts, NOPTS,
                     "  export UNDERPASS_SECRET=$(cat /etc/underpass/secret)\n"
                     "  underpass token --role agent --services ssh,web --ttl 30d > agent.jwt\n"
                     "  underpass token --role client --services ssh --ttl 8h --sub alice\n"
                     "  underpass token --role admin --services '*' --ttl 1h --sub platform\n");
        return 0;
    }
    const struct up_opt_val *secret = &v[0], *role = &v[1], *svcs = &v[2], *ttl = &v[3],
                            *sub = &v[4];
    if (!secret->str) {
        return cli_fail("token", "--secret is required (or --secret-file, UNDERPASS_SECRET)");
    }
    if (strlen(secret->str) < UP_TOKEN_MIN_SECRET) {
        return cli_fail("token", "%s: the secret must be at least %d bytes", secret->source,
                        UP_TOKEN_MIN_SECRET);
    }
    struct up_token_claims c;
    memset(&c, 0, sizeof c);
    c.role = role->str ? up_token_role_parse(role->str) : UP_ROLE_NONE;
    if (c.role == UP_ROLE_NONE) {
        return cli_fail("token", "--role must be agent, client or admin");
    }
    if (!svcs->str || !*svcs->str) {
        return cli_fail("token", "--services is required (comma-separated names, or *)");
    }
    const char *s = svcs->str;
    while (*s) {
        const char *comma = strchr(s, ',');
        size_t len = comma ? (size_t)(comma - s) : strlen(s);
        if (!up_token_valid_service_name(s, len) || c.n_services >= UP_TOKEN_MAX_SERVICES) {
            return cli_fail("token",
                            "--services: '%.*s' is not a valid service name (or more "
                            "than %d names)",
                            (int)len, s, UP_TOKEN_MAX_SERVICES);
        }
        memcpy(c.services[c.n_services], s, len);
        c.services[c.n_services][len] = '\0';
        c.n_services++;
        s += len + (comma ? 1 : 0);
    }
    if (sub->str) {
        if (strlen(sub->str) > UP_TOKEN_MAX_NAME) {
            return cli_fail("token", "--sub: at most %d bytes", UP_TOKEN_MAX_NAME);
        }
        snprintf(c.sub, sizeof c.sub, "%s", sub->str);
    }
    if (ttl->num < 1000) {
        return cli_fail("token", "--ttl must be at least 1s");
    }
    int64_t now = (int64_t)time(NULL);
    c.iat = now;
    c.exp = now + (int64_t)(ttl->num / 1000);
    char out[UP_TOKEN_MAX_LEN + 1];
    size_t len = 0;
    int rv =
        up_token_sign((const uint8_t *)secret->str, strlen(secret->str), &c, out, sizeof out, &len);
    if (rv < 0) {
        return cli_fail("token", "cannot sign: %s", rv == UP_EINVAL ? "invalid claims" : "error");
    }
    printf("%s\n", out);
    return 0;
}
