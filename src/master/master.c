/* master: configuration, privileged setup and the process supervisor. */
#include "master/master.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "addr/addrclass.h"
#include "addr/rewrite.h"
#include "deliver/mailboxd.h"
#include "deliver/virtual.h"
#include "master/logwriter.h"
#include "milter/milter.h"
#include "master/ownercheck.h"
#include "metrics/httpd.h"
#include "metrics/metrics.h"
#include "policy/restrict.h"
#include "queue/qmgr.h"
#include "queue/queue.h"
#include "queue/route.h"
#include "smtpd/address.h"
#include "smtpd/anvil.h"
#include "smtpd/listen.h"
#include "smtpd/localsubmit.h"
#include "smtpd/server.h"
#include "tls/tls.h"
#include "sasl/saslcli.h"
#include "sasl/saslsrv.h"
#include "tls/tls_client.h"
#include "util/fsutil.h"
#include "util/log.h"
#include "util/privs.h"
#include "util/proctitle.h"
#include "util/sdnotify.h"
#include "util/strutil.h"

/* ROLE_LOG, the log writer, outlives reloads and stops last. */
enum role { ROLE_SMTPD, ROLE_QMGR, ROLE_MAILBOX, ROLE_LOG, ROLE_METRICS };

struct child {
    pid_t pid;          /* 0 while it waits to be started again */
    enum role role;
    int generation;
    long long started;  /* when the running process was forked (monotonic ms) */
    long long due;      /* when a waiting one is started again (monotonic ms) */
    int delay;          /* seconds to wait before its next restart */
};

/* A child that keeps failing is restarted after 1 s, then 2, 4 ... 60 s:
 * no fork storm, and no master asleep while SIGTERM waits. One that ran
 * for RESTART_RESET seconds had a working setup, so it starts over at 1 s. */
#define RESTART_MIN 1
#define RESTART_MAX 60
#define RESTART_RESET 60

#define MAX_CHILDREN 512

static struct {
    const char *config;
    struct child kids[MAX_CHILDREN];
    int nkids;
    int generation;
    struct listener *ls;
    int nls;
    struct tls_server *tls;
    int mailbox_fd;     /* the mailbox helper's socket (root only), else -1 */
    /* as at start: a reload does not move the log nor rename its lines */
    char maillog_file[1024], syslog_name[64], syslog_facility[16];
    int metrics_fd;     /* metrics_listen's socket, else -1 */
    int uid, gid;
    volatile sig_atomic_t got_term, got_hup, got_chld, got_usr1;
} M = {.mailbox_fd = -1, .metrics_fd = -1};

static void warn_ccert_settings(void)
{
    if (conf_bool(P_SMTPD_TLS_REQ_CCERT) &&
        strcmp(conf_str(P_SMTPD_TLS_SECURITY_LEVEL), "encrypt") != 0)
        conf_warning("%s: smtpd_tls_req_ccert = yes has no effect unless "
                     "smtpd_tls_security_level = encrypt", conf_origin(P_SMTPD_TLS_REQ_CCERT));
}

/* A host name as a configuration should write it: what an address may
 * carry (address_domain_ok), without an address literal, a label that
 * starts or ends with '-', or a numeric last label (an IPv4 address). */
static int domain_name_ok(const char *v)
{
    if (v[0] == '[' || !address_domain_ok(v))
        return 0;
    int digits_only = 1;
    for (const char *label = v; label;) {
        const char *dot = strchr(label, '.');
        size_t n = dot ? (size_t)(dot - label) : strlen(label);
        if (label[0] == '-' || label[n - 1] == '-')
            return 0;
        digits_only = strspn(label, "0123456789") == n;
        label = dot ? dot + 1 : NULL;
    }
    return !digits_only;
}

/* myorigin and mydomain complete addresses: a value that is not a domain
 * name would turn every address it completes into one nobody can use. */
static void check_domain_names(struct conf_errors *errs)
{
    static const enum conf_param names[] = {P_MYORIGIN, P_MYDOMAIN};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        enum conf_param p = names[i];
        const char *v = conf_str(p);
        if (domain_name_ok(v))
            continue;
        /* A default comes from myhostname: name the line that set it. */
        int derived = strcmp(conf_origin(p), "default") == 0;
        conf_error(errs, "%s: bad value for %s: \"%s\" (expected a domain name%s)",
                   conf_origin(derived ? P_MYHOSTNAME : p), conf_name(p), v,
                   derived ? "; the default, from myhostname" : "");
    }
}

static void check_syslog_name(struct conf_errors *errs)
{
    if (!log_name_ok(conf_str(P_SYSLOG_NAME)))
        conf_error(errs, "%s: bad value for syslog_name: \"%s\" (expected 1 to 32 letters, "
                   "digits, '.', '_' or '-')", conf_origin(P_SYSLOG_NAME), conf_str(P_SYSLOG_NAME));
}

/* Everything but binding: parameters, restrictions, tables, keys. */
static int load_all(const char *path, struct conf_errors *errs, struct tls_server **tls)
{
    conf_defaults();
    /* Keep going after errors in values: an operator wants every mistake
     * of the file at once, not one per run. */
    if (conf_load(path, errs) && access(path, R_OK) < 0)
        return errs->count;
    addrclass_init(errs);
    rewrite_init(errs);
    check_domain_names(errs);
    check_syslog_name(errs);
    restrict_init(errs);
    saslsrv_init(errs);
    saslcli_init(errs);
    localsubmit_init(errs);
    listen_check(errs);
    metrics_listen_check(errs);
    route_init(errs);
    virtual_init(errs);
    milter_init(errs);
    warn_ccert_settings();
    struct tls_server *ts = tls_server_new(errs);
    SSL_CTX *client = tls_client_ctx(errs);
    if (tls) {
        *tls = ts;
        tls_client_set_shared(client);
    } else {
        tls_server_free(ts);
        SSL_CTX_free(client);
    }
    return errs->count;
}

int master_check_config(const char *path, struct conf_errors *errs)
{
    if (load_all(path, errs, NULL))
        return errs->count;
    restrict_probe_tables(errs);
    addrclass_probe_tables(errs);
    rewrite_probe_tables(errs);
    ownercheck_config(errs);
    return errs->count;
}

/* Each smtpd worker holds a socket per session and, for many of them at
 * once, a queue file or a policy connection too; the rest (listeners, log,
 * notify socket, DNS, the queue manager's agents) fits in a fixed reserve.
 * Workers inherit the limit, so the master raises it before forking them.
 * With raise == 0 only the hard limit is compared (reload's test). */
static int fd_limit(int raise, char *err, size_t len)
{
    long sessions = conf_long(P_SMTPD_SESSION_LIMIT);
    struct rlimit rl;
    if (sessions <= 0 || getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return 0;
    rlim_t need = (rlim_t)(2 * sessions + 64);
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need) {
        snprintf(err, len, "the descriptor limit (hard %llu) is below the %llu that "
                 "smtpd_session_limit = %ld needs; raise the limit (ulimit -n, LimitNOFILE=) "
                 "or lower smtpd_session_limit", (unsigned long long)rl.rlim_max,
                 (unsigned long long)need, sessions);
        return -1;
    }
    if (!raise || (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur >= need))
        return 0;
    rl.rlim_cur = need;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
        snprintf(err, len, "cannot raise the descriptor limit to %llu: %s",
                 (unsigned long long)need, strerror(errno));
        return -1;
    }
    return 0;
}

/* ---- children ---------------------------------------------------------- */

static const char *role_name(enum role role);

static void child_main(enum role role)
{
    char err[256];
    proctitle_set("%s", role_name(role));
    if (role == ROLE_LOG) {
        /* It needs nothing of the master's but the file, and no rights. */
        listen_close(M.ls, M.nls);
        if (M.mailbox_fd >= 0)
            close(M.mailbox_fd);
        if (M.metrics_fd >= 0)
            close(M.metrics_fd);
        if (privs_drop(M.uid, M.gid, err, sizeof err) < 0) {
            log_err(NULL, "%s", err);
            _exit(2);
        }
        logwriter_run();
    }
    logwriter_attach();
    signal(SIGHUP, SIG_IGN);
    signal(SIGTERM, SIG_DFL);
    signal(SIGCHLD, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (role != ROLE_METRICS && M.metrics_fd >= 0)
        close(M.metrics_fd); /* only the metrics process answers there */
    if (role == ROLE_MAILBOX) {
        /* Root, for one job only: no listener, no other process's work. */
        listen_close(M.ls, M.nls);
        mailboxd_run(M.mailbox_fd, M.uid);
    }
    if (M.mailbox_fd >= 0)
        close(M.mailbox_fd); /* only the helper accepts on it */
    if (privs_drop(M.uid, M.gid, err, sizeof err) < 0) {
        log_err(NULL, "%s", err);
        _exit(2);
    }
    if (role == ROLE_METRICS) {
        listen_close(M.ls, M.nls);
        metrics_httpd_run(M.metrics_fd, conf_str(P_QUEUE_DIRECTORY));
    }
    if (role == ROLE_QMGR) {
        /* The queue manager and its delivery agents never accept. */
        listen_close(M.ls, M.nls);
        M.ls = NULL;
        M.nls = 0;
    }
    int r = role == ROLE_QMGR ? qmgr_run() : server_run(M.ls, M.nls, M.tls);
    _exit(r);
}

static const char *role_name(enum role role)
{
    switch (role) {
    case ROLE_QMGR: return "qmgr";
    case ROLE_MAILBOX: return "mailbox helper";
    case ROLE_LOG: return "postlogd";
    case ROLE_METRICS: return "metrics";
    case ROLE_SMTPD: return "smtpd";
    }
    return "smtpd";
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Park c until its delay has passed, and double the delay for next time. */
static void backoff(struct child *c)
{
    c->pid = 0;
    c->due = now_ms() + c->delay * 1000LL;
    c->delay = c->delay * 2 < RESTART_MAX ? c->delay * 2 : RESTART_MAX;
}

static void start(struct child *c)
{
    pid_t pid = fork();
    if (pid == 0)
        child_main(c->role);
    if (pid < 0) {
        log_err(NULL, "fork of a %s process: %s; trying again in %ds", role_name(c->role),
                strerror(errno), c->delay);
        backoff(c);
        return;
    }
    c->pid = pid;
    c->started = now_ms();
}

static void spawn(enum role role)
{
    if (M.nkids >= MAX_CHILDREN)
        return;
    struct child *c = &M.kids[M.nkids++];
    *c = (struct child){.role = role, .generation = M.generation, .delay = RESTART_MIN};
    start(c);
}

static long worker_count(void)
{
    long n = conf_long(P_SMTPD_WORKER_PROCESSES);
    if (n <= 0)
        n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? n : 1;
}

/* Virtual mailboxes belong to their own users: only root can make their
 * files, so a helper keeps root for that (mailboxd.h), when some route
 * leads there and keypost runs as root. Its socket outlives reloads. */
static void start_mailbox_helper(void)
{
    if (M.uid < 0 || !route_may_use_virtual())
        return;
    char err[256];
    if (M.mailbox_fd < 0 && (M.mailbox_fd = mailboxd_listen(err, sizeof err)) < 0) {
        log_err(NULL, "%s; virtual mailboxes are deferred", err);
        return;
    }
    spawn(ROLE_MAILBOX);
}

static void spawn_generation(void)
{
    start_mailbox_helper();
    int have_qmgr = 0;
    for (int i = 0; i < M.nkids; i++)
        have_qmgr |= M.kids[i].role == ROLE_QMGR && M.kids[i].generation == M.generation;
    if (!have_qmgr)
        spawn(ROLE_QMGR);
    if (M.metrics_fd >= 0)
        spawn(ROLE_METRICS);
    for (long i = 0; i < worker_count(); i++)
        spawn(ROLE_SMTPD);
}

static void signal_children(int sig, int generation_below)
{
    for (int i = 0; i < M.nkids; i++)
        if (M.kids[i].pid > 0 && M.kids[i].generation < generation_below)
            kill(M.kids[i].pid, sig);
}

static int find_child(pid_t pid)
{
    for (int i = 0; i < M.nkids; i++)
        if (M.kids[i].pid == pid)
            return i;
    return -1;
}

static void remove_child(int i)
{
    M.kids[i] = M.kids[--M.nkids];
}

/* Forget children waiting for a restart whose generation is below gen:
 * there is nothing to stop, and they must not come back. */
static void drop_waiting(int gen)
{
    for (int i = M.nkids - 1; i >= 0; i--)
        if (M.kids[i].pid == 0 && M.kids[i].generation < gen)
            remove_child(i);
}

static void describe_exit(int status, char *out, size_t len)
{
    if (WIFEXITED(status))
        snprintf(out, len, "exited with status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(out, len, "was killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    else
        snprintf(out, len, "ended with wait status %d", status);
}

static void reap(void)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        metrics_process_gone(pid);
        int i = find_child(pid);
        if (i < 0)
            continue;
        struct child *c = &M.kids[i];
        if (c->generation != M.generation) {
            remove_child(i);
            continue;
        }
        if (now_ms() - c->started >= RESTART_RESET * 1000LL)
            c->delay = RESTART_MIN;
        char how[96];
        describe_exit(status, how, sizeof how);
        log_warn(NULL, "%s process %d %s; restarting in %ds", role_name(c->role), (int)pid, how,
                 c->delay);
        backoff(c);
    }
}

static void restart_due(void)
{
    long long now = now_ms();
    for (int i = 0; i < M.nkids; i++)
        if (M.kids[i].pid == 0 && M.kids[i].due <= now)
            start(&M.kids[i]);
}

/* Milliseconds until the next restart is due; -1 when none waits. */
static long long next_restart_in(void)
{
    long long next = -1, now = now_ms();
    for (int i = 0; i < M.nkids; i++)
        if (M.kids[i].pid == 0 && (next < 0 || M.kids[i].due < next))
            next = M.kids[i].due;
    if (next < 0)
        return -1;
    return next > now ? next - now : 0;
}

/* ---- log rotation ---------------------------------------------------- */

/* After logrotate renamed maillog_file: the master opens the new file (as
 * root) for its own lines and hands it to the log writer, which carries
 * every other process's. */
static void reopen_log(void)
{
    if (!log_to_file())
        return;
    if (log_reopen() < 0) {
        log_warn(NULL, "cannot reopen maillog_file %s: %m; still writing to the old file",
                 M.maillog_file);
        return;
    }
    if (logwriter_send_file() < 0)
        log_warn(NULL, "cannot hand the reopened maillog_file to the log writer: %m");
    /* Once this line is in the new file, every later line is too: the
     * writer has answered that it writes there. */
    log_info(NULL, "maillog_file reopened");
}

/* The log goes on as it started; the log writer keeps its file. */
static void warn_log_settings_kept(void)
{
    if (strcmp(conf_str(P_MAILLOG_FILE), M.maillog_file) != 0)
        log_warn(NULL, "reload: maillog_file changed; the log stays %s until keypost is "
                 "restarted", *M.maillog_file ? M.maillog_file : "syslog");
    if (strcmp(conf_str(P_SYSLOG_NAME), M.syslog_name) != 0 ||
        strcmp(conf_str(P_SYSLOG_FACILITY), M.syslog_facility) != 0)
        log_warn(NULL, "reload: syslog_name and syslog_facility stay %s and %s until keypost "
                 "is restarted", M.syslog_name, M.syslog_facility);
}

/* The log writer is not replaced by a reload: it joins the new generation
 * so that it is restarted if it dies, and is not told to retire. */
static void keep_log_writer(void)
{
    for (int i = 0; i < M.nkids; i++)
        if (M.kids[i].role == ROLE_LOG)
            M.kids[i].generation = M.generation;
}

/* ---- reload ------------------------------------------------------------ */

static void wait_for_old_qmgr(void)
{
    for (int i = M.nkids - 1; i >= 0; i--) {
        if (M.kids[i].role != ROLE_QMGR || M.kids[i].generation >= M.generation ||
            M.kids[i].pid <= 0)
            continue;
        pid_t pid = M.kids[i].pid;
        /* Two queue managers must never deliver the same message: wait for
         * the old one, but never for one that a signal cannot reach. */
        if (kill(pid, SIGTERM) < 0 && errno != ESRCH) {
            log_err(NULL, "cannot stop the old queue manager (pid %ld): %s; it goes on "
                    "serving the queue", (long)pid, strerror(errno));
            M.kids[i].generation = M.generation; /* spawn_generation() makes no second */
            continue;
        }
        waitpid(pid, NULL, 0);
        remove_child(i);
    }
}

static void log_errors(struct conf_errors *errs, const char *prefix)
{
    for (int i = 0; i < errs->count; i++)
        log_err(NULL, "%s%s", prefix, errs->msgs[i]);
    conf_errors_free(errs);
}

/* The new configuration is loaded here, in a child, so that a broken file
 * never touches the running one; it must also fit the descriptor limit and
 * leave mail_owner able to use its paths, or the new children would fail. */
__attribute__((noreturn)) static void reload_check_child(void)
{
    struct conf_errors errs = {0};
    char err[512];
    int n = load_all(M.config, &errs, NULL);
    if (n == 0)
        n = ownercheck_serve(M.uid, M.gid, &errs);
    if (n == 0 && fd_limit(0, err, sizeof err) < 0) {
        conf_error(&errs, "%s", err);
        n = 1;
    }
    log_errors(&errs, "reload: ");
    _exit(n ? 1 : 0);
}

static int reload(void)
{
    struct conf_errors errs = {0};
    struct tls_server *tls = NULL;
    char err[512];
    pid_t pid = fork();
    if (pid == 0)
        reload_check_child();
    int status = 1;
    if (pid > 0)
        waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        log_err(NULL, "reload refused: the configuration has errors; still running the old one");
        return -1;
    }
    load_all(M.config, &errs, &tls);
    conf_errors_free(&errs);
    if (fd_limit(1, err, sizeof err) < 0)
        log_err(NULL, "reload: %s", err);
    tls_server_free(M.tls);
    M.tls = tls;
    metrics_note_certificates();
    metrics_listen_reload_check();
    M.generation++;
    keep_log_writer();
    drop_waiting(M.generation);
    wait_for_old_qmgr();
    spawn_generation();
    signal_children(SIGUSR1, M.generation);
    warn_log_settings_kept();
    reopen_log(); /* SIGHUP also serves logrotate, as it does for many daemons */
    log_info(NULL, "reload: configuration, certificates and tables re-read");
    return 0;
}

/* ---- serve ------------------------------------------------------------- */

static void on_signal(int sig)
{
    if (sig == SIGTERM || sig == SIGINT)
        M.got_term = 1;
    else if (sig == SIGHUP)
        M.got_hup = 1;
    else if (sig == SIGCHLD)
        M.got_chld = 1;
    else if (sig == SIGUSR1)
        M.got_usr1 = 1;
}

/* Leftovers in tmp/ were never acknowledged: remove them, as mail_owner
 * (root never works inside a directory that mail_owner controls). */
static void clean_tmp_unprivileged(void)
{
    pid_t pid = fork();
    if (pid == 0) {
        char err[256];
        if (privs_drop(M.uid, M.gid, err, sizeof err) == 0)
            queue_clean_tmp(conf_str(P_QUEUE_DIRECTORY));
        _exit(0);
    }
    if (pid > 0)
        waitpid(pid, NULL, 0);
}

static int prepare_dirs(char *err, size_t len)
{
    if (queue_init_dirs(conf_str(P_QUEUE_DIRECTORY), M.uid, M.gid, err, len) < 0)
        return -1;
    clean_tmp_unprivileged();
    char bases[65][300];
    int n = route_maildir_bases(bases + 1, 64);
    const char *t = conf_str(P_LOCAL_TRANSPORT);
    if (strncmp(t, "maildir:", 8) == 0)
        str_copy(bases[0], t + 8, sizeof bases[0]);
    else
        bases[0][0] = '\0';
    struct stat st;
    for (int i = 0; i <= n; i++)
        /* transport_maps targets that exist are the operator's: their access
         * was checked; only a missing one is made and given to mail_owner. */
        if (bases[i][0] && (i == 0 || lstat(bases[i], &st) < 0) &&
            own_dir(bases[i], M.uid, M.gid, 0) < 0) {
            snprintf(err, len, "cannot create or own the maildir base %s: %s", bases[i],
                     strerror(errno));
            return -1;
        }
    return 0;
}

/* The signals stay blocked and are taken here, with a timeout when a
 * restart is due: SIGTERM is served at once even during a long backoff. */
static int wait_signal(const sigset_t *set)
{
    long long ms = next_restart_in();
    if (ms < 0)
        return sigwaitinfo(set, NULL);
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    return sigtimedwait(set, NULL, &ts);
}

static void install_handlers(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGCHLD, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

static int running_besides_log(void)
{
    int n = 0;
    for (int i = 0; i < M.nkids; i++)
        n += M.kids[i].role != ROLE_LOG;
    return n;
}

static void wait_children(int (*count)(void))
{
    while (count() > 0) {
        pid_t pid = wait(NULL);
        if (pid < 0 && errno != EINTR)
            break;
        int i = pid > 0 ? find_child(pid) : -1;
        if (i >= 0)
            remove_child(i);
    }
}

static int running(void)
{
    return M.nkids;
}

/* The log writer stops last, so that it writes the others' last lines. */
static void shutdown_all(void)
{
    drop_waiting(M.generation + 1);
    listen_unlink_local();
    log_info(NULL, "stopping: %d processes", M.nkids);
    for (int i = 0; i < M.nkids; i++)
        if (M.kids[i].pid > 0 && M.kids[i].role != ROLE_LOG)
            kill(M.kids[i].pid, SIGTERM);
    wait_children(running_besides_log);
    signal_children(SIGTERM, M.generation + 1);
    wait_children(running);
    log_info(NULL, "stopped");
}

/* What can fail before anything is created or bound: the descriptor limit
 * and mail_owner's access to its paths. */
static int preflight(void)
{
    char err[512];
    if (fd_limit(1, err, sizeof err) < 0 ||
        privs_lookup(conf_str(P_MAIL_OWNER), &M.uid, &M.gid, err, sizeof err) < 0) {
        log_err(NULL, "%s", err);
        return -1;
    }
    struct conf_errors errs = {0};
    int n = ownercheck_serve(M.uid, M.gid, &errs);
    log_errors(&errs, "");
    return n ? -1 : 0;
}

/* The shared counters (metrics.h), named listeners, and the endpoint. */
static int setup_metrics(void)
{
    char err[512];
    if (metrics_create(conf_str(P_QUEUE_DIRECTORY), M.uid, M.gid, err, sizeof err) < 0) {
        log_err(NULL, "%s", err);
        return 2;
    }
    for (int i = 0; i < M.nls; i++)
        metrics_set_listener(i, M.ls[i].fd, M.ls[i].text,
                             M.ls[i].kind == LISTEN_SMTPS        ? MK_SMTPS
                             : M.ls[i].kind == LISTEN_SUBMISSION ? MK_SUBMISSION
                                                                 : MK_SMTPD);
    metrics_note_certificates();
    M.metrics_fd = metrics_listen_open(err, sizeof err);
    if (M.metrics_fd == -2) {
        log_err(NULL, "%s", err);
        return 2;
    }
    return 0;
}

static int setup(const char *path)
{
    struct conf_errors errs = {0};
    char err[512];
    int n = load_all(path, &errs, &M.tls);
    for (int i = 0; i < errs.count; i++)
        fprintf(stderr, "%s\n", errs.msgs[i]);
    conf_errors_free(&errs);
    if (n)
        return 1;
    log_set_hostname(conf_str(P_MYHOSTNAME));
    log_set_syslog(conf_str(P_SYSLOG_NAME), conf_str(P_SYSLOG_FACILITY)); /* both checked */
    if (log_open(conf_str(P_MAILLOG_FILE)) < 0) {
        fprintf(stderr, "keypost: cannot open maillog_file %s: %s\n",
                conf_str(P_MAILLOG_FILE), strerror(errno));
        return 2;
    }
    str_copy(M.maillog_file, conf_str(P_MAILLOG_FILE), sizeof M.maillog_file);
    str_copy(M.syslog_name, conf_str(P_SYSLOG_NAME), sizeof M.syslog_name);
    str_copy(M.syslog_facility, conf_str(P_SYSLOG_FACILITY), sizeof M.syslog_facility);
    if (log_to_file() && logwriter_prepare() < 0) {
        fprintf(stderr, "keypost: cannot make the log pipe: %s\n", strerror(errno));
        return 2;
    }
    struct conf_errors *warnings = conf_warnings();
    for (int i = 0; i < warnings->count; i++)
        log_warn(NULL, "%s", warnings->msgs[i]);
    if (preflight() < 0)
        return 2;
    if (prepare_dirs(err, sizeof err) < 0) {
        log_err(NULL, "%s", err);
        return 2;
    }
    M.nls = listen_open(&M.ls, &errs);
    log_errors(&errs, "");
    if (M.nls < 0)
        return 2;

    if (anvil_init() < 0) {
        log_err(NULL, "cannot create the shared connection table");
        return 2;
    }
    return setup_metrics();
}

int master_serve(const char *path)
{
    M.config = path;
    log_set_role("master");
    char suffix[1100];
    snprintf(suffix, sizeof suffix, "-c %s", path);
    proctitle_suffix(suffix);
    proctitle_set("master");
    int r = setup(path);
    if (r)
        return r;
    install_handlers();
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGHUP);
    sigaddset(&block, SIGCHLD);
    sigaddset(&block, SIGUSR1);
    sigprocmask(SIG_BLOCK, &block, &old);
    if (logwriter_enabled())
        spawn(ROLE_LOG);
    spawn_generation();
    /* The SMTP listeners; the sendmail command's sockets get their own line. */
    int network = 0;
    for (int i = 0; i < M.nls; i++)
        network += M.ls[i].kind != LISTEN_LOCAL && M.ls[i].kind != LISTEN_SHOWQ;
    log_info(NULL, "started: %d listeners, %ld smtpd workers, queue %s", network, worker_count(),
             conf_str(P_QUEUE_DIRECTORY));
    if (network < M.nls)
        log_info(NULL, "local submission (sendmail, mailq) on %s/%s and %s/%s",
                 conf_str(P_LOCAL_SOCKET_DIRECTORY), LOCAL_SUBMIT_SOCKET,
                 conf_str(P_LOCAL_SOCKET_DIRECTORY), LOCAL_SHOWQ_SOCKET);
    /* Bound and children started: connections are taken from here on. */
    sdnotify_ready("accepting mail");
    while (!M.got_term) {
        int sig = wait_signal(&block);
        if (sig > 0)
            on_signal(sig);
        if (M.got_chld) {
            M.got_chld = 0;
            reap();
        }
        if (M.got_hup) {
            M.got_hup = 0;
            sdnotify_reloading();
            sdnotify_ready(reload() == 0 ? "accepting mail; configuration reloaded"
                                         : "accepting mail; reload refused, old configuration kept");
        }
        if (M.got_usr1) {
            M.got_usr1 = 0;
            reopen_log();
        }
        if (!M.got_term)
            restart_due();
    }
    sigprocmask(SIG_SETMASK, &old, NULL);
    sdnotify_stopping();
    shutdown_all();
    return 0;
}
