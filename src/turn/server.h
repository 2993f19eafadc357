/* `underpass turn`: the I/O shell around the sans-IO TURN core (proto/turn.h). It owns the
 * listening UDP socket, the TCP listener (plain or TLS on the same port, told apart by the
 * first byte), the relay ports (one UDP socket per allocated port) and the timer, feeds the
 * core what arrives and carries out its commands. */
#ifndef UP_TURN_SERVER_H
#define UP_TURN_SERVER_H

#include <stddef.h>
#include <uv.h>

#include "proto/turn.h"

struct up_turn_server_cfg {
    const char *listen;             /* IP:PORT for UDP and TCP (and TLS with a certificate) */
    const char *tls_cert, *tls_key; /* optional */
    struct up_turn_cfg core;        /* realm, users, secrets, relay addresses, ports ... */
};

struct up_turn_server;

/* Bind and start. NULL with a one-line reason on failure. */
struct up_turn_server *up_turn_server_new(uv_loop_t *loop, const struct up_turn_server_cfg *cfg,
                                          char *err, size_t cap);
/* The address bound (useful with port 0). */
const char *up_turn_server_addr(const struct up_turn_server *s);
/* Stop: close every socket and the timer; the loop ends when they are closed. */
void up_turn_server_stop(struct up_turn_server *s);
void up_turn_server_free(struct up_turn_server *s);

#endif
