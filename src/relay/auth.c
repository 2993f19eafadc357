/* Bearer tokens and their verification (see auth.h). */
#include "relay/auth.h"

#include <string.h>
#include <time.h>

#include "proto/hparse.h"
#include "relay/relay.h"

bool relay_bearer(const struct up_h1_msg *m, const char **tok, size_t *len)
{
    const struct up_h1_header *auth = up_h1_find(m, "authorization");
    return auth && up_hparse_bearer(auth->value, auth->value_len, tok, len);
}

int relay_verify(const struct up_relay *r, const char *tok, size_t len, struct up_token_claims *cl,
                 const char **reason)
{
    return up_token_verify(tok, len, r->cfg->secret, r->cfg->secret_len, (int64_t)time(NULL),
                           (int64_t)r->cfg->leeway_s, cl, reason);
}
