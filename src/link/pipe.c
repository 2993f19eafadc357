#include "link/pipe.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/log.h"

#define PIPE_OUT_MAX (UP_MUX_MAX_WINDOW + 0u) /* bounded by the window we granted */

static void pipe_sock_cb(struct up_sock *s, bool readable, bool writable);

struct up_pipe *up_pipe_new(uv_loop_t *loop, up_pipe_done_fn on_done, void *ud)
{
    struct up_pipe *p = up_calloc(1, sizeof(*p));
    if (!p) {
        return NULL;
    }
    p->loop = loop;
    p->on_done = on_done;
    p->ud = ud;
    p->out_max = PIPE_OUT_MAX;
    p->returned_fd = -1;
    up_buf_init(&p->out);
    return p;
}

static void maybe_free(struct up_pipe *p)
{
    if (p->freeing && p->open_socks == 0) {
        up_buf_fini(&p->out);
        up_free(p);
    }
}

static void sock_closed(struct up_sock *s)
{
    struct up_pipe *p = s->ud;
    up_free(s);
    p->open_socks--;
    maybe_free(p);
}

static void arm(struct up_pipe *p)
{
    if (!p->started || p->freeing) {
        return;
    }
    bool want_w = up_buf_len(&p->out) > 0;
    if (p->rs == p->wsk) {
        /* Waiting for credit with nothing to write, a socket is not watched at all: still
         * learn when its peer resets it, or a client that went away would hold its stream
         * (and the service's) until the service ends it. */
        up_sock_watch_hup(p->rs, true); /* once: a no-op after a hang-up was reported */
        up_sock_want(p->rs, p->reading, want_w);
    } else {
        if (p->rs) {
            up_sock_want(p->rs, p->reading, false);
        }
        if (p->wsk) {
            up_sock_want(p->wsk, false, want_w);
        }
    }
}

/* Report the end once, close the fds, free when their handles are closed. */
static void finish(struct up_pipe *p, uint32_t code, const char *reason, bool hard)
{
    if (p->freeing) {
        return;
    }
    p->freeing = true;
    if (p->spliced) {
        UP_LOGD("stream %u: %llu bytes to the local side by splice", p->st.sid,
                (unsigned long long)p->spliced);
    }
    if (!p->done) {
        p->done = true;
        p->on_done(p, code, reason);
    }
    if (p->rs) {
        if (hard) {
            up_sock_abort(p->rs, sock_closed);
        } else {
            up_sock_close(p->rs, sock_closed);
        }
    }
    if (p->wsk && p->wsk != p->rs) {
        up_sock_close(p->wsk, sock_closed);
    }
    p->rs = p->wsk = NULL;
    maybe_free(p);
}

/* Finished normally when the stream left the link and every byte reached the local side. */
static void check_done(struct up_pipe *p)
{
    if (p->link_done && up_buf_len(&p->out) == 0 && !p->freeing) {
        finish(p, p->end_code, p->end_code ? p->end_reason : NULL, false);
    }
}

static void shut_local_write(struct up_pipe *p)
{
    if (!p->wr_shut && p->wsk) {
        p->wr_shut = true;
        up_sock_shutdown_write(p->wsk);
    }
}

/* Write buffered link→local bytes; report them consumed. */
static int drain_out(struct up_pipe *p)
{
    while (up_buf_len(&p->out)) {
        size_t n = 0;
        int rv = up_sock_write(p->wsk, up_buf_rptr(&p->out), up_buf_len(&p->out), &n);
        if (rv == UP_EAGAIN) {
            return UP_EAGAIN;
        }
        if (rv < 0) {
            char why[160];
            snprintf(why, sizeof why, "local write failed: %s", up_sock_strerror(p->wsk, rv));
            up_pipe_abort(p, UP_MUX_C_BACKEND_RESET, why);
            return rv;
        }
        up_buf_skip(&p->out, n);
        size_t ours = n < p->out_preface ? n : p->out_preface;
        p->out_preface -= ours;
        up_link_consumed_held(&p->st, n - ours, up_buf_len(&p->out));
    }
    up_buf_release_if_empty(&p->out);
    if (p->fin_rcvd) {
        shut_local_write(p);
    }
    return UP_OK;
}

static void pipe_sock_cb(struct up_sock *s, bool readable, bool writable)
{
    struct up_pipe *p = s->ud;
    if (p->freeing) {
        return;
    }
    if (writable && s == p->wsk && up_buf_len(&p->out)) {
        if (drain_out(p) < 0 && p->freeing) {
            return;
        }
        check_done(p);
        if (p->freeing) {
            return;
        }
    }
    if (s->hup && !p->hup_seen && s == p->rs) {
        p->hup_seen = true;
        /* A reset leaves unread bytes readable: ask the socket for its error instead. */
        int e = up_tcp_connect_result(s->fd);
        if (e) {
            char why[160];
            snprintf(why, sizeof why, "local connection failed: %s", strerror(e));
            up_pipe_abort(p, UP_MUX_C_BACKEND_RESET, why);
            return;
        }
    }
    if (readable && s == p->rs && p->reading) {
        if (up_link_is_ready(&p->st)) {
            /* Already queued behind other streams or a full link: stop watching until the
             * link pulls, or level-triggered readiness would spin. */
            p->reading = false;
        } else {
            /* Stay armed: the pull below usually drains the socket, and re-arming for every
             * message costs two epoll_ctl calls on the latency path. */
            up_link_ready(&p->st);
        }
    }
    arm(p);
}

int up_pipe_start(struct up_pipe *p, int rfd, int wfd)
{
    p->rs = up_calloc(1, sizeof(*p->rs));
    if (!p->rs) {
        close(rfd);
        if (wfd != rfd) {
            close(wfd);
        }
        up_pipe_abort(p, UP_MUX_C_INTERNAL, "out of memory");
        return UP_ENOMEM;
    }
    if (up_sock_init(p->rs, p->loop, rfd, pipe_sock_cb, p) < 0) {
        up_free(p->rs);
        p->rs = NULL;
        if (wfd != rfd) {
            close(wfd);
        }
        up_pipe_abort(p, UP_MUX_C_INTERNAL, "cannot watch local socket");
        return UP_ESYS;
    }
    p->open_socks++;
    if (wfd == rfd) {
        /* The kernel takes no more unsent bytes than this (a no-op on a non-TCP socket). */
        up_tcp_set_notsent_lowat(rfd, UP_SOCK_ENDPOINT_LOWAT);
        p->wsk = p->rs;
    } else {
        p->wsk = up_calloc(1, sizeof(*p->wsk));
        if (!p->wsk || up_sock_init(p->wsk, p->loop, wfd, pipe_sock_cb, p) < 0) {
            up_free(p->wsk);
            p->wsk = NULL;
            up_pipe_abort(p, UP_MUX_C_INTERNAL, "cannot watch local output");
            return UP_ESYS;
        }
        p->open_socks++;
    }
    p->started = true;
    if (p->st.accepted || !p->st.opener) {
        p->reading = true;
    }
    arm(p);
    return UP_OK;
}

int up_pipe_preface(struct up_pipe *p, const uint8_t *d, size_t n)
{
    if (p->data_seen || p->freeing) {
        return UP_ESTATE;
    }
    /* Only earlier prefaces can be in out: the stream's bytes come after. */
    if (up_buf_append(&p->out, d, n, p->out_max) < 0) {
        return UP_ENOMEM;
    }
    p->out_preface += n;
    arm(p);
    return UP_OK;
}

void up_pipe_abort(struct up_pipe *p, uint32_t code, const char *reason)
{
    if (p->freeing) {
        return;
    }
    up_link_reset(&p->st, code, reason);
    finish(p, code, reason, true);
}

/* ---- stream callbacks ---- */

static void st_accept(struct up_lstream *st)
{
    struct up_pipe *p = st->ud;
    if (p->started && !p->rd_eof) {
        p->reading = true;
        arm(p);
    }
}

static void st_data(struct up_lstream *st, const uint8_t *d, size_t n)
{
    struct up_pipe *p = st->ud;
    p->data_seen = true;
    if (p->freeing || !p->started) {
        return;
    }
    size_t done = 0;
    if (up_buf_len(&p->out) == 0) {
        /* Fast path: straight from the link's read buffer to the local socket. */
        while (done < n) {
            size_t k = 0;
            int rv = up_sock_write(p->wsk, d + done, n - done, &k);
            if (rv == UP_EAGAIN) {
                break;
            }
            if (rv < 0) {
                char why[160];
                snprintf(why, sizeof why, "local write failed: %s", up_sock_strerror(p->wsk, rv));
                up_pipe_abort(p, UP_MUX_C_BACKEND_RESET, why);
                return;
            }
            done += k;
        }
        if (done) {
            up_link_consumed_held(st, done, n - done);
        }
    }
    if (done < n) {
        if (up_buf_append(&p->out, d + done, n - done, p->out_max + p->out_preface) < 0) {
            up_pipe_abort(p, UP_MUX_C_INTERNAL, "out of memory buffering stream data");
            return;
        }
        up_link_set_held(st, up_buf_len(&p->out));
        arm(p);
    }
}

static void st_fin(struct up_lstream *st)
{
    struct up_pipe *p = st->ud;
    p->fin_rcvd = true;
    if (p->started && up_buf_len(&p->out) == 0) {
        shut_local_write(p);
    }
}

static void st_close(struct up_lstream *st, uint32_t code, const char *reason)
{
    struct up_pipe *p = st->ud;
    p->link_done = true;
    if (code != UP_MUX_C_NONE) {
        if (p->keep_on_refusal && p->st.opener && !p->st.accepted && !p->data_seen && p->rs &&
            p->rs == p->wsk && !p->freeing) {
            /* Refused before it began: not a byte was read from the socket (reading starts at
             * ACCEPT), so the owner may try again with it. */
            p->returned_fd = p->rs->fd;
            up_sock_release(p->rs, sock_closed);
            p->rs = p->wsk = NULL;
        }
        /* Reset or link lost: the local side must learn at once (BRIEF rule 4). */
        finish(p, code, reason, true);
        return;
    }
    p->end_code = 0;
    if (!p->started) {
        finish(p, 0, NULL, false);
        return;
    }
    check_done(p);
}

static size_t st_pull(struct up_lstream *st, uint8_t *dst, size_t max, bool *fin)
{
    struct up_pipe *p = st->ud;
    *fin = false;
    if (p->freeing || !p->started) {
        return 0;
    }
    if (p->rd_eof) {
        *fin = true;
        return 0;
    }
    if (max == 0) {
        /* Out of credit: the link drops us from its ready list until CREDIT comes; do not
         * watch the socket meanwhile (backpressure). */
        if (p->reading) {
            p->reading = false;
            arm(p);
        }
        return 0;
    }
    if (p->drained) {
        /* The last read came back short: the socket was empty. Wait for readiness instead of
         * spending a read() on EAGAIN. */
        p->drained = false;
        if (!p->reading) {
            p->reading = true;
            arm(p);
        }
        return 0;
    }
    size_t n = 0;
    int rv = up_sock_read(p->rs, dst, max, &n);
    if (rv == UP_OK) {
        p->drained = n < max && !p->rs->ssl;
        return n;
    }
    if (rv == UP_EAGAIN) {
        if (!p->reading) {
            p->reading = true;
            arm(p);
        }
        return 0;
    }
    if (rv == UP_EOF) {
        p->rd_eof = true;
        *fin = true;
        return 0;
    }
    char why[160];
    snprintf(why, sizeof why, "local read failed: %s", up_sock_strerror(p->rs, rv));
    up_pipe_abort(p, UP_MUX_C_BACKEND_RESET, why);
    return 0;
}

/* Splice (link.h): only into a plain socket, in order (nothing queued ahead). */
static bool st_splice_ok(struct up_lstream *st)
{
    struct up_pipe *p = st->ud;
    return p->started && !p->freeing && !p->no_splice && p->wsk && p->wsk == p->rs &&
           !p->wsk->ssl && !p->wr_shut && up_buf_len(&p->out) == 0;
}

static size_t st_splice(struct up_lstream *st, int fd, size_t n)
{
    struct up_pipe *p = st->ud;
    p->data_seen = true;
    size_t moved = 0;
    while (moved < n) {
        size_t k = 0;
        int rv = up_sock_splice_out(p->wsk, fd, n - moved, &k);
        if (rv == UP_EAGAIN) {
            break;
        }
        if (rv == UP_EINVAL) {
            p->no_splice = true; /* this socket cannot take spliced bytes: copy from now on */
            break;
        }
        if (rv < 0) {
            char why[160];
            snprintf(why, sizeof why, "local write failed: %s", up_sock_strerror(p->wsk, rv));
            up_pipe_abort(p, UP_MUX_C_BACKEND_RESET, why);
            return n - moved;
        }
        moved += k;
    }
    p->spliced += moved;
    if (moved) {
        up_link_consumed_held(st, moved, n - moved);
    }
    /* The socket is full: the rest waits in our buffer like any other stream data. */
    size_t rest = n - moved;
    if (rest == 0) {
        return 0;
    }
    if (up_buf_reserve(&p->out, rest, p->out_max + p->out_preface) < 0) {
        up_pipe_abort(p, UP_MUX_C_INTERNAL, "out of memory buffering stream data");
        return rest;
    }
    while (rest) {
        size_t k = 0;
        int e = 0;
        if (up_kpipe_read(fd, up_buf_wptr(&p->out), rest, &k, &e) < 0) {
            up_pipe_abort(p, UP_MUX_C_INTERNAL, "lost spliced stream data");
            return rest;
        }
        up_buf_commit(&p->out, k);
        rest -= k;
    }
    up_link_set_held(st, up_buf_len(&p->out));
    arm(p);
    return 0;
}

const struct up_lstream_ops up_pipe_stream_ops = {
    .splice_ok = st_splice_ok,
    .on_splice = st_splice,
    .on_accept = st_accept,
    .on_data = st_data,
    .on_fin = st_fin,
    .on_close = st_close,
    .pull = st_pull,
};
