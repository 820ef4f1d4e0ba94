/* dns: MX and address lookups through libunbound, for the SMTP client.
 * The resolver is /etc/resolv.conf's, or the one named by dns_resolver
 * ("ADDR" or "ADDR@PORT"). These lookups block: they run only in delivery
 * processes, never on an event loop (smtpd's client name lookups are
 * asynchronous, in peername.c). */
#ifndef KP_DNS_H
#define KP_DNS_H

#include <stddef.h>
#include <sys/socket.h>

#define DNS_NAME_MAX 256
#define RR_A 1
#define RR_PTR 12
#define RR_MX 15
#define RR_AAAA 28

struct ub_ctx;

struct mx_host {
    char name[DNS_NAME_MAX];
    int pref;
};

enum dns_status { DNS_OK, DNS_NOTFOUND, DNS_TEMPFAIL };

/* MX hosts of domain, lowest preference first. A domain without MX records
 * but with an address is its own MX (RFC 5321 5.1). A null MX (RFC 7505)
 * is DNS_NOTFOUND with err saying so. */
enum dns_status dns_mx(const char *domain, struct mx_host *out, int max, int *count,
                       char *err, size_t errlen);
/* IPv4 and IPv6 addresses of host (port filled in). */
enum dns_status dns_addrs(const char *host, int port, struct sockaddr_storage *out, int max,
                          int *count, char *err, size_t errlen);
/* A libunbound context set up as keypost's configuration says; threaded
 * for ub_resolve_async() on an event loop. NULL with err on failure. */
struct ub_ctx *dns_resolver_new(int threaded, char *err, size_t len);
/* Wire-format name (as libunbound hands it over, uncompressed) to text;
 * bytes that are not printable ASCII become '?'. 0, or -1 if malformed. */
int dns_wire_name(const unsigned char *p, size_t n, char *out, size_t len);
/* Turn an address literal "[192.0.2.1]" / "[IPv6:...]" into a sockaddr. */
int dns_literal(const char *text, int port, struct sockaddr_storage *out);

#endif
