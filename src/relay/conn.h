/* A connection at the relay's front door (struct hconn, relay/types.h): its buffers, the
 * relay's own answers on it, the lingering close after them, and its end. front.c accepts it
 * and reads the request head; whatever the request turned the connection into (http.c's
 * proxy, wsb.c's bridge, front.c's link) sets the hooks this module calls back. */
#ifndef UP_RELAY_CONN_H
#define UP_RELAY_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "relay/types.h"

/* Put c at the front of its relay's list of connections; hc_close() unlists it. */
void hc_list(struct hconn *c);
/* Close c, once: call c->on_close (when set), unlist c, close its timer and its socket. With
 * release the fd and the TLS session stay open for a link that takes them over. c is freed
 * once every handle counted in c->open_handles has closed (hc_closed), so its fields stay
 * valid for the rest of the callback that closed it. Idempotent. */
void hc_close(struct hconn *c, bool release);
/* uv_close() callback for a handle of c's (h->data is c): free c after the last one. */
void hc_closed(uv_handle_t *h);
/* Answer with status and text, body (NUL-terminated) of type ctype, then close: the answer
 * says "Connection: close", extra (may be NULL) are more header lines, each ending in CRLF.
 * Counts http_requests, and http_errors for a status of 400 or more. Out of memory (or a
 * head over 1 KiB) closes c at once. */
void hc_respond(struct hconn *c, int status, const char *text, const char *body, const char *ctype,
                const char *extra);
/* hc_respond() with "why\n" as a text body. 401 and 403 count as rejected and are logged with
 * who called; 401 asks for a Bearer token (WWW-Authenticate). */
void hc_error(struct hconn *c, int status, const char *text, const char *why);
/* Write c->out; when the socket is full, wait until it is writable (c->state must then be
 * HC_WRITE). Once all is written, call c->on_upgraded if c->upgrade_after is set; otherwise
 * shut our write side and linger: read and drop the peer's input until EOF or 2 s, so that
 * the answer is not lost to an RST caused by unread input. A failed write closes c. */
void hc_flush(struct hconn *c);
/* Write c->out as far as the socket takes it. The first *owed bytes of c->out are a stream's:
 * credit for them goes back to st (may be NULL) as they leave, and *owed shrinks. Returns
 * false when the connection failed and is closed. */
bool hc_write_owed(struct hconn *c, size_t *owed, struct up_lstream *st);
/* Who is calling, for logs, in buf (cap bytes): "A", or "A (via proxy P, https)" when a
 * trusted proxy named A. Returns buf. */
const char *hc_desc(const struct hconn *c, char *buf, size_t cap);
/* c's timer (t->data is c): while reading a head of which bytes came, answer 408 and linger;
 * otherwise (no byte yet, TLS handshake, lingering) close c. */
void hc_timeout(uv_timer_t *t);

#endif
