/* pair: the host side of one-time pairing. A platform asked the relay for a pairing token; the
 * host dials the relay as a WebSocket client to BASE/pair/TOKEN?side=host and waits, sending
 * nothing, until the relay says the browser joined (one TEXT message "paired"). Then it connects
 * to the target over TCP and copies bytes both ways: BINARY message payloads to the target,
 * target bytes as BINARY messages of up to UP_PAIR_CHUNK_BYTES. One session, no reconnect: the
 * token is spent once both sides met. */
#ifndef UP_CLIENT_PAIR_H
#define UP_CLIENT_PAIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "base/err.h"
#include "link/dial.h"

#define UP_PAIR_CHUNK_BYTES 65535u /* target bytes per BINARY message (an 8-byte masked header) */
#define UP_PAIR_RX_BYTES 65536u    /* one read from the relay, parsed in place */
/* Backpressure: stop reading one side while the other side's output buffer holds more. */
#define UP_PAIR_HIGH_BYTES (256u * 1024u)
/* Payloads are streamed to the target as they arrive, so this bounds no memory; it only stops
 * a peer that announces absurd frames. */
#define UP_PAIR_MAX_MESSAGE_BYTES (1ull << 30)
#define UP_PAIR_CLOSE_WAIT_MS 2000 /* how long the relay has to answer our Close */
#define UP_PAIR_PAIRED "paired"    /* the relay's TEXT message once the browser joined */

struct up_pair_cfg {
    /* How to reach the relay: host, port, host_header, tls, proxy, proxy_tls, timeout_ms.
     * websocket is forced on and bearer off (the token travels in path only); path is the
     * request target from up_pair_path(). Strings are copied by the dialer. */
    struct up_dial_cfg relay;
    const char *target_host; /* borrowed: outlives the pair */
    uint16_t target_port;
    uint64_t target_timeout_ms; /* TCP connect to the target, 0 = none */
    uint64_t pair_timeout_ms;   /* wait for "paired" after the upgrade, 0 = as long as the relay */
};

struct up_pair;

/* Write the request target for token into out: base (the relay URL's path; trailing slashes
 * dropped) + "/pair/" + token percent-encoded (RFC 3986 §2.3: all but unreserved characters)
 * + "?side=host". Returns UP_OK, UP_EINVAL for an empty token, or UP_ELIMIT when out (cap
 * bytes) is too small. */
UP_NODISCARD int up_pair_path(const char *base, const char *token, char *out, size_t cap);

/* Start dialing the relay. Returns NULL when out of memory. Run the loop until it returns,
 * then read the outcome and free. */
struct up_pair *up_pair_new(uv_loop_t *loop, const struct up_pair_cfg *cfg);
/* Wind down gracefully (SIGINT/SIGTERM): cancel a dial, or send Close 1001 and wait up to
 * UP_PAIR_CLOSE_WAIT_MS for the relay's. Idempotent. */
void up_pair_stop(struct up_pair *p);
/* Exit status: 0 after a session (or a stop) that ended normally, 1 on any failure. */
int up_pair_status(const struct up_pair *p);
/* Why the pairing failed, one line ("" when the status is 0). Lives as long as p. */
const char *up_pair_error(const struct up_pair *p);
/* The relay's HTTP status when it refused the upgrade (404, 409, 410 ...), else 0. */
int up_pair_http_status(const struct up_pair *p);
/* Free p once the loop has stopped (every handle closed). NULL is a no-op. */
void up_pair_free(struct up_pair *p);

#endif
