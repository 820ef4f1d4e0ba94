/* policy: pooled, retrying, non-blocking policy service client. */
#include "policy/policy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "conf/conf.h"
#include "util/buf.h"
#include "util/log.h"
#include "util/netaddr.h"
#include "util/strutil.h"

#define MAX_REPLY 4096
#define MAX_CONNS_PER_SERVER 16

struct server;

struct pconn {
    struct server *srv;
    struct bufferevent *bev;
    struct policy_call *call;   /* in flight, or NULL when idle */
    char action[MAX_REPLY];     /* of the reply being read, which may come in pieces */
    time_t created, last_used;
    struct pconn *next;
};

struct policy_call {
    struct server *srv;
    struct buf request;
    policy_done_fn done;
    void *arg;
    int tries;
    struct event *retry;
    struct event *deadline;     /* bounds the whole call, queueing included */
    struct event *answer_ev;    /* delivers the answer from the loop */
    char action[MAX_REPLY];
    struct pconn *conn;
    struct policy_call *next;   /* waiting list */
};

struct server {
    char target[300];
    struct pconn *conns;
    int nconns;
    struct policy_call *waiting, *waiting_tail;
    struct server *next;
};

static struct event_base *base;
static struct server *servers;

void policy_set_base(struct event_base *b)
{
    base = b;
}

static void finish(struct policy_call *call, const char *action);
static void dispatch(struct server *srv);

int policy_target_ok(const char *t)
{
    if (strncmp(t, "unix:/", 6) == 0)
        return strlen(t + 5) < sizeof(((struct sockaddr_un *)0)->sun_path);
    char host[256];
    int port;
    return strncmp(t, "inet:", 5) == 0 && net_split_hostport(t + 5, host, sizeof host, &port) == 0;
}

static struct server *server_for(const char *target)
{
    for (struct server *s = servers; s; s = s->next)
        if (strcmp(s->target, target) == 0)
            return s;
    struct server *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    str_copy(s->target, target, sizeof s->target);
    s->next = servers;
    servers = s;
    return s;
}

static int open_socket(const char *target, struct sockaddr_storage *ss, socklen_t *len)
{
    memset(ss, 0, sizeof *ss);
    if (strncmp(target, "unix:", 5) == 0) {
        struct sockaddr_un *sun = (struct sockaddr_un *)ss;
        sun->sun_family = AF_UNIX;
        str_copy(sun->sun_path, target + 5, sizeof sun->sun_path);
        *len = sizeof *sun;
        return AF_UNIX;
    }
    char host[256];
    int port;
    if (net_split_hostport(target + 5, host, sizeof host, &port) < 0)
        return -1;
    /* Host names would need a blocking lookup: addresses only. */
    if (net_sockaddr(strcmp(host, "localhost") == 0 ? "127.0.0.1" : host, port, ss, len) < 0)
        return -1;
    return ss->ss_family;
}

static void conn_free(struct pconn *c)
{
    struct server *s = c->srv;
    for (struct pconn **p = &s->conns; *p; p = &(*p)->next)
        if (*p == c) {
            *p = c->next;
            break;
        }
    s->nconns--;
    if (c->bev)
        bufferevent_free(c->bev);
    free(c);
}

static void enqueue(struct server *srv, struct policy_call *call)
{
    call->next = NULL;
    if (srv->waiting_tail)
        srv->waiting_tail->next = call;
    else
        srv->waiting = call;
    srv->waiting_tail = call;
}

static void retry_later(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct policy_call *call = arg;
    struct server *srv = call->srv;
    event_free(call->retry);
    call->retry = NULL;
    enqueue(srv, call);
    dispatch(srv);
}

/* The connection failed while carrying call: try again or give up. */
static void failed(struct pconn *c, const char *why)
{
    struct policy_call *call = c->call;
    struct server *srv = c->srv;
    c->call = NULL;
    conn_free(c);
    if (call == NULL)
        return;
    call->conn = NULL;
    log_warn(NULL, "policy service %s: %s (try %d of %ld)", srv->target, why, call->tries,
             conf_long(P_SMTPD_POLICY_SERVICE_TRY_LIMIT));
    if (call->tries >= conf_long(P_SMTPD_POLICY_SERVICE_TRY_LIMIT)) {
        finish(call, conf_str(P_SMTPD_POLICY_SERVICE_DEFAULT_ACTION));
        dispatch(srv);
        return;
    }
    struct timeval tv = {conf_long(P_SMTPD_POLICY_SERVICE_RETRY_DELAY), 0};
    call->retry = evtimer_new(base, retry_later, call);
    evtimer_add(call->retry, &tv);
}

/* Read "name=value" lines up to a blank line; the answer is action=. */
static void on_read(struct bufferevent *bev, void *arg)
{
    struct pconn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    if (c->call == NULL) {
        failed(c, "data without a request");
        return;
    }
    char *action = c->action;
    for (;;) {
        size_t n;
        char *line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF);
        if (line == NULL) {
            if (evbuffer_get_length(in) > MAX_REPLY)
                failed(c, "reply too long");
            return;
        }
        if (n == 0) {
            free(line);
            break;
        }
        if (strncmp(line, "action=", 7) == 0)
            str_copy(action, line + 7, MAX_REPLY);
        free(line);
    }
    if (action[0] == '\0') {
        failed(c, "reply without action=");
        return;
    }
    struct policy_call *call = c->call;
    c->call = NULL;
    c->last_used = time(NULL);
    call->conn = NULL;
    /* Idle connections wait without a timeout; _max_idle retires them. */
    bufferevent_set_timeouts(c->bev, NULL, NULL);
    struct server *srv = c->srv;
    finish(call, action);
    c->action[0] = '\0';
    dispatch(srv);
}

static void unlink_waiting(struct server *srv, struct policy_call *call)
{
    struct policy_call *prev = NULL;
    for (struct policy_call *w = srv->waiting; w; prev = w, w = w->next)
        if (w == call) {
            if (prev)
                prev->next = w->next;
            else
                srv->waiting = w->next;
            if (srv->waiting_tail == w)
                srv->waiting_tail = prev;
            return;
        }
}

/* The call took too long in all (tries, retries and queueing): answer it. */
static void call_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct policy_call *call = arg;
    struct server *srv = call->srv;
    log_warn(NULL, "policy service %s: no answer in time", srv->target);
    if (call->conn) {
        struct pconn *c = call->conn;
        c->call = NULL;
        conn_free(c); /* its late answer must not be read as the next one's */
    } else if (call->retry) {
        event_free(call->retry);
        call->retry = NULL;
    } else
        unlink_waiting(srv, call);
    call->conn = NULL;
    finish(call, conf_str(P_SMTPD_POLICY_SERVICE_DEFAULT_ACTION));
    dispatch(srv);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    struct pconn *c = arg;
    if (what & BEV_EVENT_CONNECTED)
        return;
    failed(c, what & BEV_EVENT_TIMEOUT ? "timeout" : what & BEV_EVENT_EOF ? "connection closed"
                                                                           : strerror(errno));
}

static struct pconn *conn_new(struct server *srv)
{
    struct sockaddr_storage ss;
    socklen_t len;
    if (open_socket(srv->target, &ss, &len) < 0)
        return NULL;
    struct pconn *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->srv = srv;
    c->created = c->last_used = time(NULL);
    c->bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (c->bev == NULL) {
        free(c);
        return NULL;
    }
    bufferevent_setcb(c->bev, on_read, NULL, on_event, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    c->next = srv->conns;
    srv->conns = c;
    srv->nconns++;
    if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&ss, (int)len) < 0) {
        conn_free(c);
        return NULL;
    }
    return c;
}

/* An idle connection that is still young enough, or a new one. */
static struct pconn *idle_conn(struct server *srv)
{
    time_t now = time(NULL);
    for (struct pconn *c = srv->conns, *next; c; c = next) {
        next = c->next;
        if (c->call)
            continue;
        if (now - c->created > conf_long(P_SMTPD_POLICY_SERVICE_MAX_TTL) ||
            now - c->last_used > conf_long(P_SMTPD_POLICY_SERVICE_MAX_IDLE)) {
            conn_free(c);
            continue;
        }
        return c;
    }
    if (srv->nconns >= MAX_CONNS_PER_SERVER)
        return NULL;
    return conn_new(srv);
}

static void give_up_now(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct policy_call *call = arg;
    event_free(call->retry);
    call->retry = NULL;
    finish(call, conf_str(P_SMTPD_POLICY_SERVICE_DEFAULT_ACTION));
}

static struct policy_call *dequeue(struct server *srv)
{
    struct policy_call *call = srv->waiting;
    srv->waiting = call->next;
    if (srv->waiting == NULL)
        srv->waiting_tail = NULL;
    call->next = NULL;
    return call;
}

static void dispatch(struct server *srv)
{
    while (srv->waiting) {
        struct pconn *c = idle_conn(srv);
        if (c == NULL) {
            if (srv->nconns > 0)
                return; /* wait for a busy connection */
            struct policy_call *call = dequeue(srv);
            call->tries++;
            log_warn(NULL, "policy service %s: cannot connect (try %d of %ld)", srv->target,
                     call->tries, conf_long(P_SMTPD_POLICY_SERVICE_TRY_LIMIT));
            /* Answer from the loop, never from inside policy_query(). */
            int last = call->tries >= conf_long(P_SMTPD_POLICY_SERVICE_TRY_LIMIT);
            struct timeval tv = {last ? 0 : conf_long(P_SMTPD_POLICY_SERVICE_RETRY_DELAY), 0};
            call->retry = evtimer_new(base, last ? give_up_now : retry_later, call);
            evtimer_add(call->retry, &tv);
            continue;
        }
        struct policy_call *call = dequeue(srv);
        call->tries++;
        call->conn = c;
        c->call = call;
        c->action[0] = '\0';
        struct timeval tv = {conf_long(P_SMTPD_POLICY_SERVICE_TIMEOUT), 0};
        bufferevent_set_timeouts(c->bev, &tv, &tv);
        bufferevent_write(c->bev, call->request.data, call->request.len);
        bufferevent_write(c->bev, "\n", 1);
    }
}

static void deliver_answer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct policy_call *call = arg;
    if (call->done)
        call->done(call->arg, call->action);
    event_free(call->answer_ev);
    buf_free(&call->request);
    free(call);
}

/* The answer reaches the caller from the event loop itself, never from
 * inside this module's callbacks: the caller may then query again, and
 * this module may free connections, without either stepping on the other. */
static void finish(struct policy_call *call, const char *action)
{
    if (call->deadline) {
        event_free(call->deadline);
        call->deadline = NULL;
    }
    str_copy(call->action, action, sizeof call->action);
    struct timeval now = {0, 0};
    call->answer_ev = evtimer_new(base, deliver_answer, call);
    evtimer_add(call->answer_ev, &now);
}

struct policy_call *policy_query(const char *target, const char *request, size_t len,
                                 policy_done_fn done, void *arg)
{
    struct server *srv = base ? server_for(target) : NULL;
    struct policy_call *call = srv ? calloc(1, sizeof *call) : NULL;
    if (call == NULL) {
        done(arg, conf_str(P_SMTPD_POLICY_SERVICE_DEFAULT_ACTION));
        return NULL;
    }
    call->srv = srv;
    call->done = done;
    call->arg = arg;
    buf_init(&call->request, 65536);
    buf_append(&call->request, request, len);
    long tries = conf_long(P_SMTPD_POLICY_SERVICE_TRY_LIMIT);
    struct timeval limit = {(conf_long(P_SMTPD_POLICY_SERVICE_TIMEOUT) +
                             conf_long(P_SMTPD_POLICY_SERVICE_RETRY_DELAY)) * (tries > 0 ? tries : 1) + 1,
                            0};
    call->deadline = evtimer_new(base, call_deadline, call);
    evtimer_add(call->deadline, &limit);
    enqueue(srv, call);
    dispatch(srv);
    return call;
}

void policy_cancel(struct policy_call *call)
{
    /* The answer may still come; it then goes nowhere. */
    if (call)
        call->done = NULL;
}

void policy_shutdown(void)
{
    for (struct server *s = servers, *next; s; s = next) {
        next = s->next;
        while (s->conns)
            conn_free(s->conns);
        free(s);
    }
    servers = NULL;
}
