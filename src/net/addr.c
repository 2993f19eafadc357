#include "net/addr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "base/str.h"

int up_addr_split(const char *s, char *host, size_t cap, uint16_t *port)
{
    const char *colon;
    const char *h = s;
    size_t hlen;
    if (!s || !*s) {
        return UP_EINVAL;
    }
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (!end || end[1] != ':') {
            return UP_EINVAL;
        }
        h = s + 1;
        hlen = (size_t)(end - h);
        colon = end + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon) {
            return UP_EINVAL;
        }
        hlen = (size_t)(colon - s);
    }
    uint64_t p;
    if (hlen == 0 || hlen >= cap || up_parse_u64(colon + 1, 65535, &p) < 0) {
        return UP_EINVAL;
    }
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    *port = (uint16_t)p;
    return UP_OK;
}

int up_addr_numeric(const char *host, uint16_t port, struct sockaddr_storage *sa, socklen_t *len)
{
    memset(sa, 0, sizeof(*sa));
    struct sockaddr_in *s4 = (struct sockaddr_in *)sa;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)sa;
    if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons(port);
        *len = sizeof(*s4);
        return UP_OK;
    }
    if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(port);
        *len = sizeof(*s6);
        return UP_OK;
    }
    return UP_EINVAL;
}

int up_addr_parse(const char *spec, struct sockaddr_storage *sa, socklen_t *len)
{
    char host[256];
    uint16_t port;
    if (up_addr_split(spec, host, sizeof host, &port) < 0) {
        return UP_EINVAL;
    }
    return up_addr_numeric(host, port, sa, len);
}

void up_addr_host(const struct sockaddr *sa, char *out, size_t cap)
{
    out[0] = '\0';
    if (sa->sa_family == AF_INET) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, (socklen_t)cap);
    } else if (sa->sa_family == AF_INET6) {
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, out, (socklen_t)cap);
    }
}

void up_addr_format(const struct sockaddr *sa, char *out, size_t cap)
{
    char h[INET6_ADDRSTRLEN] = "";
    up_addr_host(sa, h, sizeof h);
    if (sa->sa_family == AF_INET) {
        snprintf(out, cap, "%s:%u", h, ntohs(((const struct sockaddr_in *)sa)->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        snprintf(out, cap, "[%s]:%u", h, ntohs(((const struct sockaddr_in6 *)sa)->sin6_port));
    } else {
        snprintf(out, cap, "?");
    }
}
