/* libunderpass: run an underpass agent, or open streams through a relay, inside your own
 * program. docs/EMBEDDING.md has a walk-through; examples/embed_agent.c is a whole program.
 *
 * Rules that hold for every function here:
 * - Errors are values: a negative UP_E* code, and a one-line message in err[0..errlen) where a
 *   function takes one. Nothing calls exit(), installs a signal handler or writes to
 *   stdout/stderr; log lines go to the callback you set (none by default).
 * - Handles are opaque. Several agents and connects may live in one process, on one loop or on
 *   several (one loop per thread, as libuv wants). A handle made on a loop is used from that
 *   loop's thread only; one that runs on its own thread (up_agent_start_thread) may be stopped
 *   and freed from any thread.
 * - Writes never raise SIGPIPE: sockets are written with MSG_NOSIGNAL (TLS through a socket BIO
 *   that does the same), and the library's own threads block SIGPIPE.
 * - Options are the long options of `underpass agent --help` and `underpass connect --help`,
 *   without the dashes, with the same defaults and checks: "relay", "token", "token-file",
 *   "ca", "insecure", "proxy", "window", "ping-interval", "service", "links", "hold" ...
 *   UNDERPASS_* environment variables are not read (the conventional https_proxy family is,
 *   as by the command line tool, unless "proxy" is "none"). */
#ifndef UNDERPASS_UNDERPASS_H
#define UNDERPASS_UNDERPASS_H

#include <stddef.h>
#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

#define UNDERPASS_VERSION_MAJOR 0
#define UNDERPASS_VERSION_MINOR 1
#define UNDERPASS_VERSION_PATCH 0
#define UNDERPASS_VERSION "0.1.0"

#if defined(__GNUC__)
#define UP_API __attribute__((visibility("default")))
#else
#define UP_API
#endif

/* Error codes (negative). */
#define UP_E_AGAIN (-100) /* not now: retry later */
#define UP_E_INVAL (-300) /* a bad argument or option value (the message says which) */
#define UP_E_STATE (-301) /* not valid in the handle's current state */
#define UP_E_SYS (-400)   /* the operating system refused (descriptors, threads ...) */
#define UP_E_TLS (-401)   /* a TLS setting could not be loaded (CA file ...) */
#define UP_E_NOMEM (-900) /* out of memory */

/* The library's version, "0.1.0": the one you linked, which may differ from the header's. */
UP_API const char *up_version(void);
/* The ABI of the library you linked: its SONAME's number (libunderpass.so.0 → 0). */
UP_API int up_abi_version(void);
/* A static name for an error code. Never NULL. */
UP_API const char *up_error_name(int err);

/* ---- options ---- */

enum up_options_kind { UP_OPTIONS_AGENT, UP_OPTIONS_CONNECT };

struct up_options;

/* Log levels, as --log-level: 0 error, 1 warn, 2 info, 3 debug, 4 trace. line is one line
 * without a newline, valid during the call. */
typedef void (*up_log_fn)(void *ud, int level, const char *line);

/* What happened to the link to the relay (state callbacks):
 * CONNECTED: a link is up (detail: "HOST:PORT");
 * REFUSED: the relay refused us (http_status 401/403; detail: its reason); we retry;
 * RECONNECTING: the link failed or went down (detail: why); we retry after back-off;
 * DRAINING: the relay sent GOAWAY (it is restarting); streams go on, a new link is dialed. */
enum up_event { UP_EVENT_CONNECTED, UP_EVENT_REFUSED, UP_EVENT_RECONNECTING, UP_EVENT_DRAINING };
typedef void (*up_event_fn)(void *ud, enum up_event ev, const char *detail, int http_status);

/* An in-process service got a stream: fd is your end of a connected AF_UNIX stream socketpair
 * (non-blocking, close-on-exec). Read the client's bytes from it and write yours to it;
 * shutdown(fd, SHUT_WR) is a half-close, close(fd) ends the stream. It is yours to close.
 * client is the client's address as the relay saw it ("" when unknown). Runs on the loop. */
typedef void (*up_stream_fn)(void *ud, const char *service, int fd, const char *client);

/* A set of options for an agent or a connect. NULL when out of memory. */
UP_API struct up_options *up_options_new(enum up_options_kind kind);
UP_API void up_options_free(struct up_options *o);
/* Set option key to value (copied). A repeatable option ("service", "protect") gets one more
 * value per call. "token-file" reads the token from a file now. Returns 0 or UP_E_INVAL
 * (unknown key, bad value; err says which). */
UP_API int up_options_set(struct up_options *o, const char *key, const char *value, char *err,
                          size_t errlen);
/* Agent: serve name from this process; each stream comes to fn as a socket (up_stream_fn).
 * Returns 0, UP_E_INVAL (bad or repeated name, too many services) or UP_E_NOMEM. */
UP_API int up_options_serve(struct up_options *o, const char *name, up_stream_fn fn, void *ud,
                            char *err, size_t errlen);
/* Where log lines at level or more urgent go (none by default; the option "log-level", when
 * set, wins over level). On a loop of yours the callback is per thread: handles on one
 * thread share the last one set there. */
UP_API void up_options_log(struct up_options *o, int level, up_log_fn fn, void *ud);
/* Link state callbacks (none by default). */
UP_API void up_options_events(struct up_options *o, up_event_fn fn, void *ud);

/* ---- agent ---- */

struct up_agent;

/* Start an agent on your loop (dialing starts at once; run the loop). o may be freed
 * afterwards. Returns 0 with *out set, or an error with a message in err. */
UP_API int up_agent_new(uv_loop_t *loop, const struct up_options *o, struct up_agent **out,
                        char *err, size_t errlen);
/* The same on a thread of its own, with its own loop. */
UP_API int up_agent_start_thread(const struct up_options *o, struct up_agent **out, char *err,
                                 size_t errlen);
/* Stop at once: every link closes, streams are reset. The loop then ends by itself (nothing of
 * ours is left on it). Idempotent. */
UP_API void up_agent_stop(struct up_agent *a);
/* Stop gracefully: GOAWAY to the relay, streams get up to "drain-timeout" to finish. */
UP_API void up_agent_shutdown(struct up_agent *a);
/* Free the agent. On your loop: after up_agent_stop/shutdown and once the loop has run out.
 * On its own thread: stops it if needed, waits for the thread, frees everything. NULL is a
 * no-op. */
UP_API void up_agent_free(struct up_agent *a);

/* ---- connect: streams to a service through the relay ---- */

struct up_connect;

/* Keep a link to the relay for reaching service (options of `underpass connect`; "listen" and
 * "stdio" are not for the library). Returns 0 with *out set, or an error. */
UP_API int up_connect_new(uv_loop_t *loop, const struct up_options *o, const char *service,
                          struct up_connect **out, char *err, size_t errlen);
/* Open a stream to the service: *fd is your end of a socketpair (non-blocking, close-on-exec)
 * whose bytes go to the service and back. While the link is down the stream waits for it up
 * to "hold" (10 s); when the relay refuses it, or the link is lost, fd is closed by the far
 * end (you read EOF or ECONNRESET). Returns 0, UP_E_STATE (stopped), UP_E_SYS or UP_E_NOMEM. */
UP_API int up_connect_open(struct up_connect *c, int *fd);
/* Stop: links close, streams are reset. Idempotent. */
UP_API void up_connect_stop(struct up_connect *c);
/* Free after up_connect_stop once the loop has run out. NULL is a no-op. */
UP_API void up_connect_free(struct up_connect *c);

#ifdef __cplusplus
}
#endif

#endif
