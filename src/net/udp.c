#include "net/udp.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

int up_udp_bind(struct up_udp *u, const struct sockaddr *sa, socklen_t len)
{
    memset(u, 0, sizeof *u);
    u->fd = socket(sa->sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (u->fd < 0) {
        u->last_errno = errno;
        return UP_ESYS;
    }
    if (bind(u->fd, sa, len) < 0) {
        u->last_errno = errno;
        close(u->fd);
        u->fd = -1;
        return UP_ESYS;
    }
    return UP_OK;
}

void up_udp_set_buffers(struct up_udp *u, int rcv_bytes, int snd_bytes)
{
    if (rcv_bytes > 0) {
        (void)setsockopt(u->fd, SOL_SOCKET, SO_RCVBUF, &rcv_bytes, sizeof rcv_bytes);
    }
    if (snd_bytes > 0) {
        (void)setsockopt(u->fd, SOL_SOCKET, SO_SNDBUF, &snd_bytes, sizeof snd_bytes);
    }
}

int up_udp_local_addr(struct up_udp *u, struct sockaddr_storage *ss, socklen_t *len)
{
    *len = sizeof *ss;
    if (getsockname(u->fd, (struct sockaddr *)ss, len) < 0) {
        u->last_errno = errno;
        return UP_ESYS;
    }
    return UP_OK;
}

static void poll_cb(uv_poll_t *h, int status, int events)
{
    struct up_udp *u = h->data;
    (void)status;
    (void)events;
    if (!u->closing) {
        u->cb(u);
    }
}

int up_udp_start(struct up_udp *u, uv_loop_t *loop, up_udp_fn cb, void *ud)
{
    int rv = uv_poll_init(loop, &u->poll, u->fd);
    if (rv < 0) {
        u->last_errno = -rv;
        return UP_ESYS;
    }
    u->started = true;
    u->cb = cb;
    u->ud = ud;
    u->poll.data = u;
    rv = uv_poll_start(&u->poll, UV_READABLE, poll_cb);
    if (rv < 0) {
        u->last_errno = -rv;
        return UP_ESYS;
    }
    return UP_OK;
}

static void closed_cb(uv_handle_t *h)
{
    struct up_udp *u = h->data;
    if (u->close_cb) {
        u->close_cb(u);
    }
}

void up_udp_close(struct up_udp *u, up_udp_close_fn cb)
{
    if (u->closing) {
        return;
    }
    u->closing = true;
    u->close_cb = cb;
    /* libuv must stop watching before the fd is closed. */
    if (u->started) {
        uv_poll_stop(&u->poll);
        uv_close((uv_handle_t *)&u->poll, closed_cb);
    }
    if (u->fd >= 0) {
        close(u->fd);
        u->fd = -1;
    }
    if (!u->started && cb) {
        cb(u);
    }
}

const char *up_udp_strerror(const struct up_udp *u)
{
    return u->last_errno ? strerror(u->last_errno) : up_strerror(UP_ESYS);
}

void up_udp_batch_init(struct up_udp_batch *b, uint8_t *slots, size_t stride, size_t headroom,
                       size_t max_len)
{
    memset(b, 0, sizeof *b);
    b->slots = slots;
    b->stride = stride;
    b->headroom = headroom;
    b->max_len = max_len;
}

int up_udp_recv(struct up_udp *u, struct up_udp_batch *b)
{
    /* recvmmsg writes the lengths, flags and name lengths back: set every header again. */
    for (int i = 0; i < UP_UDP_BATCH; i++) {
        b->iov[i].iov_base = b->slots + (size_t)i * b->stride + b->headroom;
        b->iov[i].iov_len = b->max_len;
        memset(&b->msgs[i].msg_hdr, 0, sizeof b->msgs[i].msg_hdr);
        b->msgs[i].msg_hdr.msg_iov = &b->iov[i];
        b->msgs[i].msg_hdr.msg_iovlen = 1;
        b->msgs[i].msg_hdr.msg_name = &b->from[i];
        b->msgs[i].msg_hdr.msg_namelen = sizeof b->from[i];
    }
    int n = recvmmsg(u->fd, b->msgs, UP_UDP_BATCH, MSG_DONTWAIT, NULL);
    if (n >= 0) {
        return n;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
        return 0;
    }
    u->last_errno = errno;
    return UP_ESYS;
}

int up_udp_send(struct up_udp *u, const uint8_t *p, size_t n, const struct sockaddr *to,
                socklen_t tolen)
{
    ssize_t rv;
    do {
        rv = sendto(u->fd, p, n, 0, to, tolen);
    } while (rv < 0 && errno == EINTR);
    if (rv >= 0) {
        return UP_OK;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
        return UP_EAGAIN;
    }
    u->last_errno = errno;
    return UP_ESYS;
}
