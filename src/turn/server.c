/* The I/O shell of `underpass turn` (see server.h). A straight line: read a datagram or a
 * stream frame, hand it to the core, carry out the commands it queued, re-arm the timer. Peer
 * datagrams are read UP_TURN_HEADROOM bytes into their buffer so the core frames them for the
 * client in place; client data goes to the peer from the buffer it arrived in. */
#include "turn/server.h"

#include <malloc.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "base/log.h"
#include "net/addr.h"
#include "net/sock.h"
#include "net/tls.h"
#include "net/udp.h"

#define RX_BATCH UP_UDP_BATCH        /* datagrams per read */
#define RX_SLOT 4096                 /* bytes per datagram slot (larger ones are dropped) */
#define TAILROOM 4                   /* writable bytes after a peer datagram (padding) */
#define CONN_IN_MAX (65536u + 64u)   /* one stream frame at most: 16-bit length + header */
#define CONN_OUT_MAX (1024u * 1024u) /* a slow TCP client loses relayed data beyond this */
#define CONN_HASH 256
#define TRIM_AFTER 1000 /* allocations freed at once before memory is handed back */

struct rport {
    struct up_turn_server *srv;
    struct up_udp udp;
    uint16_t port;
    bool v6;
};

enum tc_state { TC_SNIFF, TC_TLS, TC_OPEN };

struct tconn {
    struct up_turn_server *srv;
    struct up_sock *sock;
    uint64_t id;
    enum tc_state state;
    struct up_turn_client client;
    struct up_buf in, out;
    bool closing;
    bool dirty;      /* on srv->dirty: bytes queued, to be written at the end of this turn */
    size_t tls_left; /* TLS: bytes of the message at the front of out still to write */
    struct tconn *hnext;
    struct tconn *dnext;
};

struct up_turn_server {
    uv_loop_t *loop;
    struct up_turn_server_cfg cfg;
    struct up_turn *core;
    struct ssl_ctx_st *tls;
    char addr[80];
    struct up_stun_addr local;
    struct up_udp udp;        /* the UDP listener; fd -1 until bound */
    struct up_listener lsock; /* TCP listener */
    uv_timer_t timer;
    uint64_t timer_due;  /* wall-clock ms the timer is armed for, UINT64_MAX when idle */
    uint64_t alloc_peak; /* most allocations seen since memory was last handed back */
    struct rport **ports4, **ports6; /* indexed by port - min_port */
    size_t nports;
    struct tconn *conns[CONN_HASH];
    struct tconn *dirty; /* connections with output queued during this callback */
    uint64_t next_conn;
    bool stopping;
    struct up_udp_batch rxb; /* over rx */
    /* Receive slots: headroom, datagram, tailroom. */
    uint8_t rx[RX_BATCH][UP_TURN_HEADROOM + RX_SLOT + TAILROOM];
};

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void to_addr(const struct sockaddr_storage *ss, struct up_stun_addr *a)
{
    memset(a, 0, sizeof *a);
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;
        a->ip[10] = a->ip[11] = 0xff;
        memcpy(a->ip + 12, &s4->sin_addr, 4);
        a->port = ntohs(s4->sin_port);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
        memcpy(a->ip, &s6->sin6_addr, 16);
        a->port = ntohs(s6->sin6_port);
    }
}

static bool is_v4(const uint8_t ip[16])
{
    static const uint8_t pfx[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return memcmp(ip, pfx, 12) == 0;
}

/* For a socket of family v6 (or v4): the sockaddr of a. */
static socklen_t to_sa(const struct up_stun_addr *a, bool v6, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    if (!v6 && is_v4(a->ip)) {
        struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
        s4->sin_family = AF_INET;
        memcpy(&s4->sin_addr, a->ip + 12, 4);
        s4->sin_port = htons(a->port);
        return sizeof *s4;
    }
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
    s6->sin6_family = AF_INET6;
    memcpy(&s6->sin6_addr, a->ip, 16);
    s6->sin6_port = htons(a->port);
    return sizeof *s6;
}

/* ---- commands ---- */

static void conn_close(struct tconn *c);
static void conn_flush(struct tconn *c);
static void flush_dirty(struct up_turn_server *s);
static void open_port(struct up_turn_server *s, uint16_t port, bool v6, uint64_t now);
static void close_port(struct up_turn_server *s, uint16_t port, bool v6);
static void timer_arm(struct up_turn_server *s, uint64_t now);

static struct tconn *conn_find(struct up_turn_server *s, uint64_t id)
{
    for (struct tconn *c = s->conns[id % CONN_HASH]; c; c = c->hnext) {
        if (c->id == id) {
            return c;
        }
    }
    return NULL;
}

static struct rport *port_get(struct up_turn_server *s, uint16_t port, bool v6)
{
    struct rport **tab = v6 ? s->ports6 : s->ports4;
    uint16_t min = s->cfg.core.min_port;
    if (!tab || port < min || (size_t)(port - min) >= s->nports) {
        return NULL;
    }
    return tab[port - min];
}

static void send_udp(struct up_udp *u, const uint8_t *p, size_t n, const struct up_stun_addr *to,
                     bool v6)
{
    struct sockaddr_storage ss;
    socklen_t sl = to_sa(to, v6, &ss);
    /* UDP: a full socket buffer or an unreachable peer loses the datagram, as on the wire. */
    (void)up_udp_send(u, p, n, (struct sockaddr *)&ss, sl);
}

static void drain(struct up_turn_server *s, uint64_t now)
{
    struct up_turn_cmd cmd;
    bool listen_v6 = !is_v4(s->local.ip);
    while (up_turn_next_cmd(s->core, &cmd)) {
        switch (cmd.kind) {
        case UP_TURN_CMD_SEND_CLIENT:
            if (cmd.client.proto == UP_TURN_UDP) {
                send_udp(&s->udp, cmd.data, cmd.len, &cmd.client.addr, listen_v6);
            } else {
                struct tconn *c = conn_find(s, cmd.client.conn);
                /* Written once at the end of this callback, however many messages it
                 * queued: one write for a batch of relayed datagrams. */
                if (c && !c->closing &&
                    up_buf_append(&c->out, cmd.data, cmd.len, CONN_OUT_MAX) == 0 && !c->dirty) {
                    c->dirty = true;
                    c->dnext = s->dirty;
                    s->dirty = c;
                }
            }
            break;
        case UP_TURN_CMD_SEND_PEER: {
            struct rport *rp = port_get(s, cmd.port, cmd.v6);
            if (rp) {
                send_udp(&rp->udp, cmd.data, cmd.len, &cmd.peer, cmd.v6);
            }
            break;
        }
        case UP_TURN_CMD_OPEN_PORT:
            open_port(s, cmd.port, cmd.v6, now);
            break;
        case UP_TURN_CMD_CLOSE_PORT:
            close_port(s, cmd.port, cmd.v6);
            break;
        case UP_TURN_CMD_CLOSE_CONN: {
            struct tconn *c = conn_find(s, cmd.client.conn);
            if (c) {
                conn_close(c);
            }
            break;
        }
        }
    }
    timer_arm(s, now);
}

/* ---- timer ---- */

static void on_timer(uv_timer_t *t)
{
    struct up_turn_server *s = t->data;
    uint64_t now = wall_ms();
    s->timer_due = UINT64_MAX;
    uint64_t before = up_turn_stats(s->core)->allocations;
    if (before > s->alloc_peak) {
        s->alloc_peak = before;
    }
    up_turn_on_timer(s->core, now);
    drain(s, now);
    uint64_t after = up_turn_stats(s->core)->allocations;
    if (s->alloc_peak >= after + TRIM_AFTER && after <= s->alloc_peak / 2) {
        /* Many allocations expired since the peak: give their memory back to the system, not
         * only to the allocator (glibc keeps freed small blocks otherwise). */
        s->alloc_peak = after;
        malloc_trim(0);
    }
    flush_dirty(s);
}

static void timer_arm(struct up_turn_server *s, uint64_t now)
{
    if (s->stopping) {
        return;
    }
    uint64_t due = up_turn_next_timeout(s->core);
    if (due == UINT64_MAX || due >= s->timer_due) {
        return;
    }
    s->timer_due = due;
    uv_timer_start(&s->timer, on_timer, due > now ? due - now : 0, 0);
}

/* ---- relay ports ---- */

static void port_read(struct rport *rp)
{
    struct up_turn_server *s = rp->srv;
    for (int round = 0; round < 4; round++) {
        struct up_udp_batch *b = &s->rxb;
        int n = up_udp_recv(&rp->udp, b);
        if (n <= 0) {
            return;
        }
        uint64_t now = wall_ms();
        uint16_t port = rp->port;
        bool v6 = rp->v6;
        for (int i = 0; i < n; i++) {
            if (up_udp_batch_truncated(b, i)) {
                continue;
            }
            struct up_stun_addr peer;
            to_addr(up_udp_batch_from(b, i), &peer);
            up_turn_on_peer(s->core, now, port, v6, &peer, up_udp_batch_data(b, i),
                            up_udp_batch_len(b, i));
            drain(s, now); /* may close this very port: do not touch rp after the last one */
            if (!port_get(s, port, v6)) {
                return;
            }
        }
        if (n < RX_BATCH) {
            return;
        }
    }
}

static void on_port(struct up_udp *u)
{
    struct rport *rp = u->ud;
    struct up_turn_server *s = rp->srv;
    port_read(rp); /* may close rp (it is freed from the loop, later) */
    flush_dirty(s);
}

static void rport_closed(struct up_udp *u)
{
    up_free(u->ud);
}

static void open_port(struct up_turn_server *s, uint16_t port, bool v6, uint64_t now)
{
    const struct up_stun_addr *ip = v6 ? &s->cfg.core.relay6 : &s->cfg.core.relay4;
    struct rport **tab = v6 ? s->ports6 : s->ports4;
    bool ok = false;
    if (tab && !port_get(s, port, v6) && port >= s->cfg.core.min_port &&
        port <= s->cfg.core.max_port) {
        struct up_stun_addr a = *ip;
        a.port = port;
        struct sockaddr_storage ss;
        socklen_t sl = to_sa(&a, v6, &ss);
        struct rport *rp = up_calloc(1, sizeof *rp);
        if (!rp) {
            UP_LOGD("relay port %u/%s: out of memory", port, v6 ? "v6" : "v4");
        } else if (up_udp_bind(&rp->udp, (struct sockaddr *)&ss, sl) < 0) {
            UP_LOGD("relay port %u/%s: %s", port, v6 ? "v6" : "v4", up_udp_strerror(&rp->udp));
            up_free(rp);
        } else if (up_udp_start(&rp->udp, s->loop, on_port, rp) < 0) {
            UP_LOGD("relay port %u/%s: %s", port, v6 ? "v6" : "v4", up_udp_strerror(&rp->udp));
            up_udp_close(&rp->udp, rport_closed); /* rport_closed frees rp once it is closed */
        } else {
            rp->srv = s;
            rp->port = port;
            rp->v6 = v6;
            tab[port - s->cfg.core.min_port] = rp;
            ok = true;
        }
    }
    up_turn_port_result(s->core, now, port, v6, ok);
}

static void close_port(struct up_turn_server *s, uint16_t port, bool v6)
{
    struct rport *rp = port_get(s, port, v6);
    if (!rp) {
        return;
    }
    (v6 ? s->ports6 : s->ports4)[port - s->cfg.core.min_port] = NULL;
    up_udp_close(&rp->udp, rport_closed);
}

/* ---- UDP clients ---- */

static void udp_read(struct up_turn_server *s)
{
    for (int round = 0; round < 4; round++) {
        struct up_udp_batch *b = &s->rxb;
        int n = up_udp_recv(&s->udp, b);
        if (n <= 0) {
            return;
        }
        uint64_t now = wall_ms();
        for (int i = 0; i < n; i++) {
            if (up_udp_batch_truncated(b, i)) {
                continue;
            }
            struct up_turn_client cl = {.local = s->local, .proto = UP_TURN_UDP};
            to_addr(up_udp_batch_from(b, i), &cl.addr);
            up_turn_on_client(s->core, now, &cl, up_udp_batch_data(b, i), up_udp_batch_len(b, i));
            drain(s, now);
        }
        if (n < RX_BATCH) {
            return;
        }
    }
}

static void on_udp(struct up_udp *u)
{
    struct up_turn_server *s = u->ud;
    udp_read(s);
    flush_dirty(s);
}

/* ---- TCP and TLS clients ---- */

static void conn_sock_closed(struct up_sock *sk)
{
    struct tconn *c = sk->ud;
    up_free(sk);
    up_buf_fini(&c->in);
    up_buf_fini(&c->out);
    up_free(c);
}

static void conn_close(struct tconn *c)
{
    struct up_turn_server *s = c->srv;
    if (c->closing) {
        return;
    }
    c->closing = true;
    struct tconn **pp = &s->conns[c->id % CONN_HASH];
    while (*pp && *pp != c) {
        pp = &(*pp)->hnext;
    }
    if (*pp) {
        *pp = c->hnext;
    }
    up_sock_close(c->sock, conn_sock_closed);
    if (!s->stopping) {
        uint64_t now = wall_ms();
        up_turn_conn_closed(s->core, now, c->id);
        drain(s, now);
    }
}

static void conn_flush(struct tconn *c)
{
    bool tls = c->client.proto == UP_TURN_TLS;
    while (up_buf_len(&c->out)) {
        size_t len = up_buf_len(&c->out), n = 0;
        if (tls) {
            /* One message per SSL_write, so no TLS record carries two. TLS is a byte stream,
             * but clients exist that take each record for one message (coturn's
             * turnutils_uclient drops the rest of a record): batching cost them datagrams. */
            if (c->tls_left == 0 &&
                up_stun_frame_len(up_buf_rptr(&c->out), len, &c->tls_left) != UP_OK) {
                c->tls_left = len; /* not reached: out holds whole messages only */
            }
            if (len > c->tls_left) {
                len = c->tls_left;
            }
        }
        int rv = up_sock_write(c->sock, up_buf_rptr(&c->out), len, &n);
        if (rv == UP_EAGAIN) {
            break;
        }
        if (rv < 0) {
            conn_close(c);
            return;
        }
        up_buf_skip(&c->out, n);
        if (tls) {
            c->tls_left -= n;
        }
    }
    up_buf_release_if_empty(&c->out);
    up_sock_want(c->sock, true, up_buf_len(&c->out) > 0);
}

/* Write what this callback queued for TCP/TLS clients. */
static void flush_dirty(struct up_turn_server *s)
{
    while (s->dirty) {
        struct tconn *c = s->dirty;
        s->dirty = c->dnext;
        c->dirty = false;
        c->dnext = NULL;
        if (!c->closing) {
            conn_flush(c);
        }
    }
}

/* Hand every complete frame in c->in to the core. */
static void conn_frames(struct tconn *c)
{
    struct up_turn_server *s = c->srv;
    while (!c->closing && up_buf_len(&c->in)) {
        size_t frame = 0;
        int rv = up_stun_frame_len(up_buf_rptr(&c->in), up_buf_len(&c->in), &frame);
        if (rv == UP_EAGAIN || (rv == UP_OK && frame > up_buf_len(&c->in))) {
            return;
        }
        if (rv < 0) {
            UP_LOGD("turn: %s connection: not STUN, closed", c->state == TC_OPEN ? "TCP" : "TLS");
            conn_close(c);
            return;
        }
        uint64_t now = wall_ms();
        up_turn_on_client(s->core, now, &c->client, up_buf_rptr(&c->in), frame);
        up_buf_skip(&c->in, frame);
        drain(s, now);
    }
}

static void conn_io(struct up_sock *sk, bool readable, bool writable)
{
    struct tconn *c = sk->ud;
    struct up_turn_server *s = c->srv;
    if (c->closing) {
        return;
    }
    if (c->state == TC_SNIFF) {
        uint8_t first;
        size_t k = 0;
        int rv = up_sock_peek(sk, &first, 1, &k);
        if (rv == UP_EAGAIN) {
            return;
        }
        if (rv < 0) {
            conn_close(c);
            return;
        }
        if (first == 0x16 && s->tls) {
            if (up_tls_attach(sk, s->tls, true, NULL) < 0) {
                conn_close(c);
                return;
            }
            c->state = TC_TLS;
            c->client.proto = UP_TURN_TLS;
        } else {
            c->state = TC_OPEN;
            c->client.proto = UP_TURN_TCP;
        }
    }
    if (c->state == TC_TLS) {
        int rv = up_tls_handshake(sk);
        if (rv == UP_EAGAIN) {
            return;
        }
        if (rv < 0) {
            conn_close(c);
            return;
        }
        c->state = TC_OPEN;
        readable = true;
    }
    if (writable && up_buf_len(&c->out)) {
        conn_flush(c);
        if (c->closing) {
            return;
        }
    }
    if (readable || up_sock_has_pending(sk)) {
        for (int i = 0; i < 16 && !c->closing; i++) {
            if (up_buf_reserve(&c->in, 16384, CONN_IN_MAX) < 0) {
                conn_close(c);
                return;
            }
            size_t n = 0;
            int rv = up_sock_read(sk, up_buf_wptr(&c->in), up_buf_room(&c->in), &n);
            if (rv == UP_EAGAIN) {
                break;
            }
            if (rv < 0) {
                conn_close(c);
                return;
            }
            up_buf_commit(&c->in, n);
            conn_frames(c);
        }
    }
    if (!c->closing) {
        up_sock_want(sk, true, up_buf_len(&c->out) > 0);
    }
}

static void conn_cb(struct up_sock *sk, bool readable, bool writable)
{
    struct up_turn_server *s = ((struct tconn *)sk->ud)->srv;
    conn_io(sk, readable, writable);
    flush_dirty(s); /* this connection's answers and others' relayed data */
}

static void on_accept(void *ud, int fd, const struct sockaddr_storage *peer)
{
    struct up_turn_server *s = ud;
    struct tconn *c = up_calloc(1, sizeof *c);
    struct up_sock *sk = c ? up_calloc(1, sizeof *sk) : NULL;
    if (!c || !sk) {
        up_free(sk);
        up_free(c);
        close(fd);
        return;
    }
    if (up_sock_init(sk, s->loop, fd, conn_cb, c) < 0) { /* it closed fd */
        up_free(sk);
        up_free(c);
        return;
    }
    c->srv = s;
    c->sock = sk;
    c->id = ++s->next_conn;
    c->state = TC_SNIFF;
    up_buf_init(&c->in);
    up_buf_init(&c->out);
    to_addr(peer, &c->client.addr);
    c->client.local = s->local;
    c->client.conn = c->id;
    c->client.proto = UP_TURN_TCP;
    c->hnext = s->conns[c->id % CONN_HASH];
    s->conns[c->id % CONN_HASH] = c;
    up_sock_want(sk, true, false);
}

/* ---- life ---- */

static void noop_closed(uv_handle_t *h)
{
    (void)h;
}

struct up_turn_server *up_turn_server_new(uv_loop_t *loop, const struct up_turn_server_cfg *cfg,
                                          char *err, size_t cap)
{
    struct sockaddr_storage sa;
    socklen_t salen;
    if (up_addr_parse(cfg->listen, &sa, &salen) < 0) {
        snprintf(err, cap, "--listen: '%.80s' is not IP:PORT (for example 0.0.0.0:3478)",
                 cfg->listen);
        return NULL;
    }
    struct up_turn_server *s = up_calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, cap, "out of memory");
        return NULL;
    }
    s->loop = loop;
    s->cfg = *cfg;
    s->timer_due = UINT64_MAX;
    bool udp_bound = false;
    if (cfg->tls_cert || cfg->tls_key) {
        if (!cfg->tls_cert || !cfg->tls_key) {
            snprintf(err, cap, "--tls-cert and --tls-key go together");
            goto fail;
        }
        s->tls = up_tls_server_ctx(cfg->tls_cert, cfg->tls_key, err, cap);
        if (!s->tls) {
            goto fail;
        }
    }
    s->nports = (size_t)cfg->core.max_port - cfg->core.min_port + 1;
    if (cfg->core.has_relay4) {
        s->ports4 = up_calloc(s->nports, sizeof *s->ports4);
    }
    if (cfg->core.has_relay6) {
        s->ports6 = up_calloc(s->nports, sizeof *s->ports6);
    }
    if ((cfg->core.has_relay4 && !s->ports4) || (cfg->core.has_relay6 && !s->ports6)) {
        snprintf(err, cap, "out of memory");
        goto fail;
    }
    s->core = up_turn_new(&s->cfg.core);
    if (!s->core) {
        snprintf(err, cap, "out of memory");
        goto fail;
    }
    /* UDP first: with port 0 the kernel picks one, and TCP takes the same number. */
    if (up_udp_bind(&s->udp, (struct sockaddr *)&sa, salen) < 0) {
        snprintf(err, cap, "cannot bind UDP %.80s: %s", cfg->listen, up_udp_strerror(&s->udp));
        goto fail;
    }
    udp_bound = true;
    up_udp_set_buffers(&s->udp, 4 << 20, 4 << 20);
    up_udp_batch_init(&s->rxb, &s->rx[0][0], sizeof s->rx[0], UP_TURN_HEADROOM, RX_SLOT);
    struct sockaddr_storage bound;
    socklen_t blen = sizeof bound;
    if (up_udp_local_addr(&s->udp, &bound, &blen) < 0) {
        snprintf(err, cap, "getsockname: %s", up_udp_strerror(&s->udp));
        goto fail;
    }
    to_addr(&bound, &s->local);
    up_addr_format((struct sockaddr *)&bound, s->addr, sizeof s->addr);
    int e = 0;
    int rv = up_listener_open(&s->lsock, loop, s->addr, 1024, on_accept, s, NULL, 0, &e);
    if (rv < 0) {
        if (e || rv == UP_EINVAL) {
            snprintf(err, cap, "cannot listen on TCP %.80s: %s", s->addr,
                     e ? strerror(e) : up_strerror(rv));
        } else {
            snprintf(err, cap, "cannot watch the TCP listener");
        }
        goto fail;
    }
    /* Last: a started socket could not be closed on the way out below (s is freed at once).
     * Watching a fresh socket fails only for an fd the loop already watches. */
    if (up_udp_start(&s->udp, loop, on_udp, s) < 0) {
        UP_LOGW("turn: cannot watch the UDP socket: %s", up_udp_strerror(&s->udp));
    }
    uv_timer_init(loop, &s->timer);
    s->timer.data = s;
    return s;
fail:
    if (udp_bound) {
        up_udp_close(&s->udp, NULL); /* not started: closed at once */
    }
    up_turn_free(s->core);
    up_tls_ctx_free(s->tls);
    up_free(s->ports4);
    up_free(s->ports6);
    up_free(s);
    return NULL;
}

const char *up_turn_server_addr(const struct up_turn_server *s)
{
    return s->addr;
}

void up_turn_server_stop(struct up_turn_server *s)
{
    if (s->stopping) {
        return;
    }
    s->stopping = true;
    uv_timer_stop(&s->timer);
    uv_close((uv_handle_t *)&s->timer, noop_closed);
    up_udp_close(&s->udp, NULL);
    up_listener_close(&s->lsock);
    for (size_t i = 0; i < CONN_HASH; i++) {
        while (s->conns[i]) {
            conn_close(s->conns[i]);
        }
    }
    for (size_t i = 0; i < s->nports; i++) {
        if (s->ports4 && s->ports4[i]) {
            close_port(s, (uint16_t)(s->cfg.core.min_port + i), false);
        }
        if (s->ports6 && s->ports6[i]) {
            close_port(s, (uint16_t)(s->cfg.core.min_port + i), true);
        }
    }
}

void up_turn_server_free(struct up_turn_server *s)
{
    if (!s) {
        return;
    }
    up_udp_close(&s->udp, NULL); /* closed by up_turn_server_stop already */
    up_turn_free(s->core);
    up_tls_ctx_free(s->tls);
    up_free(s->ports4);
    up_free(s->ports6);
    up_free(s);
}
