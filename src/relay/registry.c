/* The registry (see registry.h). */
#include "relay/registry.h"

#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "base/log.h"

static void rlink_unlist(struct up_relay *r, struct rlink *rl)
{
    if (rl->prev) {
        rl->prev->next = rl->next;
    } else if (r->links == rl) {
        r->links = rl->next;
    }
    if (rl->next) {
        rl->next->prev = rl->prev;
    }
    rl->next = rl->prev = NULL;
}

static void rlink_list(struct up_relay *r, struct rlink *rl)
{
    rl->prev = NULL;
    rl->next = r->links;
    if (r->links) {
        r->links->prev = rl;
    }
    r->links = rl;
}

struct rlink *relay_find_agent(struct up_relay *r, const char *name, size_t len, uint8_t *flags)
{
    for (struct rlink *rl = r->links; rl; rl = rl->next) {
        if (rl->role != RL_AGENT || !rl->link || rl->draining || !up_link_can_open(rl->link)) {
            continue;
        }
        for (size_t i = 0; i < rl->n_services; i++) {
            if (strlen(rl->services[i]) == len && memcmp(rl->services[i], name, len) == 0) {
                if (flags) {
                    *flags = rl->svc_flags[i];
                }
                if (rl->next) {
                    rlink_unlist(r, rl);
                    struct rlink *t = r->links;
                    while (t && t->next) {
                        t = t->next;
                    }
                    if (t) {
                        t->next = rl;
                        rl->prev = t;
                    } else {
                        r->links = rl;
                    }
                }
                return rl;
            }
        }
    }
    return NULL;
}

#define SEEN_MAX 4096 /* names remembered for 404 vs 503; beyond that, unknown names get 503 */

bool relay_service_seen(const struct up_relay *r, const char *name, size_t len)
{
    if (r->n_seen >= SEEN_MAX) {
        return true;
    }
    for (size_t i = 0; i < r->n_seen; i++) {
        if (strlen(r->seen[i]) == len && memcmp(r->seen[i], name, len) == 0) {
            return true;
        }
    }
    return false;
}

void relay_service_note(struct up_relay *r, const char *name)
{
    if (relay_service_seen(r, name, strlen(name)) || r->n_seen >= SEEN_MAX) {
        return;
    }
    if (r->n_seen == r->cap_seen) {
        size_t cap = r->cap_seen ? r->cap_seen * 2 : 16;
        void *p = up_realloc(r->seen, cap * sizeof r->seen[0]);
        if (!p) {
            return;
        }
        r->seen = p;
        r->cap_seen = cap;
    }
    snprintf(r->seen[r->n_seen++], sizeof r->seen[0], "%s", name);
}

void relay_link_add(struct up_relay *r, struct rlink *rl)
{
    rlink_list(r, rl);
}

void relay_link_closed(struct rlink *rl, const char *reason)
{
    struct up_relay *r = rl->relay;
    UP_LOGI("%s link from %s closed: %s", rl->role == RL_AGENT ? "agent" : "client", rl->desc,
            reason);
    rlink_unlist(r, rl);
    up_free(rl);
}

void relay_link_goaway(struct up_link *l, uint32_t code, const char *reason)
{
    struct rlink *rl = up_link_ud(l);
    rl->draining = true;
    UP_LOGI("%s link from %s going away (%s: %s); %zu stream(s) finish on it",
            rl->role == RL_AGENT ? "agent" : "client", rl->desc, up_mux_code_name(code), reason,
            up_link_nstreams(l));
}
