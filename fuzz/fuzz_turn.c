/* libFuzzer target for src/proto/turn.c. The input is a script of operations on one server:
 * raw datagrams from clients, requests built from the input and authenticated the way a real
 * client would (nonce learnt from 401/438 answers; static, REST API and Firezone credentials),
 * ChannelData, peer datagrams, port results, conn closes and timer ticks. The harness plays
 * the shell and checks, after every operation:
 *   - every answer parses as STUN or ChannelData, and relayed bytes point into the input
 *     buffer (client→peer) or its headroom/tailroom (peer→client): zero copy;
 *   - OPEN_PORT names a port in range that is neither open nor being opened, and is the last
 *     command of its batch; CLOSE_PORT names an open port; port results are given once;
 *   - stats.allocations <= open ports and <= max_allocations;
 * and at the end, once every outstanding OPEN_PORT is answered and the clock jumps two hours,
 * that every port is closed and the allocation, permission and channel counts are zero. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/bytes.h"
#include "base/crypto.h"
#include "proto/turn.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_turn: check failed: %s (line %d)\n", #c, __LINE__);              \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define MIN_PORT 50000
#define N_PORTS 12
#define N_CLIENTS 4
#define MAX_OPS 200
#define T0 ((uint64_t)1700000000000)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct in {
    const uint8_t *p;
    size_t n;
};

static uint8_t take(struct in *in)
{
    if (!in->n) {
        return 0;
    }
    in->n--;
    return *in->p++;
}

static uint16_t take16(struct in *in)
{
    return (uint16_t)(take(in) << 8 | take(in));
}

static uint64_t rng_state;

static uint64_t xorshift(void *ud)
{
    (void)ud;
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

struct cred {
    const char *user;
    char pass[64];
};

struct client {
    struct up_turn_client from;
    char nonce[128];
    size_t nonce_len;
    uint32_t n;
};

struct world {
    struct up_turn *t;
    uint64_t now;
    struct client cl[N_CLIENTS];
    uint64_t next_conn;
    /* The shell's view of the relay ports: 0 closed, 1 being opened, 2 open. */
    uint8_t port_state[2][N_PORTS];
    /* The buffer the last input lived in, for the zero-copy checks. */
    const uint8_t *in_lo, *in_hi;
};

static struct cred creds[4];
static const uint8_t secret[] = "fuzz-secret";

static void creds_init(void)
{
    static int done;
    if (done) {
        return;
    }
    done = 1;
    creds[0].user = "alice";
    memcpy(creds[0].pass, "alice-pw", 9);
    creds[1].user = "1900000000:rest";
    uint8_t mac[UP_SHA1_LEN];
    CHECK(up_hmac_sha1(secret, sizeof secret - 1, creds[1].user, strlen(creds[1].user), mac) ==
          UP_OK);
    up_b64_encode(mac, sizeof mac, creds[1].pass, false);
    creds[2].user = "1900000000:salt";
    char text[128];
    int n = snprintf(text, sizeof text, "1900000000:%s:salt", (const char *)secret);
    uint8_t dig[UP_SHA256_LEN];
    up_sha256(text, (size_t)n, dig);
    size_t l = up_b64_encode(dig, sizeof dig, creds[2].pass, false);
    while (l && creds[2].pass[l - 1] == '=') {
        creds[2].pass[--l] = '\0';
    }
    creds[3].user = "alice";
    memcpy(creds[3].pass, "wrong", 6);
}

static struct up_stun_addr ip_addr(const char *ip, uint16_t port)
{
    struct up_stun_addr a = {.port = port};
    CHECK(up_ip_parse(ip, strlen(ip), a.ip) == UP_OK);
    return a;
}

static struct up_stun_addr pick_peer(struct in *in)
{
    static const char *const ips[] = {"203.0.113.5", "203.0.113.6", "2001:db8:5::5",
                                      "10.0.0.1",    "::1",         "198.51.100.9"};
    uint8_t k = take(in);
    if (k >= 0xF0) {
        struct up_stun_addr a = ip_addr("0.0.0.0", take16(in));
        for (int i = 0; i < 4; i++) {
            a.ip[12 + i] = take(in);
        }
        return a;
    }
    return ip_addr(ips[k % 6], (uint16_t)(7000 + (take(in) & 3)));
}

static int port_index(uint16_t port)
{
    return port >= MIN_PORT && port < MIN_PORT + N_PORTS ? port - MIN_PORT : -1;
}

static void learn_nonce(struct world *w, const struct up_turn_cmd *c, const struct up_stun_msg *m)
{
    const struct up_stun_attr *n = up_stun_find(m, UP_STUN_A_NONCE);
    if (!n || n->len > sizeof w->cl[0].nonce) {
        return;
    }
    for (int i = 0; i < N_CLIENTS; i++) {
        struct client *cl = &w->cl[i];
        if (cl->from.proto == c->client.proto && cl->from.conn == c->client.conn &&
            cl->from.addr.port == c->client.addr.port &&
            memcmp(cl->from.addr.ip, c->client.addr.ip, 16) == 0) {
            memcpy(cl->nonce, n->value, n->len);
            cl->nonce_len = n->len;
        }
    }
}

static void drain(struct world *w)
{
    struct up_turn_cmd c;
    bool opened = false;
    while (up_turn_next_cmd(w->t, &c)) {
        CHECK(!opened); /* OPEN_PORT ends its batch: shells answer it from their drain loop */
        switch (c.kind) {
        case UP_TURN_CMD_SEND_CLIENT: {
            CHECK(c.len >= 4);
            if (up_stun_is_stun(c.data[0])) {
                struct up_stun_msg m;
                CHECK(up_stun_parse(c.data, c.len, &m) == UP_OK);
                CHECK(m.cls == UP_STUN_SUCCESS || m.cls == UP_STUN_ERROR ||
                      (m.cls == UP_STUN_INDICATION && m.method == UP_TURN_DATA));
                learn_nonce(w, &c, &m);
            } else {
                uint16_t ch;
                const uint8_t *d;
                size_t dl;
                CHECK(up_stun_channel_parse(c.data, c.len, &ch, &d, &dl) == UP_OK);
            }
            if (c.data >= w->in_lo && c.data < w->in_hi) {
                CHECK(c.data + c.len <= w->in_hi); /* framed in place, tailroom respected */
            }
            break;
        }
        case UP_TURN_CMD_SEND_PEER:
            CHECK(c.data >= w->in_lo && c.data + c.len <= w->in_hi); /* zero copy */
            CHECK(port_index(c.port) >= 0 && w->port_state[c.v6][port_index(c.port)] == 2);
            break;
        case UP_TURN_CMD_OPEN_PORT: {
            int i = port_index(c.port);
            CHECK(i >= 0 && w->port_state[c.v6][i] == 0);
            w->port_state[c.v6][i] = 1;
            opened = true;
            break;
        }
        case UP_TURN_CMD_CLOSE_PORT: {
            int i = port_index(c.port);
            CHECK(i >= 0 && w->port_state[c.v6][i] == 2);
            w->port_state[c.v6][i] = 0;
            break;
        }
        default:
            CHECK(0);
        }
    }
    size_t open = 0;
    for (int f = 0; f < 2; f++) {
        for (int i = 0; i < N_PORTS; i++) {
            open += w->port_state[f][i] == 2;
        }
    }
    const struct up_turn_stats *s = up_turn_stats(w->t);
    CHECK(s->allocations <= open);
    CHECK(s->allocations <= 8);
}

static void answer_port(struct world *w, int which, bool ok)
{
    for (int k = 0; k < 2 * N_PORTS; k++) {
        int j = (which + k) % (2 * N_PORTS);
        int f = j / N_PORTS, i = j % N_PORTS;
        if (w->port_state[f][i] == 1) {
            w->port_state[f][i] = ok ? 2 : 0;
            up_turn_port_result(w->t, w->now, (uint16_t)(MIN_PORT + i), f == 1, ok);
            return;
        }
    }
}

/* The which-th open port (cyclically); unchanged when none is open. */
static void open_port(const struct world *w, int which, uint16_t *port, bool *v6)
{
    int n = 0;
    for (int k = 0; k < 2 * N_PORTS; k++) {
        n += w->port_state[k / N_PORTS][k % N_PORTS] == 2;
    }
    if (n == 0) {
        return;
    }
    which %= n;
    for (int k = 0; k < 2 * N_PORTS; k++) {
        if (w->port_state[k / N_PORTS][k % N_PORTS] == 2 && which-- == 0) {
            *port = (uint16_t)(MIN_PORT + k % N_PORTS);
            *v6 = k >= N_PORTS;
            return;
        }
    }
}

static void add_attrs(struct up_stun_builder *b, uint16_t method, struct in *in)
{
    uint8_t flags = take(in);
    switch (method) {
    case UP_TURN_ALLOCATE:
        if (!(flags & 1)) {
            up_stun_add_u32(b, UP_STUN_A_REQUESTED_TRANSPORT,
                            (uint32_t)((flags & 2) ? take(in) : 17) << 24);
        }
        if (flags & 4) {
            up_stun_add_u32(b, UP_STUN_A_LIFETIME, take16(in));
        }
        if (flags & 8) {
            up_stun_add_u32(b, UP_STUN_A_REQUESTED_ADDRESS_FAMILY, (uint32_t)(take(in) & 3) << 24);
        }
        if (flags & 16) {
            up_stun_add_u32(b, UP_STUN_A_ADDITIONAL_ADDRESS_FAMILY, (uint32_t)(take(in) & 3) << 24);
        }
        if ((flags & 0xC0) == 0xC0) {
            up_stun_add(b, UP_STUN_A_DONT_FRAGMENT, NULL, 0);
        }
        break;
    case UP_TURN_REFRESH:
        if (flags & 1) {
            up_stun_add_u32(b, UP_STUN_A_LIFETIME, (flags & 2) ? 0 : take16(in));
        }
        if (flags & 4) {
            up_stun_add_u32(b, UP_STUN_A_REQUESTED_ADDRESS_FAMILY, (uint32_t)(take(in) & 3) << 24);
        }
        break;
    case UP_TURN_CREATE_PERMISSION:
        for (int i = 0; i < (flags & 3); i++) {
            struct up_stun_addr p = pick_peer(in);
            up_stun_add_xaddr(b, UP_STUN_A_XOR_PEER_ADDRESS, &p);
        }
        break;
    case UP_TURN_CHANNEL_BIND: {
        if (!(flags & 1)) {
            uint16_t number = (flags & 2) ? take16(in) : (uint16_t)(0x4000 + (take(in) & 3));
            up_stun_add_u32(b, UP_STUN_A_CHANNEL_NUMBER, (uint32_t)number << 16);
        }
        if (!(flags & 4)) {
            struct up_stun_addr p = pick_peer(in);
            up_stun_add_xaddr(b, UP_STUN_A_XOR_PEER_ADDRESS, &p);
        }
        break;
    }
    default:
        break;
    }
    if ((flags & 0x60) == 0x60) {
        /* A raw attribute from the input (unknown ones give 420). */
        uint16_t type = take16(in);
        uint8_t len = take(in) & 15;
        uint8_t v[16] = {0};
        for (int i = 0; i < len; i++) {
            v[i] = take(in);
        }
        up_stun_add(b, type, v, len);
    }
}

static void op_request(struct world *w, struct in *in, uint8_t *buf, size_t cap)
{
    static const uint16_t methods[] = {UP_TURN_ALLOCATE,          UP_TURN_REFRESH,
                                       UP_TURN_CREATE_PERMISSION, UP_TURN_CHANNEL_BIND,
                                       UP_STUN_BINDING,           UP_TURN_SEND};
    struct client *cl = &w->cl[take(in) % N_CLIENTS];
    uint8_t sel = take(in);
    uint16_t method = methods[sel % 6];
    uint8_t how = take(in);
    uint8_t tid[12] = {0};
    if (!(sel & 0x80)) {
        cl->n++; /* else the previous transaction again: a retransmission */
    }
    up_wr_u32be(tid, cl->n);
    tid[8] = (uint8_t)method;
    struct up_stun_builder b;
    bool send = method == UP_TURN_SEND;
    up_stun_begin(&b, buf, cap, method, send ? UP_STUN_INDICATION : UP_STUN_REQUEST, tid);
    if (send) {
        struct up_stun_addr p = pick_peer(in);
        up_stun_add_xaddr(&b, UP_STUN_A_XOR_PEER_ADDRESS, &p);
        size_t dl = take(in) & 63;
        uint8_t d[64] = {0};
        up_stun_add(&b, UP_STUN_A_DATA, d, dl);
    } else {
        add_attrs(&b, method, in);
    }
    if (!send && method != UP_STUN_BINDING && !(how & 0x80)) {
        const struct cred *c = &creds[how & 3];
        uint8_t key[16];
        up_stun_long_term_key(c->user, strlen(c->user), "underpass", 9, c->pass, strlen(c->pass),
                              key);
        up_stun_add(&b, UP_STUN_A_USERNAME, c->user, strlen(c->user));
        up_stun_add(&b, UP_STUN_A_REALM, "underpass", 9);
        up_stun_add(&b, UP_STUN_A_NONCE, cl->nonce, cl->nonce_len);
        if (how & 4) {
            up_stun_add_integrity(&b, key, sizeof key);
        }
        if (how & 8 || !(how & 4)) {
            up_stun_add_integrity_sha256(&b, key, sizeof key);
        }
    }
    if (how & 16) {
        up_stun_add_fingerprint(&b);
    }
    size_t len;
    if (up_stun_end(&b, &len) != UP_OK) {
        return;
    }
    w->in_lo = buf;
    w->in_hi = buf + len;
    up_turn_on_client(w->t, w->now, &cl->from, buf, len);
    /* A retransmission, sometimes. */
    if (how & 32) {
        drain(w);
        up_turn_on_client(w->t, w->now, &cl->from, buf, len);
    }
}

static void run(struct world *w, struct in *in)
{
    /* Peer datagrams get headroom and tailroom; client inputs are copied to an exact-size
     * buffer so that reads past their end are caught. */
    static uint8_t peer_buf[UP_TURN_HEADROOM + 512 + UP_TURN_TAILROOM];
    static uint8_t req_buf[1024];
    for (int op = 0; op < MAX_OPS && in->n; op++) {
        uint8_t kind = take(in) % 9;
        switch (kind) {
        case 0: { /* a raw datagram from a client */
            struct client *cl = &w->cl[take(in) % N_CLIENTS];
            size_t len = take(in);
            if (len > in->n) {
                len = in->n;
            }
            uint8_t *copy = malloc(len ? len : 1);
            CHECK(copy);
            memcpy(copy, in->p, len);
            in->p += len;
            in->n -= len;
            w->in_lo = copy;
            w->in_hi = copy + len;
            up_turn_on_client(w->t, w->now, &cl->from, copy, len);
            drain(w);
            free(copy);
            break;
        }
        case 1:
        case 2:
            op_request(w, in, req_buf, sizeof req_buf);
            drain(w);
            break;
        case 3: { /* ChannelData */
            struct client *cl = &w->cl[take(in) % N_CLIENTS];
            uint8_t b[4 + 64 + 3] = {0};
            size_t dl = take(in) & 63;
            up_stun_channel_header(b, (uint16_t)(0x4000 + (take(in) & 3)), (uint16_t)dl);
            size_t len = cl->from.proto != UP_TURN_UDP ? 4 + ((dl + 3) & ~(size_t)3) : 4 + dl;
            w->in_lo = b;
            w->in_hi = b + len;
            up_turn_on_client(w->t, w->now, &cl->from, b, len);
            drain(w);
            break;
        }
        case 4: { /* a peer datagram */
            uint8_t sel = take(in);
            struct up_stun_addr p = pick_peer(in);
            size_t dl = take(in);
            memset(peer_buf, 0xAB, sizeof peer_buf);
            uint8_t *d = peer_buf + UP_TURN_HEADROOM;
            w->in_lo = peer_buf;
            w->in_hi = d + dl + UP_TURN_TAILROOM;
            uint16_t port = (uint16_t)(MIN_PORT + sel % (N_PORTS + 1));
            bool v6 = (sel & 0x80) != 0;
            if (!(sel & 0x40)) {
                open_port(w, sel & 0x3F, &port, &v6); /* one the shell has bound */
            }
            up_turn_on_peer(w->t, w->now, port, v6, &p, d, dl);
            drain(w);
            break;
        }
        case 5: { /* a port result */
            uint8_t b = take(in);
            answer_port(w, b % (2 * N_PORTS), (b & 0x80) == 0);
            drain(w);
            break;
        }
        case 6: { /* time passes, and the timer fires if due */
            uint8_t b = take(in);
            w->now += (uint64_t)b * (b & 0x80 ? 30000 : 500);
            if (up_turn_next_timeout(w->t) <= w->now) {
                up_turn_on_timer(w->t, w->now);
                drain(w);
            }
            break;
        }
        case 7: { /* the TCP or TLS client's connection ends; it reconnects */
            struct client *cl = &w->cl[3];
            up_turn_conn_closed(w->t, w->now, cl->from.conn);
            drain(w);
            cl->from.conn = ++w->next_conn;
            cl->from.proto = take(in) & 1 ? UP_TURN_TLS : UP_TURN_TCP;
            break;
        }
        default: /* a spurious timer call */
            up_turn_on_timer(w->t, w->now);
            drain(w);
            break;
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    creds_init();
    struct up_turn_cfg cfg;
    up_turn_cfg_defaults(&cfg);
    cfg.software = "fuzz";
    cfg.users[0] = (struct up_turn_user){.name = "alice", .pass = "alice-pw"};
    cfg.n_users = 1;
    cfg.auth_secret = secret;
    cfg.auth_secret_len = sizeof secret - 1;
    cfg.has_relay4 = true;
    cfg.relay4 = ip_addr("192.0.2.1", 0);
    cfg.has_relay6 = true;
    cfg.relay6 = ip_addr("2001:db8::1", 0);
    cfg.min_port = MIN_PORT;
    cfg.max_port = MIN_PORT + N_PORTS - 1;
    cfg.user_quota = 3;
    cfg.unauth_budget = 16;
    cfg.max_allocations = 8;
    const char *why = NULL;
    CHECK(up_cidr_list_add(&cfg.allow_peers, "198.51.100.0/24", &why) == UP_OK);
    rng_state = 0x9E3779B97F4A7C15ull;
    cfg.rand = xorshift;

    struct world w;
    memset(&w, 0, sizeof w);
    w.t = up_turn_new(&cfg);
    CHECK(w.t);
    w.now = T0;
    w.cl[0].from = (struct up_turn_client){.addr = ip_addr("198.51.100.1", 40000),
                                           .local = ip_addr("192.0.2.1", 3478)};
    w.cl[1].from = (struct up_turn_client){.addr = ip_addr("198.51.100.1", 40001),
                                           .local = ip_addr("192.0.2.1", 3478)};
    w.cl[2].from = (struct up_turn_client){.addr = ip_addr("2001:db8:1::7", 40000),
                                           .local = ip_addr("2001:db8::1", 3478)};
    w.cl[3].from = (struct up_turn_client){.addr = ip_addr("198.51.100.2", 40000),
                                           .local = ip_addr("192.0.2.1", 3478),
                                           .proto = UP_TURN_TCP,
                                           .conn = ++w.next_conn};
    struct in in = {.p = data, .n = size};
    run(&w, &in);

    /* Wind down: answer what is being opened, then let everything expire. */
    for (int guard = 0; guard < 4 * N_PORTS; guard++) {
        answer_port(&w, 0, true);
        drain(&w);
    }
    for (int f = 0; f < 2; f++) {
        for (int i = 0; i < N_PORTS; i++) {
            CHECK(w.port_state[f][i] != 1);
        }
    }
    w.now += 2 * 3600 * 1000ull;
    while (up_turn_next_timeout(w.t) <= w.now) {
        up_turn_on_timer(w.t, w.now);
        drain(&w);
    }
    CHECK(up_turn_next_timeout(w.t) == UINT64_MAX);
    for (int f = 0; f < 2; f++) {
        for (int i = 0; i < N_PORTS; i++) {
            CHECK(w.port_state[f][i] == 0);
        }
    }
    const struct up_turn_stats *s = up_turn_stats(w.t);
    CHECK(s->allocations == 0 && s->permissions == 0 && s->channels == 0);
    up_turn_free(w.t);
    return 0;
}
