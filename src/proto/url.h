/* ws:// and wss:// URLs for the relay, tcp:// targets for services. */
#ifndef UP_PROTO_URL_H
#define UP_PROTO_URL_H

#include <stdbool.h>
#include <stdint.h>

#include "base/err.h"

struct up_url {
    char scheme[8]; /* "ws", "wss", "tcp", "http", "https" */
    bool tls;
    char host[256]; /* without brackets for IPv6 */
    uint16_t port;
    char path[512]; /* "/" when absent */
};

/* Parse s. Default ports: ws/http 80, wss/https 443; tcp needs one. Returns UP_OK or
 * UP_EINVAL with *why set to a static explanation. */
UP_NODISCARD int up_url_parse(const char *s, struct up_url *u, const char **why);

#endif
