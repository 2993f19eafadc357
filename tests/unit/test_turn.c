/* Unit tests for src/proto/turn.c, in the style of Firezone's relay regression tests
 * (rust/relay/proto/tests/regression.rs): a deterministic RNG (a counter, so the first relay
 * port is 49152), a scripted client that builds its requests with the STUN codec (and
 * authenticates them with the long-term key once a 401 gave it a nonce), and after every
 * input the EXACT ordered list of commands, with the answers parsed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "base/bytes.h"
#include "base/crypto.h"
#include "proto/turn.h"

#define T0 ((uint64_t)1700000000000) /* UNIX ms */
#define S(n) ((uint64_t)(n)*1000)
#define MAX_GOT 512

static uint64_t rng_counter;

static uint64_t counter_rand(void *ud)
{
    (void)ud;
    return rng_counter++;
}

/* ---- the commands an input produced, copied and parsed ---- */

struct got {
    struct up_turn_cmd c;
    uint8_t bytes[2048];
    bool stun;
    struct up_stun_msg m;
    int code; /* ERROR-CODE of an error answer */
};

static struct got got[MAX_GOT];
static size_t n_got;

struct h {
    struct up_turn_cfg cfg;
    struct up_turn *t;
    uint64_t now;
};

static size_t drain(struct h *h)
{
    n_got = 0;
    struct up_turn_cmd c;
    while (up_turn_next_cmd(h->t, &c)) {
        assert_true(n_got < MAX_GOT);
        struct got *g = &got[n_got++];
        memset(g, 0, sizeof(*g));
        g->c = c;
        if (c.kind == UP_TURN_CMD_SEND_CLIENT && c.len >= 1 && up_stun_is_stun(c.data[0])) {
            assert_true(c.len <= sizeof g->bytes);
            memcpy(g->bytes, c.data, c.len);
            assert_int_equal(up_stun_parse(g->bytes, c.len, &g->m), UP_OK);
            g->stun = true;
            const struct up_stun_attr *e = up_stun_find(&g->m, UP_STUN_A_ERROR_CODE);
            if (e) {
                const char *r;
                size_t rl;
                assert_int_equal(up_stun_error(e, &g->code, &r, &rl), UP_OK);
            }
        }
    }
    return n_got;
}

static void want_none(struct h *h)
{
    assert_int_equal(drain(h), 0);
}

static void want_port(size_t i, enum up_turn_cmd_kind kind, uint16_t port, bool v6)
{
    assert_true(i < n_got);
    assert_int_equal(got[i].c.kind, kind);
    assert_int_equal(got[i].c.port, port);
    assert_int_equal(got[i].c.v6, v6);
}

static void want_answer(size_t i, const struct up_turn_client *to, uint16_t method, uint8_t cls,
                        int code)
{
    assert_true(i < n_got);
    assert_int_equal(got[i].c.kind, UP_TURN_CMD_SEND_CLIENT);
    assert_true(got[i].stun);
    assert_int_equal(got[i].c.client.proto, to->proto);
    assert_int_equal(got[i].c.client.conn, to->conn);
    assert_int_equal(got[i].c.client.addr.port, to->addr.port);
    assert_memory_equal(got[i].c.client.addr.ip, to->addr.ip, 16);
    assert_int_equal(got[i].m.method, method);
    assert_int_equal(got[i].m.cls, cls);
    assert_int_equal(got[i].code, code);
}

static const struct up_stun_attr *attr(size_t i, uint16_t type)
{
    return up_stun_find(&got[i].m, type);
}

static uint32_t attr_u32(size_t i, uint16_t type)
{
    const struct up_stun_attr *a = attr(i, type);
    assert_non_null(a);
    uint32_t v;
    assert_int_equal(up_stun_u32(a, &v), UP_OK);
    return v;
}

static struct up_stun_addr addr(const char *ip, uint16_t port)
{
    struct up_stun_addr a = {.port = port};
    assert_int_equal(up_ip_parse(ip, strlen(ip), a.ip), UP_OK);
    return a;
}

static void want_xaddr(size_t i, const struct up_stun_attr *a, const char *ip, uint16_t port)
{
    assert_non_null(a);
    struct up_stun_addr x, w = addr(ip, port);
    assert_int_equal(up_stun_xaddr(&got[i].m, a, &x), UP_OK);
    assert_int_equal(x.port, w.port);
    assert_memory_equal(x.ip, w.ip, 16);
}

static size_t count_attr(size_t i, uint16_t type)
{
    size_t n = 0;
    for (size_t k = 0; k < got[i].m.n_attrs; k++) {
        n += got[i].m.attrs[k].type == type;
    }
    return n;
}

/* ---- the server ---- */

static void cfg_init(struct up_turn_cfg *cfg)
{
    up_turn_cfg_defaults(cfg);
    cfg->software = "underpass-test";
    cfg->users[0] = (struct up_turn_user){.name = "alice", .pass = "alice-pw"};
    cfg->users[1] = (struct up_turn_user){.name = "bob", .pass = "bob-pw"};
    cfg->n_users = 2;
    cfg->has_relay4 = true;
    cfg->relay4 = addr("192.0.2.1", 0);
    cfg->rand = counter_rand;
}

/* Start the server; the counter is reset after up_turn_new() (which drew the nonce key, the
 * hash seed and the indication transaction-id salt 00000005), so ports start at min_port. */
static void start(struct h *h)
{
    rng_counter = 0;
    h->t = up_turn_new(&h->cfg);
    assert_non_null(h->t);
    rng_counter = 0;
    h->now = T0;
}

static int setup(void **state)
{
    static struct h h;
    memset(&h, 0, sizeof h);
    cfg_init(&h.cfg);
    *state = &h;
    return 0;
}

static int teardown(void **state)
{
    struct h *h = *state;
    up_turn_free(h->t);
    h->t = NULL;
    return 0;
}

/* ---- the scripted client ---- */

struct cl {
    struct up_turn_client from;
    const char *user, *pass;
    char nonce[64];
    size_t nonce_len;
    uint8_t key[16];
    bool sha256; /* MESSAGE-INTEGRITY-SHA256 instead of MESSAGE-INTEGRITY */
    bool fp;
    uint32_t n;
    uint8_t buf[2048];
    size_t len;
    uint8_t tid[12];
};

static struct cl client_udp(const char *ip, uint16_t port, const char *user, const char *pass)
{
    struct cl c;
    memset(&c, 0, sizeof c);
    c.from.addr = addr(ip, port);
    c.from.local = addr("192.0.2.1", 3478);
    c.from.proto = UP_TURN_UDP;
    c.user = user;
    c.pass = pass;
    return c;
}

static void cl_begin(struct cl *c, struct up_stun_builder *b, uint16_t method, uint8_t cls)
{
    memcpy(c->tid, "test", 4);
    up_wr_u64be(c->tid + 4, ((uint64_t)method << 32) | ++c->n);
    up_stun_begin(b, c->buf, sizeof c->buf, method, cls, c->tid);
}

static void cl_set_key(struct cl *c, const char *realm)
{
    up_stun_long_term_key(c->user, strlen(c->user), realm, strlen(realm), c->pass, strlen(c->pass),
                          c->key);
}

/* Finish the message (credentials when auth, FINGERPRINT when c->fp) and feed it. */
static void cl_send(struct h *h, struct cl *c, struct up_stun_builder *b, bool auth)
{
    if (auth) {
        up_stun_add(b, UP_STUN_A_USERNAME, c->user, strlen(c->user));
        up_stun_add(b, UP_STUN_A_REALM, "underpass", 9);
        up_stun_add(b, UP_STUN_A_NONCE, c->nonce, c->nonce_len);
        if (c->sha256) {
            up_stun_add_integrity_sha256(b, c->key, sizeof c->key);
        } else {
            up_stun_add_integrity(b, c->key, sizeof c->key);
        }
    }
    if (c->fp) {
        up_stun_add_fingerprint(b);
    }
    assert_int_equal(up_stun_end(b, &c->len), UP_OK);
    up_turn_on_client(h->t, h->now, &c->from, c->buf, c->len);
}

/* Take the NONCE (and the key for REALM) from answer i, as a client does after 401/438. */
static void cl_learn(struct cl *c, size_t i)
{
    const struct up_stun_attr *n = attr(i, UP_STUN_A_NONCE);
    const struct up_stun_attr *r = attr(i, UP_STUN_A_REALM);
    assert_non_null(n);
    assert_non_null(r);
    assert_true(n->len < sizeof c->nonce);
    memcpy(c->nonce, n->value, n->len);
    c->nonce_len = n->len;
    char realm[128];
    memcpy(realm, r->value, r->len);
    realm[r->len] = '\0';
    cl_set_key(c, realm);
}

static void send_allocate(struct h *h, struct cl *c, bool auth)
{
    struct up_stun_builder b;
    cl_begin(c, &b, UP_TURN_ALLOCATE, UP_STUN_REQUEST);
    up_stun_add_u32(&b, UP_STUN_A_REQUESTED_TRANSPORT, 17u << 24);
    cl_send(h, c, &b, auth);
}

/* Unauthenticated Allocate → 401 with a nonce, learnt. */
static void cl_login(struct h *h, struct cl *c)
{
    send_allocate(h, c, false);
    assert_int_equal(drain(h), 1);
    want_answer(0, &c->from, UP_TURN_ALLOCATE, UP_STUN_ERROR, 401);
    cl_learn(c, 0);
}

/* The whole Allocate dance: 401, authenticated Allocate → OPEN_PORT port → ok → success. */
static void cl_allocate(struct h *h, struct cl *c, uint16_t port)
{
    if (!c->nonce_len) {
        cl_login(h, c);
    }
    send_allocate(h, c, true);
    assert_int_equal(drain(h), 1);
    want_port(0, UP_TURN_CMD_OPEN_PORT, port, false);
    up_turn_port_result(h->t, h->now, port, false, true);
    assert_int_equal(drain(h), 1);
    want_answer(0, &c->from, UP_TURN_ALLOCATE, UP_STUN_SUCCESS, 0);
}

static void send_refresh(struct h *h, struct cl *c, int64_t lifetime)
{
    struct up_stun_builder b;
    cl_begin(c, &b, UP_TURN_REFRESH, UP_STUN_REQUEST);
    if (lifetime >= 0) {
        up_stun_add_u32(&b, UP_STUN_A_LIFETIME, (uint32_t)lifetime);
    }
    cl_send(h, c, &b, true);
}

static void send_permission(struct h *h, struct cl *c, const char *peer)
{
    struct up_stun_builder b;
    struct up_stun_addr p = addr(peer, 1);
    cl_begin(c, &b, UP_TURN_CREATE_PERMISSION, UP_STUN_REQUEST);
    up_stun_add_xaddr(&b, UP_STUN_A_XOR_PEER_ADDRESS, &p);
    cl_send(h, c, &b, true);
}

static void send_bind(struct h *h, struct cl *c, uint16_t number, const char *peer, uint16_t port)
{
    struct up_stun_builder b;
    struct up_stun_addr p = addr(peer, port);
    cl_begin(c, &b, UP_TURN_CHANNEL_BIND, UP_STUN_REQUEST);
    up_stun_add_u32(&b, UP_STUN_A_CHANNEL_NUMBER, (uint32_t)number << 16);
    up_stun_add_xaddr(&b, UP_STUN_A_XOR_PEER_ADDRESS, &p);
    cl_send(h, c, &b, true);
}

static void want_ok(struct h *h, struct cl *c, uint16_t method)
{
    assert_int_equal(drain(h), 1);
    want_answer(0, &c->from, method, UP_STUN_SUCCESS, 0);
}

static void want_err(struct h *h, struct cl *c, uint16_t method, int code)
{
    assert_int_equal(drain(h), 1);
    want_answer(0, &c->from, method, UP_STUN_ERROR, code);
}

/* The answer is authenticated with the client's key (RFC 8489 §9.2.4). */
static void want_signed(size_t i, const struct cl *c)
{
    assert_true(up_stun_check_integrity(got[i].bytes, &got[i].m, c->key, sizeof c->key));
}

/* A peer datagram: the payload at buf + UP_TURN_HEADROOM with tailroom after it. */
static uint8_t peer_buf[UP_TURN_HEADROOM + 2048 + UP_TURN_TAILROOM];

static uint8_t *peer_send(struct h *h, uint16_t port, bool v6, const char *ip, uint16_t pport,
                          const char *data)
{
    struct up_stun_addr p = addr(ip, pport);
    memset(peer_buf, 0xEE, sizeof peer_buf);
    uint8_t *d = peer_buf + UP_TURN_HEADROOM;
    memcpy(d, data, strlen(data));
    up_turn_on_peer(h->t, h->now, port, v6, &p, d, strlen(data));
    return d;
}

/* ---- Binding ---- */

static void test_turn_binding_v4(void **state)
{
    struct h *h = *state;
    start(h);
    struct cl c = client_udp("198.51.100.1", 40000, "alice", "alice-pw");
    struct up_stun_builder b;
    cl_begin(&c, &b, UP_STUN_BINDING, UP_STUN_REQUEST);
    cl_send(h, &c, &b, false);
    assert_int_equal(drain(h), 1);
    want_answer(0, &c.from, UP_STUN_BINDING, UP_STUN_SUCCESS, 0);
    assert_memory_equal(got[0].m.tid, c.tid, 12);
    want_xaddr(0, attr(0, UP_STUN_A_XOR_MAPPED_ADDRESS), "198.51.100.1", 40000);
    const struct up_stun_attr *sw = attr(0, UP_STUN_A_SOFTWARE);
    assert_non_null(sw);
    assert_int_equal(sw->len, strlen("underpass-test"));
    assert_memory_equal(sw->value, "underpass-test", sw->len);
    assert_int_equal(got[0].m.mi, -1);
    assert_int_equal(got[0].m.fp, -1);
    /* With FINGERPRINT in the request, the answer has one too. */
    c.fp = true;
    cl_begin(&c, &b, UP_STUN_BINDING, UP_STUN_REQUEST);
    cl_send(h, &c, &b, false);
    assert_int_equal(drain(h), 1);
    assert_true(got[0].m.fp >= 0);
    assert_true(got[0].c.len <= c.len + 100);
    /* A Binding indication (a keepalive) gets nothing. */
    cl_begin(&c, &b, UP_STUN_BINDING, UP_STUN_INDICATION);
    cl_send(h, &c, &b, false);
    want_none(h);
    assert_int_equal(up_turn_stats(h->t)->requests, 2);
}

static void test_turn_binding_v6(void **state)
{
    struct h *h = *state;
    start(h);
    struct cl c = client_udp("2001:db8:1::7", 50001, "alice", "alice-pw");
    c.from.local = addr("2001:db8::1", 3478);
    struct up_stun_builder b;
    cl_begin(&c, &b, UP_STUN_BINDING, UP_STUN_REQUEST);
    cl_send(h, &c, &b, false);
    assert_int_equal(drain(h), 1);
    want_answer(0, &c.from, UP_STUN_BINDING, UP_STUN_SUCCESS, 0);
    want_xaddr(0, attr(0, UP_STUN_A_XOR_MAPPED_ADDRESS), "2001:db8:1::7", 50001);
    assert_true(got[0].c.len <= c.len + 100);
}

static void test_turn_binding_source_port_zero_ignored(void **state)
{
    struct h *h = *state;
    start(h);
    struct cl c = client_udp("198.51.100.1", 0, "alice", "alice-pw");
    struct up_stun_builder b;
    cl_begin(&c, &b, UP_STUN_BINDING, UP_STUN_REQUEST);
    cl_send(h, &c, &b, false);
    want_none(h);
    assert_int_equal(up_turn_stats(h->t)->dropped, 1);
}

static void test_turn_malformed_and_stray_messages_dropped(void **state)
{
    struct h *h = *state;
    start(h);
    struct cl c = client_udp("198.51.100.1", 40000, "alice", "alice-pw");
    static const uint8_t junk[] = {0x17, 0x03, 0x03, 0x00, 0x01, 0x00};
    up_turn_on_client(h->t, h->now, &c.from, junk, sizeof junk);
    want_none(h);
    /* A STUN header with a bad cookie. */
    uint8_t bad[20] = {0x00, 0x01, 0x00, 0x00, 0xde, 0xad, 0xbe, 0xef};
    up_turn_on_client(h->t, h->now, &c.from, bad, sizeof bad);
    want_none(h);
    /* Responses from a client are not answered. */
    struct up_stun_builder b;
    cl_begin(&c, &b, UP_STUN_BINDING, UP_STUN_SUCCESS);
    cl_send(h, &c, &b, false);
    want_none(h);
    /* ChannelData without an allocation. */
    static const uint8_t cd[] = {0x40, 0x00, 0x00, 0x01, 'x'};
    up_turn_on_client(h->t, h->now, &c.from, cd, sizeof cd);
    want_none(h);
    up_turn_on_client(h->t, h->now, &c.from, cd, 0);
    want_none(h);
    assert_int_equal(up_turn_stats(h->t)->dropped, 5);
    assert_int_equal(up_turn_stats(h->t)->requests, 0);
}

static void test_turn_unknown_method_400_and_unknown_attribute_420(void **state)
{
    struct h *h = *state;
    start(h);
    struct cl c = client_udp("198.51.100.1", 40000, "alice", "alice-pw");
    struct up_stun_builder b;
    cl_begin(&c, &b, 0x00B, UP_STUN_REQUEST);
    cl_send(h, &c, &b, false);
    want_err(h, &c, 0x00B, 400);
    /* Binding with an unknown comprehension-required attribute. */
    cl_begin(&c, &b, UP_STUN_BINDING, UP_STUN_REQUEST);
    up_stun_add(&b, 0x7FFF, "abcd", 4);
    up_stun_add(&b, 0xC001, "ok", 2); /* comprehension-optional: ignored */
    cl_send(h, &c, &b, false);
    want_err(h, &c, UP_STUN_BINDING, 420);
    const struct up_stun_attr *u = attr(0, UP_STUN_A_UNKNOWN_ATTRIBUTES);
    assert_non_null(u);
    assert_int_equal(u->len, 2);
    assert_int_equal(up_rd_u16be(u->value), 0x7FFF);
    /* An authenticated request: 420 after the authentication, signed. */
    cl_login(h, &c);
    cl_begin(&c, &b, UP_TURN_ALLOCATE, UP_STUN_REQUEST);
    up_stun_add_u32(&b, UP_STUN_A_REQUESTED_TRANSPORT, 17u << 24);
    up_stun_add(&b, 0x7FFE, NULL, 0);
    cl_send(h, &c, &b, true);
    want_err(h, &c, UP_TURN_ALLOCATE, 420);
    want_signed(0, &c);
    assert_int_equal(up_rd_u16be(attr(0, UP_STUN_A_UNKNOWN_ATTRIBUTES)->value), 0x7FFE);
    /* DONT-FRAGMENT is not offered (RFC 8656 §7.2). */
    cl_begin(&c, &b, UP_TURN_ALLOCATE, UP_STUN_REQUEST);
    up_stun_add_u32(&b, UP_STUN_A_REQUESTED_TRANSPORT, 17u << 24);
    up_stun_add(&b, UP_STUN_A_DONT_FRAGMENT, NULL, 0);
    cl_send(h, &c, &b, true);
    want_err(h, &c, UP_TURN_ALLOCATE, 420);
    assert_int_equal(up_rd_u16be(attr(0, UP_STUN_A_UNKNOWN_ATTRIBUTES)->value),
                     UP_STUN_A_DONT_FRAGMENT);
    /* No reservations are kept: any RESERVATION-TOKEN is unknown (508, RFC 8656 §7.2). */
    cl_begin(&c, &b, UP_TURN_ALLOCATE, UP_STUN_REQUEST);
    up_stun_add_u32(&b, UP_STUN_A_REQUESTED_TRANSPORT, 17u << 24);
    up_stun_add(&b, UP_STUN_A_RESERVATION_TOKEN, "12345678", 8);
    cl_send(h, &c, &b, true);
    want_err(h, &c, UP_TURN_ALLOCATE, 508);
    assert_int_equal(up_turn_stats(h->t)->allocations, 0);
}

/* EVEN-PORT (R bit set or not) is honoured with an even port; no token is returned. */
static void test_turn_allocate_even_port(void **state)
{
    struct h *h = *state;
    start(h);
    for (int r = 0; r < 2; r++) {
        struct cl c = client_udp("198.51.100.1", (uint16_t)(40000 + r), "alice", "alice-pw");
        cl_login(h, &c);
        struct up_stun_builder b;
        uint8_t ev = r ? 0x80 : 0x00;
        cl_begin(&c, &b, UP_TURN_ALLOCATE, UP_STUN_REQUEST);
        up_stun_add_u32(&b, UP_STUN_A_REQUESTED_TRANSPORT, 17u << 24);
        up_stun_add(&b, UP_STUN_A_EVEN_PORT, &ev, 1);
        cl_send(h, &c, &b, true);
        for (int round = 0; round < 3; round++) {
            assert_int_equal(drain(h), 1);
            assert_int_equal(got[0].c.kind, UP_TURN_CMD_OPEN_PORT);
            uint16_t port = got[0].c.port;
            assert_int_equal(port % 2, 0);
            /* The first two cannot be bound: the next tries are even too. */
            up_turn_port_result(h->t, h->now, port, false, round == 2);
        }
        assert_int_equal(drain(h), 1);
        want_answer(0, &c.from, UP_TURN_ALLOCATE, UP_STUN_SUCCESS, 0);
        assert_null(attr(0, UP_STUN_A_RESERVATION_TOKEN));
    }
    assert_int_equal(up_turn_stats(h->t)->allocations, 2);
}

/* ---- Allocate ---- */

static void test_turn_allocate_unauthenticated_401(void **state)
{
    struct h *h = *state;
    start(h);
    struct cl c = client_udp("198.51.100.1", 40000, "alice", "alice-pw");
    send_allocate(h, &c, false);
    assert_int_equal(drain(h), 1);
    want_answer(0, &c.from, UP_TURN_ALLOCATE, UP_STUN_ERROR, 401);
    const struct up_stun_attr *r = attr(0, UP_STUN_A_REALM);
    assert_non_null(r);
    assert_int_equal(r->len, 9);
    assert_memory_equal(r->value, "underpass", 9);
    assert_int_equal(attr(0, UP_STUN_A_NONCE)->len, 32);
    assert_int_equal(got[0].m.mi, -1);
    assert_null(attr(0, UP_STUN_A_SOFTWARE));
    assert_true(got[0].c.len <= c.len + 100); /* no amplification */
    assert_int_equal(up_turn_stats(h->t)->auth_failures, 0);
    /* MESSAGE-INTEGRITY without USERNAME is still a 401. */
    struct up_stun_builder b;
    cl_begin(&c, &b, UP_TURN_ALLOCATE, UP_STUN_REQUEST);
    up_stun_add_u32(&b, UP_STUN_A_REQUESTED_TRANSPORT, 17u << 24);
    up_stun_add_integrity(&b, c.key, sizeof c.key);
    cl_send(h, &c, &b, false);
    want_err(h, &c, UP_TURN_ALLOCATE, 401);
    /* Every other method needs credentials as well. */
    send_refresh(h, &c, 600); /* nonce empty: 438 */
    want_err(h, &c, UP_TURN_REFRESH, 438);
    assert_true(got[0].c.len <= c.len + 100);
    assert_int_equal(attr(0, UP_STUN_A_NONCE)->len, 32);
    assert_int_equal(up_turn_stats(h->t)->allocations, 0);
}

static void test_turn_allocate_success(void **state)
{
    struct h *h = *state;
    start(h);
    struct cl c = client_udp("198.51.100.1", 40000, "alice", "alice-pw");
    cl_login(h, &c);
    send_allocate(h, &c, true);
    assert_int_equal(drain(h), 1);
    want_port(0, UP_TURN_CMD_OPEN_PORT, 49152, false);
    assert_int_equal(up_turn_stats(h->t)->allocations, 0);
    assert_int_equal(up_turn_next_timeout(h->t), UINT64_MAX);
    h->now += 5;
    up_turn_port_result(h->t, h->now, 49152, false, true);
    assert_int_equal(drain(h), 1);
    want_answer(0, &c.from, UP_TURN_ALLOCATE, UP_STUN_SUCCESS, 0);
    assert_memory_equal(got[0].m.tid, c.tid, 12);
    want_signed(0, &c);
    assert_int_equal(count_attr(0, UP_STUN_A_XOR_RELAYED_ADDRESS), 1);
    want_xaddr(0, attr(0, UP_STUN_A_XOR_RELAYED_ADDRESS), "192.0.2.1", 49152);
    want_xaddr(0, attr(0, UP_STUN_A_XOR_MAPPED_ADDRESS), "198.51.100.1", 40000);
    assert_int_equal(attr_u32(0, UP_STUN_A_LIFETIME), 600);
    assert_int_equal(got[0].m.mi256, -1);
    assert_int_equal(got[0].m.fp, -1);
    assert_int_equal(up_turn_stats(h->t)->allocations, 1);
    assert_int_equal(up_turn_next_timeout(h->t), h->now + S(600));
    /* A port result nobody asked for changes nothing. */
    up_turn_port_result(h->t, h->now, 50000, false, true);
    want_none(h);
}

static void test_turn_allocate_lifetime_clamped(void **state)
{
    struct h *h = *state;
    start(h);
    struct cl c = client_udp("198.51.100.1", 40000, "alice", "alice-pw");
    cl_login(h, &c);
    struct up_stun_builder b;
    cl_begin(&c, &b, UP_TURN_ALLOCATE, UP_STUN_REQUEST);
    up_stun_add_u32(&b, UP_STUN_A_REQUESTED_TRANSPORT, 17u << 24);
    up_stun_add_u32(&b, UP_STUN_A_LIFETIME, 100000);
    cl_send(h, &c, &b, true);
    assert_int_equal(drain(h), 1);
    up_turn_port_result(h->t, h->now, 49152, false, true);
    assert_int_equal(drain(h), 1);
    assert_int_equal(attr_u32(0, UP_STUN_A_LIFETIME), 3600);
    /* Below the default: the default (RFC 8656 §7.2). */
    struct cl d = client_udp("198.51.100.2", 40000, "bob", "bob-pw");
    cl_login(h, &d);
    cl_begin(&d, &b, UP_TURN_ALLOCATE, UP_STUN_REQUEST);
    up_stun_add_u32(&b, UP_STUN_A_REQUESTED_TRANSPORT, 17u << 24);
    up_stun_add_u32(&b, UP_STUN_A_LIFETIME, 30);
    cl_send(h, &d, &b, true);
    assert_int_equal(drain(h), 1);
    want_port(0, UP_TURN_CMD_OPEN_PORT, 49153, false);
    up_turn_port_result(h->t, h->now, 49153, false, true);
    assert_int_equal(drain(h), 1);
    assert_int_equal(attr_u32(0, UP_STUN_A_LIFETIME), 600);
    assert_int_equal(up_turn_next_timeout(h->t), h->now + S(600));
}

static void test_turn_allocate_port_failure_tries_another(void **state)
{
    struct h *h = *state;
    start(h);
    struct cl c = client_udp("198.51.100.1", 40000, "alice", "alice-pw");
    cl_login(h, &c);
    send_allocate(h, &c, true);
    assert_int_equal(drain(h), 1);
    want_port(0, UP_TURN_CMD_OPEN_PORT, 49152, false);
    up_turn_port_result(h->t, h->now, 49152, false, false);
    assert_int_equal(drain(h), 1);
    want_port(0, UP_TURN_CMD_OPEN_PORT, 49153, false);
    up_turn_port_result(h->t, h->now, 49153, false, true);
    assert_int_equal(drain(h), 1);
    want_answer(0, &c.from, UP_TURN_ALLOCATE, UP_STUN_SUCCESS, 0);
    want_xaddr(0, attr(0, UP_STUN_A_XOR_RELAYED_ADDRESS), "192.0.2.1", 49153);

    /* Four failures in a row: 508, signed. */
    struct cl d = client_udp("198.51.100.2", 40000, "bob", "bob-pw");
    cl_login(h, &d);
    send_allocate(h, &d, true);
    uint16_t port = 49154;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(drain(h), 1);
        want_port(0, UP_TURN_CMD_OPEN_PORT, port, false);
        up_turn_port_result(h->t, h->now, port, false, false);
        port++;
    }
    assert_int_equal(drain(h), 1);
    want_port(0, UP_TURN_CMD_OPEN_PORT, port, false);
    up_turn_port_result(h->t, h->now, port, false, false);
    assert_int_equal(drain(h), 1);
    want_answer(0, &d.from, UP_TURN_ALLOCATE, UP_STUN_ERROR, 508);
    want_signed(0, &d);
    assert_int_equal(up_turn_stats(h->t)->allocations, 1);
    /* It may try again from scratch. */
    send_allocate(h, &d, true);
    assert_int_equal(drain(h), 1);
    want_port(0, UP_TURN_CMD_OPEN_PORT, 49158, false);
}

static void test_turn_allocate_mismatch_437_and_retransmission(void **state)
{
    struct h *h = *state;
    start(h);
    struct cl c = client_udp("198.51.100.1", 40000, "alice", "alice-pw");
    cl_allocate(h, &c, 49152);
    uint8_t first[512];
    size_t first_len = got[0].c.len;
    memcpy(first, got[0].bytes, first_len);
    /* The same request again (a retransmission): the same answer, no new port. */
    up_turn_on_client(h->t, h->now, &c.from, c.buf, c.len);
    assert_int_equal(drain(h), 1);
    assert_int_equal(got[0].c.len, first_len);
    assert_memory_equal(got[0].bytes, first, first_len);
    /* A new transaction on the same 5-tuple: 437. */
    send_allocate(h, &c, true);
    want_err(h, &c, UP_TURN_ALLOCATE, 437);
    want_signed(0, &c);
    assert_int_equal(up_turn_stats(h->t)->allocations, 1);
    /* A retransmission while the port is being opened is not answered twice. */
    struct cl d = client_udp("198.51.100.2", 40000, "bob", "bob-pw");
    cl_login(h, &d);
    send_allocate(h, &d, true);
    assert_int_equal(drain(h), 1);
    want_port(0, UP_TURN_CMD_OPEN_PORT, 49153, false);
    up_turn_on_client(h->t, h->now, &d.from, d.buf, d.len);
    want_none(h);
    up_turn_port_result(h->t, h->now, 49153, false, true);
    assert_int_equal(drain(h), 1);
    want_answer(0, &d.from, UP_TURN_ALLOCATE, UP_STUN_SUCCESS, 0);
}

static void test_turn_allocate_transport_442_and_400(void **state)
{
    struct h *h = *state;
    start(h);
    struct cl c = client_udp("198.51.100.1", 40000, "alice", "alice-pw");
    cl_login(h, &c);
    struct up_stun_builder b;
    cl_begin(&c, &b, UP_TURN_ALLOCATE, UP_STUN_REQUEST);
    up_stun_add_u32(&b, UP_STUN_A_REQUESTED_TRANSPORT, 6u << 24); /* TCP */
    cl_send(h, &c, &b, true);
    want_err(h, &c, UP_TURN_ALLOCATE, 442);
    want_signed(0, &c);
    cl_begin(&c, &b, UP_TURN_ALLOCATE, UP_STUN_REQUEST);
    cl_send(h, &c, &b, true);
    want_err(h, &c, UP_TURN_ALLOCATE, 400);
    assert_int_equal(up_turn_stats(h->t)->errors, 3);
}

static void test_turn_allocate_family_440(void **state)
{
    struct h *h = *state;
    start(h); /* IPv4 relay only */
    struct cl c = client_udp("198.51.100.1", 40000, "alice", "alice-pw");
    cl_login(h, &c);
    struct up_stun_builder b;
    cl_begin(&c, &b, UP_TURN_ALLOCATE, UP_STUN_REQUEST);
    up_stun_add_u32(&b, UP_STUN_A_REQUESTED_TRANSPORT, 17u << 24);
    up_stun_add_u32(&b, UP_STUN_A_REQUESTED_ADDRESS_FAMILY, 0x02u << 24);
    cl_send(h, &c, &b, true);
    want_err(h, &c, UP_TURN_ALLOCATE, 440);
    cl_begin(&c, &b, UP_TURN_ALLOCATE, UP_STUN_REQUEST);
    up_stun_add_u32(&b, UP_STUN_A_REQUESTED_TRANSPORT, 17u << 24);
    up_stun_add_u32(&b, UP_STUN_A_REQUESTED_ADDRESS_FAMILY, 0x03u << 24);
    cl_send(h, &c, &b, true);
    want_err(h, &c, UP_TURN_ALLOCATE, 440);
    /* Both family attributes: 400 (RFC 8656 §7.2). */
    cl_begin(&c, &b, UP_TURN_ALLOCATE, UP_STUN_REQUEST);
    up_stun_add_u32(&b, UP_STUN_A_REQUESTED_TRANSPORT, 17u << 24);
    up_stun_add_u32(&b, UP_STUN_A_REQUESTED_ADDRESS_FAMILY, 0x01u << 24);
    up_stun_add_u32(&b, UP_STUN_A_ADDITIONAL_ADDRESS_FAMILY, 0x02u << 24);
    cl_send(h, &c, &b, true);
    want_err(h, &c, UP_TURN_ALLOCATE, 400);
    /* Explicit IPv4 works. */
    cl_begin(&c, &b, UP_TURN_ALLOCATE, UP_STUN_REQUEST);
    up_stun_add_u32(&b, UP_STUN_A_REQUESTED_TRANSPORT, 17u << 24);
    up_stun_add_u32(&b, UP_STUN_A_REQUESTED_ADDRESS_FAMILY, 0x01u << 24);
    cl_send(h, &c, &b, true);
    assert_int_equal(drain(h), 1);
    want_port(0, UP_TURN_CMD_OPEN_PORT, 49152, false);
}

static void test_turn_allocate_ipv6_only(void **state)
{
    struct h *h = *state;
    h->cfg.has_relay4 = false;
    h->cfg.has_relay6 = true;
    h->cfg.relay6 = addr("2001:db8::1", 0);
    start(h);
    struct cl c = client_udp("198.51.100.1", 40000, "alice", "alice-pw");
    cl_login(h, &c);
    send_allocate(h, &c, true); /* IPv4 by default: none here */
    want_err(h, &c, UP_TURN_ALLOCATE, 440);
    struct up_stun_builder b;
    cl_begin(&c, &b, UP_TURN_ALLOCATE, UP_STUN_REQUEST);
    up_stun_add_u32(&b, UP_STUN_A_REQUESTED_TRANSPORT, 17u << 24);
    up_stun_add_u32(&b, UP_STUN_A_REQUESTED_ADDRESS_FAMILY, 0x02u << 24);
    cl_send(h, &c, &b, true);
    assert_int_equal(drain(h), 1);
    want_port(0, UP_TURN_CMD_OPEN_PORT, 49152, true);
    up_turn_port_result(h->t, h->now, 49152, true, true);
    assert_int_equal(drain(h), 1);
    want_xaddr(0, attr(0, UP_STUN_A_XOR_RELAYED_ADDRESS), "2001:db8::1", 49152);
    /* An IPv4 peer does not fit an IPv6 allocation: 443. */
    send_permission(h, &c, "203.0.113.5");
    want_err(h, &c, UP_TURN_CREATE_PERMISSION, 443);
    /* Refresh naming the wrong family: 443 (RFC 8656 §7.3). */
    cl_begin(&c, &b, UP_TURN_REFRESH, UP_STUN_REQUEST);
    up_stun_add_u32(&b, UP_STUN_A_REQUESTED_ADDRESS_FAMILY, 0x01u << 24);
    cl_send(h, &c, &b, true);
    want_err(h, &c, UP_TURN_REFRESH, 443);
}

static void test_turn_allocate_dual_stack(void **state)
{
    struct h *h = *state;
    h->cfg.has_relay6 = true;
    h->cfg.relay6 = addr("2001:db8::1", 0);
    start(h);
    struct cl c = client_udp("198.51.100.1", 40000, "alice", "alice-pw");
    cl_login(h, &c);
    struct up_stun_builder b;
    cl_begin(&c, &b, UP_TURN_ALLOCATE, UP_STUN_REQUEST);
    up_stun_add_u32(&b, UP_STUN_A_REQUESTED_TRANSPORT, 17u << 24);
    up_stun_add_u32(&b, UP_STUN_A_ADDITIONAL_ADDRESS_FAMILY, 0x02u << 24);
    cl_send(h, &c, &b, true);
    assert_int_equal(drain(h), 1);
    want_port(0, UP_TURN_CMD_OPEN_PORT, 49152, false);
    up_turn_port_result(h->t, h->now, 49152, false, true);
    assert_int_equal(drain(h), 1);
    want_port(0, UP_TURN_CMD_OPEN_PORT, 49153, true);
    up_turn_port_result(h->t, h->now, 49153, true, true);
    assert_int_equal(drain(h), 1);
    want_answer(0, &c.from, UP_TURN_ALLOCATE, UP_STUN_SUCCESS, 0);
    assert_int_equal(count_attr(0, UP_STUN_A_XOR_RELAYED_ADDRESS), 2);
    want_xaddr(0, &got[0].m.attrs[0], "192.0.2.1", 49152);
    want_xaddr(0, &got[0].m.attrs[1], "2001:db8::1", 49153);
    assert_null(attr(0, UP_STUN_A_ADDRESS_ERROR_CODE));
    /* Peers of both families. */
    send_permission(h, &c, "2001:db8:5::5");
    want_ok(h, &c, UP_TURN_CREATE_PERMISSION);
    send_permission(h, &c, "203.0.113.5");
    want_ok(h, &c, UP_TURN_CREATE_PERMISSION);
    peer_send(h, 49153, true, "2001:db8:5::5", 9000, "v6");
    assert_int_equal(drain(h), 1);
    assert_int_equal(got[0].c.kind, UP_TURN_CMD_SEND_CLIENT);
    want_xaddr(0, attr(0, UP_STUN_A_XOR_PEER_ADDRESS), "2001:db8:5::5", 9000);
    /* Refresh 0 closes both ports, IPv4 first, then answers. */
    send_refresh(h, &c, 0);
    assert_int_equal(drain(h), 3);
    want_port(0, UP_TURN_CMD_CLOSE_PORT, 49152, false);
    want_port(1, UP_TURN_CMD_CLOSE_PORT, 49153, true);
    want_answer(2, &c.from, UP_TURN_REFRESH, UP_STUN_SUCCESS, 0);
    assert_int_equal(up_turn_stats(h->t)->allocations, 0);
    assert_int_equal(up_turn_stats(h->t)->permissions, 0);
}

static void test_turn_allocate_dual_stack_without_v6_relay(void **state)
{
    struct h *h = *state;
    start(h);
    struct cl c = client_udp("198.51.100.1", 40000, "alice", "alice-pw");
    cl_login(h, &c);
    struct up_stun_builder b;
    cl_begin(&c, &b, UP_TURN_ALLOCATE, UP_STUN_REQUEST);
    up_stun_add_u32(&b, UP_STUN_A_REQUESTED_TRANSPORT, 17u << 24);
    up_stun_add_u32(&b, UP_STUN_A_ADDITIONAL_ADDRESS_FAMILY, 0x02u << 24);
    cl_send(h, &c, &b, true);
    assert_int_equal(drain(h), 1);
    want_port(0, UP_TURN_CMD_OPEN_PORT, 49152, false);
    up_turn_port_result(h->t, h->now, 49152, false, true);
    assert_int_equal(drain(h), 1);
    want_answer(0, &c.from, UP_TURN_ALLOCATE, UP_STUN_SUCCESS, 0);
    assert_int_equal(count_attr(0, UP_STUN_A_XOR_RELAYED_ADDRESS), 1);
    /* RFC 8656 §7.2: the IPv4 part succeeds, ADDRESS-ERROR-CODE says why IPv6 did not. */
    const struct up_stun_attr *e = attr(0, UP_STUN_A_ADDRESS_ERROR_CODE);
    assert_non_null(e);
    assert_int_equal(e->value[0], 0x02);
    assert_int_equal(e->value[2] * 100 + e->value[3], 440);
}

static void test_turn_allocate_quota_486(void **state)
{
    struct h *h = *state;
    h->cfg.user_quota = 2;
    start(h);
    struct cl c1 = client_udp("198.51.100.1", 40001, "alice", "alice-pw");
    struct cl c2 = client_udp("198.51.100.1", 40002, "alice", "alice-pw");
    struct cl c3 = client_udp("198.51.100.1", 40003, "alice", "alice-pw");
    cl_allocate(h, &c1, 49152);
    cl_allocate(h, &c2, 49153);
    cl_login(h, &c3);
    send_allocate(h, &c3, true);
    want_err(h, &c3, UP_TURN_ALLOCATE, 486);
    want_signed(0, &c3);
    /* Another user is not affected. */
    struct cl d = client_udp("198.51.100.1", 40004, "bob", "bob-pw");
    cl_allocate(h, &d, 49154);
    /* Freeing one gives the quota back. */
    send_refresh(h, &c1, 0);
    assert_int_equal(drain(h), 2);
    send_allocate(h, &c3, true);
    assert_int_equal(drain(h), 1);
    want_port(0, UP_TURN_CMD_OPEN_PORT, 49155, false);
}

static void test_turn_allocate_capacity_508(void **state)
{
    struct h *h = *state;
    h->cfg.min_port = 50000;
    h->cfg.max_port = 50000;
    start(h);
    struct cl c = client_udp("198.51.100.1", 40000, "alice", "alice-pw");
    cl_allocate(h, &c, 50000);
    struct cl d = client_udp("198.51.100.2", 40000, "bob", "bob-pw");
    cl_login(h, &d);
    send_allocate(h, &d, true);
    want_err(h, &d, UP_TURN_ALLOCATE, 508);
    want_signed(0, &d);
    /* A failed bind of the only port: no other port to try. */
    send_refresh(h, &c, 0);
    assert_int_equal(drain(h), 2);
    send_allocate(h, &d, true);
    assert_int_equal(drain(h), 1);
    want_port(0, UP_TURN_CMD_OPEN_PORT, 50000, false);
    up_turn_port_result(h->t, h->now, 50000, false, false);
    want_err(h, &d, UP_TURN_ALLOCATE, 508);
}

static void test_turn_allocate_max_allocations_508(void **state)
{
    struct h *h = *state;
    h->cfg.max_allocations = 1;
    start(h);
    struct cl c = client_udp("198.51.100.1", 40000, "alice", "alice-pw");
    cl_allocate(h, &c, 49152);
    struct cl d = client_udp("198.51.100.2", 40000, "bob", "bob-pw");
    cl_login(h, &d);
    send_allocate(h, &d, true);
    want_err(h, &d, UP_TURN_ALLOCATE, 508);
}

/* ---- Refresh and expiry ---- */

static void test_turn_refresh_extends(void **state)
{
    struct h *h = *state;
    start(h);
    struct cl c = client_udp("198.51.100.1", 40000, "alice", "alice-pw");
    cl_allocate(h, &c, 49152);
    assert_int_equal(up_turn_next_timeout(h->t), T0 + S(600));
    h->now = T0 + S(500);
    send_refresh(h, &c, 1200);
    want_ok(h, &c, UP_TURN_REFRESH);
    want_signed(0, &c);
    assert_int_equal(attr_u32(0, UP_STUN_A_LIFETIME), 1200);
    assert_int_equal(up_turn_next_timeout(h->t), T0 + S(1700));
    /* Capped at the maximum. */
    send_refresh(h, &c, 99999);
    want_ok(h, &c, UP_TURN_REFRESH);
    assert_int_equal(attr_u32(0, UP_STUN_A_LIFETIME), 3600);
    /* Without LIFETIME: the default. */
    send_refresh(h, &c, -1);
    want_ok(h, &c, UP_TURN_REFRESH);
    assert_int_equal(attr_u32(0, UP_STUN_A_LIFETIME), 600);
    assert_int_equal(up_turn_next_timeout(h->t), T0 + S(1100));
    up_turn_on_timer(h->t, T0 + S(600));
    want_none(h);
    assert_int_equal(up_turn_stats(h->t)->allocations, 1);
}

static void test_turn_refresh_zero_frees(void **state)
{
    struct h *h = *state;
    start(h);
    struct cl c = client_udp("198.51.100.1", 40000, "alice", "alice-pw");
    cl_allocate(h, &c, 49152);
    send_refresh(h, &c, 0);
    assert_int_equal(drain(h), 2);
    want_port(0, UP_TURN_CMD_CLOSE_PORT, 49152, false);
    want_answer(1, &c.from, UP_TURN_REFRESH, UP_STUN_SUCCESS, 0);
    assert_int_equal(attr_u32(1, UP_STUN_A_LIFETIME), 0);
    assert_true(up_stun_check_integrity(got[1].bytes, &got[1].m, c.key, sizeof c.key));
    assert_int_equal(up_turn_stats(h->t)->allocations, 0);
    assert_int_equal(up_turn_next_timeout(h->t), UINT64_MAX);
    /* Nothing left: 437. */
    send_refresh(h, &c, 600);
    want_err(h, &c, UP_TURN_REFRESH, 437);
    /* The port is free again. */
    struct cl d = client_udp("198.51.100.2", 40000, "bob", "bob-pw");
    rng_counter = 0;
    cl_allocate(h, &d, 49152);
}

static void test_turn_expiry_on_timer(void **state)
{
    struct h *h = *state;
    start(h);
    struct cl c = client_udp("198.51.100.1", 40000, "alice", "alice-pw");
    cl_allocate(h, &c, 49152);
    h->now = T0 + S(10);
    struct cl d = client_udp("198.51.100.2", 40000, "bob", "bob-pw");
    cl_allocate(h, &d, 49153);
    assert_int_equal(up_turn_next_timeout(h->t), T0 + S(600));
    up_turn_on_timer(h->t, T0 + S(600) - 1);
    want_none(h);
    up_turn_on_timer(h->t, T0 + S(600));
    assert_int_equal(drain(h), 1);
    want_port(0, UP_TURN_CMD_CLOSE_PORT, 49152, false);
    assert_int_equal(up_turn_next_timeout(h->t), T0 + S(610));
    up_turn_on_timer(h->t, T0 + S(700));
    assert_int_equal(drain(h), 1);
    want_port(0, UP_TURN_CMD_CLOSE_PORT, 49153, false);
    assert_int_equal(up_turn_next_timeout(h->t), UINT64_MAX);
    assert_int_equal(up_turn_stats(h->t)->allocations, 0);
    /* The 5-tuple is free: a refresh now gets 437 (after a fresh nonce: 600 s passed). */
    h->now = T0 + S(700);
    send_refresh(h, &c, 600);
    want_err(h, &c, UP_TURN_REFRESH, 438);
    cl_learn(&c, 0);
    send_refresh(h, &c, 600);
    want_err(h, &c, UP_TURN_REFRESH, 437);
}

/* ---- permissions and indications ---- */

static void test_turn_permission_and_data_indication_exact(void **state)
{
    struct h *h = *state;
    start(h);
    struct cl c = client_udp("198.51.100.1", 40000, "alice", "alice-pw");
    cl_allocate(h, &c, 49152);
    /* No permission yet: dropped. */
    peer_send(h, 49152, false, "203.0.113.5", 7000, "hello");
    want_none(h);
    assert_int_equal(up_turn_stats(h->t)->dropped, 1);
    send_permission(h, &c, "203.0.113.5");
    want_ok(h, &c, UP_TURN_CREATE_PERMISSION);
    want_signed(0, &c);
    assert_int_equal(up_turn_stats(h->t)->permissions, 1);
    /* Any port of the permitted IP (RFC 8656 §9). */
    uint8_t *d = peer_send(h, 49152, false, "203.0.113.5", 7000, "hello");
    assert_int_equal(drain(h), 1);
    assert_int_equal(got[0].c.kind, UP_TURN_CMD_SEND_CLIENT);
    assert_int_equal(got[0].c.client.addr.port, 40000);
    /* Built in place: the head in the headroom, the data where it was, padding after. */
    static const uint8_t want[] = {
        0x00, 0x17, 0x00, 0x18, 0x21, 0x12, 0xA4, 0x42, /* Data indication, length 24 */
        0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* tid */
        0x00, 0x12, 0x00, 0x08, 0x00, 0x01, 0x3A, 0x4A, /* XOR-PEER-ADDRESS 7000 */
        0xEA, 0x12, 0xD5, 0x47,                         /* 203.0.113.5 ^ cookie */
        0x00, 0x13, 0x00, 0x05, 'h',  'e',  'l',  'l',  'o',  0x00, 0x00, 0x00, /* DATA */
    };
    assert_int_equal(got[0].c.len, sizeof want);
    assert_ptr_equal(got[0].c.data, d - 36);
    assert_memory_equal(got[0].c.data, want, sizeof want);
    peer_send(h, 49152, false, "203.0.113.5", 7001, "x");
    assert_int_equal(drain(h), 1);
    assert_int_equal(got[0].c.len, 36 + 4);
    assert_int_equal(got[0].m.tid[11], 1); /* the next transaction id */
    /* Another IP, or another relay port: dropped. */
    peer_send(h, 49152, false, "203.0.113.6", 7000, "hello");
    want_none(h);
    peer_send(h, 49153, false, "203.0.113.5", 7000, "hello");
    want_none(h);
    assert_int_equal(up_turn_stats(h->t)->relayed_packets, 2);
    assert_int_equal(up_turn_stats(h->t)->relayed_bytes, 6);
    /* The permission lasts 300 s; refreshed by creating it again. */
    assert_int_equal(up_turn_next_timeout(h->t), T0 + S(300));
    h->now = T0 + S(200);
    send_permission(h, &c, "203.0.113.5");
    want_ok(h, &c, UP_TURN_CREATE_PERMISSION);
    assert_int_equal(up_turn_next_timeout(h->t), T0 + S(500));
    up_turn_on_timer(h->t, T0 + S(500));
    want_none(h);
    assert_int_equal(up_turn_stats(h->t)->permissions, 0);
    h->now = T0 + S(500);
    peer_send(h, 49152, false, "203.0.113.5", 7000, "late");
    want_none(h);
    assert_int_equal(up_turn_next_timeout(h->t), T0 + S(600));
}

static void test_turn_permission_several_peers_and_400(void **state)
{
    struct h *h = *state;
    start(h);
    struct cl c = client_udp("198.51.100.1", 40000, "alice", "alice-pw");
    cl_allocate(h, &c, 49152);
    struct up_stun_builder b;
    struct up_stun_addr p1 = addr("203.0.113.5", 1), p2 = addr("198.51.100.77", 2);
    cl_begin(&c, &b, UP_TURN_CREATE_PERMISSION, UP_STUN_REQUEST);
    up_stun_add_xaddr(&b, UP_STUN_A_XOR_PEER_ADDRESS, &p1);
    up_stun_add_xaddr(&b, UP_STUN_A_XOR_PEER_ADDRESS, &p2);
    cl_send(h, &c, &b, true);
    want_ok(h, &c, UP_TURN_CREATE_PERMISSION);
    assert_int_equal(up_turn_stats(h->t)->permissions, 2);
    /* No peer: 400. */
    cl_begin(&c, &b, UP_TURN_CREATE_PERMISSION, UP_STUN_REQUEST);
    cl_send(h, &c, &b, true);
    want_err(h, &c, UP_TURN_CREATE_PERMISSION, 400);
    /* All or nothing: one refused peer refuses the request. */
    struct up_stun_addr p3 = addr("203.0.113.9", 1), bad = addr("10.1.2.3", 1);
    cl_begin(&c, &b, UP_TURN_CREATE_PERMISSION, UP_STUN_REQUEST);
    up_stun_add_xaddr(&b, UP_STUN_A_XOR_PEER_ADDRESS, &p3);
    up_stun_add_xaddr(&b, UP_STUN_A_XOR_PEER_ADDRESS, &bad);
    cl_send(h, &c, &b, true);
    want_err(h, &c, UP_TURN_CREATE_PERMISSION, 403);
    assert_int_equal(up_turn_stats(h->t)->permissions, 2);
}

static void test_turn_refused_peers_403_unless_allowed(void **state)
{
    struct h *h = *state;
    h->cfg.has_relay6 = true;
    h->cfg.relay6 = addr("2001:db8::1", 0);
    start(h);
    struct cl c = client_udp("198.51.100.1", 40000, "alice", "alice-pw");
    cl_login(h, &c);
    struct up_stun_builder b;
    cl_begin(&c, &b, UP_TURN_ALLOCATE, UP_STUN_REQUEST);
    up_stun_add_u32(&b, UP_STUN_A_REQUESTED_TRANSPORT, 17u << 24);
    up_stun_add_u32(&b, UP_STUN_A_ADDITIONAL_ADDRESS_FAMILY, 0x02u << 24);
    cl_send(h, &c, &b, true);
    assert_int_equal(drain(h), 1);
    up_turn_port_result(h->t, h->now, 49152, false, true);
    assert_int_equal(drain(h), 1);
    up_turn_port_result(h->t, h->now, 49153, true, true);
    assert_int_equal(drain(h), 1);
    static const char *const refused[] = {
        "127.0.0.1",
        "127.255.0.9",
        "10.0.0.1",
        "172.16.0.1",
        "172.31.255.254",
        "192.168.1.1",
        "169.254.1.1",
        "224.0.0.251",
        "239.255.255.250",
        "255.255.255.255",
        "0.0.0.0",
        "0.1.2.3",
        "100.64.0.1",
        "100.127.255.255",
        "::1",
        "::",
        "fc00::1",
        "fd12:3456::1",
        "fe80::1",
        "ff02::1",
        "::ffff:10.0.0.1",
        "::10.0.0.1",
        "64:ff9b::a00:1",
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        send_permission(h, &c, refused[i]);
        assert_int_equal(drain(h), 1);
        if (got[0].code != 403) {
            fail_msg("%s: got %d", refused[i], got[0].code);
        }
    }
    static const char *const fine[] = {
        "203.0.113.5", "172.15.0.1",  "172.32.0.1",   "100.63.255.255",
        "100.128.0.1", "169.253.0.1", "192.169.0.1",  "223.255.255.255",
        "8.8.8.8",     "2001:db8::5", "2606:4700::1", "64:ff9b::808:808",
    };
    for (size_t i = 0; i < sizeof fine / sizeof fine[0]; i++) {
        send_permission(h, &c, fine[i]);
        assert_int_equal(drain(h), 1);
        if (got[0].code != 0) {
            fail_msg("%s: got %d", fine[i], got[0].code);
        }
    }
    /* Channels are checked the same way. */
    send_bind(h, &c, 0x4000, "192.168.1.1", 5000);
    want_err(h, &c, UP_TURN_CHANNEL_BIND, 403);
    /* The same, allowed by cfg.allow_peers. */
    up_turn_free(h->t);
    const char *why = NULL;
    assert_int_equal(up_cidr_list_add(&h->cfg.allow_peers, "10.0.0.0/8, fd00::/8", &why), UP_OK);
    h->cfg.has_relay6 = false;
    start(h);
    struct cl d = client_udp("198.51.100.1", 40000, "alice", "alice-pw");
    cl_allocate(h, &d, 49152);
    send_permission(h, &d, "10.1.2.3");
    want_ok(h, &d, UP_TURN_CREATE_PERMISSION);
    send_permission(h, &d, "192.168.1.1");
    want_err(h, &d, UP_TURN_CREATE_PERMISSION, 403);
    peer_send(h, 49152, false, "10.1.2.3", 53, "dns");
    assert_int_equal(drain(h), 1);
}

static void test_turn_send_indication(void **state)
{
    struct h *h = *state;
    start(h);
    struct cl c = client_udp("198.51.100.1", 40000, "alice", "alice-pw");
    cl_allocate(h, &c, 49152);
    struct up_stun_builder b;
    struct up_stun_addr p = addr("203.0.113.5", 7000);
    /* Without a permission: dropped silently. */
    cl_begin(&c, &b, UP_TURN_SEND, UP_STUN_INDICATION);
    up_stun_add_xaddr(&b, UP_STUN_A_XOR_PEER_ADDRESS, &p);
    up_stun_add(&b, UP_STUN_A_DATA, "ping", 4);
    cl_send(h, &c, &b, false);
    want_none(h);
    send_permission(h, &c, "203.0.113.5");
    want_ok(h, &c, UP_TURN_CREATE_PERMISSION);
    cl_begin(&c, &b, UP_TURN_SEND, UP_STUN_INDICATION);
    up_stun_add_xaddr(&b, UP_STUN_A_XOR_PEER_ADDRESS, &p);
    up_stun_add(&b, UP_STUN_A_DATA, "ping", 4);
    cl_send(h, &c, &b, false);
    assert_int_equal(drain(h), 1);
    assert_int_equal(got[0].c.kind, UP_TURN_CMD_SEND_PEER);
    assert_int_equal(got[0].c.port, 49152);
    assert_false(got[0].c.v6);
    assert_int_equal(got[0].c.peer.port, 7000);
    assert_memory_equal(got[0].c.peer.ip, p.ip, 16);
    assert_int_equal(got[0].c.len, 4);
    assert_ptr_equal(got[0].c.data, c.buf + 20 + 12 + 4); /* zero copy: DATA's value */
    /* From another 5-tuple: no allocation there, dropped. */
    struct cl o = client_udp("198.51.100.1", 40001, "alice", "alice-pw");
    cl_begin(&o, &b, UP_TURN_SEND, UP_STUN_INDICATION);
    up_stun_add_xaddr(&b, UP_STUN_A_XOR_PEER_ADDRESS, &p);
    up_stun_add(&b, UP_STUN_A_DATA, "ping", 4);
    cl_send(h, &o, &b, false);
    want_none(h);
    /* Without DATA: dropped. */
    cl_begin(&c, &b, UP_TURN_SEND, UP_STUN_INDICATION);
    up_stun_add_xaddr(&b, UP_STUN_A_XOR_PEER_ADDRESS, &p);
    cl_send(h, &c, &b, false);
    want_none(h);
    assert_int_equal(up_turn_stats(h->t)->relayed_packets, 1);
}

/* ---- channels ---- */

static void test_turn_channel_data_both_ways(void **state)
{
    struct h *h = *state;
    start(h);
    struct cl c = client_udp("198.51.100.1", 40000, "alice", "alice-pw");
    cl_allocate(h, &c, 49152);
    send_bind(h, &c, 0x4000, "203.0.113.5", 7000);
    want_ok(h, &c, UP_TURN_CHANNEL_BIND);
    want_signed(0, &c);
    assert_int_equal(up_turn_stats(h->t)->channels, 1);
    assert_int_equal(up_turn_stats(h->t)->permissions, 1); /* installed by the binding */
    static const uint8_t cd[] = {0x40, 0x00, 0x00, 0x03, 'a', 'b', 'c', 0x00};
    up_turn_on_client(h->t, h->now, &c.from, cd, sizeof cd);
    assert_int_equal(drain(h), 1);
    assert_int_equal(got[0].c.kind, UP_TURN_CMD_SEND_PEER);
    assert_int_equal(got[0].c.port, 49152);
    assert_int_equal(got[0].c.peer.port, 7000);
    assert_ptr_equal(got[0].c.data, cd + 4);
    assert_int_equal(got[0].c.len, 3);
    /* An unbound number: dropped. */
    static const uint8_t cd2[] = {0x40, 0x01, 0x00, 0x01, 'z'};
    up_turn_on_client(h->t, h->now, &c.from, cd2, sizeof cd2);
    want_none(h);
    /* Peer to client: ChannelData in the headroom, no padding over UDP. */
    uint8_t *d = peer_send(h, 49152, false, "203.0.113.5", 7000, "hello");
    assert_int_equal(drain(h), 1);
    assert_int_equal(got[0].c.kind, UP_TURN_CMD_SEND_CLIENT);
    assert_ptr_equal(got[0].c.data, d - 4);
    assert_int_equal(got[0].c.len, 9);
    static const uint8_t want[] = {0x40, 0x00, 0x00, 0x05, 'h', 'e', 'l', 'l', 'o'};
    assert_memory_equal(got[0].c.data, want, sizeof want);
    /* The same IP from another port has the permission but no channel: Data indication. */
    peer_send(h, 49152, false, "203.0.113.5", 7001, "hello");
    assert_int_equal(drain(h), 1);
    assert_true(got[0].stun);
    assert_int_equal(got[0].m.method, UP_TURN_DATA);
    assert_int_equal(up_turn_stats(h->t)->relayed_packets, 3);
}

static void test_turn_channel_data_tcp_padded(void **state)
{
    struct h *h = *state;
    start(h);
    struct cl c = client_udp("198.51.100.1", 40000, "alice", "alice-pw");
    c.from.proto = UP_TURN_TCP;
    c.from.conn = 7;
    cl_allocate(h, &c, 49152);
    send_bind(h, &c, 0x4ABC, "203.0.113.5", 7000);
    want_ok(h, &c, UP_TURN_CHANNEL_BIND);
    uint8_t *d = peer_send(h, 49152, false, "203.0.113.5", 7000, "hello");
    assert_int_equal(drain(h), 1);
    assert_int_equal(got[0].c.client.conn, 7);
    static const uint8_t want[] = {0x4A, 0xBC, 0x00, 0x05, 'h', 'e', 'l', 'l', 'o', 0, 0, 0};
    assert_int_equal(got[0].c.len, sizeof want);
    assert_ptr_equal(got[0].c.data, d - 4);
    assert_memory_equal(got[0].c.data, want, sizeof want);
    assert_int_equal(d[8], 0xEE); /* nothing written past the 3-byte tailroom */
    /* Client to peer over TCP: the frame is padded, the data is not. */
    static const uint8_t cd[] = {0x4A, 0xBC, 0x00, 0x01, 'q', 0, 0, 0};
    up_turn_on_client(h->t, h->now, &c.from, cd, sizeof cd);
    assert_int_equal(drain(h), 1);
    assert_int_equal(got[0].c.kind, UP_TURN_CMD_SEND_PEER);
    assert_int_equal(got[0].c.len, 1);
}

static void test_turn_channel_bind_rules_400(void **state)
{
    struct h *h = *state;
    start(h);
    struct cl c = client_udp("198.51.100.1", 40000, "alice", "alice-pw");
    cl_allocate(h, &c, 49152);
    send_bind(h, &c, 0x4000, "203.0.113.5", 7000);
    want_ok(h, &c, UP_TURN_CHANNEL_BIND);
    /* The same number to another peer, the same peer to another number: 400. */
    send_bind(h, &c, 0x4000, "203.0.113.5", 7001);
    want_err(h, &c, UP_TURN_CHANNEL_BIND, 400);
    send_bind(h, &c, 0x4001, "203.0.113.5", 7000);
    want_err(h, &c, UP_TURN_CHANNEL_BIND, 400);
    /* Numbers outside 0x4000-0x7FFF (RFC 8656's range and RFC 5766's rest). */
    send_bind(h, &c, 0x3FFF, "203.0.113.6", 7000);
    want_err(h, &c, UP_TURN_CHANNEL_BIND, 400);
    send_bind(h, &c, 0x8000, "203.0.113.6", 7000);
    want_err(h, &c, UP_TURN_CHANNEL_BIND, 400);
    send_bind(h, &c, 0x4FFF, "203.0.113.6", 7000);
    want_ok(h, &c, UP_TURN_CHANNEL_BIND);
    /* Missing attributes. */
    struct up_stun_builder b;
    cl_begin(&c, &b, UP_TURN_CHANNEL_BIND, UP_STUN_REQUEST);
    up_stun_add_u32(&b, UP_STUN_A_CHANNEL_NUMBER, 0x40020000u);
    cl_send(h, &c, &b, true);
    want_err(h, &c, UP_TURN_CHANNEL_BIND, 400);
    /* The same binding again refreshes it. */
    h->now = T0 + S(100);
    send_bind(h, &c, 0x4000, "203.0.113.5", 7000);
    want_ok(h, &c, UP_TURN_CHANNEL_BIND);
    assert_int_equal(up_turn_stats(h->t)->channels, 2);
    /* A peer of a family the allocation lacks: 443. */
    send_bind(h, &c, 0x4100, "2001:db8::5", 7000);
    want_err(h, &c, UP_TURN_CHANNEL_BIND, 443);
}

static void test_turn_channel_expiry_and_rebind_guard(void **state)
{
    struct h *h = *state;
    h->cfg.nonce_lifetime_s = 7200; /* one nonce for the whole script */
    start(h);
    struct cl c = client_udp("198.51.100.1", 40000, "alice", "alice-pw");
    cl_login(h, &c);
    struct up_stun_builder b;
    cl_begin(&c, &b, UP_TURN_ALLOCATE, UP_STUN_REQUEST);
    up_stun_add_u32(&b, UP_STUN_A_REQUESTED_TRANSPORT, 17u << 24);
    up_stun_add_u32(&b, UP_STUN_A_LIFETIME, 3600);
    cl_send(h, &c, &b, true);
    assert_int_equal(drain(h), 1);
    up_turn_port_result(h->t, h->now, 49152, false, true);
    assert_int_equal(drain(h), 1);
    send_bind(h, &c, 0x4000, "203.0.113.5", 7000);
    want_ok(h, &c, UP_TURN_CHANNEL_BIND);
    /* The earliest deadline: the permission the binding installed (300 s). */
    assert_int_equal(up_turn_next_timeout(h->t), T0 + S(300));
    up_turn_on_timer(h->t, T0 + S(300));
    want_none(h);
    assert_int_equal(up_turn_next_timeout(h->t), T0 + S(600));
    up_turn_on_timer(h->t, T0 + S(600));
    want_none(h);
    assert_int_equal(up_turn_stats(h->t)->channels, 0);
    assert_int_equal(up_turn_stats(h->t)->permissions, 0);
    /* Unbound: ChannelData is dropped. */
    h->now = T0 + S(600);
    static const uint8_t cd[] = {0x40, 0x00, 0x00, 0x01, 'x'};
    up_turn_on_client(h->t, h->now, &c.from, cd, sizeof cd);
    want_none(h);
    /* Reserved for 300 s: neither the number nor the peer can move. */
    assert_int_equal(up_turn_next_timeout(h->t), T0 + S(900));
    send_bind(h, &c, 0x4000, "203.0.113.9", 7000);
    want_err(h, &c, UP_TURN_CHANNEL_BIND, 400);
    send_bind(h, &c, 0x4001, "203.0.113.5", 7000);
    want_err(h, &c, UP_TURN_CHANNEL_BIND, 400);
    up_turn_on_timer(h->t, T0 + S(900));
    want_none(h);
    assert_int_equal(up_turn_next_timeout(h->t), T0 + S(3600));
    h->now = T0 + S(900);
    send_bind(h, &c, 0x4000, "203.0.113.9", 7000);
    want_ok(h, &c, UP_TURN_CHANNEL_BIND);
    send_bind(h, &c, 0x4001, "203.0.113.5", 7000);
    want_ok(h, &c, UP_TURN_CHANNEL_BIND);
    /* Rebinding the same pair within the guard revives it. */
    h->now = T0 + S(1500);
    up_turn_on_timer(h->t, h->now);
    want_none(h);
    assert_int_equal(up_turn_stats(h->t)->channels, 0);
    send_bind(h, &c, 0x4000, "203.0.113.9", 7000);
    want_ok(h, &c, UP_TURN_CHANNEL_BIND);
    assert_int_equal(up_turn_stats(h->t)->channels, 1);
    up_turn_on_client(h->t, h->now, &c.from, cd, sizeof cd);
    assert_int_equal(drain(h), 1);
    assert_int_equal(got[0].c.kind, UP_TURN_CMD_SEND_PEER);
}

/* ---- credentials ---- */

static void test_turn_wrong_password_401_nothing_relayed(void **state)
{
    struct h *h = *state;
    start(h);
    struct cl c = client_udp("198.51.100.1", 40000, "alice", "not-alices");
    cl_login(h, &c);
    send_allocate(h, &c, true);
    want_err(h, &c, UP_TURN_ALLOCATE, 401);
    assert_int_equal(got[0].m.mi, -1);
    assert_int_equal(up_turn_stats(h->t)->auth_failures, 1);
    /* Unknown user. */
    struct cl m = client_udp("198.51.100.1", 40000, "mallory", "x");
    cl_login(h, &m);
    send_allocate(h, &m, true);
    want_err(h, &m, UP_TURN_ALLOCATE, 401);
    assert_int_equal(up_turn_stats(h->t)->auth_failures, 2);
    /* A wrong REALM. */
    struct cl r = client_udp("198.51.100.1", 40000, "alice", "alice-pw");
    cl_login(h, &r);
    struct up_stun_builder b;
    cl_begin(&r, &b, UP_TURN_ALLOCATE, UP_STUN_REQUEST);
    up_stun_add_u32(&b, UP_STUN_A_REQUESTED_TRANSPORT, 17u << 24);
    up_stun_add(&b, UP_STUN_A_USERNAME, "alice", 5);
    up_stun_add(&b, UP_STUN_A_REALM, "other", 5);
    up_stun_add(&b, UP_STUN_A_NONCE, r.nonce, r.nonce_len);
    up_stun_add_integrity(&b, r.key, sizeof r.key);
    assert_int_equal(up_stun_end(&b, &r.len), UP_OK);
    up_turn_on_client(h->t, h->now, &r.from, r.buf, r.len);
    want_err(h, &r, UP_TURN_ALLOCATE, 401);
    assert_int_equal(up_turn_stats(h->t)->auth_failures, 3);
    assert_int_equal(up_turn_stats(h->t)->allocations, 0);
    /* A tampered message: the integrity fails. */
    send_allocate(h, &r, true);
    assert_int_equal(drain(h), 1);
    want_port(0, UP_TURN_CMD_OPEN_PORT, 49152, false);
    up_turn_port_result(h->t, h->now, 49152, false, true);
    assert_int_equal(drain(h), 1);
    send_permission(h, &r, "203.0.113.5");
    want_ok(h, &r, UP_TURN_CREATE_PERMISSION);
    struct up_stun_addr p = addr("203.0.113.6", 1);
    cl_begin(&r, &b, UP_TURN_CREATE_PERMISSION, UP_STUN_REQUEST);
    up_stun_add_xaddr(&b, UP_STUN_A_XOR_PEER_ADDRESS, &p);
    up_stun_add(&b, UP_STUN_A_USERNAME, r.user, strlen(r.user));
    up_stun_add(&b, UP_STUN_A_REALM, "underpass", 9);
    up_stun_add(&b, UP_STUN_A_NONCE, r.nonce, r.nonce_len);
    up_stun_add_integrity(&b, r.key, sizeof r.key);
    assert_int_equal(up_stun_end(&b, &r.len), UP_OK);
    r.buf[20 + 4 + 7] ^= 1; /* the peer's last address byte */
    up_turn_on_client(h->t, h->now, &r.from, r.buf, r.len);
    want_err(h, &r, UP_TURN_CREATE_PERMISSION, 401);
    assert_int_equal(up_turn_stats(h->t)->permissions, 1);
}

static void test_turn_stale_nonce_438(void **state)
{
    struct h *h = *state;
    start(h);
    struct cl c = client_udp("198.51.100.1", 40000, "alice", "alice-pw");
    cl_allocate(h, &c, 49152);
    h->now = T0 + S(599);
    send_refresh(h, &c, 600);
    want_ok(h, &c, UP_TURN_REFRESH);
    h->now = T0 + S(600);
    send_refresh(h, &c, 600);
    want_err(h, &c, UP_TURN_REFRESH, 438);
    assert_int_equal(got[0].m.mi, -1);
    assert_true(got[0].c.len <= c.len + 100);
    cl_learn(&c, 0);
    send_refresh(h, &c, 600);
    want_ok(h, &c, UP_TURN_REFRESH);
    /* A nonce is bound to the client's address. */
    struct cl o = client_udp("198.51.100.1", 40001, "alice", "alice-pw");
    memcpy(o.nonce, c.nonce, c.nonce_len);
    o.nonce_len = c.nonce_len;
    memcpy(o.key, c.key, sizeof o.key);
    send_allocate(h, &o, true);
    want_err(h, &o, UP_TURN_ALLOCATE, 438);
    /* A forged one (a later expiry, the same MAC). */
    o.nonce[0] = 'f';
    send_allocate(h, &o, true);
    want_err(h, &o, UP_TURN_ALLOCATE, 438);
    assert_int_equal(up_turn_stats(h->t)->auth_failures, 0);
}

static void test_turn_rest_api_credentials(void **state)
{
    struct h *h = *state;
    static const uint8_t secret[] = "s3cret";
    h->cfg.auth_secret = secret;
    h->cfg.auth_secret_len = 6;
    start(h);
    /* base64(HMAC-SHA1("s3cret", "1700003600:alice")), computed with Python's hmac. */
    struct cl c =
        client_udp("198.51.100.1", 40000, "1700003600:alice", "YAFdW/YDZewZsR1QSgUk2IrfbRI=");
    cl_allocate(h, &c, 49152);
    want_signed(0, &c);
    /* Wrong password. */
    struct cl w =
        client_udp("198.51.100.2", 40000, "1700003600:alice", "YAFdW/YDZewZsR1QSgUk2IrfbRJ=");
    cl_login(h, &w);
    send_allocate(h, &w, true);
    want_err(h, &w, UP_TURN_ALLOCATE, 401);
    /* Expired (the expiry is in seconds, now_ms/1000 past it). */
    h->now = S(1700003601);
    struct cl e =
        client_udp("198.51.100.3", 40000, "1700003600:alice", "YAFdW/YDZewZsR1QSgUk2IrfbRI=");
    cl_login(h, &e);
    send_allocate(h, &e, true);
    want_err(h, &e, UP_TURN_ALLOCATE, 401);
    assert_int_equal(up_turn_stats(h->t)->auth_failures, 2);
    /* The allocation made before expiry lives on (refreshing it needs a new username). */
    assert_int_equal(up_turn_stats(h->t)->allocations, 1);
}

static void test_turn_firezone_credentials(void **state)
{
    struct h *h = *state;
    /* Firezone's generate_password_test_vector_elixir (rust/relay/proto/src/auth.rs). */
    static const char secret[] = "1cab293a-4032-46f4-862a-40e5d174b0d2";
    h->cfg.auth_secret = (const uint8_t *)secret;
    h->cfg.auth_secret_len = strlen(secret);
    start(h);
    h->now = S(1685984278 - 1000);
    struct cl c = client_udp("198.51.100.1", 40000, "1685984278:uvdgKvS9GXYZ_vmv",
                             "6xUIoZ+QvxKhRasLifwfRkMXl+ETLJUsFkHlXjlHAkg");
    cl_allocate(h, &c, 49152);
    want_signed(0, &c);
    /* Firezone's first vector, with its other secret: a wrong password here. */
    struct cl w = client_udp("198.51.100.2", 40000, "1892160000:n23JJ2wKKtt30oXi",
                             "00hqldgk5xLeKKOB+xls9mHMVtgqzie9DulfgQwMv68");
    cl_login(h, &w);
    send_allocate(h, &w, true);
    want_err(h, &w, UP_TURN_ALLOCATE, 401);
    /* Expired. */
    h->now = S(1685984279);
    struct cl e = client_udp("198.51.100.3", 40000, "1685984278:uvdgKvS9GXYZ_vmv",
                             "6xUIoZ+QvxKhRasLifwfRkMXl+ETLJUsFkHlXjlHAkg");
    cl_login(h, &e);
    send_allocate(h, &e, true);
    want_err(h, &e, UP_TURN_ALLOCATE, 401);
    /* Not a secret-based username at all. */
    struct cl f = client_udp("198.51.100.4", 40000, "foobar", "x");
    cl_login(h, &f);
    send_allocate(h, &f, true);
    want_err(h, &f, UP_TURN_ALLOCATE, 401);
    assert_int_equal(up_turn_stats(h->t)->auth_failures, 3);
    /* The first vector with its own secret. */
    up_turn_free(h->t);
    static const char secret1[] =
        "4c98bf59c99b3e467ecd7cf9d6b3e5279645fca59be67bc5bb4af3cf653761ab";
    h->cfg.auth_secret = (const uint8_t *)secret1;
    h->cfg.auth_secret_len = strlen(secret1);
    start(h);
    struct cl v = client_udp("198.51.100.2", 40000, "1892160000:n23JJ2wKKtt30oXi",
                             "00hqldgk5xLeKKOB+xls9mHMVtgqzie9DulfgQwMv68");
    cl_allocate(h, &v, 49152);
}

static void test_turn_wrong_user_441(void **state)
{
    struct h *h = *state;
    start(h);
    struct cl c = client_udp("198.51.100.1", 40000, "alice", "alice-pw");
    cl_allocate(h, &c, 49152);
    struct cl m = client_udp("198.51.100.1", 40000, "bob", "bob-pw"); /* same 5-tuple */
    cl_login(h, &m);
    send_refresh(h, &m, 0);
    want_err(h, &m, UP_TURN_REFRESH, 441);
    want_signed(0, &m);
    send_permission(h, &m, "203.0.113.5");
    want_err(h, &m, UP_TURN_CREATE_PERMISSION, 441);
    send_bind(h, &m, 0x4000, "203.0.113.5", 7000);
    want_err(h, &m, UP_TURN_CHANNEL_BIND, 441);
    send_allocate(h, &m, true);
    want_err(h, &m, UP_TURN_ALLOCATE, 437);
    assert_int_equal(up_turn_stats(h->t)->allocations, 1);
    assert_int_equal(up_turn_stats(h->t)->permissions, 0);
}

static void test_turn_sha256_integrity(void **state)
{
    struct h *h = *state;
    start(h);
    struct cl c = client_udp("198.51.100.1", 40000, "alice", "alice-pw");
    c.sha256 = true;
    c.fp = true;
    cl_allocate(h, &c, 49152);
    assert_true(got[0].m.mi256 >= 0);
    assert_int_equal(got[0].m.mi, -1);
    assert_true(got[0].m.fp >= 0);
    want_signed(0, &c); /* checks the SHA-256 MAC */
    assert_int_equal(got[0].m.attrs[got[0].m.mi256].len, 32);
    send_refresh(h, &c, 600);
    want_ok(h, &c, UP_TURN_REFRESH);
    assert_true(got[0].m.mi256 >= 0);
    want_signed(0, &c);
}

/* ---- TCP ---- */

static void test_turn_tcp_conn_closed_frees(void **state)
{
    struct h *h = *state;
    start(h);
    struct cl c = client_udp("198.51.100.1", 40000, "alice", "alice-pw");
    c.from.proto = UP_TURN_TLS;
    c.from.conn = 42;
    cl_allocate(h, &c, 49152);
    assert_int_equal(got[0].c.client.conn, 42);
    assert_int_equal(got[0].c.client.proto, UP_TURN_TLS);
    up_turn_conn_closed(h->t, h->now, 41);
    want_none(h);
    up_turn_conn_closed(h->t, h->now, 42);
    assert_int_equal(drain(h), 1);
    want_port(0, UP_TURN_CMD_CLOSE_PORT, 49152, false);
    assert_int_equal(up_turn_stats(h->t)->allocations, 0);
    assert_int_equal(up_turn_next_timeout(h->t), UINT64_MAX);
    /* Closed while its port is being opened: the port is closed once it is bound. */
    struct cl d = client_udp("198.51.100.1", 40001, "alice", "alice-pw");
    d.from.proto = UP_TURN_TCP;
    d.from.conn = 43;
    cl_login(h, &d);
    send_allocate(h, &d, true);
    assert_int_equal(drain(h), 1);
    want_port(0, UP_TURN_CMD_OPEN_PORT, 49153, false);
    up_turn_conn_closed(h->t, h->now, 43);
    want_none(h);
    up_turn_port_result(h->t, h->now, 49153, false, true);
    assert_int_equal(drain(h), 1);
    want_port(0, UP_TURN_CMD_CLOSE_PORT, 49153, false);
    /* ...or, had the bind failed, nothing. */
    d.from.conn = 44;
    send_allocate(h, &d, true);
    assert_int_equal(drain(h), 1);
    want_port(0, UP_TURN_CMD_OPEN_PORT, 49154, false);
    up_turn_conn_closed(h->t, h->now, 44);
    up_turn_port_result(h->t, h->now, 49154, false, false);
    want_none(h);
    assert_int_equal(up_turn_stats(h->t)->allocations, 0);
}

/* ---- limits ---- */

static void test_turn_unauthenticated_rate_limit(void **state)
{
    struct h *h = *state;
    h->cfg.unauth_budget = 3;
    start(h);
    struct cl c = client_udp("198.51.100.1", 40000, "alice", "alice-pw");
    struct up_stun_builder b;
    for (int i = 0; i < 3; i++) {
        cl_begin(&c, &b, UP_STUN_BINDING, UP_STUN_REQUEST);
        cl_send(h, &c, &b, false);
        assert_int_equal(drain(h), 1);
    }
    cl_begin(&c, &b, UP_STUN_BINDING, UP_STUN_REQUEST);
    cl_send(h, &c, &b, false);
    want_none(h);
    /* 401s count too; the source's port does not matter. */
    struct cl o = client_udp("198.51.100.1", 40001, "alice", "alice-pw");
    send_allocate(h, &o, false);
    want_none(h);
    assert_int_equal(up_turn_stats(h->t)->dropped, 2);
    /* Another source has its own budget. */
    struct cl d = client_udp("198.51.100.2", 40000, "alice", "alice-pw");
    cl_login(h, &d);
    /* Authenticated requests are not limited. */
    for (int i = 0; i < 5; i++) {
        send_allocate(h, &d, true);
        assert_int_equal(drain(h), 1);
    }
    /* The next second: a fresh budget. */
    h->now += 1000;
    cl_begin(&c, &b, UP_STUN_BINDING, UP_STUN_REQUEST);
    cl_send(h, &c, &b, false);
    assert_int_equal(drain(h), 1);
}

static void test_turn_rate_limit_table_is_bounded(void **state)
{
    struct h *h = *state;
    h->cfg.unauth_budget = 1;
    start(h);
    /* 5000 sources in one second: each answered once; the table never grows. */
    size_t answered = 0;
    for (uint32_t i = 0; i < 5000; i++) {
        char ip[32];
        snprintf(ip, sizeof ip, "198.18.%u.%u", i / 250, i % 250 + 1);
        struct cl c = client_udp(ip, 40000, "alice", "alice-pw");
        struct up_stun_builder b;
        cl_begin(&c, &b, UP_STUN_BINDING, UP_STUN_REQUEST);
        cl_send(h, &c, &b, false);
        answered += drain(h);
        if (i == 4999) {
            cl_begin(&c, &b, UP_STUN_BINDING, UP_STUN_REQUEST);
            cl_send(h, &c, &b, false);
            want_none(h); /* the latest source is still counted */
        }
    }
    assert_int_equal(answered, 5000);
}

static void test_turn_amplification_bound(void **state)
{
    struct h *h = *state;
    start(h);
    /* The smallest requests: a bare 20-byte header. */
    struct cl c = client_udp("2001:db8:1::7", 40000, "alice", "alice-pw");
    static const uint16_t methods[] = {UP_STUN_BINDING,      UP_TURN_ALLOCATE,
                                       UP_TURN_REFRESH,      UP_TURN_CREATE_PERMISSION,
                                       UP_TURN_CHANNEL_BIND, 0x0FF};
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        struct up_stun_builder b;
        cl_begin(&c, &b, methods[i], UP_STUN_REQUEST);
        cl_send(h, &c, &b, false);
        assert_int_equal(c.len, 20);
        assert_int_equal(drain(h), 1);
        assert_true(got[0].c.len <= c.len + 100);
    }
}

static void test_turn_command_queue_bounded_on_timer(void **state)
{
    struct h *h = *state;
    h->cfg.user_quota = 0;
    h->cfg.unauth_budget = 0;
    start(h);
    /* 300 allocations expiring at once: on_timer stops when the queue is full and says so. */
    for (uint32_t i = 0; i < 300; i++) {
        struct cl c = client_udp("198.51.100.1", (uint16_t)(10000 + i), "alice", "alice-pw");
        cl_allocate(h, &c, (uint16_t)(49152 + i));
    }
    assert_int_equal(up_turn_stats(h->t)->allocations, 300);
    uint64_t at = T0 + S(600);
    up_turn_on_timer(h->t, at);
    size_t first = drain(h);
    assert_true(first > 0 && first < 300);
    assert_true(up_turn_next_timeout(h->t) <= at);
    up_turn_on_timer(h->t, at);
    size_t second = drain(h);
    assert_int_equal(first + second, 300);
    for (size_t i = 0; i < second; i++) {
        assert_int_equal(got[i].c.kind, UP_TURN_CMD_CLOSE_PORT);
    }
    assert_int_equal(up_turn_next_timeout(h->t), UINT64_MAX);
    assert_int_equal(up_turn_stats(h->t)->allocations, 0);
}

static void test_turn_undrained_sends_dropped(void **state)
{
    struct h *h = *state;
    start(h);
    struct cl c = client_udp("198.51.100.1", 40000, "alice", "alice-pw");
    struct up_stun_builder b;
    cl_begin(&c, &b, UP_STUN_BINDING, UP_STUN_REQUEST);
    cl_send(h, &c, &b, false);
    /* Not drained: the next input drops the stale answer (its bytes are reused). */
    cl_begin(&c, &b, UP_STUN_BINDING, UP_STUN_REQUEST);
    cl_send(h, &c, &b, false);
    assert_int_equal(drain(h), 1);
    assert_memory_equal(got[0].m.tid, c.tid, 12);
    assert_int_equal(up_turn_stats(h->t)->dropped, 1);
}

static void test_turn_ten_thousand_allocations(void **state)
{
    struct h *h = *state;
    h->cfg.user_quota = 0;
    h->cfg.unauth_budget = 0;
    start(h);
    enum { N = 10000 };
    for (uint32_t i = 0; i < N; i++) {
        char ip[32];
        snprintf(ip, sizeof ip, "198.18.%u.%u", i / 200, i % 200 + 1);
        struct cl c = client_udp(ip, 40000, "alice", "alice-pw");
        /* Lifetimes 600..3599 s, in an order unrelated to creation. */
        uint32_t life = 600 + (i * 7919u) % 3000;
        cl_login(h, &c);
        struct up_stun_builder b;
        cl_begin(&c, &b, UP_TURN_ALLOCATE, UP_STUN_REQUEST);
        up_stun_add_u32(&b, UP_STUN_A_REQUESTED_TRANSPORT, 17u << 24);
        up_stun_add_u32(&b, UP_STUN_A_LIFETIME, life);
        cl_send(h, &c, &b, true);
        assert_int_equal(drain(h), 1);
        assert_int_equal(got[0].c.kind, UP_TURN_CMD_OPEN_PORT);
        up_turn_port_result(h->t, h->now, got[0].c.port, false, true);
        assert_int_equal(drain(h), 1);
        send_permission(h, &c, "203.0.113.5");
        want_ok(h, &c, UP_TURN_CREATE_PERMISSION);
    }
    assert_int_equal(up_turn_stats(h->t)->allocations, N);
    /* Walk time forward: every deadline is met in order, every port closed once. */
    uint64_t now = T0, closed = 0;
    while (up_turn_next_timeout(h->t) != UINT64_MAX) {
        uint64_t next = up_turn_next_timeout(h->t);
        assert_true(next >= now);
        now = next;
        up_turn_on_timer(h->t, now);
        closed += drain(h);
    }
    assert_int_equal(closed, N);
    assert_int_equal(up_turn_stats(h->t)->allocations, 0);
    assert_int_equal(up_turn_stats(h->t)->permissions, 0);
    assert_true(now <= T0 + S(3600));
}

static void test_turn_permission_and_channel_limits(void **state)
{
    struct h *h = *state;
    start(h);
    struct cl c = client_udp("198.51.100.1", 40000, "alice", "alice-pw");
    cl_allocate(h, &c, 49152);
    char ip[32];
    /* UP_TURN_MAX_PERMISSIONS peer IPs: the last one still fits, one more is 508. */
    for (int i = 0; i < UP_TURN_MAX_PERMISSIONS; i++) {
        snprintf(ip, sizeof ip, "203.0.%d.%d", 113 + i / 200, i % 200 + 1);
        send_permission(h, &c, ip);
        want_ok(h, &c, UP_TURN_CREATE_PERMISSION);
    }
    send_permission(h, &c, "198.51.100.200");
    want_err(h, &c, UP_TURN_CREATE_PERMISSION, 508);
    send_permission(h, &c, "203.0.113.1"); /* refreshing one is fine */
    want_ok(h, &c, UP_TURN_CREATE_PERMISSION);
    assert_int_equal(up_turn_stats(h->t)->permissions, UP_TURN_MAX_PERMISSIONS);
    /* UP_TURN_MAX_CHANNELS channels, to peers already permitted. */
    for (int i = 0; i < UP_TURN_MAX_CHANNELS; i++) {
        snprintf(ip, sizeof ip, "203.0.%d.%d", 113 + i / 200, i % 200 + 1);
        send_bind(h, &c, (uint16_t)(0x4000 + i), ip, 7000);
        want_ok(h, &c, UP_TURN_CHANNEL_BIND);
    }
    send_bind(h, &c, 0x4FFF, "203.0.113.1", 7001);
    want_err(h, &c, UP_TURN_CHANNEL_BIND, 508);
    assert_int_equal(up_turn_stats(h->t)->channels, UP_TURN_MAX_CHANNELS);
    /* Every channel relays: the lookups by number and by peer agree. */
    for (int i = 0; i < UP_TURN_MAX_CHANNELS; i += 37) {
        uint8_t cd[5] = {0x40, (uint8_t)i, 0x00, 0x01, 'x'};
        up_turn_on_client(h->t, h->now, &c.from, cd, sizeof cd);
        assert_int_equal(drain(h), 1);
        snprintf(ip, sizeof ip, "203.0.%d.%d", 113 + i / 200, i % 200 + 1);
        struct up_stun_addr want = addr(ip, 7000);
        assert_memory_equal(got[0].c.peer.ip, want.ip, 16);
        uint8_t *d = peer_send(h, 49152, false, ip, 7000, "y");
        assert_int_equal(drain(h), 1);
        assert_ptr_equal(got[0].c.data, d - 4);
        assert_int_equal(up_rd_u16be(got[0].c.data), 0x4000 + i);
    }
    /* Freeing the allocation takes everything with it. */
    send_refresh(h, &c, 0);
    assert_int_equal(drain(h), 2);
    assert_int_equal(up_turn_stats(h->t)->permissions, 0);
    assert_int_equal(up_turn_stats(h->t)->channels, 0);
}

static void test_turn_nearly_full_port_range(void **state)
{
    struct h *h = *state;
    h->cfg.min_port = 50000;
    h->cfg.max_port = 50019;
    h->cfg.user_quota = 0;
    start(h);
    struct cl c[20];
    for (int i = 0; i < 20; i++) {
        c[i] = client_udp("198.51.100.1", (uint16_t)(40000 + i), "alice", "alice-pw");
        cl_allocate(h, &c[i], (uint16_t)(50000 + i));
    }
    send_refresh(h, &c[19], 0);
    assert_int_equal(drain(h), 2);
    /* The random draws all hit taken ports; the scan finds the free one. */
    struct cl d = client_udp("198.51.100.2", 40000, "bob", "bob-pw");
    cl_allocate(h, &d, 50019);
    /* Full again: 508 without an OPEN_PORT. */
    struct cl e = client_udp("198.51.100.3", 40000, "bob", "bob-pw");
    cl_login(h, &e);
    send_allocate(h, &e, true);
    want_err(h, &e, UP_TURN_ALLOCATE, 508);
}

static void test_turn_additional_family_must_be_v6(void **state)
{
    struct h *h = *state;
    start(h);
    struct cl c = client_udp("198.51.100.1", 40000, "alice", "alice-pw");
    cl_login(h, &c);
    struct up_stun_builder b;
    cl_begin(&c, &b, UP_TURN_ALLOCATE, UP_STUN_REQUEST);
    up_stun_add_u32(&b, UP_STUN_A_REQUESTED_TRANSPORT, 17u << 24);
    up_stun_add_u32(&b, UP_STUN_A_ADDITIONAL_ADDRESS_FAMILY, 0x01u << 24);
    cl_send(h, &c, &b, true);
    want_err(h, &c, UP_TURN_ALLOCATE, 400);
}

static void test_turn_free_with_port_outstanding(void **state)
{
    struct h *h = *state;
    start(h);
    struct cl c = client_udp("198.51.100.1", 40000, "alice", "alice-pw");
    c.from.proto = UP_TURN_TCP;
    c.from.conn = 9;
    cl_login(h, &c);
    send_allocate(h, &c, true);
    assert_int_equal(drain(h), 1);
    up_turn_conn_closed(h->t, h->now, 9); /* dead, waiting for its port result */
    want_none(h);
    struct cl d = client_udp("198.51.100.2", 40000, "bob", "bob-pw");
    cl_login(h, &d);
    send_allocate(h, &d, true); /* pending */
    assert_int_equal(drain(h), 1);
    /* teardown frees both (ASan checks for leaks) */
}

static void test_turn_bad_config_refused(void **state)
{
    (void)state;
    struct up_turn_cfg cfg;
    cfg_init(&cfg);
    cfg.min_port = 0;
    assert_null(up_turn_new(&cfg));
    cfg_init(&cfg);
    cfg.min_port = 2000;
    cfg.max_port = 1999;
    assert_null(up_turn_new(&cfg));
    cfg_init(&cfg);
    cfg.rand = NULL;
    assert_null(up_turn_new(&cfg));
    cfg_init(&cfg);
    cfg.software = "0123456789012345678901234567890123456789012345678901234567890123456789";
    assert_null(up_turn_new(&cfg));
    /* The defaults (with their CSPRNG) make a working server. */
    up_turn_cfg_defaults(&cfg);
    struct up_turn *t = up_turn_new(&cfg);
    assert_non_null(t);
    assert_int_equal(up_turn_next_timeout(t), UINT64_MAX);
    up_turn_free(t);
    up_turn_free(NULL);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_turn_binding_v4),
        T(test_turn_binding_v6),
        T(test_turn_binding_source_port_zero_ignored),
        T(test_turn_malformed_and_stray_messages_dropped),
        T(test_turn_unknown_method_400_and_unknown_attribute_420),
        T(test_turn_allocate_even_port),
        T(test_turn_allocate_unauthenticated_401),
        T(test_turn_allocate_success),
        T(test_turn_allocate_lifetime_clamped),
        T(test_turn_allocate_port_failure_tries_another),
        T(test_turn_allocate_mismatch_437_and_retransmission),
        T(test_turn_allocate_transport_442_and_400),
        T(test_turn_allocate_family_440),
        T(test_turn_allocate_ipv6_only),
        T(test_turn_allocate_dual_stack),
        T(test_turn_allocate_dual_stack_without_v6_relay),
        T(test_turn_allocate_quota_486),
        T(test_turn_allocate_capacity_508),
        T(test_turn_allocate_max_allocations_508),
        T(test_turn_refresh_extends),
        T(test_turn_refresh_zero_frees),
        T(test_turn_expiry_on_timer),
        T(test_turn_permission_and_data_indication_exact),
        T(test_turn_permission_several_peers_and_400),
        T(test_turn_refused_peers_403_unless_allowed),
        T(test_turn_send_indication),
        T(test_turn_channel_data_both_ways),
        T(test_turn_channel_data_tcp_padded),
        T(test_turn_channel_bind_rules_400),
        T(test_turn_channel_expiry_and_rebind_guard),
        T(test_turn_wrong_password_401_nothing_relayed),
        T(test_turn_stale_nonce_438),
        T(test_turn_rest_api_credentials),
        T(test_turn_firezone_credentials),
        T(test_turn_wrong_user_441),
        T(test_turn_sha256_integrity),
        T(test_turn_tcp_conn_closed_frees),
        T(test_turn_unauthenticated_rate_limit),
        T(test_turn_rate_limit_table_is_bounded),
        T(test_turn_amplification_bound),
        T(test_turn_command_queue_bounded_on_timer),
        T(test_turn_undrained_sends_dropped),
        T(test_turn_ten_thousand_allocations),
        T(test_turn_permission_and_channel_limits),
        T(test_turn_nearly_full_port_range),
        T(test_turn_additional_family_must_be_v6),
        T(test_turn_free_with_port_outstanding),
        T(test_turn_bad_config_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
