/* mtasts_fetch: GET https://mta-sts.DOMAIN/.well-known/mta-sts.txt, as
 * RFC 8461 3.3 says: the certificate must chain to the store given (the
 * system's, or smtp_mta_sts_CAfile) and be valid for mta-sts.DOMAIN; a
 * redirect, a status other than 200 or a Content-Type other than
 * text/plain is a failure; the body is at most MTASTS_MAX_BODY bytes and
 * the whole fetch (address lookup included) ends by the deadline. HTTP/1.1
 * with Connection: close; Content-Length, chunked or read-to-close bodies.
 * https_post is the same client, used to POST TLSRPT reports. */
#ifndef KP_MTASTS_FETCH_H
#define KP_MTASTS_FETCH_H

#include <openssl/ssl.h>
#include <stddef.h>

/* The body in out (NUL-terminated, *outlen bytes); -1 with err on failure. */
int mtasts_fetch(SSL_CTX *ctx, const char *domain, long long deadline, char *out,
                 size_t outsize, size_t *outlen, char *err, size_t errlen);
/* Parse an HTTP response (head and body as received, the connection closed
 * after it, resp[n] == '\0'; clean: TLS close_notify was seen): the body of a 200
 * text/plain answer into out. A body without Content-Length or chunked
 * framing needs a clean close (else it may be truncated). -1 with err.
 * Exposed for the unit tests. */
int mtasts_http_response(const char *resp, size_t n, int clean, char *out, size_t outsize,
                         size_t *outlen, char *err, size_t errlen);

/* POST body (Content-Type ctype) to https://HOST[:PORT]PATH with the same
 * rules for the certificate (ctx's store, valid for host), every address
 * of host tried in turn, all by the deadline. 0 with the HTTP status in
 * *status, or -1 with err. For TLSRPT's rua=https: (tls/tlsrpt_send.h). */
int https_post(SSL_CTX *ctx, const char *host, int port, const char *path, const char *ctype,
               const void *body, size_t len, long long deadline, int *status, char *err,
               size_t errlen);

#endif
