/* One WebSocket echo connection for the Autobahn|Testsuite runs, built only from our codec
 * (src/proto/ws, src/proto/h1) and shell (src/net/sock): the same pieces the relay uses. It
 * reassembles each message, echoes it whole with its type, answers pings, does the closing
 * handshake (echoing the peer's code, or sending the codec's 1002/1007/1009 on errors) and
 * then lingers until the peer closes TCP. The server role accepts a permessage-deflate offer
 * (RFC 7692, proto/pmd) and then echoes every message compressed. Used by ws_echo_server (server
 * role) and ws_echo_client (client role). */
#ifndef UP_TESTS_AUTOBAHN_ECHO_CONN_H
#define UP_TESTS_AUTOBAHN_ECHO_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "base/buf.h"
#include "net/sock.h"
#include "proto/pmd.h"
#include "proto/ws.h"

/* Autobahn case 9.1.6 sends a 16 MiB message in one frame; leave room above it. */
#define ECHO_MAX_MESSAGE_BYTES (32u << 20)
#define ECHO_MAX_HEAD 16384
#define ECHO_READ_CHUNK (256u << 10)
/* Inflated bytes produced per up_pmd_inflate call. */
#define ECHO_INFLATE_CHUNK (64u << 10)
/* Output holds at most a few echoed messages plus control frames. */
#define ECHO_MAX_OUT_BYTES (4u * ECHO_MAX_MESSAGE_BYTES)
/* After our close frame went out: how long to wait for the peer's close and TCP FIN. */
#define ECHO_LINGER_MS 2000
/* No byte from the peer for this long: give up on the connection. */
#define ECHO_IDLE_MS 60000

struct echo_conn;

/* Called once, from the loop, when the connection is gone and its memory freed. */
typedef void (*echo_done_fn)(void *ud);
/* Called for each complete message when the connection does not echo (see echo_conn_cfg). */
typedef void (*echo_msg_fn)(void *ud, uint8_t opcode, const uint8_t *data, size_t len);

struct echo_conn_cfg {
    enum up_ws_role role;
    bool echo;          /* false: hand messages to on_msg instead of echoing them */
    echo_msg_fn on_msg; /* may be NULL */
    echo_done_fn on_done;
    void *ud; /* borrowed: outlives the connection */
    bool verbose;
    /* Client role: permessage-deflate was negotiated by the dialer with these parameters
     * (NULL: not in use). */
    const struct up_pmd_params *pmd;
};

/* The permessage-deflate preferences both roles use (the client offers them, the server
 * accepts with them). */
void echo_pmd_cfg(struct up_pmd_cfg *pcfg);

enum echo_state {
    EC_HEAD,    /* server: reading the upgrade request */
    EC_OPEN,    /* exchanging messages */
    EC_CLOSING, /* our close frame is queued or sent; draining until the peer's close/FIN */
    EC_GONE,    /* handles are closing; memory is freed in the last close callback */
};

struct echo_conn {
    struct echo_conn_cfg cfg;
    enum echo_state state;
    struct up_sock sock; /* owned; closed before the struct is freed */
    uv_timer_t timer;    /* idle, then linger deadline */
    int open_handles;
    struct up_buf in;  /* owned: bytes read, unparsed */
    struct up_buf out; /* owned: frames to send */
    struct up_buf msg; /* owned: the message being reassembled */
    size_t scan;
    struct up_ws_parser ws;
    uint8_t msg_opcode;
    bool msg_compressed; /* the message being reassembled came with RSV1 */
    bool pmd_on;         /* permessage-deflate negotiated (server role only, for now) */
    struct up_pmd pmd;   /* owned when pmd_on: inflates peer messages, deflates echoes */
    struct up_buf zout;  /* owned: one compressed echo before it is framed */
    bool close_sent;
    bool close_rcvd;
    bool shut_wr; /* our FIN is sent */
};

/* Take ownership of a connected fd (and ssl, NULL for plain TCP) and start. A server
 * connection first reads the upgrade request and answers it; a client connection starts in
 * EC_OPEN (the upgrade was done by up_dial) and first parses pre[0..pre_len), bytes the dial
 * read past the response head. Returns UP_OK, or UP_ENOMEM/UP_ESYS (fd closed, on_done not
 * called). */
int echo_conn_start(uv_loop_t *loop, int fd, struct ssl_st *ssl, const uint8_t *pre, size_t pre_len,
                    const struct echo_conn_cfg *cfg);

#endif
