#include "proto/hparse.h"

#include <stdio.h>
#include <string.h>

#include "base/str.h"

const char *up_hparse_query_next(const char **pos, const char *end, const char *key, size_t *vlen)
{
    size_t kl = strlen(key);
    const char *p = *pos;
    while (p && p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *pe = amp ? amp : end;
        if ((size_t)(pe - p) > kl && memcmp(p, key, kl) == 0 && p[kl] == '=') {
            *vlen = (size_t)(pe - p) - kl - 1;
            *pos = pe;
            return p + kl + 1;
        }
        p = pe + 1;
    }
    *pos = end;
    return NULL;
}

const char *up_hparse_query_param(const char *q, size_t qlen, const char *key, size_t *vlen)
{
    const char *pos = q;
    return up_hparse_query_next(&pos, q ? q + qlen : NULL, key, vlen);
}

bool up_hparse_bearer(const char *v, size_t len, const char **tok, size_t *tlen)
{
    /* RFC 6750 §2.1: credentials = "Bearer" 1*SP b64token; the scheme is case-insensitive
     * (RFC 9110 §11.1). */
    if (len < 8 || !up_str_ieq(v, 7, "bearer ")) {
        return false;
    }
    *tok = v + 7;
    *tlen = len - 7;
    up_str_trim_ows(tok, tlen);
    return *tlen > 0;
}

const char *up_hparse_cookie(const char *v, size_t len, const char *name, size_t *vlen)
{
    size_t nl = strlen(name);
    const char *p = v, *end = v + len;
    while (p < end) {
        const char *semi = memchr(p, ';', (size_t)(end - p));
        const char *pe = semi ? semi : end;
        const char *s = p;
        size_t l = (size_t)(pe - p);
        up_str_trim_ows(&s, &l);
        if (l > nl && memcmp(s, name, nl) == 0 && s[nl] == '=') {
            *vlen = l - nl - 1;
            return s + nl + 1;
        }
        p = pe + 1;
    }
    return NULL;
}

const char *up_hparse_forwarded_proto(const char *v, size_t len)
{
    const char *comma = len ? memrchr(v, ',', len) : NULL;
    if (comma) {
        len -= (size_t)(comma + 1 - v);
        v = comma + 1;
    }
    while (len && (*v == ' ' || *v == '\t')) {
        v++;
        len--;
    }
    if (up_str_ieq(v, len, "https")) {
        return "https";
    }
    if (up_str_ieq(v, len, "http")) {
        return "http";
    }
    return NULL;
}

bool up_hparse_host(const char *v, size_t len, char *out, size_t cap)
{
    if (len == 0 || len >= cap) {
        return false;
    }
    size_t n = len;
    if (v[0] == '[') {
        const char *e = memchr(v, ']', n);
        n = e ? (size_t)(e - v + 1) : n;
    } else {
        const char *colon = memchr(v, ':', n);
        if (colon) {
            n = (size_t)(colon - v);
        }
    }
    while (n && v[n - 1] == '.') {
        n--;
    }
    for (size_t i = 0; i < n; i++) {
        char ch = v[i];
        out[i] = (char)(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
    }
    out[n] = '\0';
    return n > 0;
}

void up_hparse_wsproto_init(struct up_hparse_wsproto *sp)
{
    memset(sp, 0, sizeof *sp);
}

void up_hparse_wsproto_feed(struct up_hparse_wsproto *sp, const char *v, size_t len)
{
    const char *p = v, *end = v + len;
    while (p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *pe = comma ? comma : end;
        const char *s = p;
        size_t l = (size_t)(pe - p);
        up_str_trim_ows(&s, &l);
        if (l > 7 && memcmp(s, "bearer.", 7) == 0) {
            if (!sp->bearer) {
                sp->bearer = s;
                sp->bearer_len = l;
            }
        } else if (l == 6 && memcmp(s, "binary", 6) == 0) {
            sp->binary = s;
            sp->binary_len = l;
        } else if (l && !sp->first) {
            sp->first = s;
            sp->first_len = l;
        }
        p = pe + 1;
    }
}

const char *up_hparse_wsproto_pick(const struct up_hparse_wsproto *sp, size_t *len)
{
    if (sp->binary) {
        *len = sp->binary_len;
        return sp->binary;
    }
    *len = sp->first ? sp->first_len : sp->bearer_len;
    return sp->first ? sp->first : sp->bearer;
}

const char *up_hparse_wsproto_token(const struct up_hparse_wsproto *sp, size_t *len)
{
    if (!sp->bearer) {
        return NULL;
    }
    *len = sp->bearer_len - 7;
    return sp->bearer + 7;
}

/* Mark the services listed in parameter key ("http=web,api") with flag; each must be one of
 * the agent's services. */
static int service_flags(const char *q, size_t qlen, const char *key, uint8_t flag,
                         struct up_hparse_services *out, char *why, size_t cap)
{
    size_t vlen = 0;
    const char *v = up_hparse_query_param(q, qlen, key, &vlen);
    const char *s = v, *end = v ? v + vlen : NULL;
    while (s && s < end) {
        const char *comma = memchr(s, ',', (size_t)(end - s));
        const char *se = comma ? comma : end;
        size_t len = (size_t)(se - s), i;
        for (i = 0; i < out->n; i++) {
            if (strlen(out->names[i]) == len && memcmp(out->names[i], s, len) == 0) {
                out->flags[i] |= flag;
                break;
            }
        }
        if (i == out->n) {
            snprintf(why, cap, "%s=%.*s names no service of this agent", key,
                     (int)(len > 64 ? 64 : len), s);
            return UP_EPROTO;
        }
        s = se + 1;
    }
    return UP_OK;
}

int up_hparse_services(const char *q, size_t qlen, const struct up_token_claims *cl,
                       struct up_hparse_services *out, char *why, size_t cap)
{
    memset(out, 0, sizeof *out);
    size_t vlen = 0;
    const char *v = up_hparse_query_param(q, qlen, "services", &vlen);
    const char *s = v, *pe = v ? v + vlen : NULL;
    while (s && s < pe) {
        const char *comma = memchr(s, ',', (size_t)(pe - s));
        const char *se = comma ? comma : pe;
        size_t len = (size_t)(se - s);
        if (len == 0 || len > UP_TOKEN_MAX_NAME || !up_token_valid_service_name(s, len) ||
            (len == 1 && s[0] == '*')) {
            snprintf(why, cap, "invalid service name '%.*s'", (int)(len > 64 ? 64 : len), s);
            return UP_EPROTO;
        }
        if (!up_token_allows(cl, s, len)) {
            snprintf(why, cap, "token does not allow service '%.*s'", (int)len, s);
            return UP_EAUTH;
        }
        if (out->n >= UP_TOKEN_MAX_SERVICES) {
            snprintf(why, cap, "too many services");
            return UP_ELIMIT;
        }
        memcpy(out->names[out->n], s, len);
        out->names[out->n][len] = '\0';
        out->n++;
        s = se + 1;
    }
    if (out->n == 0) {
        snprintf(why, cap, "no services listed (?services=name,...)");
        return UP_EPROTO;
    }
    int rv = service_flags(q, qlen, "http", UP_HPARSE_SVC_HTTP, out, why, cap);
    if (rv < 0) {
        return rv;
    }
    return service_flags(q, qlen, "protect", UP_HPARSE_SVC_PROTECT, out, why, cap);
}

int up_hparse_route(const char *spec, struct up_hparse_route *rt, char *err, size_t cap)
{
    memset(rt, 0, sizeof *rt);
    const char *eq = strrchr(spec, '=');
    if (!eq || eq == spec) {
        snprintf(err, cap, "--route '%.80s': expected [HOST][/PREFIX]=SERVICE", spec);
        return UP_EINVAL;
    }
    size_t sl = strlen(eq + 1);
    if (sl == 0 || sl > UP_TOKEN_MAX_NAME || !up_token_valid_service_name(eq + 1, sl)) {
        snprintf(err, cap, "--route '%.80s': '%s' is not a valid service name", spec, eq + 1);
        return UP_EINVAL;
    }
    memcpy(rt->service, eq + 1, sl + 1);
    const char *slash = memchr(spec, '/', (size_t)(eq - spec));
    size_t hl = slash ? (size_t)(slash - spec) : (size_t)(eq - spec);
    size_t pl = slash ? (size_t)(eq - slash) : 0;
    if (hl >= sizeof rt->host || pl >= sizeof rt->prefix) {
        snprintf(err, cap, "--route '%.80s': host or prefix too long", spec);
        return UP_EINVAL;
    }
    for (size_t i = 0; i < hl; i++) {
        char ch = spec[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '-' || ch == '_' || ch == '[' || ch == ']' || ch == ':')) {
            snprintf(err, cap, "--route '%.80s': '%.*s' is not a host name", spec, (int)hl, spec);
            return UP_EINVAL;
        }
        rt->host[i] = (char)(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
    }
    memcpy(rt->prefix, slash ? slash : "", pl);
    if (hl == 0 && pl == 0) {
        snprintf(err, cap, "--route '%.80s': give a host, a /prefix or both", spec);
        return UP_EINVAL;
    }
    for (size_t i = 0; i < pl; i++) {
        if ((unsigned char)rt->prefix[i] <= ' ' || rt->prefix[i] == '?' || rt->prefix[i] == '#') {
            snprintf(err, cap, "--route '%.80s': bad character in the path prefix", spec);
            return UP_EINVAL;
        }
    }
    return UP_OK;
}
