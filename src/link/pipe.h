/* A pipe joins one stream on a link to a local byte stream: a TCP socket (agent backends,
 * connect's accepted clients) or a pair of fds (connect --stdio). It moves bytes both ways,
 * honours credit (bytes are read from the socket only when the link can send them, straight
 * into the link's output buffer) and half-close, and reports the end once. */
#ifndef UP_LINK_PIPE_H
#define UP_LINK_PIPE_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "base/buf.h"
#include "link/link.h"
#include "net/sock.h"

struct up_pipe;

/* The pipe is finished: both directions done or reset. code/reason say why (code 0: normal).
 * Called once; the pipe frees itself afterwards (do not touch it). */
typedef void (*up_pipe_done_fn)(struct up_pipe *p, uint32_t code, const char *reason);

struct up_pipe {
    struct up_lstream st; /* first: the link calls back with &st */
    uv_loop_t *loop;
    struct up_sock *rs;  /* owned: read side */
    struct up_sock *wsk; /* owned: write side; == rs for a socket */
    struct up_buf out;   /* link → local bytes not yet written */
    size_t out_max;
    size_t out_preface; /* leading bytes of out that are ours, not the stream's (no credit) */
    bool started;       /* local fds attached */
    bool reading;       /* read interest armed */
    bool drained;       /* the last read was short: the socket is empty for now */
    bool rd_eof;        /* local side sent EOF */
    bool fin_rcvd;      /* link side sent FIN */
    bool wr_shut;       /* we shut down the local write side */
    bool link_done;     /* the stream left the link */
    bool data_seen;     /* stream bytes arrived: too late for a preface */
    bool done;          /* on_done delivered */
    bool freeing;
    bool no_splice;   /* the local socket refused spliced bytes once */
    bool hup_seen;    /* the local socket's hang-up was looked at */
    uint64_t spliced; /* link → local bytes moved by splice (never in user space) */
    /* Set by the owner before opening: when the peer refuses the stream before accepting it
     * (nothing moved either way), give the local socket back instead of closing it. The fd
     * is then in returned_fd when on_done runs, and belongs to the owner. */
    bool keep_on_refusal;
    int returned_fd; /* -1 unless handed back as above */
    int open_socks;
    uint32_t end_code;
    char end_reason[160];
    up_pipe_done_fn on_done;
    void *ud; /* borrowed: the owner */
};

/* Allocate a pipe not yet attached to fds. The owner then opens or attaches p->st on a link
 * with up_pipe_stream_ops and p as ud, and calls up_pipe_start() once fds exist. */
struct up_pipe *up_pipe_new(uv_loop_t *loop, up_pipe_done_fn on_done, void *ud);
extern const struct up_lstream_ops up_pipe_stream_ops;
/* Attach local fds (rfd == wfd for a socket) and start moving bytes once the stream may
 * send. Returns UP_OK or UP_ESYS/UP_ENOMEM (the pipe is then failed and reports done). */
UP_NODISCARD int up_pipe_start(struct up_pipe *p, int rfd, int wfd);
/* Queue d[0..n) (copied) to go to the local side before any stream byte, e.g. a PROXY
 * protocol header. Call it before stream data can arrive (before up_link_accept() on a stream
 * the peer opened), before or after up_pipe_start(). The bytes wait in the pipe's buffer until
 * the socket is writable and return no credit to the peer. Returns UP_OK, UP_ESTATE (stream
 * data already arrived, or the pipe is finished) or UP_ENOMEM. */
UP_NODISCARD int up_pipe_preface(struct up_pipe *p, const uint8_t *d, size_t n);
/* Abort: reset the stream with code/reason, close local fds, report done. */
void up_pipe_abort(struct up_pipe *p, uint32_t code, const char *reason);

#endif
