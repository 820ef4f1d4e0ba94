#include "util/netaddr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "util/strutil.h"

int net_split_hostport(const char *in, char *host, size_t len, int *port)
{
    const char *colon = strrchr(in, ':');
    if (colon == NULL || colon == in)
        return -1;
    long p = str_parse_long(colon + 1);
    if (p <= 0 || p > 65535)
        return -1;
    size_t n = (size_t)(colon - in);
    if (in[0] == '[') {
        if (n < 3 || in[n - 1] != ']')
            return -1;
        in++;
        n -= 2;
    } else if (memchr(in, ':', n))
        return -1; /* "2001:db8::1:25" is ambiguous: IPv6 needs brackets */
    if (n >= len)
        return -1;
    memcpy(host, in, n);
    host[n] = '\0';
    *port = (int)p;
    return 0;
}

int net_sockaddr(const char *host, int port, struct sockaddr_storage *ss, socklen_t *len)
{
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        *len = sizeof *s4;
        return 0;
    }
    if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        *len = sizeof *s6;
        return 0;
    }
    return -1;
}

void net_sockaddr_raw(struct sockaddr_storage *ss, int family, const void *addr, int port)
{
    memset(ss, 0, sizeof *ss);
    if (family == AF_INET) {
        struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        memcpy(&s4->sin_addr, addr, 4);
    } else {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        memcpy(&s6->sin6_addr, addr, 16);
    }
}
