/* The relay's /stats: counters, links and streams as one JSON object. */
#ifndef UP_RELAY_STATS_H
#define UP_RELAY_STATS_H

#include "relay/types.h"

/* Answer c with the relay's statistics (200, application/json), or 500 out of memory. Who may
 * see them (loopback, --stats-public) is the caller's decision. */
void stats_respond(struct hconn *c);

#endif
