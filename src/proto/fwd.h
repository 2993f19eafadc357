/* Who the client really is, carried across proxies (sans-IO):
 *  - X-Forwarded-For from a front proxy the relay trusts (--trusted-proxy), walked from the
 *    right as nginx's realip module does with real_ip_recursive: the first address that is
 *    not a trusted proxy is the client, so a client cannot forge its way in by sending its
 *    own X-Forwarded-For;
 *  - the PROXY protocol header (v1 text, v2 binary; haproxy's spec) the agent may put in
 *    front of a TCP backend's stream, so the backend sees the client's address. */
#ifndef UP_PROTO_FWD_H
#define UP_PROTO_FWD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/cidr.h"
#include "base/err.h"

/* v[0..len) is the comma-separated X-Forwarded-For value (several header lines joined with
 * ", " in order). Entries are IP addresses, optionally with a port ("192.0.2.1:4711",
 * "[2001:db8::1]:4711") and surrounded by spaces. Walking from the right, trusted entries are
 * skipped; the first untrusted one is written to out. When every entry is trusted, the
 * leftmost is the client. Returns UP_OK, or UP_EPROTO when the walk meets an entry that is
 * not an address (or the value is empty): the caller then keeps the peer's own address. */
UP_NODISCARD int up_fwd_xff_client(const char *v, size_t len, const struct up_cidr_list *trusted,
                                   uint8_t out[16]);

/* Parse one address with an optional port, s[0..len) with no surrounding spaces: "192.0.2.1",
 * "192.0.2.1:4711", "2001:db8::1", "[2001:db8::1]", "[2001:db8::1]:4711". *port is 0 when
 * there is none. Returns UP_OK, or UP_EPROTO (out and port untouched). */
UP_NODISCARD int up_fwd_addr_parse(const char *s, size_t len, uint8_t out[16], uint16_t *port);

/* The largest header the builders below write: a v1 line is at most 107 bytes. */
#define UP_FWD_PROXY_MAX 108

/* PROXY protocol v1 line for a TCP connection from src:sport to dst:dport:
 * "PROXY TCP4 192.0.2.1 198.51.100.2 4711 443\r\n" (TCP6 for IPv6; when the two families
 * differ both are written as IPv6, IPv4-mapped). At most 107 bytes (the spec's limit), so
 * cap >= 108 always suffices. Returns UP_OK with *len set, or UP_ELIMIT. */
UP_NODISCARD int up_fwd_proxy_v1(const uint8_t src[16], uint16_t sport, const uint8_t dst[16],
                                 uint16_t dport, char *out, size_t cap, size_t *len);

/* PROXY protocol v2 header (binary): 12-byte signature, version 2 / PROXY command, AF_INET or
 * AF_INET6 over STREAM, then the addresses and ports in network order. 28 bytes for IPv4, 52
 * for IPv6 (mixed families as IPv6). Returns UP_OK with *len set, or UP_ELIMIT. */
UP_NODISCARD int up_fwd_proxy_v2(const uint8_t src[16], uint16_t sport, const uint8_t dst[16],
                                 uint16_t dport, uint8_t *out, size_t cap, size_t *len);

/* The headers for a connection whose origin is not known (haproxy's proxy-protocol.txt):
 * v1 "PROXY UNKNOWN\r\n" (15 bytes, the receiver uses the real connection's addresses), and
 * v2 the LOCAL command (ver_cmd 0x20, family 0x00 UNSPEC, length 0: 16 bytes). Return UP_OK
 * with *len set, or UP_ELIMIT when cap is too small (*len 0). */
UP_NODISCARD int up_fwd_proxy_v1_unknown(char *out, size_t cap, size_t *len);
UP_NODISCARD int up_fwd_proxy_v2_local(uint8_t *out, size_t cap, size_t *len);

#endif
