#include "proto/mux.h"

#include <string.h>

#include "base/bytes.h"

const char *up_mux_code_name(uint32_t code)
{
    static const char *const names[] = {
        [UP_MUX_C_NONE] = "none",
        [UP_MUX_C_PROTOCOL] = "protocol-error",
        [UP_MUX_C_FLOW] = "flow-control-error",
        [UP_MUX_C_REFUSED] = "refused",
        [UP_MUX_C_NO_SERVICE] = "no-service",
        [UP_MUX_C_FORBIDDEN] = "forbidden",
        [UP_MUX_C_LIMIT] = "limit",
        [UP_MUX_C_LINK_LOST] = "link-lost",
        [UP_MUX_C_BACKEND_RESET] = "reset",
        [UP_MUX_C_TIMEOUT] = "timeout",
        [UP_MUX_C_CANCEL] = "cancel",
        [UP_MUX_C_SHUTDOWN] = "shutdown",
        [UP_MUX_C_INTERNAL] = "internal-error",
    };
    if (code < sizeof(names) / sizeof(names[0])) {
        return names[code];
    }
    return "unknown";
}

void up_mux_parser_init(struct up_mux_parser *p, const struct up_mux_cfg *cfg)
{
    memset(p, 0, sizeof(*p));
    p->cfg = *cfg;
    if (p->cfg.max_frame == 0 || p->cfg.max_frame > 0xffffffu) {
        p->cfg.max_frame = UP_MUX_DEFAULT_MAX_FRAME;
    }
    p->state = UP_MUX_ST_HDR;
}

uint32_t up_mux_parser_data_left(const struct up_mux_parser *p, uint32_t *sid)
{
    *sid = p->sid;
    return p->state == UP_MUX_ST_DATA ? p->len - p->off : 0;
}

void up_mux_parser_skip(struct up_mux_parser *p, uint32_t n)
{
    uint32_t sid;
    uint32_t left = up_mux_parser_data_left(p, &sid);
    p->off += n < left ? n : left;
    if (p->state == UP_MUX_ST_DATA && p->off == p->len && !(p->flags & UP_MUX_FLAG_FIN)) {
        p->state = UP_MUX_ST_HDR;
    }
}

static int fail(struct up_mux_parser *p, int err, const char *reason)
{
    p->state = UP_MUX_ST_ERROR;
    p->err_reason = reason;
    return err;
}

static bool valid_name(const char *s, size_t n)
{
    if (n == 0 || n > UP_MUX_MAX_NAME) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.')) {
            return false;
        }
    }
    return true;
}

/* Validate the header just completed; choose the next state. */
static int on_header(struct up_mux_parser *p)
{
    p->len = up_rd_u24be(p->hdr);
    p->type = p->hdr[3];
    p->flags = p->hdr[4];
    uint32_t raw = up_rd_u32be(p->hdr + 5);
    p->off = 0;
    if (raw & 0x80000000u) {
        return fail(p, UP_EPROTO, "mux: reserved stream id bit set");
    }
    p->sid = raw;
    switch (p->type) {
    case UP_MUX_DATA:
        if (p->sid == 0) {
            return fail(p, UP_EPROTO, "mux: DATA on stream 0");
        }
        if (p->len > p->cfg.max_frame) {
            return fail(p, UP_ELIMIT, "mux: DATA frame larger than max frame");
        }
        p->state = UP_MUX_ST_DATA;
        return UP_OK;
    case UP_MUX_OPEN:
    case UP_MUX_ACCEPT:
    case UP_MUX_CREDIT:
    case UP_MUX_RST:
        if (p->sid == 0) {
            return fail(p, UP_EPROTO, "mux: stream frame on stream 0");
        }
        break;
    case UP_MUX_PING:
    case UP_MUX_GOAWAY:
        if (p->sid != 0) {
            return fail(p, UP_EPROTO, "mux: link frame on a stream");
        }
        break;
    default:
        p->state = UP_MUX_ST_SKIP;
        return UP_OK;
    }
    if (p->len > UP_MUX_MAX_CTRL) {
        return fail(p, UP_ELIMIT, "mux: control frame too large");
    }
    p->state = UP_MUX_ST_CTRL;
    return UP_OK;
}

/* A control payload is complete in p->ctl: validate it and fill ev. */
static int on_control(struct up_mux_parser *p, struct up_mux_ev *ev)
{
    const uint8_t *c = p->ctl;
    uint32_t n = p->len;
    ev->sid = p->sid;
    switch (p->type) {
    case UP_MUX_OPEN: {
        if (n < 5) {
            return fail(p, UP_EPROTO, "mux: OPEN too short");
        }
        bool odd = (p->sid & 1u) != 0;
        if (odd == p->cfg.odd_ids) {
            return fail(p, UP_EPROTO, "mux: OPEN with our stream id parity");
        }
        uint32_t win = up_rd_u32be(c);
        size_t name_len = c[4];
        if (5 + name_len > n || !valid_name((const char *)c + 5, name_len)) {
            return fail(p, UP_EPROTO, "mux: OPEN with an invalid service name");
        }
        if (n - 5 - name_len > UP_MUX_MAX_META) {
            return fail(p, UP_ELIMIT, "mux: OPEN metadata too large");
        }
        if (win > UP_MUX_MAX_WINDOW) {
            return fail(p, UP_EPROTO, "mux: OPEN window above 2^31-1");
        }
        ev->kind = UP_MUX_EV_OPEN;
        ev->window = win;
        ev->name = (const char *)c + 5;
        ev->name_len = name_len;
        ev->data = c + 5 + name_len;
        ev->len = n - 5 - name_len;
        return UP_OK;
    }
    case UP_MUX_ACCEPT:
    case UP_MUX_CREDIT: {
        if (n != 4) {
            return fail(p, UP_EPROTO, "mux: ACCEPT/CREDIT payload is not 4 bytes");
        }
        uint32_t v = up_rd_u32be(c);
        if (v > UP_MUX_MAX_WINDOW) {
            return fail(p, UP_EPROTO, "mux: window above 2^31-1");
        }
        if (p->type == UP_MUX_CREDIT && v == 0) {
            return fail(p, UP_EPROTO, "mux: CREDIT of zero");
        }
        ev->kind = p->type == UP_MUX_ACCEPT ? UP_MUX_EV_ACCEPT : UP_MUX_EV_CREDIT;
        ev->window = v;
        return UP_OK;
    }
    case UP_MUX_RST:
    case UP_MUX_GOAWAY:
        if (n < 4) {
            return fail(p, UP_EPROTO, "mux: RST/GOAWAY too short");
        }
        if (p->type == UP_MUX_GOAWAY) {
            if (n < 8) {
                return fail(p, UP_EPROTO, "mux: GOAWAY too short");
            }
            ev->sid = up_rd_u32be(c) & 0x7fffffffu;
            c += 4;
            n -= 4;
        }
        if (n - 4 > UP_MUX_MAX_REASON) {
            return fail(p, UP_ELIMIT, "mux: reason too long");
        }
        /* Set the kind only now: a failing call must not present a half-filled event. */
        ev->kind = p->type == UP_MUX_GOAWAY ? UP_MUX_EV_GOAWAY : UP_MUX_EV_RST;
        ev->code = up_rd_u32be(c);
        ev->data = c + 4;
        ev->len = n - 4;
        return UP_OK;
    case UP_MUX_PING:
        if (n != 8) {
            return fail(p, UP_EPROTO, "mux: PING payload is not 8 bytes");
        }
        ev->kind = (p->flags & UP_MUX_FLAG_ACK) ? UP_MUX_EV_PONG : UP_MUX_EV_PING;
        memcpy(ev->opaque, c, 8);
        return UP_OK;
    default:
        return fail(p, UP_EPROTO, "mux: internal state");
    }
}

int up_mux_parse(struct up_mux_parser *p, const uint8_t *in, size_t len, size_t *used,
                 struct up_mux_ev *ev)
{
    size_t i = 0;
    memset(ev, 0, sizeof(*ev));
    ev->kind = UP_MUX_EV_NONE;
    *used = 0;
    if (p->state == UP_MUX_ST_ERROR) {
        return UP_EPROTO;
    }
    for (;;) {
        switch (p->state) {
        case UP_MUX_ST_HDR: {
            if (i == len) {
                *used = i;
                return UP_OK;
            }
            size_t take = UP_MUX_HDR - p->hdr_len;
            if (take > len - i) {
                take = len - i;
            }
            memcpy(p->hdr + p->hdr_len, in + i, take);
            p->hdr_len = (uint8_t)(p->hdr_len + take);
            i += take;
            if (p->hdr_len < UP_MUX_HDR) {
                *used = i;
                return UP_OK;
            }
            p->hdr_len = 0;
            int rv = on_header(p);
            if (rv < 0) {
                *used = i;
                return rv;
            }
            if (p->state == UP_MUX_ST_DATA && p->len == 0) {
                /* An empty DATA frame only carries FIN (or nothing). */
                p->state = UP_MUX_ST_HDR;
                if (p->flags & UP_MUX_FLAG_FIN) {
                    ev->kind = UP_MUX_EV_FIN;
                    ev->sid = p->sid;
                    *used = i;
                    return UP_OK;
                }
            }
            break;
        }
        case UP_MUX_ST_DATA: {
            if (p->off == p->len) {
                p->state = UP_MUX_ST_HDR;
                if (p->flags & UP_MUX_FLAG_FIN) {
                    ev->kind = UP_MUX_EV_FIN;
                    ev->sid = p->sid;
                    *used = i;
                    return UP_OK;
                }
                break;
            }
            if (i == len) {
                *used = i;
                return UP_OK;
            }
            size_t take = p->len - p->off;
            if (take > len - i) {
                take = len - i;
            }
            ev->kind = UP_MUX_EV_DATA;
            ev->sid = p->sid;
            ev->data = in + i;
            ev->len = take;
            p->off += (uint32_t)take;
            i += take;
            if (p->off == p->len && !(p->flags & UP_MUX_FLAG_FIN)) {
                p->state = UP_MUX_ST_HDR;
            }
            *used = i;
            return UP_OK;
        }
        case UP_MUX_ST_CTRL:
        case UP_MUX_ST_SKIP: {
            size_t take = p->len - p->off;
            if (take > len - i) {
                take = len - i;
            }
            if (p->state == UP_MUX_ST_CTRL) {
                memcpy(p->ctl + p->off, in + i, take);
            }
            p->off += (uint32_t)take;
            i += take;
            if (p->off < p->len) {
                *used = i;
                return UP_OK;
            }
            bool ctrl = p->state == UP_MUX_ST_CTRL;
            p->state = UP_MUX_ST_HDR;
            if (ctrl) {
                *used = i;
                return on_control(p, ev);
            }
            break;
        }
        case UP_MUX_ST_ERROR:
        default:
            *used = i;
            return UP_EPROTO;
        }
    }
}

void up_mux_encode_hdr(uint8_t dst[UP_MUX_HDR], uint32_t len, uint8_t type, uint8_t flags,
                       uint32_t sid)
{
    up_wr_u24be(dst, len);
    dst[3] = type;
    dst[4] = flags;
    up_wr_u32be(dst + 5, sid);
}

int up_mux_encode_open(uint8_t *dst, size_t cap, uint32_t sid, uint32_t window, const char *name,
                       const uint8_t *meta, size_t meta_len)
{
    size_t name_len = strlen(name);
    if (!valid_name(name, name_len) || meta_len > UP_MUX_MAX_META || sid == 0 ||
        window > UP_MUX_MAX_WINDOW) {
        return UP_EINVAL;
    }
    size_t plen = 5 + name_len + meta_len;
    if (cap < UP_MUX_HDR + plen) {
        return UP_ELIMIT;
    }
    up_mux_encode_hdr(dst, (uint32_t)plen, UP_MUX_OPEN, 0, sid);
    up_wr_u32be(dst + UP_MUX_HDR, window);
    dst[UP_MUX_HDR + 4] = (uint8_t)name_len;
    memcpy(dst + UP_MUX_HDR + 5, name, name_len);
    if (meta_len) {
        memcpy(dst + UP_MUX_HDR + 5 + name_len, meta, meta_len);
    }
    return (int)(UP_MUX_HDR + plen);
}

static int encode_u32(uint8_t *dst, size_t cap, uint8_t type, uint32_t sid, uint32_t v)
{
    if (cap < UP_MUX_HDR + 4) {
        return UP_ELIMIT;
    }
    up_mux_encode_hdr(dst, 4, type, 0, sid);
    up_wr_u32be(dst + UP_MUX_HDR, v);
    return UP_MUX_HDR + 4;
}

int up_mux_encode_accept(uint8_t *dst, size_t cap, uint32_t sid, uint32_t window)
{
    if (sid == 0 || window > UP_MUX_MAX_WINDOW) {
        return UP_EINVAL;
    }
    return encode_u32(dst, cap, UP_MUX_ACCEPT, sid, window);
}

int up_mux_encode_credit(uint8_t *dst, size_t cap, uint32_t sid, uint32_t inc)
{
    if (sid == 0 || inc == 0 || inc > UP_MUX_MAX_WINDOW) {
        return UP_EINVAL;
    }
    return encode_u32(dst, cap, UP_MUX_CREDIT, sid, inc);
}

static int encode_reason(uint8_t *dst, size_t cap, uint8_t type, uint32_t sid, const uint8_t *pre,
                         size_t pre_len, uint32_t code, const char *reason)
{
    size_t rlen = reason ? strlen(reason) : 0;
    if (rlen > UP_MUX_MAX_REASON) {
        rlen = UP_MUX_MAX_REASON;
    }
    size_t plen = pre_len + 4 + rlen;
    if (cap < UP_MUX_HDR + plen) {
        return UP_ELIMIT;
    }
    up_mux_encode_hdr(dst, (uint32_t)plen, type, 0, sid);
    if (pre_len) {
        memcpy(dst + UP_MUX_HDR, pre, pre_len);
    }
    up_wr_u32be(dst + UP_MUX_HDR + pre_len, code);
    if (rlen) {
        memcpy(dst + UP_MUX_HDR + pre_len + 4, reason, rlen);
    }
    return (int)(UP_MUX_HDR + plen);
}

int up_mux_encode_rst(uint8_t *dst, size_t cap, uint32_t sid, uint32_t code, const char *reason)
{
    if (sid == 0) {
        return UP_EINVAL;
    }
    return encode_reason(dst, cap, UP_MUX_RST, sid, NULL, 0, code, reason);
}

int up_mux_encode_goaway(uint8_t *dst, size_t cap, uint32_t last_sid, uint32_t code,
                         const char *reason)
{
    uint8_t pre[4];
    up_wr_u32be(pre, last_sid & 0x7fffffffu);
    return encode_reason(dst, cap, UP_MUX_GOAWAY, 0, pre, 4, code, reason);
}

int up_mux_encode_ping(uint8_t *dst, size_t cap, const uint8_t opaque[8], bool ack)
{
    if (cap < UP_MUX_HDR + 8) {
        return UP_ELIMIT;
    }
    up_mux_encode_hdr(dst, 8, UP_MUX_PING, ack ? UP_MUX_FLAG_ACK : 0, 0);
    memcpy(dst + UP_MUX_HDR, opaque, 8);
    return UP_MUX_HDR + 8;
}

void up_mux_flow_init(struct up_mux_flow *f, uint32_t recv_window, uint32_t max_window,
                      uint32_t send_window, uint64_t now_us)
{
    if (recv_window > UP_MUX_MAX_WINDOW) {
        recv_window = UP_MUX_MAX_WINDOW;
    }
    if (max_window < recv_window) {
        max_window = recv_window;
    }
    if (max_window > UP_MUX_MAX_WINDOW) {
        max_window = UP_MUX_MAX_WINDOW;
    }
    f->send_avail = send_window;
    f->recv_window = recv_window;
    f->recv_avail = recv_window;
    f->recv_pending = 0;
    f->max_window = max_window;
    f->last_grant_us = now_us;
}

int up_mux_flow_on_data(struct up_mux_flow *f, size_t n)
{
    if (n > f->recv_avail) {
        return UP_EPROTO;
    }
    f->recv_avail -= (uint32_t)n;
    return UP_OK;
}

int up_mux_flow_on_credit(struct up_mux_flow *f, uint32_t inc)
{
    if (f->send_avail + (int64_t)inc > (int64_t)UP_MUX_MAX_WINDOW) {
        return UP_EPROTO;
    }
    f->send_avail += inc;
    return UP_OK;
}

uint32_t up_mux_flow_consumed(struct up_mux_flow *f, size_t n, uint64_t now_us, uint64_t srtt_us)
{
    return up_mux_flow_consumed_ex(f, n, now_us, srtt_us, true);
}

uint32_t up_mux_flow_consumed_ex(struct up_mux_flow *f, size_t n, uint64_t now_us, uint64_t srtt_us,
                                 bool may_grow)
{
    if (n > UP_MUX_MAX_WINDOW - f->recv_pending) {
        n = UP_MUX_MAX_WINDOW - f->recv_pending;
    }
    f->recv_pending += (uint32_t)n;
    if (f->recv_pending < f->recv_window / 2) {
        return 0;
    }
    uint32_t grow = 0;
    /* Half a window in under 4 RTTs: the window, not the path, is the limit; double it. */
    if (may_grow && srtt_us && f->recv_window < f->max_window &&
        now_us - f->last_grant_us < 4 * srtt_us) {
        uint32_t nw = f->recv_window > f->max_window / 2 ? f->max_window : f->recv_window * 2;
        grow = nw - f->recv_window;
        f->recv_window = nw;
    }
    uint32_t inc = f->recv_pending + grow;
    f->recv_avail += inc;
    f->recv_pending = 0;
    f->last_grant_us = now_us;
    return inc;
}

bool up_mux_meta_get(const uint8_t *meta, size_t len, const char *key, char *out, size_t cap)
{
    size_t kl = strlen(key);
    size_t i = 0;
    while (i < len) {
        const uint8_t *nl = memchr(meta + i, '\n', len - i);
        size_t end = nl ? (size_t)(nl - meta) : len;
        if (end - i > kl && memcmp(meta + i, key, kl) == 0 && meta[i + kl] == '=') {
            size_t vl = end - i - kl - 1;
            if (vl >= cap) {
                return false;
            }
            memcpy(out, meta + i + kl + 1, vl);
            out[vl] = '\0';
            return true;
        }
        i = end + 1;
    }
    return false;
}
