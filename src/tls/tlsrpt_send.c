/* tlsrpt_send: report runs (see tlsrpt_send.h for who runs them and why). */
#include "tls/tlsrpt_send.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "conf/conf.h"
#include "dns/dnswait.h"
#include "queue/notify.h"
#include "queue/queue.h"
#include "tls/mtasts_fetch.h"
#include "tls/tlsrpt.h"
#include "tls/tlsrpt_report.h"
#include "util/buf.h"
#include "util/log.h"
#include "util/strutil.h"

#define REPORT_MAX (64 << 20) /* the largest JSON report */

static void note(FILE *out, int warn, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* A line for the log, and for the command's output. */
static void note(FILE *out, int warn, const char *fmt, ...)
{
    char line[1200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (warn)
        log_warn(NULL, "TLSRPT: %s", line);
    else
        log_info(NULL, "TLSRPT: %s", line);
    if (out)
        fprintf(out, "%s%s\n", warn ? "warning: " : "", line);
}

/* ---- the recorded results --------------------------------------------------- */

static int is_day_file(const char *name)
{
    return strncmp(name, "day-", 4) == 0 && strlen(name) == 12 &&
           strspn(name + 4, "0123456789") == 8;
}

static int is_taken_file(const char *name)
{
    return strncmp(name, "rpt-", 4) == 0 && strlen(name) > 13 &&
           strspn(name + 4, "0123456789") == 8 && name[12] == '-';
}

/* Add the results of one file; lock: wait for its writers first. */
static int load_file(const char *path, int lock, struct tlsrpt_agg *a, int *bad)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 || (lock && flock(fd, LOCK_EX) < 0)) {
        if (fd >= 0)
            close(fd);
        return errno == ENOENT ? 0 : -1;
    }
    FILE *f = fdopen(fd, "r");
    if (f == NULL) {
        close(fd);
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    struct tlsrpt_result *r = malloc(sizeof *r);
    int status = r ? 0 : -1;
    while (r && getline(&line, &cap, f) > 0) {
        if (tlsrpt_parse(line, r) < 0)
            (*bad)++;
        else if (tlsrpt_agg_add(a, r) < 0)
            status = -1;
    }
    free(r);
    free(line);
    fclose(f);
    return status;
}

struct tlsrpt_agg *tlsrpt_load(const char *qdir, char *err, size_t errlen)
{
    char dir[4096], path[4400];
    snprintf(dir, sizeof dir, "%s/%s", qdir, TLSRPT_DIR);
    struct tlsrpt_agg *a = tlsrpt_agg_new();
    DIR *d = opendir(dir);
    if (d == NULL && errno != ENOENT)
        snprintf(err, errlen, "%s: %s", dir, strerror(errno));
    if (a == NULL || (d == NULL && errno != ENOENT)) {
        tlsrpt_agg_free(a);
        return NULL;
    }
    int bad = 0;
    for (struct dirent *e; d && (e = readdir(d));) {
        if (!is_day_file(e->d_name) && !is_taken_file(e->d_name))
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (load_file(path, 0, a, &bad) < 0) {
            snprintf(err, errlen, "%s: %s", path, strerror(errno));
            tlsrpt_agg_free(a);
            closedir(d);
            return NULL;
        }
    }
    if (d)
        closedir(d);
    if (bad)
        log_warn(NULL, "TLSRPT: %d malformed lines in %s skipped", bad, dir);
    return a;
}

/* ---- building a report ------------------------------------------------------ */

static int gzip_buf(const struct buf *in, unsigned char **out, size_t *outlen)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    if (deflateInit2(&z, 9, Z_DEFLATED, 15 + 16 /* gzip */, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return -1;
    size_t cap = deflateBound(&z, (uLong)in->len);
    *out = malloc(cap);
    int r = Z_MEM_ERROR;
    if (*out) {
        z.next_in = (Bytef *)in->data;
        z.avail_in = (uInt)in->len;
        z.next_out = *out;
        z.avail_out = (uInt)cap;
        r = deflate(&z, Z_FINISH);
        *outlen = cap - z.avail_out;
    }
    deflateEnd(&z);
    if (r != Z_STREAM_END) {
        free(*out);
        *out = NULL;
        return -1;
    }
    return 0;
}

/* A header value or file name from data that may be anyone's: controls,
 * quotes and backslashes become '_'. */
static void clean(char *dst, const char *src, size_t len)
{
    size_t n = str_copy(dst, src, len);
    for (size_t i = 0; i < n && i < len; i++)
        if ((unsigned char)dst[i] < 0x20 || dst[i] == 0x7f || dst[i] == '"' || dst[i] == '\\')
            dst[i] = '_';
}

struct report {
    const char *domain;
    char id[200];
    char unique[17];   /* the id's random part: the file name's unique-id */
    char org[256];
    time_t start, end;
    unsigned char *gz;
    size_t gzlen;
};

/* RFC 8460 5.3: the submitter (Subject, TLS-Report-Submitter, and the
 * first part of the attachment's name, 5.1) is the reporting host's
 * domain name; the organization-name is the JSON's. */
static void mail_body(struct buf *b, const struct report *r, const char *to,
                      const char *boundary)
{
    const char *host = conf_str(P_MYHOSTNAME);
    char date[64], dom[256];
    str_rfc5322_date(time(NULL), date, sizeof date);
    clean(dom, r->domain, sizeof dom);
    buf_printf(b, "From: MAILER-DAEMON@%s (TLS reports)\r\nTo: <%s>\r\n"
                  "Subject: Report Domain: %s Submitter: %s Report-ID: <%s>\r\n"
                  "Date: %s\r\nMessage-ID: <%s>\r\nTLS-Report-Domain: %s\r\n"
                  "TLS-Report-Submitter: %s\r\nAuto-Submitted: auto-generated\r\n"
                  "MIME-Version: 1.0\r\n"
                  "Content-Type: multipart/report; report-type=\"tlsrpt\";\r\n"
                  "\tboundary=\"%s\"\r\n\r\n",
               host, to, dom, host, r->id, date, r->id, dom, host, boundary);
    buf_printf(b, "This is a MIME-formatted message.\r\n\r\n--%s\r\n"
                  "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
                  "This is an aggregate TLS report (RFC 8460) from %s, the mail system at\r\n"
                  "host %s, for the domain %s.\r\n\r\n--%s\r\n"
                  "Content-Type: application/tlsrpt+gzip\r\n"
                  "Content-Transfer-Encoding: base64\r\n"
                  "Content-Disposition: attachment;\r\n"
                  "\tfilename=\"%s!%s!%lld!%lld!%s.json.gz\"\r\n\r\n",
               boundary, r->org, host, dom, boundary, host, dom, (long long)r->start,
               (long long)r->end, r->unique);
    unsigned char line[80];
    for (size_t o = 0; o < r->gzlen; o += 57) {
        size_t n = r->gzlen - o < 57 ? r->gzlen - o : 57;
        int k = EVP_EncodeBlock(line, r->gz + o, (int)n);
        buf_append(b, line, (size_t)k);
        buf_puts(b, "\r\n");
    }
    buf_printf(b, "\r\n--%s--\r\n", boundary);
}

static int send_mail(const char *qdir, const struct report *r, const char *to, char *qid,
                     char *err, size_t errlen)
{
    char *rcpts[1] = {(char *)to};
    struct envelope env = {.arrival = time(NULL), .sender = "", .rcpts = rcpts, .nrcpt = 1,
                           .client = "local", .helo = "", .proto = "tlsrpt"};
    struct qfile *q = queue_create(qdir, &env);
    if (q == NULL) {
        snprintf(err, errlen, "cannot create a queue file in %s: %s", qdir, strerror(errno));
        return -1;
    }
    char boundary[128];
    snprintf(boundary, sizeof boundary, "%s/%s", queue_file_id(q), conf_str(P_MYHOSTNAME));
    struct buf b;
    buf_init(&b, (size_t)REPORT_MAX * 2);
    mail_body(&b, r, to, boundary);
    int ok = b.data && queue_write(q, b.data, b.len) == 0 && queue_commit(q) == 0;
    buf_free(&b);
    str_copy(qid, queue_file_id(q), QUEUE_ID_LEN);
    if (!ok) {
        snprintf(err, errlen, "cannot queue the report: %s", strerror(errno));
        queue_abort(q);
        return -1;
    }
    queue_close(q);
    queue_notify(qdir, qid);
    return 0;
}

static int send_https(const struct report *r, const struct tlsrpt_dest *d, int *status,
                      char *err, size_t errlen)
{
    SSL_CTX *ctx = tlsrpt_https_ctx();
    if (ctx == NULL) {
        snprintf(err, errlen, "no HTTPS context (smtp_tls_reporting is off)");
        return -1;
    }
    long long deadline = dnswait_now_ms() + conf_long(P_SMTP_TLS_REPORTING_TIMEOUT) * 1000;
    if (https_post(ctx, d->host, d->port, d->path, "application/tlsrpt+gzip", r->gz, r->gzlen,
                   deadline, status, err, errlen) < 0)
        return -1;
    if (*status < 200 || *status > 299) {
        snprintf(err, errlen, "HTTP status %d", *status);
        return -1;
    }
    return 0;
}

/* Deliver one report to one rua URI; 0 or -1. */
static int send_to(const char *qdir, const struct report *r, const char *uri, FILE *out)
{
    struct tlsrpt_dest d;
    char err[600], qid[QUEUE_ID_LEN], shown[300];
    int status = 0;
    clean(shown, uri, sizeof shown); /* it comes from DNS: shown cleaned */
    if (tlsrpt_dest_parse(uri, &d) < 0) {
        note(out, 1, "report %s for %s: rua %s: not a usable mailto: or https: URI",
             r->id, r->domain, shown);
        return -1;
    }
    if (!d.https && send_mail(qdir, r, d.addr, qid, err, sizeof err) == 0) {
        note(out, 0, "report %s for %s: queued as %s to <%s>", r->id, r->domain, qid, d.addr);
        return 0;
    }
    if (d.https && send_https(r, &d, &status, err, sizeof err) == 0) {
        note(out, 0, "report %s for %s: posted to %s: HTTP %d", r->id, r->domain, shown,
             status);
        return 0;
    }
    note(out, 1, "report %s for %s: %s: %s", r->id, r->domain, shown, err);
    return -1;
}

/* The rua URIs of domain; 0 when it has none (or they cannot be known). */
static int lookup_rua(const char *domain, char *rua, size_t len, FILE *out)
{
    char name[300], recs[4096], err[400];
    int count = 0;
    snprintf(name, sizeof name, "_smtp._tls.%s", domain);
    long long deadline = dnswait_now_ms() + conf_long(P_SMTP_TLS_REPORTING_TIMEOUT) * 1000;
    enum dns_status st = dnswait_txt(name, deadline, recs, sizeof recs, &count, err, sizeof err);
    if (st == DNS_TEMPFAIL) {
        note(out, 1, "no report for %s: %s", domain, err);
        return 0;
    }
    if (st != DNS_OK || !tlsrpt_txt_rua(recs, rua, len)) {
        note(out, 0, "no report for %s: no usable TLSRPTv1 record at %s", domain, name);
        return 0;
    }
    return 1;
}

/* Build and send domain i's report; the number of failed destinations. */
static int report_domain(const char *qdir, const struct tlsrpt_agg *a, int i, const char *day,
                         time_t start, time_t end, FILE *out)
{
    struct report r = {.domain = tlsrpt_agg_domain(a, i), .start = start, .end = end};
    char rua[2048];
    if (!lookup_rua(r.domain, rua, sizeof rua, out))
        return 0;
    unsigned char rnd[8];
    char hex[17];
    if (RAND_bytes(rnd, sizeof rnd) != 1)
        return 1;
    for (int k = 0; k < 8; k++)
        snprintf(hex + 2 * k, 3, "%02X", rnd[k]);
    snprintf(r.id, sizeof r.id, "%s.%s@%s", day, hex, conf_str(P_MYHOSTNAME));
    str_copy(r.unique, hex, sizeof r.unique);
    clean(r.org, conf_str(P_SMTP_TLS_REPORTING_ORGANIZATION), sizeof r.org);
    struct tlsrpt_meta m = {conf_str(P_SMTP_TLS_REPORTING_ORGANIZATION),
                            conf_str(P_SMTP_TLS_REPORTING_CONTACT), r.id, start, end};
    struct buf json;
    buf_init(&json, REPORT_MAX);
    int failed = 0;
    if (tlsrpt_json(a, i, &m, &json) < 0 || gzip_buf(&json, &r.gz, &r.gzlen) < 0) {
        note(out, 1, "report for %s: cannot build it (too large?)", r.domain);
        failed = 1;
    }
    buf_free(&json);
    char *save = NULL;
    for (char *u = failed ? NULL : strtok_r(rua, ",", &save); u; u = strtok_r(NULL, ",", &save))
        failed += send_to(qdir, &r, str_trim(u), out) < 0;
    free(r.gz);
    return failed;
}

/* Report one taken file (rpt-DAY-UNIQUE) and remove it. */
static int report_file(const char *qdir, const char *path, const char *name, time_t now,
                       FILE *out)
{
    char day[9];
    snprintf(day, sizeof day, "%.8s", name + 4);
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    if (strptime(day, "%Y%m%d", &tm) == NULL)
        return 0;
    time_t start = timegm(&tm), end = start + 86399;
    if (end > now)
        end = now;
    struct tlsrpt_agg *a = tlsrpt_agg_new();
    int bad = 0, failed = 0;
    if (a == NULL || load_file(path, 1, a, &bad) < 0) {
        note(out, 1, "cannot read %s: %s", path, strerror(errno));
        tlsrpt_agg_free(a);
        return 1;
    }
    if (bad)
        note(out, 1, "%s: %d malformed lines skipped", path, bad);
    for (int i = 0; i < tlsrpt_agg_ndomains(a); i++)
        failed += report_domain(qdir, a, i, day, start, end, out);
    tlsrpt_agg_free(a);
    if (unlink(path) < 0)
        note(out, 1, "cannot remove %s: %s", path, strerror(errno));
    return failed;
}

/* Rename the day files that are due to rpt-DAY-UNIQUE: from now on
 * writers start a new file. */
static void take_due(const char *dir, int all, time_t now)
{
    char today[16], from[4400], to[4400];
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(today, sizeof today, "day-%Y%m%d", &tm);
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));) {
        if (!is_day_file(e->d_name) || (!all && strcmp(e->d_name, today) >= 0))
            continue;
        snprintf(from, sizeof from, "%s/%s", dir, e->d_name);
        snprintf(to, sizeof to, "%s/rpt-%s-%lld.%d", dir, e->d_name + 4, (long long)now,
                 (int)getpid());
        if (rename(from, to) < 0)
            log_warn(NULL, "TLSRPT: cannot rename %s: %s", from, strerror(errno));
    }
    if (d)
        closedir(d);
}

int tlsrpt_run(const char *qdir, int all, FILE *out)
{
    char dir[4096], lock[4200], path[4400];
    snprintf(dir, sizeof dir, "%s/%s", qdir, TLSRPT_DIR);
    snprintf(lock, sizeof lock, "%s/.lock", dir);
    int lfd = open(lock, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0640);
    if (lfd < 0 || flock(lfd, LOCK_EX) < 0) {
        if (errno == ENOENT) { /* nothing was ever recorded */
            if (lfd >= 0)
                close(lfd);
            return 0;
        }
        note(out, 1, "cannot lock %s: %s", lock, strerror(errno));
        if (lfd >= 0)
            close(lfd);
        return -1;
    }
    time_t now = time(NULL);
    take_due(dir, all, now);
    int failed = 0;
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));) {
        if (!is_taken_file(e->d_name))
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        failed += report_file(qdir, path, e->d_name, now, out);
    }
    if (d)
        closedir(d);
    close(lfd);
    return failed;
}

/* ---- in the queue manager ---------------------------------------------------- */

static pid_t run_pid;
static time_t last_look;

/* A file to report: a day that has ended, or one a dead run left. */
static int due(const char *qdir, time_t now)
{
    char dir[4096], today[16];
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(today, sizeof today, "day-%Y%m%d", &tm);
    snprintf(dir, sizeof dir, "%s/%s", qdir, TLSRPT_DIR);
    DIR *d = opendir(dir);
    int found = 0;
    for (struct dirent *e; d && !found && (e = readdir(d));)
        found = is_taken_file(e->d_name) ||
                (is_day_file(e->d_name) && strcmp(e->d_name, today) < 0);
    if (d)
        closedir(d);
    return found;
}

/* The child must not hold the queue manager's sockets (agent channels,
 * qmgr.sock): an agent waits for its channel's end to exit, and would wait
 * for the report run too. Files (the log) and 0-2 stay. */
static void close_sockets(void)
{
    DIR *d = opendir("/proc/self/fd");
    int self = d ? dirfd(d) : -1;
    for (struct dirent *e; d && (e = readdir(d));) {
        int fd = atoi(e->d_name);
        struct stat st;
        if (fd > 2 && fd != self && fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode))
            close(fd);
    }
    if (d)
        closedir(d);
}

void tlsrpt_tick(const char *qdir)
{
    time_t now = time(NULL);
    if (!conf_bool(P_SMTP_TLS_REPORTING) || run_pid > 0 || now - last_look < 60)
        return;
    last_look = now;
    if (!due(qdir, now))
        return;
    pid_t pid = fork();
    if (pid < 0) {
        log_warn(NULL, "TLSRPT: cannot fork the report run: %s", strerror(errno));
        return;
    }
    if (pid > 0) {
        run_pid = pid;
        return;
    }
    /* The child: the queue manager's event loop and signal handlers are
     * not its own. */
    signal(SIGTERM, SIG_DFL);
    signal(SIGCHLD, SIG_DFL);
    close_sockets();
    log_set_role("tlsrpt");
    _exit(tlsrpt_run(qdir, 0, NULL) == 0 ? 0 : 1);
}

int tlsrpt_reaped(pid_t pid)
{
    if (run_pid <= 0 || pid != run_pid)
        return 0;
    run_pid = 0;
    return 1;
}
