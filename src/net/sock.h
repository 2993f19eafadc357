/* The I/O shell's socket: a non-blocking fd watched by a libuv poll handle, optionally wrapped
 * in TLS (OpenSSL reads and writes the fd itself, which saves the memory-BIO copies on the bulk
 * path). Owners get readiness callbacks and call read/write until UP_EAGAIN. The only place
 * besides tls.c that reads errno. */
#ifndef UP_NET_SOCK_H
#define UP_NET_SOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <uv.h>

#include "base/err.h"

struct up_sock;
typedef void (*up_sock_fn)(struct up_sock *s, bool readable, bool writable);
typedef void (*up_sock_close_fn)(struct up_sock *s);

enum up_tls_state { UP_TLS_NONE, UP_TLS_HANDSHAKE, UP_TLS_OPEN, UP_TLS_FAILED };

struct up_sock {
    uv_poll_t poll; /* the handle's data points back at this struct */
    uv_idle_t idle; /* used instead of poll for fds epoll cannot watch (files, /dev/null) */
    bool nopoll;
    int fd;
    bool poll_active;
    bool want_r, want_w;
    bool watch_hup; /* with neither: still learn of a reset (EPOLLHUP/ERR, not a FIN) */
    bool hup;       /* a reset or hang-up was reported while only watch_hup was on */
    bool closing;
    bool eof;
    struct ssl_st *ssl; /* owned, NULL for plain TCP */
    enum up_tls_state tls;
    bool tls_want_w; /* the TLS engine needs the fd writable before it can go on */
    bool tls_want_r; /* ... readable */
    bool is_server;
    int last_errno; /* saved errno of the last UP_ESYS */
    up_sock_fn cb;
    up_sock_close_fn close_cb;
    void *ud; /* borrowed: the owner */
};

/* Take ownership of a connected or listening non-blocking fd and watch it on loop. The
 * callback fires with readiness once the owner asks for it through up_sock_want(). Returns
 * UP_OK or UP_ESYS (fd is then closed). */
UP_NODISCARD int up_sock_init(struct up_sock *s, uv_loop_t *loop, int fd, up_sock_fn cb, void *ud);
/* Ask for readable and/or writable callbacks (level-triggered). */
void up_sock_want(struct up_sock *s, bool r, bool w);
/* While neither readable nor writable is wanted, still call back (readable, with s->hup set)
 * once when the connection is reset or hung up; a half-close (FIN) does not count. Lets an
 * owner that waits for credit learn that its peer is gone. */
void up_sock_watch_hup(struct up_sock *s, bool on);
/* Read up to cap bytes. Returns UP_OK with *n > 0, UP_EAGAIN, UP_EOF, UP_ESYS or UP_ETLS. */
UP_NODISCARD int up_sock_read(struct up_sock *s, uint8_t *p, size_t cap, size_t *n);
/* Copy up to cap bytes of what the peer sent on a plain socket without consuming them (to tell
 * protocols apart by their first bytes). Returns UP_OK with *n > 0, UP_EAGAIN, UP_EOF or
 * UP_ESYS (UP_EINVAL on TLS). */
UP_NODISCARD int up_sock_peek(struct up_sock *s, uint8_t *p, size_t cap, size_t *n);
/* Write up to len bytes. Returns UP_OK with *n > 0, UP_EAGAIN, UP_ESYS or UP_ETLS. */
UP_NODISCARD int up_sock_write(struct up_sock *s, const uint8_t *p, size_t len, size_t *n);
/* A connected AF_UNIX stream pair, both ends non-blocking and close-on-exec (in-process
 * services and streams of the embedding API). Returns UP_OK or UP_ESYS. */
UP_NODISCARD int up_sock_pair(int fds[2]);
/* Gathered write for plain sockets (UP_EINVAL on TLS). Returns UP_OK with *n > 0, UP_EAGAIN or
 * UP_ESYS. */
UP_NODISCARD int up_sock_writev(struct up_sock *s, const struct iovec *iov, int cnt, size_t *n);
/* splice(2): bytes move between a plain socket and a kernel pipe without passing through
 * user space. In: up to len bytes from s into the pipe's write end; UP_OK with *n > 0,
 * UP_EAGAIN, UP_EOF, UP_ESYS, or UP_EINVAL for TLS or when this kernel cannot splice the fd
 * (the caller falls back to reading). Out: up to len bytes from the pipe's read end into s;
 * UP_OK with *n > 0, UP_EAGAIN, UP_ESYS, or UP_EINVAL as for in (the bytes stay in the
 * pipe). */
UP_NODISCARD int up_sock_splice_in(struct up_sock *s, int pipe_w, size_t len, size_t *n);
UP_NODISCARD int up_sock_splice_out(struct up_sock *s, int pipe_r, size_t len, size_t *n);
/* Whether decrypted bytes are waiting inside TLS (poll will not report them). */
bool up_sock_has_pending(const struct up_sock *s);
/* Shut down the write side (TLS close_notify then TCP FIN). */
void up_sock_shutdown_write(struct up_sock *s);
/* Stop watching, close the fd, free TLS; cb (may be NULL) runs from the loop once the handle
 * is closed, and only then may the owner free the memory holding s. Idempotent. */
void up_sock_close(struct up_sock *s, up_sock_close_fn cb);
/* Stop watching and hand the fd and TLS object over to a new owner (the caller read them from
 * s->fd and s->ssl first). cb as for up_sock_close. */
void up_sock_release(struct up_sock *s, up_sock_close_fn cb);
/* Re-apply the poll interest after the TLS engine changed what it waits for. */
void up_sock_update(struct up_sock *s);
/* Hard reset: SO_LINGER 0 so the peer sees RST, then close. */
void up_sock_abort(struct up_sock *s, up_sock_close_fn cb);
/* Human-readable description of the last error on s (errno or TLS reason). */
const char *up_sock_strerror(const struct up_sock *s, int err);

/* A listening socket that accepts in batches and never spins. When accept fails for want of
 * descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM, or anything else but EAGAIN) the
 * listener stops watching its fd for UP_ACCEPT_PAUSE_MS: new connections wait in the kernel's
 * backlog instead of waking the loop for nothing, and the warning is logged at most once per
 * UP_ACCEPT_LOG_MS with how many accepts failed. fn owns each accepted fd (non-blocking,
 * close-on-exec, TCP_NODELAY). */
#define UP_ACCEPT_BATCH 64      /* accepts per wake-up: others' events are not starved */
#define UP_ACCEPT_PAUSE_MS 100u /* nginx waits 500 ms; 100 keeps the backlog short */
#define UP_ACCEPT_LOG_MS 10000u
typedef void (*up_accept_fn)(void *ud, int fd, const struct sockaddr_storage *peer);
struct up_listener {
    struct up_sock sock;
    uv_timer_t pause;
    up_accept_fn fn;
    void *ud;
    uint64_t failures; /* accept calls that failed (EAGAIN aside), for the log and tests */
    uint64_t log_ms;   /* loop time of the last warning */
    bool open;
};
/* Watch the listening fd (ownership passes, closed on failure) and call fn for each accepted
 * connection. Returns UP_OK or UP_ESYS. */
UP_NODISCARD int up_listener_start(struct up_listener *L, uv_loop_t *loop, int fd, up_accept_fn fn,
                                   void *ud);
/* Listen on spec, "IP:PORT" or "[IPv6]:PORT" with a numeric host (port 0: the kernel picks
 * one), with SO_REUSEADDR (and IPV6_V6ONLY) and backlog, then start L as up_listener_start
 * does. *sys_err is set to 0, and addr (cap bytes; may be NULL) to the bound address, such as
 * "127.0.0.1:40123" ("" if the kernel would not tell). Returns UP_OK; UP_EINVAL when spec is
 * not IP:PORT; UP_ESYS with errno in *sys_err when socket, bind or listen failed, or with
 * *sys_err 0 when the loop cannot watch the socket. Nothing is left open on failure. */
UP_NODISCARD int up_listener_open(struct up_listener *L, uv_loop_t *loop, const char *spec,
                                  int backlog, up_accept_fn fn, void *ud, char *addr, size_t cap,
                                  int *sys_err);
/* Stop accepting and close the fd; idempotent. The memory holding L must outlive this loop
 * iteration (libuv closes the handles from the loop). */
void up_listener_close(struct up_listener *L);

/* A non-blocking, close-on-exec kernel pipe for splice, sized to hold size bytes when the
 * system allows (best effort). Returns UP_OK or UP_ESYS. */
UP_NODISCARD int up_kpipe_open(int fds[2], size_t size);
void up_kpipe_close(int fds[2]);
/* Read up to cap bytes from a kernel pipe's read end (bytes that were spliced in and must now
 * go through user space, or be dropped). Returns UP_OK with *n > 0, UP_EOF (write end closed),
 * or UP_ESYS with errno in *sys_err, EAGAIN included (the caller knows what the pipe holds). */
UP_NODISCARD int up_kpipe_read(int fd, uint8_t *p, size_t cap, size_t *n, int *sys_err);

/* Socket helpers. */
/* Create a non-blocking TCP socket, start connecting to sa. Returns the fd or UP_ESYS (errno in
 * *err). */
int up_tcp_connect_start(const struct sockaddr *sa, socklen_t len, int *err);
/* The socket's pending error (SO_ERROR; reading clears it), 0 when none: after a connecting
 * fd became writable, 0 when connected; on a connected one, e.g. ECONNRESET after a reset
 * that left unread bytes readable. */
int up_tcp_connect_result(int fd);
/* Bind and listen (SO_REUSEADDR) on sa. Returns the fd or UP_ESYS (errno in *err). */
int up_tcp_listen(const struct sockaddr *sa, socklen_t len, int backlog, int *err);
/* accept4 non-blocking; returns the fd, UP_EAGAIN or UP_ESYS. */
int up_tcp_accept(int lfd, struct sockaddr_storage *peer, socklen_t *plen);
/* TCP_NODELAY and sane buffer settings for a data socket. */
void up_tcp_tune(int fd);
/* Best effort: a fixed send buffer of bytes (SO_SNDBUF; the kernel doubles it and stops
 * auto-tuning it). */
void up_tcp_set_sndbuf(int fd, int bytes);
/* Unsent bytes the kernel may hold for a TCP socket at the end of a stream
 * (TCP_NOTSENT_LOWAT: agents' services, connect's clients, the relay's HTTP clients).
 * Without it a socket whose reader stopped takes up to its
 * send buffer, which on loopback autotunes to 4 MiB: a thousand such sockets pushed the
 * kernel into TCP memory pressure, which stalls every connection on the host. A reader that
 * keeps up never sees it (sent bytes do not count). */
#define UP_SOCK_ENDPOINT_LOWAT (16 * 1024)
/* TCP_NOTSENT_LOWAT's default (no bound beyond the send buffer). */
#define UP_SOCK_NOTSENT_DEFAULT (-1)
/* Best effort: the socket is writable only while fewer than bytes are queued unsent
 * (TCP_NOTSENT_LOWAT; bytes in flight do not count). */
void up_tcp_set_notsent_lowat(int fd, int bytes);
/* Close fd with a reset: SO_LINGER 0, so the peer sees RST instead of FIN. For an fd no
 * up_sock owns (an up_sock uses up_sock_abort). */
void up_tcp_reset_close(int fd);
/* Whether a connected TCP socket is connected to itself: a dial to a free local port can be
 * given that very port as its source and "connect" (TCP simultaneous open). */
bool up_tcp_is_self_connected(int fd);
/* The local (peer) address of a socket as text ("127.0.0.1:80", "[::1]:80") in out (cap bytes).
 * Returns UP_OK, or UP_ESYS with out "" when the kernel cannot tell (the errno is not kept:
 * callers show the empty text). */
int up_sock_local_addr(int fd, char *out, size_t cap);
int up_sock_peer_addr(int fd, char *out, size_t cap);
/* Set O_NONBLOCK; returns UP_OK or UP_ESYS. */
int up_fd_nonblock(int fd);

#endif
