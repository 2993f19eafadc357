/* connect: reach a service through the relay, from a local port or from stdin/stdout. */
#ifndef UP_CLIENT_CLIENT_H
#define UP_CLIENT_CLIENT_H

#include <stdbool.h>
#include <uv.h>

#include "link/uplink.h"

#define UP_CLIENT_MAX_HELD 128 /* local connections waiting for the relay link */

struct up_client_cfg {
    struct up_uplink_cfg up;
    uint64_t hold_ms; /* how long a local connection may wait for the relay link */
    const char *service;
    const char *listen; /* NULL with stdio, or for streams handed in (up_client_adopt) */
    bool stdio;
    /* With stdio, what the user must see whatever the log level (why the stream ended): one
     * line, without a prefix. NULL: logged at warn. The CLI prints it on stderr. */
    void (*say)(void *ud, const char *line);
    void *say_ud;
};

struct up_client;

struct up_client *up_client_new(uv_loop_t *loop, struct up_client_cfg *cfg, const char *base_path,
                                char *err, size_t cap);
/* Make fd (a connected stream socket, ours from here) one stream to the service, as if it had
 * been accepted on the listening socket: opened at once, or held while the link is down.
 * On any failure fd is closed (the other end reads EOF). Returns UP_OK or UP_ESTATE (stopped,
 * or a --stdio client; fd is not taken then). */
int up_client_adopt(struct up_client *c, int fd, const char *peer);
/* Exit status for the process: 0, or 1 when the stdio stream failed. */
int up_client_status(const struct up_client *c);
const char *up_client_addr(const struct up_client *c);
void up_client_stop(struct up_client *c);
void up_client_free(struct up_client *c);

#endif
