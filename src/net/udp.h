/* The I/O shell's UDP socket: a non-blocking datagram fd watched by a libuv poll handle, read
 * in batches with recvmmsg(2) into caller-owned slots that keep head-room in front of each
 * datagram (so a core can frame it in place), written with sendto(2). Errors keep their errno
 * in the socket (last_errno), as up_sock does. */
#ifndef UP_NET_UDP_H
#define UP_NET_UDP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <uv.h>

#include "base/err.h"

#define UP_UDP_BATCH 32 /* datagrams per recvmmsg call */

struct up_udp;
typedef void (*up_udp_fn)(struct up_udp *u);
typedef void (*up_udp_close_fn)(struct up_udp *u);

struct up_udp {
    uv_poll_t poll; /* the handle's data points back at this struct */
    int fd;         /* -1 before up_udp_bind and after up_udp_close */
    bool started;   /* poll was initialised: closing goes through the loop */
    bool closing;
    int last_errno; /* saved errno of the last UP_ESYS */
    up_udp_fn cb;
    up_udp_close_fn close_cb;
    void *ud; /* borrowed: the owner */
};

/* A receive batch: UP_UDP_BATCH slots of stride bytes in one caller-owned array. Datagram i
 * lands headroom bytes into slot i; one longer than max_len is reported truncated. The
 * kernel's message headers and the source addresses live here too. */
struct up_udp_batch {
    uint8_t *slots; /* borrowed: UP_UDP_BATCH * stride bytes, outlives the batch */
    size_t stride;
    size_t headroom;
    size_t max_len;
    struct mmsghdr msgs[UP_UDP_BATCH];
    struct iovec iov[UP_UDP_BATCH];
    struct sockaddr_storage from[UP_UDP_BATCH];
};

/* Create a non-blocking, close-on-exec UDP socket of sa's family and bind it to sa (port 0:
 * the kernel picks one). Nothing watches it yet. Returns UP_OK, or UP_ESYS with errno in
 * u->last_errno (no fd is left open). */
UP_NODISCARD int up_udp_bind(struct up_udp *u, const struct sockaddr *sa, socklen_t len);
/* Best effort: ask for rcv_bytes of receive and snd_bytes of send buffer (0 leaves one as the
 * system set it; the kernel caps both at net.core.{r,w}mem_max). */
void up_udp_set_buffers(struct up_udp *u, int rcv_bytes, int snd_bytes);
/* The address the socket is bound to. Returns UP_OK, or UP_ESYS with errno in u->last_errno. */
UP_NODISCARD int up_udp_local_addr(struct up_udp *u, struct sockaddr_storage *ss, socklen_t *len);
/* Watch the bound socket on loop: cb runs whenever it is readable (level-triggered; the owner
 * reads with up_udp_recv until fewer than a batch come back). Returns UP_OK, or UP_ESYS (the
 * socket stays bound and must still be closed with up_udp_close). */
UP_NODISCARD int up_udp_start(struct up_udp *u, uv_loop_t *loop, up_udp_fn cb, void *ud);
/* Stop watching and close the fd; cb (may be NULL) runs once the memory holding u may be
 * freed: from the loop once the handle closed when up_udp_start got as far as setting it up,
 * else before up_udp_close returns. Idempotent. */
void up_udp_close(struct up_udp *u, up_udp_close_fn cb);
/* Description of the last UP_ESYS on u. */
const char *up_udp_strerror(const struct up_udp *u);

/* Point b at slots (see struct up_udp_batch). max_len + headroom must fit in stride. */
void up_udp_batch_init(struct up_udp_batch *b, uint8_t *slots, size_t stride, size_t headroom,
                       size_t max_len);
/* Read up to UP_UDP_BATCH waiting datagrams into b without blocking. Returns how many (0 when
 * none is waiting; EINTR counts as none), or UP_ESYS with errno in u->last_errno. Their bytes
 * and sources stay valid until the next call on b. */
UP_NODISCARD int up_udp_recv(struct up_udp *u, struct up_udp_batch *b);
/* Datagram i of the last up_udp_recv: its bytes (headroom bytes into its slot: the caller may
 * write in front of them), length, whether it was longer than max_len (its bytes are then
 * cut), and its source. */
static inline uint8_t *up_udp_batch_data(const struct up_udp_batch *b, int i)
{
    return b->slots + (size_t)i * b->stride + b->headroom;
}
static inline size_t up_udp_batch_len(const struct up_udp_batch *b, int i)
{
    return b->msgs[i].msg_len;
}
static inline bool up_udp_batch_truncated(const struct up_udp_batch *b, int i)
{
    return (b->msgs[i].msg_hdr.msg_flags & MSG_TRUNC) != 0;
}
static inline const struct sockaddr_storage *up_udp_batch_from(const struct up_udp_batch *b, int i)
{
    return &b->from[i];
}

/* Send one datagram of n bytes to to (retried on EINTR). Returns UP_OK, UP_EAGAIN when the
 * socket buffer is full, or UP_ESYS with errno in u->last_errno. As on the wire, a datagram
 * that was not sent is simply lost. */
int up_udp_send(struct up_udp *u, const uint8_t *p, size_t n, const struct sockaddr *to,
                socklen_t tolen);

#endif
