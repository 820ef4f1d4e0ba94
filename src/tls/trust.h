/* trust: the certificate decision, as a pure function of what the peer
 * presented and what the operator configured. No sockets, no SSL objects:
 * the TLS layer hands over the chain, this module says who the peer is.
 *
 *   chain verified for the client purpose           -> trusted, via=chain
 *   tls_trust_server_ccerts and leaf EKU == {serverAuth}:
 *      chain verified for the server purpose        -> trusted, via=serverauth-chain
 *   public-key digest in the pin table              -> trusted, via=pubkey-pin
 *   certificate digest in the pin table             -> trusted, via=cert-pin
 *   otherwise                                       -> untrusted (reason kept)
 *
 * "chain_ok" alone is what Postfix calls Trusted in its TLS log line; a
 * pinned peer whose chain does not verify is Untrusted there but is still
 * admitted by permit_tls_clientcerts, exactly as in Postfix. */
#ifndef KP_TRUST_H
#define KP_TRUST_H

#include <openssl/evp.h>
#include <openssl/x509.h>

struct table;

enum trust_via { VIA_NONE, VIA_CHAIN, VIA_SERVERAUTH_CHAIN, VIA_CERT_PIN, VIA_PUBKEY_PIN };

#define TRUST_FP_LEN 200 /* SHA-256 as "AA:BB:..." is 95 characters */
#define TRUST_NAME_LEN 256

struct trust_result {
    int has_cert;
    int chain_ok;          /* chain verified (either purpose) */
    int trusted;           /* chain_ok or pinned */
    enum trust_via via;
    char subject_cn[TRUST_NAME_LEN];
    char issuer_cn[TRUST_NAME_LEN];
    char cert_fp[TRUST_FP_LEN];
    char pubkey_fp[TRUST_FP_LEN];
    char reason[160];      /* OpenSSL's reason when the chain failed */
    long days_left;        /* until notAfter; negative when expired */
};

struct trust_config {
    X509_STORE *store;          /* the CA clique; may be empty */
    int verify_depth;           /* smtpd_tls_ccert_verifydepth */
    int trust_server_ccerts;    /* tls_trust_server_ccerts */
    const EVP_MD *digest;       /* smtpd_tls_fingerprint_digest */
    const struct table *pins;   /* relay_clientcerts; may be NULL */
};

/* Decide about leaf (with the untrusted intermediates the peer sent). */
void trust_evaluate(const struct trust_config *cfg, X509 *leaf, STACK_OF(X509) *chain,
                    struct trust_result *out);
/* Both digests of cert in Postfix's form; returns 0 or -1. */
int trust_fingerprints(X509 *cert, const EVP_MD *md, char *cert_fp, char *pubkey_fp,
                       size_t len);
/* Public-key digest of a key (for `keypost fingerprint KEYFILE`). */
int trust_pkey_fingerprint(EVP_PKEY *key, const EVP_MD *md, char *out, size_t len);
/* 1 when the EKU extension lists serverAuth and nothing else. */
int trust_eku_is_server_only(X509 *cert);
const char *trust_via_name(enum trust_via via);

#endif
