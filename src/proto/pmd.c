/* RFC 7692 permessage-deflate: negotiation, compressor and decompressor (see pmd.h). */
#include "proto/pmd.h"

#include <limits.h>
#include <string.h>

#include "base/alloc.h"
#include "base/str.h"

/* RFC 7692 §7.2.1-2: the flush marker the sender strips and the receiver appends. */
static const uint8_t pmd_tail[4] = {0x00, 0x00, 0xff, 0xff};
#define PMD_TAIL_LEN 4

/* Longest parameter value kept for checking; "15" fits, anything longer is invalid. */
#define PMD_VALUE_MAX 8
/* Growth step for the compressor's output. */
#define PMD_DEFLATE_CHUNK 4096

#define WS_CLOSE_PROTOCOL 1002     /* RFC 6455 §7.4.1 */
#define WS_CLOSE_INVALID_DATA 1007 /* RFC 6455 §7.4.1 */
#define WS_CLOSE_TOO_BIG 1009      /* RFC 6455 §7.4.1 */
#define WS_CLOSE_INTERNAL 1011     /* RFC 6455 §7.4.1 */

/* ---- Sec-WebSocket-Extensions parsing (RFC 6455 §9.1, RFC 9110 §5.6) ----------------- */

struct cursor {
    const char *p;
    const char *end;
};

/* What one extension element said; for permessage-deflate, also whether it is valid. */
struct offer {
    bool is_pmd;
    bool valid; /* no unknown or repeated parameter, every value well-formed */
    bool snct, cnct;
    bool has_sbits, has_cbits;
    bool cbits_value; /* client_max_window_bits came with a value */
    uint8_t sbits, cbits;
};

static bool is_tchar(char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
        return true;
    }
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static void skip_ows(struct cursor *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t')) {
        c->p++;
    }
}

static bool read_token(struct cursor *c, const char **tok, size_t *len)
{
    const char *s = c->p;
    while (c->p < c->end && is_tchar(*c->p)) {
        c->p++;
    }
    *tok = s;
    *len = (size_t)(c->p - s);
    return *len > 0;
}

/* token / quoted-string, unescaped into val (at most PMD_VALUE_MAX bytes kept; *len counts
 * them all). Returns false on a syntax error. *is_token tells whether the unescaped value is
 * a token, as RFC 6455 §9.1 requires of quoted values. */
static bool read_value(struct cursor *c, char val[PMD_VALUE_MAX], size_t *len, bool *is_token)
{
    size_t n = 0;
    bool tok = true;
    if (c->p < c->end && *c->p == '"') {
        c->p++;
        for (;;) {
            if (c->p == c->end) {
                return false;
            }
            unsigned char ch = (unsigned char)*c->p++;
            if (ch == '"') {
                break;
            }
            if (ch == '\\') {
                if (c->p == c->end) {
                    return false;
                }
                ch = (unsigned char)*c->p++;
            }
            /* qdtext and quoted-pair: HTAB, SP, VCHAR, obs-text; no other controls. */
            if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
                return false;
            }
            if (!is_tchar((char)ch)) {
                tok = false;
            }
            if (n < PMD_VALUE_MAX) {
                val[n] = (char)ch;
            }
            n++;
        }
        if (n == 0) {
            tok = false;
        }
    } else {
        const char *t;
        size_t tl;
        if (!read_token(c, &t, &tl)) {
            return false;
        }
        memcpy(val, t, tl < PMD_VALUE_MAX ? tl : PMD_VALUE_MAX);
        n = tl;
    }
    *len = n;
    *is_token = tok;
    return true;
}

/* RFC 7692 §7.1.2.1-2: a decimal integer 8..15 without leading zeros. */
static bool parse_bits(const char *v, size_t len, bool is_token, uint8_t *bits)
{
    if (!is_token || len == 0 || len > 2 || v[0] == '0') {
        return false;
    }
    unsigned n = 0;
    for (size_t i = 0; i < len; i++) {
        if (v[i] < '0' || v[i] > '9') {
            return false;
        }
        n = n * 10 + (unsigned)(v[i] - '0');
    }
    if (n < UP_PMD_MIN_WINDOW_BITS || n > UP_PMD_MAX_WINDOW_BITS) {
        return false;
    }
    *bits = (uint8_t)n;
    return true;
}

static bool name_is(const char *s, size_t len, const char *name)
{
    return up_str_ieq(s, len, name);
}

/* One permessage-deflate parameter: record it, or mark the offer invalid. */
static void offer_param(struct offer *o, const char *name, size_t nlen, bool has_value,
                        const char *val, size_t vlen, bool is_token)
{
    bool *seen = NULL;
    if (name_is(name, nlen, "server_no_context_takeover")) {
        seen = &o->snct;
    } else if (name_is(name, nlen, "client_no_context_takeover")) {
        seen = &o->cnct;
    } else if (name_is(name, nlen, "server_max_window_bits")) {
        seen = &o->has_sbits;
    } else if (name_is(name, nlen, "client_max_window_bits")) {
        seen = &o->has_cbits;
    } else {
        o->valid = false; /* RFC 7692 §7.1: not defined for this extension */
        return;
    }
    if (*seen) {
        o->valid = false; /* RFC 7692 §7.1: the same parameter twice */
        return;
    }
    *seen = true;
    if (seen == &o->snct || seen == &o->cnct) {
        /* RFC 7692 §7.1.1: these have no value. */
        if (has_value) {
            o->valid = false;
        }
    } else if (seen == &o->has_sbits) {
        /* RFC 7692 §7.1.2.1: the value is mandatory. */
        if (!has_value || !parse_bits(val, vlen, is_token, &o->sbits)) {
            o->valid = false;
        }
    } else {
        /* RFC 7692 §7.1.2.2: the value is optional in an offer. */
        o->cbits_value = has_value;
        if (has_value && !parse_bits(val, vlen, is_token, &o->cbits)) {
            o->valid = false;
        }
    }
}

/* Parse one list element at c (after any empty elements) into *o. Returns 1 with an
 * element, 0 at the end of the value, UP_EPROTO on a syntax error. */
static int next_extension(struct cursor *c, struct offer *o, const char **reason)
{
    memset(o, 0, sizeof(*o));
    o->valid = true;
    /* RFC 9110 §5.6.1: empty list elements are allowed and ignored. */
    for (;;) {
        skip_ows(c);
        if (c->p < c->end && *c->p == ',') {
            c->p++;
            continue;
        }
        break;
    }
    if (c->p == c->end) {
        return 0;
    }
    const char *name;
    size_t nlen;
    if (!read_token(c, &name, &nlen)) {
        *reason = "pmd: extension name is not a token";
        return UP_EPROTO;
    }
    o->is_pmd = up_str_ieq(name, nlen, UP_PMD_NAME);
    for (;;) {
        skip_ows(c);
        if (c->p == c->end) {
            return 1;
        }
        if (*c->p == ',') {
            c->p++;
            return 1;
        }
        if (*c->p != ';') {
            *reason = "pmd: expected ';' or ',' in Sec-WebSocket-Extensions";
            return UP_EPROTO;
        }
        c->p++;
        skip_ows(c);
        const char *pname;
        size_t plen;
        if (!read_token(c, &pname, &plen)) {
            *reason = "pmd: extension parameter is not a token";
            return UP_EPROTO;
        }
        skip_ows(c);
        bool has_value = false, is_token = false;
        char val[PMD_VALUE_MAX];
        size_t vlen = 0;
        if (c->p < c->end && *c->p == '=') {
            c->p++;
            skip_ows(c);
            if (!read_value(c, val, &vlen, &is_token)) {
                *reason = "pmd: bad extension parameter value";
                return UP_EPROTO;
            }
            has_value = true;
        }
        if (o->is_pmd) {
            offer_param(o, pname, plen, has_value, val, vlen, is_token);
        }
    }
}

/* ---- configuration ---------------------------------------------------------------------- */

struct eff_cfg {
    uint8_t bits;      /* our compressor */
    uint8_t peer_bits; /* what we ask of the peer */
    bool no_ctx, peer_no_ctx;
    int level, mem_level;
    uint64_t max_message;
    size_t max_mem;
};

static bool bits_ok(uint8_t b)
{
    return b == 0 || (b >= UP_PMD_MIN_WINDOW_BITS && b <= UP_PMD_MAX_WINDOW_BITS);
}

static int effective(const struct up_pmd_cfg *cfg, struct eff_cfg *e)
{
    if (!bits_ok(cfg->max_window_bits) || !bits_ok(cfg->peer_max_window_bits) || cfg->level < 0 ||
        cfg->level > 9 || cfg->mem_level < 0 || cfg->mem_level > 9) {
        return UP_EINVAL;
    }
    e->bits = cfg->max_window_bits ? cfg->max_window_bits : UP_PMD_MAX_WINDOW_BITS;
    e->peer_bits = cfg->peer_max_window_bits ? cfg->peer_max_window_bits : UP_PMD_MAX_WINDOW_BITS;
    e->no_ctx = cfg->no_context_takeover;
    e->peer_no_ctx = cfg->peer_no_context_takeover;
    e->level = cfg->level ? cfg->level : 6;
    e->mem_level = cfg->mem_level ? cfg->mem_level : 8;
    e->max_message = cfg->max_message_bytes ? cfg->max_message_bytes : UP_PMD_DEFAULT_MAX_MESSAGE;
    e->max_mem = cfg->max_mem_bytes ? cfg->max_mem_bytes : UP_PMD_DEFAULT_MAX_MEM;
    return UP_OK;
}

static uint8_t min_bits(uint8_t a, uint8_t b)
{
    return a < b ? a : b;
}

/* ---- negotiation: server ---------------------------------------------------------------- */

/* Decide on an acceptable offer (RFC 7692 §7.1) and write the response. */
static int accept_offer(const struct eff_cfg *e, const struct offer *o,
                        struct up_pmd_params *params, char *resp, size_t resp_cap)
{
    struct up_pmd_params p = {
        /* §7.1.1.1: the server may add server_no_context_takeover unasked. */
        .server_no_context_takeover = o->snct || e->no_ctx,
        /* §7.1.1.2: likewise client_no_context_takeover. */
        .client_no_context_takeover = o->cnct || e->peer_no_ctx,
        .server_max_window_bits = UP_PMD_MAX_WINDOW_BITS,
        .client_max_window_bits = UP_PMD_MAX_WINDOW_BITS,
    };
    char sbits[32] = "", cbits[32] = "";
    if (o->has_sbits) {
        /* §7.1.2.1: accept with the same or a smaller value. */
        p.server_max_window_bits = min_bits(o->sbits, e->bits);
        if (up_fmt(sbits, sizeof(sbits), "; server_max_window_bits=%u",
                   (unsigned)p.server_max_window_bits) < 0) {
            return UP_EINVAL;
        }
    }
    if (o->has_cbits) {
        uint8_t offered = o->cbits_value ? o->cbits : UP_PMD_MAX_WINDOW_BITS;
        p.client_max_window_bits = min_bits(offered, e->peer_bits);
        /* §7.1.2.2: only when offered, and then with a value. */
        if (p.client_max_window_bits < offered &&
            up_fmt(cbits, sizeof(cbits), "; client_max_window_bits=%u",
                   (unsigned)p.client_max_window_bits) < 0) {
            return UP_EINVAL;
        }
    }
    /* Without client_max_window_bits in the offer the client may use 15 bits (§7.1.2.2):
     * peer_max_window_bits is then only a wish, and we inflate with a 15-bit window. */
    if (up_fmt(resp, resp_cap, "%s%s%s%s%s", UP_PMD_NAME,
               p.server_no_context_takeover ? "; server_no_context_takeover" : "",
               p.client_no_context_takeover ? "; client_no_context_takeover" : "", sbits,
               cbits) < 0) {
        return UP_EINVAL;
    }
    *params = p;
    return UP_OK;
}

int up_pmd_server_accept(const struct up_pmd_cfg *cfg, const char *value, size_t len,
                         bool *accepted, struct up_pmd_params *params, char *resp, size_t resp_cap,
                         const char **reason)
{
    struct eff_cfg e;
    *accepted = false;
    *reason = NULL;
    if (effective(cfg, &e) < 0 || resp_cap < UP_PMD_MAX_HEADER) {
        return UP_EINVAL;
    }
    resp[0] = '\0';
    struct cursor c = {.p = value, .end = value + len};
    struct offer o;
    int rv;
    /* Parse the whole list even after a match, so a malformed tail is reported the same way
     * whichever offer came first. */
    bool done = false;
    while ((rv = next_extension(&c, &o, reason)) > 0) {
        if (!done && o.is_pmd && o.valid) {
            rv = accept_offer(&e, &o, params, resp, resp_cap);
            if (rv < 0) {
                return rv;
            }
            done = true;
        }
    }
    if (rv < 0) {
        resp[0] = '\0';
        return rv;
    }
    *accepted = done;
    return UP_OK;
}

int up_pmd_server_accept_h1(const struct up_pmd_cfg *cfg, const struct up_h1_msg *m, bool *accepted,
                            struct up_pmd_params *params, char *resp, size_t resp_cap,
                            const char **reason)
{
    *accepted = false;
    *reason = NULL;
    for (size_t i = 0; i < m->n_headers; i++) {
        const struct up_h1_header *h = &m->headers[i];
        if (!up_str_ieq(h->name, h->name_len, "Sec-WebSocket-Extensions")) {
            continue;
        }
        bool ok;
        int rv =
            up_pmd_server_accept(cfg, h->value, h->value_len, &ok, params, resp, resp_cap, reason);
        if (rv < 0) {
            return rv;
        }
        if (ok) {
            *accepted = true;
            return UP_OK;
        }
    }
    if (resp_cap > 0) {
        resp[0] = '\0';
    }
    return UP_OK;
}

/* ---- negotiation: client ---------------------------------------------------------------- */

int up_pmd_client_offer(const struct up_pmd_cfg *cfg, char *out, size_t cap)
{
    struct eff_cfg e;
    if (effective(cfg, &e) < 0 || cap < UP_PMD_MAX_HEADER) {
        return UP_EINVAL;
    }
    char sbits[32] = "";
    if (e.peer_bits < UP_PMD_MAX_WINDOW_BITS &&
        up_fmt(sbits, sizeof(sbits), "; server_max_window_bits=%u", (unsigned)e.peer_bits) < 0) {
        return UP_EINVAL;
    }
    /* client_no_context_takeover in an offer is a hint that we reset anyway (§7.1.1.2). */
    return up_fmt(out, cap, "%s%s%s%s; client_max_window_bits", UP_PMD_NAME,
                  e.no_ctx ? "; client_no_context_takeover" : "",
                  e.peer_no_ctx ? "; server_no_context_takeover" : "", sbits) < 0
               ? UP_EINVAL
               : UP_OK;
}

/* Walk value[0..len) as part of a response: count extensions and keep the pmd one. */
static int scan_response(const char *value, size_t len, size_t *n_ext, size_t *n_pmd,
                         struct offer *pmd, const char **reason)
{
    struct cursor c = {.p = value, .end = value + len};
    struct offer o;
    int rv;
    while ((rv = next_extension(&c, &o, reason)) > 0) {
        ++*n_ext;
        if (o.is_pmd) {
            ++*n_pmd;
            *pmd = o;
        }
    }
    return rv;
}

static int check_response(const struct eff_cfg *e, size_t n_ext, size_t n_pmd,
                          const struct offer *o, struct up_pmd_params *params, const char **reason)
{
    if (n_pmd != n_ext) {
        *reason = "pmd: response selects an extension we did not offer";
        return UP_EPROTO;
    }
    if (n_pmd == 0) {
        *reason = "pmd: empty Sec-WebSocket-Extensions in the response";
        return UP_EPROTO;
    }
    if (n_pmd != 1) {
        *reason = "pmd: response lists permessage-deflate more than once";
        return UP_EPROTO;
    }
    if (!o->valid) {
        *reason = "pmd: response has an unknown, repeated or invalid parameter";
        return UP_EPROTO;
    }
    /* §7.1.2.2: in a response client_max_window_bits must have a value; we always offer it. */
    if (o->has_cbits && !o->cbits_value) {
        *reason = "pmd: response client_max_window_bits without a value";
        return UP_EPROTO;
    }
    if (e->peer_bits < UP_PMD_MAX_WINDOW_BITS) {
        /* §7.1.2.1: the server accepts our limit only by echoing it, same or smaller. */
        if (!o->has_sbits) {
            *reason = "pmd: response ignores our server_max_window_bits";
            return UP_EPROTO;
        }
        if (o->sbits > e->peer_bits) {
            *reason = "pmd: response server_max_window_bits above our offer";
            return UP_EPROTO;
        }
    }
    /* §7.1.1.1: the server accepts server_no_context_takeover only by including it. */
    if (e->peer_no_ctx && !o->snct) {
        *reason = "pmd: response ignores our server_no_context_takeover";
        return UP_EPROTO;
    }
    params->server_no_context_takeover = o->snct;
    params->client_no_context_takeover = o->cnct;
    params->server_max_window_bits = o->has_sbits ? o->sbits : UP_PMD_MAX_WINDOW_BITS;
    params->client_max_window_bits = o->has_cbits ? o->cbits : UP_PMD_MAX_WINDOW_BITS;
    *reason = NULL;
    return UP_OK;
}

int up_pmd_client_check(const struct up_pmd_cfg *cfg, const char *value, size_t len,
                        struct up_pmd_params *params, const char **reason)
{
    struct eff_cfg e;
    if (effective(cfg, &e) < 0) {
        *reason = "pmd: bad configuration";
        return UP_EINVAL;
    }
    size_t n_ext = 0, n_pmd = 0;
    struct offer o;
    memset(&o, 0, sizeof(o));
    int rv = scan_response(value, len, &n_ext, &n_pmd, &o, reason);
    if (rv < 0) {
        return rv;
    }
    return check_response(&e, n_ext, n_pmd, &o, params, reason);
}

int up_pmd_client_check_h1(const struct up_pmd_cfg *cfg, const struct up_h1_msg *m, bool *accepted,
                           struct up_pmd_params *params, const char **reason)
{
    struct eff_cfg e;
    *accepted = false;
    if (effective(cfg, &e) < 0) {
        *reason = "pmd: bad configuration";
        return UP_EINVAL;
    }
    size_t n_ext = 0, n_pmd = 0, lines = 0;
    struct offer o;
    memset(&o, 0, sizeof(o));
    for (size_t i = 0; i < m->n_headers; i++) {
        const struct up_h1_header *h = &m->headers[i];
        if (!up_str_ieq(h->name, h->name_len, "Sec-WebSocket-Extensions")) {
            continue;
        }
        lines++;
        int rv = scan_response(h->value, h->value_len, &n_ext, &n_pmd, &o, reason);
        if (rv < 0) {
            return rv;
        }
    }
    if (lines == 0) {
        *reason = NULL;
        return UP_OK;
    }
    int rv = check_response(&e, n_ext, n_pmd, &o, params, reason);
    if (rv == UP_OK) {
        *accepted = true;
    }
    return rv;
}

/* ---- zlib glue --------------------------------------------------------------------------- */

/* A size header in front of each block lets zfree return the bytes to the budget; the union
 * keeps the block aligned for anything. */
union zhdr {
    size_t n;
    max_align_t align;
};

static voidpf zalloc_fn(voidpf opaque, uInt items, uInt size)
{
    struct up_pmd *z = opaque;
    size_t n = (size_t)items * size; /* both < 2^32: no overflow in a 64-bit size_t */
    if (items != 0 && n / items != size) {
        return Z_NULL;
    }
    if (n > z->mem_max - z->mem_used || n > SIZE_MAX - sizeof(union zhdr)) {
        return Z_NULL;
    }
    union zhdr *h = up_malloc(sizeof(*h) + n);
    if (!h) {
        return Z_NULL;
    }
    h->n = n;
    z->mem_used += n;
    return h + 1;
}

static void zfree_fn(voidpf opaque, voidpf p)
{
    struct up_pmd *z = opaque;
    if (!p) {
        return;
    }
    union zhdr *h = (union zhdr *)p - 1;
    z->mem_used -= h->n;
    up_free(h);
}

static int zerr(int zrv)
{
    return zrv == Z_MEM_ERROR ? UP_ENOMEM : UP_EINVAL;
}

int up_pmd_init(struct up_pmd *z, const struct up_pmd_cfg *cfg, const struct up_pmd_params *params,
                enum up_ws_role role)
{
    struct eff_cfg e;
    memset(z, 0, sizeof(*z));
    if (effective(cfg, &e) < 0) {
        return UP_EINVAL;
    }
    uint8_t sb = params->server_max_window_bits, cb = params->client_max_window_bits;
    if (sb < UP_PMD_MIN_WINDOW_BITS || sb > UP_PMD_MAX_WINDOW_BITS || cb < UP_PMD_MIN_WINDOW_BITS ||
        cb > UP_PMD_MAX_WINDOW_BITS) {
        return UP_EINVAL;
    }
    z->params = *params;
    z->server = role == UP_WS_SERVER;
    z->level = e.level;
    z->mem_level = e.mem_level;
    z->max_message_bytes = e.max_message;
    z->mem_max = e.max_mem;
    /* A compressor may always use less window than allowed (§7.1.2). */
    z->tx_bits = min_bits(z->server ? sb : cb, e.bits);
    z->tx_no_ctx =
        (z->server ? params->server_no_context_takeover : params->client_no_context_takeover) ||
        e.no_ctx;
    z->rx_bits = z->server ? cb : sb;
    z->rx_no_ctx =
        z->server ? params->client_no_context_takeover : params->server_no_context_takeover;
    z->rx_state = UP_PMD_RX_IDLE;
    return UP_OK;
}

void up_pmd_fini(struct up_pmd *z)
{
    if (z->tx_init) {
        (void)deflateEnd(&z->tx);
        z->tx_init = false;
    }
    if (z->rx_init) {
        (void)inflateEnd(&z->rx);
        z->rx_init = false;
    }
}

/* ---- decompressor ------------------------------------------------------------------------ */

static int rx_fail(struct up_pmd *z, int err, const char *reason, uint16_t code)
{
    z->rx_state = UP_PMD_RX_ERROR;
    z->rx_err = err;
    z->err_reason = reason;
    z->close_code = code;
    return err;
}

int up_pmd_inflate_begin(struct up_pmd *z, bool validate_utf8)
{
    if (z->rx_state != UP_PMD_RX_IDLE) {
        return UP_ESTATE;
    }
    if (!z->rx_init) {
        z->rx.zalloc = zalloc_fn;
        z->rx.zfree = zfree_fn;
        z->rx.opaque = z;
        /* zlib before 1.2.9 wrote 9-bit windows when asked for 8 (madler/zlib#171), and a
         * larger inflate window is always safe: accept 8 as 9. */
        int bits = z->rx_bits < 9 ? 9 : z->rx_bits;
        int zrv = inflateInit2(&z->rx, -bits);
        if (zrv != Z_OK) {
            return zerr(zrv);
        }
        z->rx_init = true;
    } else if (z->rx_no_ctx) {
        /* RFC 7692 §7.1.1: the peer starts each message with an empty window. */
        (void)inflateReset(&z->rx);
    }
    z->rx_state = UP_PMD_RX_MSG;
    z->rx_any = false;
    z->rx_fresh = false;
    z->tail_off = 0;
    z->rx_out = 0;
    z->rx_utf8_on = validate_utf8;
    up_utf8_init(&z->utf8);
    return UP_OK;
}

/* A DEFLATE block with BFINAL set ended the raw stream mid-message (RFC 7692 §7.2.3.4): start
 * a new one with the same window, so that later blocks can still refer back. */
static int rx_restart(struct up_pmd *z)
{
    uint8_t dict[1u << UP_PMD_MAX_WINDOW_BITS];
    uInt n = 0;
    if (inflateGetDictionary(&z->rx, dict, &n) != Z_OK) {
        n = 0;
    }
    if (inflateReset(&z->rx) != Z_OK) {
        return UP_EINVAL;
    }
    if (n && inflateSetDictionary(&z->rx, dict, n) != Z_OK) {
        return UP_EINVAL;
    }
    z->rx_fresh = true;
    return UP_OK;
}

/* Whether the 00 00 ff ff tail still has to go in at the end of the message. An empty
 * payload is an empty message and gets no tail (§7.2.3.6 sends "00" for it); nor does one
 * whose last block had BFINAL set, with nothing after it (§7.2.3.4 without its 00). */
static bool tail_pending(const struct up_pmd *z, bool fin)
{
    return fin && z->rx_any && z->tail_off < PMD_TAIL_LEN && !(z->rx_fresh && z->tail_off == 0);
}

static uInt clamp_uint(size_t n)
{
    return n > UINT_MAX ? UINT_MAX : (uInt)n;
}

int up_pmd_inflate(struct up_pmd *z, const uint8_t *in, size_t len, bool fin, uint8_t *out,
                   size_t cap, size_t *used, size_t *out_len)
{
    *used = 0;
    *out_len = 0;
    if (z->rx_state == UP_PMD_RX_ERROR) {
        return z->rx_err;
    }
    if (z->rx_state != UP_PMD_RX_MSG) {
        return UP_ESTATE;
    }
    if (cap == 0) {
        return UP_EINVAL;
    }
    if (len) {
        z->rx_any = true;
    }
    /* One byte beyond the limit is enough to know it was crossed (zip-bomb defence): the
     * output never grows past max_message_bytes + 1 in all. */
    uint64_t left = z->max_message_bytes - z->rx_out;
    size_t room = left < cap ? (size_t)left + 1 : cap;
    size_t in_off = 0, produced = 0;
    for (;;) {
        const uint8_t *src = NULL;
        size_t src_len = 0;
        bool tail = false;
        if (in_off < len) {
            src = in + in_off;
            src_len = len - in_off;
        } else if (tail_pending(z, fin)) {
            /* RFC 7692 §7.2.2: append 00 00 ff ff to the payload. An empty payload is an
             * empty message and is not fed at all (§7.2.3.6 sends "00" for it). */
            src = pmd_tail + z->tail_off;
            src_len = PMD_TAIL_LEN - z->tail_off;
            tail = true;
        }
        if (produced == room) {
            break;
        }
        uInt in_n = clamp_uint(src_len), out_n = clamp_uint(room - produced);
        z->rx.next_in = (Bytef *)(uintptr_t)src; /* zlib does not write through next_in */
        z->rx.avail_in = in_n;
        z->rx.next_out = out + produced;
        z->rx.avail_out = out_n;
        /* Z_BLOCK on the tail makes zlib stop, and say so, at the block boundary the tail
         * completes (data_type bit 128); Z_SYNC_FLUSH elsewhere. */
        int zrv = inflate(&z->rx, tail ? Z_BLOCK : Z_SYNC_FLUSH);
        size_t took = in_n - z->rx.avail_in, got = out_n - z->rx.avail_out;
        if (tail) {
            z->tail_off = (uint8_t)(z->tail_off + took);
        } else {
            in_off += took;
        }
        produced += got;
        if (took > 0) {
            z->rx_fresh = false;
        }
        if (took > 0 || got > 0) {
            z->rx_boundary = (z->rx.data_type & 128) != 0;
        }
        if (zrv == Z_STREAM_END) {
            int rv = rx_restart(z);
            if (rv < 0) {
                return rx_fail(z, UP_EPROTO, "pmd: cannot restart the inflater", WS_CLOSE_PROTOCOL);
            }
            if (tail) {
                /* The payload ended with a BFINAL block and without the 00 that §7.2.3.4
                 * asks for: the message is complete; the rest of the tail means nothing. */
                z->tail_off = PMD_TAIL_LEN;
            }
            continue;
        }
        if (zrv == Z_MEM_ERROR) {
            return rx_fail(z, UP_ENOMEM, "pmd: out of memory", WS_CLOSE_INTERNAL);
        }
        if (zrv == Z_DATA_ERROR || zrv == Z_NEED_DICT || zrv == Z_STREAM_ERROR) {
            return rx_fail(z, UP_EPROTO, "pmd: corrupt deflate data", WS_CLOSE_PROTOCOL);
        }
        /* Z_OK or Z_BUF_ERROR: stop when nothing moved (input done or output full). */
        if (took == 0 && got == 0) {
            break;
        }
    }
    *out_len = produced;
    if (produced > left) {
        *out_len = 0;
        return rx_fail(z, UP_ELIMIT, "pmd: inflated message larger than max_message_bytes",
                       WS_CLOSE_TOO_BIG);
    }
    z->rx_out += produced;
    /* RFC 6455 §8.1, on the inflated bytes: fail fast. */
    if (z->rx_utf8_on && !up_utf8_feed(&z->utf8, out, produced)) {
        *out_len = 0;
        return rx_fail(z, UP_EPROTO, "pmd: invalid UTF-8 in a text message", WS_CLOSE_INVALID_DATA);
    }
    *used = in_off;
    if (produced == room) {
        return UP_EAGAIN; /* more may be pending inside zlib */
    }
    if (in_off < len || tail_pending(z, fin)) {
        /* Output room left yet input not taken: zlib stalled, which valid data never does. */
        return rx_fail(z, UP_EPROTO, "pmd: inflate stalled", WS_CLOSE_PROTOCOL);
    }
    if (fin) {
        /* The tail is an empty stored block, so a complete message leaves the inflater
         * between blocks (zlib: data_type bit 128). Anything else is a truncated message,
         * whose leftover state would garble the next one. */
        if (z->rx_any && !z->rx_fresh && !z->rx_boundary) {
            return rx_fail(z, UP_EPROTO, "pmd: message does not end on a DEFLATE block boundary",
                           WS_CLOSE_PROTOCOL);
        }
        if (z->rx_utf8_on && !up_utf8_is_complete(&z->utf8)) {
            return rx_fail(z, UP_EPROTO, "pmd: text message ends inside a UTF-8 sequence",
                           WS_CLOSE_INVALID_DATA);
        }
        z->rx_state = UP_PMD_RX_IDLE;
    }
    return UP_OK;
}

/* ---- compressor -------------------------------------------------------------------------- */

size_t up_pmd_deflate_bound(size_t len)
{
    /* zlib compressBound(): stored blocks cost 5 bytes per 16 KiB at worst, plus 13; plus
     * our sync flush marker (5) and slack for bits pending from earlier calls. */
    size_t extra = (len >> 12) + (len >> 14) + (len >> 25) + 13 + 8;
    return len > SIZE_MAX - extra ? SIZE_MAX : len + extra;
}

static int tx_start(struct up_pmd *z)
{
    if (!z->tx_init) {
        z->tx.zalloc = zalloc_fn;
        z->tx.zfree = zfree_fn;
        z->tx.opaque = z;
        /* zlib refuses an 8-bit raw window (it would need a 9-bit one). With literals only
         * (Z_HUFFMAN_ONLY) there is no back-reference at all, so the output honours any
         * window the peer allowed, 8 included, and still compresses by entropy coding. */
        int bits = z->tx_bits < 9 ? 9 : z->tx_bits;
        int strategy = z->tx_bits < 9 ? Z_HUFFMAN_ONLY : Z_DEFAULT_STRATEGY;
        int zrv = deflateInit2(&z->tx, z->level, Z_DEFLATED, -bits, z->mem_level, strategy);
        if (zrv != Z_OK) {
            return zerr(zrv);
        }
        z->tx_init = true;
    } else if (z->tx_no_ctx) {
        /* RFC 7692 §7.1.1: every message starts with an empty window. */
        (void)deflateReset(&z->tx);
    }
    z->tx_in_msg = true;
    return UP_OK;
}

int up_pmd_deflate(struct up_pmd *z, const uint8_t *in, size_t len, bool fin, struct up_buf *out,
                   size_t max_cap)
{
    if (z->tx_broken) {
        return UP_ESTATE;
    }
    if (!z->tx_in_msg) {
        int rv = tx_start(z);
        if (rv < 0) {
            return rv;
        }
    }
    size_t in_off = 0, appended = 0;
    for (;;) {
        int rv = up_buf_reserve(out, PMD_DEFLATE_CHUNK, max_cap);
        if (rv == UP_ELIMIT) {
            rv = up_buf_reserve(out, 1, max_cap);
        }
        if (rv < 0) {
            z->tx_broken = true;
            return rv;
        }
        uInt in_n = clamp_uint(len - in_off), out_n = clamp_uint(up_buf_room(out));
        bool last = in_off + in_n == len;
        z->tx.next_in = (Bytef *)(uintptr_t)(in ? in + in_off : NULL);
        z->tx.avail_in = in_n;
        z->tx.next_out = up_buf_wptr(out);
        z->tx.avail_out = out_n;
        int zrv = deflate(&z->tx, last && fin ? Z_SYNC_FLUSH : Z_NO_FLUSH);
        size_t got = out_n - z->tx.avail_out;
        in_off += in_n - z->tx.avail_in;
        up_buf_commit(out, got);
        appended += got;
        if (zrv == Z_STREAM_ERROR) {
            z->tx_broken = true;
            return UP_EINVAL;
        }
        /* Done when all input is in and zlib left output room (so it has nothing more). A
         * Z_BUF_ERROR means there was nothing to do at all. */
        if (zrv == Z_BUF_ERROR || (in_off == len && z->tx.avail_out > 0)) {
            break;
        }
    }
    if (!fin) {
        return UP_OK;
    }
    z->tx_in_msg = false;
    /* RFC 7692 §7.2.1: drop the 00 00 ff ff of the final empty stored block. The bytes were
     * appended by this call, so they are the last ones in out. */
    if (appended >= PMD_TAIL_LEN &&
        memcmp(up_buf_wptr(out) - PMD_TAIL_LEN, pmd_tail, PMD_TAIL_LEN) == 0) {
        out->wr -= PMD_TAIL_LEN;
        appended -= PMD_TAIL_LEN;
    }
    if (appended == 0) {
        /* Nothing pending since the previous flush (an empty message after another one):
         * zlib wrote nothing, but the payload must hold a stored block header, which is the
         * single byte 00 (RFC 7692 §7.2.3.6). */
        int rv = up_buf_append(out, "\0", 1, max_cap);
        if (rv < 0) {
            z->tx_broken = true;
            return rv;
        }
    }
    return UP_OK;
}
