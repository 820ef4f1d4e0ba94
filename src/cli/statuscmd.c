/* status: `keypost status [-c FILE]`, what a running keypost is doing, from
 * the shared counter area (QDIR/metrics), a census of the queue and the
 * configured certificates. One "name: key=value ..." line per subject, for
 * people and for scripts:
 *
 *   status: running pid=PID since=TIME      (or "not running (why)", "unknown (why)")
 *   sessions: open=N                          (these three only when running)
 *   last_minute: sent=N deferred=N bounced=N rejected=N
 *   last_hour: sent=N deferred=N bounced=N rejected=N
 *   queue: incoming=N active=N deferred=N hold=N
 *   oldest: age=SECONDSs arrival=TIME          (or "oldest: none")
 *   certificate: PARAM=PATH not_after=TIME days_left=N subject="..."
 *
 * Exit 0; 2 when keypost is not running (the queue and certificates are
 * still shown) or something could not be read; 1 for a usage or
 * configuration error. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "conf/conf.h"
#include "metrics/metrics.h"
#include "queue/census.h"
#include "tls/certinfo.h"

static void iso_time(time_t t, char *out, size_t len)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* The area of a running keypost, or NULL (with the reason printed). */
static const struct metrics_area *live_area(const char *qdir)
{
    const struct metrics_area *a = metrics_open(qdir);
    if (a == NULL) {
        int e = errno;
        if (e == EACCES || e == EPERM)
            printf("status: unknown (%s/%s: permission denied; run as root or mail_owner)\n",
                   qdir, METRICS_FILE);
        else
            printf("status: not running (%s/%s: %s)\n", qdir, METRICS_FILE,
                   e == EBADMSG ? "not a keypost metrics file" : strerror(e));
        return NULL;
    }
    /* The file outlives the master: make sure its process still runs. */
    pid_t pid = (pid_t)a->master_pid;
    if (pid <= 0 || (kill(pid, 0) < 0 && errno == ESRCH)) {
        printf("status: not running (the last run, pid %d, has ended)\n", (int)pid);
        metrics_close(a);
        return NULL;
    }
    char since[32];
    iso_time((time_t)a->started, since, sizeof since);
    printf("status: running pid=%d since=%s\n", (int)pid, since);
    return a;
}

static void print_live(const struct metrics_area *a, time_t now)
{
    printf("sessions: open=%lld\n", (long long)metrics_sessions_open(a));
    static const struct {
        const char *name;
        int seconds;
    } windows[] = {{"last_minute", 60}, {"last_hour", 3600}};
    for (int i = 0; i < 2; i++)
        printf("%s: sent=%llu deferred=%llu bounced=%llu rejected=%llu\n", windows[i].name,
               (unsigned long long)metrics_recent(a, MR_SENT, windows[i].seconds, now),
               (unsigned long long)metrics_recent(a, MR_DEFERRED, windows[i].seconds, now),
               (unsigned long long)metrics_recent(a, MR_BOUNCED, windows[i].seconds, now),
               (unsigned long long)metrics_recent(a, MR_REJECTED, windows[i].seconds, now));
}

static int print_queue(const char *qdir, time_t now)
{
    struct queue_census c;
    if (queue_census(qdir, &c) < 0) {
        fprintf(stderr, "keypost status: %s: %s\n", qdir,
                errno == EACCES ? "permission denied" : strerror(errno));
        return 2;
    }
    printf("queue: incoming=%ld active=%ld deferred=%ld hold=%ld\n", c.incoming, c.active,
           c.deferred, c.hold);
    if (c.oldest == 0) {
        printf("oldest: none\n");
        return 0;
    }
    char when[32];
    iso_time(c.oldest, when, sizeof when);
    printf("oldest: age=%llds arrival=%s\n",
           (long long)(now > c.oldest ? now - c.oldest : 0), when);
    return 0;
}

static int print_cert(const char *param, const char *path, time_t now)
{
    struct certinfo ci;
    char err[512];
    if (certinfo_read(path, &ci, err, sizeof err) < 0) {
        printf("certificate: %s=%s error=\"%s\"\n", param, path, err);
        return 2;
    }
    char when[32];
    iso_time(ci.not_after, when, sizeof when);
    long days = certinfo_days_left(ci.not_after, now);
    printf("certificate: %s=%s not_after=%s days_left=%ld%s subject=\"%s\"\n", param, path, when,
           days, ci.not_after <= now ? " expired=yes" : "", ci.subject);
    return 0;
}

struct cert_walk {
    time_t now;
    int status;
};

static void cert_line(const char *param, const char *path, void *arg)
{
    struct cert_walk *w = arg;
    if (print_cert(param, path, w->now))
        w->status = 2;
}

static int print_certs(time_t now)
{
    struct cert_walk w = {now, 0};
    metrics_each_certificate(cert_line, &w);
    return w.status;
}

int cli_status(int argc, char **argv)
{
    const char *config = "/etc/keypost/keypost.cf";
    int opt;
    optind = 1;
    while ((opt = getopt(argc, argv, "c:")) != -1) {
        if (opt != 'c') {
            fprintf(stderr, "usage: keypost status [-c FILE]\n");
            return 1;
        }
        config = optarg;
    }
    if (optind != argc) {
        fprintf(stderr, "usage: keypost status [-c FILE]\n");
        return 1;
    }
    struct conf_errors errs = {0};
    conf_defaults();
    if (conf_load(config, &errs)) {
        for (int i = 0; i < errs.count; i++)
            fprintf(stderr, "%s\n", errs.msgs[i]);
        conf_errors_free(&errs);
        return 1;
    }
    const char *qdir = conf_str(P_QUEUE_DIRECTORY);
    time_t now = time(NULL);
    const struct metrics_area *a = live_area(qdir);
    if (a)
        print_live(a, now);
    int r = print_queue(qdir, now);
    if (print_certs(now))
        r = 2;
    metrics_close(a);
    return a == NULL ? 2 : r;
}
