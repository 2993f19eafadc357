#include "proto/url.h"

#include <string.h>

#include "base/str.h"

int up_url_parse(const char *s, struct up_url *u, const char **why)
{
    memset(u, 0, sizeof(*u));
    const char *sep = s ? strstr(s, "://") : NULL;
    if (!sep || sep == s || (size_t)(sep - s) >= sizeof u->scheme) {
        *why = "expected scheme://host:port (ws://, wss://, tcp://)";
        return UP_EINVAL;
    }
    memcpy(u->scheme, s, (size_t)(sep - s));
    uint16_t defport = 0;
    if (strcmp(u->scheme, "ws") == 0 || strcmp(u->scheme, "http") == 0) {
        defport = 80;
    } else if (strcmp(u->scheme, "wss") == 0 || strcmp(u->scheme, "https") == 0) {
        defport = 443;
        u->tls = true;
    } else if (strcmp(u->scheme, "tcp") != 0) {
        *why = "unsupported scheme (use ws://, wss:// or tcp://)";
        return UP_EINVAL;
    }
    const char *h = sep + 3;
    const char *slash = strchr(h, '/');
    size_t hp_len = slash ? (size_t)(slash - h) : strlen(h);
    if (slash) {
        if (strlen(slash) >= sizeof u->path) {
            *why = "path too long";
            return UP_EINVAL;
        }
        memcpy(u->path, slash, strlen(slash) + 1);
    } else {
        u->path[0] = '/';
    }
    char hp[300];
    if (hp_len == 0 || hp_len >= sizeof hp) {
        *why = "missing or overlong host";
        return UP_EINVAL;
    }
    memcpy(hp, h, hp_len);
    hp[hp_len] = '\0';
    if (strchr(hp, '@')) {
        *why = "credentials in the URL are not supported here";
        return UP_EINVAL;
    }
    const char *port = NULL;
    if (hp[0] == '[') {
        char *end = strchr(hp, ']');
        if (!end) {
            *why = "unterminated [IPv6] address";
            return UP_EINVAL;
        }
        *end = '\0';
        if (end[1] == ':') {
            port = end + 2;
        } else if (end[1] != '\0') {
            *why = "garbage after [IPv6] address";
            return UP_EINVAL;
        }
        if (hp[1] == '\0') {
            /* "[]" names no host, as "ws://:80" does not. */
            *why = "missing or overlong host";
            return UP_EINVAL;
        }
        if (strlen(hp + 1) >= sizeof u->host) {
            *why = "host too long";
            return UP_EINVAL;
        }
        memcpy(u->host, hp + 1, strlen(hp + 1) + 1);
    } else {
        char *colon = strchr(hp, ':');
        if (colon) {
            *colon = '\0';
            port = colon + 1;
        }
        if (strlen(hp) >= sizeof u->host || hp[0] == '\0') {
            *why = "missing or overlong host";
            return UP_EINVAL;
        }
        memcpy(u->host, hp, strlen(hp) + 1);
    }
    if (port) {
        uint64_t p;
        if (up_parse_u64(port, 65535, &p) < 0 || p == 0) {
            *why = "bad port";
            return UP_EINVAL;
        }
        u->port = (uint16_t)p;
    } else if (defport) {
        u->port = defport;
    } else {
        *why = "a port is required";
        return UP_EINVAL;
    }
    return UP_OK;
}
