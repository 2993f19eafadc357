/* Strict HTTP/1.1 message-head parser (RFC 9112), requests and responses. Sans-IO: it reads
 * a caller-owned buffer and fills a caller-sized header array with slices into that buffer
 * (picohttpparser shape). No allocation, no state kept between calls other than the
 * caller-provided scan hint. */
#ifndef UP_PROTO_H1_H
#define UP_PROTO_H1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

/* Defaults used by the relay; callers may pass other values. */
#define UP_H1_DEFAULT_MAX_HEAD 16384 /* bytes of request line + headers + CRLFCRLF */
#define UP_H1_DEFAULT_MAX_HEADERS 64

struct up_h1_header {
    const char *name; /* borrowed: points into the parsed buffer */
    size_t name_len;
    const char *value; /* borrowed; leading/trailing OWS removed */
    size_t value_len;
};

struct up_h1_msg {
    /* Request line (requests only). */
    const char *method;
    size_t method_len;
    const char *target;
    size_t target_len;
    /* Status line (responses only). */
    int status;
    const char *reason;
    size_t reason_len;
    int minor_version;            /* 0 or 1 */
    struct up_h1_header *headers; /* borrowed: the caller's array */
    size_t n_headers;
    size_t head_len;        /* bytes of the head, including the final CRLFCRLF */
    int64_t content_length; /* -1 when absent; repeated identical fields are folded here
                             * (each still appears in headers) */
    bool chunked;           /* Transfer-Encoding ends in "chunked" */
    bool conn_close;        /* Connection: close, or HTTP/1.0 without keep-alive */
    bool conn_upgrade;      /* Connection lists "upgrade" */
    /* Reason for the last UP_EPROTO/UP_ELIMIT, a static string, and the HTTP status a server
     * should answer with (400, 431, 505 ...). */
    const char *err_reason;
    int err_status;
};

/* Parse a request head from buf[0..len). *scan is a hint the caller keeps between calls on
 * the same growing buffer (start it at 0) so that a head that arrives one byte at a time is
 * scanned once, not once per call (tungstenite CVE-2023-43669). Reset it to 0 whenever the
 * buffer's start moves (a new message, a compaction); scan may be NULL for a one-shot parse.
 * Only buf[0..max_head) is ever read. m is reset on every call; on UP_OK its slices borrow
 * buf and stay valid while buf does.
 * Returns:
 *   UP_OK       the head is complete: m is filled, m->head_len is its size;
 *   UP_EAGAIN   more bytes are needed (len < max_head);
 *   UP_ELIMIT   head larger than max_head or more than max_headers headers (err_status 431);
 *   UP_EPROTO   malformed (err_status 400, or 505 for an unsupported version), with
 *               m->err_reason set. Rejected: bare LF or bare CR (reported as soon as seen,
 *               before the head is complete), obs-fold, empty or invalid header names,
 *               whitespace before the colon, control characters in values, empty, non-digit,
 *               list-form ("5, 5"), overflowing or conflicting Content-Length (repeats of one
 *               value are allowed), Transfer-Encoding together with Content-Length, empty
 *               Transfer-Encoding, chunked applied twice, Transfer-Encoding not ending in
 *               chunked or in an HTTP/1.0 request, empty request line, bad methods or
 *               targets, HTTP versions other than 1.0/1.1;
 *   UP_EINVAL   m is NULL, buf is NULL with len > 0, or headers is NULL with max_headers > 0. */
UP_NODISCARD int up_h1_parse_request(const uint8_t *buf, size_t len, size_t *scan,
                                     struct up_h1_msg *m, struct up_h1_header *headers,
                                     size_t max_headers, size_t max_head);

/* Same for a response head ("HTTP/1.1 101 Switching Protocols"), with the same err_status
 * values for the caller to map. Status must be 3 digits 100..599; the reason phrase may be
 * empty and its leading SP may be missing ("HTTP/1.1 200"). Transfer-Encoding not ending in
 * chunked is accepted here and sets conn_close (body delimited by the close). */
UP_NODISCARD int up_h1_parse_response(const uint8_t *buf, size_t len, size_t *scan,
                                      struct up_h1_msg *m, struct up_h1_header *headers,
                                      size_t max_headers, size_t max_head);

/* RFC 9110 §5.6.2 tchar (token characters: header names, methods, chunk extension names). */
bool up_h1_is_tchar(uint8_t c);
/* RFC 9110 §5.5 field-vchar plus SP and HTAB: everything but CTLs (NUL included) and DEL;
 * obs-text passes. What header values (and reason phrases) may hold. */
bool up_h1_is_field_char(uint8_t c);

/* Return the first header named name (case-insensitive), or NULL. */
const struct up_h1_header *up_h1_find(const struct up_h1_msg *m, const char *name);

/* Whether the comma-separated list value[0..len) contains token (case-insensitive, OWS
 * around elements ignored), e.g. Connection: keep-alive, Upgrade. */
bool up_h1_list_has(const char *value, size_t len, const char *token);

#endif
