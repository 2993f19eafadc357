/* The relay's registry: the links that passed the front door (agents and clients), the
 * services each agent registered, and the names ever registered since start (a request for
 * one that is offline gets 503, for a name never seen 404). It only keeps lists; it opens,
 * refuses and answers nothing. */
#ifndef UP_RELAY_REGISTRY_H
#define UP_RELAY_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "relay/types.h"

/* Put rl, whose link just came up, at the front of r's list. The list owns rl from now on:
 * relay_link_closed() frees it. */
void relay_link_add(struct up_relay *r, struct rlink *rl);
/* rl's link closed (its up_link_ops on_close): log it with reason, unlist and free rl. */
void relay_link_closed(struct rlink *rl, const char *reason);
/* The peer sent GOAWAY on l (up_link_ops on_goaway; l's ud is its rlink): mark the link
 * draining, so that relay_find_agent() routes nothing new to it, and log it. */
void relay_link_goaway(struct up_link *l, uint32_t code, const char *reason);

/* Pick an agent link that serves name[0..len), is not draining and can open a stream; rotate
 * it to the back of the list so new streams spread over the agents serving the name. *flags
 * (may be NULL) gets how that agent registered the service (RS_HTTP, RS_PROTECT). Returns
 * NULL when there is none. The rlink lives until its link closes. */
struct rlink *relay_find_agent(struct up_relay *r, const char *name, size_t len, uint8_t *flags);
/* Whether an agent registered name[0..len) since start. Also true once the list is full
 * (4096 names): from then on unknown names count as offline ones. */
bool relay_service_seen(const struct up_relay *r, const char *name, size_t len);
/* Remember that an agent registered name (NUL-terminated). Out of memory or with a full
 * list the name is not remembered, which is harmless (see relay_service_seen). */
void relay_service_note(struct up_relay *r, const char *name);

#endif
