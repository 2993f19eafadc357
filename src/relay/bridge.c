/* The stream switch (see bridge.h). */
#include "relay/bridge.h"

#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "base/log.h"
#include "proto/token.h"
#include "relay/registry.h"

#define BRIDGE_PENDING_MAX (UP_MUX_MAX_WINDOW + 0u)
#define BRIDGE_MAX_REOPENS 3 /* agents tried after refusals that crossed their GOAWAY */

struct bridge {
    struct up_relay *relay;
    struct up_lstream a;  /* on the client's link (the peer opened it) */
    struct up_lstream b;  /* on the agent's link (we opened it) */
    struct up_buf ab, ba; /* bytes waiting for credit or room on the other link */
    bool fin_ab, fin_ba;
    bool a_done, b_done;
    uint32_t owed_b; /* credit the client granted before the agent accepted: passed on then */
    uint8_t reopens;
    struct rlink *agent; /* borrowed: valid while b is on the agent's link */
    char service[UP_MUX_MAX_NAME + 1];
};

static void bridge_maybe_free(struct bridge *br)
{
    if (br->a_done && br->b_done) {
        br->relay->n.streams_active--;
        up_buf_fini(&br->ab);
        up_buf_fini(&br->ba);
        up_free(br);
    }
}

/* Move bytes from src's peer to dst: straight into dst's link output if nothing is queued,
 * the rest into the pending buffer (only while dst's output is full: src's peer was granted
 * what dst's peer granted us, so dst's credit always covers them). Credit does not come back
 * to src for what left us but for what dst's peer consumed: CREDIT on dst is passed on to src
 * (a_credit, b_credit), so a stalled reader stops the sender with nothing held here. */
static void forward(struct bridge *br, struct up_lstream *src, struct up_lstream *dst,
                    struct up_buf *pending, const uint8_t *p, size_t n)
{
    size_t k = 0;
    if (!dst->link) {
        return; /* the other side is gone; its reset is on its way */
    }
    if (up_buf_len(pending) == 0) {
        k = up_link_send(dst, p, n);
        br->relay->n.bytes_relayed += k;
    }
    if (k < n) {
        if (up_buf_append(pending, p + k, n - k, BRIDGE_PENDING_MAX) < 0) {
            up_link_reset(src, UP_MUX_C_INTERNAL, "relay out of memory");
            up_link_reset(dst, UP_MUX_C_INTERNAL, "relay out of memory");
            return;
        }
        up_link_set_held(src, up_buf_len(pending));
        up_link_ready(dst);
    }
}

static size_t drain_pending(struct bridge *br, struct up_lstream *src, struct up_buf *pending,
                            bool fin_flag, uint8_t *dst, size_t max, bool *fin)
{
    size_t n = up_buf_len(pending);
    if (n > max) {
        n = max;
    }
    if (n) {
        memcpy(dst, up_buf_rptr(pending), n);
        up_buf_skip(pending, n);
        br->relay->n.bytes_relayed += n;
        up_link_set_held(src, up_buf_len(pending));
    }
    if (up_buf_len(pending) == 0) {
        up_buf_release_if_empty(pending);
        *fin = fin_flag;
    }
    return n;
}

/* peek/skip (link.h): the pending bytes, written by the link straight from here. */
static const uint8_t *peek_pending(struct up_buf *pending, size_t *n)
{
    *n = up_buf_len(pending);
    return *n ? up_buf_rptr(pending) : NULL;
}

static void skip_pending(struct bridge *br, struct up_lstream *src, struct up_buf *pending,
                         size_t n)
{
    up_buf_skip(pending, n);
    up_link_set_held(src, up_buf_len(pending));
    br->relay->n.bytes_relayed += n;
    up_buf_release_if_empty(pending);
}

static const uint8_t *a_peek(struct up_lstream *st, size_t *n)
{
    struct bridge *br = st->ud;
    return peek_pending(&br->ba, n);
}

static const uint8_t *b_peek(struct up_lstream *st, size_t *n)
{
    struct bridge *br = st->ud;
    return peek_pending(&br->ab, n);
}

static void a_skip(struct up_lstream *st, size_t n)
{
    struct bridge *br = st->ud;
    skip_pending(br, &br->b, &br->ba, n);
}

static void b_skip(struct up_lstream *st, size_t n)
{
    struct bridge *br = st->ud;
    skip_pending(br, &br->a, &br->ab, n);
}

static void a_data(struct up_lstream *st, const uint8_t *p, size_t n)
{
    struct bridge *br = st->ud;
    forward(br, &br->a, &br->b, &br->ab, p, n);
}

static void b_data(struct up_lstream *st, const uint8_t *p, size_t n)
{
    struct bridge *br = st->ud;
    forward(br, &br->b, &br->a, &br->ba, p, n);
}

static void a_fin(struct up_lstream *st)
{
    struct bridge *br = st->ud;
    br->fin_ab = true;
    up_link_ready(&br->b);
}

static void b_fin(struct up_lstream *st)
{
    struct bridge *br = st->ud;
    br->fin_ba = true;
    up_link_ready(&br->a);
}

static size_t a_pull(struct up_lstream *st, uint8_t *dst, size_t max, bool *fin)
{
    struct bridge *br = st->ud;
    *fin = false;
    return drain_pending(br, &br->b, &br->ba, br->fin_ba, dst, max, fin);
}

static size_t b_pull(struct up_lstream *st, uint8_t *dst, size_t max, bool *fin)
{
    struct bridge *br = st->ud;
    *fin = false;
    return drain_pending(br, &br->a, &br->ab, br->fin_ab, dst, max, fin);
}

/* The agent accepted: the client may send what the agent granted us. */
static void b_accept(struct up_lstream *st)
{
    struct bridge *br = st->ud;
    int64_t w = up_link_send_credit(&br->b);
    up_link_accept_follow(&br->a, w > 0 ? (uint32_t)w : 0);
    if (br->owed_b) {
        up_link_credit(&br->b, br->owed_b);
        br->owed_b = 0;
    }
}

/* The client granted more: so may the agent send more (after its ACCEPT). */
static void a_credit(struct up_lstream *st, uint32_t inc)
{
    struct bridge *br = st->ud;
    if (br->b.link && br->b.accepted) {
        up_link_credit(&br->b, inc);
    } else if (inc <= UP_MUX_MAX_WINDOW - br->owed_b) {
        br->owed_b += inc;
    }
}

static void b_credit(struct up_lstream *st, uint32_t inc)
{
    struct bridge *br = st->ud;
    up_link_credit(&br->a, inc);
}

static void a_close(struct up_lstream *st, uint32_t code, const char *reason)
{
    struct bridge *br = st->ud;
    br->a_done = true;
    if (code != UP_MUX_C_NONE && !br->b_done) {
        up_link_reset(&br->b, code, reason);
        br->b_done = true;
    } else if (!br->b.link) {
        br->b_done = true;
    }
    bridge_maybe_free(br);
}

static int bridge_open_agent(struct bridge *br, struct rlink *agent, const struct rlink *client);

/* The agent refused a stream that crossed its GOAWAY (or its draining link closed before
 * answering): nothing reached the backend, so try another agent for the same name. */
static bool bridge_reopen(struct bridge *br, uint32_t code)
{
    bool crossed = code == UP_MUX_C_SHUTDOWN ||
                   (code == UP_MUX_C_LINK_LOST && br->agent && br->agent->draining);
    if (!crossed || br->b.accepted || br->a_done || !br->a.link ||
        br->reopens >= BRIDGE_MAX_REOPENS) {
        return false;
    }
    struct up_relay *r = br->relay;
    struct rlink *agent = relay_find_agent(r, br->service, strlen(br->service), NULL);
    if (!agent || bridge_open_agent(br, agent, up_link_ud(br->a.link)) < 0) {
        return false;
    }
    br->reopens++;
    UP_LOGD("stream to '%s' refused by a draining agent: retried on %s", br->service, agent->desc);
    return true;
}

static void b_close(struct up_lstream *st, uint32_t code, const char *reason)
{
    struct bridge *br = st->ud;
    if (bridge_reopen(br, code)) {
        return;
    }
    br->b_done = true;
    if (code != UP_MUX_C_NONE && !br->a_done) {
        UP_LOGD("stream to '%s' ended: %s%s%s", br->service, up_mux_code_name(code),
                reason && *reason ? ": " : "", reason ? reason : "");
        up_link_reset(&br->a, code, reason);
        br->a_done = true;
    }
    bridge_maybe_free(br);
}

static void a_accept(struct up_lstream *st)
{
    (void)st;
}

static const struct up_lstream_ops a_ops = {
    .on_accept = a_accept,
    .on_data = a_data,
    .on_fin = a_fin,
    .on_close = a_close,
    .pull = a_pull,
    .peek = a_peek,
    .skip = a_skip,
    .on_credit = a_credit,
};

static const struct up_lstream_ops b_ops = {
    .on_accept = b_accept,
    .on_data = b_data,
    .on_fin = b_fin,
    .on_close = b_close,
    .pull = b_pull,
    .peek = b_peek,
    .skip = b_skip,
    .on_credit = b_credit,
};

/* Open br's agent half on agent's link; the metadata tells the agent who is calling. */
static int bridge_open_agent(struct bridge *br, struct rlink *agent, const struct rlink *client)
{
    char m[320];
    int ml = snprintf(m, sizeof m, "client=%s\nrelay=%s\nsub=%s\n", client->peer, client->local,
                      client->claims.sub);
    /* The agent may send what the client granted us, and more as the client grants more. */
    int64_t w = up_link_send_credit(&br->a);
    br->owed_b = 0; /* w holds every grant so far (a reopen included) */
    int rv = up_link_open_follow(agent->link, &br->b, br->service, (const uint8_t *)m,
                                 ml > 0 && (size_t)ml < sizeof m ? (size_t)ml : 0,
                                 w > 0 ? (uint32_t)w : 0, &b_ops, br);
    if (rv == 0) {
        br->agent = agent;
    }
    return rv;
}

void bridge_link_open(struct up_link *l, uint32_t sid, uint32_t window, const char *name,
                      size_t name_len, const uint8_t *meta, size_t meta_len)
{
    struct rlink *rl = up_link_ud(l);
    struct up_relay *r = rl->relay;
    (void)meta;
    (void)meta_len;
    char svc[UP_MUX_MAX_NAME + 1];
    memcpy(svc, name, name_len);
    svc[name_len] = '\0';
    if (rl->role != RL_CLIENT) {
        r->n.streams_refused++;
        up_link_refuse(l, sid, UP_MUX_C_PROTOCOL, "agents cannot open streams");
        return;
    }
    /* Authorise every stream, not only the link (chisel GHSA-24fp-5v3p-rvpw). */
    if (!up_token_allows(&rl->claims, name, name_len)) {
        char why[128];
        snprintf(why, sizeof why, "token does not allow service '%s'", svc);
        r->n.streams_refused++;
        r->n.rejected++;
        UP_LOGI("refused stream from %s: %s", rl->desc, why);
        up_link_refuse(l, sid, UP_MUX_C_FORBIDDEN, why);
        return;
    }
    if (r->shutting) {
        /* Links refuse OPENs after our GOAWAY already; this covers a zero drain timeout. */
        r->n.streams_refused++;
        up_link_refuse(l, sid, UP_MUX_C_SHUTDOWN, "refused: relay is shutting down");
        return;
    }
    struct rlink *agent = relay_find_agent(r, name, name_len, NULL);
    if (!agent) {
        char why[128];
        snprintf(why, sizeof why, "no agent online for service '%s'", svc);
        r->n.streams_refused++;
        up_link_refuse(l, sid, UP_MUX_C_NO_SERVICE, why);
        return;
    }
    struct bridge *br = up_calloc(1, sizeof(*br));
    if (!br) {
        up_link_refuse(l, sid, UP_MUX_C_INTERNAL, "relay out of memory");
        return;
    }
    br->relay = r;
    memcpy(br->service, svc, name_len + 1);
    up_buf_init(&br->ab);
    up_buf_init(&br->ba);
    if (up_link_attach(l, &br->a, sid, window, &a_ops, br) < 0) {
        up_free(br);
        up_link_refuse(l, sid, UP_MUX_C_INTERNAL, "relay out of memory");
        return;
    }
    int rv = bridge_open_agent(br, agent, rl);
    if (rv < 0) {
        br->b_done = true;
        br->a_done = true;
        up_link_reset(&br->a, rv == UP_ELIMIT ? UP_MUX_C_LIMIT : UP_MUX_C_INTERNAL,
                      rv == UP_ELIMIT ? "agent link is full" : "cannot open stream to agent");
        r->n.streams_active++;
        bridge_maybe_free(br);
        return;
    }
    r->n.streams_total++;
    r->n.streams_active++;
}
