/* HTTP proxies for the way out (sans-IO): proxy URLs, the conventional environment variables,
 * NO_PROXY matching and the CONNECT request. The dialer (src/link/dial.c) does the I/O and
 * parses the proxy's answer with the h1 parser.
 *
 * Which proxy: an explicit one (--proxy / UNDERPASS_PROXY) wins; otherwise, for a wss://
 * relay, https_proxy then HTTPS_PROXY; for ws://, http_proxy then HTTP_PROXY (lowercase wins,
 * as with curl and wget; an empty value counts as unset). Then no_proxy / NO_PROXY (lowercase
 * wins) can exclude the relay host, for the explicit proxy too, as with curl. A loopback relay
 * (localhost, *.localhost, 127.0.0.0/8, ::1) never uses a proxy from the environment, as with
 * Go's ProxyFromEnvironment; an explicit --proxy still applies to it. */
#ifndef UP_PROTO_PROXY_H
#define UP_PROTO_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

#define UP_PROXY_MAX_CRED 255

struct up_proxy {
    bool tls;       /* https:// proxy: TLS to the proxy itself */
    char host[256]; /* without brackets for IPv6 */
    uint16_t port;
    bool has_auth;
    char user[UP_PROXY_MAX_CRED + 1]; /* percent-decoded */
    char pass[UP_PROXY_MAX_CRED + 1]; /* percent-decoded */
};

/* Parse a proxy URL: http://[user[:pass]@]host[:port][/], https://..., or a bare
 * host:port (taken as http://, as curl does). Default ports: http 80, https 443. User and
 * password are percent-decoded (%40 -> @); a decoded NUL, CR, LF or a ':' in the user is
 * refused. Any other scheme (socks5:// ...) is refused with a reason naming it. Returns UP_OK
 * or UP_EINVAL with *why a static one-line reason (never containing the password). */
UP_NODISCARD int up_proxy_parse(const char *url, struct up_proxy *p, const char **why);

/* Whether the comma-separated list (spaces and empty entries ignored, case-insensitive)
 * excludes host:port from proxying. Entries: "*" (everything); a host name that matches
 * exactly or as a suffix on a label boundary ("example.com" matches example.com and
 * a.example.com, not badexample.com); ".example.com" (the same: the leading dot is dropped,
 * as curl does); an IP literal (v4 or v6, v6 optionally in brackets) matching exactly; a CIDR block
 * ("10.0.0.0/8", "fd00::/8") matching IP-literal hosts only; and any of these followed by
 * ":port", which then also requires that port. host is given without brackets. */
bool up_proxy_no_proxy_match(const char *list, const char *host, uint16_t port);

/* Environment lookup, injectable for tests: returns the value or NULL. */
typedef const char *(*up_proxy_getenv_fn)(const char *name, void *ud);

/* Choose the proxy for a relay at host:port (tls = wss://). explicit_url is --proxy (NULL or
 * "" = none given; the literal "none" or "direct" = never use a proxy, ignoring the
 * environment). Sets *use and fills *p when a proxy applies; *source names where it came
 * from ("--proxy", "https_proxy", "HTTPS_PROXY", ...). Returns UP_OK, or UP_EINVAL with
 * *why when the chosen URL does not parse (a bad proxy setting is an error, never silently
 * ignored). */
UP_NODISCARD int up_proxy_choose(bool tls, const char *host, uint16_t port,
                                 const char *explicit_url, up_proxy_getenv_fn getenv_fn, void *ud,
                                 struct up_proxy *p, bool *use, const char **source,
                                 const char **why);

/* Write the CONNECT request for host:port into out (cap bytes, NUL-terminated):
 *   CONNECT host:port HTTP/1.1\r\nHost: host:port\r\n
 *   [Proxy-Authorization: Basic base64(user:pass)\r\n]User-Agent: underpass\r\n\r\n
 * IPv6 hosts in brackets. *len gets the length. Returns UP_OK, UP_EINVAL (host with CR/LF,
 * space or other bytes not allowed in an authority) or UP_ELIMIT (cap too small). */
UP_NODISCARD int up_proxy_connect_request(const struct up_proxy *p, const char *host, uint16_t port,
                                          char *out, size_t cap, size_t *len);

#endif
