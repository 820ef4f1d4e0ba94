/* mtasts_fetch: a small HTTPS GET client over non-blocking OpenSSL, every
 * step bounded by one deadline. */
#include "tls/mtasts_fetch.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "dns/dnswait.h"
#include "tls/mtasts.h"
#include "util/strutil.h"

#define RAW_MAX (MTASTS_MAX_BODY + 16384) /* head and chunk framing */
#define MAX_ADDRS 8

/* Wait for events on fd until the deadline; -1 on timeout or error. */
static int wait_fd(int fd, short events, long long deadline)
{
    for (;;) {
        long long left = deadline - dnswait_now_ms();
        if (left <= 0)
            return -1;
        struct pollfd p = {fd, events, 0};
        int r = poll(&p, 1, (int)left);
        if (r > 0)
            return 0;
        if (r < 0 && errno != EINTR)
            return -1;
    }
}

static int connect_by(const struct sockaddr_storage *ss, long long deadline, char *err,
                      size_t errlen)
{
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    socklen_t sl = ss->ss_family == AF_INET ? sizeof(struct sockaddr_in)
                                            : sizeof(struct sockaddr_in6);
    int soerr = 0, timedout = 0;
    socklen_t el = sizeof soerr;
    if (fd < 0 || (connect(fd, (const struct sockaddr *)ss, sl) < 0 && errno != EINPROGRESS) ||
        (timedout = wait_fd(fd, POLLOUT, deadline) < 0) ||
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &el) < 0 || soerr) {
        int e = soerr ? soerr : errno;
        snprintf(err, errlen, "connect: %s", timedout ? "timed out" : strerror(e));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

enum ssl_op { OP_CONNECT, OP_WRITE, OP_READ };

/* One SSL call, repeated as the non-blocking socket allows until the
 * deadline: its result (> 0), -2 on timeout, else <= 0 with *sslerr. */
static int ssl_io(SSL *ssl, int fd, enum ssl_op op, void *buf, int n, long long deadline,
                  int *sslerr)
{
    for (;;) {
        int r = op == OP_CONNECT ? SSL_connect(ssl)
                : op == OP_WRITE ? SSL_write(ssl, buf, n) : SSL_read(ssl, buf, n);
        *sslerr = r > 0 ? SSL_ERROR_NONE : SSL_get_error(ssl, r);
        short ev = *sslerr == SSL_ERROR_WANT_READ ? POLLIN
                   : *sslerr == SSL_ERROR_WANT_WRITE ? POLLOUT : 0;
        if (ev == 0)
            return r;
        if (wait_fd(fd, ev, deadline) < 0)
            return -2;
    }
}

static void tls_reason(SSL *ssl, int ret, char *err, size_t errlen, const char *what)
{
    long v = SSL_get_verify_result(ssl);
    unsigned long e = ERR_peek_last_error();
    if (ret == -2)
        snprintf(err, errlen, "%s: timed out", what);
    else if (v != X509_V_OK)
        snprintf(err, errlen, "%s: certificate: %s", what, X509_verify_cert_error_string(v));
    else if (e)
        snprintf(err, errlen, "%s: %s", what, ERR_reason_error_string(e) ?
                 ERR_reason_error_string(e) : "TLS error");
    else
        snprintf(err, errlen, "%s: connection closed", what);
    ERR_clear_error();
}

/* Handshake, request, and the whole response into raw (at most cap - 1
 * bytes: more is an error). */
static int exchange(SSL *ssl, int fd, const char *req, size_t reqlen, long long deadline,
                    char *raw, size_t cap, size_t *rawlen, int *clean, char *err, size_t errlen)
{
    int sslerr, r = ssl_io(ssl, fd, OP_CONNECT, NULL, 0, deadline, &sslerr);
    if (r <= 0) {
        tls_reason(ssl, r, err, errlen, "TLS handshake");
        return -1;
    }
    int n = (int)reqlen;
    r = ssl_io(ssl, fd, OP_WRITE, (void *)req, n, deadline, &sslerr);
    if (r != n) {
        tls_reason(ssl, r, err, errlen, "sending the request");
        return -1;
    }
    *rawlen = 0;
    *clean = 0;
    while (*rawlen < cap - 1) {
        r = ssl_io(ssl, fd, OP_READ, raw + *rawlen, (int)(cap - 1 - *rawlen), deadline,
                   &sslerr);
        if (r > 0) {
            *rawlen += (size_t)r;
            continue;
        }
        if (r == -2) {
            snprintf(err, errlen, "reading the response: timed out");
            return -1;
        }
        *clean = sslerr == SSL_ERROR_ZERO_RETURN;
        ERR_clear_error();
        raw[*rawlen] = '\0';
        return 0;
    }
    snprintf(err, errlen, "response larger than %zu bytes", cap - 1);
    return -1;
}

/* One request to one address: the response in raw. */
static int request_at(SSL_CTX *ctx, const struct sockaddr_storage *ss, const char *host,
                      const char *req, size_t reqlen, long long deadline, char *raw, size_t cap,
                      size_t *rawlen, int *clean, char *err, size_t errlen)
{
    int fd = connect_by(ss, deadline, err, errlen);
    if (fd < 0)
        return -1;
    SSL *ssl = SSL_new(ctx);
    int r = -1;
    if (ssl == NULL || SSL_set_fd(ssl, fd) != 1 || SSL_set_tlsext_host_name(ssl, host) != 1 ||
        SSL_set1_host(ssl, host) != 1)
        snprintf(err, errlen, "cannot set up TLS");
    else
        r = exchange(ssl, fd, req, reqlen, deadline, raw, cap, rawlen, clean, err, errlen);
    SSL_free(ssl);
    close(fd);
    return r;
}

static int fetch_from(SSL_CTX *ctx, const struct sockaddr_storage *ss, const char *host,
                      long long deadline, char *out, size_t outsize, size_t *outlen, char *err,
                      size_t errlen)
{
    char req[512];
    int n = snprintf(req, sizeof req, "GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: %s\r\n"
                     "User-Agent: keypost\r\nAccept: text/plain\r\nConnection: close\r\n\r\n",
                     host);
    char *raw = malloc(RAW_MAX + 1);
    size_t rawlen = 0;
    int clean = 0, r = -1;
    if (raw == NULL)
        snprintf(err, errlen, "out of memory");
    else if (request_at(ctx, ss, host, req, (size_t)n, deadline, raw, RAW_MAX + 1, &rawlen,
                        &clean, err, errlen) == 0)
        r = mtasts_http_response(raw, rawlen, clean, out, outsize, outlen, err, errlen);
    free(raw);
    return r;
}

int https_post(SSL_CTX *ctx, const char *host, int port, const char *path, const char *ctype,
               const void *body, size_t len, long long deadline, int *status, char *err,
               size_t errlen)
{
    struct sockaddr_storage addrs[MAX_ADDRS];
    int n = 0;
    char why[300] = "", hostport[300], resp[4096];
    snprintf(hostport, sizeof hostport, port == 443 ? "%s" : "%s:%d", host, port);
    if (dnswait_addrs(host, port, deadline, addrs, MAX_ADDRS, &n, why, sizeof why) != DNS_OK) {
        snprintf(err, errlen, "%s", why);
        return -1;
    }
    char *req = malloc(len + 1024);
    if (req == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int h = snprintf(req, 1024, "POST %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: keypost\r\n"
                     "Content-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
                     path, hostport, ctype, len);
    int r = -1;
    if (h <= 0 || h >= 1024)
        snprintf(why, sizeof why, "request header too long");
    else {
        memcpy(req + h, body, len);
        for (int i = 0; r < 0 && i < n && dnswait_now_ms() < deadline; i++) {
            size_t rlen = 0;
            int clean = 0;
            /* The answer's status line is all that matters; a long body
             * that does not fit is no failure. */
            int got = request_at(ctx, &addrs[i], host, req, (size_t)h + len, deadline, resp,
                                 sizeof resp, &rlen, &clean, why, sizeof why);
            resp[rlen] = '\0';
            if (got == 0 || rlen > 12)
                r = sscanf(resp, "HTTP/1.%*1[01] %3d", status) == 1 ? 0 : -1;
            if (r < 0 && rlen > 0)
                snprintf(why, sizeof why, "not an HTTP response");
        }
    }
    free(req);
    if (r < 0)
        snprintf(err, errlen, "https://%s%s: %s", hostport, path, *why ? why : "timed out");
    return r;
}

int mtasts_fetch(SSL_CTX *ctx, const char *domain, long long deadline, char *out,
                 size_t outsize, size_t *outlen, char *err, size_t errlen)
{
    char host[300], why[300] = "";
    snprintf(host, sizeof host, "mta-sts.%s", domain);
    struct sockaddr_storage addrs[MAX_ADDRS];
    int n = 0;
    if (dnswait_addrs(host, 443, deadline, addrs, MAX_ADDRS, &n, why, sizeof why) != DNS_OK) {
        snprintf(err, errlen, "%s", why);
        return -1;
    }
    for (int i = 0; i < n && dnswait_now_ms() < deadline; i++)
        if (fetch_from(ctx, &addrs[i], host, deadline, out, outsize, outlen, why,
                       sizeof why) == 0)
            return 0;
    snprintf(err, errlen, "https://%s/.well-known/mta-sts.txt: %s", host,
             *why ? why : "timed out");
    return -1;
}

/* ---- the response ------------------------------------------------------- */

/* The value of header name in head (CRLF lines), or NULL. */
static const char *header(const char *head, const char *name, char *val, size_t len)
{
    size_t nl = strlen(name);
    for (const char *l = strstr(head, "\r\n"); l && l[2]; l = strstr(l + 2, "\r\n")) {
        const char *h = l + 2;
        if (strncasecmp(h, name, nl) == 0 && h[nl] == ':') {
            const char *v = h + nl + 1, *e = strstr(v, "\r\n");
            size_t n = e ? (size_t)(e - v) : strlen(v);
            snprintf(val, len, "%.*s", (int)n, v);
            return str_trim(val);
        }
    }
    return NULL;
}

static int put(char *out, size_t outsize, size_t *o, const char *p, size_t n)
{
    if (*o + n > MTASTS_MAX_BODY || *o + n >= outsize)
        return -1;
    memcpy(out + *o, p, n);
    *o += n;
    return 0;
}

/* Chunked transfer coding; 1 when the last chunk was seen, 0 truncated, -1 bad. */
static int dechunk(const char *p, size_t n, char *out, size_t outsize, size_t *o)
{
    size_t i = 0;
    while (i < n) {
        char *end;
        unsigned long size = strtoul(p + i, &end, 16);
        const char *crlf = memmem(p + i, n - i, "\r\n", 2);
        if (end == p + i || crlf == NULL || end > crlf)
            return -1;
        i = (size_t)(crlf - p) + 2;
        if (size == 0)
            return 1;
        if (size > n - i || n - i - size < 2 || put(out, outsize, o, p + i, size) < 0)
            return size > MTASTS_MAX_BODY ? -1 : 0;
        i += size;
        if (memcmp(p + i, "\r\n", 2) != 0)
            return -1;
        i += 2;
    }
    return 0;
}

static int status_ok(const char *resp, char *err, size_t errlen)
{
    int code = 0;
    if (sscanf(resp, "HTTP/1.%*1[01] %3d", &code) != 1) {
        snprintf(err, errlen, "not an HTTP response");
        return -1;
    }
    if (code >= 300 && code < 400) {
        snprintf(err, errlen, "HTTP %d: redirects are not followed (RFC 8461 3.3)", code);
        return -1;
    }
    if (code != 200) {
        snprintf(err, errlen, "HTTP status %d", code);
        return -1;
    }
    return 0;
}

static int body_of(const char *head, const char *body, size_t blen, int clean, char *out,
                   size_t outsize, size_t *o, char *err, size_t errlen)
{
    char v[200];
    const char *te = header(head, "Transfer-Encoding", v, sizeof v);
    if (te && strcasecmp(te, "chunked") == 0) {
        int r = dechunk(body, blen, out, outsize, o);
        if (r <= 0)
            snprintf(err, errlen, "%s", r < 0 ? "bad chunked body or policy too large"
                                              : "chunked body truncated");
        return r > 0 ? 0 : -1;
    }
    const char *cl = header(head, "Content-Length", v, sizeof v);
    if (cl) {
        long want = str_parse_long(cl);
        if (want < 0 || want > MTASTS_MAX_BODY || (size_t)want > blen) {
            snprintf(err, errlen, want > MTASTS_MAX_BODY ? "policy larger than %d bytes"
                     : "body shorter than its Content-Length (%d bytes at most)",
                     MTASTS_MAX_BODY);
            return -1;
        }
        return put(out, outsize, o, body, (size_t)want);
    }
    if (!clean) {
        snprintf(err, errlen, "body without length ended without TLS close_notify");
        return -1;
    }
    if (put(out, outsize, o, body, blen) < 0) {
        snprintf(err, errlen, "policy larger than %d bytes", MTASTS_MAX_BODY);
        return -1;
    }
    return 0;
}

int mtasts_http_response(const char *resp, size_t n, int clean, char *out, size_t outsize,
                         size_t *outlen, char *err, size_t errlen)
{
    const char *end = memmem(resp, n, "\r\n\r\n", 4);
    if (status_ok(resp, err, errlen) < 0)
        return -1;
    if (end == NULL) {
        snprintf(err, errlen, "incomplete HTTP header");
        return -1;
    }
    size_t hlen = (size_t)(end - resp) + 2;
    char *head = strndup(resp, hlen);
    char v[200];
    const char *ct = head ? header(head, "Content-Type", v, sizeof v) : NULL;
    size_t tl = strlen("text/plain");
    int r = -1;
    *outlen = 0;
    if (ct == NULL || strncasecmp(ct, "text/plain", tl) != 0 ||
        (ct[tl] && ct[tl] != ';' && ct[tl] != ' '))
        snprintf(err, errlen, "Content-Type %.60s, not text/plain", ct ? ct : "missing");
    else
        r = body_of(head, end + 4, n - hlen - 2, clean, out, outsize, outlen, err, errlen);
    free(head);
    if (r == 0)
        out[*outlen] = '\0';
    return r;
}
