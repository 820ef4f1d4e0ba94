/* certinfo: the leaf certificate of a PEM file and its expiry. */
#include "tls/certinfo.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/pem.h>
#include <openssl/x509.h>

#include "tls/tls.h"

static int subject_text(X509 *x, char *out, size_t len)
{
    BIO *b = BIO_new(BIO_s_mem());
    if (b == NULL)
        return -1;
    X509_NAME_print_ex(b, X509_get_subject_name(x), 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
    char *p;
    long n = BIO_get_mem_data(b, &p);
    if (n < 0)
        n = 0;
    if ((size_t)n >= len)
        n = (long)len - 1;
    memcpy(out, p, (size_t)n);
    out[n] = '\0';
    BIO_free(b);
    return 0;
}

int certinfo_read(const char *path, struct certinfo *out, char *err, size_t len)
{
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, len, "%s: %s", path, strerror(errno));
        return -1;
    }
    /* PEM_read_X509 skips blocks of other types, such as the key. */
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    if (x == NULL) {
        char why[200];
        tls_error_string(why, sizeof why);
        snprintf(err, len, "%s: no certificate%s%s", path, *why ? ": " : "", why);
        return -1;
    }
    struct tm tm;
    int r = ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm);
    if (r == 1) {
        out->not_after = timegm(&tm);
        subject_text(x, out->subject, sizeof out->subject);
    } else
        snprintf(err, len, "%s: the certificate's notAfter date cannot be read", path);
    X509_free(x);
    return r == 1 ? 0 : -1;
}

long certinfo_days_left(time_t not_after, time_t now)
{
    double s = difftime(not_after, now);
    long days = (long)(s / 86400);
    if (s < 0 && (double)days * 86400 != s)
        days--; /* round down, also below zero */
    return days;
}
