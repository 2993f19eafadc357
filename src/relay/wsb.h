/* Browsers' WebSockets kept on their front-door connection: /s/<service> (bridged to a stream
 * on an agent's link) and /pair/<token> (a rendezvous or service pairing, pair.c). The
 * comment at the top of wsb.c tells how. */
#ifndef UP_RELAY_WSB_H
#define UP_RELAY_WSB_H

#include <stdbool.h>

#include "proto/h1.h"
#include "relay/types.h"

/* Serve m if path (m's target without its query) is /s/<service> or /pair/<token>: upgrade c
 * (state HC_WSB once the 101 is written) or answer an error. Returns false when path is
 * neither. */
bool wsb_try(struct hconn *c, const struct up_h1_msg *m, const char *path);
/* c's socket is readable or writable while c->state is HC_WSB. */
void wsb_sock_cb(struct hconn *c, bool readable, bool writable);
/* c waited for a pairing that expired (struct up_relay's pair_expired): close it (1008). */
void wsb_pair_expired(struct hconn *c);

#endif
