/* tlsrpt: recording TLS results (see tlsrpt.h for what, where and why so). */
#include "tls/tlsrpt.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tls/dane.h"
#include "tls/mtasts.h"
#include "tls/tls.h"
#include "tls/tls_policy.h"
#include "util/fsutil.h"
#include "util/log.h"
#include "util/strutil.h"

/* ---- the HTTPS context for rua=https: ------------------------------------ */

static SSL_CTX *https_ctx;

int tlsrpt_init(struct conf_errors *errs)
{
    SSL_CTX_free(https_ctx);
    https_ctx = NULL;
    if (!conf_bool(P_SMTP_TLS_REPORTING))
        return 0;
    const char *cafile = conf_str(P_SMTP_TLS_REPORTING_CAFILE);
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL || SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
        (*cafile ? SSL_CTX_load_verify_locations(ctx, cafile, NULL)
                 : SSL_CTX_set_default_verify_paths(ctx)) != 1) {
        char why[400];
        tls_error_string(why, sizeof why);
        conf_error(errs, "%s: smtp_tls_reporting_CAfile %s: %s",
                   conf_origin(P_SMTP_TLS_REPORTING_CAFILE),
                   *cafile ? cafile : "(the system store)", why);
        SSL_CTX_free(ctx);
        return -1;
    }
    /* WebPKI: the chain must verify and the name is checked per request. */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    https_ctx = ctx;
    return 0;
}

SSL_CTX *tlsrpt_https_ctx(void)
{
    return https_ctx;
}

/* ---- result types --------------------------------------------------------- */

const char *tlsrpt_x509_result(long e, int dane)
{
    switch (e) {
    case X509_V_ERR_CERT_HAS_EXPIRED:
        return "certificate-expired";
    case X509_V_ERR_HOSTNAME_MISMATCH:
        return "certificate-host-mismatch";
    case X509_V_ERR_DANE_NO_MATCH:
    case X509_V_OK: /* verified, but not by a TLSA record */
        return dane ? "tlsa-invalid" : "validation-failure";
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_CERT_UNTRUSTED:
    case X509_V_ERR_CERT_REJECTED:
    case X509_V_ERR_INVALID_CA:
        return dane ? "tlsa-invalid" : "certificate-not-trusted";
    default:
        return "validation-failure";
    }
}

/* ---- the record line ------------------------------------------------------ */

/* Fields are separated by tabs and lines by '\n'; a field's bytes below
 * 0x20, DEL and '%' are written as %XX, so a hostile MX name or policy
 * line can never split or add a field. */
static int put_field(char *out, size_t len, size_t *o, const char *s, int last)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        int esc = *p < 0x20 || *p == 0x7f || *p == '%';
        if (*o + (esc ? 3 : 1) + 2 > len)
            return -1;
        if (esc)
            *o += (size_t)snprintf(out + *o, len - *o, "%%%02X", *p);
        else
            out[(*o)++] = (char)*p;
    }
    out[(*o)++] = last ? '\n' : '\t';
    out[*o] = '\0';
    return 0;
}

int tlsrpt_format(const struct tlsrpt_result *r, char *out, size_t len)
{
    char when[32];
    snprintf(when, sizeof when, "%lld", (long long)r->when);
    const char *f[] = {"1", when, r->domain, r->ptype, r->pstrings, r->result,
                       r->mxhost, r->recvip, r->sendip, r->reason};
    size_t o = 0, n = sizeof f / sizeof f[0];
    for (size_t i = 0; i < n; i++)
        if (put_field(out, len, &o, f[i], i + 1 == n) < 0)
            return -1;
    return (int)o;
}

static int hexval(int c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* One field from *p up to a tab or the end, %XX decoded, into out. */
static int get_field(const char **p, char *out, size_t len)
{
    size_t o = 0;
    const char *s = *p;
    for (; *s && *s != '\t' && *s != '\n'; s++) {
        int c = (unsigned char)*s;
        if (c == '%') {
            int h = hexval(s[1]), l = h < 0 ? -1 : hexval(s[2]);
            if (l < 0)
                return -1;
            c = h * 16 + l;
            s += 2;
        }
        if (c == 0 || o + 1 >= len)
            return -1;
        out[o++] = (char)c;
    }
    out[o] = '\0';
    *p = *s == '\t' ? s + 1 : s;
    return *s == '\t' ? 1 : 0; /* 1: more fields follow */
}

int tlsrpt_parse(const char *line, struct tlsrpt_result *r)
{
    memset(r, 0, sizeof *r);
    char version[8], when[32];
    struct { char *buf; size_t len; } f[] = {
        {version, sizeof version}, {when, sizeof when}, {r->domain, sizeof r->domain},
        {r->ptype, sizeof r->ptype}, {r->pstrings, sizeof r->pstrings},
        {r->result, sizeof r->result}, {r->mxhost, sizeof r->mxhost},
        {r->recvip, sizeof r->recvip}, {r->sendip, sizeof r->sendip},
        {r->reason, sizeof r->reason}};
    size_t n = sizeof f / sizeof f[0];
    const char *p = line;
    for (size_t i = 0; i < n; i++) {
        int more = get_field(&p, f[i].buf, f[i].len);
        if (more < 0 || (more == 0) != (i + 1 == n))
            return -1;
    }
    long long t = str_parse_long(when);
    if (strcmp(version, "1") != 0 || t < 0 || !r->domain[0] || !r->ptype[0] || !r->result[0])
        return -1;
    r->when = (time_t)t;
    return 0;
}

/* ---- the day file --------------------------------------------------------- */

/* Open the day's file for appending, shared-locked, and make sure it still
 * has its name after the lock: the reporter renames a file before taking
 * its exclusive lock, so a writer that got the old file tries again. */
static int open_day(const char *path, char *err, size_t errlen)
{
    for (int tries = 0; tries < 5; tries++) {
        int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0640);
        if (fd < 0) {
            snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
            return -1;
        }
        struct stat a, b;
        if (flock(fd, LOCK_SH) == 0 && fstat(fd, &a) == 0 && lstat(path, &b) == 0 &&
            a.st_ino == b.st_ino && a.st_dev == b.st_dev && S_ISREG(a.st_mode))
            return fd;
        close(fd);
    }
    snprintf(err, errlen, "%s: keeps being replaced", path);
    return -1;
}

int tlsrpt_append(const char *qdir, const struct tlsrpt_result *r, char *err, size_t errlen)
{
    char dir[4096], path[4200], line[16384], day[16];
    struct tm tm;
    gmtime_r(&r->when, &tm);
    strftime(day, sizeof day, "%Y%m%d", &tm);
    snprintf(dir, sizeof dir, "%s/%s", qdir, TLSRPT_DIR);
    snprintf(path, sizeof path, "%s/day-%s", dir, day);
    int n = tlsrpt_format(r, line, sizeof line);
    if (n < 0) {
        snprintf(err, errlen, "result for %s too long to record", r->domain);
        return -1;
    }
    if (own_dir(dir, -1, -1, 1) < 0) {
        snprintf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
        return -1;
    }
    int fd = open_day(path, err, errlen);
    if (fd < 0)
        return -1;
    /* One write: O_APPEND places it whole at the end, whoever else writes. */
    int ok = write(fd, line, (size_t)n) == n && fdatasync(fd) == 0;
    if (!ok)
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
    close(fd);
    return ok ? 0 : -1;
}

/* ---- what the delivery code calls ---------------------------------------- */

static void record(struct tlsrpt_result *r, const char *domain, const char *result,
                   const char *mxhost, const char *detail)
{
    if (!conf_bool(P_SMTP_TLS_REPORTING) || domain == NULL || !*domain || domain[0] == '[')
        return;
    r->when = time(NULL);
    size_t n = str_copy(r->domain, domain, sizeof r->domain);
    if (n && r->domain[n - 1] == '.')
        r->domain[n - 1] = '\0';
    str_lower(r->domain);
    str_copy(r->result, result, sizeof r->result);
    str_copy(r->mxhost, mxhost ? mxhost : "", sizeof r->mxhost);
    /* A success has no reason; a failure's is what the log says. */
    str_copy(r->reason, strcmp(result, TLSRPT_SUCCESS) && detail ? detail : "",
             sizeof r->reason);
    char err[300];
    if (tlsrpt_append(conf_str(P_QUEUE_DIRECTORY), r, err, sizeof err) < 0)
        log_warn(NULL, "TLSRPT: %s", err);
}

static void add_string(char *out, size_t len, const char *s)
{
    size_t o = strlen(out);
    if (o + strlen(s) + 2 < len)
        snprintf(out + o, len - o, "%s%s", o ? "\n" : "", s);
}

static void sts_strings(const struct mtasts_policy *s, char *out, size_t len)
{
    char line[300];
    out[0] = '\0';
    if (s->mode == STS_NONE)
        return;
    add_string(out, len, "version: STSv1");
    snprintf(line, sizeof line, "mode: %s", mtasts_mode_name(s->mode));
    add_string(out, len, line);
    for (int i = 0; i < s->nmx; i++) {
        snprintf(line, sizeof line, "mx: %s", s->mx[i]);
        add_string(out, len, line);
    }
    snprintf(line, sizeof line, "max_age: %ld", s->max_age);
    add_string(out, len, line);
}

static void tlsa_strings(const struct dane_host *d, char *out, size_t len)
{
    out[0] = '\0';
    for (int i = 0; i < d->nrr; i++) {
        char rr[300];
        dane_rr_text(d->rr[i].usage, d->rr[i].selector, d->rr[i].mtype, d->rr[i].data,
                     d->rr[i].len, rr, sizeof rr);
        add_string(out, len, rr);
    }
}

static void addr_text(const struct sockaddr_storage *ss, char *out, size_t len)
{
    const void *a = ss->ss_family == AF_INET
                        ? (const void *)&((const struct sockaddr_in *)ss)->sin_addr
                        : (const void *)&((const struct sockaddr_in6 *)ss)->sin6_addr;
    if (inet_ntop(ss->ss_family, a, out, (socklen_t)len) == NULL)
        out[0] = '\0';
}

void tlsrpt_session(const struct tls_policy *p, const char *domain, const char *mxhost, int fd,
                    const char *result, const char *detail)
{
    if (!conf_bool(P_SMTP_TLS_REPORTING) || (p->dane == NULL && p->sts.mode == STS_NONE))
        return;
    struct tlsrpt_result r;
    memset(&r, 0, sizeof r);
    if (p->dane) {
        str_copy(r.ptype, "tlsa", sizeof r.ptype);
        tlsa_strings(p->dane, r.pstrings, sizeof r.pstrings);
    } else {
        str_copy(r.ptype, "sts", sizeof r.ptype);
        sts_strings(&p->sts, r.pstrings, sizeof r.pstrings);
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (fd >= 0 && getpeername(fd, (struct sockaddr *)&ss, &sl) == 0)
        addr_text(&ss, r.recvip, sizeof r.recvip);
    sl = sizeof ss;
    if (fd >= 0 && getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
        addr_text(&ss, r.sendip, sizeof r.sendip);
    record(&r, domain, result, mxhost, detail);
}

void tlsrpt_dane_host(const char *domain, const char *mxhost, const struct dane_host *d)
{
    if (d->report == NULL)
        return;
    struct tlsrpt_result r;
    memset(&r, 0, sizeof r);
    str_copy(r.ptype, "tlsa", sizeof r.ptype);
    record(&r, domain, d->report, mxhost, d->why);
}

void tlsrpt_sts(const struct mtasts_policy *s, const char *domain, const char *mxhost,
                const char *result, const char *detail)
{
    struct tlsrpt_result r;
    memset(&r, 0, sizeof r);
    str_copy(r.ptype, "sts", sizeof r.ptype);
    sts_strings(s, r.pstrings, sizeof r.pstrings);
    record(&r, domain, result, mxhost, detail);
}
