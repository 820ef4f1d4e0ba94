/* dane: DANE for SMTP (RFC 7672, RFC 7671) in the SMTP client. For one MX
 * host (or [host] next hop) at level dane or dane-only, dane_resolve turns
 * the DNSSEC status of the MX and address lookups and the host's TLSA
 * records into a decision:
 *   DANE_ON       secure, usable TLSA records: TLS is mandatory and the
 *                 server is authenticated by OpenSSL's DANE code only
 *   DANE_ENCRYPT  secure TLSA records, none usable (usages 0/1, unknown
 *                 selectors...): TLS mandatory, not authenticated
 *                 (RFC 7672 2.2, Postfix's "encrypt")
 *   DANE_MAY      no DNSSEC-secure TLSA records: opportunistic TLS (dane)
 *   DANE_DEFER    a lookup failed or was bogus, or dane-only found nothing
 *                 to authenticate with: the host is skipped, never used
 *                 with a weaker policy
 * dane_apply arms an SSL before the handshake (SNI and the reference name
 * are the TLSA base domain; DANE-EE(3) skips name checks as RFC 7672 3.1.1
 * says) and dane_matched judges it after. */
#ifndef KP_DANE_H
#define KP_DANE_H

#include <openssl/ssl.h>

#include "dns/dns.h"
#include "tls/tls_policy.h"

#define DANE_MAX_RR 16

enum dane_outcome { DANE_MAY, DANE_ON, DANE_ENCRYPT, DANE_DEFER };

struct dane_host {
    enum dane_outcome outcome;
    struct tlsa_rr rr[DANE_MAX_RR]; /* the usable records (DANE_ON) */
    int nrr;
    char base[DNS_NAME_MAX];        /* TLSA base domain: SNI, reference name */
    char nexthop[DNS_NAME_MAX];     /* also accepted by DANE-TA(2) name checks */
    char why[400];                  /* the reason, for the log or the deferral */
    const char *report;             /* issue 11: the TLSRPT result type of a
                                     * DANE_DEFER or DANE_ENCRYPT, else NULL */
};

/* level: TL_DANE or TL_DANE_ONLY. mx_sec: the MX RRset's status (a [host]
 * next hop passes DNS_SEC_SECURE: there is no MX RRset to distrust).
 * hi: what the host's address lookup said (status, CNAME expansion: the
 * expanded name's TLSA records are tried first, then the host's, RFC 7672
 * 2.2). nexthop: the domain (or ""). */
void dane_resolve(enum tls_level level, enum dns_sec mx_sec, const struct dns_hostinfo *hi,
                  const char *host, int port, const char *nexthop, struct dane_host *d);
void dane_host_free(struct dane_host *d);
/* Whether OpenSSL's DANE code can use rr for SMTP (RFC 7672 3.1): usage 2
 * or 3, selector 0 or 1, matching type 0 (any length), 1 (32 bytes) or 2
 * (64 bytes). */
int dane_usable(const struct tlsa_rr *rr);
/* Before SSL_connect, for DANE_ON: -1 if OpenSSL takes none of the records. */
int dane_apply(SSL *ssl, const struct dane_host *d);
/* After the handshake: 1 when a TLSA record authenticated the server, with
 * "U S M HEX at depth N" in text; 0 with OpenSSL's reason in text. */
int dane_matched(SSL *ssl, char *text, size_t len);
/* "U S M HEX" of one record (HEX cut to fit). */
void dane_rr_text(unsigned u, unsigned s, unsigned m, const unsigned char *data, size_t n,
                  char *out, size_t len);
/* The "3 1 1 HEX" TLSA record (lowercase SHA2-256 of the DER
 * SubjectPublicKeyInfo) that publishes key, for `keypost fingerprint
 * --tlsa`. 0, or -1 if the key cannot be encoded or out is too small. */
int dane_tlsa_311(EVP_PKEY *key, char *out, size_t len);

#endif
