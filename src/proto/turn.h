/* The TURN server (RFC 8656) and STUN Binding (RFC 8489) as a sans-IO state machine, after
 * Firezone's relay: bytes and `now` in, commands out ("send these bytes there", "open this
 * relay port", "close it"), the next wake-up time on request. The RNG is injected so tests
 * are deterministic. The I/O shell (src/turn/) owns every socket; this core never touches one.
 *
 * What it serves: Binding (unauthenticated: XOR-MAPPED-ADDRESS, SOFTWARE); Allocate (UDP
 * relaying, IPv4 and IPv6 with REQUESTED-/ADDITIONAL-ADDRESS-FAMILY, 437 for a second
 * allocation on one 5-tuple, 508 when no port is free, lifetime 600 s by default, capped at
 * 3600 s); Refresh (0 frees); CreatePermission (300 s; peers without one are dropped);
 * ChannelBind (0x4000-0x4FFF, and up to 0x7FFF as RFC 5766 clients use, 600 s, a number or peer
 * stays reserved 300 s after expiry); Send and Data indications; ChannelData. Long-term credentials
 * (realm, stateless nonces that expire: 438 with a fresh one) from static users, the TURN REST API
 * scheme (username "expiry:name", password base64(HMAC-SHA1(secret, username))) and Firezone's
 * (username "expiry:salt", password base64-nopad(SHA-256("expiry:secret:salt"))); responses to
 * authenticated requests are authenticated (MESSAGE-INTEGRITY, and MESSAGE-INTEGRITY-SHA256
 * when the request used it) and carry FINGERPRINT when the request did. Peers in loopback,
 * private, link-local, multicast and unspecified ranges are refused (403) unless allowed
 * (cfg.allow_peers); per-user allocation quota (486); a per-source budget of unauthenticated
 * requests (dropped above it); no amplification: an answer to an unauthenticated request is
 * never larger than the request plus the fixed error attributes. */
#ifndef UP_PROTO_TURN_H
#define UP_PROTO_TURN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/cidr.h"
#include "base/err.h"
#include "proto/stun.h"

/* Defaults (value and why). */
#define UP_TURN_DEFAULT_LIFETIME_S 600 /* RFC 8656 §3.2 */
#define UP_TURN_MAX_LIFETIME_S 3600    /* Firezone, coturn */
#define UP_TURN_PERMISSION_S 300       /* RFC 8656 §9 */
#define UP_TURN_CHANNEL_S 600          /* RFC 8656 §12 */
#define UP_TURN_REBIND_GUARD_S 300     /* RFC 8656 §12: a number/peer stays reserved */
#define UP_TURN_NONCE_S 600            /* a nonce's lifetime; then 438 with a new one */
/* Allocations per username at once (486 above): a WebRTC client holds a few, but services
 * that hand one static user to many clients need room (coturn has no limit by default). */
#define UP_TURN_USER_QUOTA 256
/* Unauthenticated requests (Binding, and requests answered 401/438) per source IP per second:
 * enough for the clients behind one NAT address to log in, little for a reflection flood. */
#define UP_TURN_UNAUTH_BUDGET 200
#define UP_TURN_MAX_ALLOCATIONS 100000
#define UP_TURN_MAX_PERMISSIONS 256 /* peer IPs per allocation (508 above) */
#define UP_TURN_MAX_CHANNELS 256    /* channels per allocation, reserved ones too (508 above) */
/* Bytes the shell leaves writable before a peer datagram (up_turn_on_peer): the core writes
 * the ChannelData header (4) or the Data indication head (20 + XOR-PEER-ADDRESS 24 + DATA
 * header 4) there, so relaying to the client needs no copy. */
#define UP_TURN_HEADROOM 64
/* Bytes the shell leaves writable after a peer datagram: the padding of the DATA attribute
 * (and of ChannelData to a TCP/TLS client) is written there. */
#define UP_TURN_TAILROOM 3
#define UP_TURN_MAX_USERS 64

enum up_turn_proto { UP_TURN_UDP = 0, UP_TURN_TCP = 1, UP_TURN_TLS = 2 };

/* Where a client message came from. For UDP, addr is the datagram's source and local the
 * server address it was sent to; for TCP and TLS, conn names the connection (the shell's id,
 * never 0) and addr/local are its endpoints. Together they are the 5-tuple. */
struct up_turn_client {
    struct up_stun_addr addr;
    struct up_stun_addr local;
    uint8_t proto; /* enum up_turn_proto */
    uint64_t conn;
};

struct up_turn_user {
    const char *name;
    const char *pass;
};

struct up_turn_cfg {
    const char *realm;
    const char *software;                         /* SOFTWARE attribute value, NULL for none */
    struct up_turn_user users[UP_TURN_MAX_USERS]; /* static long-term credentials */
    size_t n_users;
    const uint8_t *auth_secret; /* TURN REST API and Firezone schemes; NULL for none */
    size_t auth_secret_len;
    struct up_cidr_list allow_peers; /* peers allowed despite being in a refused range */
    /* The relayed addresses (XOR-RELAYED-ADDRESS): an allocation of a family without one gets
     * 440 Address Family not Supported. */
    bool has_relay4, has_relay6;
    struct up_stun_addr relay4, relay6; /* ports ignored */
    uint16_t min_port, max_port;        /* relay port range, inclusive */
    uint32_t default_lifetime_s, max_lifetime_s;
    uint32_t user_quota;       /* 0: no limit */
    uint32_t unauth_budget;    /* 0: no limit */
    uint32_t max_allocations;  /* 0: UP_TURN_MAX_ALLOCATIONS */
    uint32_t nonce_lifetime_s; /* 0: UP_TURN_NONCE_S */
    /* Randomness: ports, the nonce key (drawn in up_turn_new), hash seeds. The defaults use
     * OpenSSL's CSPRNG; tests pass a deterministic one. */
    uint64_t (*rand)(void *ud);
    void *rand_ud;
};

/* Fill cfg with the defaults above (realm "underpass", ports 49152-65535, no relay address,
 * rand from up_random_bytes()). */
void up_turn_cfg_defaults(struct up_turn_cfg *cfg);

enum up_turn_cmd_kind {
    UP_TURN_CMD_SEND_CLIENT, /* send data to client (UDP: to client.addr from client.local) */
    UP_TURN_CMD_SEND_PEER,   /* send data to peer from relay port `port` of family v6 */
    UP_TURN_CMD_OPEN_PORT,   /* bind relay port `port` (v6); answer with up_turn_port_result() */
    UP_TURN_CMD_CLOSE_PORT,  /* close relay port `port` (v6) */
    UP_TURN_CMD_CLOSE_CONN,  /* close TCP/TLS connection client.conn (a framing error) */
};

struct up_turn_cmd {
    enum up_turn_cmd_kind kind;
    struct up_turn_client client; /* SEND_CLIENT, CLOSE_CONN */
    struct up_stun_addr peer;     /* SEND_PEER */
    uint16_t port;                /* SEND_PEER, OPEN_PORT, CLOSE_PORT */
    bool v6;
    /* SEND_*: the bytes. They point into the input the caller just passed (relayed data, no
     * copy) or into the server (answers), and stay valid until the next call into the server
     * other than up_turn_next_cmd(): drain the commands after every input. */
    const uint8_t *data;
    size_t len;
};

struct up_turn_stats {
    uint64_t allocations, permissions, channels; /* now: answered allocations, bound channels */
    uint64_t requests, errors, auth_failures, dropped;
    uint64_t relayed_packets, relayed_bytes;
};

struct up_turn;

/* NULL on allocation failure or a bad cfg (no rand or realm, realm over 127 bytes, software
 * over 64 bytes, auth_secret over 256 bytes, min_port 0 or above max_port). cfg is copied
 * (strings are borrowed: keep them alive).
 *
 * Every now_ms below is UNIX time in milliseconds (the wall clock, not a monotonic one): the
 * credentials of the REST API and Firezone schemes carry UNIX expiry times. Commands are
 * queued (at most 256); drain them with up_turn_next_cmd() after every call: SEND commands
 * still queued when the next input arrives are dropped (counted), since their bytes are gone. */
struct up_turn *up_turn_new(const struct up_turn_cfg *cfg);
void up_turn_free(struct up_turn *t);

/* A message from a client: a UDP datagram, or one frame of a TCP/TLS stream
 * (up_stun_frame_len()). STUN requests are answered; indications and ChannelData are relayed
 * to the peer (SEND_PEER pointing into buf); anything else is dropped (counted). */
void up_turn_on_client(struct up_turn *t, uint64_t now_ms, const struct up_turn_client *from,
                       const uint8_t *buf, size_t len);

/* A datagram from peer to relay port `port` (family v6). buf[-UP_TURN_HEADROOM..len +
 * UP_TURN_TAILROOM) is writable: when the allocation has a permission for the peer, the core
 * frames the data in place (ChannelData when a channel is bound to the peer, else a Data
 * indication whose DATA padding goes after the data) and queues SEND_CLIENT, whose data
 * points into that range. */
void up_turn_on_peer(struct up_turn *t, uint64_t now_ms, uint16_t port, bool v6,
                     const struct up_stun_addr *peer, uint8_t *buf, size_t len);

/* The shell's answer to OPEN_PORT: bound (the Allocate succeeds) or not (another port is
 * tried; 508 when none can be bound). Give exactly one per OPEN_PORT. OPEN_PORT is always the
 * last command of its batch, so the shell may answer it at once from inside its drain loop. */
void up_turn_port_result(struct up_turn *t, uint64_t now_ms, uint16_t port, bool v6, bool ok);

/* A TCP/TLS client connection ended: the allocations it made are freed (their ports closed). */
void up_turn_conn_closed(struct up_turn *t, uint64_t now_ms, uint64_t conn);

/* Expire what is due at now_ms (allocations, permissions, channels). When the command queue
 * fills up it stops early, and up_turn_next_timeout() stays <= now_ms: call again after
 * draining. */
void up_turn_on_timer(struct up_turn *t, uint64_t now_ms);
/* When up_turn_on_timer() should run next; UINT64_MAX when nothing is pending. */
uint64_t up_turn_next_timeout(const struct up_turn *t);

/* The next command, in order; false when there is none. */
bool up_turn_next_cmd(struct up_turn *t, struct up_turn_cmd *cmd);

const struct up_turn_stats *up_turn_stats(const struct up_turn *t);

#endif
