#include "proto/fwd.h"

#include <stdio.h>
#include <string.h>

#include "base/str.h"

int up_fwd_addr_parse(const char *s, size_t len, uint8_t out[16], uint16_t *port)
{
    uint8_t a[16];
    if (!s || len == 0) {
        return UP_EPROTO;
    }
    if (up_ip_parse(s, len, a) == UP_OK) {
        memcpy(out, a, 16);
        *port = 0;
        return UP_OK;
    }
    /* "[v6]:port" or "v4:port". */
    const char *colon = NULL;
    if (s[0] == '[') {
        const char *close = memchr(s, ']', len);
        if (!close || close + 1 >= s + len || close[1] != ':') {
            return UP_EPROTO;
        }
        colon = close + 1;
    } else {
        colon = memchr(s, ':', len);
        if (!colon || memchr(colon + 1, ':', (size_t)(s + len - colon - 1))) {
            return UP_EPROTO;
        }
    }
    size_t plen = (size_t)(s + len - colon - 1);
    if (plen == 0 || plen > 5) {
        return UP_EPROTO;
    }
    uint32_t p = 0;
    for (size_t i = 0; i < plen; i++) {
        if (colon[1 + i] < '0' || colon[1 + i] > '9') {
            return UP_EPROTO;
        }
        p = p * 10 + (uint32_t)(colon[1 + i] - '0');
    }
    if (p > 65535) {
        return UP_EPROTO;
    }
    size_t alen = (size_t)(colon - s);
    if (up_ip_parse(s, alen, a) != UP_OK || (s[0] != '[' && memchr(s, '[', alen))) {
        return UP_EPROTO;
    }
    memcpy(out, a, 16);
    *port = (uint16_t)p;
    return UP_OK;
}

/* One X-Forwarded-For entry, spaces trimmed: an address with an optional port. */
static int entry_addr(const char *s, size_t len, uint8_t out[16])
{
    up_str_trim_ows(&s, &len);
    uint16_t port;
    return up_fwd_addr_parse(s, len, out, &port);
}

int up_fwd_xff_client(const char *v, size_t len, const struct up_cidr_list *trusted,
                      uint8_t out[16])
{
    if (!v || len == 0) {
        return UP_EPROTO;
    }
    size_t end = len;
    uint8_t a[16];
    for (;;) {
        size_t start = end;
        while (start > 0 && v[start - 1] != ',') {
            start--;
        }
        if (entry_addr(v + start, end - start, a) < 0) {
            return UP_EPROTO;
        }
        if (start == 0 || !trusted || !up_cidr_list_match(trusted, a)) {
            memcpy(out, a, 16);
            return UP_OK;
        }
        end = start - 1;
    }
}

/* Text of a; with as_v4 false, IPv4-mapped addresses are written in their IPv6 form. */
static void v6_text(const uint8_t a[16], bool as_v4, char *out, size_t cap)
{
    if (!as_v4 && up_ip_is_v4(a)) {
        snprintf(out, cap, "::ffff:%u.%u.%u.%u", a[12], a[13], a[14], a[15]);
        return;
    }
    up_ip_format(a, out, cap);
}

int up_fwd_proxy_v1(const uint8_t src[16], uint16_t sport, const uint8_t dst[16], uint16_t dport,
                    char *out, size_t cap, size_t *len)
{
    bool v4 = up_ip_is_v4(src) && up_ip_is_v4(dst);
    char s[64], d[64];
    v6_text(src, v4, s, sizeof s);
    v6_text(dst, v4, d, sizeof d);
    *len = 0;
    int n =
        snprintf(out, cap, "PROXY %s %s %s %u %u\r\n", v4 ? "TCP4" : "TCP6", s, d, sport, dport);
    if (n < 0 || (size_t)n >= cap || n > 107) {
        if (cap) {
            out[0] = '\0';
        }
        return UP_ELIMIT;
    }
    *len = (size_t)n;
    return UP_OK;
}

/* haproxy's proxy-protocol.txt §2.2 */
static const uint8_t v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                   0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

int up_fwd_proxy_v2(const uint8_t src[16], uint16_t sport, const uint8_t dst[16], uint16_t dport,
                    uint8_t *out, size_t cap, size_t *len)
{
    bool v4 = up_ip_is_v4(src) && up_ip_is_v4(dst);
    size_t alen = v4 ? 12 : 36;
    *len = 0;
    if (cap < 16 + alen) {
        return UP_ELIMIT;
    }
    memcpy(out, v2_sig, sizeof v2_sig);
    out[12] = 0x21;             /* version 2, PROXY */
    out[13] = v4 ? 0x11 : 0x21; /* AF_INET / AF_INET6, STREAM */
    out[14] = 0;
    out[15] = (uint8_t)alen;
    uint8_t *p = out + 16;
    if (v4) {
        memcpy(p, src + 12, 4);
        memcpy(p + 4, dst + 12, 4);
        p += 8;
    } else {
        memcpy(p, src, 16);
        memcpy(p + 16, dst, 16);
        p += 32;
    }
    p[0] = (uint8_t)(sport >> 8);
    p[1] = (uint8_t)sport;
    p[2] = (uint8_t)(dport >> 8);
    p[3] = (uint8_t)dport;
    *len = 16 + alen;
    return UP_OK;
}

int up_fwd_proxy_v1_unknown(char *out, size_t cap, size_t *len)
{
    static const char line[] = "PROXY UNKNOWN\r\n";
    *len = 0;
    if (cap < sizeof line) {
        if (cap) {
            out[0] = '\0';
        }
        return UP_ELIMIT;
    }
    memcpy(out, line, sizeof line);
    *len = sizeof line - 1;
    return UP_OK;
}

int up_fwd_proxy_v2_local(uint8_t *out, size_t cap, size_t *len)
{
    *len = 0;
    if (cap < 16) {
        return UP_ELIMIT;
    }
    memcpy(out, v2_sig, sizeof v2_sig);
    out[12] = 0x20; /* version 2, LOCAL */
    out[13] = 0x00; /* AF_UNSPEC, UNSPEC */
    out[14] = 0;
    out[15] = 0;
    *len = 16;
    return UP_OK;
}
