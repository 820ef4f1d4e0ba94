/* server: libevent transport for SMTP sessions. */
#include "smtpd/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <malloc.h>
#include <stdio.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dns/peername.h"
#include "milter/milter.h"
#include "policy/policy.h"
#include "policy/restrict.h"
#include "table/pgsql.h"
#include "queue/commit.h"
#include "metrics/metrics.h"
#include "sasl/saslsrv.h"
#include "smtpd/anvil.h"
#include "smtpd/deadline.h"
#include "smtpd/fdreserve.h"
#include "smtpd/localsubmit.h"
#include "queue/showq.h"
#include "util/log.h"
#include "util/strutil.h"

#define INPUT_HIGH_WATER (256 * 1024)
#define OUTPUT_LIMIT (64 * 1024) /* stop reading while this much is unsent */
#define SHUTDOWN_GRACE_SECONDS 20
#define ACCEPT_PAUSE_MS 500      /* after running out of descriptors */
#define EXHAUSTION_LOG_SECONDS 60
#define TRIM_EVERY_FREES 512     /* give freed session memory back to the system */
#define TRIM_IDLE_FREES 32       /* ... or once idle, when that is worth a trim */

struct conn {
    struct bufferevent *bev;
    evutil_socket_t fd;
    struct smtp_session *sess;
    struct tls_peer peer;
    int anvil_bucket;
    int closing;       /* flush, then free */
    int tls_pending;   /* flush the 220, then handshake */
    int handshaking;
    int in_pump;
    int pump_again;
    int timed_out;     /* the 421 is being flushed; the next timeout ends it */
    int read_blocked;  /* the client does not read its replies: neither do we */
    int input_paused;  /* the session cannot take input now: do not read more */
    struct deadline dl;
    struct event *timer;
    double armed;      /* when the timer fires; 0 not armed */
    /* Until the client's name is known there is no bufferevent: the
     * socket is only watched for EOF, and nothing is read. */
    struct peername_lookup *lookup;
    struct event *eof_watch;
    struct session_client client;
    int kind;
    struct conn *prev, *next;
};

static struct {
    struct event_base *base;
    struct tls_server *tls;
    struct evconnlistener **listeners;
    int nlisteners;
    struct conn *conns;
    int nconns;
    int stopping;      /* SIGTERM */
    int retiring;      /* reload */
    struct event *sig_term, *sig_usr1, *grace;
    struct event *accept_pause;     /* re-enables the listeners */
    time_t exhaustion_logged;
    unsigned long refused_unlogged; /* clients answered 421 since that log line */
    unsigned frees_since_trim;
} W;

static void conn_setup_bev(struct conn *c);
static void conn_after_io(struct conn *c);
static void resume_input(struct conn *c);

/* ---- session_io --------------------------------------------------------- */

static void io_write(void *ctx, const char *p, size_t n)
{
    struct conn *c = ctx;
    bufferevent_write(c->bev, p, n);
}

static void io_start_tls(void *ctx)
{
    struct conn *c = ctx;
    c->tls_pending = 1;
}

static void io_close(void *ctx)
{
    struct conn *c = ctx;
    c->closing = 1;
}

static void pump(struct conn *c);

static void io_resume(void *ctx)
{
    struct conn *c = ctx;
    resume_input(c);
    if (c->in_pump) {
        c->pump_again = 1;
        return;
    }
    pump(c);
    conn_after_io(c);
}

static const struct session_io conn_io = {io_write, io_start_tls, io_close, io_resume};

/* ---- connection lifetime ------------------------------------------------ */

static void maybe_exit(void)
{
    if ((W.stopping || W.retiring) && W.nconns == 0)
        event_base_loopexit(W.base, NULL);
}

static void conn_free(struct conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        W.conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    W.nconns--;
    metrics_session_end();
    if (c->handshaking)
        metrics_tls_handshake(0, 0); /* failed, timed out or abandoned */
    peername_cancel(c->lookup);
    if (c->eof_watch)
        event_free(c->eof_watch);
    session_release(c->sess);
    anvil_leave(c->anvil_bucket);
    if (c->bev) {
        SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
        if (ssl && !c->handshaking)
            SSL_shutdown(ssl); /* best effort close_notify; the socket closes next */
        bufferevent_free(c->bev);
    }
    if (c->fd >= 0)
        close(c->fd);
    if (c->timer)
        event_free(c->timer);
    free(c);
    /* glibc keeps freed memory in its heap; after a burst of sessions a
     * worker would keep its peak size for ever. */
    W.frees_since_trim++;
    if ((W.nconns == 0 && W.frees_since_trim >= TRIM_IDLE_FREES) ||
        W.frees_since_trim >= TRIM_EVERY_FREES) {
        malloc_trim(0);
        W.frees_since_trim = 0;
    }
    maybe_exit();
}

/* Returns -1 when c was freed. */
static int switch_to_tls(struct conn *c)
{
    SSL *ssl = tls_server_session(W.tls, &c->peer);
    c->tls_pending = 0;
    if (ssl == NULL) {
        conn_free(c);
        return -1;
    }
    if (c->bev)
        bufferevent_free(c->bev);
    c->bev = bufferevent_openssl_socket_new(W.base, c->fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                            BEV_OPT_CLOSE_ON_FREE);
    c->fd = -1; /* owned by the TLS bufferevent now */
    c->handshaking = 1;
    bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
    conn_setup_bev(c);
    return 0;
}

/* Called after every callback: carries out what the session asked for. */
static void conn_after_io(struct conn *c)
{
    size_t unsent = evbuffer_get_length(bufferevent_get_output(c->bev));
    if (c->closing && unsent == 0) {
        conn_free(c);
        return;
    }
    if (c->tls_pending && unsent == 0)
        switch_to_tls(c);
}

/* ---- a client that does not read ----------------------------------------- */

/* Its replies pile up: stop reading its input (and so stop being woken for
 * it) until the output has drained to half the limit. */
static void block_reading(struct conn *c)
{
    if (c->read_blocked)
        return;
    c->read_blocked = 1;
    bufferevent_disable(c->bev, EV_READ);
    bufferevent_setwatermark(c->bev, EV_WRITE, OUTPUT_LIMIT / 2, 0);
}

static int may_read(const struct conn *c)
{
    return !c->read_blocked && !c->input_paused && !c->closing;
}

static void unblock_reading(struct conn *c)
{
    if (!c->read_blocked)
        return;
    c->read_blocked = 0;
    bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
    if (may_read(c))
        bufferevent_enable(c->bev, EV_READ);
}

/* Input the session cannot take now (it waits for a commit, a policy
 * answer, the switch to TLS, or is closing) stays in the buffer. Reading
 * more would only wake the loop again and again (libevent runs the read
 * callback on every pass while the buffer is at its high-water mark), so
 * reading pauses until the session resumes. */
static void pause_input(struct conn *c)
{
    if (c->input_paused)
        return;
    c->input_paused = 1;
    bufferevent_disable(c->bev, EV_READ);
}

static void resume_input(struct conn *c)
{
    if (!c->input_paused)
        return;
    c->input_paused = 0;
    if (may_read(c))
        bufferevent_enable(c->bev, EV_READ);
}

static void conn_enable(struct conn *c)
{
    bufferevent_enable(c->bev, may_read(c) ? EV_READ | EV_WRITE : EV_WRITE);
}

/* ---- deadlines ------------------------------------------------------------ */

static void on_deadline(evutil_socket_t fd, short what, void *arg);

/* The timer fires at the earliest deadline, or earlier: then it looks again. */
static void arm_deadline(struct conn *c)
{
    if (c->timed_out)
        return; /* the 421 is being flushed: the bufferevent's timeout ends it */
    double next = deadline_next(&c->dl);
    if (next == 0 || (c->armed != 0 && c->armed <= next))
        return;
    double wait = next - deadline_now();
    if (wait < 0)
        wait = 0;
    struct timeval tv = {(time_t)wait, (suseconds_t)((wait - (double)(time_t)wait) * 1e6)};
    evtimer_add(c->timer, &tv);
    c->armed = next;
}

/* A request ends once its reply is out and nothing of the next is read. */
static void end_request_if_done(struct conn *c)
{
    if (session_between_requests(c->sess) &&
        evbuffer_get_length(bufferevent_get_output(c->bev)) == 0 &&
        evbuffer_get_length(bufferevent_get_input(c->bev)) == 0)
        deadline_request_end(&c->dl);
}

static void feed_session(struct conn *c, struct evbuffer *in, const struct evbuffer_iovec *v,
                         size_t *used)
{
    if (session_between_requests(c->sess))
        deadline_request_start(&c->dl, deadline_now());
    int in_data = session_in_data(c->sess);
    *used = session_feed(c->sess, v->iov_base, v->iov_len);
    if (in_data)
        deadline_data(&c->dl, deadline_now(), *used);
    evbuffer_drain(in, *used);
}

static void pump(struct conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    c->in_pump = 1;
    do {
        c->pump_again = 0;
        while (!c->closing && !c->tls_pending && !c->handshaking &&
               evbuffer_get_length(in) > 0) {
            if (evbuffer_get_length(bufferevent_get_output(c->bev)) > OUTPUT_LIMIT) {
                block_reading(c);
                break;
            }
            struct evbuffer_iovec v;
            if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
                break;
            size_t used;
            feed_session(c, in, &v, &used);
            if (used < v.iov_len)
                break;
        }
    } while (c->pump_again);
    c->in_pump = 0;
    if (evbuffer_get_length(in) > 0 && !c->handshaking &&
        (c->closing || c->tls_pending || session_waiting(c->sess)))
        pause_input(c);
    if (!c->closing) {
        end_request_if_done(c);
        arm_deadline(c);
    }
    if (c->tls_pending) {
        /* Plaintext sent after STARTTLS must not be read as if it had come
         * through TLS (CVE-2011-0411): throw it away. */
        evbuffer_drain(in, evbuffer_get_length(in));
    }
}

/* ---- bufferevent callbacks ---------------------------------------------- */

static void on_read(struct bufferevent *bev, void *arg)
{
    (void)bev;
    struct conn *c = arg;
    pump(c);
    conn_after_io(c);
}

static void on_write(struct bufferevent *bev, void *arg)
{
    (void)bev;
    struct conn *c = arg;
    if (c->read_blocked &&
        evbuffer_get_length(bufferevent_get_output(c->bev)) <= OUTPUT_LIMIT / 2)
        unblock_reading(c);
    pump(c); /* input may have waited for the output to drain */
    conn_after_io(c);
}

static void log_tls_failure(struct conn *c)
{
    char why[512] = "";
    size_t o = 0;
    unsigned long e;
    /* libevent keeps OpenSSL's errors for the bufferevent that had them. */
    while ((e = bufferevent_get_openssl_error(c->bev)) != 0 && o + 1 < sizeof why) {
        char one[200];
        if (!tls_error_text(e, one, sizeof one))
            continue; /* libevent's SSL_get_error() category: no reason in it */
        int n = snprintf(why + o, sizeof why - o, "%s%s", o ? "; " : "", one);
        o += n > 0 ? (size_t)n : 0;
    }
    if (!*why)
        tls_error_string(why, sizeof why);
    log_sinfo(session_id(c->sess), "TLS handshake failed: %s", *why ? why : "connection closed");
}

/* A time limit passed: during a handshake, or while the 421 is flushed,
 * the connection just ends; else the client is told why (421), with one
 * more short timeout to flush it. Returns with c freed or closing. */
static void conn_timed_out(struct conn *c)
{
    if (c->bev == NULL) { /* still looking up the client's name */
        log_info(NULL, "timeout during the client name lookup of %s", c->client.addr_text);
        conn_free(c);
        return;
    }
    if (c->handshaking || c->timed_out) {
        if (c->handshaking)
            log_sinfo(session_id(c->sess), "timeout during TLS handshake");
        conn_free(c);
        return;
    }
    c->timed_out = 1;
    evtimer_del(c->timer);
    c->armed = 0;
    if (!c->closing)
        session_timeout(c->sess);
    c->closing = 1;
    /* Only the 421 goes out now: what the client still sends is dropped. */
    struct evbuffer *in = bufferevent_get_input(c->bev);
    evbuffer_drain(in, evbuffer_get_length(in));
    struct timeval tv = {5, 0};
    bufferevent_set_timeouts(c->bev, &tv, &tv);
    bufferevent_disable(c->bev, EV_READ);
    bufferevent_enable(c->bev, EV_WRITE);
    conn_after_io(c);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct conn *c = arg;
    c->armed = 0;
    if (c->timed_out)
        return;
    double now = deadline_now();
    if (c->sess == NULL) { /* see arm_lookup_deadline() */
        conn_timed_out(c);
        return;
    }
    if (session_waiting(c->sess))
        deadline_request_wait(&c->dl, now); /* our own wait is not the client's */
    const char *which = deadline_expired(&c->dl, now);
    if (which && !session_waiting(c->sess)) {
        log_sinfo(session_id(c->sess), "%s deadline exceeded (%s)", which,
                  *which == 's' ? "smtpd_session_deadline"
                                : "smtpd_timeout with smtpd_per_request_deadline");
        conn_timed_out(c);
        return;
    }
    if (which) {
        /* Waiting for a commit or a policy answer: look again shortly. */
        struct timeval tv = {1, 0};
        evtimer_add(c->timer, &tv);
        c->armed = now + 1;
        return;
    }
    arm_deadline(c);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    struct conn *c = arg;
    if (what & BEV_EVENT_CONNECTED) {
        c->handshaking = 0;
        tls_peer_finish(bufferevent_openssl_get_ssl(c->bev), &c->peer);
        session_tls_established(c->sess, &c->peer);
        pump(c);
        conn_after_io(c);
        return;
    }
    if (what & BEV_EVENT_TIMEOUT) {
        if (!c->handshaking && !c->timed_out && session_waiting(c->sess)) {
            /* The wait is ours (commit, policy), not the client's. */
            conn_enable(c);
            return;
        }
        conn_timed_out(c);
        return;
    }
    if (c->handshaking && (what & BEV_EVENT_ERROR))
        log_tls_failure(c);
    conn_free(c); /* EOF or error */
}

static void conn_setup_bev(struct conn *c)
{
    struct timeval tv = {conf_long(P_SMTPD_TIMEOUT), 0};
    c->read_blocked = 0;
    c->input_paused = 0;
    bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
    bufferevent_setwatermark(c->bev, EV_READ, 0, INPUT_HIGH_WATER);
    bufferevent_set_timeouts(c->bev, &tv, &tv);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

/* ---- accepting ----------------------------------------------------------- */

static void describe_client(const struct sockaddr *sa, int kind, struct session_client *cl)
{
    memset(cl, 0, sizeof *cl);
    memcpy(&cl->addr, sa, sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                      : sizeof(struct sockaddr_in));
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &s6->sin6_addr, cl->addr_text, sizeof cl->addr_text);
        cl->port = ntohs(s6->sin6_port);
    } else {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &s4->sin_addr, cl->addr_text, sizeof cl->addr_text);
        cl->port = ntohs(s4->sin_port);
    }
    /* As Postfix with smtpd_peername_lookup = no: unknown for good. */
    str_copy(cl->name, PEERNAME_UNKNOWN, sizeof cl->name);
    str_copy(cl->reverse_name, PEERNAME_UNKNOWN, sizeof cl->reverse_name);
    cl->kind = (enum listener_kind)kind;
    cl->tls_available = W.tls != NULL;
}

static void describe_server(int fd, struct session_client *cl)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
        return;
    if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &s6->sin6_addr, cl->server_addr_text, sizeof cl->server_addr_text);
        cl->server_port = ntohs(s6->sin6_port);
    } else {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &s4->sin_addr, cl->server_addr_text, sizeof cl->server_addr_text);
        cl->server_port = ntohs(s4->sin_port);
    }
}

/* The session begins once the client's name is known (or not looked up):
 * its "connect from" line and greeting carry the name. */
static void conn_begin(struct conn *c, const char *refusal)
{
    c->sess = session_new(&conn_io, c, &c->client);
    if (c->sess == NULL) {
        conn_free(c);
        return;
    }
    if (c->kind == LISTEN_SMTPS && refusal == NULL) {
        if (switch_to_tls(c) == 0)
            session_start(c->sess, NULL);
        return;
    }
    c->bev = bufferevent_socket_new(W.base, c->fd, 0);
    if (c->bev == NULL) {
        conn_free(c);
        return;
    }
    conn_setup_bev(c);
    session_start(c->sess, refusal);
    conn_after_io(c);
}

static void copy_names(struct session_client *cl, const struct peername_result *r)
{
    str_copy(cl->name, r->name, sizeof cl->name);
    str_copy(cl->reverse_name, r->reverse_name, sizeof cl->reverse_name);
    cl->name_tempfail = r->name_status == PEERNAME_TEMP;
    cl->reverse_name_tempfail = r->reverse_status == PEERNAME_TEMP;
}

static void lookup_done(void *arg, const struct peername_result *res)
{
    struct conn *c = arg;
    c->lookup = NULL;
    event_free(c->eof_watch);
    c->eof_watch = NULL;
    if (res->warning[0])
        log_warn(NULL, "%s", res->warning);
    copy_names(&c->client, res);
    conn_begin(c, NULL);
}

/* While the name is looked up nothing is read, but a client that hangs up
 * is noticed (and its lookup cancelled). Early input (SMTPS's ClientHello,
 * impatient pipelining) stays in the socket until the session starts. */
static void on_waiting_readable(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct conn *c = arg;
    char byte;
    ssize_t n = recv(fd, &byte, 1, MSG_PEEK);
    if (n > 0) {
        event_del(c->eof_watch); /* input waits: stop being woken for it */
        return;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    log_info(NULL, "lost connection during the client name lookup of %s",
             c->client.addr_text);
    conn_free(c);
}

/* SIGTERM while the name is looked up: no session yet, just say so. */
static void refuse_waiting_client(struct conn *c)
{
    char reply[300];
    int n = snprintf(reply, sizeof reply, "421 4.3.2 %s Service shutting down, closing "
                     "transmission channel\r\n", conf_str(P_MYHOSTNAME));
    if (n > 0 && send(c->fd, reply, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
        log_info(NULL, "cannot tell %s that the server stops: %s", c->client.addr_text,
                 strerror(errno));
    conn_free(c);
}

/* While its name is looked up the client waits for the greeting, idle as
 * far as the connection goes: smtpd_timeout applies as to a read (and the
 * session deadline, if sooner). */
static void arm_lookup_deadline(struct conn *c)
{
    double now = deadline_now();
    double end = now + (double)conf_long(P_SMTPD_TIMEOUT);
    double next = deadline_next(&c->dl);
    if (next != 0 && next < end)
        end = next;
    double wait = end - now;
    struct timeval tv = {(time_t)wait, (suseconds_t)((wait - (double)(time_t)wait) * 1e6)};
    evtimer_add(c->timer, &tv);
    c->armed = end;
}

/* Returns 0 when the lookup runs, -1 when the session can begin at once. */
static int start_lookup(struct conn *c)
{
    if (!conf_bool(P_SMTPD_PEERNAME_LOOKUP))
        return -1;
    c->eof_watch = event_new(W.base, c->fd, EV_READ | EV_PERSIST, on_waiting_readable, c);
    if (c->eof_watch == NULL || event_add(c->eof_watch, NULL) < 0)
        return -1;
    c->lookup = peername_start((struct sockaddr *)&c->client.addr,
                               conf_long(P_SMTPD_PEERNAME_LOOKUP_TIMEOUT), lookup_done, c);
    if (c->lookup == NULL) {
        event_free(c->eof_watch);
        c->eof_watch = NULL;
        return -1;
    }
    arm_lookup_deadline(c);
    return 0;
}

/* NULL, or why the client is refused (421) before any name lookup. */
static const char *admission(struct conn *c, char *why, size_t len)
{
    c->anvil_bucket = -1;
    long limit = conf_long(P_SMTPD_SESSION_LIMIT); /* 0: no limit */
    if (limit > 0 && W.nconns > limit) {
        snprintf(why, len, "too many sessions (smtpd_session_limit)");
        return why;
    }
    if (restrict_in_limit_exceptions(&c->client.addr))
        return NULL;
    c->anvil_bucket = anvil_enter(&c->client.addr,
                                  conf_long(P_SMTPD_CLIENT_CONNECTION_COUNT_LIMIT));
    if (c->anvil_bucket == -1) {
        snprintf(why, len, "too many connections from %s", c->client.addr_text);
        return why;
    }
    return NULL;
}

/* ---- local submission (smtpd/localsubmit.h) ----------------------------- */

/* A sendmail command on the submit socket: the client is localhost, as
 * for Postfix's stand-alone smtpd, and the kernel names the user. NULL, or
 * why the session is refused. */
static const char *describe_local(int fd, struct session_client *cl, char *why, size_t len)
{
    memset(cl, 0, sizeof *cl);
    struct sockaddr_in *s4 = (struct sockaddr_in *)&cl->addr;
    s4->sin_family = AF_INET;
    s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    str_copy(cl->addr_text, "127.0.0.1", sizeof cl->addr_text);
    str_copy(cl->name, "localhost", sizeof cl->name);
    str_copy(cl->reverse_name, "localhost", sizeof cl->reverse_name);
    cl->kind = LISTEN_LOCAL;
    uid_t uid = 0;
    if (localsubmit_peer(fd, &uid, cl->local_login, sizeof cl->local_login) < 0) {
        snprintf(why, len, "cannot tell who you are (%s)", cl->local_login);
        return why;
    }
    cl->local_uid = (unsigned)uid;
    if (!localsubmit_authorized(cl->local_login)) {
        snprintf(why, len, "user %s is not allowed to submit mail (authorized_submit_users)",
                 cl->local_login);
        return why;
    }
    return NULL;
}

static void showq_written(struct bufferevent *bev, void *arg)
{
    (void)arg;
    if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        bufferevent_free(bev);
}

static void showq_event(struct bufferevent *bev, short what, void *arg)
{
    (void)what;
    (void)arg;
    bufferevent_free(bev);
}

/* mailq: one listing per connection, then close. root and mail_owner see
 * every message, another user those it submitted. The listing is read
 * here, on the loop: a long queue delays this worker's sessions briefly. */
static void serve_showq(int fd)
{
    uid_t uid = 0;
    char login[64];
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    if (out == NULL) {
        close(fd);
        return;
    }
    if (localsubmit_peer(fd, &uid, login, sizeof login) < 0)
        fprintf(out, "error: cannot tell who you are (%s)\n", login);
    else if (showq_write(out, conf_str(P_QUEUE_DIRECTORY), uid == 0 || uid == getuid(),
                         (unsigned)uid) < 0)
        fprintf(out, "error: cannot read the queue: %s\n", strerror(errno));
    fclose(out);
    struct bufferevent *bev = bufferevent_socket_new(W.base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL) {
        close(fd);
        free(text);
        return;
    }
    struct timeval tv = {conf_long(P_SMTPD_TIMEOUT), 0};
    bufferevent_set_timeouts(bev, &tv, &tv);
    bufferevent_setcb(bev, NULL, showq_written, showq_event, NULL);
    bufferevent_enable(bev, EV_WRITE);
    if (len == 0)
        bufferevent_free(bev);
    else
        bufferevent_write(bev, text, len);
    free(text);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    (void)l;
    (void)salen;
    int kind = (int)(intptr_t)arg;
    if (kind == LISTEN_SHOWQ) {
        serve_showq(fd);
        return;
    }
    struct conn *c = calloc(1, sizeof *c);
    if (c == NULL || (kind == LISTEN_SMTPS && W.tls == NULL)) {
        free(c);
        close(fd);
        return;
    }
    char why[128];
    const char *local_refusal = NULL;
    c->anvil_bucket = -1;
    if (kind == LISTEN_LOCAL)
        local_refusal = describe_local(fd, &c->client, why, sizeof why);
    else {
        describe_client(sa, kind, &c->client);
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        describe_server(fd, &c->client);
    }
    c->fd = fd;
    c->kind = kind;
    c->anvil_bucket = -1;
    c->timer = evtimer_new(W.base, on_deadline, c);
    if (c->timer == NULL) {
        free(c);
        close(fd);
        return;
    }
    deadline_init(&c->dl, deadline_now(), conf_long(P_SMTPD_SESSION_DEADLINE),
                  conf_long(P_SMTPD_TIMEOUT), conf_bool(P_SMTPD_PER_REQUEST_DEADLINE),
                  conf_long(P_SMTPD_MIN_DATA_RATE));
    arm_deadline(c);
    c->next = W.conns;
    if (W.conns)
        W.conns->prev = c;
    W.conns = c;
    W.nconns++;
    metrics_connection(evconnlistener_get_fd(l));
    const char *refusal = local_refusal ? local_refusal : admission(c, why, sizeof why);
    if (kind == LISTEN_LOCAL) {
        /* The session limits count (as localhost's); there is no name to look up. */
        conn_begin(c, refusal);
        return;
    }
    if (refusal != NULL || start_lookup(c) < 0)
        conn_begin(c, refusal);
}

/* ---- out of descriptors ---------------------------------------------------- */

static void resume_accepting(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    for (int i = 0; i < W.nlisteners; i++)
        evconnlistener_enable(W.listeners[i]);
}

/* libevent calls this when accept() fails for a reason other than "try
 * again". Out of descriptors: answer who waits with 421 through the reserve
 * descriptor, pause accepting, and say so in the log once a minute. */
static void on_accept_error(struct evconnlistener *l, void *arg)
{
    (void)arg;
    int err = EVUTIL_SOCKET_ERROR();
    if (!fdreserve_is_exhaustion(err)) {
        log_warn(NULL, "accept: %s", strerror(err));
        return;
    }
    char reply[300];
    snprintf(reply, sizeof reply, "421 4.3.2 %s Service temporarily unavailable, try again "
             "later\r\n", conf_str(P_MYHOSTNAME));
    /* Out of memory, a spare descriptor would not help: just pause. */
    if (err == EMFILE || err == ENFILE)
        W.refused_unlogged += (unsigned long)fdreserve_refuse(evconnlistener_get_fd(l), reply, 64);
    for (int i = 0; i < W.nlisteners; i++)
        evconnlistener_disable(W.listeners[i]);
    struct timeval tv = {0, ACCEPT_PAUSE_MS * 1000};
    evtimer_add(W.accept_pause, &tv);
    time_t now = time(NULL);
    if (W.exhaustion_logged == 0 || now - W.exhaustion_logged >= EXHAUSTION_LOG_SECONDS) {
        log_warn(NULL, "cannot accept: %s with %d sessions open; pausing accepts; %lu "
                 "clients answered 421 since the last such warning", strerror(err), W.nconns,
                 W.refused_unlogged);
        W.exhaustion_logged = now;
        W.refused_unlogged = 0;
    }
}

/* libevent's own warnings go to the mail log, and never flood it. */
static void libevent_log(int severity, const char *msg)
{
    static time_t window;
    static int count;
    time_t now = time(NULL);
    if (now - window >= EXHAUSTION_LOG_SECONDS) {
        window = now;
        count = 0;
    }
    if (severity >= EVENT_LOG_WARN && ++count <= 10)
        log_warn(NULL, "libevent: %s", msg);
}

/* ---- stopping ------------------------------------------------------------ */

static void stop_accepting(void)
{
    for (int i = 0; i < W.nlisteners; i++)
        evconnlistener_free(W.listeners[i]);
    W.nlisteners = 0;
}

static void grace_over(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    log_warn(NULL, "shutdown: closing %d sessions that did not finish in time", W.nconns);
    while (W.conns)
        conn_free(W.conns); /* unacknowledged messages are discarded, never half-queued */
}

static void on_sigterm(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    (void)arg;
    if (W.stopping)
        return;
    W.stopping = 1;
    stop_accepting();
    for (struct conn *c = W.conns, *next; c; c = next) {
        next = c->next;
        if (c->sess == NULL) {
            refuse_waiting_client(c);
            continue;
        }
        session_shutdown(c->sess);
        conn_after_io(c);
    }
    struct timeval tv = {SHUTDOWN_GRACE_SECONDS, 0};
    W.grace = evtimer_new(W.base, grace_over, NULL);
    evtimer_add(W.grace, &tv);
    maybe_exit();
}

static void on_sigusr1(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    (void)arg;
    W.retiring = 1;
    stop_accepting();
    maybe_exit();
}

int server_run(struct listener *ls, int nls, struct tls_server *tls)
{
    log_set_role("smtpd");
    signal(SIGPIPE, SIG_IGN);
    W.base = event_base_new();
    W.tls = tls;
    policy_set_base(W.base);
    saslsrv_set_base(W.base);
    peername_set_base(W.base);
    pgsql_set_base(W.base);
    milter_set_base(W.base);
    if (W.base == NULL || commit_start(W.base, conf_str(P_QUEUE_DIRECTORY)) < 0) {
        log_err(NULL, "cannot start the event loop or the commit thread");
        return 2;
    }
    event_set_log_callback(libevent_log);
    W.accept_pause = evtimer_new(W.base, resume_accepting, NULL);
    if (W.accept_pause == NULL || fdreserve_init() < 0) {
        log_err(NULL, "cannot set up the descriptor reserve");
        return 2;
    }
    W.listeners = calloc((size_t)nls, sizeof *W.listeners);
    for (int i = 0; i < nls; i++) {
        W.listeners[i] = evconnlistener_new(W.base, on_accept, (void *)(intptr_t)ls[i].kind,
                                            LEV_OPT_CLOSE_ON_EXEC, -1, ls[i].fd);
        if (W.listeners[i] == NULL) {
            log_err(NULL, "cannot accept on %s", ls[i].text);
            return 2;
        }
        evconnlistener_set_error_cb(W.listeners[i], on_accept_error);
        W.nlisteners++;
    }
    W.sig_term = evsignal_new(W.base, SIGTERM, on_sigterm, NULL);
    W.sig_usr1 = evsignal_new(W.base, SIGUSR1, on_sigusr1, NULL);
    evsignal_add(W.sig_term, NULL);
    evsignal_add(W.sig_usr1, NULL);
    event_base_dispatch(W.base);
    commit_stop();
    policy_shutdown();
    peername_shutdown();
    if (W.grace)
        event_free(W.grace);
    event_free(W.accept_pause);
    event_free(W.sig_term);
    event_free(W.sig_usr1);
    free(W.listeners);
    event_base_free(W.base);
    return 0;
}
