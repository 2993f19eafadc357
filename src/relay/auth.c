/* Bearer tokens and their verification (see auth.h). */
#include "relay/auth.h"

#include <string.h>
#include <time.h>

#include "base/str.h"
#include "relay/relay.h"

const char *relay_query_param(const char *q, size_t qlen, const char *key, size_t *vlen)
{
    size_t kl = strlen(key);
    const char *p = q, *end = q + qlen;
    while (p && p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *pe = amp ? amp : end;
        if ((size_t)(pe - p) > kl && memcmp(p, key, kl) == 0 && p[kl] == '=') {
            *vlen = (size_t)(pe - p) - kl - 1;
            return p + kl + 1;
        }
        p = pe + 1;
    }
    return NULL;
}

bool relay_bearer(const struct up_h1_msg *m, const char **tok, size_t *len)
{
    const struct up_h1_header *auth = up_h1_find(m, "authorization");
    if (!auth || auth->value_len < 8 || !up_str_ieq(auth->value, 7, "bearer ")) {
        return false;
    }
    *tok = auth->value + 7;
    *len = auth->value_len - 7;
    up_str_trim_ows(tok, len);
    return *len > 0;
}

int relay_verify(const struct up_relay *r, const char *tok, size_t len, struct up_token_claims *cl,
                 const char **reason)
{
    return up_token_verify(tok, len, r->cfg->secret, r->cfg->secret_len, (int64_t)time(NULL),
                           (int64_t)r->cfg->leeway_s, cl, reason);
}
