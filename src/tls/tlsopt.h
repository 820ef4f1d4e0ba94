/* tlsopt: Postfix's TLS cipher grades, cipher exclusion lists and protocol
 * lists, turned into OpenSSL settings. One place for the server
 * (smtpd_tls_ciphers, smtpd_tls_exclude_ciphers) and the client's policy
 * attributes (ciphers=, exclude=, protocols=). Every word is either applied
 * or refused with a message: nothing is ignored. */
#ifndef KP_TLSOPT_H
#define KP_TLSOPT_H

#include <stddef.h>

/* OpenSSL cipher string for a grade (export, low, medium, high) minus the
 * exclusions (a list separated by commas, white space or colons; an
 * element is a cipher name or '+'-joined properties, as in Postfix).
 * Returns 0, or -1 with err filled. */
int tlsopt_cipher_list(const char *grade, const char *exclude, char *out, size_t len,
                       char *err, size_t errlen);

/* The words of an exclusion list that select no cipher this OpenSSL
 * offers (a misspelling, or a cipher OpenSSL 3 no longer has, such as
 * RC4 or MD5), space-separated in out, for a warning: OpenSSL itself
 * ignores them. Returns how many. */
int tlsopt_unmatched(const char *exclude, char *out, size_t len);

/* A protocol list as Postfix writes it: ">=TLSv1.2", "TLSv1.2:TLSv1.3",
 * "!SSLv3, !TLSv1". keypost speaks TLS 1.2 and 1.3 only; the result is the
 * range of those the list allows, as OpenSSL version numbers. Returns 0,
 * or -1 with err filled (unknown name, or nothing left). */
int tlsopt_protocols(const char *spec, int *min_version, int *max_version, char *err,
                     size_t errlen);

#endif
