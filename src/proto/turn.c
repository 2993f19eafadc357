/* The TURN server core (RFC 8656) after Firezone's relay: one struct holds every allocation,
 * inputs queue commands, the shell drains them. Lookups: allocations by 5-tuple (a chained
 * hash), by relay port (an array per family indexed by port - min_port), permissions by peer
 * IP and channels by number or by peer (sorted arrays in the allocation, binary search). The
 * expiry of everything an allocation holds is folded into one deadline per allocation, kept
 * in a min-heap. Nothing on the relay paths allocates. */
#include "proto/turn.h"

#include <stddef.h>
#include <string.h>

#include "base/alloc.h"
#include "base/bytes.h"
#include "base/crypto.h"

#define CMD_CAP 256
/* Inputs and the timer stop queueing at CMD_SOFT; the rest is kept for what cannot be
 * dropped (the ports a port result or a closed connection must open or close). */
#define CMD_SOFT (CMD_CAP - 16)
#define CMD_PER_INPUT 4 /* at most: two CLOSE_PORT, an answer, and one spare */
#define ANSWER_CAP 1024 /* the largest answer: 420 with realm-less attributes, < 400 */
#define PORT_TRIES 4    /* failed OPEN_PORT per allocation before 508 */
#define PICK_TRIES 16   /* random draws before a linear scan for a free port */
#define RL_SETS 256     /* rate-limit table: sets x ways entries, overwritten when full */
#define RL_WAYS 4
#define NONCE_LEN 32     /* 16 hex digits of the expiry, 16 of the MAC */
#define USERNAME_MAX 513 /* RFC 8489 §14.3 */
#define REALM_MAX 127    /* RFC 8489 §14.9: fewer than 128 characters */
#define SOFTWARE_MAX 64  /* keeps a Binding answer within a request + 100 bytes */
#define SECRET_MAX 256   /* auth_secret bytes */
#define HTAB_MIN 64
#define NO_FAMILY 2
#define FAMILY_V4 0x01 /* RFC 8656 §18.1 REQUESTED-ADDRESS-FAMILY */
#define FAMILY_V6 0x02
#define PROTO_UDP 17 /* RFC 8656 §18.11 REQUESTED-TRANSPORT */

/* A hash chain link, embedded in the hashed object. */
struct hnode {
    struct hnode *next;
    uint64_t hash;
};

struct htab {
    struct hnode **b; /* owned */
    size_t nb;        /* a power of two */
    size_t n;
};

struct perm {
    uint8_t ip[16];
    uint64_t expires_ms;
};

struct chan {
    struct up_stun_addr peer;
    uint16_t number;
    bool bound;          /* counted in stats.channels; false during the rebind guard */
    uint64_t expires_ms; /* end of the binding; reserved until + UP_TURN_REBIND_GUARD_S */
};

struct user {
    struct hnode node; /* in t->users */
    uint8_t id[16];
    uint32_t n; /* allocations (pending or active) */
};

enum alloc_state {
    A_PENDING, /* OPEN_PORT outstanding, the answer not sent yet */
    A_ACTIVE,  /* answered; relaying; in the heap */
    A_DEAD,    /* was pending, then dropped: waits for the result of its outstanding OPEN_PORT */
};

struct alloc {
    struct hnode tuple; /* in t->tuples unless A_DEAD */
    struct up_turn_client client;
    struct user *user; /* borrowed from t->users; NULL when A_DEAD */
    uint8_t user_id[16];
    uint8_t state;   /* enum alloc_state */
    uint8_t waiting; /* family (0 v4, 1 v6) of the outstanding OPEN_PORT, or NO_FAMILY */
    uint8_t tries;
    bool want[2]; /* families asked for */
    bool open[2]; /* families whose port is bound (port_result ok) */
    bool held[2]; /* families holding a port in t->ports (open or being opened) */
    uint16_t port[2];
    bool v6_refused; /* ADDITIONAL-ADDRESS-FAMILY without an IPv6 relay: ADDRESS-ERROR-CODE */
    bool even;       /* EVEN-PORT: the relayed port is even (no reservation of the next one) */
    /* What the Allocate answer needs (sent after the port results). */
    uint8_t tid[12];
    uint8_t key[16];
    bool mi, mi256, fp;
    uint32_t lifetime_s;
    uint64_t expires_ms;
    uint64_t deadline_ms; /* min of expires_ms and every permission's and channel's time */
    size_t heap_idx;
    struct perm *perms; /* owned; sorted by ip */
    size_t n_perms, cap_perms;
    struct chan *chans; /* owned; sorted by number */
    uint16_t *by_peer;  /* owned; indexes into chans sorted by peer; cap_chans entries */
    size_t n_chans, cap_chans;
};

struct rl_entry {
    uint8_t ip[16];
    uint64_t sec;
    uint32_t n;
};

struct up_turn {
    struct up_turn_cfg cfg;
    uint8_t nonce_key[32];
    uint64_t seed;
    uint8_t tid_salt[4];
    uint64_t tid_ctr;
    struct htab tuples, users;
    struct alloc **ports[2]; /* owned; by port - min_port; NULL without a relay of the family */
    size_t n_ports;
    size_t used_ports[2];
    struct alloc **heap; /* owned; A_ACTIVE allocations by deadline_ms */
    size_t heap_n, heap_cap;
    size_t n_allocs; /* every state */
    struct rl_entry rl[RL_SETS][RL_WAYS];
    struct up_turn_cmd q[CMD_CAP];
    size_t q_head, q_n;
    uint8_t answer[ANSWER_CAP];
    struct up_turn_stats stats;
};

/* What an answer needs to know about the request it answers. */
struct req {
    const struct up_turn_client *from;
    const uint8_t *buf;          /* NULL for an Allocate answered after its port results */
    const struct up_stun_msg *m; /* likewise */
    uint16_t method;
    const uint8_t *tid;
    bool mi, mi256, fp; /* integrity attributes the request carried */
    bool authed;
    uint8_t key[16];
    uint8_t user_id[16];
    uint64_t now_ms;
};

/* ---- small helpers ---- */

static size_t pad4(size_t n)
{
    return (n + 3) & ~(size_t)3;
}

static uint64_t mix64(uint64_t x)
{
    /* splitmix64's finaliser */
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

static uint64_t hash_bytes(uint64_t seed, const uint8_t *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull ^ seed; /* FNV-1a, then mixed */
    for (size_t i = 0; i < n; i++) {
        h = (h ^ p[i]) * 0x100000001b3ull;
    }
    return mix64(h);
}

static int fam_of(const uint8_t ip[16])
{
    return up_ip_is_v4(ip) ? 0 : 1;
}

static bool addr_eq(const struct up_stun_addr *a, const struct up_stun_addr *b)
{
    return a->port == b->port && memcmp(a->ip, b->ip, 16) == 0;
}

static int addr_cmp(const struct up_stun_addr *a, const struct up_stun_addr *b)
{
    int c = memcmp(a->ip, b->ip, 16);
    if (c) {
        return c;
    }
    return a->port < b->port ? -1 : a->port > b->port;
}

static uint64_t rand64(struct up_turn *t)
{
    return t->cfg.rand(t->cfg.rand_ud);
}

static uint64_t default_rand(void *ud)
{
    (void)ud;
    uint64_t v = 0;
    uint8_t b[8];
    if (up_random_bytes(b, sizeof b) == UP_OK) {
        v = up_rd_u64be(b);
    }
    return v;
}

/* ---- hash tables ---- */

static int htab_init(struct htab *h)
{
    h->b = up_calloc(HTAB_MIN, sizeof(*h->b));
    h->nb = HTAB_MIN;
    h->n = 0;
    return h->b ? UP_OK : UP_ENOMEM;
}

static void htab_fini(struct htab *h)
{
    UP_FREE(h->b);
}

static void htab_grow(struct htab *h)
{
    size_t nb = h->nb * 2;
    struct hnode **b = up_calloc(nb, sizeof(*b));
    if (!b) {
        return; /* longer chains, still correct */
    }
    for (size_t i = 0; i < h->nb; i++) {
        struct hnode *e = h->b[i];
        while (e) {
            struct hnode *next = e->next;
            size_t j = (size_t)(e->hash & (nb - 1));
            e->next = b[j];
            b[j] = e;
            e = next;
        }
    }
    up_free(h->b);
    h->b = b;
    h->nb = nb;
}

static void htab_add(struct htab *h, struct hnode *e, uint64_t hash)
{
    if (h->n >= h->nb * 2) {
        htab_grow(h);
    }
    size_t i = (size_t)(hash & (h->nb - 1));
    e->hash = hash;
    e->next = h->b[i];
    h->b[i] = e;
    h->n++;
}

static void htab_del(struct htab *h, struct hnode *e)
{
    struct hnode **pp = &h->b[e->hash & (h->nb - 1)];
    while (*pp && *pp != e) {
        pp = &(*pp)->next;
    }
    if (*pp) {
        *pp = e->next;
        h->n--;
    }
    e->next = NULL;
}

static struct hnode *htab_first(const struct htab *h, uint64_t hash)
{
    return h->b[hash & (h->nb - 1)];
}

#define UP_CONTAINER_OF(p, type, member) ((type *)(void *)((char *)(p)-offsetof(type, member)))

/* ---- 5-tuples and users ---- */

static bool is_stream(const struct up_turn_client *c)
{
    return c->proto != UP_TURN_UDP;
}

static uint64_t tuple_hash(const struct up_turn *t, const struct up_turn_client *c)
{
    if (is_stream(c)) {
        /* The shell's connection id names a TCP/TLS 5-tuple on its own. */
        return mix64(t->seed ^ c->conn ^ 0x5a5a5a5a5a5a5a5aull);
    }
    uint8_t k[36];
    memcpy(k, c->addr.ip, 16);
    up_wr_u16be(k + 16, c->addr.port);
    memcpy(k + 18, c->local.ip, 16);
    up_wr_u16be(k + 34, c->local.port);
    return hash_bytes(t->seed, k, sizeof k);
}

static bool tuple_eq(const struct up_turn_client *a, const struct up_turn_client *b)
{
    if (is_stream(a) || is_stream(b)) {
        return is_stream(a) && is_stream(b) && a->conn == b->conn;
    }
    return addr_eq(&a->addr, &b->addr) && addr_eq(&a->local, &b->local);
}

static struct alloc *tuple_find(const struct up_turn *t, const struct up_turn_client *c)
{
    uint64_t h = tuple_hash(t, c);
    for (struct hnode *e = htab_first(&t->tuples, h); e; e = e->next) {
        struct alloc *a = UP_CONTAINER_OF(e, struct alloc, tuple);
        if (e->hash == h && tuple_eq(&a->client, c)) {
            return a;
        }
    }
    return NULL;
}

static struct user *user_get(struct up_turn *t, const uint8_t id[16], bool create)
{
    uint64_t h = mix64(up_rd_u64be(id) ^ t->seed);
    for (struct hnode *e = htab_first(&t->users, h); e; e = e->next) {
        struct user *u = UP_CONTAINER_OF(e, struct user, node);
        if (e->hash == h && memcmp(u->id, id, 16) == 0) {
            return u;
        }
    }
    if (!create) {
        return NULL;
    }
    struct user *u = up_calloc(1, sizeof(*u));
    if (!u) {
        return NULL;
    }
    memcpy(u->id, id, 16);
    htab_add(&t->users, &u->node, h);
    return u;
}

static void user_unref(struct up_turn *t, struct user *u)
{
    if (u && --u->n == 0) {
        htab_del(&t->users, &u->node);
        up_free(u);
    }
}

/* ---- the deadline heap ---- */

static void heap_set(struct up_turn *t, size_t i, struct alloc *a)
{
    t->heap[i] = a;
    a->heap_idx = i;
}

static void heap_up(struct up_turn *t, size_t i)
{
    struct alloc *a = t->heap[i];
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (t->heap[p]->deadline_ms <= a->deadline_ms) {
            break;
        }
        heap_set(t, i, t->heap[p]);
        i = p;
    }
    heap_set(t, i, a);
}

static void heap_down(struct up_turn *t, size_t i)
{
    struct alloc *a = t->heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= t->heap_n) {
            break;
        }
        if (c + 1 < t->heap_n && t->heap[c + 1]->deadline_ms < t->heap[c]->deadline_ms) {
            c++;
        }
        if (a->deadline_ms <= t->heap[c]->deadline_ms) {
            break;
        }
        heap_set(t, i, t->heap[c]);
        i = c;
    }
    heap_set(t, i, a);
}

static int heap_reserve(struct up_turn *t, size_t n)
{
    if (n <= t->heap_cap) {
        return UP_OK;
    }
    size_t cap = t->heap_cap ? t->heap_cap * 2 : 64;
    while (cap < n) {
        cap *= 2;
    }
    struct alloc **h = up_realloc(t->heap, cap * sizeof(*h));
    if (!h) {
        return UP_ENOMEM;
    }
    t->heap = h;
    t->heap_cap = cap;
    return UP_OK;
}

static void heap_push(struct up_turn *t, struct alloc *a)
{
    /* Capacity was reserved when the allocation was created. */
    heap_set(t, t->heap_n++, a);
    heap_up(t, a->heap_idx);
}

static void heap_remove(struct up_turn *t, struct alloc *a)
{
    size_t i = a->heap_idx;
    struct alloc *last = t->heap[--t->heap_n];
    if (last != a) {
        heap_set(t, i, last);
        heap_up(t, i);
        heap_down(t, last->heap_idx);
    }
}

static uint64_t chan_until(const struct chan *c)
{
    return c->bound ? c->expires_ms : c->expires_ms + UP_TURN_REBIND_GUARD_S * 1000ull;
}

/* Recompute the allocation's deadline and move it in the heap. */
static void alloc_reschedule(struct up_turn *t, struct alloc *a)
{
    uint64_t d = a->expires_ms;
    for (size_t i = 0; i < a->n_perms; i++) {
        if (a->perms[i].expires_ms < d) {
            d = a->perms[i].expires_ms;
        }
    }
    for (size_t i = 0; i < a->n_chans; i++) {
        uint64_t u = chan_until(&a->chans[i]);
        if (u < d) {
            d = u;
        }
    }
    a->deadline_ms = d;
    heap_up(t, a->heap_idx);
    heap_down(t, a->heap_idx);
}

/* ---- the command queue ---- */

static bool cmd_push(struct up_turn *t, const struct up_turn_cmd *c)
{
    if (t->q_n == CMD_CAP) {
        return false; /* the shell did not drain: only possible when it breaks the contract */
    }
    t->q[(t->q_head + t->q_n) % CMD_CAP] = *c;
    t->q_n++;
    return true;
}

/* Every input starts here. SEND commands left from an earlier call point into buffers that
 * are gone by now (turn.h: drain after every input), so they are dropped; port commands are
 * kept, since a lost one would leak or break a socket. */
static void begin_call(struct up_turn *t)
{
    if (t->q_n == 0) {
        t->q_head = 0;
        return;
    }
    size_t n = 0;
    for (size_t i = 0; i < t->q_n; i++) {
        struct up_turn_cmd c = t->q[(t->q_head + i) % CMD_CAP];
        if (c.kind == UP_TURN_CMD_SEND_CLIENT || c.kind == UP_TURN_CMD_SEND_PEER) {
            t->stats.dropped++;
            continue;
        }
        t->q[(t->q_head + n) % CMD_CAP] = c;
        n++;
    }
    t->q_n = n;
}

static bool has_room(const struct up_turn *t, size_t n)
{
    return t->q_n + n <= CMD_SOFT;
}

static void port_cmd(struct up_turn *t, enum up_turn_cmd_kind kind, int fam, uint16_t port)
{
    struct up_turn_cmd c = {.kind = kind, .port = port, .v6 = fam == 1};
    (void)cmd_push(t, &c);
}

/* ---- relay ports ---- */

static struct alloc **port_slot(struct up_turn *t, int fam, uint16_t port)
{
    if (!t->ports[fam] || port < t->cfg.min_port || port > t->cfg.max_port) {
        return NULL;
    }
    return &t->ports[fam][port - t->cfg.min_port];
}

static void port_hold(struct up_turn *t, struct alloc *a, int fam, uint16_t port)
{
    *port_slot(t, fam, port) = a;
    t->used_ports[fam]++;
    a->port[fam] = port;
    a->held[fam] = true;
}

static void port_release(struct up_turn *t, struct alloc *a, int fam)
{
    if (!a->held[fam]) {
        return;
    }
    struct alloc **s = port_slot(t, fam, a->port[fam]);
    if (s && *s == a) {
        *s = NULL;
        t->used_ports[fam]--;
    }
    a->held[fam] = false;
}

/* A free port of the family, uniformly at random (retrying on taken ones), other than avoid,
 * and even when asked. Returns false when none is free. */
static bool port_pick(struct up_turn *t, int fam, uint16_t avoid, bool even, uint16_t *out)
{
    size_t range = t->n_ports;
    if (t->used_ports[fam] >= range) {
        return false;
    }
    for (int i = 0; i < PICK_TRIES; i++) {
        size_t idx = (size_t)(rand64(t) % range);
        uint16_t p = (uint16_t)(t->cfg.min_port + idx);
        if (!t->ports[fam][idx] && p != avoid && !(even && (p & 1))) {
            *out = p;
            return true;
        }
    }
    /* A nearly full range: scan from a random place. */
    size_t start = (size_t)(rand64(t) % range);
    for (size_t i = 0; i < range; i++) {
        size_t idx = (start + i) % range;
        uint16_t p = (uint16_t)(t->cfg.min_port + idx);
        if (!t->ports[fam][idx] && p != avoid && !(even && (p & 1))) {
            *out = p;
            return true;
        }
    }
    return false;
}

/* ---- peers ---- */

/* RFC 6890 special-purpose IPv4 blocks a relay must not reach on a client's behalf. */
static bool v4_refused(const uint8_t a[4])
{
    uint8_t b0 = a[0], b1 = a[1];
    return b0 == 0 || b0 == 10 || b0 == 127 || (b0 == 100 && (b1 & 0xC0) == 64) ||
           (b0 == 169 && b1 == 254) || (b0 == 172 && (b1 & 0xF0) == 16) ||
           (b0 == 192 && b1 == 168) || b0 >= 224; /* multicast 224/4, reserved 240/4 */
}

static bool peer_refused(const struct up_turn *t, const uint8_t ip[16])
{
    static const uint8_t zero12[12];
    static const uint8_t nat64[12] = {0, 0x64, 0xff, 0x9b}; /* RFC 6052 64:ff9b::/96 */
    if (up_cidr_list_match(&t->cfg.allow_peers, ip)) {
        return false;
    }
    if (up_ip_is_v4(ip)) {
        return v4_refused(ip + 12);
    }
    if (memcmp(ip, nat64, 12) == 0) {
        return v4_refused(ip + 12);
    }
    return memcmp(ip, zero12, 12) == 0 ||               /* ::, ::1, IPv4-compatible */
           (ip[0] & 0xFE) == 0xFC ||                    /* fc00::/7 unique local */
           (ip[0] == 0xFE && (ip[1] & 0xC0) == 0x80) || /* fe80::/10 link-local */
           (ip[0] == 0xFE && (ip[1] & 0xC0) == 0xC0) || /* fec0::/10 site-local */
           ip[0] == 0xFF;                               /* ff00::/8 multicast */
}

static size_t perm_lower(const struct alloc *a, const uint8_t ip[16])
{
    size_t lo = 0, hi = a->n_perms;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (memcmp(a->perms[mid].ip, ip, 16) < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

static struct perm *perm_find(const struct alloc *a, const uint8_t ip[16])
{
    size_t i = perm_lower(a, ip);
    if (i < a->n_perms && memcmp(a->perms[i].ip, ip, 16) == 0) {
        return &a->perms[i];
    }
    return NULL;
}

static bool perm_valid(const struct alloc *a, const uint8_t ip[16], uint64_t now_ms)
{
    const struct perm *p = perm_find(a, ip);
    return p && now_ms < p->expires_ms;
}

/* Make room for n more permissions; false when the limit or memory says no. */
static bool perm_reserve(struct alloc *a, size_t n)
{
    if (a->n_perms + n > UP_TURN_MAX_PERMISSIONS) {
        return false;
    }
    if (a->n_perms + n <= a->cap_perms) {
        return true;
    }
    size_t cap = a->cap_perms ? a->cap_perms : 2;
    while (cap < a->n_perms + n) {
        cap *= 2;
    }
    if (cap > UP_TURN_MAX_PERMISSIONS) {
        cap = UP_TURN_MAX_PERMISSIONS;
    }
    struct perm *p = up_realloc(a->perms, cap * sizeof(*p));
    if (!p) {
        return false;
    }
    a->perms = p;
    a->cap_perms = cap;
    return true;
}

/* Install or refresh; room was reserved. */
static void perm_install(struct up_turn *t, struct alloc *a, const uint8_t ip[16], uint64_t now_ms)
{
    uint64_t until = now_ms + UP_TURN_PERMISSION_S * 1000ull;
    size_t i = perm_lower(a, ip);
    if (i < a->n_perms && memcmp(a->perms[i].ip, ip, 16) == 0) {
        a->perms[i].expires_ms = until;
        return;
    }
    memmove(&a->perms[i + 1], &a->perms[i], (a->n_perms - i) * sizeof(*a->perms));
    memcpy(a->perms[i].ip, ip, 16);
    a->perms[i].expires_ms = until;
    a->n_perms++;
    t->stats.permissions++;
}

static size_t chan_lower(const struct alloc *a, uint16_t number)
{
    size_t lo = 0, hi = a->n_chans;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (a->chans[mid].number < number) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

static struct chan *chan_by_number(const struct alloc *a, uint16_t number)
{
    size_t i = chan_lower(a, number);
    if (i < a->n_chans && a->chans[i].number == number) {
        return &a->chans[i];
    }
    return NULL;
}

static struct chan *chan_by_peer(const struct alloc *a, const struct up_stun_addr *peer)
{
    size_t lo = 0, hi = a->n_chans;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = addr_cmp(&a->chans[a->by_peer[mid]].peer, peer);
        if (c == 0) {
            return &a->chans[a->by_peer[mid]];
        }
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return NULL;
}

/* Rebuild the by-peer index after chans changed (binds are rare; n is bounded). */
static void chan_reindex(struct alloc *a)
{
    for (size_t i = 0; i < a->n_chans; i++) {
        size_t j = i;
        while (j > 0 && addr_cmp(&a->chans[a->by_peer[j - 1]].peer, &a->chans[i].peer) > 0) {
            a->by_peer[j] = a->by_peer[j - 1];
            j--;
        }
        a->by_peer[j] = (uint16_t)i;
    }
}

static bool chan_reserve(struct alloc *a)
{
    if (a->n_chans >= UP_TURN_MAX_CHANNELS) {
        return false;
    }
    if (a->n_chans < a->cap_chans) {
        return true;
    }
    size_t cap = a->cap_chans ? a->cap_chans * 2 : 2;
    if (cap > UP_TURN_MAX_CHANNELS) {
        cap = UP_TURN_MAX_CHANNELS;
    }
    struct chan *c = up_realloc(a->chans, cap * sizeof(*c));
    if (!c) {
        return false;
    }
    a->chans = c;
    uint16_t *bp = up_realloc(a->by_peer, cap * sizeof(*bp));
    if (!bp) {
        return false; /* chans grew, cap_chans did not: the next call retries */
    }
    a->by_peer = bp;
    a->cap_chans = cap;
    return true;
}

/* ---- allocations ---- */

static void alloc_destroy(struct up_turn *t, struct alloc *a)
{
    up_free(a->perms);
    up_free(a->chans);
    up_free(a->by_peer);
    up_free(a);
    t->n_allocs--;
}

/* Free an allocation: its bound ports are closed (CLOSE_PORT, IPv4 first). A pending one
 * with an OPEN_PORT outstanding becomes A_DEAD until that port's result comes back. */
static void alloc_free(struct up_turn *t, struct alloc *a)
{
    for (int f = 0; f < 2; f++) {
        if (a->open[f]) {
            port_cmd(t, UP_TURN_CMD_CLOSE_PORT, f, a->port[f]);
            a->open[f] = false;
        }
        if (f != a->waiting) {
            port_release(t, a, f);
        }
    }
    if (a->state == A_ACTIVE) {
        heap_remove(t, a);
        t->stats.allocations--;
        t->stats.permissions -= a->n_perms;
        for (size_t i = 0; i < a->n_chans; i++) {
            t->stats.channels -= a->chans[i].bound;
        }
    }
    if (a->state != A_DEAD) {
        htab_del(&t->tuples, &a->tuple);
        user_unref(t, a->user);
        a->user = NULL;
    }
    if (a->waiting != NO_FAMILY) {
        a->state = A_DEAD;
        return;
    }
    alloc_destroy(t, a);
}

static uint32_t lifetime_of(const struct up_turn *t, const struct up_stun_msg *m)
{
    /* RFC 8656 §7.2: the smaller of the requested and the maximum, but at least the
     * default. */
    const struct up_stun_attr *la = up_stun_find(m, UP_STUN_A_LIFETIME);
    uint32_t v = 0;
    if (!la || up_stun_u32(la, &v) != UP_OK) {
        return t->cfg.default_lifetime_s;
    }
    if (v > t->cfg.max_lifetime_s) {
        v = t->cfg.max_lifetime_s;
    }
    return v > t->cfg.default_lifetime_s ? v : t->cfg.default_lifetime_s;
}

/* ---- nonces (stateless) ---- */

static void nonce_mac(const struct up_turn *t, const struct up_stun_addr *from, uint64_t exp,
                      uint8_t mac[UP_SHA256_LEN])
{
    uint8_t in[26];
    up_wr_u64be(in, exp);
    memcpy(in + 8, from->ip, 16);
    up_wr_u16be(in + 24, from->port);
    if (up_hmac_sha256(t->nonce_key, sizeof t->nonce_key, in, sizeof in, mac) != UP_OK) {
        memset(mac, 0xFF, UP_SHA256_LEN); /* matches no nonce: the client sees 438 again */
    }
}

static void hex8(uint64_t v, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 15; i >= 0; i--) {
        out[i] = digits[v & 15];
        v >>= 4;
    }
}

/* hex(expiry_ms) || hex(HMAC-SHA256(key, expiry || client address)[0..8)): no state kept. */
static void nonce_make(const struct up_turn *t, const struct up_stun_addr *from, uint64_t now_ms,
                       char out[NONCE_LEN])
{
    uint64_t exp = now_ms + t->cfg.nonce_lifetime_s * 1000ull;
    uint8_t mac[UP_SHA256_LEN];
    nonce_mac(t, from, exp, mac);
    hex8(exp, out);
    hex8(up_rd_u64be(mac), out + 16);
}

static bool hex_parse(const uint8_t *s, uint64_t *out)
{
    uint64_t v = 0;
    for (int i = 0; i < 16; i++) {
        uint8_t c = s[i];
        unsigned d;
        if (c >= '0' && c <= '9') {
            d = (unsigned)(c - '0');
        } else if (c >= 'a' && c <= 'f') {
            d = (unsigned)(c - 'a' + 10);
        } else {
            return false;
        }
        v = v << 4 | d;
    }
    *out = v;
    return true;
}

static bool nonce_ok(const struct up_turn *t, const struct up_stun_addr *from, uint64_t now_ms,
                     const struct up_stun_attr *n)
{
    uint64_t exp, mac_part;
    if (n->len != NONCE_LEN || !hex_parse(n->value, &exp) || !hex_parse(n->value + 16, &mac_part)) {
        return false;
    }
    uint8_t mac[UP_SHA256_LEN], got[8];
    nonce_mac(t, from, exp, mac);
    up_wr_u64be(got, mac_part);
    return up_ct_equal(mac, got, 8) && now_ms < exp;
}

/* ---- answers ---- */

static const char *reason_of(int code)
{
    switch (code) {
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 420:
        return "Unknown Attribute";
    case 437:
        return "Allocation Mismatch";
    case 438:
        return "Stale Nonce";
    case 440:
        return "Address Family not Supported";
    case 441:
        return "Wrong Credentials";
    case 442:
        return "Unsupported Transport Protocol";
    case 443:
        return "Peer Address Family Mismatch";
    case 486:
        return "Allocation Quota Reached";
    case 508:
        return "Insufficient Capacity";
    default:
        return "Error";
    }
}

/* Per source IP, at most cfg.unauth_budget unauthenticated answers a second. The table has
 * a fixed size: a set's oldest entry is overwritten, so a flood of sources costs no memory
 * (and at worst resets some source's count). */
static bool budget_take(struct up_turn *t, const uint8_t ip[16], uint64_t now_ms)
{
    if (t->cfg.unauth_budget == 0) {
        return true;
    }
    uint64_t sec = now_ms / 1000;
    struct rl_entry *set = t->rl[hash_bytes(t->seed, ip, 16) & (RL_SETS - 1)];
    struct rl_entry *victim = &set[0];
    for (size_t w = 0; w < RL_WAYS; w++) {
        struct rl_entry *e = &set[w];
        if (e->n && memcmp(e->ip, ip, 16) == 0) {
            if (e->sec != sec) {
                e->sec = sec;
                e->n = 0;
            }
            if (e->n >= t->cfg.unauth_budget) {
                return false;
            }
            e->n++;
            return true;
        }
        /* The victim: an empty way, else the one least recently counted. */
        if (victim->n && (e->n == 0 || e->sec < victim->sec)) {
            victim = e;
        }
    }
    memcpy(victim->ip, ip, 16);
    victim->sec = sec;
    victim->n = 1;
    return true;
}

static void reply_begin(struct up_turn *t, struct up_stun_builder *b, const struct req *rq,
                        uint8_t cls)
{
    up_stun_begin(b, t->answer, sizeof t->answer, rq->method, cls, rq->tid);
}

/* Authenticate (when the request was), fingerprint (when the request was) and queue. */
static void reply_send(struct up_turn *t, struct up_stun_builder *b, const struct req *rq)
{
    if (rq->authed) {
        if (rq->mi) {
            up_stun_add_integrity(b, rq->key, sizeof rq->key);
        }
        if (rq->mi256) {
            up_stun_add_integrity_sha256(b, rq->key, sizeof rq->key);
        }
    }
    if (rq->fp) {
        up_stun_add_fingerprint(b);
    }
    size_t len;
    if (up_stun_end(b, &len) != UP_OK) {
        t->stats.dropped++;
        return;
    }
    if (!rq->authed && !budget_take(t, rq->from->addr.ip, rq->now_ms)) {
        t->stats.dropped++;
        return;
    }
    if ((t->answer[0] & 0x01) && (t->answer[1] & 0x10)) {
        t->stats.errors++; /* class bits C1 C0 = 11 */
    }
    struct up_turn_cmd c = {
        .kind = UP_TURN_CMD_SEND_CLIENT, .client = *rq->from, .data = t->answer, .len = len};
    if (!cmd_push(t, &c)) {
        t->stats.dropped++;
    }
}

static void add_realm_nonce(struct up_turn *t, struct up_stun_builder *b, const struct req *rq)
{
    char nonce[NONCE_LEN];
    nonce_make(t, &rq->from->addr, rq->now_ms, nonce);
    up_stun_add(b, UP_STUN_A_REALM, t->cfg.realm, strlen(t->cfg.realm));
    up_stun_add(b, UP_STUN_A_NONCE, nonce, sizeof nonce);
}

static void send_error(struct up_turn *t, const struct req *rq, int code)
{
    struct up_stun_builder b;
    reply_begin(t, &b, rq, UP_STUN_ERROR);
    up_stun_add_error(&b, code, reason_of(code));
    if (code == 401 || code == 438) {
        add_realm_nonce(t, &b, rq);
    }
    reply_send(t, &b, rq);
}

static void send_unknown(struct up_turn *t, const struct req *rq, const uint16_t *types, size_t n)
{
    uint8_t v[2 * (UP_STUN_MAX_UNKNOWN + 3)];
    for (size_t i = 0; i < n; i++) {
        up_wr_u16be(v + 2 * i, types[i]);
    }
    struct up_stun_builder b;
    reply_begin(t, &b, rq, UP_STUN_ERROR);
    up_stun_add_error(&b, 420, reason_of(420));
    up_stun_add(&b, UP_STUN_A_UNKNOWN_ATTRIBUTES, v, 2 * n);
    reply_send(t, &b, rq);
}

static void send_empty_success(struct up_turn *t, const struct req *rq)
{
    struct up_stun_builder b;
    reply_begin(t, &b, rq, UP_STUN_SUCCESS);
    reply_send(t, &b, rq);
}

static void send_alloc_success(struct up_turn *t, const struct alloc *a, const struct req *rq)
{
    struct up_stun_builder b;
    reply_begin(t, &b, rq, UP_STUN_SUCCESS);
    for (int f = 0; f < 2; f++) {
        if (a->open[f]) {
            struct up_stun_addr r = f ? t->cfg.relay6 : t->cfg.relay4;
            r.port = a->port[f];
            up_stun_add_xaddr(&b, UP_STUN_A_XOR_RELAYED_ADDRESS, &r);
        }
    }
    if (a->v6_refused) {
        /* RFC 8656 §18.12 ADDRESS-ERROR-CODE: family, class, number, reason. */
        static const char why[] = "Address Family not Supported";
        uint8_t v[4 + sizeof why - 1] = {FAMILY_V6, 0, 4, 40};
        memcpy(v + 4, why, sizeof why - 1);
        up_stun_add(&b, UP_STUN_A_ADDRESS_ERROR_CODE, v, sizeof v);
    }
    uint64_t left_ms = a->expires_ms > rq->now_ms ? a->expires_ms - rq->now_ms : 0;
    up_stun_add_u32(&b, UP_STUN_A_LIFETIME, (uint32_t)((left_ms + 999) / 1000));
    up_stun_add_xaddr(&b, UP_STUN_A_XOR_MAPPED_ADDRESS, &a->client.addr);
    reply_send(t, &b, rq);
}

/* The request an allocation's deferred answer replies to. */
static struct req alloc_req(const struct alloc *a, uint64_t now_ms)
{
    struct req rq = {
        .from = &a->client,
        .method = UP_TURN_ALLOCATE,
        .tid = a->tid,
        .mi = a->mi,
        .mi256 = a->mi256,
        .fp = a->fp,
        .authed = true,
        .now_ms = now_ms,
    };
    memcpy(rq.key, a->key, sizeof rq.key);
    return rq;
}

/* ---- authentication (RFC 8489 §9.2) ---- */

static bool try_password(struct req *rq, const char *user, size_t ulen, const char *realm,
                         const char *pass, size_t plen)
{
    uint8_t key[16];
    up_stun_long_term_key(user, ulen, realm, strlen(realm), pass, plen, key);
    if (!up_stun_check_integrity(rq->buf, rq->m, key, sizeof key)) {
        return false;
    }
    memcpy(rq->key, key, sizeof key);
    return true;
}

/* "EXPIRY" or "EXPIRY:..." with a decimal expiry; *digits is its length. */
static bool parse_expiry(const char *u, size_t n, uint64_t *exp, size_t *digits)
{
    size_t i = 0;
    uint64_t v = 0;
    while (i < n && u[i] >= '0' && u[i] <= '9') {
        if (i == 19) {
            return false;
        }
        v = v * 10 + (uint64_t)(u[i] - '0');
        i++;
    }
    if (i == 0 || (i < n && u[i] != ':')) {
        return false;
    }
    *exp = v;
    *digits = i;
    return true;
}

/* Whether the request's integrity checks with one of the username's passwords: a static
 * user's, the TURN REST API's, Firezone's. Expired secret-based usernames have none. */
static bool check_user(const struct up_turn *t, struct req *rq, const char *user, size_t ulen)
{
    const char *realm = t->cfg.realm;
    for (size_t i = 0; i < t->cfg.n_users; i++) {
        const struct up_turn_user *su = &t->cfg.users[i];
        if (su->name && su->pass && strlen(su->name) == ulen && memcmp(su->name, user, ulen) == 0 &&
            try_password(rq, user, ulen, realm, su->pass, strlen(su->pass))) {
            return true;
        }
    }
    uint64_t exp;
    size_t digits;
    if (!t->cfg.auth_secret || !parse_expiry(user, ulen, &exp, &digits) ||
        exp < rq->now_ms / 1000) {
        return false;
    }
    /* TURN REST API (draft-uberti-behave-turn-rest-00 §2.2): base64(HMAC-SHA1(secret,
     * username)). */
    uint8_t mac[UP_SHA1_LEN];
    char pass[64];
    if (up_hmac_sha1(t->cfg.auth_secret, t->cfg.auth_secret_len, user, ulen, mac) == UP_OK) {
        size_t plen = up_b64_encode(mac, sizeof mac, pass, false);
        if (try_password(rq, user, ulen, realm, pass, plen)) {
            return true;
        }
    }
    /* Firezone (rust/relay/proto/src/auth.rs): "expiry:salt", password
     * base64-nopad(SHA-256("expiry:secret:salt")). */
    if (digits == ulen) {
        return false;
    }
    uint8_t text[20 + 1 + SECRET_MAX + 1 + USERNAME_MAX];
    size_t n = 0;
    memcpy(text, user, digits + 1);
    n = digits + 1;
    memcpy(text + n, t->cfg.auth_secret, t->cfg.auth_secret_len);
    n += t->cfg.auth_secret_len;
    text[n++] = ':';
    memcpy(text + n, user + digits + 1, ulen - digits - 1);
    n += ulen - digits - 1;
    uint8_t digest[UP_SHA256_LEN];
    up_sha256(text, n, digest);
    size_t plen = up_b64_encode(digest, sizeof digest, pass, false);
    while (plen && pass[plen - 1] == '=') {
        plen--;
    }
    return try_password(rq, user, ulen, realm, pass, plen);
}

/* Authenticate rq (a request other than Binding). On failure the error (401 or 438) is
 * queued and false returned. */
static bool authenticate(struct up_turn *t, struct req *rq)
{
    const struct up_stun_msg *m = rq->m;
    const struct up_stun_attr *un = up_stun_find(m, UP_STUN_A_USERNAME);
    const struct up_stun_attr *realm = up_stun_find(m, UP_STUN_A_REALM);
    const struct up_stun_attr *nonce = up_stun_find(m, UP_STUN_A_NONCE);
    if ((m->mi < 0 && m->mi256 < 0) || !un || !realm || !nonce) {
        send_error(t, rq, 401); /* the first request of every client: no failure counted */
        return false;
    }
    if (!nonce_ok(t, &rq->from->addr, rq->now_ms, nonce)) {
        send_error(t, rq, 438);
        return false;
    }
    size_t rlen = strlen(t->cfg.realm);
    if (realm->len != rlen || memcmp(realm->value, t->cfg.realm, rlen) != 0 ||
        un->len > USERNAME_MAX || !check_user(t, rq, (const char *)un->value, un->len)) {
        t->stats.auth_failures++;
        send_error(t, rq, 401);
        return false;
    }
    uint8_t digest[UP_SHA256_LEN];
    up_sha256(un->value, un->len, digest);
    memcpy(rq->user_id, digest, sizeof rq->user_id);
    rq->authed = true;
    return true;
}

/* ---- requests ---- */

static void on_binding(struct up_turn *t, const struct req *rq)
{
    struct up_stun_builder b;
    reply_begin(t, &b, rq, UP_STUN_SUCCESS);
    up_stun_add_xaddr(&b, UP_STUN_A_XOR_MAPPED_ADDRESS, &rq->from->addr);
    if (t->cfg.software) {
        up_stun_add(&b, UP_STUN_A_SOFTWARE, t->cfg.software, strlen(t->cfg.software));
    }
    reply_send(t, &b, rq);
}

/* Open a port for the next family the pending allocation still needs, or answer it. */
static void alloc_continue(struct up_turn *t, struct alloc *a, uint64_t now_ms, uint16_t avoid);

static void alloc_fail(struct up_turn *t, struct alloc *a, uint64_t now_ms, int code)
{
    /* a may be gone after alloc_free: the answer works from copies. */
    struct req rq = alloc_req(a, now_ms);
    struct up_turn_client to = a->client;
    uint8_t tid[12];
    memcpy(tid, a->tid, sizeof tid);
    rq.from = &to;
    rq.tid = tid;
    alloc_free(t, a);
    send_error(t, &rq, code);
}

static void alloc_continue(struct up_turn *t, struct alloc *a, uint64_t now_ms, uint16_t avoid)
{
    for (int f = 0; f < 2; f++) {
        if (a->want[f] && !a->open[f]) {
            uint16_t p;
            if (!port_pick(t, f, avoid, a->even, &p)) {
                alloc_fail(t, a, now_ms, 508);
                return;
            }
            port_hold(t, a, f, p);
            a->waiting = (uint8_t)f;
            port_cmd(t, UP_TURN_CMD_OPEN_PORT, f, p);
            return;
        }
    }
    a->state = A_ACTIVE;
    a->expires_ms = now_ms + a->lifetime_s * 1000ull;
    a->deadline_ms = a->expires_ms;
    t->stats.allocations++;
    heap_push(t, a);
    struct req rq = alloc_req(a, now_ms);
    send_alloc_success(t, a, &rq);
}

static void on_allocate(struct up_turn *t, struct req *rq)
{
    const struct up_stun_msg *m = rq->m;
    struct alloc *a = tuple_find(t, rq->from);
    if (a) {
        /* RFC 8656 §7.2: a retransmission gets the success again; anything else 437. */
        if (memcmp(a->tid, m->tid, 12) == 0 && memcmp(a->user_id, rq->user_id, 16) == 0) {
            if (a->state == A_ACTIVE) {
                send_alloc_success(t, a, rq);
            }
            return; /* pending: the answer follows the port results */
        }
        send_error(t, rq, 437);
        return;
    }
    const struct up_stun_attr *tr = up_stun_find(m, UP_STUN_A_REQUESTED_TRANSPORT);
    if (!tr) {
        send_error(t, rq, 400);
        return;
    }
    if (tr->value[0] != PROTO_UDP) {
        send_error(t, rq, 442);
        return;
    }
    /* Not offered: fragmentation control (RFC 8656 §7.2 asks a server that cannot set DF for
     * 420) and reservations (we keep none, so every token is unknown: 508). EVEN-PORT is
     * honoured without reserving the next port (the R bit is ignored; no RESERVATION-TOKEN),
     * which is what clients that ask for it need (coturn's turnutils_uclient does). */
    if (up_stun_find(m, UP_STUN_A_DONT_FRAGMENT)) {
        uint16_t unk[1] = {UP_STUN_A_DONT_FRAGMENT};
        send_unknown(t, rq, unk, 1);
        return;
    }
    if (up_stun_find(m, UP_STUN_A_RESERVATION_TOKEN)) {
        send_error(t, rq, 508);
        return;
    }
    const struct up_stun_attr *ev = up_stun_find(m, UP_STUN_A_EVEN_PORT);
    if (ev && ev->len != 1) {
        send_error(t, rq, 400);
        return;
    }
    const struct up_stun_attr *raf = up_stun_find(m, UP_STUN_A_REQUESTED_ADDRESS_FAMILY);
    const struct up_stun_attr *aaf = up_stun_find(m, UP_STUN_A_ADDITIONAL_ADDRESS_FAMILY);
    bool want[2] = {false, false}, v6_refused = false;
    if (raf && aaf) {
        send_error(t, rq, 400); /* RFC 8656 §7.2 */
        return;
    }
    if (aaf) {
        if (aaf->value[0] != FAMILY_V6) {
            send_error(t, rq, 400);
            return;
        }
        if (!t->cfg.has_relay4) {
            send_error(t, rq, 440);
            return;
        }
        want[0] = true;
        want[1] = t->cfg.has_relay6;
        v6_refused = !t->cfg.has_relay6;
    } else {
        int f = 0;
        if (raf) {
            if (raf->value[0] != FAMILY_V4 && raf->value[0] != FAMILY_V6) {
                send_error(t, rq, 440);
                return;
            }
            f = raf->value[0] == FAMILY_V6;
        }
        if (!(f ? t->cfg.has_relay6 : t->cfg.has_relay4)) {
            send_error(t, rq, 440);
            return;
        }
        want[f] = true;
    }
    struct user *u = user_get(t, rq->user_id, false);
    if (t->cfg.user_quota && u && u->n >= t->cfg.user_quota) {
        send_error(t, rq, 486);
        return;
    }
    if (t->n_allocs >= t->cfg.max_allocations || heap_reserve(t, t->n_allocs + 1) != UP_OK) {
        send_error(t, rq, 508);
        return;
    }
    if (!u) {
        u = user_get(t, rq->user_id, true);
    }
    a = u ? up_calloc(1, sizeof(*a)) : NULL;
    if (!a) {
        if (u && u->n == 0) {
            u->n = 1; /* a user entry just made for this allocation: unref frees it */
            user_unref(t, u);
        }
        send_error(t, rq, 508);
        return;
    }
    t->n_allocs++;
    u->n++;
    a->client = *rq->from;
    a->user = u;
    memcpy(a->user_id, rq->user_id, 16);
    a->state = A_PENDING;
    a->waiting = NO_FAMILY;
    a->want[0] = want[0];
    a->want[1] = want[1];
    a->v6_refused = v6_refused;
    a->even = ev != NULL;
    memcpy(a->tid, m->tid, 12);
    memcpy(a->key, rq->key, 16);
    a->mi = rq->mi;
    a->mi256 = rq->mi256;
    a->fp = rq->fp;
    a->lifetime_s = lifetime_of(t, m);
    htab_add(&t->tuples, &a->tuple, tuple_hash(t, &a->client));
    alloc_continue(t, a, rq->now_ms, 0);
}

/* The caller's active allocation, or NULL after answering 437 / 441. */
static struct alloc *owned_alloc(struct up_turn *t, const struct req *rq)
{
    struct alloc *a = tuple_find(t, rq->from);
    if (!a || a->state != A_ACTIVE || rq->now_ms >= a->expires_ms) {
        send_error(t, rq, 437);
        return NULL;
    }
    if (memcmp(a->user_id, rq->user_id, 16) != 0) {
        send_error(t, rq, 441); /* RFC 8656 §5: one username per allocation */
        return NULL;
    }
    return a;
}

static void on_refresh(struct up_turn *t, const struct req *rq)
{
    struct alloc *a = owned_alloc(t, rq);
    if (!a) {
        return;
    }
    const struct up_stun_attr *raf = up_stun_find(rq->m, UP_STUN_A_REQUESTED_ADDRESS_FAMILY);
    if (raf && !((raf->value[0] == FAMILY_V4 && a->open[0]) ||
                 (raf->value[0] == FAMILY_V6 && a->open[1]))) {
        send_error(t, rq, 443); /* RFC 8656 §7.3 */
        return;
    }
    const struct up_stun_attr *la = up_stun_find(rq->m, UP_STUN_A_LIFETIME);
    uint32_t req_s = 1;
    if (la && up_stun_u32(la, &req_s) == UP_OK && req_s == 0) {
        alloc_free(t, a);
        struct up_stun_builder b;
        reply_begin(t, &b, rq, UP_STUN_SUCCESS);
        up_stun_add_u32(&b, UP_STUN_A_LIFETIME, 0);
        reply_send(t, &b, rq);
        return;
    }
    uint32_t life = lifetime_of(t, rq->m);
    a->expires_ms = rq->now_ms + life * 1000ull;
    alloc_reschedule(t, a);
    struct up_stun_builder b;
    reply_begin(t, &b, rq, UP_STUN_SUCCESS);
    up_stun_add_u32(&b, UP_STUN_A_LIFETIME, life);
    reply_send(t, &b, rq);
}

/* Check a peer for a permission or channel: 0, or the error code. */
static int peer_check(const struct up_turn *t, const struct alloc *a, const struct up_stun_addr *p)
{
    if (!a->open[fam_of(p->ip)]) {
        return 443;
    }
    if (peer_refused(t, p->ip)) {
        return 403;
    }
    return 0;
}

static void on_create_permission(struct up_turn *t, const struct req *rq)
{
    struct alloc *a = owned_alloc(t, rq);
    if (!a) {
        return;
    }
    const struct up_stun_msg *m = rq->m;
    struct up_stun_addr peers[UP_STUN_MAX_ATTRS];
    size_t n = 0, fresh = 0;
    for (size_t i = 0; i < m->n_attrs; i++) {
        if (m->attrs[i].type != UP_STUN_A_XOR_PEER_ADDRESS) {
            continue;
        }
        if (up_stun_xaddr(m, &m->attrs[i], &peers[n]) != UP_OK) {
            send_error(t, rq, 400);
            return;
        }
        int code = peer_check(t, a, &peers[n]);
        if (code) {
            send_error(t, rq, code);
            return;
        }
        fresh += perm_find(a, peers[n].ip) == NULL;
        n++;
    }
    if (n == 0) {
        send_error(t, rq, 400);
        return;
    }
    /* RFC 8656 §9.2: all or none. */
    if (!perm_reserve(a, fresh)) {
        send_error(t, rq, 508);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        perm_install(t, a, peers[i].ip, rq->now_ms);
    }
    alloc_reschedule(t, a);
    send_empty_success(t, rq);
}

static void on_channel_bind(struct up_turn *t, const struct req *rq)
{
    struct alloc *a = owned_alloc(t, rq);
    if (!a) {
        return;
    }
    const struct up_stun_msg *m = rq->m;
    const struct up_stun_attr *cn = up_stun_find(m, UP_STUN_A_CHANNEL_NUMBER);
    const struct up_stun_attr *pa = up_stun_find(m, UP_STUN_A_XOR_PEER_ADDRESS);
    struct up_stun_addr peer;
    if (!cn || !pa || up_stun_xaddr(m, pa, &peer) != UP_OK || peer.port == 0) {
        send_error(t, rq, 400);
        return;
    }
    uint16_t number = up_rd_u16be(cn->value);
    if (number < UP_STUN_CHANNEL_MIN || number > UP_STUN_CHANNEL_MAX) {
        send_error(t, rq, 400);
        return;
    }
    int code = peer_check(t, a, &peer);
    if (code) {
        send_error(t, rq, code);
        return;
    }
    /* RFC 8656 §11.2: a number bound (or, after expiry, reserved) to another peer, or a peer
     * to another number, is refused. */
    struct chan *c = chan_by_number(a, number);
    struct chan *cp = chan_by_peer(a, &peer);
    if ((c && !addr_eq(&c->peer, &peer)) || (cp && cp->number != number)) {
        send_error(t, rq, 400);
        return;
    }
    if (!perm_reserve(a, perm_find(a, peer.ip) ? 0 : 1) || (!c && !chan_reserve(a))) {
        send_error(t, rq, 508);
        return;
    }
    uint64_t until = rq->now_ms + UP_TURN_CHANNEL_S * 1000ull;
    if (!c) {
        size_t i = chan_lower(a, number);
        memmove(&a->chans[i + 1], &a->chans[i], (a->n_chans - i) * sizeof(*a->chans));
        a->chans[i] = (struct chan){.peer = peer, .number = number};
        a->n_chans++;
        chan_reindex(a);
        c = &a->chans[i];
    }
    if (!c->bound) {
        c->bound = true;
        t->stats.channels++;
    }
    c->expires_ms = until;
    perm_install(t, a, peer.ip, rq->now_ms);
    alloc_reschedule(t, a);
    send_empty_success(t, rq);
}

static void on_send(struct up_turn *t, const struct up_turn_client *from, uint64_t now_ms,
                    const struct up_stun_msg *m)
{
    const struct up_stun_attr *pa = up_stun_find(m, UP_STUN_A_XOR_PEER_ADDRESS);
    const struct up_stun_attr *da = up_stun_find(m, UP_STUN_A_DATA);
    struct up_stun_addr peer;
    struct alloc *a = tuple_find(t, from);
    if (!pa || !da || up_stun_xaddr(m, pa, &peer) != UP_OK || peer.port == 0 || !a ||
        a->state != A_ACTIVE || now_ms >= a->expires_ms) {
        t->stats.dropped++;
        return;
    }
    int f = fam_of(peer.ip);
    if (!a->open[f] || !perm_valid(a, peer.ip, now_ms)) {
        t->stats.dropped++; /* RFC 8656 §10.2: silently */
        return;
    }
    struct up_turn_cmd c = {.kind = UP_TURN_CMD_SEND_PEER,
                            .peer = peer,
                            .port = a->port[f],
                            .v6 = f == 1,
                            .data = da->value,
                            .len = da->len};
    if (cmd_push(t, &c)) {
        t->stats.relayed_packets++;
        t->stats.relayed_bytes += da->len;
    }
}

static void on_channel_data(struct up_turn *t, const struct up_turn_client *from, uint64_t now_ms,
                            const uint8_t *buf, size_t len)
{
    uint16_t number;
    const uint8_t *data;
    size_t dlen;
    if (up_stun_channel_parse(buf, len, &number, &data, &dlen) != UP_OK) {
        t->stats.dropped++;
        return;
    }
    struct alloc *a = tuple_find(t, from);
    const struct chan *c = NULL;
    if (a && a->state == A_ACTIVE && now_ms < a->expires_ms) {
        c = chan_by_number(a, number);
    }
    if (!c || now_ms >= c->expires_ms || !c->bound) {
        t->stats.dropped++; /* RFC 8656 §12.4: unbound channel, silently */
        return;
    }
    int f = fam_of(c->peer.ip);
    struct up_turn_cmd cmd = {.kind = UP_TURN_CMD_SEND_PEER,
                              .peer = c->peer,
                              .port = a->port[f],
                              .v6 = f == 1,
                              .data = data,
                              .len = dlen};
    if (cmd_push(t, &cmd)) {
        t->stats.relayed_packets++;
        t->stats.relayed_bytes += dlen;
    }
}

/* ---- the API ---- */

void up_turn_cfg_defaults(struct up_turn_cfg *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->realm = "underpass";
    cfg->min_port = 49152; /* RFC 8656 §7.2: the dynamic range */
    cfg->max_port = 65535;
    cfg->default_lifetime_s = UP_TURN_DEFAULT_LIFETIME_S;
    cfg->max_lifetime_s = UP_TURN_MAX_LIFETIME_S;
    cfg->user_quota = UP_TURN_USER_QUOTA;
    cfg->unauth_budget = UP_TURN_UNAUTH_BUDGET;
    cfg->max_allocations = UP_TURN_MAX_ALLOCATIONS;
    cfg->nonce_lifetime_s = UP_TURN_NONCE_S;
    cfg->rand = default_rand;
}

struct up_turn *up_turn_new(const struct up_turn_cfg *cfg)
{
    if (!cfg || !cfg->rand || !cfg->realm || strlen(cfg->realm) > REALM_MAX ||
        (cfg->software && strlen(cfg->software) > SOFTWARE_MAX) || cfg->min_port == 0 ||
        cfg->min_port > cfg->max_port || cfg->n_users > UP_TURN_MAX_USERS ||
        (cfg->auth_secret && cfg->auth_secret_len > SECRET_MAX)) {
        return NULL;
    }
    struct up_turn *t = up_calloc(1, sizeof(*t));
    if (!t) {
        return NULL;
    }
    t->cfg = *cfg;
    if (!t->cfg.default_lifetime_s) {
        t->cfg.default_lifetime_s = UP_TURN_DEFAULT_LIFETIME_S;
    }
    if (!t->cfg.max_lifetime_s) {
        t->cfg.max_lifetime_s = UP_TURN_MAX_LIFETIME_S;
    }
    if (t->cfg.max_lifetime_s < t->cfg.default_lifetime_s) {
        t->cfg.max_lifetime_s = t->cfg.default_lifetime_s;
    }
    if (!t->cfg.max_allocations) {
        t->cfg.max_allocations = UP_TURN_MAX_ALLOCATIONS;
    }
    if (!t->cfg.nonce_lifetime_s) {
        t->cfg.nonce_lifetime_s = UP_TURN_NONCE_S;
    }
    for (size_t i = 0; i < sizeof t->nonce_key; i += 8) {
        up_wr_u64be(t->nonce_key + i, rand64(t));
    }
    t->seed = rand64(t);
    up_wr_u32be(t->tid_salt, (uint32_t)rand64(t));
    t->n_ports = (size_t)t->cfg.max_port - t->cfg.min_port + 1;
    if (htab_init(&t->tuples) != UP_OK || htab_init(&t->users) != UP_OK) {
        goto undo;
    }
    for (int f = 0; f < 2; f++) {
        if (f ? t->cfg.has_relay6 : t->cfg.has_relay4) {
            t->ports[f] = up_calloc(t->n_ports, sizeof(*t->ports[f]));
            if (!t->ports[f]) {
                goto undo;
            }
        }
    }
    return t;
undo:
    up_turn_free(t);
    return NULL;
}

void up_turn_free(struct up_turn *t)
{
    if (!t) {
        return;
    }
    /* Every allocation is reachable from a port slot (held) or the 5-tuple table. */
    for (size_t b = 0; t->tuples.b && b < t->tuples.nb; b++) {
        while (t->tuples.b[b]) {
            struct alloc *a = UP_CONTAINER_OF(t->tuples.b[b], struct alloc, tuple);
            htab_del(&t->tuples, &a->tuple);
            for (int f = 0; f < 2; f++) {
                port_release(t, a, f);
            }
            alloc_destroy(t, a);
        }
    }
    for (int f = 0; f < 2; f++) {
        for (size_t i = 0; t->ports[f] && i < t->n_ports; i++) {
            struct alloc *a = t->ports[f][i];
            if (a) { /* A_DEAD */
                port_release(t, a, 0);
                port_release(t, a, 1);
                alloc_destroy(t, a);
            }
        }
        up_free(t->ports[f]);
    }
    for (size_t b = 0; t->users.b && b < t->users.nb; b++) {
        while (t->users.b[b]) {
            struct user *u = UP_CONTAINER_OF(t->users.b[b], struct user, node);
            htab_del(&t->users, &u->node);
            up_free(u);
        }
    }
    htab_fini(&t->tuples);
    htab_fini(&t->users);
    up_free(t->heap);
    up_free(t);
}

void up_turn_on_client(struct up_turn *t, uint64_t now_ms, const struct up_turn_client *from,
                       const uint8_t *buf, size_t len)
{
    begin_call(t);
    if (len == 0 || (from->proto == UP_TURN_UDP && from->addr.port == 0) ||
        !has_room(t, CMD_PER_INPUT)) {
        t->stats.dropped++; /* port 0: Firezone drops those too */
        return;
    }
    if (up_stun_is_channel(buf[0])) {
        on_channel_data(t, from, now_ms, buf, len);
        return;
    }
    struct up_stun_msg m;
    if (!up_stun_is_stun(buf[0]) || up_stun_parse(buf, len, &m) != UP_OK) {
        t->stats.dropped++;
        return;
    }
    if (m.cls == UP_STUN_INDICATION) {
        if (m.method == UP_TURN_SEND) {
            on_send(t, from, now_ms, &m);
        } else if (m.method != UP_STUN_BINDING) { /* a Binding indication is a keepalive */
            t->stats.dropped++;
        }
        return;
    }
    if (m.cls != UP_STUN_REQUEST) {
        t->stats.dropped++;
        return;
    }
    t->stats.requests++;
    struct req rq = {
        .from = from,
        .buf = buf,
        .m = &m,
        .method = m.method,
        .tid = m.tid,
        .mi = m.mi >= 0,
        .mi256 = m.mi256 >= 0,
        .fp = m.fp >= 0,
        .now_ms = now_ms,
    };
    switch (m.method) {
    case UP_STUN_BINDING:
        if (m.n_unknown) {
            send_unknown(t, &rq, m.unknown, m.n_unknown);
        } else {
            on_binding(t, &rq);
        }
        return;
    case UP_TURN_ALLOCATE:
    case UP_TURN_REFRESH:
    case UP_TURN_CREATE_PERMISSION:
    case UP_TURN_CHANNEL_BIND:
        break;
    default:
        send_error(t, &rq, 400);
        return;
    }
    if (!authenticate(t, &rq)) {
        return;
    }
    /* RFC 8489 §6.3.1: after the authentication checks. */
    if (m.n_unknown) {
        send_unknown(t, &rq, m.unknown, m.n_unknown);
        return;
    }
    switch (m.method) {
    case UP_TURN_ALLOCATE:
        on_allocate(t, &rq);
        break;
    case UP_TURN_REFRESH:
        on_refresh(t, &rq);
        break;
    case UP_TURN_CREATE_PERMISSION:
        on_create_permission(t, &rq);
        break;
    default:
        on_channel_bind(t, &rq);
        break;
    }
}

void up_turn_on_peer(struct up_turn *t, uint64_t now_ms, uint16_t port, bool v6,
                     const struct up_stun_addr *peer, uint8_t *buf, size_t len)
{
    begin_call(t);
    int f = v6 ? 1 : 0;
    struct alloc **s = port_slot(t, f, port);
    struct alloc *a = s ? *s : NULL;
    if (!a || a->state != A_ACTIVE || !a->open[f] || now_ms >= a->expires_ms ||
        !perm_valid(a, peer->ip, now_ms) || !has_room(t, 1)) {
        t->stats.dropped++; /* RFC 8656 §10.3: no permission, silently */
        return;
    }
    size_t pad = is_stream(&a->client) ? pad4(len) - len : 0;
    const struct chan *c = chan_by_peer(a, peer);
    uint8_t *start;
    size_t total;
    if (c && c->bound && now_ms < c->expires_ms) {
        /* RFC 8656 §12.5: over TCP/TLS, ChannelData is padded to 4 bytes. */
        if (len > UINT16_MAX) {
            t->stats.dropped++;
            return;
        }
        start = buf - UP_STUN_CHANNEL_HDR;
        up_stun_channel_header(start, c->number, (uint16_t)len);
        total = UP_STUN_CHANNEL_HDR + len + pad;
    } else {
        /* A Data indication (RFC 8656 §10.3): the head is built in the headroom, DATA's
         * value is the datagram where it lies, its padding after it. */
        uint8_t tid[12], head[UP_TURN_HEADROOM];
        memcpy(tid, t->tid_salt, 4);
        up_wr_u64be(tid + 4, t->tid_ctr++);
        struct up_stun_builder b;
        size_t hlen;
        up_stun_begin(&b, head, sizeof head - 4, UP_TURN_DATA, UP_STUN_INDICATION, tid);
        up_stun_add_xaddr(&b, UP_STUN_A_XOR_PEER_ADDRESS, peer);
        pad = pad4(len) - len;
        if (up_stun_end(&b, &hlen) != UP_OK || hlen - UP_STUN_HDR + 4 + len + pad > UINT16_MAX) {
            t->stats.dropped++;
            return;
        }
        up_wr_u16be(head + hlen, UP_STUN_A_DATA);
        up_wr_u16be(head + hlen + 2, (uint16_t)len);
        up_wr_u16be(head + 2, (uint16_t)(hlen - UP_STUN_HDR + 4 + len + pad));
        start = buf - (hlen + 4);
        memcpy(start, head, hlen + 4);
        total = hlen + 4 + len + pad;
    }
    memset(buf + len, 0, pad);
    struct up_turn_cmd cmd = {
        .kind = UP_TURN_CMD_SEND_CLIENT, .client = a->client, .data = start, .len = total};
    if (cmd_push(t, &cmd)) {
        t->stats.relayed_packets++;
        t->stats.relayed_bytes += len;
    }
}

void up_turn_port_result(struct up_turn *t, uint64_t now_ms, uint16_t port, bool v6, bool ok)
{
    begin_call(t);
    int f = v6 ? 1 : 0;
    struct alloc **s = port_slot(t, f, port);
    struct alloc *a = s ? *s : NULL;
    if (!a || a->waiting != f || a->port[f] != port) {
        return; /* not a port we asked for */
    }
    a->waiting = NO_FAMILY;
    if (a->state == A_DEAD) {
        port_release(t, a, f);
        if (ok) {
            port_cmd(t, UP_TURN_CMD_CLOSE_PORT, f, port);
        }
        alloc_destroy(t, a);
        return;
    }
    if (!ok) {
        port_release(t, a, f);
        if (++a->tries >= PORT_TRIES) {
            alloc_fail(t, a, now_ms, 508);
            return;
        }
        alloc_continue(t, a, now_ms, port);
        return;
    }
    a->open[f] = true;
    alloc_continue(t, a, now_ms, 0);
}

void up_turn_conn_closed(struct up_turn *t, uint64_t now_ms, uint64_t conn)
{
    (void)now_ms;
    begin_call(t);
    struct up_turn_client c = {.proto = UP_TURN_TCP, .conn = conn};
    struct alloc *a = tuple_find(t, &c);
    if (a) {
        alloc_free(t, a);
    }
}

/* Expire the allocation's permissions and channels due at now_ms. */
static void alloc_expire_parts(struct up_turn *t, struct alloc *a, uint64_t now_ms)
{
    size_t n = 0;
    for (size_t i = 0; i < a->n_perms; i++) {
        if (a->perms[i].expires_ms <= now_ms) {
            t->stats.permissions--;
            continue;
        }
        a->perms[n++] = a->perms[i];
    }
    a->n_perms = n;
    n = 0;
    bool removed = false;
    for (size_t i = 0; i < a->n_chans; i++) {
        struct chan *c = &a->chans[i];
        if (c->bound && c->expires_ms <= now_ms) {
            c->bound = false;
            t->stats.channels--;
        }
        if (!c->bound && chan_until(c) <= now_ms) {
            removed = true;
            continue;
        }
        a->chans[n++] = *c;
    }
    a->n_chans = n;
    if (removed) {
        chan_reindex(a);
    }
}

void up_turn_on_timer(struct up_turn *t, uint64_t now_ms)
{
    begin_call(t);
    while (t->heap_n && t->heap[0]->deadline_ms <= now_ms) {
        if (!has_room(t, 2)) {
            return; /* the deadline stays due: the shell calls again after draining */
        }
        struct alloc *a = t->heap[0];
        if (a->expires_ms <= now_ms) {
            alloc_free(t, a);
            continue;
        }
        alloc_expire_parts(t, a, now_ms);
        alloc_reschedule(t, a);
    }
}

uint64_t up_turn_next_timeout(const struct up_turn *t)
{
    return t->heap_n ? t->heap[0]->deadline_ms : UINT64_MAX;
}

bool up_turn_next_cmd(struct up_turn *t, struct up_turn_cmd *cmd)
{
    if (t->q_n == 0) {
        return false;
    }
    *cmd = t->q[t->q_head];
    t->q_head = (t->q_head + 1) % CMD_CAP;
    t->q_n--;
    return true;
}

const struct up_turn_stats *up_turn_stats(const struct up_turn *t)
{
    return &t->stats;
}
