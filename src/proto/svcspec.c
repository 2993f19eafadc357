#include "proto/svcspec.h"

#include <stdio.h>
#include <string.h>

#include "proto/url.h"

/* The query of a service spec: "proxy-protocol=v1" (pairs joined by '&'). */
static int parse_query(const char *spec, const char *q, struct up_svcspec *s, char *err, size_t cap)
{
    const char *key = "proxy-protocol=";
    while (*q) {
        size_t len = strcspn(q, "&");
        if (len >= strlen(key) && strncmp(q, key, strlen(key)) == 0) {
            const char *v = q + strlen(key);
            size_t vl = len - strlen(key);
            if (vl == 2 && strncmp(v, "v1", 2) == 0) {
                s->proxy_protocol = 1;
            } else if (vl == 2 && strncmp(v, "v2", 2) == 0) {
                s->proxy_protocol = 2;
            } else {
                snprintf(err, cap, "--service '%s': proxy-protocol must be v1 or v2, not '%.*s'",
                         spec, (int)(vl > 32 ? 32 : vl), v);
                return UP_EINVAL;
            }
        } else if (len) {
            snprintf(err, cap,
                     "--service '%s': unknown option '%.*s' (the only one is "
                     "?proxy-protocol=v1 or =v2)",
                     spec, (int)(len > 32 ? 32 : len), q);
            return UP_EINVAL;
        }
        q += len;
        if (*q == '&') {
            q++;
        }
    }
    return UP_OK;
}

int up_svcspec_parse(const char *spec, struct up_svcspec *s, char *err, size_t cap)
{
    const char *eq = strchr(spec, '=');
    memset(s, 0, sizeof(*s));
    if (!eq || eq == spec || (size_t)(eq - spec) >= sizeof s->name) {
        snprintf(err, cap, "--service '%s': expected NAME=tcp://HOST:PORT", spec);
        return UP_EINVAL;
    }
    size_t nl = (size_t)(eq - spec);
    if (!up_token_valid_service_name(spec, nl) || (nl == 1 && spec[0] == '*')) {
        snprintf(err, cap, "--service '%s': name must be 1-63 of [A-Za-z0-9._-]", spec);
        return UP_EINVAL;
    }
    memcpy(s->name, spec, nl);
    char target[UP_SVCSPEC_MAX_TARGET + 1];
    const char *q = strchr(eq + 1, '?');
    size_t tl = q ? (size_t)(q - eq - 1) : strlen(eq + 1);
    if (tl >= sizeof target) {
        snprintf(err, cap, "--service '%.80s...': target too long", spec);
        return UP_EINVAL;
    }
    memcpy(target, eq + 1, tl);
    target[tl] = '\0';
    struct up_url u;
    const char *why = NULL;
    if (up_url_parse(target, &u, &why) < 0) {
        snprintf(err, cap, "--service '%s': %s", spec, why);
        return UP_EINVAL;
    }
    if (strcmp(u.scheme, "tcp") != 0 && strcmp(u.scheme, "http") != 0) {
        snprintf(err, cap, "--service '%s': the target must be tcp://HOST:PORT or http://HOST:PORT",
                 spec);
        return UP_EINVAL;
    }
    s->http = strcmp(u.scheme, "http") == 0;
    if (q && parse_query(spec, q + 1, s, err, cap) < 0) {
        return UP_EINVAL;
    }
    snprintf(s->host, sizeof s->host, "%s", u.host);
    s->port = u.port;
    return UP_OK;
}
