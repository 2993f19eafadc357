#include "proto/h1.h"

#include <string.h>

#include "base/str.h"

/* Facts gathered from the header fields that only make sense once all of them are seen. */
struct h1_fields {
    bool cl_seen;
    bool te_seen;
    bool te_any_coding;   /* at least one non-empty transfer coding */
    bool te_last_chunked; /* the last coding so far is "chunked" */
    bool te_chunked_seen; /* "chunked" already appeared once */
    bool conn_close;
    bool conn_keep_alive;
};

static bool is_digit(uint8_t c)
{
    return c >= '0' && c <= '9';
}

static bool is_ows(uint8_t c)
{
    return c == ' ' || c == '\t';
}

/* RFC 9110 §5.6.2 tchar. */
bool up_h1_is_tchar(uint8_t c)
{
    if (is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
        return true;
    }
    switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '.':
    case '^':
    case '_':
    case '`':
    case '|':
    case '~':
        return true;
    default:
        return false;
    }
}

/* RFC 9110 §5.5 field-vchar plus SP and HTAB: everything but CTLs (NUL included) and DEL.
 * obs-text (0x80..0xFF) is passed through untouched. The same set is used for reason-phrase
 * (RFC 9112 §4). */
bool up_h1_is_field_char(uint8_t c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7F);
}

static int fail(struct up_h1_msg *m, int err, int status, const char *reason)
{
    m->err_reason = reason;
    m->err_status = status;
    return err;
}

static int bad(struct up_h1_msg *m, const char *reason)
{
    return fail(m, UP_EPROTO, 400, reason);
}

static void msg_reset(struct up_h1_msg *m, struct up_h1_header *headers)
{
    *m = (struct up_h1_msg){
        .headers = headers,
        .content_length = -1,
    };
}

/* Find the end of the head: the CRLFCRLF, scanning only bytes the previous call on the same
 * buffer did not see (*scan) so that a head trickling in one byte per read costs O(total).
 * Every line end is checked on the way: a bare LF or a bare CR fails here, before the head is
 * complete, because no later byte can repair it (RFC 9112 §2.2). Each check looks only at the
 * current byte and the ones before it, so resuming at *scan gives the same answer as
 * rescanning from 0. Nothing past max_head is examined: that caps the work per connection
 * and makes len >= max_head without a terminator fail immediately. */
static int find_head_end(const uint8_t *buf, size_t len, size_t *scan, size_t max_head,
                         struct up_h1_msg *m, size_t *head_len)
{
    size_t end = len < max_head ? len : max_head;
    size_t i = scan ? *scan : 0;
    /* A hint from another buffer or another limit: start over rather than trust it. */
    if (i > end) {
        i = 0;
    }
    for (; i < end; i++) {
        uint8_t c = buf[i];
        if (c != '\n') {
            if (i > 0 && buf[i - 1] == '\r') {
                return bad(m, "h1: bare CR");
            }
            continue;
        }
        if (i == 0 || buf[i - 1] != '\r') {
            return bad(m, "h1: bare LF");
        }
        /* buf[i - 2] == LF implies buf[i - 3] == CR, or it would have failed as bare LF. */
        if (i >= 3 && buf[i - 2] == '\n') {
            *head_len = i + 1;
            if (scan) {
                *scan = i;
            }
            return UP_OK;
        }
    }
    if (scan) {
        *scan = i;
    }
    if (len >= max_head) {
        return fail(m, UP_ELIMIT, 431, "h1: head too large");
    }
    return UP_EAGAIN;
}

/* "HTTP/" DIGIT "." DIGIT (RFC 9112 §2.3); the name is case-sensitive. A well-formed version
 * other than 1.0/1.1 gets 505, anything else 400. */
static int parse_version(const uint8_t *s, size_t n, struct up_h1_msg *m)
{
    if (n != 8 || memcmp(s, "HTTP/", 5) != 0 || !is_digit(s[5]) || s[6] != '.' || !is_digit(s[7])) {
        return bad(m, "h1: malformed HTTP version");
    }
    if (s[5] != '1' || (s[7] != '0' && s[7] != '1')) {
        return fail(m, UP_EPROTO, 505, "h1: unsupported HTTP version");
    }
    m->minor_version = s[7] - '0';
    return UP_OK;
}

/* method SP request-target SP HTTP-version (RFC 9112 §3), single SPs only: accepting other
 * whitespace is what lets two parsers split the same line differently. */
static int parse_request_line(const uint8_t *s, size_t n, struct up_h1_msg *m)
{
    if (n == 0) {
        return bad(m, "h1: empty request line");
    }
    size_t i = 0;
    while (i < n && up_h1_is_tchar(s[i])) {
        i++;
    }
    if (i == 0 || i == n || s[i] != ' ') {
        return bad(m, "h1: invalid method");
    }
    m->method = (const char *)s;
    m->method_len = i;
    size_t t = ++i;
    /* Only VCHAR: every request-target form (RFC 9112 §3.2) is ASCII without spaces. */
    while (i < n && s[i] > 0x20 && s[i] < 0x7F) {
        i++;
    }
    if (i == t || i == n || s[i] != ' ') {
        return bad(m, "h1: invalid request target");
    }
    m->target = (const char *)(s + t);
    m->target_len = i - t;
    i++;
    return parse_version(s + i, n - i, m);
}

/* HTTP-version SP status-code SP [ reason-phrase ] (RFC 9112 §4). A line that stops right
 * after the status code is accepted, as curl and browsers do. */
static int parse_status_line(const uint8_t *s, size_t n, struct up_h1_msg *m)
{
    if (n < 8) {
        return bad(m, "h1: malformed status line");
    }
    int rv = parse_version(s, 8, m);
    if (rv < 0) {
        return rv;
    }
    if (n < 12 || s[8] != ' ' || !is_digit(s[9]) || !is_digit(s[10]) || !is_digit(s[11])) {
        return bad(m, "h1: malformed status code");
    }
    int status = (s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0');
    if (status < 100 || status > 599) {
        return bad(m, "h1: status code out of range");
    }
    size_t r = n;
    if (n > 12) {
        if (s[12] != ' ') {
            return bad(m, "h1: malformed status code");
        }
        r = 13;
    }
    for (size_t i = r; i < n; i++) {
        if (!up_h1_is_field_char(s[i])) {
            return bad(m, "h1: control character in reason phrase");
        }
    }
    m->status = status;
    m->reason = (const char *)(s + r);
    m->reason_len = n - r;
    return UP_OK;
}

/* Next non-empty element of a comma-separated list with OWS around elements (RFC 9110 §5.6.1),
 * starting at *off. Returns false at the end of the list. */
static bool list_next(const char *v, size_t n, size_t *off, const char **elt, size_t *elt_len)
{
    size_t i = *off;
    while (i < n) {
        size_t start = i;
        while (i < n && v[i] != ',') {
            i++;
        }
        size_t end = i;
        if (i < n) {
            i++;
        }
        while (start < end && is_ows((uint8_t)v[start])) {
            start++;
        }
        while (end > start && is_ows((uint8_t)v[end - 1])) {
            end--;
        }
        if (end > start) {
            *elt = v + start;
            *elt_len = end - start;
            *off = i;
            return true;
        }
    }
    *off = i;
    return false;
}

/* Content-Length = 1*DIGIT (RFC 9110 §8.6). A list ("5, 5") is refused rather than folded:
 * the relay never needs it and every extra accepted form is a smuggling surface. Identical
 * repeated fields are folded, different ones are fatal. */
static int on_content_length(const struct up_h1_header *h, struct h1_fields *f, struct up_h1_msg *m)
{
    if (h->value_len == 0) {
        return bad(m, "h1: empty Content-Length");
    }
    int64_t v = 0;
    for (size_t i = 0; i < h->value_len; i++) {
        uint8_t c = (uint8_t)h->value[i];
        if (!is_digit(c)) {
            return bad(m, "h1: invalid Content-Length");
        }
        int64_t d = c - '0';
        if (v > (INT64_MAX - d) / 10) {
            return bad(m, "h1: Content-Length too large");
        }
        v = v * 10 + d;
    }
    if (f->cl_seen && v != m->content_length) {
        return bad(m, "h1: conflicting Content-Length");
    }
    f->cl_seen = true;
    m->content_length = v;
    return UP_OK;
}

/* Transfer-Encoding may be split over several fields; only the order of codings matters
 * (RFC 9110 §5.3). chunked must not be applied twice (RFC 9112 §7). */
static int on_transfer_encoding(const struct up_h1_header *h, struct h1_fields *f,
                                struct up_h1_msg *m)
{
    size_t off = 0;
    const char *elt;
    size_t elt_len;
    f->te_seen = true;
    while (list_next(h->value, h->value_len, &off, &elt, &elt_len)) {
        bool chunked = up_str_ieq(elt, elt_len, "chunked");
        if (chunked && f->te_chunked_seen) {
            return bad(m, "h1: chunked applied twice");
        }
        f->te_any_coding = true;
        f->te_chunked_seen = f->te_chunked_seen || chunked;
        f->te_last_chunked = chunked;
    }
    return UP_OK;
}

static void on_connection(const struct up_h1_header *h, struct h1_fields *f, struct up_h1_msg *m)
{
    if (up_h1_list_has(h->value, h->value_len, "close")) {
        f->conn_close = true;
    }
    if (up_h1_list_has(h->value, h->value_len, "keep-alive")) {
        f->conn_keep_alive = true;
    }
    if (up_h1_list_has(h->value, h->value_len, "upgrade")) {
        m->conn_upgrade = true;
    }
}

/* field-name ":" OWS field-value OWS (RFC 9112 §5). */
static int parse_header_line(const uint8_t *s, size_t n, struct up_h1_header *h,
                             struct up_h1_msg *m)
{
    /* RFC 9112 §5.2: a server must reject obs-fold (or rewrite it); we never rewrite. A
     * leading SP on the first field line is the same attack (RFC 9112 §2.2). */
    if (is_ows(s[0])) {
        return bad(m, "h1: obs-fold");
    }
    size_t i = 0;
    while (i < n && up_h1_is_tchar(s[i])) {
        i++;
    }
    if (i == n) {
        return bad(m, "h1: header without colon");
    }
    if (s[i] != ':') {
        if (is_ows(s[i])) {
            size_t j = i;
            while (j < n && is_ows(s[j])) {
                j++;
            }
            /* RFC 9112 §5.1: whitespace before the colon must be rejected with 400. */
            if (j < n && s[j] == ':') {
                return bad(m, "h1: whitespace before colon");
            }
        }
        return bad(m, "h1: invalid header name");
    }
    if (i == 0) {
        return bad(m, "h1: empty header name");
    }
    for (size_t j = i + 1; j < n; j++) {
        if (!up_h1_is_field_char(s[j])) {
            return bad(m, "h1: control character in header value");
        }
    }
    size_t v = i + 1;
    size_t e = n;
    while (v < e && is_ows(s[v])) {
        v++;
    }
    while (e > v && is_ows(s[e - 1])) {
        e--;
    }
    h->name = (const char *)s;
    h->name_len = i;
    h->value = (const char *)(s + v);
    h->value_len = e - v;
    return UP_OK;
}

static int parse_head(const uint8_t *buf, size_t len, size_t *scan, struct up_h1_msg *m,
                      struct up_h1_header *headers, size_t max_headers, size_t max_head,
                      bool is_request)
{
    if (!m) {
        return UP_EINVAL;
    }
    msg_reset(m, headers);
    if ((!buf && len > 0) || (!headers && max_headers > 0)) {
        return UP_EINVAL;
    }
    size_t head_len = 0;
    int rv = find_head_end(buf, len, scan, max_head, m, &head_len);
    if (rv != UP_OK) {
        return rv;
    }
    /* From here every CR in buf[0..head_len) is followed by LF and the head ends with an
     * empty line, so each line is found with one memchr and never runs past head_len. */
    const uint8_t *cr = memchr(buf, '\r', head_len);
    size_t pos = 0;
    size_t eol = (size_t)(cr - buf);
    rv = is_request ? parse_request_line(buf, eol, m) : parse_status_line(buf, eol, m);
    if (rv < 0) {
        return rv;
    }
    struct h1_fields f = {0};
    for (pos = eol + 2; pos + 2 < head_len; pos = eol + 2) {
        cr = memchr(buf + pos, '\r', head_len - pos);
        eol = (size_t)(cr - buf);
        if (m->n_headers >= max_headers) {
            return fail(m, UP_ELIMIT, 431, "h1: too many headers");
        }
        struct up_h1_header *h = &headers[m->n_headers];
        rv = parse_header_line(buf + pos, eol - pos, h, m);
        if (rv < 0) {
            return rv;
        }
        m->n_headers++;
        if (up_str_ieq(h->name, h->name_len, "content-length")) {
            rv = on_content_length(h, &f, m);
        } else if (up_str_ieq(h->name, h->name_len, "transfer-encoding")) {
            rv = on_transfer_encoding(h, &f, m);
        } else if (up_str_ieq(h->name, h->name_len, "connection")) {
            on_connection(h, &f, m);
        }
        if (rv < 0) {
            return rv;
        }
    }
    if (f.te_seen) {
        /* RFC 9112 §6.1: both present is the classic request-smuggling setup. */
        if (f.cl_seen) {
            return bad(m, "h1: Transfer-Encoding with Content-Length");
        }
        if (!f.te_any_coding) {
            return bad(m, "h1: empty Transfer-Encoding");
        }
        if (is_request) {
            /* RFC 9112 §6.3: a request body whose length cannot be known gets 400. */
            if (!f.te_last_chunked) {
                return bad(m, "h1: Transfer-Encoding does not end in chunked");
            }
            /* RFC 9112 §6.1: HTTP/1.0 framing with a transfer coding is faulty. */
            if (m->minor_version == 0) {
                return bad(m, "h1: Transfer-Encoding in HTTP/1.0");
            }
        }
        m->chunked = f.te_last_chunked;
    }
    m->conn_close = f.conn_close || (m->minor_version == 0 && !f.conn_keep_alive);
    /* RFC 9112 §6.3: a response body not ending in chunked runs until the close. */
    if (f.te_seen && !m->chunked) {
        m->conn_close = true;
    }
    m->head_len = head_len;
    return UP_OK;
}

int up_h1_parse_request(const uint8_t *buf, size_t len, size_t *scan, struct up_h1_msg *m,
                        struct up_h1_header *headers, size_t max_headers, size_t max_head)
{
    return parse_head(buf, len, scan, m, headers, max_headers, max_head, true);
}

int up_h1_parse_response(const uint8_t *buf, size_t len, size_t *scan, struct up_h1_msg *m,
                         struct up_h1_header *headers, size_t max_headers, size_t max_head)
{
    return parse_head(buf, len, scan, m, headers, max_headers, max_head, false);
}

const struct up_h1_header *up_h1_find(const struct up_h1_msg *m, const char *name)
{
    if (!m || !name) {
        return NULL;
    }
    for (size_t i = 0; i < m->n_headers; i++) {
        const struct up_h1_header *h = &m->headers[i];
        if (up_str_ieq(h->name, h->name_len, name)) {
            return h;
        }
    }
    return NULL;
}

bool up_h1_list_has(const char *value, size_t len, const char *token)
{
    if (!value || !token) {
        return false;
    }
    size_t off = 0;
    const char *elt;
    size_t elt_len;
    while (list_next(value, len, &off, &elt, &elt_len)) {
        if (up_str_ieq(elt, elt_len, token)) {
            return true;
        }
    }
    return false;
}
