/* Unit tests for the certificate trust decision (src/tls/trust.c), without
 * sockets: the PKI is built in memory with the OpenSSL 3 API.
 *
 *   root CA ("Test Root CA")
 *    +- leaf_both      EKU clientAuth, serverAuth
 *    +- leaf_server    EKU serverAuth
 *    +- leaf_none      no EKU
 *    +- leaf_codesign  EKU codeSigning
 *    +- leaf_expired   EKU clientAuth, serverAuth, expired yesterday
 *    +- inter          CA, EKU serverAuth only
 *        +- leaf_via_server  EKU serverAuth
 *        +- leaf_via_both    EKU clientAuth, serverAuth
 *   other root ("Other Root CA", not in the store)
 *    +- leaf_foreign   EKU clientAuth, serverAuth
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "table/table.h"
#include "tls/trust.h"

struct pki {
    EVP_PKEY *root_key, *inter_key, *other_key, *leaf_key;
    X509 *root, *inter, *other;
    X509 *leaf_both, *leaf_server, *leaf_none, *leaf_codesign, *leaf_expired;
    X509 *leaf_via_server, *leaf_via_both, *leaf_foreign;
    X509_STORE *store;
    STACK_OF(X509) *with_inter; /* the untrusted chain a peer would send */
};

static struct pki P;

static EVP_PKEY *new_key(void)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    assert_non_null(k);
    return k;
}

static void add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    assert_non_null(ext);
    assert_int_equal(X509_add_ext(cert, ext, -1), 1);
    X509_EXTENSION_free(ext);
}

/* A certificate for key, signed by issuer_key (self-signed when issuer is
 * NULL). eku NULL: no extendedKeyUsage extension. Validity in days relative
 * to now. */
static X509 *make_cert(const char *cn, EVP_PKEY *key, X509 *issuer, EVP_PKEY *issuer_key,
                       int ca, const char *eku, long from_days, long to_days)
{
    static long serial = 1;
    X509 *x = X509_new();
    assert_non_null(x);
    assert_int_equal(X509_set_version(x, X509_VERSION_3), 1);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
    X509_NAME *name = X509_get_subject_name(x);
    assert_int_equal(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                                (const unsigned char *)cn, -1, -1, 0),
                     1);
    assert_int_equal(X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name), 1);
    assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), from_days * 86400));
    assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), to_days * 86400));
    assert_int_equal(X509_set_pubkey(x, key), 1);
    X509 *signer = issuer ? issuer : x;
    if (ca) {
        add_ext(x, signer, NID_basic_constraints, "critical,CA:TRUE");
        add_ext(x, signer, NID_key_usage, "critical,keyCertSign,cRLSign");
    } else {
        add_ext(x, signer, NID_basic_constraints, "critical,CA:FALSE");
        add_ext(x, signer, NID_key_usage, "critical,digitalSignature");
    }
    add_ext(x, signer, NID_subject_key_identifier, "hash");
    if (issuer)
        add_ext(x, signer, NID_authority_key_identifier, "keyid:always");
    if (eku)
        add_ext(x, signer, NID_ext_key_usage, eku);
    assert_true(X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()) > 0);
    return x;
}

static int group_setup(void **state)
{
    (void)state;
    P.root_key = new_key();
    P.inter_key = new_key();
    P.other_key = new_key();
    P.leaf_key = new_key();
    P.root = make_cert("Test Root CA", P.root_key, NULL, NULL, 1, NULL, -30, 3650);
    P.other = make_cert("Other Root CA", P.other_key, NULL, NULL, 1, NULL, -30, 3650);
    P.inter = make_cert("Server Intermediate", P.inter_key, P.root, P.root_key, 1, "serverAuth",
                        -30, 3650);
    P.leaf_both = make_cert("both.example", P.leaf_key, P.root, P.root_key, 0,
                            "clientAuth,serverAuth", -1, 30);
    P.leaf_server = make_cert("server.example", P.leaf_key, P.root, P.root_key, 0, "serverAuth",
                              -1, 30);
    P.leaf_none = make_cert("none.example", P.leaf_key, P.root, P.root_key, 0, NULL, -1, 30);
    P.leaf_codesign = make_cert("code.example", P.leaf_key, P.root, P.root_key, 0,
                                "codeSigning", -1, 30);
    P.leaf_expired = make_cert("expired.example", P.leaf_key, P.root, P.root_key, 0,
                               "clientAuth,serverAuth", -60, -2);
    P.leaf_via_server = make_cert("via-server.example", P.leaf_key, P.inter, P.inter_key, 0,
                                  "serverAuth", -1, 30);
    P.leaf_via_both = make_cert("via-both.example", P.leaf_key, P.inter, P.inter_key, 0,
                                "clientAuth,serverAuth", -1, 30);
    P.leaf_foreign = make_cert("foreign.example", P.leaf_key, P.other, P.other_key, 0,
                               "clientAuth,serverAuth", -1, 30);
    P.store = X509_STORE_new();
    assert_non_null(P.store);
    assert_int_equal(X509_STORE_add_cert(P.store, P.root), 1);
    P.with_inter = sk_X509_new_null();
    assert_non_null(P.with_inter);
    assert_true(sk_X509_push(P.with_inter, P.inter) > 0);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    sk_X509_free(P.with_inter);
    X509_STORE_free(P.store);
    X509 *certs[] = {P.root, P.inter, P.other, P.leaf_both, P.leaf_server, P.leaf_none,
                     P.leaf_codesign, P.leaf_expired, P.leaf_via_server, P.leaf_via_both,
                     P.leaf_foreign};
    for (size_t i = 0; i < sizeof certs / sizeof certs[0]; i++)
        X509_free(certs[i]);
    EVP_PKEY_free(P.root_key);
    EVP_PKEY_free(P.inter_key);
    EVP_PKEY_free(P.other_key);
    EVP_PKEY_free(P.leaf_key);
    return 0;
}

static struct trust_config config(int trust_server_ccerts, const struct table *pins)
{
    struct trust_config cfg = {
        .store = P.store,
        .verify_depth = 9,
        .trust_server_ccerts = trust_server_ccerts,
        .digest = EVP_sha256(),
        .pins = pins,
    };
    return cfg;
}

static void evaluate(int tsc, const struct table *pins, X509 *leaf, STACK_OF(X509) *chain,
                     struct trust_result *r)
{
    struct trust_config cfg = config(tsc, pins);
    memset(r, 0x5a, sizeof *r); /* trust_evaluate must fill every field */
    trust_evaluate(&cfg, leaf, chain, r);
}

static void expect_trust(const struct trust_result *r, int chain_ok, int trusted,
                         enum trust_via via)
{
    if (r->chain_ok != chain_ok || r->trusted != trusted || r->via != via)
        print_message("subject=%s chain_ok=%d trusted=%d via=%s reason=%s\n", r->subject_cn,
                      r->chain_ok, r->trusted, trust_via_name(r->via), r->reason);
    assert_int_equal(r->has_cert, 1);
    assert_int_equal(r->chain_ok, chain_ok);
    assert_int_equal(r->trusted, trusted);
    assert_int_equal(r->via, via);
}

/* Upper-case hex pairs joined by colons, n bytes. */
static void assert_fp_format(const char *fp, size_t bytes)
{
    assert_int_equal(strlen(fp), bytes * 3 - 1);
    for (size_t i = 0; fp[i]; i++) {
        if (i % 3 == 2)
            assert_int_equal(fp[i], ':');
        else
            assert_true(isdigit((unsigned char)fp[i]) || (fp[i] >= 'A' && fp[i] <= 'F'));
    }
}

/* The reason for a certificate whose EKU does not allow the purpose: OpenSSL's
 * text for X509_V_ERR_INVALID_PURPOSE ("unsupported certificate purpose" up to
 * OpenSSL 1.1.1, "unsuitable certificate purpose" from 3.0 on). */
static void assert_purpose_reason(const char *reason)
{
    assert_string_equal(reason, X509_verify_cert_error_string(X509_V_ERR_INVALID_PURPOSE));
    const char *tail = " certificate purpose";
    size_t n = strlen(reason), t = strlen(tail);
    assert_true(n > t && strcmp(reason + n - t, tail) == 0);
}

/* out must hold 3 * n bytes. */
static void hex_colon(const unsigned char *d, unsigned n, char *out)
{
    size_t o = 0;
    out[0] = '\0';
    for (unsigned i = 0; i < n; i++)
        o += (size_t)snprintf(out + o, 4, "%s%02X", i ? ":" : "", d[i]);
}

/* ---- chain decisions --------------------------------------------------- */

static void test_client_and_server_eku(void **state)
{
    (void)state;
    struct trust_result r;
    for (int tsc = 0; tsc <= 1; tsc++) {
        evaluate(tsc, NULL, P.leaf_both, NULL, &r);
        expect_trust(&r, 1, 1, VIA_CHAIN);
        assert_string_equal(r.reason, "");
        assert_string_equal(r.subject_cn, "both.example");
        assert_string_equal(r.issuer_cn, "Test Root CA");
        assert_true(r.days_left >= 29 && r.days_left <= 30);
        assert_string_equal(trust_via_name(r.via), "chain");
    }
}

static void test_server_only_eku(void **state)
{
    (void)state;
    struct trust_result r;
    /* Default: a serverAuth-only certificate is not a client certificate. */
    evaluate(0, NULL, P.leaf_server, NULL, &r);
    expect_trust(&r, 0, 0, VIA_NONE);
    assert_purpose_reason(r.reason);
    assert_string_equal(trust_via_name(r.via), "none");
    /* tls_trust_server_ccerts = yes: verified for the server purpose. */
    evaluate(1, NULL, P.leaf_server, NULL, &r);
    expect_trust(&r, 1, 1, VIA_SERVERAUTH_CHAIN);
    assert_string_equal(r.reason, "");
    assert_string_equal(trust_via_name(r.via), "serverauth-chain");
}

static void test_no_eku(void **state)
{
    (void)state;
    struct trust_result r;
    /* No EKU extension: any purpose. It is not "serverAuth only". */
    for (int tsc = 0; tsc <= 1; tsc++) {
        evaluate(tsc, NULL, P.leaf_none, NULL, &r);
        expect_trust(&r, 1, 1, VIA_CHAIN);
    }
}

static void test_codesigning_eku(void **state)
{
    (void)state;
    struct trust_result r;
    for (int tsc = 0; tsc <= 1; tsc++) {
        evaluate(tsc, NULL, P.leaf_codesign, NULL, &r);
        expect_trust(&r, 0, 0, VIA_NONE);
        assert_purpose_reason(r.reason);
    }
}

static void test_expired(void **state)
{
    (void)state;
    struct trust_result r;
    for (int tsc = 0; tsc <= 1; tsc++) {
        evaluate(tsc, NULL, P.leaf_expired, NULL, &r);
        expect_trust(&r, 0, 0, VIA_NONE);
        assert_string_equal(r.reason, X509_verify_cert_error_string(X509_V_ERR_CERT_HAS_EXPIRED));
        assert_true(r.days_left < 0);
        assert_true(r.days_left >= -3);
    }
}

static void test_server_only_intermediate(void **state)
{
    (void)state;
    struct trust_result r;
    /* serverAuth leaf under a serverAuth-only intermediate. */
    evaluate(0, NULL, P.leaf_via_server, P.with_inter, &r);
    expect_trust(&r, 0, 0, VIA_NONE);
    assert_purpose_reason(r.reason);
    evaluate(1, NULL, P.leaf_via_server, P.with_inter, &r);
    expect_trust(&r, 1, 1, VIA_SERVERAUTH_CHAIN);
    assert_string_equal(r.issuer_cn, "Server Intermediate");

    /* A client-capable leaf is checked for the client purpose, which the
     * intermediate's EKU does not allow, whatever tls_trust_server_ccerts says. */
    for (int tsc = 0; tsc <= 1; tsc++) {
        evaluate(tsc, NULL, P.leaf_via_both, P.with_inter, &r);
        expect_trust(&r, 0, 0, VIA_NONE);
        assert_purpose_reason(r.reason);
    }

    /* Without the intermediate the chain cannot be built. */
    evaluate(1, NULL, P.leaf_via_server, NULL, &r);
    expect_trust(&r, 0, 0, VIA_NONE);
    assert_string_equal(r.reason, X509_verify_cert_error_string(X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY));
}

static void test_unknown_ca(void **state)
{
    (void)state;
    struct trust_result r;
    evaluate(0, NULL, P.leaf_foreign, NULL, &r);
    expect_trust(&r, 0, 0, VIA_NONE);
    assert_string_equal(r.reason, X509_verify_cert_error_string(X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY));
    assert_string_equal(r.issuer_cn, "Other Root CA");
    /* A self-signed certificate that is not in the store. */
    evaluate(0, NULL, P.other, NULL, &r);
    expect_trust(&r, 0, 0, VIA_NONE);
    assert_true(strlen(r.reason) > 0);
}

static void test_no_store_and_no_cert(void **state)
{
    (void)state;
    struct trust_config cfg = config(1, NULL);
    cfg.store = NULL;
    struct trust_result r;
    trust_evaluate(&cfg, P.leaf_both, NULL, &r);
    expect_trust(&r, 0, 0, VIA_NONE);
    assert_string_equal(r.reason, "no CA configured");
    /* Fingerprints are still computed. */
    assert_fp_format(r.cert_fp, 32);

    memset(&r, 0x5a, sizeof r);
    trust_evaluate(&cfg, NULL, NULL, &r);
    assert_int_equal(r.has_cert, 0);
    assert_int_equal(r.chain_ok, 0);
    assert_int_equal(r.trusted, 0);
    assert_int_equal(r.via, VIA_NONE);
}

static void test_verify_depth(void **state)
{
    (void)state;
    /* Postfix's smtpd_tls_ccert_verifydepth: "a depth of 1 is sufficient if
     * the issuing CA is listed in a local CA file"; depth N admits chains of
     * N + 1 certificates, leaf included. */
    const char *too_long = X509_verify_cert_error_string(X509_V_ERR_CERT_CHAIN_TOO_LONG);
    struct trust_config cfg = config(1, NULL);
    struct trust_result r;

    cfg.verify_depth = 1; /* leaf + root */
    trust_evaluate(&cfg, P.leaf_both, NULL, &r);
    expect_trust(&r, 1, 1, VIA_CHAIN);
    trust_evaluate(&cfg, P.leaf_via_server, P.with_inter, &r);
    expect_trust(&r, 0, 0, VIA_NONE);
    assert_string_equal(r.reason, too_long);

    cfg.verify_depth = 2; /* leaf + intermediate + root */
    trust_evaluate(&cfg, P.leaf_via_server, P.with_inter, &r);
    expect_trust(&r, 1, 1, VIA_SERVERAUTH_CHAIN);

    cfg.verify_depth = 0; /* only the leaf: a CA-issued leaf is too deep */
    trust_evaluate(&cfg, P.leaf_both, NULL, &r);
    expect_trust(&r, 0, 0, VIA_NONE);
    assert_string_equal(r.reason, too_long);
}

/* ---- fingerprints and pins --------------------------------------------- */

static void test_fingerprints(void **state)
{
    (void)state;
    struct trust_result r;
    evaluate(0, NULL, P.leaf_server, NULL, &r);
    assert_fp_format(r.cert_fp, 32);
    assert_fp_format(r.pubkey_fp, 32);
    assert_int_equal(strlen(r.cert_fp), 95);
    assert_int_equal(strlen(r.pubkey_fp), 95);

    /* The certificate digest is the digest of the DER certificate. */
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned dn = 0;
    char want[200];
    assert_int_equal(X509_digest(P.leaf_server, EVP_sha256(), d, &dn), 1);
    hex_colon(d, dn, want);
    assert_string_equal(r.cert_fp, want);

    /* The public-key digest is SHA-256 over the DER SubjectPublicKeyInfo. */
    unsigned char *der = NULL;
    int n = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(P.leaf_server), &der);
    assert_true(n > 0);
    assert_int_equal(EVP_Digest(der, (size_t)n, d, &dn, EVP_sha256(), NULL), 1);
    OPENSSL_free(der);
    hex_colon(d, dn, want);
    assert_string_equal(r.pubkey_fp, want);

    /* Same key, other certificate: same pubkey digest, other cert digest. */
    struct trust_result r2;
    evaluate(0, NULL, P.leaf_both, NULL, &r2);
    assert_string_equal(r2.pubkey_fp, r.pubkey_fp);
    assert_string_not_equal(r2.cert_fp, r.cert_fp);

    /* From the key alone (`keypost fingerprint KEYFILE`). */
    char fp[TRUST_FP_LEN];
    assert_int_equal(trust_pkey_fingerprint(P.leaf_key, EVP_sha256(), fp, sizeof fp), 0);
    assert_string_equal(fp, r.pubkey_fp);

    /* trust_fingerprints directly, and with other digests. */
    char cfp[TRUST_FP_LEN], pfp[TRUST_FP_LEN];
    assert_int_equal(trust_fingerprints(P.leaf_server, EVP_sha256(), cfp, pfp, sizeof cfp), 0);
    assert_string_equal(cfp, r.cert_fp);
    assert_string_equal(pfp, r.pubkey_fp);
    assert_int_equal(trust_fingerprints(P.leaf_server, EVP_sha1(), cfp, pfp, sizeof cfp), 0);
    assert_fp_format(cfp, 20);
    assert_fp_format(pfp, 20);
}

static struct table *pin_table(const char *fp)
{
    char spec[300], err[256] = "";
    snprintf(spec, sizeof spec, "inline:{ %s=ok }", fp);
    struct table *t = table_open(spec, err, sizeof err);
    if (t == NULL)
        print_message("table_open: %s\n", err);
    assert_non_null(t);
    return t;
}

static void test_pubkey_pin(void **state)
{
    (void)state;
    struct trust_result r;
    evaluate(0, NULL, P.leaf_server, NULL, &r);
    struct table *pins = pin_table(r.pubkey_fp);

    /* Pinned by key: trusted although the chain fails (Postfix: "Untrusted"). */
    evaluate(0, pins, P.leaf_server, NULL, &r);
    expect_trust(&r, 0, 1, VIA_PUBKEY_PIN);
    assert_purpose_reason(r.reason);
    assert_string_equal(trust_via_name(r.via), "pubkey-pin");

    /* The key pin covers every certificate for the key, whoever issued it. */
    evaluate(0, pins, P.leaf_foreign, NULL, &r);
    expect_trust(&r, 0, 1, VIA_PUBKEY_PIN);
    evaluate(0, pins, P.leaf_expired, NULL, &r);
    assert_int_equal(r.trusted, 1);
    assert_int_equal(r.via, VIA_PUBKEY_PIN);
    assert_int_equal(r.chain_ok, 0);

    /* Another key is not pinned. */
    evaluate(0, pins, P.inter, NULL, &r);
    assert_int_equal(r.trusted, 0);
    assert_int_equal(r.via, VIA_NONE);
    table_free(pins);

    /* Table keys are case-insensitive: a lower-case pin works too. */
    evaluate(0, NULL, P.leaf_server, NULL, &r);
    char lower[TRUST_FP_LEN];
    snprintf(lower, sizeof lower, "%s", r.pubkey_fp);
    for (char *p = lower; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    pins = pin_table(lower);
    evaluate(0, pins, P.leaf_server, NULL, &r);
    expect_trust(&r, 0, 1, VIA_PUBKEY_PIN);
    table_free(pins);
}

static void test_cert_pin(void **state)
{
    (void)state;
    struct trust_result r;
    evaluate(0, NULL, P.leaf_server, NULL, &r);
    struct table *pins = pin_table(r.cert_fp);
    evaluate(0, pins, P.leaf_server, NULL, &r);
    expect_trust(&r, 0, 1, VIA_CERT_PIN);
    assert_string_equal(trust_via_name(r.via), "cert-pin");
    /* Only that certificate: the same key in another certificate is not. */
    evaluate(0, pins, P.leaf_codesign, NULL, &r);
    expect_trust(&r, 0, 0, VIA_NONE);
    table_free(pins);

    /* An empty table pins nothing. */
    char err[64];
    pins = table_open("inline:{}", err, sizeof err);
    assert_non_null(pins);
    evaluate(0, pins, P.leaf_server, NULL, &r);
    expect_trust(&r, 0, 0, VIA_NONE);
    table_free(pins);
}

static void test_eku_is_server_only(void **state)
{
    (void)state;
    assert_int_equal(trust_eku_is_server_only(P.leaf_server), 1);
    assert_int_equal(trust_eku_is_server_only(P.leaf_via_server), 1);
    assert_int_equal(trust_eku_is_server_only(P.inter), 1);
    assert_int_equal(trust_eku_is_server_only(P.leaf_both), 0);
    assert_int_equal(trust_eku_is_server_only(P.leaf_none), 0);
    assert_int_equal(trust_eku_is_server_only(P.leaf_codesign), 0);
    assert_int_equal(trust_eku_is_server_only(P.root), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_client_and_server_eku),
        cmocka_unit_test(test_server_only_eku),
        cmocka_unit_test(test_no_eku),
        cmocka_unit_test(test_codesigning_eku),
        cmocka_unit_test(test_expired),
        cmocka_unit_test(test_server_only_intermediate),
        cmocka_unit_test(test_unknown_ca),
        cmocka_unit_test(test_no_store_and_no_cert),
        cmocka_unit_test(test_verify_depth),
        cmocka_unit_test(test_fingerprints),
        cmocka_unit_test(test_pubkey_pin),
        cmocka_unit_test(test_cert_pin),
        cmocka_unit_test(test_eku_is_server_only),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
