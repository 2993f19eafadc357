/* The relay's reverse proxy for http services: a client connection whose request routes to
 * an http service turns into a proxy onto one stream of the agent's link (the comment at the
 * top of http.c tells how). */
#ifndef UP_RELAY_HTTP_H
#define UP_RELAY_HTTP_H

#include <stdbool.h>

#include "proto/h1.h"
#include "relay/types.h"

/* Route the request m, complete at the start of c->in, to an http service by --route and
 * --domain. Returns false when no route matches (the relay's own endpoints then answer);
 * true when the request was taken: c is proxying (state HC_PROXY), or an error answer is on
 * its way. A later request on c that names no service goes to c->on_request. */
bool px_try(struct hconn *c, const struct up_h1_msg *m);
/* c's socket is readable or writable while c->state is HC_PROXY. */
void px_sock_cb(struct hconn *c, bool readable, bool writable);

#endif
