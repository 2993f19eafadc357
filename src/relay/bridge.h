/* The stream switch: a stream that a client opens on its link becomes a bridge to a new
 * stream on the link of an agent serving that name. Bytes go across as they come, straight
 * into the other link's output when it has room, else into a bounded buffer the other link
 * writes from (peek/skip); credit goes back to a side only for bytes that left the relay.
 * A reset on one side resets the other with the same code and reason. A stream the agent
 * refused because it crossed the agent's GOAWAY never reached a backend, so it is opened
 * again on another agent (at most 3 times). Each bridge frees itself once both sides ended. */
#ifndef UP_RELAY_BRIDGE_H
#define UP_RELAY_BRIDGE_H

#include <stddef.h>
#include <stdint.h>

#include "link/link.h"

/* up_link_ops on_open for every relay link (l's ud is its struct rlink): authorise the stream
 * by the client's token, find an agent (relay_find_agent) and bridge the stream to it. Agents
 * may not open streams (RST protocol); a name the token does not allow is refused (RST
 * forbidden, counted as rejected), as is every OPEN while the relay shuts down (RST
 * shutdown), one for a service with no agent online (RST no-service), and one the relay has
 * no memory for (RST internal). Counts streams_total/active/refused in the relay's stats. */
void bridge_link_open(struct up_link *l, uint32_t sid, uint32_t window, const char *name,
                      size_t name_len, const uint8_t *meta, size_t meta_len);

#endif
