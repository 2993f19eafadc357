/* Small HTTP field parsers the relay's front door needs (sans-IO: slices in, slices out; no
 * allocation, no decoding, no I/O):
 *  - query strings: parameters separated by '&', found by exact name (no percent-decoding:
 *    service names and tokens never need it);
 *  - Authorization: Bearer (RFC 6750 §2.1), Cookie (RFC 6265 §4.2.1), X-Forwarded-Proto,
 *    Host, and the Sec-WebSocket-Protocol list (RFC 6455 §11.3.4) with the relay's choice;
 *  - an agent's ?services=a,b&http=b&protect=b registration;
 *  - the relay's --route [HOST][/PREFIX]=SERVICE spec.
 * Returned pointers are slices of the caller's input and live as long as it does. */
#ifndef UP_PROTO_HPARSE_H
#define UP_PROTO_HPARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "proto/token.h"

/* The value of the first parameter key in the query q[0..qlen) (without the '?'; q may be
 * NULL when qlen is 0), with its length in *vlen (0 for "key="), or NULL when there is none.
 * A parameter without '=' has no value and does not match. */
const char *up_hparse_query_param(const char *q, size_t qlen, const char *key, size_t *vlen);
/* Iterate over every parameter key in a query: *pos starts at the query's first byte and end
 * is one past its last. Returns the next value (with *vlen) and moves *pos past it, or NULL
 * at the end. */
const char *up_hparse_query_next(const char **pos, const char *end, const char *key, size_t *vlen);

/* The token of an Authorization value v[0..len): "Bearer TOKEN", the scheme in any case, the
 * token trimmed of spaces and tabs. Returns true when the token is not empty. Whenever v
 * starts with the scheme and a space and is at least 8 bytes long, *tok and *tlen are set,
 * also to an empty token (then the result is false); otherwise they are untouched. */
bool up_hparse_bearer(const char *v, size_t len, const char **tok, size_t *tlen);

/* The value of cookie name in one Cookie header value v[0..len) ("a=1; name=2"), pairs
 * trimmed of spaces and tabs, with its length in *vlen (0 for "name="), or NULL. */
const char *up_hparse_cookie(const char *v, size_t len, const char *name, size_t *vlen);

/* X-Forwarded-Proto v[0..len) (the last header line's value): the scheme of its rightmost
 * element, which the nearest proxy appended or set: "https" or "http" (static strings, any
 * case in v), or NULL for anything else. */
const char *up_hparse_forwarded_proto(const char *v, size_t len);

/* A Host value v[0..len) as a name to compare: the port removed ("[v6]:p" keeps the
 * brackets), trailing dots removed, ASCII letters lowercased, into out (cap bytes,
 * NUL-terminated). Returns false, out undefined, when v is empty, len >= cap, or nothing is
 * left. */
bool up_hparse_host(const char *v, size_t len, char *out, size_t cap);

/* Sec-WebSocket-Protocol entries over all of a request's header lines: feed each line's value
 * in order. The relay answers with "binary" when offered (websockify), else the first entry
 * that is not a token, else the token entry itself (a browser fails a handshake whose answer
 * names none of the protocols it offered); a "bearer.<token>" entry carries a client token,
 * since browsers cannot set Authorization on a WebSocket. */
struct up_hparse_wsproto {
    const char *binary, *first, *bearer; /* slices of the values fed, or NULL */
    size_t binary_len, first_len, bearer_len;
};
void up_hparse_wsproto_init(struct up_hparse_wsproto *sp);
/* Take the comma-separated entries of one header value v[0..len), trimmed of spaces and tabs;
 * empty entries are skipped. */
void up_hparse_wsproto_feed(struct up_hparse_wsproto *sp, const char *v, size_t len);
/* The entry to answer with (see above) and its length, or NULL when none was offered. */
const char *up_hparse_wsproto_pick(const struct up_hparse_wsproto *sp, size_t *len);
/* The token of the first "bearer.<token>" entry (case-sensitive, token not empty), or NULL. */
const char *up_hparse_wsproto_token(const struct up_hparse_wsproto *sp, size_t *len);

/* What an agent registers (GET /v1/agent?services=a,b&http=b&protect=b). */
#define UP_HPARSE_SVC_HTTP 1u    /* an HTTP backend: reachable through the reverse proxy */
#define UP_HPARSE_SVC_PROTECT 2u /* ... only with a client token (Bearer or cookie) */
struct up_hparse_services {
    char names[UP_TOKEN_MAX_SERVICES][UP_TOKEN_MAX_NAME + 1];
    uint8_t flags[UP_TOKEN_MAX_SERVICES]; /* UP_HPARSE_SVC_* */
    size_t n;
};
/* Parse the query q[0..qlen) (q may be NULL when qlen is 0) into out: "services" is a comma
 * list of 1..UP_TOKEN_MAX_SERVICES valid service names (not "*") that the agent's token cl
 * allows, in order; "http" and "protect" are comma lists of some of them (each name must be
 * one of services), which set the flags. Later parameters of the same name are ignored.
 * Returns UP_OK, or with a one-line reason in why (cap bytes; names cut to 64 bytes):
 * UP_EPROTO for an invalid or missing name or a flag list naming another service (400),
 * UP_ELIMIT for more than UP_TOKEN_MAX_SERVICES services (400), UP_EAUTH for a name cl does
 * not allow (403). The first error in the list wins; out is undefined after one. */
UP_NODISCARD int up_hparse_services(const char *q, size_t qlen, const struct up_token_claims *cl,
                                    struct up_hparse_services *out, char *why, size_t cap);

/* --route [HOST][/PREFIX]=SERVICE: requests for HOST (any host when empty) whose path starts
 * with PREFIX (on a segment boundary; any path when empty) go to the http service SERVICE. */
struct up_hparse_route {
    char host[256]; /* lowercase, no port */
    char prefix[256];
    char service[64];
};
/* Parse spec (NUL-terminated) into rt: SERVICE after the last '=' is a valid service name,
 * HOST (before the first '/') has only letters, digits and ".-_[]:", PREFIX (from that '/')
 * has no controls, spaces, '?' or '#', each under 256 bytes, and at least one of them is
 * given. Returns UP_OK, or UP_EINVAL with a one-line reason naming spec in err (cap bytes). */
UP_NODISCARD int up_hparse_route(const char *spec, struct up_hparse_route *rt, char *err,
                                 size_t cap);

#endif
