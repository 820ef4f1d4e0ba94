/* trust: chain verification with the right purpose, pins and fingerprints. */
#include "tls/trust.h"

#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "table/table.h"
#include "util/strutil.h"

const char *trust_via_name(enum trust_via via)
{
    switch (via) {
    case VIA_CHAIN: return "chain";
    case VIA_SERVERAUTH_CHAIN: return "serverauth-chain";
    case VIA_CERT_PIN: return "cert-pin";
    case VIA_PUBKEY_PIN: return "pubkey-pin";
    default: return "none";
    }
}

static void hex_colon(const unsigned char *d, unsigned n, char *out, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    out[0] = '\0';
    for (unsigned i = 0; i < n && o + 3 < len; i++) {
        if (i)
            out[o++] = ':';
        out[o++] = hex[d[i] >> 4];
        out[o++] = hex[d[i] & 15];
    }
    out[o] = '\0';
}

/* Postfix digests the DER SubjectPublicKeyInfo, not just the key bits. */
static int spki_digest(X509_PUBKEY *spki, const EVP_MD *md, char *out, size_t len)
{
    unsigned char *der = NULL;
    int n = i2d_X509_PUBKEY(spki, &der);
    if (n <= 0)
        return -1;
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned dn = 0;
    int ok = EVP_Digest(der, (size_t)n, d, &dn, md, NULL);
    OPENSSL_free(der);
    if (!ok)
        return -1;
    hex_colon(d, dn, out, len);
    return 0;
}

int trust_fingerprints(X509 *cert, const EVP_MD *md, char *cert_fp, char *pubkey_fp,
                       size_t len)
{
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned dn = 0;
    if (!X509_digest(cert, md, d, &dn))
        return -1;
    hex_colon(d, dn, cert_fp, len);
    return spki_digest(X509_get_X509_PUBKEY(cert), md, pubkey_fp, len);
}

int trust_pkey_fingerprint(EVP_PKEY *key, const EVP_MD *md, char *out, size_t len)
{
    X509_PUBKEY *spki = NULL;
    if (!X509_PUBKEY_set(&spki, key))
        return -1;
    int r = spki_digest(spki, md, out, len);
    X509_PUBKEY_free(spki);
    return r;
}

int trust_eku_is_server_only(X509 *cert)
{
    uint32_t flags = X509_get_extension_flags(cert);
    if (!(flags & EXFLAG_XKUSAGE))
        return 0;
    return X509_get_extended_key_usage(cert) == XKU_SSL_SERVER;
}

static void common_name(const X509_NAME *name, char *out, size_t len)
{
    out[0] = '\0';
    int i = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
    if (i < 0)
        return;
    const ASN1_STRING *s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i));
    unsigned char *utf8 = NULL;
    int n = ASN1_STRING_to_UTF8(&utf8, s);
    if (n < 0)
        return;
    size_t o = 0;
    for (int k = 0; k < n && o + 1 < len; k++)
        out[o++] = (utf8[k] < 0x20 || utf8[k] == 0x7f) ? '?' : (char)utf8[k];
    out[o] = '\0';
    OPENSSL_free(utf8);
}

static long days_until(const ASN1_TIME *t)
{
    int days = 0, secs = 0;
    if (!ASN1_TIME_diff(&days, &secs, NULL, t))
        return 0;
    return days;
}

/* Verify the chain for one purpose; on failure keep OpenSSL's reason. */
static int verify_chain(const struct trust_config *cfg, X509 *leaf, STACK_OF(X509) *chain,
                        int purpose, struct trust_result *out)
{
    if (cfg->store == NULL) {
        str_copy(out->reason, "no CA configured", sizeof out->reason);
        return 0;
    }
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    if (ctx == NULL || !X509_STORE_CTX_init(ctx, cfg->store, leaf, chain)) {
        X509_STORE_CTX_free(ctx);
        str_copy(out->reason, "out of memory", sizeof out->reason);
        return 0;
    }
    X509_STORE_CTX_set_purpose(ctx, purpose);
    X509_STORE_CTX_set_trust(ctx, purpose == X509_PURPOSE_SSL_SERVER ? X509_TRUST_SSL_SERVER
                                                                      : X509_TRUST_SSL_CLIENT);
    /* Postfix's verifydepth N admits chains of N+1 certificates (leaf
     * included); OpenSSL's depth N admits N intermediates, one more. */
    X509_STORE_CTX_set_depth(ctx, cfg->verify_depth + 1);
    int ok = X509_verify_cert(ctx) == 1;
    int err = X509_STORE_CTX_get_error(ctx);
    if (ok && sk_X509_num(X509_STORE_CTX_get0_chain(ctx)) > cfg->verify_depth + 1) {
        ok = 0;
        err = X509_V_ERR_CERT_CHAIN_TOO_LONG;
    }
    if (!ok)
        snprintf(out->reason, sizeof out->reason, "%s", X509_verify_cert_error_string(err));
    X509_STORE_CTX_free(ctx);
    return ok;
}

static void check_pins(const struct trust_config *cfg, struct trust_result *out)
{
    if (cfg->pins == NULL)
        return;
    if (out->pubkey_fp[0] && table_lookup(cfg->pins, out->pubkey_fp)) {
        out->via = VIA_PUBKEY_PIN;
        out->trusted = 1;
    } else if (out->cert_fp[0] && table_lookup(cfg->pins, out->cert_fp)) {
        out->via = VIA_CERT_PIN;
        out->trusted = 1;
    }
}

void trust_evaluate(const struct trust_config *cfg, X509 *leaf, STACK_OF(X509) *chain,
                    struct trust_result *out)
{
    memset(out, 0, sizeof *out);
    if (leaf == NULL)
        return;
    out->has_cert = 1;
    common_name(X509_get_subject_name(leaf), out->subject_cn, sizeof out->subject_cn);
    common_name(X509_get_issuer_name(leaf), out->issuer_cn, sizeof out->issuer_cn);
    trust_fingerprints(leaf, cfg->digest, out->cert_fp, out->pubkey_fp, sizeof out->cert_fp);
    out->days_left = days_until(X509_get0_notAfter(leaf));

    int server_path = cfg->trust_server_ccerts && trust_eku_is_server_only(leaf);
    int purpose = server_path ? X509_PURPOSE_SSL_SERVER : X509_PURPOSE_SSL_CLIENT;
    if (verify_chain(cfg, leaf, chain, purpose, out)) {
        out->chain_ok = 1;
        out->trusted = 1;
        out->via = server_path ? VIA_SERVERAUTH_CHAIN : VIA_CHAIN;
    }
    check_pins(cfg, out);
}
