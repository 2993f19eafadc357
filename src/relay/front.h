/* The relay's front door: every TCP connection to the relay's port starts here. It does the
 * TLS handshake (with --tls-cert), reads one request head (within --max-head and
 * --head-timeout), works out who is calling (--trusted-proxy), and routes the request: to an
 * http service (http.c) by --route/--domain, /healthz, /stats (stats.c), /s/ and /pair/
 * (wsb.c), /api/pairings (pair.c), or /v1/agent and /v1/connect, which it authenticates
 * (Bearer token, role, an agent's ?services=) and upgrades into links. */
#ifndef UP_RELAY_FRONT_H
#define UP_RELAY_FRONT_H

#include <sys/socket.h>

/* The listener's accept callback (up_listener_start; ud is the struct up_relay): take fd
 * (owned from now on) as a new front-door connection from peer. Out of memory closes fd. */
void front_accept(void *ud, int fd, const struct sockaddr_storage *peer);

#endif
