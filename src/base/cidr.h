/* IP address blocks: "10.0.0.0/8", "2001:db8::/32", or a bare address (a /32 or /128).
 * Used for --trusted-proxy and for CIDR entries in NO_PROXY. Pure: inet_pton only. */
#ifndef UP_BASE_CIDR_H
#define UP_BASE_CIDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

struct up_cidr {
    uint8_t addr[16]; /* IPv4 stored as an IPv4-mapped IPv6 address (::ffff:a.b.c.d) */
    uint8_t bits;     /* prefix length in the 128-bit space (IPv4 /8 -> 104) */
};

/* Parse s[0..len) (not NUL-terminated). IPv4 prefixes 0..32, IPv6 0..128; host bits beyond
 * the prefix are cleared. Returns UP_OK or UP_EINVAL. */
UP_NODISCARD int up_cidr_parse(const char *s, size_t len, struct up_cidr *c);
/* Parse a textual IP address s[0..len) (v4, v6, v6 in brackets, v4-mapped v6) into the
 * 16-byte form above. Returns UP_OK or UP_EINVAL. */
UP_NODISCARD int up_ip_parse(const char *s, size_t len, uint8_t out[16]);
/* Whether the 16-byte address is an IPv4-mapped one (::ffff:a.b.c.d). */
bool up_ip_is_v4(const uint8_t addr[16]);
/* Text form: dotted quad for IPv4-mapped addresses, RFC 5952 for the rest (no brackets).
 * cap >= 46 always suffices. */
void up_ip_format(const uint8_t addr[16], char *out, size_t cap);
/* Whether the 16-byte address falls in c. */
bool up_cidr_match(const struct up_cidr *c, const uint8_t addr[16]);

/* A list of blocks, e.g. every --trusted-proxy given. */
#define UP_CIDR_LIST_MAX 64
struct up_cidr_list {
    struct up_cidr v[UP_CIDR_LIST_MAX];
    size_t n;
};
/* Append the comma-separated blocks in s (spaces around entries allowed). Returns UP_OK,
 * UP_EINVAL (with *why a static reason) or UP_ELIMIT (more than UP_CIDR_LIST_MAX). */
UP_NODISCARD int up_cidr_list_add(struct up_cidr_list *l, const char *s, const char **why);
bool up_cidr_list_match(const struct up_cidr_list *l, const uint8_t addr[16]);

#endif
