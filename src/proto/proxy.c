/* HTTP proxies for the way out: proxy URLs (RFC 3986 §3.2), NO_PROXY as curl reads it, and
 * the CONNECT request (RFC 9110 §9.3.6) with Basic credentials (RFC 7617). */
#include "proto/proxy.h"

#include <string.h>

#include "base/cidr.h"
#include "base/crypto.h"
#include "base/str.h"

#define DEFAULT_PORT_HTTP 80
#define DEFAULT_PORT_HTTPS 443

/* "user:pass" at its longest, and its base64 (RFC 7617 §2). */
#define CRED_MAX (2 * UP_PROXY_MAX_CRED + 1)
#define CRED_B64_MAX ((CRED_MAX + 2) / 3 * 4)

static char lower(char ch)
{
    return (ch >= 'A' && ch <= 'Z') ? (char)(ch - 'A' + 'a') : ch;
}

static bool is_digit(char ch)
{
    return ch >= '0' && ch <= '9';
}

static bool is_alpha(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
}

static int hex_val(char ch)
{
    if (is_digit(ch)) {
        return ch - '0';
    }
    ch = lower(ch);
    if (ch >= 'a' && ch <= 'f') {
        return ch - 'a' + 10;
    }
    return -1;
}

/* The credentials sit in the caller's struct and in our stack for a moment: scrub the
 * stack copies so they do not linger (a plain memset may be optimised away). */
static void wipe(void *p, size_t n)
{
    volatile uint8_t *v = p;
    while (n--) {
        *v++ = 0;
    }
}

/* Parse a decimal port in s[0..len), 1..65535. */
static bool port_parse(const char *s, size_t len, uint16_t *out)
{
    uint32_t v = 0;
    if (len == 0 || len > 5) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (!is_digit(s[i])) {
            return false;
        }
        v = v * 10 + (uint32_t)(s[i] - '0');
    }
    if (v == 0 || v > 65535) {
        return false;
    }
    *out = (uint16_t)v;
    return true;
}

/* Percent-decode s[0..len) into out (cap bytes including the NUL). */
static int pct_decode(const char *s, size_t len, char *out, size_t cap, bool is_user,
                      const char **why)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (ch == '%') {
            int hi = i + 2 < len ? hex_val(s[i + 1]) : -1;
            int lo = i + 2 < len ? hex_val(s[i + 2]) : -1;
            if (hi < 0 || lo < 0) {
                *why = "proxy: bad percent escape in credentials";
                return UP_EINVAL;
            }
            ch = (char)(hi << 4 | lo);
            i += 2;
        }
        /* A decoded CR/LF could end the Proxy-Authorization line in another program that
         * reuses the value; NUL would truncate it here. */
        if (ch == '\0' || ch == '\r' || ch == '\n') {
            *why = "proxy: control character in credentials";
            return UP_EINVAL;
        }
        /* RFC 7617 §2: the user-id cannot contain ':'. */
        if (is_user && ch == ':') {
            *why = "proxy: ':' in user name";
            return UP_EINVAL;
        }
        if (n + 1 >= cap) {
            *why = "proxy: credentials too long";
            return UP_EINVAL;
        }
        out[n++] = ch;
    }
    out[n] = '\0';
    return UP_OK;
}

/* RFC 3986 §3.1: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ), then "://". Returns
 * the scheme length, or 0 when url does not start with one. */
static size_t scheme_len(const char *url)
{
    size_t i = 0;
    if (!is_alpha(url[0])) {
        return 0;
    }
    while (is_alpha(url[i]) || is_digit(url[i]) || url[i] == '+' || url[i] == '-' ||
           url[i] == '.') {
        i++;
    }
    return strncmp(url + i, "://", 3) == 0 ? i : 0;
}

static const char *unsupported_scheme(const char *s, size_t len)
{
    static const struct {
        const char *name;
        const char *why;
    } known[] = {
        {.name = "socks4", .why = "proxy: socks4:// is not supported (HTTP proxies only)"},
        {.name = "socks4a", .why = "proxy: socks4a:// is not supported (HTTP proxies only)"},
        {.name = "socks5", .why = "proxy: socks5:// is not supported (HTTP proxies only)"},
        {.name = "socks5h", .why = "proxy: socks5h:// is not supported (HTTP proxies only)"},
        {.name = "socks", .why = "proxy: socks:// is not supported (HTTP proxies only)"},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        if (up_str_ieq(s, len, known[i].name)) {
            return known[i].why;
        }
    }
    return "proxy: unsupported scheme (only http:// and https://)";
}

/* Host names we hand to the resolver: RFC 1123 labels, plus '_' seen in the wild. */
static bool is_host_char(char ch)
{
    return is_alpha(ch) || is_digit(ch) || ch == '-' || ch == '.' || ch == '_';
}

static int parse_authority(const char *a, size_t alen, struct up_proxy *p, const char **why)
{
    /* The last '@' ends the userinfo: a host never contains one, so a raw '@' in a password
     * is taken as part of it. */
    const char *at = NULL;
    for (size_t i = 0; i < alen; i++) {
        if (a[i] == '@') {
            at = a + i;
        }
    }
    if (at) {
        size_t ulen = (size_t)(at - a);
        const char *colon = memchr(a, ':', ulen);
        size_t user_len = colon ? (size_t)(colon - a) : ulen;
        int rv = pct_decode(a, user_len, p->user, sizeof p->user, true, why);
        if (rv < 0) {
            return rv;
        }
        if (colon) {
            rv = pct_decode(colon + 1, ulen - user_len - 1, p->pass, sizeof p->pass, false, why);
            if (rv < 0) {
                return rv;
            }
        }
        p->has_auth = ulen > 0;
        alen -= ulen + 1;
        a = at + 1;
    }

    const char *h = a, *port = NULL;
    size_t hlen, plen = 0;
    if (alen > 0 && a[0] == '[') {
        const char *close = memchr(a, ']', alen);
        if (!close) {
            *why = "proxy: unclosed '[' in host";
            return UP_EINVAL;
        }
        h = a + 1;
        hlen = (size_t)(close - h);
        uint8_t ip[16];
        /* Only IPv6 goes in brackets (RFC 3986 §3.2.2); IPvFuture is not supported. */
        if (up_ip_parse(a, hlen + 2, ip) < 0) {
            *why = "proxy: bad IPv6 address in brackets";
            return UP_EINVAL;
        }
        const char *rest = close + 1;
        size_t rlen = alen - (size_t)(rest - a);
        if (rlen > 0) {
            if (rest[0] != ':') {
                *why = "proxy: junk after ']' in host";
                return UP_EINVAL;
            }
            port = rest + 1;
            plen = rlen - 1;
        }
    } else {
        const char *colon = memchr(a, ':', alen);
        hlen = colon ? (size_t)(colon - a) : alen;
        if (colon) {
            port = colon + 1;
            plen = alen - hlen - 1;
            if (memchr(port, ':', plen)) {
                *why = "proxy: IPv6 address must be in brackets";
                return UP_EINVAL;
            }
        }
        for (size_t i = 0; i < hlen; i++) {
            if (!is_host_char(h[i])) {
                *why = "proxy: bad character in host";
                return UP_EINVAL;
            }
        }
    }
    if (hlen == 0) {
        *why = "proxy: missing host";
        return UP_EINVAL;
    }
    if (hlen >= sizeof p->host) {
        *why = "proxy: host name too long";
        return UP_EINVAL;
    }
    memcpy(p->host, h, hlen);
    p->host[hlen] = '\0';

    /* RFC 3986 §3.2.3: an empty port ("host:") means the default one. */
    if (port && plen > 0) {
        for (size_t i = 0; i < plen; i++) {
            if (!is_digit(port[i])) {
                *why = "proxy: bad port";
                return UP_EINVAL;
            }
        }
        if (!port_parse(port, plen, &p->port)) {
            *why = "proxy: port out of range (1-65535)";
            return UP_EINVAL;
        }
    } else {
        p->port = p->tls ? DEFAULT_PORT_HTTPS : DEFAULT_PORT_HTTP;
    }
    return UP_OK;
}

int up_proxy_parse(const char *url, struct up_proxy *p, const char **why)
{
    const char *dummy;
    if (!why) {
        why = &dummy;
    }
    *why = NULL;
    if (!p) {
        *why = "proxy: no output";
        return UP_EINVAL;
    }
    memset(p, 0, sizeof *p);
    if (!url || !*url) {
        *why = "proxy: empty URL";
        return UP_EINVAL;
    }
    const char *rest = url;
    size_t slen = scheme_len(url);
    if (slen > 0) {
        if (up_str_ieq(url, slen, "https")) {
            p->tls = true;
        } else if (!up_str_ieq(url, slen, "http")) {
            *why = unsupported_scheme(url, slen);
            return UP_EINVAL;
        }
        rest = url + slen + 3;
    }
    size_t alen = strcspn(rest, "/?#");
    /* A proxy URL names a host: "/" may end it, anything longer is a mistake. */
    if (rest[alen] != '\0' && strcmp(rest + alen, "/") != 0) {
        *why = "proxy: URL has a path, query or fragment";
        return UP_EINVAL;
    }
    int rv = parse_authority(rest, alen, p, why);
    if (rv < 0) {
        wipe(p, sizeof *p);
        return rv;
    }
    return UP_OK;
}

/* Strip one trailing dot: "example.com." is the same name, fully qualified. */
static size_t strip_dot(const char *s, size_t len)
{
    return (len > 1 && s[len - 1] == '.') ? len - 1 : len;
}

static bool name_match(const char *host, size_t hlen, const char *name, size_t nlen)
{
    /* ".example.com" reads as "example.com", as curl does. */
    if (nlen > 0 && name[0] == '.') {
        name++;
        nlen--;
    }
    nlen = strip_dot(name, nlen);
    if (nlen == 0 || nlen > hlen) {
        return false;
    }
    const char *tail = host + (hlen - nlen);
    for (size_t i = 0; i < nlen; i++) {
        if (lower(tail[i]) != lower(name[i])) {
            return false;
        }
    }
    return nlen == hlen || tail[-1] == '.';
}

/* One NO_PROXY entry e[0..len), already trimmed and non-empty. */
static bool entry_match(const char *e, size_t len, const char *host, size_t hlen, bool host_ip,
                        const uint8_t *addr, uint16_t port)
{
    size_t nlen = len;
    const char *pstr = NULL;
    if (e[0] == '[') {
        const char *close = memchr(e, ']', len);
        if (!close) {
            return false;
        }
        nlen = (size_t)(close - e) + 1;
        /* "[fd00::]/8" keeps its prefix length with the address. */
        if (nlen < len && e[nlen] == '/') {
            nlen++;
            while (nlen < len && is_digit(e[nlen])) {
                nlen++;
            }
        }
        if (nlen < len) {
            if (e[nlen] != ':') {
                return false;
            }
            pstr = e + nlen + 1;
        }
    } else {
        const char *colon = memchr(e, ':', len);
        /* Two colons or more: a bare IPv6 address or block, which cannot carry a port. */
        if (colon && !memchr(colon + 1, ':', len - (size_t)(colon - e) - 1)) {
            nlen = (size_t)(colon - e);
            pstr = colon + 1;
        }
    }
    if (pstr) {
        uint16_t want;
        if (!port_parse(pstr, len - (size_t)(pstr - e), &want) || want != port) {
            return false;
        }
    }
    if (nlen == 1 && e[0] == '*') {
        return true;
    }
    if (memchr(e, '/', nlen)) {
        struct up_cidr c;
        /* A block that does not parse is ignored, never a match. */
        return host_ip && up_cidr_parse(e, nlen, &c) == UP_OK && up_cidr_match(&c, addr);
    }
    uint8_t ip[16];
    if (up_ip_parse(e, nlen, ip) == UP_OK) {
        return host_ip && memcmp(ip, addr, 16) == 0;
    }
    /* Names match names only: "1.2.3" must not match the address 10.1.2.3. */
    return !host_ip && name_match(host, hlen, e, nlen);
}

bool up_proxy_no_proxy_match(const char *list, const char *host, uint16_t port)
{
    if (!list || !host) {
        return false;
    }
    size_t hlen = strlen(host);
    if (hlen >= 2 && host[0] == '[' && host[hlen - 1] == ']') {
        host++;
        hlen -= 2;
    }
    hlen = strip_dot(host, hlen);
    if (hlen == 0) {
        return false;
    }
    uint8_t addr[16];
    bool host_ip = up_ip_parse(host, hlen, addr) == UP_OK;
    const char *s = list;
    while (*s) {
        size_t len = strcspn(s, ",");
        const char *e = s;
        size_t elen = len;
        up_str_trim_ows(&e, &elen);
        if (elen > 0 && entry_match(e, elen, host, hlen, host_ip, addr, port)) {
            return true;
        }
        s += len;
        if (*s == ',') {
            s++;
        }
    }
    return false;
}

/* The first of the two variables that is set and not empty. */
static const char *env_pick(up_proxy_getenv_fn getenv_fn, void *ud, const char *lower_name,
                            const char *upper_name, const char **name)
{
    if (!getenv_fn) {
        return NULL;
    }
    const char *v = getenv_fn(lower_name, ud);
    if (v && *v) {
        *name = lower_name;
        return v;
    }
    v = getenv_fn(upper_name, ud);
    if (v && *v) {
        *name = upper_name;
        return v;
    }
    return NULL;
}

/* localhost, *.localhost (RFC 6761), 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104. */
static bool is_loopback_host(const char *host)
{
    size_t n = strlen(host);
    if (up_str_ieq(host, n, "localhost") ||
        (n > 10 && up_str_ieq(host + n - 10, 10, ".localhost"))) {
        return true;
    }
    uint8_t a[16];
    if (up_ip_parse(host, n, a) != UP_OK) {
        return false;
    }
    static const uint8_t v6_loopback[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    static const uint8_t v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return memcmp(a, v6_loopback, 16) == 0 || (memcmp(a, v4_mapped, 12) == 0 && a[12] == 127);
}

int up_proxy_choose(bool tls, const char *host, uint16_t port, const char *explicit_url,
                    up_proxy_getenv_fn getenv_fn, void *ud, struct up_proxy *p, bool *use,
                    const char **source, const char **why)
{
    const char *dummy_src, *dummy_why;
    if (!source) {
        source = &dummy_src;
    }
    if (!why) {
        why = &dummy_why;
    }
    *source = NULL;
    *why = NULL;
    if (!p || !use || !host) {
        *why = "proxy: bad arguments";
        return UP_EINVAL;
    }
    *use = false;
    memset(p, 0, sizeof *p);

    const char *url = NULL;
    if (explicit_url && *explicit_url) {
        *source = "--proxy";
        if (up_str_ieq(explicit_url, strlen(explicit_url), "none") ||
            up_str_ieq(explicit_url, strlen(explicit_url), "direct")) {
            return UP_OK;
        }
        url = explicit_url;
    } else if (tls) {
        url = env_pick(getenv_fn, ud, "https_proxy", "HTTPS_PROXY", source);
    } else {
        url = env_pick(getenv_fn, ud, "http_proxy", "HTTP_PROXY", source);
    }
    if (!url) {
        return UP_OK;
    }
    /* Parse before NO_PROXY: a broken setting is reported even when this host skips it. */
    int rv = up_proxy_parse(url, p, why);
    if (rv < 0) {
        return rv;
    }
    if (!explicit_url || !*explicit_url) {
        if (is_loopback_host(host)) {
            /* A relay on this machine is never behind the machine's proxy (as Go's
             * ProxyFromEnvironment decides); --proxy still applies, for tests and odd setups. */
            wipe(p, sizeof *p);
            *source = NULL;
            return UP_OK;
        }
    }
    const char *np_name = NULL;
    const char *np = env_pick(getenv_fn, ud, "no_proxy", "NO_PROXY", &np_name);
    if (np && up_proxy_no_proxy_match(np, host, port)) {
        wipe(p, sizeof *p);
        *source = np_name;
        return UP_OK;
    }
    *use = true;
    return UP_OK;
}

/* RFC 3986 §3.2.2 reg-name: unreserved / pct-encoded / sub-delims. */
static bool reg_name_valid(const char *h, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        char ch = h[i];
        if (is_alpha(ch) || is_digit(ch) || strchr("-._~!$&'()*+,;=", ch)) {
            continue;
        }
        if (ch == '%' && i + 2 < len && hex_val(h[i + 1]) >= 0 && hex_val(h[i + 2]) >= 0) {
            i += 2;
            continue;
        }
        return false;
    }
    return true;
}

/* Append s[0..n) to out at *off, leaving room for the NUL. */
static bool put(char *out, size_t cap, size_t *off, const char *s, size_t n)
{
    if (cap - *off <= n) {
        return false;
    }
    memcpy(out + *off, s, n);
    *off += n;
    return true;
}

/* host:port, with the brackets an IPv6 literal needs (RFC 3986 §3.2.2). */
static bool put_authority(char *out, size_t cap, size_t *off, const char *host, size_t hlen,
                          bool v6, uint16_t port)
{
    char digits[8];
    int n = up_fmt(digits, sizeof digits, ":%u", (unsigned)port);
    return n > 0 && (!v6 || put(out, cap, off, "[", 1)) && put(out, cap, off, host, hlen) &&
           (!v6 || put(out, cap, off, "]", 1)) && put(out, cap, off, digits, (size_t)n);
}

static size_t bounded_len(const char *s, size_t cap)
{
    const char *nul = memchr(s, '\0', cap);
    return nul ? (size_t)(nul - s) : cap;
}

int up_proxy_connect_request(const struct up_proxy *p, const char *host, uint16_t port, char *out,
                             size_t cap, size_t *len)
{
    if (len) {
        *len = 0;
    }
    if (!p || !host || !out || !len) {
        return UP_EINVAL;
    }
    if (cap > 0) {
        out[0] = '\0';
    }
    size_t hlen = strlen(host);
    uint8_t ip[16];
    /* Only an IPv6 literal has (and needs) brackets; it may come with or without them. */
    bool v6 = memchr(host, ':', hlen) != NULL;
    if (v6 || (hlen > 0 && host[0] == '[')) {
        if (up_ip_parse(host, hlen, ip) < 0 || !memchr(host, ':', hlen)) {
            return UP_EINVAL;
        }
        if (host[0] == '[') {
            host++;
            hlen -= 2;
        }
        v6 = true;
    } else if (hlen == 0 || !reg_name_valid(host, hlen)) {
        return UP_EINVAL;
    }

    size_t off = 0;
    bool ok = cap > 0 && put(out, cap, &off, "CONNECT ", 8) &&
              put_authority(out, cap, &off, host, hlen, v6, port) &&
              put(out, cap, &off, " HTTP/1.1\r\nHost: ", 17) &&
              put_authority(out, cap, &off, host, hlen, v6, port) && put(out, cap, &off, "\r\n", 2);
    if (ok && p->has_auth) {
        char cred[CRED_MAX + 1];
        char b64[CRED_B64_MAX + 1];
        size_t ulen = bounded_len(p->user, sizeof p->user - 1);
        size_t plen = bounded_len(p->pass, sizeof p->pass - 1);
        memcpy(cred, p->user, ulen);
        cred[ulen] = ':';
        memcpy(cred + ulen + 1, p->pass, plen);
        size_t blen = up_b64_encode((const uint8_t *)cred, ulen + 1 + plen, b64, false);
        ok = put(out, cap, &off, "Proxy-Authorization: Basic ", 27) &&
             put(out, cap, &off, b64, blen) && put(out, cap, &off, "\r\n", 2);
        wipe(cred, sizeof cred);
        wipe(b64, sizeof b64);
    }
    ok = ok && put(out, cap, &off, "User-Agent: underpass\r\n\r\n", 25);
    if (!ok) {
        if (cap > 0) {
            wipe(out, off);
            out[0] = '\0';
        }
        return UP_ELIMIT;
    }
    out[off] = '\0';
    *len = off;
    return UP_OK;
}
