/* Host:port parsing and formatting. */
#ifndef UP_NET_ADDR_H
#define UP_NET_ADDR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "base/err.h"

/* Split "host:port", "[v6]:port" into host (cap bytes) and port. Returns UP_OK or UP_EINVAL. */
UP_NODISCARD int up_addr_split(const char *s, char *host, size_t cap, uint16_t *port);
/* Numeric host + port into sa (IPv4 or IPv6 literal). Returns UP_OK or UP_EINVAL. */
UP_NODISCARD int up_addr_numeric(const char *host, uint16_t port, struct sockaddr_storage *sa,
                                 socklen_t *len);
/* "IP:PORT" or "[IPv6]:PORT" with a numeric host (no name lookup) into sa. Returns UP_OK or
 * UP_EINVAL. */
UP_NODISCARD int up_addr_parse(const char *spec, struct sockaddr_storage *sa, socklen_t *len);
/* Format sa as "1.2.3.4:80" or "[::1]:80". */
void up_addr_format(const struct sockaddr *sa, char *out, size_t cap);
/* Format only the host part. */
void up_addr_host(const struct sockaddr *sa, char *out, size_t cap);

#endif
