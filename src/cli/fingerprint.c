/* fingerprint: digests in the form relay_clientcerts and check_ccert_access
 * tables take. For a certificate both digests; for a private key the
 * public-key digest (the one to pin: it survives certificate renewals).
 * With --tlsa, the "3 1 1" TLSA record of the same public key instead, so
 * that the key pinned and the key published in DNS are one. */
#include <getopt.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "tls/dane.h"
#include "tls/tls.h"
#include "tls/trust.h"

static int print_tlsa(EVP_PKEY *key)
{
    char rr[200];
    int r = dane_tlsa_311(key, rr, sizeof rr);
    if (r == 0)
        printf("%s\n", rr);
    return r;
}

static int print_cert(FILE *f, const EVP_MD *md, int tlsa)
{
    X509 *cert = PEM_read_X509(f, NULL, NULL, NULL);
    if (cert == NULL)
        return -1;
    if (tlsa) {
        EVP_PKEY *key = X509_get0_pubkey(cert);
        int t = key ? print_tlsa(key) : -1;
        X509_free(cert);
        return t;
    }
    char cfp[TRUST_FP_LEN], pfp[TRUST_FP_LEN];
    int r = trust_fingerprints(cert, md, cfp, pfp, sizeof cfp);
    if (r == 0)
        printf("cert_fingerprint=%s\npubkey_fingerprint=%s\n", cfp, pfp);
    X509_free(cert);
    return r;
}

static int print_key(FILE *f, const EVP_MD *md, int tlsa)
{
    EVP_PKEY *key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    if (key == NULL) {
        rewind(f);
        key = PEM_read_PUBKEY(f, NULL, NULL, NULL);
    }
    if (key == NULL)
        return -1;
    char pfp[TRUST_FP_LEN];
    int r = tlsa ? print_tlsa(key) : trust_pkey_fingerprint(key, md, pfp, sizeof pfp);
    if (r == 0 && !tlsa)
        printf("pubkey_fingerprint=%s\n", pfp);
    EVP_PKEY_free(key);
    return r;
}

int cli_fingerprint(int argc, char **argv)
{
    const char *digest = "sha256";
    int opt, tlsa = 0;
    static const struct option longopts[] = {{"tlsa", no_argument, NULL, 't'},
                                             {NULL, 0, NULL, 0}};
    optind = 1;
    while ((opt = getopt_long(argc, argv, "d:", longopts, NULL)) != -1) {
        if (opt == 't')
            tlsa = 1;
        else if (opt == 'd')
            digest = optarg;
        else
            goto usage;
    }
    if (optind != argc - 1)
        goto usage;
    if (strcmp(digest, "sha256") && strcmp(digest, "sha1") && strcmp(digest, "md5")) {
        fprintf(stderr, "keypost fingerprint: unknown digest \"%s\" (sha256, sha1, md5)\n",
                digest);
        return 1;
    }
    const EVP_MD *md = tls_digest_by_name(digest);
    FILE *f = fopen(argv[optind], "r");
    if (f == NULL) {
        perror(argv[optind]);
        return 1;
    }
    int r = print_cert(f, md, tlsa);
    if (r < 0) {
        rewind(f);
        ERR_clear_error();
        r = print_key(f, md, tlsa);
    }
    fclose(f);
    if (r < 0) {
        fprintf(stderr, "keypost fingerprint: %s holds no PEM certificate or key\n",
                argv[optind]);
        return 1;
    }
    return 0;
usage:
    fprintf(stderr, "usage: keypost fingerprint [-d sha256|sha1|md5] FILE.pem\n"
                    "       keypost fingerprint --tlsa FILE.pem\n");
    return 1;
}
