/* Who may use the relay: the bearer token of a request and its verification against the
 * relay's secret. Deciding what a valid token allows is up to each endpoint. */
#ifndef UP_RELAY_AUTH_H
#define UP_RELAY_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#include "proto/h1.h"
#include "proto/token.h"
#include "relay/types.h"

/* The token of m's "Authorization: Bearer TOKEN" header, trimmed of spaces and tabs, in
 * *tok[0..*len): a slice of m's head. False (*tok, *len undefined) when there is none, it is
 * not a Bearer one or the token is empty (up_hparse_bearer(): *tok and *len may be set to an
 * empty token then). */
bool relay_bearer(const struct up_h1_msg *m, const char **tok, size_t *len);
/* up_token_verify() of tok[0..len) with r's secret, the time now and r's leeway: UP_OK with
 * *cl filled, or a negative up_err with *reason (static text) set. */
int relay_verify(const struct up_relay *r, const char *tok, size_t len, struct up_token_claims *cl,
                 const char **reason);

#endif
