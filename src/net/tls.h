/* TLS contexts and per-socket handshakes (OpenSSL 3). */
#ifndef UP_NET_TLS_H
#define UP_NET_TLS_H

#include <stdbool.h>

#include "base/err.h"
#include "net/sock.h"

struct ssl_ctx_st;

/* Server context from PEM files. On failure returns NULL and writes a one-line reason. */
struct ssl_ctx_st *up_tls_server_ctx(const char *cert, const char *key, char *err, size_t cap);
/* Client context: verification on against ca_file (NULL: the system store) unless insecure. */
struct ssl_ctx_st *up_tls_client_ctx(const char *ca_file, bool insecure, char *err, size_t cap);
void up_tls_ctx_free(struct ssl_ctx_st *ctx);

/* Attach TLS to a connected socket: as a client (with SNI and host-name verification against
 * host) or as a server. Returns UP_OK or UP_ENOMEM. */
UP_NODISCARD int up_tls_attach(struct up_sock *s, struct ssl_ctx_st *ctx, bool server,
                               const char *host);
/* Attach a second TLS session inside the one already on s (TLS to an https:// proxy, then TLS
 * to the relay through the proxy's tunnel): the new session reads and writes through the old
 * one, which it then owns. Client side only. Returns UP_OK or UP_ENOMEM. */
UP_NODISCARD int up_tls_attach_inner(struct up_sock *s, struct ssl_ctx_st *ctx, const char *host);
/* Drive the handshake: UP_OK when done, UP_EAGAIN (poll interest updated), UP_ETLS. */
UP_NODISCARD int up_tls_handshake(struct up_sock *s);
/* One line describing why the last TLS operation on s failed (verification result included);
 * clears the OpenSSL error queue. */
const char *up_tls_error(struct up_sock *s, char *buf, size_t cap);
/* Whether the last handshake failed because the peer's certificate did not verify. */
bool up_tls_verify_failed(const struct up_sock *s);
/* The issuer of the certificate the peer presented ("CN=..., O=..."), or "" when unknown. */
const char *up_tls_peer_issuer(const struct up_sock *s, char *buf, size_t cap);

#endif
