/* netaddr: "host:port" text as the configuration writes it ("192.0.2.1:25",
 * "[2001:db8::1]:25", "[mx.example]:25"), and numeric addresses as sockaddrs. */
#ifndef KP_NETADDR_H
#define KP_NETADDR_H

#include <stddef.h>
#include <sys/socket.h>

/* Split "HOST:PORT" or "[HOST]:PORT" (brackets removed); an IPv6 address
 * must be bracketed. Returns 0, or -1 for a missing or bad port. */
int net_split_hostport(const char *in, char *host, size_t len, int *port);
/* A numeric IPv4 or IPv6 host and a port as a sockaddr; 0 or -1. */
int net_sockaddr(const char *host, int port, struct sockaddr_storage *ss, socklen_t *len);
/* A sockaddr from an address in network form (4 bytes for AF_INET, else 16
 * for AF_INET6) and a port, as DNS answers carry them. */
void net_sockaddr_raw(struct sockaddr_storage *ss, int family, const void *addr, int port);

#endif
