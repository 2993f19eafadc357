#include "net/sock.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <time.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "net/addr.h"

static void poll_cb(uv_poll_t *h, int status, int events)
{
    struct up_sock *s = h->data;
    if (s->closing) {
        return;
    }
    bool r = status < 0 || (events & (UV_READABLE | UV_DISCONNECT));
    bool w = status < 0 || (events & UV_WRITABLE);
    if (!s->want_r && !s->want_w && !s->tls_want_r && !s->tls_want_w) {
        /* Only the hang-up watch was on: report it once (it is level-triggered). */
        s->hup = true;
        s->watch_hup = false;
        uv_poll_stop(&s->poll);
        s->poll_active = false;
        r = true;
        w = false;
    }
    s->cb(s, r, w);
}

int up_fd_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
        return UP_ESYS;
    }
    return UP_OK;
}

int up_sock_init(struct up_sock *s, uv_loop_t *loop, int fd, up_sock_fn cb, void *ud)
{
    memset(s, 0, sizeof(*s));
    s->fd = fd;
    s->cb = cb;
    s->ud = ud;
    if (up_fd_nonblock(fd) < 0) {
        s->last_errno = errno;
        close(fd);
        s->fd = -1;
        return UP_ESYS;
    }
    int rv = uv_poll_init(loop, &s->poll, fd);
    if (rv == UV_EPERM) {
        /* A regular file or /dev/null (connect --stdio < file): always ready; an idle handle
         * stands in for readiness. */
        s->nopoll = true;
        uv_idle_init(loop, &s->idle);
        s->idle.data = s;
        s->poll.data = s;
        return UP_OK;
    }
    if (rv < 0) {
        s->last_errno = -rv;
        close(fd);
        s->fd = -1;
        return UP_ESYS;
    }
    s->poll.data = s;
    return UP_OK;
}

static void idle_cb(uv_idle_t *h)
{
    struct up_sock *s = h->data;
    if (!s->closing) {
        s->cb(s, s->want_r, s->want_w);
    }
}

static void apply_events(struct up_sock *s)
{
    if (s->closing) {
        return;
    }
    if (s->nopoll) {
        if (s->want_r || s->want_w) {
            uv_idle_start(&s->idle, idle_cb);
        } else {
            uv_idle_stop(&s->idle);
        }
        s->poll_active = s->want_r || s->want_w;
        return;
    }
    bool r = s->want_r || s->tls_want_r;
    bool w = s->want_w || s->tls_want_w;
    int ev = (r ? UV_READABLE : 0) | (w ? UV_WRITABLE : 0);
    if (ev == 0 && s->watch_hup) {
        /* epoll reports EPOLLHUP and EPOLLERR whatever is asked; urgent data is the one event
         * that never comes on our sockets, so this wakes us for a reset only. */
        ev = UV_PRIORITIZED;
    }
    if (ev == 0) {
        if (s->poll_active) {
            uv_poll_stop(&s->poll);
            s->poll_active = false;
        }
        return;
    }
    if (uv_poll_start(&s->poll, ev, poll_cb) == 0) {
        s->poll_active = true;
    }
}

void up_sock_watch_hup(struct up_sock *s, bool on)
{
    if (s->watch_hup == on || s->hup) {
        return;
    }
    s->watch_hup = on;
    apply_events(s);
}

void up_sock_want(struct up_sock *s, bool r, bool w)
{
    if (s->want_r == r && s->want_w == w &&
        s->poll_active == (r || w || s->tls_want_r || s->tls_want_w || s->watch_hup)) {
        return;
    }
    s->want_r = r;
    s->want_w = w;
    apply_events(s);
}

static int tls_result(struct up_sock *s, int ret, bool reading)
{
    int e = SSL_get_error(s->ssl, ret);
    bool wr = s->tls_want_w, rd = s->tls_want_r;
    s->tls_want_w = false;
    s->tls_want_r = false;
    int rv;
    switch (e) {
    case SSL_ERROR_WANT_READ:
        if (!reading) {
            s->tls_want_r = true;
        }
        rv = UP_EAGAIN;
        break;
    case SSL_ERROR_WANT_WRITE:
        if (reading) {
            s->tls_want_w = true;
        }
        rv = UP_EAGAIN;
        break;
    case SSL_ERROR_ZERO_RETURN:
        rv = UP_EOF;
        break;
    case SSL_ERROR_SYSCALL:
        s->last_errno = errno;
        /* An EOF without close_notify: treat as EOF, as curl and nginx do for HTTP/1. */
        rv = (ERR_peek_error() == 0 && (errno == 0 || errno == ECONNRESET)) ? UP_EOF : UP_ESYS;
        if (errno == ECONNRESET) {
            rv = UP_ESYS;
        }
        break;
    default:
        rv = UP_ETLS;
        break;
    }
    if (wr != s->tls_want_w || rd != s->tls_want_r) {
        apply_events(s);
    }
    return rv;
}

/* The result of read(2) or splice(2) from a plain socket: r bytes, EOF, or errno. */
static int read_result(struct up_sock *s, ssize_t r, size_t *n)
{
    if (r > 0) {
        *n = (size_t)r;
        return UP_OK;
    }
    if (r == 0) {
        s->eof = true;
        return UP_EOF;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
        return UP_EAGAIN;
    }
    s->last_errno = errno;
    return UP_ESYS;
}

int up_sock_read(struct up_sock *s, uint8_t *p, size_t cap, size_t *n)
{
    *n = 0;
    if (s->ssl) {
        /* SSL_read returns one record (<= 16 KiB) per call: keep going until the buffer is
         * full or the socket is drained, so the caller parses big batches. */
        size_t total = 0;
        for (;;) {
            size_t got = 0;
            ERR_clear_error();
            int ret = SSL_read_ex(s->ssl, p + total, cap - total, &got);
            if (ret == 1) {
                total += got;
                if (total == cap) {
                    break;
                }
                continue;
            }
            int rv = tls_result(s, ret, true);
            if (total) {
                /* Report the bytes now; an error or EOF shows up again on the next call. */
                break;
            }
            if (rv == UP_EOF) {
                s->eof = true;
            }
            return rv;
        }
        *n = total;
        return UP_OK;
    }
    return read_result(s, read(s->fd, p, cap), n);
}

int up_sock_peek(struct up_sock *s, uint8_t *p, size_t cap, size_t *n)
{
    *n = 0;
    if (s->ssl) {
        return UP_EINVAL;
    }
    return read_result(s, recv(s->fd, p, cap, MSG_PEEK), n);
}

int up_sock_splice_in(struct up_sock *s, int pipe_w, size_t len, size_t *n)
{
    *n = 0;
    if (s->ssl) {
        return UP_EINVAL;
    }
    int rv = read_result(
        s, splice(s->fd, NULL, pipe_w, NULL, len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK), n);
    if (rv == UP_ESYS && (s->last_errno == EINVAL || s->last_errno == ENOSYS)) {
        return UP_EINVAL;
    }
    return rv;
}

int up_sock_splice_out(struct up_sock *s, int pipe_r, size_t len, size_t *n)
{
    *n = 0;
    if (s->ssl) {
        return UP_EINVAL;
    }
    /* splice(2) has no MSG_NOSIGNAL: a peer that reset raises SIGPIPE. Keep it blocked in this
     * thread for the call and take back one we caused, so a host application's SIGPIPE
     * disposition never matters (the libpq way). */
    sigset_t pipe_set, old;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    sigset_t pending;
    sigemptyset(&pending);
    bool was_pending = sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE);
    (void)pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    ssize_t r = splice(pipe_r, NULL, s->fd, NULL, len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    int saved = errno;
    if (r < 0 && errno == EPIPE && !was_pending) {
        struct timespec zero = {0, 0};
        (void)sigtimedwait(&pipe_set, NULL, &zero);
    }
    (void)pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = saved;
    if (r > 0) {
        *n = (size_t)r;
        return UP_OK;
    }
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        return UP_EAGAIN;
    }
    s->last_errno = r < 0 ? errno : EPIPE;
    return r < 0 && (errno == EINVAL || errno == ENOSYS) ? UP_EINVAL : UP_ESYS;
}

int up_sock_write(struct up_sock *s, const uint8_t *p, size_t len, size_t *n)
{
    *n = 0;
    if (s->ssl) {
        size_t put = 0;
        ERR_clear_error();
        int ret = SSL_write_ex(s->ssl, p, len, &put);
        if (ret == 1) {
            *n = put;
            return UP_OK;
        }
        return tls_result(s, ret, false);
    }
    ssize_t r = send(s->fd, p, len, MSG_NOSIGNAL);
    if (r >= 0) {
        *n = (size_t)r;
        return r > 0 ? UP_OK : UP_EAGAIN;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
        return UP_EAGAIN;
    }
    if (errno == ENOTSOCK) {
        /* stdout of `connect --stdio` may be a pipe. */
        r = write(s->fd, p, len);
        if (r > 0) {
            *n = (size_t)r;
            return UP_OK;
        }
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
            return UP_EAGAIN;
        }
    }
    s->last_errno = errno;
    return UP_ESYS;
}

int up_sock_pair(int fds[2])
{
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) < 0) {
        return UP_ESYS;
    }
    return UP_OK;
}

int up_sock_writev(struct up_sock *s, const struct iovec *iov, int cnt, size_t *n)
{
    *n = 0;
    if (s->ssl) {
        return UP_EINVAL;
    }
    /* sendmsg for MSG_NOSIGNAL: a peer that went away must not raise SIGPIPE in a host
     * application (libunderpass installs no handler). stdout of --stdio may be a pipe. */
    struct msghdr mh = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)cnt};
    ssize_t r = sendmsg(s->fd, &mh, MSG_NOSIGNAL);
    if (r < 0 && errno == ENOTSOCK) {
        r = writev(s->fd, iov, cnt);
    }
    if (r > 0) {
        *n = (size_t)r;
        return UP_OK;
    }
    if (r == 0 || errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
        return UP_EAGAIN;
    }
    s->last_errno = errno;
    return UP_ESYS;
}

bool up_sock_has_pending(const struct up_sock *s)
{
    if (!s->ssl) {
        return false;
    }
    if (SSL_has_pending(s->ssl) == 1) {
        return true;
    }
    /* TLS inside TLS (an https:// proxy): the outer session may hold records too. */
    BIO *b = SSL_get_rbio(s->ssl);
    SSL *outer = NULL;
    if (b && BIO_method_type(b) == BIO_TYPE_SSL && BIO_get_ssl(b, &outer) > 0 && outer) {
        return SSL_has_pending(outer) == 1;
    }
    return false;
}

void up_sock_shutdown_write(struct up_sock *s)
{
    if (s->fd < 0) {
        return;
    }
    if (s->ssl && s->tls == UP_TLS_OPEN) {
        ERR_clear_error();
        (void)SSL_shutdown(s->ssl);
        ERR_clear_error();
    }
    if (shutdown(s->fd, SHUT_WR) < 0 && errno == ENOTSOCK) {
        /* A pipe (stdio mode): closing is the only way to signal EOF. */
        close(s->fd);
        s->fd = -1;
    }
}

static void closed_cb(uv_handle_t *h)
{
    struct up_sock *s = h->data;
    if (s->nopoll && h == (uv_handle_t *)&s->poll) {
        return;
    }
    if (s->close_cb) {
        s->close_cb(s);
    }
}

void up_sock_close(struct up_sock *s, up_sock_close_fn cb)
{
    if (s->closing) {
        return;
    }
    s->closing = true;
    s->close_cb = cb;
    if (s->ssl) {
        SSL_free(s->ssl);
        s->ssl = NULL;
    }
    /* libuv must stop watching before the fd is closed. */
    if (s->nopoll) {
        uv_close((uv_handle_t *)&s->idle, closed_cb);
    } else {
        if (s->fd >= 0) {
            uv_poll_stop(&s->poll);
        }
        uv_close((uv_handle_t *)&s->poll, closed_cb);
    }
    if (s->fd >= 0) {
        close(s->fd);
        s->fd = -1;
    }
}

void up_sock_release(struct up_sock *s, up_sock_close_fn cb)
{
    if (s->closing) {
        return;
    }
    s->closing = true;
    s->close_cb = cb;
    if (s->nopoll) {
        uv_close((uv_handle_t *)&s->idle, closed_cb);
    } else {
        uv_poll_stop(&s->poll);
        uv_close((uv_handle_t *)&s->poll, closed_cb);
    }
    s->fd = -1;
    s->ssl = NULL;
}

void up_sock_update(struct up_sock *s)
{
    apply_events(s);
}

static void linger_zero(int fd)
{
    struct linger l = {.l_onoff = 1, .l_linger = 0};
    (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
}

void up_sock_abort(struct up_sock *s, up_sock_close_fn cb)
{
    if (!s->closing && s->fd >= 0) {
        linger_zero(s->fd);
    }
    up_sock_close(s, cb);
}

void up_tcp_reset_close(int fd)
{
    linger_zero(fd);
    close(fd);
}

const char *up_sock_strerror(const struct up_sock *s, int err)
{
    if (err == UP_ESYS && s->last_errno) {
        return strerror(s->last_errno);
    }
    return up_strerror(err);
}

int up_tcp_connect_start(const struct sockaddr *sa, socklen_t len, int *err)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        *err = errno;
        return UP_ESYS;
    }
    up_tcp_tune(fd);
    if (connect(fd, sa, len) < 0 && errno != EINPROGRESS) {
        *err = errno;
        close(fd);
        return UP_ESYS;
    }
    return fd;
}

int up_tcp_connect_result(int fd)
{
    int e = 0;
    socklen_t l = sizeof e;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &l) < 0) {
        return errno;
    }
    return e;
}

int up_tcp_listen(const struct sockaddr *sa, socklen_t len, int backlog, int *err)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        *err = errno;
        return UP_ESYS;
    }
    int one = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (sa->sa_family == AF_INET6) {
        (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    }
    if (bind(fd, sa, len) < 0 || listen(fd, backlog) < 0) {
        *err = errno;
        close(fd);
        return UP_ESYS;
    }
    return fd;
}

int up_tcp_accept(int lfd, struct sockaddr_storage *peer, socklen_t *plen)
{
    *plen = sizeof(*peer);
    int fd = accept4(lfd, (struct sockaddr *)peer, plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
        up_tcp_tune(fd);
        return fd;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED) {
        return UP_EAGAIN;
    }
    return UP_ESYS;
}

static void listener_accept(struct up_sock *ls, bool readable, bool writable);

static void listener_resume(uv_timer_t *t)
{
    struct up_listener *L = t->data;
    if (L->open) {
        up_sock_want(&L->sock, true, false);
        listener_accept(&L->sock, true, false); /* the backlog is not re-announced by epoll */
    }
}

static void listener_accept(struct up_sock *ls, bool readable, bool writable)
{
    struct up_listener *L = ls->ud;
    (void)readable;
    (void)writable;
    for (int i = 0; i < UP_ACCEPT_BATCH && L->open; i++) {
        struct sockaddr_storage peer;
        socklen_t plen;
        int fd = up_tcp_accept(ls->fd, &peer, &plen);
        if (fd == UP_EAGAIN) {
            return;
        }
        if (fd >= 0) {
            L->fn(L->ud, fd, &peer);
            continue;
        }
        /* Level-triggered epoll would report the same queued connection at once again. */
        int e = errno;
        L->failures++;
        uint64_t now = uv_now(ls->poll.loop);
        if (L->failures == 1 || now - L->log_ms >= UP_ACCEPT_LOG_MS) {
            UP_LOGW("accept failed: %s; pausing accepts for %u ms at a time, new connections "
                    "wait in the backlog (%llu failed accepts in all)",
                    strerror(e), UP_ACCEPT_PAUSE_MS, (unsigned long long)L->failures);
            L->log_ms = now;
        }
        up_sock_want(ls, false, false);
        uv_timer_start(&L->pause, listener_resume, UP_ACCEPT_PAUSE_MS, 0);
        return;
    }
}

int up_listener_start(struct up_listener *L, uv_loop_t *loop, int fd, up_accept_fn fn, void *ud)
{
    memset(L, 0, sizeof *L);
    L->fn = fn;
    L->ud = ud;
    if (up_sock_init(&L->sock, loop, fd, listener_accept, L) < 0) {
        return UP_ESYS;
    }
    uv_timer_init(loop, &L->pause);
    L->pause.data = L;
    L->open = true;
    up_sock_want(&L->sock, true, false);
    return UP_OK;
}

int up_listener_open(struct up_listener *L, uv_loop_t *loop, const char *spec, int backlog,
                     up_accept_fn fn, void *ud, char *addr, size_t cap, int *sys_err)
{
    struct sockaddr_storage sa;
    socklen_t len;
    *sys_err = 0;
    if (addr && cap) {
        addr[0] = '\0';
    }
    if (up_addr_parse(spec, &sa, &len) < 0) {
        return UP_EINVAL;
    }
    int fd = up_tcp_listen((struct sockaddr *)&sa, len, backlog, sys_err);
    if (fd < 0) {
        return UP_ESYS;
    }
    if (addr && cap) {
        (void)up_sock_local_addr(fd, addr, cap);
    }
    return up_listener_start(L, loop, fd, fn, ud); /* closes fd on failure */
}

void up_listener_close(struct up_listener *L)
{
    if (!L->open) {
        return;
    }
    L->open = false;
    uv_timer_stop(&L->pause);
    uv_close((uv_handle_t *)&L->pause, NULL);
    up_sock_close(&L->sock, NULL);
}

void up_tcp_tune(int fd)
{
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

void up_tcp_set_sndbuf(int fd, int bytes)
{
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof bytes);
}

void up_tcp_set_notsent_lowat(int fd, int bytes)
{
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &bytes, sizeof bytes);
}

bool up_tcp_is_self_connected(int fd)
{
    struct sockaddr_storage la, pa;
    socklen_t ll = sizeof la, pl = sizeof pa;
    return getsockname(fd, (struct sockaddr *)&la, &ll) == 0 &&
           getpeername(fd, (struct sockaddr *)&pa, &pl) == 0 && ll == pl &&
           memcmp(&la, &pa, ll) == 0;
}

static int name_text(int fd, bool peer, char *out, size_t cap)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int rv = peer ? getpeername(fd, (struct sockaddr *)&ss, &len)
                  : getsockname(fd, (struct sockaddr *)&ss, &len);
    if (cap) {
        out[0] = '\0';
    }
    if (rv < 0) {
        return UP_ESYS;
    }
    up_addr_format((struct sockaddr *)&ss, out, cap);
    return UP_OK;
}

int up_sock_local_addr(int fd, char *out, size_t cap)
{
    return name_text(fd, false, out, cap);
}

int up_sock_peer_addr(int fd, char *out, size_t cap)
{
    return name_text(fd, true, out, cap);
}

int up_kpipe_open(int fds[2], size_t size)
{
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0) {
        fds[0] = fds[1] = -1;
        return UP_ESYS;
    }
    /* Best effort: an unprivileged process gets at most /proc/sys/fs/pipe-max-size. */
    (void)fcntl(fds[1], F_SETPIPE_SZ, (int)size);
    return UP_OK;
}

void up_kpipe_close(int fds[2])
{
    for (int i = 0; i < 2; i++) {
        if (fds[i] >= 0) {
            close(fds[i]);
            fds[i] = -1;
        }
    }
}

int up_kpipe_read(int fd, uint8_t *p, size_t cap, size_t *n, int *sys_err)
{
    *n = 0;
    ssize_t k = read(fd, p, cap);
    if (k > 0) {
        *n = (size_t)k;
        return UP_OK;
    }
    if (k == 0) {
        return UP_EOF;
    }
    *sys_err = errno;
    return UP_ESYS;
}
