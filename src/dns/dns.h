/* dns: MX, address and TLSA lookups through libunbound, for the SMTP client.
 * The resolver is /etc/resolv.conf's, or the one named by dns_resolver
 * ("ADDR" or "ADDR@PORT"). libunbound validates DNSSEC itself against
 * dns_trust_anchor_file, and every answer says what validation found
 * (enum dns_sec); a bogus answer is a temporary failure, never used.
 * These lookups block: they run only in delivery processes, never on an
 * event loop (smtpd's client name lookups are asynchronous, in peername.c,
 * and are not validated: they need names, not proofs). */
#ifndef KP_DNS_H
#define KP_DNS_H

#include <stddef.h>
#include <sys/socket.h>

#define DNS_NAME_MAX 256
#define RR_A 1
#define RR_PTR 12
#define RR_MX 15
#define RR_AAAA 28
#define RR_TLSA 52

struct ub_ctx;

struct mx_host {
    char name[DNS_NAME_MAX];
    int pref;
};

enum dns_status { DNS_OK, DNS_NOTFOUND, DNS_TEMPFAIL };
/* RFC 4033 4.3: secure (a chain of signatures from the trust anchor),
 * insecure (provably unsigned), bogus (should be signed, does not
 * validate), indeterminate (no trust anchor configured: nothing known). */
enum dns_sec { DNS_SEC_INDETERMINATE, DNS_SEC_INSECURE, DNS_SEC_SECURE, DNS_SEC_BOGUS };

/* One TLSA record (RFC 6698); data is the certificate association data. */
struct tlsa_rr {
    unsigned char usage, selector, mtype;
    unsigned char *data; /* malloc'd */
    size_t len;
};

/* MX hosts of domain, lowest preference first. A domain without MX records
 * but with an address is its own MX (RFC 5321 5.1). A null MX (RFC 7505)
 * is DNS_NOTFOUND with err saying so. */
enum dns_status dns_mx(const char *domain, struct mx_host *out, int max, int *count,
                       enum dns_sec *sec, char *err, size_t errlen);
/* What the address lookup of a host name says about the name itself. */
struct dns_hostinfo {
    enum dns_sec sec;          /* the weaker of the A and AAAA answers that
                                * did not fail (the addresses returned) */
    char canon[DNS_NAME_MAX];  /* the CNAME-expanded name, "" if no CNAME */
};
/* IPv4 and IPv6 addresses of host (port filled in). */
enum dns_status dns_addrs(const char *host, int port, struct sockaddr_storage *out, int max,
                          int *count, struct dns_hostinfo *info, char *err, size_t errlen);
/* TLSA records of _PORT._tcp.HOST. DNS_NOTFOUND: none (sec says whether
 * their absence is proven). Free the records with dns_tlsa_free. */
enum dns_status dns_tlsa(const char *host, int port, struct tlsa_rr *out, int max, int *count,
                         enum dns_sec *sec, char *err, size_t errlen);
void dns_tlsa_free(struct tlsa_rr *rr, int count);
/* One TLSA rdata (as received) into rr; -1 if too short to be one. */
int dns_tlsa_parse(const unsigned char *d, size_t n, struct tlsa_rr *rr);
const char *dns_sec_name(enum dns_sec sec);
/* A libunbound context set up as keypost's configuration says; threaded
 * for ub_resolve_async() on an event loop; validate: load the trust anchor
 * (dns_trust_anchor_file). NULL with err on failure. */
struct ub_ctx *dns_resolver_new(int threaded, int validate, char *err, size_t len);
/* The trust anchor file in force ("" when none): dns_trust_anchor_file,
 * whose default is Debian's root key when that file exists. */
const char *dns_trust_anchor(void);
/* Wire-format name (as libunbound hands it over, uncompressed) to text;
 * bytes that are not printable ASCII become '?'. 0, or -1 if malformed. */
int dns_wire_name(const unsigned char *p, size_t n, char *out, size_t len);
/* Turn an address literal "[192.0.2.1]" / "[IPv6:...]" into a sockaddr. */
int dns_literal(const char *text, int port, struct sockaddr_storage *out);

#endif
