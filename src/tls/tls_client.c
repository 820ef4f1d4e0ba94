#include "tls/tls_client.h"

#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tls/dane.h"
#include "tls/tls.h"
#include "tls/tls_policy.h"
#include "tls/tlsrpt.h"
#include "tls/trust.h"
#include "util/strutil.h"

static int load_client_keys(SSL_CTX *ctx, struct conf_errors *errs)
{
    char why[512];
    const char *cert = conf_str(P_SMTP_TLS_CERT_FILE);
    const char *key = conf_str(P_SMTP_TLS_KEY_FILE);
    if (*cert)
        tls_warn_key_file_mode(key, P_SMTP_TLS_KEY_FILE);
    if (*cert && (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
                  SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
                  SSL_CTX_check_private_key(ctx) != 1)) {
        tls_error_string(why, sizeof why);
        conf_error(errs, "%s: smtp_tls_cert_file %s / smtp_tls_key_file %s: %s",
                   conf_origin(P_SMTP_TLS_CERT_FILE), cert, key, why);
        return -1;
    }
    char *files = strdup(conf_str(P_SMTP_TLS_CHAIN_FILES));
    char *item[16];
    int n = str_split_list(files, item, 16), bad = 0;
    for (int i = 0; i < n; i++)
        tls_warn_key_file_mode(item[i], P_SMTP_TLS_CHAIN_FILES);
    for (int i = 0; i < n && !bad; i++)
        if (SSL_CTX_use_PrivateKey_file(ctx, item[i], SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_use_certificate_chain_file(ctx, item[i]) != 1 ||
            SSL_CTX_check_private_key(ctx) != 1) {
            tls_error_string(why, sizeof why);
            conf_error(errs, "%s: smtp_tls_chain_files %s: %s",
                       conf_origin(P_SMTP_TLS_CHAIN_FILES), item[i], why);
            bad = 1;
        }
    free(files);
    return bad ? -1 : 0;
}

SSL_CTX *tls_client_ctx(struct conf_errors *errs)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) {
        conf_error(errs, "cannot create the TLS client context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION);
    /* Verification happens after the handshake, against the destination's
     * policy: an unverified server is still fine at "may" and "encrypt". */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    /* Lets a connection to a host with TLSA records use OpenSSL's DANE
     * verifier (tls/dane.c); others are not affected. */
    if (SSL_CTX_dane_enable(ctx) <= 0) {
        conf_error(errs, "cannot enable DANE in the TLS client context");
        SSL_CTX_free(ctx);
        return NULL;
    }
    const char *cafile = conf_str(P_SMTP_TLS_CAFILE);
    char why[512];
    if (*cafile && SSL_CTX_load_verify_locations(ctx, cafile, NULL) != 1) {
        tls_error_string(why, sizeof why);
        conf_error(errs, "%s: smtp_tls_CAfile %s: %s", conf_origin(P_SMTP_TLS_CAFILE), cafile,
                   why);
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (load_client_keys(ctx, errs) < 0 || tls_policy_init(errs) > 0) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

static SSL_CTX *shared_ctx;

void tls_client_set_shared(SSL_CTX *ctx)
{
    if (shared_ctx)
        SSL_CTX_free(shared_ctx);
    shared_ctx = ctx;
}

SSL_CTX *tls_client_shared(void)
{
    return shared_ctx;
}

/* The destination's protocols= and ciphers= (checked when parsed). */
static int apply_policy(SSL *ssl, const struct tls_policy *p)
{
    if (p->min_version && SSL_set_min_proto_version(ssl, p->min_version) != 1)
        return -1;
    if (p->max_version && SSL_set_max_proto_version(ssl, p->max_version) != 1)
        return -1;
    return p->ciphers[0] && SSL_set_cipher_list(ssl, p->ciphers) != 1 ? -1 : 0;
}

SSL *tls_client_connect(SSL_CTX *ctx, int fd, const char *sni, const struct tls_policy *p,
                        char *err, size_t errlen)
{
    SSL *ssl = SSL_new(ctx);
    if (ssl == NULL || SSL_set_fd(ssl, fd) != 1 || apply_policy(ssl, p) < 0) {
        snprintf(err, errlen, "cannot create TLS session for the policy of %s", p->origin);
        SSL_free(ssl);
        return NULL;
    }
    /* With DANE the SNI name is the TLSA base domain (RFC 7672 8.1). */
    if (p->dane)
        sni = p->dane->base;
    if (sni && *sni && sni[0] != '[')
        SSL_set_tlsext_host_name(ssl, sni);
    if (p->dane && dane_apply(ssl, p->dane) < 0) {
        snprintf(err, errlen, "OpenSSL took none of the TLSA records of %s", p->dane->base);
        SSL_free(ssl);
        return NULL;
    }
    if (SSL_connect(ssl) != 1) {
        char why[400];
        tls_error_string(why, sizeof why);
        snprintf(err, errlen, "TLS handshake failed: %s", *why ? why : "connection closed");
        SSL_free(ssl);
        return NULL;
    }
    return ssl;
}

/* One of the names (':' or '|' separated) matches the certificate. */
static int any_name_matches(X509 *cert, const char *names)
{
    char copy[1024];
    str_copy(copy, names, sizeof copy);
    for (char *save = NULL, *n = strtok_r(copy, ":|, ", &save); n;
         n = strtok_r(NULL, ":|, ", &save)) {
        /* OpenSSL reads a leading dot (".example.com") as "any subdomain". */
        if (X509_check_host(cert, n, 0, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS, NULL) == 1)
            return 1;
    }
    return 0;
}

static int fingerprint_matches(X509 *cert, const char *list)
{
    char cfp[TRUST_FP_LEN], pfp[TRUST_FP_LEN], copy[1024];
    const EVP_MD *md = tls_digest_by_name(conf_str(P_SMTP_TLS_FINGERPRINT_DIGEST));
    if (trust_fingerprints(cert, md, cfp, pfp, sizeof cfp) < 0)
        return 0;
    str_copy(copy, list, sizeof copy);
    for (char *save = NULL, *f = strtok_r(copy, "|, ", &save); f;
         f = strtok_r(NULL, "|, ", &save))
        if (str_ieq(f, cfp) || str_ieq(f, pfp))
            return 1;
    return 0;
}

void tls_client_check(SSL *ssl, const struct tls_policy *p, const char *nexthop,
                      const char *mxhost, struct tls_client_result *r)
{
    memset(r, 0, sizeof *r);
    const SSL_CIPHER *c = SSL_get_current_cipher(ssl);
    str_copy(r->protocol, SSL_get_version(ssl), sizeof r->protocol);
    str_copy(r->cipher, c ? SSL_CIPHER_get_name(c) : "unknown", sizeof r->cipher);
    r->bits = c ? SSL_CIPHER_get_bits(c, &r->alg_bits) : 0;
    X509 *cert = SSL_get1_peer_certificate(ssl);
    if (cert) {
        r->chain_ok = SSL_get_verify_result(ssl) == X509_V_OK;
        const char *names = p->match[0] ? p->match
                            : p->level == TL_SECURE ? nexthop : mxhost;
        r->name_ok = any_name_matches(cert, names);
        r->fingerprint_ok = p->level == TL_FINGERPRINT && fingerprint_matches(cert, p->match);
    }
    int dane_ok = p->dane && dane_matched(ssl, r->dane, sizeof r->dane);
    int verified = (r->chain_ok && r->name_ok) || r->fingerprint_ok || dane_ok;
    str_copy(r->label, verified ? "Verified" : r->chain_ok ? "Trusted" : "Untrusted",
             sizeof r->label);
    switch (p->level) {
    case TL_FINGERPRINT:
        r->meets_policy = r->fingerprint_ok;
        if (!r->meets_policy)
            snprintf(r->reason, sizeof r->reason, "server certificate fingerprint not in match list");
        break;
    case TL_VERIFY:
    case TL_SECURE:
        r->meets_policy = r->chain_ok && r->name_ok;
        if (!r->chain_ok)
            snprintf(r->reason, sizeof r->reason, "server certificate not trusted: %s",
                     cert ? X509_verify_cert_error_string(SSL_get_verify_result(ssl))
                          : "no certificate");
        else if (!r->name_ok)
            snprintf(r->reason, sizeof r->reason, "server certificate name does not match %s",
                     p->match[0] ? p->match : p->level == TL_SECURE ? nexthop : mxhost);
        break;
    case TL_DANE:
    case TL_DANE_ONLY:
        /* Without usable records smtp.c has already made the host's level
         * may or encrypt (or deferred it): here p->dane is set, and were it
         * not, nothing would vouch for the server. */
        r->meets_policy = dane_ok;
        if (!r->meets_policy) {
            snprintf(r->reason, sizeof r->reason, "Server certificate not trusted (%s)",
                     r->dane);
            /* issue 11: TLSRPT */
            r->tlsrpt = tlsrpt_x509_result(SSL_get_verify_result(ssl), 1);
        }
        break;
    default:
        r->meets_policy = 1;
        break;
    }
    X509_free(cert);
}
