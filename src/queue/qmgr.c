/* qmgr: scheduling on a libevent loop; deliveries in child processes. */
#include "queue/qmgr.h"

#include <errno.h>
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "conf/conf.h"
#include "deliver/lmtp.h"
#include "deliver/maildir.h"
#include "policy/restrict.h"
#include "queue/notify.h"
#include "queue/queue.h"
#include "util/log.h"
#include "util/strutil.h"

struct qmsg {
    char id[QUEUE_ID_LEN];
    time_t next;
    int attempts;
    pid_t pid;       /* delivery process, 0 when idle */
    int seen;        /* found in the latest scan */
    struct qmsg *next_msg;
};

static struct {
    struct event_base *base;
    const char *qdir;
    struct qmsg *msgs;
    int running;
    int stopping;
    struct event *tick, *notify, *sig_term, *sig_chld;
    int notify_fd;
    time_t last_scan;
} Q;

long qmgr_backoff(int attempts, long minimal, long maximal)
{
    long d = minimal;
    for (int i = 1; i < attempts && d < maximal; i++)
        d *= 2;
    return d < maximal ? d : maximal;
}

/* ---- the delivery process --------------------------------------------- */

static const char *domain_of(const char *addr)
{
    const char *at = strrchr(addr, '@');
    return at ? at + 1 : "";
}

static void log_result(const struct envelope *env, const char *rcpt, const struct dresult *r)
{
    double delay = difftime(time(NULL), env->arrival);
    log_info(env->id, "to=<%s>, relay=%s, delay=%.0f, status=%s (%s)", rcpt, r->relay, delay,
             dstatus_name(r->status), r->text);
}

static int record(const char *qdir, const struct envelope *env, int idx,
                  const struct dresult *r)
{
    log_result(env, env->rcpts[idx], r);
    if (r->status == D_SENT)
        return queue_state_mark(qdir, env->id, idx, 'D');
    if (r->status == D_BOUNCED)
        return queue_state_mark(qdir, env->id, idx, 'B');
    return 0;
}

static void deliver_local(const char *qdir, const struct dmessage *m, const int *todo,
                          int ntodo, int *deferred)
{
    const char *transport = conf_str(P_LOCAL_TRANSPORT);
    const struct envelope *env = m->env;
    if (strncmp(transport, "maildir:", 8) == 0) {
        for (int k = 0; k < ntodo; k++) {
            struct dresult r = {0};
            maildir_deliver(transport + 8, m, env->rcpts[todo[k]], &r);
            *deferred += r.status == D_DEFERRED || record(qdir, env, todo[k], &r) < 0;
        }
        return;
    }
    char *rcpts[ntodo > 0 ? ntodo : 1];
    struct dresult res[ntodo > 0 ? ntodo : 1];
    memset(res, 0, sizeof res);
    for (int k = 0; k < ntodo; k++)
        rcpts[k] = env->rcpts[todo[k]];
    lmtp_deliver(transport + 5, m, rcpts, ntodo, res, (int)conf_long(P_LMTP_TIMEOUT));
    for (int k = 0; k < ntodo; k++) {
        if (res[k].status == D_DEFERRED)
            log_result(env, rcpts[k], &res[k]);
        *deferred += res[k].status == D_DEFERRED || record(qdir, env, todo[k], &res[k]) < 0;
    }
}

int qmgr_deliver_message(const char *qdir, const char *id)
{
    struct envelope env;
    if (queue_load(qdir, "active", id, &env) < 0)
        return 0; /* deleted or held meanwhile */
    struct queue_state st;
    queue_state_load(qdir, &env, &st);
    char path[4096];
    snprintf(path, sizeof path, "%s/active/%s", qdir, id);
    struct dmessage m = {&env, path};
    int local[env.nrcpt > 0 ? env.nrcpt : 1], nlocal = 0, deferred = 0;
    for (int i = 0; i < env.nrcpt; i++) {
        if (st.done[i])
            continue;
        if (restrict_is_local_domain(domain_of(env.rcpts[i]))) {
            local[nlocal++] = i;
            continue;
        }
        struct dresult r = {0};
        str_copy(r.relay, "none", sizeof r.relay);
        dresult_set(&r, D_DEFERRED, "4.4.1 delivery to other domains is not enabled here");
        log_result(&env, env.rcpts[i], &r);
        deferred++;
    }
    if (nlocal)
        deliver_local(qdir, &m, local, nlocal, &deferred);
    if (deferred == 0) {
        queue_remove(qdir, id);
        log_info(id, "removed");
    }
    queue_state_free(&st);
    envelope_free(&env);
    return deferred ? 1 : 0;
}

/* ---- scheduling -------------------------------------------------------- */

static struct qmsg *find(const char *id)
{
    for (struct qmsg *m = Q.msgs; m; m = m->next_msg)
        if (strcmp(m->id, id) == 0)
            return m;
    return NULL;
}

static struct qmsg *add(const char *id)
{
    struct qmsg *m = find(id);
    if (m) {
        m->seen = 1;
        return m;
    }
    m = calloc(1, sizeof *m);
    if (m == NULL)
        return NULL;
    str_copy(m->id, id, sizeof m->id);
    m->seen = 1;
    /* Resume the backoff a previous queue manager recorded. */
    struct envelope env;
    if (queue_load(Q.qdir, "active", id, &env) == 0) {
        struct queue_state st;
        queue_state_load(Q.qdir, &env, &st);
        m->attempts = st.attempts;
        m->next = st.next_attempt;
        queue_state_free(&st);
        envelope_free(&env);
    }
    m->next_msg = Q.msgs;
    Q.msgs = m;
    return m;
}

static void drop(struct qmsg *gone)
{
    for (struct qmsg **p = &Q.msgs; *p; p = &(*p)->next_msg)
        if (*p == gone) {
            *p = gone->next_msg;
            free(gone);
            return;
        }
}

static int scan_one(const char *id, void *arg)
{
    (void)arg;
    add(id);
    return 0;
}

static void scan(void)
{
    for (struct qmsg *m = Q.msgs; m; m = m->next_msg)
        m->seen = m->pid != 0;
    queue_scan(Q.qdir, "active", scan_one, NULL);
    for (struct qmsg *m = Q.msgs, *next; m; m = next) {
        next = m->next_msg;
        if (!m->seen)
            drop(m); /* deleted or held by the queue command */
    }
    Q.last_scan = time(NULL);
}

static void start_delivery(struct qmsg *m)
{
    pid_t pid = fork();
    if (pid < 0) {
        log_warn(m->id, "cannot fork a delivery process: %s", strerror(errno));
        return;
    }
    if (pid == 0) {
        log_set_role("deliver");
        signal(SIGTERM, SIG_DFL);
        _exit(qmgr_deliver_message(Q.qdir, m->id) == 0 ? 0 : 75);
    }
    m->pid = pid;
    Q.running++;
}

static void run_due(void)
{
    time_t now = time(NULL);
    long limit = conf_long(P_DEFAULT_DESTINATION_CONCURRENCY_LIMIT);
    for (struct qmsg *m = Q.msgs; m && !Q.stopping; m = m->next_msg) {
        if (Q.running >= limit)
            break;
        if (m->pid == 0 && m->next <= now)
            start_delivery(m);
    }
}

static void finished(pid_t pid, int status)
{
    for (struct qmsg *m = Q.msgs; m; m = m->next_msg) {
        if (m->pid != pid)
            continue;
        m->pid = 0;
        Q.running--;
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
            drop(m);
            return;
        }
        m->attempts++;
        long delay = qmgr_backoff(m->attempts, conf_long(P_MINIMAL_BACKOFF_TIME),
                                  conf_long(P_MAXIMAL_BACKOFF_TIME));
        m->next = time(NULL) + delay;
        queue_state_attempt(Q.qdir, m->id, m->next);
        log_info(m->id, "deferred: next attempt in %lds (attempt %d)", delay, m->attempts);
        return;
    }
}

static void on_chld(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    (void)arg;
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
        finished(pid, status);
    if (Q.stopping && Q.running == 0)
        event_base_loopexit(Q.base, NULL);
    else
        run_due();
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    if (time(NULL) - Q.last_scan >= conf_long(P_QUEUE_RUN_DELAY))
        scan();
    run_due();
}

static void on_notify(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    (void)arg;
    char msg[64];
    ssize_t n;
    while ((n = recv(fd, msg, sizeof msg - 1, 0)) > 0) {
        msg[n] = '\0';
        if (strcmp(msg, "FLUSH") == 0) {
            scan();
            for (struct qmsg *m = Q.msgs; m; m = m->next_msg)
                m->next = 0;
        } else if (strcmp(msg, "SCAN") == 0)
            scan();
        else if (strlen(msg) == QUEUE_ID_LEN - 1 && strchr(msg, '/') == NULL)
            add(msg);
    }
    run_due();
}

static void on_term(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    (void)arg;
    Q.stopping = 1;
    if (Q.running == 0)
        event_base_loopexit(Q.base, NULL);
    /* else: running deliveries finish; on_chld ends the loop */
}

int qmgr_run(void)
{
    log_set_role("qmgr");
    Q.qdir = conf_str(P_QUEUE_DIRECTORY);
    Q.base = event_base_new();
    Q.notify_fd = queue_notify_listen(Q.qdir);
    if (Q.base == NULL || Q.notify_fd < 0) {
        log_err(NULL, "cannot create %s/qmgr.sock: %s", Q.qdir, strerror(errno));
        return 2;
    }
    struct timeval one = {1, 0};
    Q.tick = event_new(Q.base, -1, EV_PERSIST, on_tick, NULL);
    Q.notify = event_new(Q.base, Q.notify_fd, EV_READ | EV_PERSIST, on_notify, NULL);
    Q.sig_term = evsignal_new(Q.base, SIGTERM, on_term, NULL);
    Q.sig_chld = evsignal_new(Q.base, SIGCHLD, on_chld, NULL);
    event_add(Q.tick, &one);
    event_add(Q.notify, NULL);
    evsignal_add(Q.sig_term, NULL);
    evsignal_add(Q.sig_chld, NULL);
    scan();
    run_due();
    event_base_dispatch(Q.base);
    close(Q.notify_fd);
    return 0;
}
