/* HTTP/1.1 message-body framer (RFC 9112 §6, §7.1). Sans-IO and copy-free: it never decodes
 * and never copies, it only counts, so that a relay can forward a body unchanged (chunked
 * stays chunked on the wire) and still know the exact byte where it ends and the next head on
 * a keep-alive connection begins. The caller embeds one struct up_h1body per message body. */
#ifndef UP_PROTO_H1BODY_H
#define UP_PROTO_H1BODY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "proto/h1.h"

/* Defaults set by up_h1body_init(); up_h1body_set_limits() changes them. */
#define UP_H1B_MAX_CHUNK_LINE 4096 /* chunk-size line incl. extensions, CRLF */
#define UP_H1B_MAX_TRAILERS 16384  /* whole trailer section (field lines with their CRLFs) */

/* How a message body is delimited (RFC 9112 §6.3). */
enum up_h1b_kind {
    UP_H1B_NONE,    /* no body: complete before its first byte */
    UP_H1B_LENGTH,  /* exactly `length` bytes (Content-Length) */
    UP_H1B_CHUNKED, /* chunked transfer coding, up to and including the final CRLF */
    UP_H1B_CLOSE,   /* everything until the connection closes (response or tunnel only) */
};

/* Framer states (explicit, STYLE §7). The chunk-line states follow RFC 9112 §7.1.1:
 * chunk-ext = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] ). They are contiguous, from
 * UP_H1B_ST_SIZE to UP_H1B_ST_SIZE_LF, and h1body.c relies on that order. */
enum up_h1b_state {
    UP_H1B_ST_LENGTH,      /* counting down the remaining bytes of a Content-Length body */
    UP_H1B_ST_CLOSE,       /* close-delimited: everything belongs to the body */
    UP_H1B_ST_SIZE,        /* chunk-size hex digits (at least one) */
    UP_H1B_ST_EXT_END,     /* after a size, an ext-name or an ext-val: ";", BWS or CR */
    UP_H1B_ST_EXT_WS,      /* BWS after a size or an ext-val: only more BWS or ";" */
    UP_H1B_ST_EXT_NAME0,   /* after ";": BWS, then the first tchar of an ext-name */
    UP_H1B_ST_EXT_NAME,    /* inside an ext-name */
    UP_H1B_ST_EXT_NAME_WS, /* BWS after an ext-name: more BWS, "=" or ";" */
    UP_H1B_ST_EXT_VAL0,    /* after "=": BWS, then a token or a quoted-string */
    UP_H1B_ST_EXT_TOKEN,   /* inside a token ext-val */
    UP_H1B_ST_EXT_QUOTED,  /* inside a quoted-string ext-val */
    UP_H1B_ST_EXT_ESCAPE,  /* after a backslash in a quoted-string */
    UP_H1B_ST_SIZE_LF,     /* CR of the chunk line seen: LF must follow */
    UP_H1B_ST_DATA,        /* chunk-data: `remaining` bytes left */
    UP_H1B_ST_DATA_CR,     /* chunk-data complete: CR must follow */
    UP_H1B_ST_DATA_LF,     /* CR after chunk-data seen: LF must follow */
    UP_H1B_ST_TRL_START,   /* start of a trailer line, or of the final CRLF */
    UP_H1B_ST_TRL_NAME,    /* inside a trailer field name */
    UP_H1B_ST_TRL_VALUE,   /* after the colon of a trailer field line */
    UP_H1B_ST_TRL_LF,      /* CR at the end of a trailer field line seen: LF must follow */
    UP_H1B_ST_FINAL_LF,    /* CR of the final empty line seen: LF must follow */
    UP_H1B_ST_DONE,        /* the body is complete; further input is the next message */
    UP_H1B_ST_ERROR,       /* an error occurred; feed returns `err` again */
};

struct up_h1body {
    enum up_h1b_kind kind;
    enum up_h1b_state state;
    /* LENGTH: body bytes left. CHUNKED: the chunk size while its line is parsed, then the
     * chunk-data bytes left. */
    uint64_t remaining;
    unsigned size_digits;  /* hex digits of the current chunk-size, leading zeros included */
    size_t line_bytes;     /* bytes of the current chunk line so far, CRLF included */
    size_t trailer_bytes;  /* bytes of trailer field lines so far, their CRLFs included */
    size_t max_chunk_line; /* limits: UP_H1B_MAX_CHUNK_LINE, UP_H1B_MAX_TRAILERS by default */
    size_t max_trailers;
    int err; /* ST_ERROR: the UP_EPROTO or UP_ELIMIT returned again on every call */
    /* Reason for the last UP_EPROTO/UP_ELIMIT, a static string; NULL otherwise. */
    const char *err_reason;
};

/* Initialise b to frame one body of the given kind; length is used for UP_H1B_LENGTH only.
 * The limits are set to UP_H1B_MAX_CHUNK_LINE and UP_H1B_MAX_TRAILERS. Re-initialise the same
 * struct for the next message on the connection; b holds no resources, so there is no _fini. */
void up_h1body_init(struct up_h1body *b, enum up_h1b_kind kind, uint64_t length);

/* Replace the limits set by up_h1body_init(). Call it before the first feed. max_chunk_line
 * counts every byte of one chunk-size line, extensions and CRLF included (the last-chunk line
 * too), so a value below 3 refuses every chunked body. max_trailers counts the bytes of the
 * trailer field lines with their CRLFs, not the final empty line: 0 allows no trailers. */
void up_h1body_set_limits(struct up_h1body *b, size_t max_chunk_line, size_t max_trailers);

/* Consume the body bytes at the front of in[0..len). Nothing is copied or changed: the caller
 * forwards in[0..*used) as they are and keeps in[*used..len) for the next message's head.
 *   *used  the bytes that belong to this body, always <= len. It stops exactly at the end of
 *          the body: after `length` bytes for LENGTH; for CHUNKED after the last-chunk, the
 *          trailer section and the final CRLF. On an error it is the number of bytes before
 *          the offending one (they were valid, but the message is lost anyway).
 *   *done  the body is complete: immediately for NONE and for LENGTH 0, never for CLOSE,
 *          which consumes everything and is ended by the connection's EOF (the caller's
 *          business: an EOF before done on LENGTH or CHUNKED is a truncated message).
 * A body may arrive split at any byte (inside the hex size, a CRLF, a trailer): the result
 * depends only on the concatenated input. Once done, every call consumes 0 and sets *done.
 * Returns:
 *   UP_OK       all of in was consumed, or the body ended at in + *used;
 *   UP_EPROTO   malformed chunked framing, with b->err_reason set: empty chunk size, a
 *               non-hex digit, more than 16 hex digits (leading zeros count) or a size of
 *               2^63 or more, a malformed chunk extension (only the RFC 9112 §7.1.1 forms
 *               ";name", ";name=token", ";name=\"quoted \\\" string\"" with optional BWS
 *               around ";" and "="; whitespace before the CRLF is refused), no CRLF right
 *               after the chunk data, a bare CR or bare LF anywhere in a chunk line or the
 *               trailers, a trailer line that is not a field line (obs-fold, empty or
 *               invalid name, no colon, control character in the value);
 *   UP_ELIMIT   a chunk line longer than max_chunk_line or a trailer section larger than
 *               max_trailers, with b->err_reason set;
 *   UP_EINVAL   b, used or done is NULL, or in is NULL with len > 0 (b is left unchanged).
 * After UP_EPROTO or UP_ELIMIT every call returns the same code with *used = 0. */
UP_NODISCARD int up_h1body_feed(struct up_h1body *b, const uint8_t *in, size_t len, size_t *used,
                                bool *done);

/* The framing of the body of request m, a head parsed by up_h1_parse_request() (RFC 9112
 * §6.3): chunked → UP_H1B_CHUNKED, a Content-Length → UP_H1B_LENGTH with *length set (also for
 * Content-Length: 0, which is done at once: test *done, not the kind, to know whether a body
 * follows), otherwise UP_H1B_NONE. Never UP_H1B_CLOSE: the parser already refused the request
 * framings whose length cannot be known. *length is set to 0 for the other kinds; length may
 * be NULL. m NULL gives UP_H1B_NONE. */
enum up_h1b_kind up_h1body_request(const struct up_h1_msg *m, uint64_t *length);

/* The framing of the body of response m, a head parsed by up_h1_parse_response(), to a
 * request whose method was HEAD (head_request) or CONNECT (connect_request), in the order of
 * RFC 9112 §6.3: HEAD, or status 1xx, 204 or 304 → UP_H1B_NONE (after a 1xx other than 101
 * the final response follows on the same connection; after a 101 the connection is no longer
 * HTTP/1.1); a 2xx to CONNECT → UP_H1B_CLOSE (a tunnel: framing headers are ignored);
 * chunked → UP_H1B_CHUNKED; a Content-Length → UP_H1B_LENGTH with *length set (0 included);
 * otherwise UP_H1B_CLOSE, which includes a Transfer-Encoding not ending in chunked (the
 * parser then reports chunked false, no Content-Length and conn_close). *length is set to 0
 * for the other kinds; length may be NULL. m NULL gives UP_H1B_CLOSE. */
enum up_h1b_kind up_h1body_response(const struct up_h1_msg *m, bool head_request,
                                    bool connect_request, uint64_t *length);

#endif
