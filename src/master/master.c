/* master: configuration, privileged setup and the process supervisor. */
#include "master/master.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "policy/restrict.h"
#include "queue/qmgr.h"
#include "queue/queue.h"
#include "queue/route.h"
#include "smtpd/anvil.h"
#include "smtpd/listen.h"
#include "smtpd/server.h"
#include "tls/tls.h"
#include "tls/tls_client.h"
#include "util/fsutil.h"
#include "util/log.h"
#include "util/privs.h"
#include "util/strutil.h"

enum role { ROLE_SMTPD, ROLE_QMGR };

struct child {
    pid_t pid;
    enum role role;
    int generation;
};

#define MAX_CHILDREN 512

static struct {
    const char *config;
    struct child kids[MAX_CHILDREN];
    int nkids;
    int generation;
    struct listener *ls;
    int nls;
    struct tls_server *tls;
    int uid, gid;
    volatile sig_atomic_t got_term, got_hup, got_chld;
} M;

static void warn_ccert_settings(void)
{
    if (conf_bool(P_SMTPD_TLS_REQ_CCERT) &&
        strcmp(conf_str(P_SMTPD_TLS_SECURITY_LEVEL), "encrypt") != 0)
        conf_warning("%s: smtpd_tls_req_ccert = yes has no effect unless "
                     "smtpd_tls_security_level = encrypt", conf_origin(P_SMTPD_TLS_REQ_CCERT));
}

/* Everything but binding: parameters, restrictions, tables, keys. */
static int load_all(const char *path, struct conf_errors *errs, struct tls_server **tls)
{
    conf_defaults();
    /* Keep going after errors in values: an operator wants every mistake
     * of the file at once, not one per run. */
    if (conf_load(path, errs) && access(path, R_OK) < 0)
        return errs->count;
    restrict_init(errs);
    listen_check(errs);
    route_init(errs);
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
    return restrict_probe_tables(errs);
}

/* ---- children ---------------------------------------------------------- */

static void child_main(enum role role)
{
    char err[256];
    signal(SIGHUP, SIG_IGN);
    signal(SIGTERM, SIG_DFL);
    signal(SIGCHLD, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (privs_drop(M.uid, M.gid, err, sizeof err) < 0) {
        log_err(NULL, "%s", err);
        _exit(2);
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

static void spawn(enum role role)
{
    if (M.nkids >= MAX_CHILDREN)
        return;
    pid_t pid = fork();
    if (pid < 0) {
        log_err(NULL, "fork: %s", strerror(errno));
        return;
    }
    if (pid == 0)
        child_main(role);
    M.kids[M.nkids++] = (struct child){pid, role, M.generation};
}

static long worker_count(void)
{
    long n = conf_long(P_SMTPD_WORKER_PROCESSES);
    if (n <= 0)
        n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? n : 1;
}

static void spawn_generation(void)
{
    spawn(ROLE_QMGR);
    for (long i = 0; i < worker_count(); i++)
        spawn(ROLE_SMTPD);
}

static void signal_children(int sig, int generation_below)
{
    for (int i = 0; i < M.nkids; i++)
        if (M.kids[i].generation < generation_below)
            kill(M.kids[i].pid, sig);
}

static struct child *forget(pid_t pid)
{
    static struct child gone;
    for (int i = 0; i < M.nkids; i++)
        if (M.kids[i].pid == pid) {
            gone = M.kids[i];
            M.kids[i] = M.kids[--M.nkids];
            return &gone;
        }
    return NULL;
}

static void reap(int respawn)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        struct child *c = forget(pid);
        if (c == NULL || !respawn || c->generation != M.generation)
            continue;
        log_warn(NULL, "%s process %d ended unexpectedly (status %d); starting another",
                 c->role == ROLE_QMGR ? "qmgr" : "smtpd", (int)pid, status);
        sleep(1); /* a process that dies at once must not make a fork storm */
        spawn(c->role);
    }
}

/* ---- reload ------------------------------------------------------------ */

static void wait_for_old_qmgr(void)
{
    for (int i = 0; i < M.nkids; i++) {
        if (M.kids[i].role != ROLE_QMGR || M.kids[i].generation >= M.generation)
            continue;
        pid_t pid = M.kids[i].pid;
        kill(pid, SIGTERM);
        /* Two queue managers must never deliver the same message. */
        waitpid(pid, NULL, 0);
        forget(pid);
        i = -1;
    }
}

static void reload(void)
{
    struct conf_errors errs = {0};
    struct tls_server *tls = NULL;
    /* Check in a child first: a broken file must not touch the running
     * configuration. */
    pid_t pid = fork();
    if (pid == 0) {
        int n = load_all(M.config, &errs, NULL);
        for (int i = 0; i < errs.count; i++)
            log_err(NULL, "reload: %s", errs.msgs[i]);
        _exit(n ? 1 : 0);
    }
    int status = 1;
    if (pid > 0)
        waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        log_err(NULL, "reload refused: the configuration has errors; still running the old one");
        return;
    }
    load_all(M.config, &errs, &tls);
    conf_errors_free(&errs);
    tls_server_free(M.tls);
    M.tls = tls;
    M.generation++;
    wait_for_old_qmgr();
    spawn_generation();
    signal_children(SIGUSR1, M.generation);
    log_info(NULL, "reload: configuration, certificates and tables re-read");
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
    const char *t = conf_str(P_LOCAL_TRANSPORT);
    if (strncmp(t, "maildir:", 8) == 0 && own_dir(t + 8, M.uid, M.gid, 0) < 0) {
        snprintf(err, len, "cannot create or own the maildir base %s: %s", t + 8,
                 strerror(errno));
        return -1;
    }
    return 0;
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
    signal(SIGPIPE, SIG_IGN);
}

static void shutdown_all(void)
{
    log_info(NULL, "stopping: %d processes", M.nkids);
    signal_children(SIGTERM, M.generation + 1);
    while (M.nkids > 0) {
        pid_t pid = wait(NULL);
        if (pid < 0 && errno != EINTR)
            break;
        if (pid > 0)
            forget(pid);
    }
    log_info(NULL, "stopped");
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
    if (log_open_file(conf_str(P_MAILLOG_FILE)) < 0) {
        fprintf(stderr, "keypost: cannot open maillog_file %s: %s\n",
                conf_str(P_MAILLOG_FILE), strerror(errno));
        return 2;
    }
    struct conf_errors *warnings = conf_warnings();
    for (int i = 0; i < warnings->count; i++)
        log_warn(NULL, "%s", warnings->msgs[i]);
    if (privs_lookup(conf_str(P_MAIL_OWNER), &M.uid, &M.gid, err, sizeof err) < 0 ||
        prepare_dirs(err, sizeof err) < 0) {
        log_err(NULL, "%s", err);
        return 2;
    }
    M.nls = listen_open(&M.ls, &errs);
    for (int i = 0; i < errs.count; i++)
        log_err(NULL, "%s", errs.msgs[i]);
    conf_errors_free(&errs);
    if (M.nls < 0)
        return 2;
    if (anvil_init() < 0) {
        log_err(NULL, "cannot create the shared connection table");
        return 2;
    }
    return 0;
}

int master_serve(const char *path)
{
    M.config = path;
    log_set_role("master");
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
    sigprocmask(SIG_BLOCK, &block, &old);
    spawn_generation();
    log_info(NULL, "started: %d listeners, %ld smtpd workers, queue %s", M.nls, worker_count(),
             conf_str(P_QUEUE_DIRECTORY));
    while (!M.got_term) {
        sigsuspend(&old);
        if (M.got_chld) {
            M.got_chld = 0;
            reap(1);
        }
        if (M.got_hup) {
            M.got_hup = 0;
            reload();
        }
    }
    sigprocmask(SIG_SETMASK, &old, NULL);
    shutdown_all();
    return 0;
}
