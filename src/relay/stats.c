/* /stats (see stats.h). */
#include "relay/stats.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "relay/conn.h"

void stats_respond(struct hconn *c)
{
    struct up_relay *r = c->relay;
    size_t agents = 0, clients = 0, streams = 0, draining = 0;
    uint64_t frames_in = 0, data_in = 0;
    for (struct rlink *rl = r->links; rl; rl = rl->next) {
        if (!rl->link) {
            continue;
        }
        const struct up_link_stats *ls = up_link_stats(rl->link);
        frames_in += ls->frames_in;
        data_in += ls->bytes_in;
        if (rl->draining) {
            draining++;
        }
        if (rl->role == RL_AGENT) {
            agents++;
        } else {
            clients++;
        }
        streams += up_link_nstreams(rl->link);
    }
    json_t *o = json_pack(
        "{s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:b,s:I,s:I,s:I,s:I,s:I}", "version",
        "0.1.0", "uptime_s", (json_int_t)(time(NULL) - r->started), "agents", (json_int_t)agents,
        "clients", (json_int_t)clients, "link_streams", (json_int_t)streams, "streams_active",
        (json_int_t)r->n.streams_active, "streams_total", (json_int_t)r->n.streams_total,
        "streams_refused", (json_int_t)r->n.streams_refused, "links_total",
        (json_int_t)r->n.links_total, "rejected", (json_int_t)r->n.rejected, "http_errors",
        (json_int_t)r->n.http_errors, "bytes_relayed", (json_int_t)r->n.bytes_relayed, "draining",
        (int)r->shutting, "links_draining", (json_int_t)draining, "http_proxied",
        (json_int_t)r->n.http_proxied, "pairings_waiting", (json_int_t)r->n_pairings,
        "link_frames_in", (json_int_t)frames_in, "link_data_in", (json_int_t)data_in);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!s) {
        hc_error(c, 500, "Internal Server Error", "out of memory");
        return;
    }
    char body[2048];
    snprintf(body, sizeof body, "%s\n", s);
    free(s); /* allocated by jansson */
    hc_respond(c, 200, "OK", body, "application/json", NULL);
}
