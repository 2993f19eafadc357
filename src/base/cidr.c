/* IP address blocks. Addresses are kept in the 16-byte IPv6 form, with IPv4 as the
 * IPv4-mapped address (RFC 4291 §2.5.5.2), so one comparison serves both families. */
#include "base/cidr.h"

#include <arpa/inet.h>
#include <string.h>

#include "base/str.h"

/* "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255" is 45 characters; allow brackets. */
#define IP_TEXT_MAX 47

/* RFC 4291 §2.5.5.2: ::ffff:0:0/96. */
static const uint8_t v4_mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* Parse s[0..len) as an address; *v4 tells whether it was written as dotted IPv4, which
 * decides the range of a prefix length that follows it. */
static int ip_parse(const char *s, size_t len, uint8_t out[16], bool *v4)
{
    char text[IP_TEXT_MAX + 1];
    bool bracketed = false;
    if (!s || len == 0) {
        return UP_EINVAL;
    }
    if (s[0] == '[') {
        if (len < 2 || s[len - 1] != ']') {
            return UP_EINVAL;
        }
        s++;
        len -= 2;
        bracketed = true;
    }
    /* The text is copied to NUL-terminate it for inet_pton, so an embedded NUL would
     * silently cut it short. Zone indices ("%eth0") are refused by inet_pton itself. */
    if (len == 0 || len > IP_TEXT_MAX || memchr(s, '\0', len)) {
        return UP_EINVAL;
    }
    memcpy(text, s, len);
    text[len] = '\0';
    uint8_t a4[4];
    if (!bracketed && inet_pton(AF_INET, text, a4) == 1) {
        memcpy(out, v4_mapped_prefix, sizeof v4_mapped_prefix);
        memcpy(out + 12, a4, 4);
        *v4 = true;
        return UP_OK;
    }
    uint8_t a6[16];
    if (inet_pton(AF_INET6, text, a6) == 1) {
        memcpy(out, a6, 16);
        *v4 = false;
        return UP_OK;
    }
    return UP_EINVAL;
}

int up_ip_parse(const char *s, size_t len, uint8_t out[16])
{
    bool v4;
    uint8_t a[16];
    int rv = ip_parse(s, len, a, &v4);
    if (rv < 0) {
        return rv;
    }
    memcpy(out, a, 16);
    return UP_OK;
}

/* Parse one block, with a reason for the list parser. */
static int cidr_parse(const char *s, size_t len, struct up_cidr *c, const char **why)
{
    const char *slash = s ? memchr(s, '/', len) : NULL;
    size_t alen = slash ? (size_t)(slash - s) : len;
    uint8_t addr[16];
    bool v4;
    if (ip_parse(s, alen, addr, &v4) < 0) {
        *why = "cidr: bad address";
        return UP_EINVAL;
    }
    unsigned max = v4 ? 32 : 128;
    unsigned bits = max;
    if (slash) {
        const char *d = slash + 1;
        size_t dlen = len - alen - 1;
        /* At most three digits: "/0" .. "/128", leading zeros tolerated ("/08"). */
        if (dlen == 0 || dlen > 3) {
            *why = "cidr: bad prefix length";
            return UP_EINVAL;
        }
        bits = 0;
        for (size_t i = 0; i < dlen; i++) {
            if (d[i] < '0' || d[i] > '9') {
                *why = "cidr: bad prefix length";
                return UP_EINVAL;
            }
            bits = bits * 10 + (unsigned)(d[i] - '0');
        }
        if (bits > max) {
            *why = v4 ? "cidr: IPv4 prefix length above 32" : "cidr: IPv6 prefix length above 128";
            return UP_EINVAL;
        }
    }
    if (v4) {
        bits += 96;
    }
    for (unsigned i = 0; i < 16; i++) {
        unsigned lo = i * 8;
        if (lo >= bits) {
            addr[i] = 0;
        } else if (bits - lo < 8) {
            addr[i] = (uint8_t)(addr[i] & (0xffu << (8 - (bits - lo))));
        }
    }
    memcpy(c->addr, addr, 16);
    c->bits = (uint8_t)bits;
    return UP_OK;
}

int up_cidr_parse(const char *s, size_t len, struct up_cidr *c)
{
    const char *why;
    return cidr_parse(s, len, c, &why);
}

bool up_cidr_match(const struct up_cidr *c, const uint8_t addr[16])
{
    unsigned bits = c->bits > 128 ? 128 : c->bits;
    unsigned full = bits / 8, rest = bits % 8;
    if (memcmp(c->addr, addr, full) != 0) {
        return false;
    }
    if (rest == 0) {
        return true;
    }
    uint8_t mask = (uint8_t)(0xffu << (8 - rest));
    return ((c->addr[full] ^ addr[full]) & mask) == 0;
}

int up_cidr_list_add(struct up_cidr_list *l, const char *s, const char **why)
{
    const char *dummy;
    if (!why) {
        why = &dummy;
    }
    *why = NULL;
    if (!l || !s || l->n > UP_CIDR_LIST_MAX) {
        *why = "cidr: no list";
        return UP_EINVAL;
    }
    /* Entries go into the free tail of v[] and count only once all of s parsed, so a
     * refused string leaves the list as it was. */
    size_t n = l->n;
    while (*s) {
        size_t len = strcspn(s, ",");
        const char *e = s;
        size_t elen = len;
        up_str_trim_ows(&e, &elen);
        /* Empty entries ("a,,b", a trailing comma) are skipped, as in NO_PROXY. */
        if (elen > 0) {
            if (n == UP_CIDR_LIST_MAX) {
                *why = "cidr: too many blocks";
                return UP_ELIMIT;
            }
            int rv = cidr_parse(e, elen, &l->v[n], why);
            if (rv < 0) {
                return rv;
            }
            n++;
        }
        s += len;
        if (*s == ',') {
            s++;
        }
    }
    l->n = n;
    return UP_OK;
}

bool up_cidr_list_match(const struct up_cidr_list *l, const uint8_t addr[16])
{
    size_t n = l->n < UP_CIDR_LIST_MAX ? l->n : UP_CIDR_LIST_MAX;
    for (size_t i = 0; i < n; i++) {
        if (up_cidr_match(&l->v[i], addr)) {
            return true;
        }
    }
    return false;
}

bool up_ip_is_v4(const uint8_t addr[16])
{
    return memcmp(addr, v4_mapped_prefix, sizeof v4_mapped_prefix) == 0;
}

void up_ip_format(const uint8_t addr[16], char *out, size_t cap)
{
    char text[INET6_ADDRSTRLEN];
    const char *r = up_ip_is_v4(addr) ? inet_ntop(AF_INET, addr + 12, text, sizeof text)
                                      : inet_ntop(AF_INET6, addr, text, sizeof text);
    if (cap == 0) {
        return;
    }
    size_t n = r ? strlen(text) : 0;
    if (n >= cap) {
        n = 0;
    }
    memcpy(out, text, n);
    out[n] = '\0';
}
