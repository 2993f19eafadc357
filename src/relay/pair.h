/* One-time pairing tokens (the DeltaBlue flow). POST /api/pairings, with an admin token,
 * mints a single-use token for a rendezvous (a host side and a browser side meet) or for a
 * service (a browser reaches it); wsb.c joins the sides that come with it to /pair/<token>.
 * A token expires (default 60 s, 1 s..24 h) unless joined by then; at most 10,000 wait at
 * once. This module keeps the tokens and sweeps them; r->pair_expired closes the sides that
 * waited for one that expired. */
#ifndef UP_RELAY_PAIR_H
#define UP_RELAY_PAIR_H

#include <stddef.h>

#include "proto/h1.h"
#include "relay/types.h"

/* POST /api/pairings {"service": "ssh", "ttl": 60} (both optional), the body complete in c->in
 * after m's head: answer 201 with the token and its URLs as JSON, or 405 (not POST), 401 (no
 * or an invalid token), 403 (not an admin token, or one that does not allow the service),
 * 411 (chunked), 400 (bad JSON, ttl or name), 404 (no agent serves the service), 429 (too
 * many pairings waiting), 503/500 (no randomness, no memory). */
void pair_api(struct hconn *c, const struct up_h1_msg *m);
/* The pairing whose token is tok[0..len) (compared in constant time), or NULL. It lives
 * until it expired and the sweep ran (every 250 ms), or pair_shutdown(). */
struct pairing *pair_find(struct up_relay *r, const char *tok, size_t len);
/* Relay shutdown: forget every pairing (the sides keep their connections) and stop the sweep
 * timer. */
void pair_shutdown(struct up_relay *r);

#endif
