/* dane: the RFC 7672 decision per host, and OpenSSL's DANE verifier armed
 * with it. The matching itself (selectors, digests, digest agility between
 * SHA2-256 and SHA2-512 per RFC 7671 section 9) is OpenSSL's. */
#include "tls/dane.h"

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "util/strutil.h"

/* RFC 7672 3.1: only DANE-TA(2) and DANE-EE(3) mean anything for SMTP;
 * PKIX-TA(0) and PKIX-EE(1) records are unusable, as are unknown
 * selectors and matching types and digests of the wrong length. */
int dane_usable(const struct tlsa_rr *rr)
{
    if (rr->usage != 2 && rr->usage != 3)
        return 0;
    if (rr->selector > 1)
        return 0;
    switch (rr->mtype) {
    case 0: return rr->len > 0;
    case 1: return rr->len == 32;
    case 2: return rr->len == 64;
    default: return 0;
    }
}

/* Keep the usable records of all[0..n) in d; free the others. */
static void keep_usable(struct dane_host *d, struct tlsa_rr *all, int n)
{
    d->nrr = 0;
    for (int i = 0; i < n; i++) {
        if (dane_usable(&all[i]))
            d->rr[d->nrr++] = all[i];
        else
            dns_tlsa_free(&all[i], 1);
    }
}

static void set(struct dane_host *d, enum dane_outcome o, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set(struct dane_host *d, enum dane_outcome o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    d->outcome = o;
    vsnprintf(d->why, sizeof d->why, fmt, ap);
    va_end(ap);
}

/* No authenticated records: dane falls back to may, dane-only defers. */
static void no_dane(struct dane_host *d, enum tls_level level, const char *reason)
{
    if (level == TL_DANE_ONLY) {
        set(d, DANE_DEFER, "4.7.5 TLS policy dane-only: %s", reason);
        d->report = "dane-required"; /* TLSRPT (RFC 8460 4.3.2.1) */
    } else
        set(d, DANE_MAY, "%s; using TLS level may", reason);
}

static void from_tlsa(struct dane_host *d, enum tls_level level, enum dns_status st,
                      enum dns_sec sec, struct tlsa_rr *all, int n, const char *where,
                      const char *err)
{
    char reason[300];
    if (st == DNS_TEMPFAIL) {
        set(d, DANE_DEFER, "4.7.5 TLSA lookup error for %s: %s", where, err);
        d->report = "dnssec-invalid"; /* TLSRPT: no valid records returned */
        return;
    }
    if (st == DNS_NOTFOUND || sec != DNS_SEC_SECURE) {
        /* RFC 7672 2.2: only DNSSEC-validated TLSA records count. */
        snprintf(reason, sizeof reason, "%s TLSA records for %s",
                 st == DNS_NOTFOUND ? "no" : "DNSSEC-insecure", where);
        dns_tlsa_free(all, n);
        no_dane(d, level, reason);
        return;
    }
    keep_usable(d, all, n);
    if (d->nrr > 0)
        set(d, DANE_ON, "%s: %d usable TLSA records", where, d->nrr);
    else if (level == TL_DANE_ONLY)
        set(d, DANE_DEFER, "4.7.5 TLS policy dane-only: no usable TLSA records for %s", where);
    else
        set(d, DANE_ENCRYPT, "%s: TLSA records published, none usable; using TLS level "
            "encrypt", where);
    if (d->nrr == 0)
        d->report = "tlsa-invalid"; /* TLSRPT: none of the records is valid */
}

/* TLSA records of name; 1 when the lookup settled the matter (records,
 * or a failure), 0 when it found no DNSSEC-secure records at all. */
static int try_tlsa(struct dane_host *d, enum tls_level level, const char *name, int port,
                    int last)
{
    struct tlsa_rr all[DANE_MAX_RR];
    int n = 0;
    enum dns_sec sec = DNS_SEC_INDETERMINATE;
    char err[300] = "", where[DNS_NAME_MAX + 16];
    enum dns_status st = dns_tlsa(name, port, all, DANE_MAX_RR, &n, &sec, err, sizeof err);
    if (!last && st != DNS_TEMPFAIL && (st == DNS_NOTFOUND || sec != DNS_SEC_SECURE)) {
        dns_tlsa_free(all, n);
        return 0;
    }
    str_copy(d->base, name, sizeof d->base);
    snprintf(where, sizeof where, "%s:%d", name, port);
    from_tlsa(d, level, st, sec, all, n, where, err);
    return 1;
}

void dane_resolve(enum tls_level level, enum dns_sec mx_sec, const struct dns_hostinfo *hi,
                  const char *host, int port, const char *nexthop, struct dane_host *d)
{
    memset(d, 0, sizeof *d);
    str_copy(d->base, host, sizeof d->base);
    str_copy(d->nexthop, nexthop ? nexthop : "", sizeof d->nexthop);
    /* RFC 7672 2.2: an MX host name or an address found without DNSSEC
     * could be an attacker's; its TLSA records prove nothing. */
    char reason[300];
    if (mx_sec != DNS_SEC_SECURE) {
        snprintf(reason, sizeof reason, "MX RRset of %s is %s", nexthop, dns_sec_name(mx_sec));
        no_dane(d, level, reason);
        return;
    }
    if (hi->sec != DNS_SEC_SECURE) {
        snprintf(reason, sizeof reason, "address records of %s are %s", host,
                 dns_sec_name(hi->sec));
        no_dane(d, level, reason);
        return;
    }
    /* A secure CNAME chain: the name it ends at is the TLSA base domain,
     * unless that has no secure TLSA records (then the host name is). */
    if (hi->canon[0] && try_tlsa(d, level, hi->canon, port, 0))
        return;
    try_tlsa(d, level, host, port, 1);
}

void dane_host_free(struct dane_host *d)
{
    dns_tlsa_free(d->rr, d->nrr);
    d->nrr = 0;
}

int dane_apply(SSL *ssl, const struct dane_host *d)
{
    if (SSL_dane_enable(ssl, d->base) <= 0)
        return -1;
    /* RFC 7672 3.2: DANE-TA(2) checks the TLSA base domain (after CNAME
     * expansion), and the next-hop domain is accepted too; the host name
     * before expansion is not (as in Postfix). DANE-EE(3) has no name
     * checks. */
    if (d->nexthop[0] && strcmp(d->nexthop, d->base) != 0)
        SSL_add1_host(ssl, d->nexthop);
    SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    SSL_dane_set_flags(ssl, DANE_FLAG_NO_DANE_EE_NAMECHECKS);
    int added = 0;
    for (int i = 0; i < d->nrr; i++) {
        const struct tlsa_rr *r = &d->rr[i];
        if (SSL_dane_tlsa_add(ssl, r->usage, r->selector, r->mtype, r->data, r->len) > 0)
            added++;
    }
    /* Without a record OpenSSL would fall back to the PKIX trust store. */
    return added > 0 ? 0 : -1;
}

void dane_rr_text(unsigned u, unsigned s, unsigned m, const unsigned char *data, size_t n,
                  char *out, size_t len)
{
    int o = snprintf(out, len, "%u %u %u ", u, s, m);
    for (size_t i = 0; o > 0 && (size_t)o + 3 < len && i < n; i++)
        o += snprintf(out + o, len - (size_t)o, "%02x", data[i]);
}

int dane_matched(SSL *ssl, char *text, size_t len)
{
    long v = SSL_get_verify_result(ssl);
    uint8_t u, s, m;
    const unsigned char *data;
    size_t n;
    /* A verified chain alone is not enough: it must be a TLSA record's
     * doing (SSL_get0_dane_authority), not a trust store's. */
    if (v != X509_V_OK || SSL_get0_dane_authority(ssl, NULL, NULL) < 0) {
        snprintf(text, len, "%s", v != X509_V_OK ? X509_verify_cert_error_string(v)
                                                  : "no TLSA record matched");
        return 0;
    }
    int depth = SSL_get0_dane_tlsa(ssl, &u, &s, &m, &data, &n);
    char rr[200];
    dane_rr_text(u, s, m, data, n, rr, sizeof rr);
    snprintf(text, len, "%s at depth %d", rr, depth);
    return 1;
}

int dane_tlsa_311(EVP_PKEY *key, char *out, size_t len)
{
    unsigned char *der = NULL, md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    int n = i2d_PUBKEY(key, &der);
    int ok = n > 0 && EVP_Digest(der, (size_t)n, md, &mdlen, EVP_sha256(), NULL) == 1;
    OPENSSL_free(der);
    if (!ok || len < 7 + 2 * (size_t)mdlen)
        return -1;
    dane_rr_text(3, 1, 1, md, mdlen, out, len);
    return 0;
}
