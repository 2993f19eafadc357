#include "proto/h1body.h"

#include <string.h>

/* A chunk size must stay below 2^63, like a Content-Length (h1.c): a size that a signed
 * 64-bit peer would read as negative is exactly where two parsers start to disagree. Sixteen
 * hex digits can hold it; more can only be padding or an attack. */
#define MAX_SIZE_DIGITS 16
#define MAX_CHUNK_SIZE ((uint64_t)INT64_MAX)

static bool is_ows(uint8_t c)
{
    return c == ' ' || c == '\t';
}

/* Value of a hex digit (either case), or -1. */
static int hex_value(uint8_t c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* RFC 9110 §5.6.4 qdtext: HTAB, SP, VCHAR except DQUOTE and backslash, obs-text. */
static bool is_qdtext(uint8_t c)
{
    return c == '\t' || c == ' ' || c == 0x21 || (c >= 0x23 && c <= 0x5B) ||
           (c >= 0x5D && c <= 0x7E) || c >= 0x80;
}

void up_h1body_init(struct up_h1body *b, enum up_h1b_kind kind, uint64_t length)
{
    memset(b, 0, sizeof(*b));
    b->kind = kind;
    b->max_chunk_line = UP_H1B_MAX_CHUNK_LINE;
    b->max_trailers = UP_H1B_MAX_TRAILERS;
    switch (kind) {
    case UP_H1B_LENGTH:
        b->remaining = length;
        b->state = length > 0 ? UP_H1B_ST_LENGTH : UP_H1B_ST_DONE;
        break;
    case UP_H1B_CHUNKED:
        b->state = UP_H1B_ST_SIZE;
        break;
    case UP_H1B_CLOSE:
        b->state = UP_H1B_ST_CLOSE;
        break;
    case UP_H1B_NONE:
    default:
        b->kind = UP_H1B_NONE;
        b->state = UP_H1B_ST_DONE;
        break;
    }
}

void up_h1body_set_limits(struct up_h1body *b, size_t max_chunk_line, size_t max_trailers)
{
    b->max_chunk_line = max_chunk_line;
    b->max_trailers = max_trailers;
}

static int fail(struct up_h1body *b, int err, const char *reason)
{
    b->state = UP_H1B_ST_ERROR;
    b->err = err;
    b->err_reason = reason;
    return err;
}

static int bad(struct up_h1body *b, const char *reason)
{
    return fail(b, UP_EPROTO, reason);
}

/* The byte that may end a size, an ext-name or an ext-val: the CR of the line, a ";" that
 * starts the next extension, or BWS, which must then lead to a ";" (BWS is only allowed
 * before ";" and "=": whitespace before the CRLF is not in the grammar). */
static int ext_end(struct up_h1body *b, uint8_t c)
{
    if (c == '\r') {
        b->state = UP_H1B_ST_SIZE_LF;
    } else if (c == ';') {
        b->state = UP_H1B_ST_EXT_NAME0;
    } else if (is_ows(c)) {
        b->state = UP_H1B_ST_EXT_WS;
    } else if (c == '\n') {
        return bad(b, "h1body: bare LF");
    } else {
        return bad(b, "h1body: invalid chunk extension");
    }
    return UP_OK;
}

static int on_size_digit(struct up_h1body *b, uint8_t c)
{
    int d = hex_value(c);
    if (d < 0) {
        if (b->size_digits == 0) {
            if (c == '\r' || c == ';') {
                return bad(b, "h1body: empty chunk size");
            }
            if (c == '\n') {
                return bad(b, "h1body: bare LF");
            }
            return bad(b, "h1body: invalid chunk size");
        }
        if (c != '\r' && c != '\n' && c != ';' && !is_ows(c)) {
            return bad(b, "h1body: invalid chunk size");
        }
        return ext_end(b, c);
    }
    if (++b->size_digits > MAX_SIZE_DIGITS) {
        return bad(b, "h1body: chunk size has more than 16 hex digits");
    }
    if (b->remaining > (MAX_CHUNK_SIZE - (uint64_t)d) / 16) {
        return bad(b, "h1body: chunk size too large");
    }
    b->remaining = b->remaining * 16 + (uint64_t)d;
    return UP_OK;
}

/* One byte of a chunk-size line (RFC 9112 §7.1, §7.1.1), after the line limit was checked. */
static int on_line_byte(struct up_h1body *b, uint8_t c)
{
    switch (b->state) {
    case UP_H1B_ST_SIZE:
        return on_size_digit(b, c);
    case UP_H1B_ST_EXT_END:
        return ext_end(b, c);
    case UP_H1B_ST_EXT_WS:
        if (c == ';') {
            b->state = UP_H1B_ST_EXT_NAME0;
            return UP_OK;
        }
        if (is_ows(c)) {
            return UP_OK;
        }
        if (c == '\r') {
            return bad(b, "h1body: whitespace before CRLF in chunk line");
        }
        break;
    case UP_H1B_ST_EXT_NAME0:
        if (up_h1_is_tchar(c)) {
            b->state = UP_H1B_ST_EXT_NAME;
            return UP_OK;
        }
        if (is_ows(c)) {
            return UP_OK;
        }
        break;
    case UP_H1B_ST_EXT_NAME:
        if (up_h1_is_tchar(c)) {
            return UP_OK;
        }
        if (c == '=') {
            b->state = UP_H1B_ST_EXT_VAL0;
            return UP_OK;
        }
        if (is_ows(c)) {
            b->state = UP_H1B_ST_EXT_NAME_WS;
            return UP_OK;
        }
        return ext_end(b, c);
    case UP_H1B_ST_EXT_NAME_WS:
        if (c == '=') {
            b->state = UP_H1B_ST_EXT_VAL0;
            return UP_OK;
        }
        if (c == ';') {
            b->state = UP_H1B_ST_EXT_NAME0;
            return UP_OK;
        }
        if (is_ows(c)) {
            return UP_OK;
        }
        if (c == '\r') {
            return bad(b, "h1body: whitespace before CRLF in chunk line");
        }
        break;
    case UP_H1B_ST_EXT_VAL0:
        if (up_h1_is_tchar(c)) {
            b->state = UP_H1B_ST_EXT_TOKEN;
            return UP_OK;
        }
        if (c == '"') {
            b->state = UP_H1B_ST_EXT_QUOTED;
            return UP_OK;
        }
        if (is_ows(c)) {
            return UP_OK;
        }
        break;
    case UP_H1B_ST_EXT_TOKEN:
        if (up_h1_is_tchar(c)) {
            return UP_OK;
        }
        return ext_end(b, c);
    case UP_H1B_ST_EXT_QUOTED:
        if (c == '"') {
            b->state = UP_H1B_ST_EXT_END;
            return UP_OK;
        }
        if (c == '\\') {
            b->state = UP_H1B_ST_EXT_ESCAPE;
            return UP_OK;
        }
        if (is_qdtext(c)) {
            return UP_OK;
        }
        break;
    case UP_H1B_ST_EXT_ESCAPE:
        if (up_h1_is_field_char(c)) {
            b->state = UP_H1B_ST_EXT_QUOTED;
            return UP_OK;
        }
        break;
    case UP_H1B_ST_SIZE_LF:
        if (c != '\n') {
            return bad(b, "h1body: bare CR");
        }
        /* RFC 9112 §7.1: a size of 0 (any number of zeros) is the last-chunk. */
        b->state = b->remaining == 0 ? UP_H1B_ST_TRL_START : UP_H1B_ST_DATA;
        return UP_OK;
    default:
        break;
    }
    if (c == '\n') {
        return bad(b, "h1body: bare LF");
    }
    return bad(b, "h1body: invalid chunk extension");
}

/* One byte of the trailer section (RFC 9112 §7.1.2): field lines as in a head (RFC 9112 §5),
 * held to the same rules h1.c applies there, then the empty line. The CR of the final empty
 * line does not count toward max_trailers. */
static int on_trailer_byte(struct up_h1body *b, uint8_t c)
{
    switch (b->state) {
    case UP_H1B_ST_TRL_START:
        if (c == '\r') {
            b->state = UP_H1B_ST_FINAL_LF;
            return UP_OK;
        }
        if (c == '\n') {
            return bad(b, "h1body: bare LF");
        }
        /* RFC 9112 §5.2: obs-fold is refused, never unfolded. */
        if (is_ows(c)) {
            return bad(b, "h1body: obs-fold in trailer");
        }
        if (c == ':') {
            return bad(b, "h1body: empty trailer name");
        }
        if (!up_h1_is_tchar(c)) {
            return bad(b, "h1body: invalid trailer name");
        }
        b->state = UP_H1B_ST_TRL_NAME;
        return UP_OK;
    case UP_H1B_ST_TRL_NAME:
        if (up_h1_is_tchar(c)) {
            return UP_OK;
        }
        if (c == ':') {
            b->state = UP_H1B_ST_TRL_VALUE;
            return UP_OK;
        }
        if (c == '\n') {
            return bad(b, "h1body: bare LF");
        }
        if (c == '\r') {
            return bad(b, "h1body: trailer without colon");
        }
        /* Whitespace before the colon included (RFC 9112 §5.1). */
        return bad(b, "h1body: invalid trailer name");
    case UP_H1B_ST_TRL_VALUE:
        if (up_h1_is_field_char(c)) {
            return UP_OK;
        }
        if (c == '\r') {
            b->state = UP_H1B_ST_TRL_LF;
            return UP_OK;
        }
        if (c == '\n') {
            return bad(b, "h1body: bare LF");
        }
        return bad(b, "h1body: control character in trailer value");
    case UP_H1B_ST_TRL_LF:
        if (c != '\n') {
            return bad(b, "h1body: bare CR");
        }
        b->state = UP_H1B_ST_TRL_START;
        return UP_OK;
    default:
        /* UP_H1B_ST_FINAL_LF, the only state left: feed_chunked() sends the others
         * elsewhere. */
        if (c != '\n') {
            return bad(b, "h1body: bare CR");
        }
        b->state = UP_H1B_ST_DONE;
        return UP_OK;
    }
}

static bool in_chunk_line(enum up_h1b_state s)
{
    return s >= UP_H1B_ST_SIZE && s <= UP_H1B_ST_SIZE_LF;
}

static bool in_trailer_line(enum up_h1b_state s)
{
    return s == UP_H1B_ST_TRL_NAME || s == UP_H1B_ST_TRL_VALUE || s == UP_H1B_ST_TRL_LF;
}

/* The chunked state machine over in[*off..len). Chunk data is skipped in one step; every
 * other byte goes through the per-byte states, whose limits are checked before the byte is
 * looked at, so the limit error comes at the same byte however the input is split. */
static int feed_chunked(struct up_h1body *b, const uint8_t *in, size_t len, size_t *off)
{
    size_t i = *off;
    int rv = UP_OK;
    while (i < len && b->state != UP_H1B_ST_DONE) {
        uint8_t c = in[i];
        switch (b->state) {
        case UP_H1B_ST_DATA: {
            size_t avail = len - i;
            size_t n = b->remaining < avail ? (size_t)b->remaining : avail;
            i += n;
            b->remaining -= n;
            if (b->remaining == 0) {
                b->state = UP_H1B_ST_DATA_CR;
            }
            continue;
        }
        case UP_H1B_ST_DATA_CR:
            if (c != '\r') {
                rv = bad(b, "h1body: missing CRLF after chunk data");
                goto out;
            }
            b->state = UP_H1B_ST_DATA_LF;
            break;
        case UP_H1B_ST_DATA_LF:
            if (c != '\n') {
                rv = bad(b, "h1body: missing CRLF after chunk data");
                goto out;
            }
            b->state = UP_H1B_ST_SIZE;
            b->size_digits = 0;
            b->line_bytes = 0;
            break;
        default:
            if (in_chunk_line(b->state)) {
                if (b->line_bytes >= b->max_chunk_line) {
                    rv = fail(b, UP_ELIMIT, "h1body: chunk line too long");
                    goto out;
                }
                b->line_bytes++;
                rv = on_line_byte(b, c);
            } else {
                /* A trailer field line starts with any byte but the CR of the final line. */
                bool counted =
                    in_trailer_line(b->state) || (b->state == UP_H1B_ST_TRL_START && c != '\r');
                if (counted) {
                    if (b->trailer_bytes >= b->max_trailers) {
                        rv = fail(b, UP_ELIMIT, "h1body: trailer section too large");
                        goto out;
                    }
                    b->trailer_bytes++;
                }
                rv = on_trailer_byte(b, c);
            }
            if (rv < 0) {
                goto out;
            }
            break;
        }
        i++;
    }
out:
    *off = i;
    return rv;
}

int up_h1body_feed(struct up_h1body *b, const uint8_t *in, size_t len, size_t *used, bool *done)
{
    if (used) {
        *used = 0;
    }
    if (done) {
        *done = false;
    }
    if (!b || !used || !done || (!in && len > 0)) {
        return UP_EINVAL;
    }
    size_t off = 0;
    int rv = UP_OK;
    switch (b->state) {
    case UP_H1B_ST_ERROR:
        return b->err;
    case UP_H1B_ST_DONE:
        break;
    case UP_H1B_ST_CLOSE:
        off = len;
        break;
    case UP_H1B_ST_LENGTH:
        off = b->remaining < len ? (size_t)b->remaining : len;
        b->remaining -= off;
        if (b->remaining == 0) {
            b->state = UP_H1B_ST_DONE;
        }
        break;
    default:
        rv = feed_chunked(b, in, len, &off);
        break;
    }
    *used = off;
    *done = b->state == UP_H1B_ST_DONE;
    return rv;
}

enum up_h1b_kind up_h1body_request(const struct up_h1_msg *m, uint64_t *length)
{
    if (length) {
        *length = 0;
    }
    if (!m) {
        return UP_H1B_NONE;
    }
    /* RFC 9112 §6.3 items 4-6; the parser has refused Transfer-Encoding that does not end in
     * chunked and Transfer-Encoding with Content-Length (items 3, 4). */
    if (m->chunked) {
        return UP_H1B_CHUNKED;
    }
    if (m->content_length >= 0) {
        if (length) {
            *length = (uint64_t)m->content_length;
        }
        return UP_H1B_LENGTH;
    }
    return UP_H1B_NONE;
}

enum up_h1b_kind up_h1body_response(const struct up_h1_msg *m, bool head_request,
                                    bool connect_request, uint64_t *length)
{
    if (length) {
        *length = 0;
    }
    if (!m) {
        return UP_H1B_CLOSE;
    }
    /* RFC 9112 §6.3 item 1: whatever the framing headers say. */
    if (head_request || (m->status >= 100 && m->status <= 199) || m->status == 204 ||
        m->status == 304) {
        return UP_H1B_NONE;
    }
    /* Item 2: the connection becomes a tunnel right after the header section. */
    if (connect_request && m->status >= 200 && m->status <= 299) {
        return UP_H1B_CLOSE;
    }
    /* Items 4, 5: the parser set chunked only when chunked is the final coding, and refused
     * Transfer-Encoding with Content-Length; any other Transfer-Encoding leaves both unset and
     * falls through to item 8. */
    if (m->chunked) {
        return UP_H1B_CHUNKED;
    }
    if (m->content_length >= 0) {
        if (length) {
            *length = (uint64_t)m->content_length;
        }
        return UP_H1B_LENGTH;
    }
    return UP_H1B_CLOSE;
}
