/* qmgr: scheduling on a libevent loop; deliveries in child processes. */
#include "queue/qmgr.h"

#include <errno.h>
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "conf/conf.h"
#include "deliver/lmtp.h"
#include "deliver/maildir.h"
#include "deliver/virtual.h"
#include "deliver/smtp.h"
#include "metrics/metrics.h"
#include "queue/agent.h"
#include "queue/bounce.h"
#include "queue/census.h"
#include "queue/notify.h"
#include "queue/queue.h"
#include "queue/route.h"
#include "tls/tls_client.h"
#include "tls/tlsrpt_send.h"
#include "util/buf.h"
#include "util/log.h"
#include "util/proctitle.h"
#include "util/strutil.h"

#define QMGR_STOP_GRACE 15 /* seconds for running deliveries after SIGTERM */

#define BATCH_MAX 20 /* messages per delivery request */

long qmgr_backoff(int attempts, long minimal, long maximal)
{
    long d = minimal;
    for (int i = 1; i < attempts && d < maximal; i++)
        d = d > maximal / 2 ? maximal : d * 2; /* no overflow near LONG_MAX */
    return d < maximal ? d : maximal;
}

/* ==== in delivery processes ============================================ */

struct loaded {
    char id[QUEUE_ID_LEN];
    struct envelope env;
    struct queue_state st;
    char path[4096];
    int *idx;       /* recipients of this job */
    int n;
    int reported;   /* results received so far */
    int finish;     /* no other delivery this round: may remove the message */
    struct buf marks; /* state lines of this job, written together */
};

/* Postfix's delivery line; orig_to= when an alias changed the recipient. */
static void log_result(const struct envelope *env, int rcpt, const struct dresult *r)
{
    const char *orig = envelope_orig_rcpt(env, rcpt);
    int aliased = strcmp(orig, env->rcpts[rcpt]) != 0;
    metrics_delivery(r->status == D_SENT ? MD_SENT : r->status == D_BOUNCED ? MD_BOUNCED
                                                                             : MD_DEFERRED,
                     queue_id_age(env->id));
    log_info(env->id, "to=<%s>, %s%s%srelay=%s, delay=%.0f, status=%s (%s)", env->rcpts[rcpt],
             aliased ? "orig_to=<" : "", aliased ? orig : "", aliased ? ">, " : "", r->relay,
             difftime(time(NULL), env->arrival), dstatus_name(r->status), r->text);
}

/* A message's results are all in: if every recipient is now delivered and
 * no other delivery works on it, remove it (its state file never needs to
 * exist); otherwise write this job's state lines with one durable append,
 * before the finish step reads them. */
static void settle(const char *qdir, struct loaded *m)
{
    int all_delivered = m->finish;
    for (int i = 0; i < m->env.nrcpt && all_delivered; i++)
        all_delivered = m->st.done[i] == 'D' || m->st.done[i] == 'N';
    if (all_delivered) {
        queue_remove(qdir, m->id);
        log_info(m->id, "removed");
        return;
    }
    if (m->marks.len && queue_state_append(qdir, m->id, m->marks.data) < 0)
        log_warn(m->id, "cannot record delivery results: %m");
}

/* Log one recipient's result and note it for settle(). */
static void record(const char *qdir, struct loaded *m, int rcpt, const struct dresult *r)
{
    log_result(&m->env, rcpt, r);
    char what = r->status == D_SENT ? 'D' : r->status == D_BOUNCED ? 'B' : 'T';
    queue_state_line(&m->marks, rcpt, what, r->status == D_SENT ? NULL : r->text);
    if (what != 'T')
        m->st.done[rcpt] = (unsigned char)what;
    if (++m->reported == m->n)
        settle(qdir, m);
}

/* A state file that exists but cannot be read must not read as "nothing
 * delivered yet": that would deliver again and never expire. The message
 * waits, with a warning, until it can be read. */
static int load_state(const char *qdir, const struct envelope *env, struct queue_state *st)
{
    if (queue_state_load(qdir, env, st) == 0)
        return 0;
    log_warn(env->id, "cannot read the state file %s/state/%s: %m; the message waits", qdir,
             env->id);
    queue_state_free(st, env->nrcpt);
    return -1;
}

static int load_job_message(const char *qdir, const char *id, const char *key, struct loaded *m)
{
    memset(m, 0, sizeof *m);
    buf_init(&m->marks, 1 << 20);
    str_copy(m->id, id, sizeof m->id);
    if (queue_load(qdir, "active", id, &m->env) < 0) {
        buf_free(&m->marks);
        return -1; /* deleted or held meanwhile */
    }
    if (load_state(qdir, &m->env, &m->st) < 0) {
        buf_free(&m->marks);
        envelope_free(&m->env);
        return -1;
    }
    snprintf(m->path, sizeof m->path, "%s/active/%s", qdir, id);
    m->idx = calloc((size_t)m->env.nrcpt + 1, sizeof *m->idx);
    for (int i = 0; i < m->env.nrcpt; i++) {
        struct route r;
        if (m->st.done[i])
            continue;
        route_for(m->env.rcpts[i], &r);
        if (strcmp(r.key, key) == 0)
            m->idx[m->n++] = i;
    }
    return 0;
}

static void free_loaded(struct loaded *m)
{
    buf_free(&m->marks);
    free(m->idx);
    queue_state_free(&m->st, m->env.nrcpt);
    envelope_free(&m->env);
}

struct smtp_ctx {
    const char *qdir;
    struct loaded *msgs;
    int *map;    /* smtp item -> msgs index */
};

static void smtp_result(void *arg, int item, int k, const struct dresult *r)
{
    struct smtp_ctx *c = arg;
    struct loaded *m = &c->msgs[c->map[item]];
    record(c->qdir, m, m->idx[k], r);
}

/* SMTPUTF8 is needed only when an address of this delivery is not ASCII
 * (RFC 6531 3.2); a message that merely declared it goes anywhere. */
static int needs_smtputf8(const struct loaded *m)
{
    if (!m->env.smtputf8)
        return 0;
    int need = str_has_8bit(m->env.sender);
    for (int k = 0; k < m->n && !need; k++)
        need = str_has_8bit(m->env.rcpts[m->idx[k]]);
    return need;
}

static void deliver_smtp(const char *qdir, const struct route *route, struct loaded *msgs,
                         int n)
{
    SSL_CTX *tls = tls_client_shared();
    struct smtp_item *items = calloc((size_t)n + 1, sizeof *items);
    int *map = calloc((size_t)n + 1, sizeof *map), nitems = 0;
    for (int i = 0; i < n; i++) {
        if (msgs[i].n == 0)
            continue;
        items[nitems] = (struct smtp_item){{&msgs[i].env, msgs[i].path}, msgs[i].idx, msgs[i].n,
                                           needs_smtputf8(&msgs[i]), msgs[i].env.eightbit};
        map[nitems++] = i;
    }
    struct smtp_ctx ctx = {qdir, msgs, map};
    if (tls == NULL) {
        struct dresult r = {.status = D_DEFERRED};
        str_copy(r.relay, "none", sizeof r.relay);
        str_copy(r.text, "4.3.5 TLS client configuration error", sizeof r.text);
        for (int i = 0; i < nitems; i++)
            for (int k = 0; k < items[i].nrcpt; k++)
                smtp_result(&ctx, i, k, &r);
    } else if (nitems)
        smtp_deliver(route, route->nexthop, tls, items, nitems, smtp_result, &ctx);
    free(items);
    free(map);
}

static void deliver_local(const char *qdir, const struct route *route, struct loaded *m)
{
    struct dmessage dm = {&m->env, m->path};
    if (route->transport == TR_LMTP) {
        /* On the heap: an alias expansion can make thousands of recipients. */
        char **rcpts = calloc((size_t)m->n + 1, sizeof *rcpts);
        struct dresult *res = calloc((size_t)m->n + 1, sizeof *res);
        for (int k = 0; rcpts && res && k < m->n; k++)
            rcpts[k] = m->env.rcpts[m->idx[k]];
        if (rcpts && res)
            lmtp_deliver(route->nexthop, &dm, rcpts, m->n, res, (int)conf_long(P_LMTP_TIMEOUT));
        for (int k = 0; rcpts && res && k < m->n; k++)
            record(qdir, m, m->idx[k], &res[k]);
        free(rcpts);
        free(res);
        return; /* out of memory: nothing recorded, the message is tried again */
    }
    for (int k = 0; k < m->n; k++) {
        struct dresult r;
        memset(&r, 0, sizeof r);
        if (route->transport == TR_MAILDIR)
            maildir_deliver(route->nexthop, &dm, m->env.rcpts[m->idx[k]], &r);
        else if (route->transport == TR_VIRTUAL)
            virtual_deliver(&dm, m->env.rcpts[m->idx[k]], &r);
        else if (route->transport == TR_DISCARD) {
            str_copy(r.relay, "none", sizeof r.relay);
            dresult_set(&r, D_SENT, "discarded: %s", route->text);
        } else {
            str_copy(r.relay, "none", sizeof r.relay);
            dresult_set(&r, route->text[0] == '4' ? D_DEFERRED : D_BOUNCED, "%s", route->text);
        }
        record(qdir, m, m->idx[k], &r);
    }
}

/* Postfix's names for the delivery services, which its log tools expect
 * in "postfix/smtp[PID]: QID: to=<...>" lines. */
static const char *transport_service(enum transport t)
{
    switch (t) {
    case TR_SMTP: return "smtp";
    case TR_LMTP: return "lmtp";
    case TR_MAILDIR: return "local";
    case TR_DISCARD: return "discard";
    case TR_VIRTUAL: return "virtual";
    case TR_ERROR: return "error";
    }
    return "error";
}

/* The agent takes the transport's name in the log and in ps. */
static void name_agent(enum transport t)
{
    log_set_role(transport_service(t));
    proctitle_set("deliver %s", transport_service(t));
}

void qmgr_deliver_job(const char *qdir, const char *key, char **ids, const int *finish, int n)
{
    struct loaded *msgs = calloc((size_t)n + 1, sizeof *msgs);
    struct route route;
    int have_route = 0, loaded = 0;
    for (int i = 0; i < n; i++) {
        if (load_job_message(qdir, ids[i], key, &msgs[loaded]) < 0)
            continue;
        msgs[loaded].finish = finish[i];
        if (!have_route && msgs[loaded].n) {
            route_for(msgs[loaded].env.rcpts[msgs[loaded].idx[0]], &route);
            have_route = 1;
        }
        loaded++;
    }
    if (have_route)
        name_agent(route.transport);
    if (have_route && route.transport == TR_SMTP)
        deliver_smtp(qdir, &route, msgs, loaded);
    else if (have_route)
        for (int i = 0; i < loaded; i++)
            deliver_local(qdir, &route, &msgs[i]);
    for (int i = 0; i < loaded; i++)
        free_loaded(&msgs[i]);
    free(msgs);
}

/* Recipients still pending after too long become bounces. */
static int expire(const char *qdir, const struct envelope *env, struct queue_state *st)
{
    long life = conf_long(*env->sender ? P_MAXIMAL_QUEUE_LIFETIME : P_BOUNCE_QUEUE_LIFETIME);
    if (difftime(time(NULL), env->arrival) < (double)life)
        return 0;
    int n = 0;
    for (int i = 0; i < env->nrcpt; i++) {
        if (st->done[i])
            continue;
        char why[700];
        snprintf(why, sizeof why, "4.4.7 message expired after %lds in the queue; last error: %s",
                 life, st->reason[i] ? st->reason[i] : "none");
        struct dresult r = {.status = D_BOUNCED};
        str_copy(r.relay, "none", sizeof r.relay);
        str_copy(r.text, why, sizeof r.text);
        log_result(env, i, &r);
        queue_state_mark(qdir, env->id, i, 'B', why);
        free(st->reason[i]);
        st->reason[i] = strdup(why);
        st->done[i] = 'B';
        n++;
    }
    return n;
}

/* Send one DSN for new bounces, then mark them notified. */
static void notify_sender(const char *qdir, const struct envelope *env, struct queue_state *st)
{
    int bounced = 0;
    for (int i = 0; i < env->nrcpt; i++)
        bounced += st->done[i] == 'B';
    if (bounced == 0)
        return;
    if (*env->sender == '\0')
        log_info(env->id, "a bounce could not be delivered; no notice is sent for a bounce");
    else {
        char dsn[QUEUE_ID_LEN];
        if (bounce_send(qdir, env, st, dsn) < 0) {
            log_warn(env->id, "cannot queue the delivery status notification: %m");
            return; /* the next attempt tries again */
        }
        log_info(env->id, "sender non-delivery notification: %s", dsn);
        queue_notify(qdir, dsn);
    }
    for (int i = 0; i < env->nrcpt; i++)
        if (st->done[i] == 'B') {
            queue_state_mark(qdir, env->id, i, 'N', NULL);
            st->done[i] = 'N';
        }
}

int qmgr_finish_message(const char *qdir, const char *id)
{
    struct envelope env;
    if (queue_load(qdir, "active", id, &env) < 0)
        return 0;
    struct queue_state st;
    if (load_state(qdir, &env, &st) < 0) {
        envelope_free(&env);
        return 1; /* kept, to be tried again */
    }
    expire(qdir, &env, &st);
    notify_sender(qdir, &env, &st);
    int pending = 0;
    for (int i = 0; i < env.nrcpt; i++)
        pending += st.done[i] == 0 || st.done[i] == 'B';
    if (pending == 0) {
        queue_remove(qdir, id);
        log_info(id, "removed");
    } else {
        long delay = qmgr_backoff(st.attempts + 1, conf_long(P_MINIMAL_BACKOFF_TIME),
                                  conf_long(P_MAXIMAL_BACKOFF_TIME));
        queue_state_attempt(qdir, id, time(NULL) + delay);
        log_info(id, "deferred: %d recipients left, next attempt in %lds (attempt %d)", pending,
                 delay, st.attempts + 1);
    }
    queue_state_free(&st, env.nrcpt);
    envelope_free(&env);
    return pending ? 1 : 0;
}

/* ==== the scheduler ===================================================== */

struct qmsg {
    char id[QUEUE_ID_LEN];
    time_t next;
    int jobs;        /* delivery processes working on it */
    int finisher;    /* a finish process is running */
    int self_finish; /* its only delivery process finishes it too */
    int seen;
    char *keys;      /* route keys of its pending recipients, '\n'-separated;
                        NULL until read, and again after each round */
    struct qmsg *next_msg;
};

struct job {
    char key[340];
    int finish;      /* 1: a finish process for msgs[0] */
    struct qmsg **msgs;
    int n;
    struct job *next;
};

static struct {
    struct event_base *base;
    const char *qdir;
    struct qmsg *msgs;
    struct job *jobs;
    int running;
    int stopping;
    struct event *grace;     /* after SIGTERM: ends deliveries that linger */
    int in_run_due;
    struct event *tick, *notify, *watch, *sig_term, *sig_chld;
    int notify_fd, watch_fd;
    time_t last_scan;
} Q;

static struct qmsg *find(const char *id)
{
    for (struct qmsg *m = Q.msgs; m; m = m->next_msg)
        if (strcmp(m->id, id) == 0)
            return m;
    return NULL;
}

static void load_next_attempt(struct qmsg *m)
{
    struct envelope env;
    if (queue_load(Q.qdir, "active", m->id, &env) < 0)
        return;
    struct queue_state st;
    if (load_state(Q.qdir, &env, &st) < 0) {
        m->next = time(NULL) + conf_long(P_QUEUE_RUN_DELAY);
        envelope_free(&env);
        return;
    }
    m->next = st.next_attempt;
    queue_state_free(&st, env.nrcpt);
    envelope_free(&env);
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
    load_next_attempt(m); /* resume the backoff a previous run recorded */
    m->next_msg = Q.msgs;
    Q.msgs = m;
    return m;
}

static void drop(struct qmsg *gone)
{
    for (struct qmsg **p = &Q.msgs; *p; p = &(*p)->next_msg)
        if (*p == gone) {
            *p = gone->next_msg;
            free(gone->keys);
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
        m->seen = m->jobs || m->finisher;
    queue_scan(Q.qdir, "active", scan_one, NULL);
    for (struct qmsg *m = Q.msgs, *next; m; m = next) {
        next = m->next_msg;
        if (!m->seen)
            drop(m); /* deleted or held by the queue command */
    }
    Q.last_scan = time(NULL);
}

static int jobs_for(const char *key)
{
    int n = 0;
    for (struct job *j = Q.jobs; j; j = j->next)
        n += !j->finish && strcmp(j->key, key) == 0;
    return n;
}

/* Request lines for an agent: "F ID" finishes a message; "D KEY ID[+] ..."
 * delivers, where "+" asks the agent to finish that message too (it has no
 * other delivery in this round, which saves a request per message). */
static int agent_work(char *req)
{
    if (req[0] == 'F' && req[1] == ' ')
        return qmgr_finish_message(Q.qdir, req + 2);
    if (req[0] != 'D' || req[1] != ' ')
        return 0;
    char *key = req + 2, *ids_text = strchr(key, '\t');
    if (ids_text == NULL)
        return 0;
    *ids_text++ = '\0';
    char *ids[BATCH_MAX];
    int finish[BATCH_MAX] = {0}, n = 0;
    for (char *save = NULL, *id = strtok_r(ids_text, " ", &save); id && n < BATCH_MAX;
         id = strtok_r(NULL, " ", &save)) {
        size_t len = strlen(id);
        finish[n] = len && id[len - 1] == '+';
        if (finish[n])
            id[len - 1] = '\0';
        ids[n++] = id;
    }
    qmgr_deliver_job(Q.qdir, key, ids, finish, n);
    for (int i = 0; i < n; i++)
        if (finish[i])
            qmgr_finish_message(Q.qdir, ids[i]); /* nothing to do if settle() removed it */
    return 0;
}

static void job_done(void *job, int result);

static void start_job(const char *key, struct qmsg **msgs, int n, int finish)
{
    char req[4096];
    size_t o = (size_t)snprintf(req, sizeof req, finish ? "F %s" : "D %s\t", finish ? msgs[0]->id
                                                                              : key);
    for (int i = 0; !finish && i < n && o + QUEUE_ID_LEN + 2 < sizeof req; i++)
        o += (size_t)snprintf(req + o, sizeof req - o, "%s%s%s", i ? " " : "", msgs[i]->id,
                              msgs[i]->self_finish ? "+" : "");
    struct job *j = calloc(1, sizeof *j);
    if (j == NULL)
        return;
    j->msgs = calloc((size_t)n, sizeof *j->msgs);
    memcpy(j->msgs, msgs, sizeof *msgs * (size_t)n);
    j->n = n;
    j->finish = finish;
    str_copy(j->key, key, sizeof j->key);
    if (j->msgs == NULL || agent_submit(req, j) < 0) {
        /* No agent now: the messages stay due and are tried again. */
        free(j->msgs);
        free(j);
        return;
    }
    for (int i = 0; i < n; i++) {
        if (finish)
            msgs[i]->finisher = 1;
        else
            msgs[i]->jobs++;
    }
    j->next = Q.jobs;
    Q.jobs = j;
    Q.running++;
}

/* The distinct route keys of a message's pending recipients. */
static int pending_keys(struct qmsg *m, char keys[][340], int max)
{
    struct envelope env;
    if (queue_load(Q.qdir, "active", m->id, &env) < 0)
        return -1;
    struct queue_state st;
    if (load_state(Q.qdir, &env, &st) < 0) {
        envelope_free(&env);
        return -1;
    }
    int n = 0;
    for (int i = 0; i < env.nrcpt; i++) {
        if (st.done[i])
            continue;
        struct route r;
        route_for(env.rcpts[i], &r);
        int known = 0;
        for (int k = 0; k < n; k++)
            known |= strcmp(keys[k], r.key) == 0;
        if (!known && n < max)
            str_copy(keys[n++], r.key, 340);
    }
    queue_state_free(&st, env.nrcpt);
    envelope_free(&env);
    return n;
}

static void plan_and_launch(void);

/* The route keys of m, read from its files once per round: a message
 * that waits for capacity is not re-read at every job's end. */
static int message_keys(struct qmsg *m, char keys[][340], int max)
{
    if (m->keys == NULL) {
        int n = pending_keys(m, keys, max);
        if (n < 0)
            return -1;
        struct buf joined;
        buf_init(&joined, (size_t)max * 341);
        buf_puts(&joined, "");
        for (int k = 0; k < n; k++)
            buf_printf(&joined, "%s\n", keys[k]);
        m->keys = joined.data;
        return n;
    }
    int n = 0;
    for (const char *p = m->keys; *p && n < max; n++) {
        const char *nl = strchr(p, '\n');
        snprintf(keys[n], 340, "%.*s", (int)(nl - p), p);
        p = nl + 1;
    }
    return n;
}

struct plan {
    char key[340];
    struct qmsg *msgs[BATCH_MAX];
    int n;
};

static void launch(struct plan *p)
{
    if (p->n)
        start_job(p->key, p->msgs, p->n, 0);
    p->n = 0;
}

static void run_due(void)
{
    if (Q.in_run_due)
        return;
    Q.in_run_due = 1;
    plan_and_launch();
    Q.in_run_due = 0;
}

static void plan_and_launch(void)
{
    enum { MAX_PLANS = 64, MAX_KEYS = 16 };
    static struct plan plans[MAX_PLANS];
    int nplans = 0;
    time_t now = time(NULL);
    long dest_limit = conf_long(P_DEFAULT_DESTINATION_CONCURRENCY_LIMIT);
    long total_limit = conf_long(P_DEFAULT_PROCESS_LIMIT);
    for (struct qmsg *m = Q.msgs, *next; m && !Q.stopping; m = next) {
        next = m->next_msg;
        if (m->jobs || m->finisher || m->next > now)
            continue;
        if (Q.running + nplans >= total_limit)
            break;
        char keys[MAX_KEYS][340];
        int nk = message_keys(m, keys, MAX_KEYS);
        if (nk < 0) {
            drop(m);
            continue;
        }
        if (nk == 0) {
            start_job("", &m, 1, 1); /* nothing to deliver: finish it */
            continue;
        }
        int fits = 1;
        for (int k = 0; k < nk; k++)
            fits &= jobs_for(keys[k]) < dest_limit;
        if (!fits || nplans + nk > MAX_PLANS)
            continue;
        m->self_finish = nk == 1;
        for (int k = 0; k < nk; k++) {
            int p = 0;
            while (p < nplans && strcmp(plans[p].key, keys[k]) != 0)
                p++;
            if (p == nplans)
                str_copy(plans[nplans++].key, keys[k], sizeof plans[p].key);
            plans[p].msgs[plans[p].n++] = m;
            if (plans[p].n == BATCH_MAX)
                launch(&plans[p]);
        }
    }
    for (int p = 0; p < nplans; p++)
        launch(&plans[p]);
}

/* A message that stays must not be tried again at once, even when no
 * attempt was recorded (an agent that died, say). */
static void reschedule(struct qmsg *m)
{
    load_next_attempt(m);
    time_t now = time(NULL);
    if (m->next <= now)
        m->next = now + conf_long(P_MINIMAL_BACKOFF_TIME);
}

static void job_done(void *job, int result)
{
    struct job *j = job;
    for (struct job **p = &Q.jobs; *p; p = &(*p)->next)
        if (*p == j) {
            *p = j->next;
            break;
        }
    Q.running--;
    for (int i = 0; i < j->n; i++) {
        struct qmsg *m = j->msgs[i];
        free(m->keys); /* its recipients may have changed: read again */
        m->keys = NULL;
        if (j->finish) {
            m->finisher = 0;
            if (result == 0)
                drop(m);
            else
                reschedule(m);
        } else if (--m->jobs == 0 && m->self_finish) {
            m->self_finish = 0;
            char path[4096];
            snprintf(path, sizeof path, "%s/active/%s", Q.qdir, m->id);
            if (access(path, F_OK) < 0)
                drop(m); /* finished and removed by the agent */
            else
                reschedule(m);
        } else if (m->jobs == 0 && !Q.stopping)
            start_job("", &m, 1, 1);
    }
    free(j->msgs);
    free(j);
    if (Q.stopping && Q.running == 0)
        event_base_loopexit(Q.base, NULL);
    else if (!Q.in_run_due)
        run_due();
}

static void on_chld(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    (void)arg;
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
        if (!agent_reaped(pid))
            tlsrpt_reaped(pid); /* issue 11: TLSRPT */
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    if (time(NULL) - Q.last_scan >= conf_long(P_QUEUE_RUN_DELAY))
        scan();
    agent_expire(conf_long(P_DELIVERY_JOB_DEADLINE));
    tlsrpt_tick(Q.qdir); /* issue 11: TLSRPT, a daily report run in a child */
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
        else if (queue_valid_id(msg))
            add(msg);
    }
    run_due();
}

/* New files in active/ (renamed there by smtpd's commit or by a release):
 * the kernel tells us, so no message waits for a lost notice. */
static void on_watch(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    (void)arg;
    char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0) {
        for (char *p = buf; p < buf + n;) {
            struct inotify_event *e = (struct inotify_event *)p;
            if (e->mask & IN_Q_OVERFLOW)
                scan();
            else if (e->len && queue_valid_id(e->name))
                add(e->name);
            p += sizeof *e + e->len;
        }
    }
    run_due();
}

static void watch_active(void)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/active", Q.qdir);
    Q.watch_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (Q.watch_fd < 0 || inotify_add_watch(Q.watch_fd, path, IN_MOVED_TO | IN_CLOSE_WRITE) < 0) {
        log_warn(NULL, "cannot watch %s (%s): new mail waits for notices and queue runs",
                 path, strerror(errno));
        return;
    }
    Q.watch = event_new(Q.base, Q.watch_fd, EV_READ | EV_PERSIST, on_watch, NULL);
    event_add(Q.watch, NULL);
}

/* Deliveries still running this long after SIGTERM are ended: a peer that
 * stops answering must not hold a stop (or a restart) for the length of the
 * SMTP timeouts. Their messages stay queued and are tried at the next start. */
static void on_stop_grace(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    int n = agent_stop_all_busy();
    if (n)
        log_warn(NULL, "stopping: %d deliveries still running after %ds are ended; their "
                 "messages are tried again later", n, QMGR_STOP_GRACE);
}

static void on_term(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    (void)arg;
    Q.stopping = 1;
    if (Q.running == 0) {
        event_base_loopexit(Q.base, NULL);
        return;
    }
    /* Running deliveries may finish; job_done() ends the loop. */
    struct timeval tv = {QMGR_STOP_GRACE, 0};
    if (Q.grace == NULL)
        Q.grace = evtimer_new(Q.base, on_stop_grace, NULL);
    if (Q.grace)
        evtimer_add(Q.grace, &tv);
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
    agent_pool_init(Q.base, (int)conf_long(P_DEFAULT_PROCESS_LIMIT), agent_work, job_done);
    watch_active();
    scan();
    run_due();
    event_base_dispatch(Q.base);
    if (Q.grace)
        event_free(Q.grace);
    agent_pool_stop();
    close(Q.notify_fd);
    return 0;
}
