/* An agent's --service spec: "NAME=tcp://HOST:PORT[?proxy-protocol=v1|v2]" or
 * "NAME=http://HOST:PORT[...]" (sans-IO: a string in, fields out; no allocation, no I/O). */
#ifndef UP_PROTO_SVCSPEC_H
#define UP_PROTO_SVCSPEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "proto/token.h"

#define UP_SVCSPEC_MAX_TARGET 599 /* bytes between '=' and '?' (the URL's own limits apply too) */

struct up_svcspec {
    char name[UP_TOKEN_MAX_NAME + 1];
    char host[256]; /* without brackets for IPv6, as struct up_url's */
    uint16_t port;
    uint8_t proxy_protocol; /* 0: off; 1, 2: a PROXY protocol v1/v2 header first */
    bool http;              /* http://: the relay reverse-proxies HTTP requests to it */
};

/* Parse spec (NUL-terminated) into out: NAME before the first '=' is a valid service name
 * (up_token_valid_service_name, not "*"); the target up to the first '?' is at most
 * UP_SVCSPEC_MAX_TARGET bytes and a tcp:// or http:// URL with a port (up_url_parse; a path is
 * ignored); the query after it holds '&'-separated "proxy-protocol=v1" or "=v2" (the last one
 * wins; empty pairs are skipped). Returns UP_OK, or UP_EINVAL with a one-line reason that
 * starts "--service '<spec>'" in err (cap bytes; the CLI prints it as is). out is zeroed first
 * and undefined after an error. */
UP_NODISCARD int up_svcspec_parse(const char *spec, struct up_svcspec *out, char *err, size_t cap);

#endif
