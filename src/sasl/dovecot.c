/* dovecot: Dovecot auth protocol client (see dovecot.h). */
#include "sasl/dovecot.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
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

#define MAX_LINE 16384  /* Dovecot's challenges are small; this bounds garbage */
#define MAX_MECHS 32

struct dovecot_auth {
    struct bufferevent *bev;
    dovecot_fn fn;
    void *arg;
    unsigned long id;
    int ready;            /* DONE seen */
    int probe;            /* only refreshes the mechanism list */
    int finished;         /* the answer is given (or queued) */
    int client_turn;      /* after CONT: the SMTP client answers, Dovecot waits */
    char broken[128];     /* Dovecot went away during the client's turn */
    char *auth_line;      /* sent after DONE */
    enum dovecot_answer answer;
    char *text;
    struct event *answer_ev;
};

static struct event_base *base;
static unsigned long next_id;

/* The mechanism list of the last handshake, with Dovecot's flags. */
static struct mech {
    char name[32];
    int anonymous, plaintext, private_;
} mechs[MAX_MECHS], new_mechs[MAX_MECHS];
static int nmechs = -1, n_new;
static char mech_text[MAX_MECHS * 33];
static struct dovecot_auth *probe;
static time_t probe_failed;  /* when the last probe failed */

/* Sessions whose EHLO waits for the mechanism list. */
struct waiter {
    void (*fn)(void *);
    void *arg;
    struct waiter *next;
};
static struct waiter *waiters;

static void wake_waiters(void)
{
    struct waiter *w = waiters;
    waiters = NULL;
    while (w) {
        struct waiter *next = w->next;
        w->fn(w->arg);
        free(w);
        w = next;
    }
}

void dovecot_set_base(struct event_base *b)
{
    base = b;
}

/* Where to connect: a sockaddr for the configured path. */
static int target_addr(const char *path, struct sockaddr_storage *ss, socklen_t *len)
{
    memset(ss, 0, sizeof *ss);
    if (strncmp(path, "inet:", 5) == 0) {
        char host[256];
        int port;
        if (net_split_hostport(path + 5, host, sizeof host, &port) < 0)
            return -1;
        return net_sockaddr(strcmp(host, "localhost") == 0 ? "127.0.0.1" : host, port, ss, len);
    }
    if (strncmp(path, "unix:", 5) == 0)
        path += 5;
    struct sockaddr_un *sun = (struct sockaddr_un *)ss;
    sun->sun_family = AF_UNIX;
    int n = path[0] == '/' ? snprintf(sun->sun_path, sizeof sun->sun_path, "%s", path)
                           : snprintf(sun->sun_path, sizeof sun->sun_path, "%s/%s",
                                      conf_str(P_QUEUE_DIRECTORY), path);
    if (*path == '\0' || n < 0 || (size_t)n >= sizeof sun->sun_path)
        return -1;
    *len = sizeof *sun;
    return 0;
}

int dovecot_path_ok(const char *path)
{
    struct sockaddr_storage ss;
    socklen_t len;
    if (strncmp(path, "inet:", 5) == 0) {
        char host[256];
        int port;
        return net_split_hostport(path + 5, host, sizeof host, &port) == 0 ? 0 : -1;
    }
    return target_addr(path, &ss, &len);
}

static void deliver(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct dovecot_auth *a = arg;
    if (a->fn)
        a->fn(a->arg, a->answer, a->text ? a->text : "");
}

/* Give the caller its answer from the loop, so that it may free a (or
 * start another authentication) without stepping on this module. */
static void answer(struct dovecot_auth *a, enum dovecot_answer ans, const char *text)
{
    if (a->probe) {
        dovecot_auth_free(a);
        if (ans != DA_OK)
            probe_failed = time(NULL);
        wake_waiters();
        return;
    }
    if (ans != DA_CONT)
        a->finished = 1;
    else if (a->bev) {
        /* The SMTP client may take its time (the session's own timeout
         * bounds it); Dovecot's silence is not a fault meanwhile. */
        a->client_turn = 1;
        bufferevent_set_timeouts(a->bev, NULL, NULL);
    }
    a->answer = ans;
    free(a->text);
    a->text = strdup(text);
    if (a->answer_ev == NULL)
        a->answer_ev = evtimer_new(base, deliver, a);
    struct timeval now = {0, 0};
    if (a->answer_ev)
        evtimer_add(a->answer_ev, &now);
}

static void fail(struct dovecot_auth *a, const char *why)
{
    if (a->finished)
        return;
    log_warn(NULL, "SASL: dovecot auth server %s: %s", conf_str(P_SMTPD_SASL_PATH), why);
    if (a->bev) {
        bufferevent_free(a->bev);
        a->bev = NULL;
    }
    /* During the client's turn nobody asked: the failure is the answer
     * to the client's next response. */
    if (a->client_turn && !a->probe)
        str_copy(a->broken, why, sizeof a->broken);
    else
        answer(a, DA_TEMPFAIL, why);
}

int dovecot_mechanisms_wait(void (*fn)(void *), void *arg)
{
    if (nmechs >= 0 || base == NULL ||
        (probe_failed && time(NULL) - probe_failed < DOVECOT_RETRY))
        return 0;
    struct waiter *w = calloc(1, sizeof *w);
    if (w == NULL)
        return 0;
    if (probe == NULL)
        probe = dovecot_auth_start(NULL, NULL, NULL, NULL, 0, NULL, NULL);
    if (probe == NULL) {
        free(w);
        return 0;
    }
    w->fn = fn;
    w->arg = arg;
    w->next = waiters;
    waiters = w;
    return 1;
}

void dovecot_mechanisms_cancel(void *arg)
{
    for (struct waiter **p = &waiters; *p;) {
        struct waiter *w = *p;
        if (w->arg == arg) {
            *p = w->next;
            free(w);
        } else
            p = &w->next;
    }
}

void dovecot_probe(void)
{
    if (probe == NULL && base && nmechs < 0)
        probe = dovecot_auth_start(NULL, NULL, NULL, NULL, 0, NULL, NULL);
}

const char *dovecot_mechanisms(int noanonymous, int noplaintext)
{
    if (nmechs < 0) {
        if (probe == NULL && base)
            probe = dovecot_auth_start(NULL, NULL, NULL, NULL, 0, NULL, NULL);
        return NULL;
    }
    size_t o = 0;
    mech_text[0] = '\0';
    for (int i = 0; i < nmechs; i++) {
        const struct mech *m = &mechs[i];
        if (m->private_ || (noanonymous && m->anonymous) || (noplaintext && m->plaintext))
            continue;
        o += (size_t)snprintf(mech_text + o, sizeof mech_text - o, "%s%s", o ? " " : "",
                              m->name);
    }
    return mech_text;
}

/* "MECH\tNAME\tflag\tflag..." */
static void add_mech(char *line)
{
    char *save = NULL;
    strtok_r(line, "\t", &save);
    char *name = strtok_r(NULL, "\t", &save);
    if (name == NULL || n_new >= MAX_MECHS || strlen(name) >= sizeof new_mechs[0].name)
        return;
    struct mech *m = &new_mechs[n_new++];
    memset(m, 0, sizeof *m);
    str_copy(m->name, name, sizeof m->name);
    for (char *f; (f = strtok_r(NULL, "\t", &save));) {
        m->anonymous |= strcmp(f, "anonymous") == 0;
        m->plaintext |= strcmp(f, "plaintext") == 0;
        m->private_ |= strcmp(f, "private") == 0;
    }
}

/* The value of "name=value" among the tab-separated fields after the id. */
static const char *field(char *rest, const char *name, char *out, size_t len)
{
    size_t nl = strlen(name);
    out[0] = '\0';
    for (char *p = rest; p && *p;) {
        char *tab = strchr(p, '\t');
        size_t n = tab ? (size_t)(tab - p) : strlen(p);
        if (n > nl && strncmp(p, name, nl) == 0 && p[nl] == '=') {
            size_t v = n - nl - 1;
            if (v >= len)
                v = len - 1;
            memcpy(out, p + nl + 1, v);
            out[v] = '\0';
            return out;
        }
        if (n == nl && strncmp(p, name, nl) == 0)
            return out; /* a flag */
        p = tab ? tab + 1 : NULL;
    }
    return NULL;
}

/* Returns 1 when a is gone (a probe that is done). */
static int handshake_line(struct dovecot_auth *a, char *line)
{
    if (strncmp(line, "VERSION\t", 8) == 0) {
        if (strncmp(line + 8, "1\t", 2) != 0) {
            int was_probe = a->probe;
            fail(a, "unsupported protocol version");
            return was_probe;
        }
        n_new = 0;
    } else if (strncmp(line, "MECH\t", 5) == 0) {
        add_mech(line);
    } else if (strcmp(line, "DONE") == 0) {
        memcpy(mechs, new_mechs, sizeof mechs);
        if (nmechs < 0)
            log_info(NULL, "SASL: dovecot auth server %s offers %d mechanisms",
                     conf_str(P_SMTPD_SASL_PATH), n_new);
        nmechs = n_new;
        a->ready = 1;
        if (a->probe) {
            answer(a, DA_OK, ""); /* frees a */
            return 1;
        }
        bufferevent_write(a->bev, a->auth_line, strlen(a->auth_line));
    } /* SPID, CUID, COOKIE and future lines: nothing to do */
    return 0;
}

/* "OK|CONT|FAIL\tID\t..." for our one request. */
static void auth_line(struct dovecot_auth *a, char *line)
{
    char *tab = strchr(line, '\t');
    if (tab == NULL) {
        fail(a, "malformed reply");
        return;
    }
    *tab = '\0';
    char *id = tab + 1;
    char *rest = strchr(id, '\t');
    if (rest)
        *rest++ = '\0';
    char *end;
    if (strtoul(id, &end, 10) != a->id || *end != '\0') {
        fail(a, "reply for another request");
        return;
    }
    char val[1024];
    if (strcmp(line, "CONT") == 0) {
        answer(a, DA_CONT, rest ? rest : "");
    } else if (strcmp(line, "OK") == 0) {
        if (field(rest, "user", val, sizeof val) == NULL || val[0] == '\0')
            fail(a, "OK without a user name");
        else
            answer(a, DA_OK, val);
    } else if (strcmp(line, "FAIL") == 0) {
        char reason[512];
        if (field(rest, "reason", reason, sizeof reason) == NULL)
            reason[0] = '\0';
        answer(a, field(rest, "temp", val, sizeof val) ? DA_TEMPFAIL : DA_FAIL, reason);
    } else
        fail(a, "unexpected reply");
}

static void on_read(struct bufferevent *bev, void *arg)
{
    struct dovecot_auth *a = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    while (a->bev && !a->finished) {
        size_t n;
        char *line = evbuffer_readln(in, &n, EVBUFFER_EOL_LF);
        if (line == NULL) {
            if (evbuffer_get_length(in) > MAX_LINE)
                fail(a, "reply line too long");
            return;
        }
        int gone = 0;
        if (!a->ready)
            gone = handshake_line(a, line);
        else
            auth_line(a, line);
        free(line);
        if (gone)
            return;
    }
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    struct dovecot_auth *a = arg;
    if (what & BEV_EVENT_CONNECTED)
        return;
    /* A probe frees itself in fail(). */
    fail(a, what & BEV_EVENT_TIMEOUT ? "timeout" : what & BEV_EVENT_EOF ? "connection closed"
                                                                         : "connection failed");
}

static int open_conn(struct dovecot_auth *a)
{
    struct sockaddr_storage ss;
    socklen_t len;
    if (base == NULL || target_addr(conf_str(P_SMTPD_SASL_PATH), &ss, &len) < 0)
        return -1;
    a->bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (a->bev == NULL)
        return -1;
    bufferevent_setcb(a->bev, on_read, NULL, on_event, a);
    struct timeval tv = {a->probe ? DOVECOT_PROBE_TIMEOUT : DOVECOT_TIMEOUT, 0};
    bufferevent_set_timeouts(a->bev, &tv, &tv);
    bufferevent_enable(a->bev, EV_READ | EV_WRITE);
    if (bufferevent_socket_connect(a->bev, (struct sockaddr *)&ss, (int)len) < 0)
        return -1;
    char hello[64];
    int n = snprintf(hello, sizeof hello, "VERSION\t1\t2\nCPID\t%ld\n", (long)getpid());
    bufferevent_write(a->bev, hello, (size_t)n);
    return 0;
}

struct dovecot_auth *dovecot_auth_start(const char *mech, const char *initial,
                                        const char *local_ip, const char *remote_ip,
                                        int secured, dovecot_fn fn, void *arg)
{
    struct dovecot_auth *a = calloc(1, sizeof *a);
    if (a == NULL)
        return NULL;
    a->fn = fn;
    a->arg = arg;
    a->probe = mech == NULL;
    if (!a->probe) {
        struct buf b;
        buf_init(&b, MAX_LINE);
        a->id = ++next_id;
        buf_printf(&b, "AUTH\t%lu\t%s\tservice=smtp\tnologin\tlip=%s\trip=%s%s", a->id, mech,
                   local_ip, remote_ip, secured ? "\tsecured" : "");
        if (initial)
            buf_printf(&b, "\tresp=%s", initial);
        buf_puts(&b, "\n");
        a->auth_line = b.data ? strdup(b.data) : NULL;
        buf_free(&b);
    }
    if ((!a->probe && a->auth_line == NULL) || open_conn(a) < 0) {
        if (a->probe) {
            log_warn(NULL, "SASL: dovecot auth server %s: cannot connect",
                     conf_str(P_SMTPD_SASL_PATH));
            probe_failed = time(NULL);
            dovecot_auth_free(a);
            return NULL;
        }
        fail(a, "cannot connect");
    }
    return a;
}

void dovecot_auth_continue(struct dovecot_auth *a, const char *response)
{
    if (a->finished)
        return;
    a->client_turn = 0;
    if (a->bev == NULL) {
        answer(a, DA_TEMPFAIL, a->broken[0] ? a->broken : "connection lost");
        return;
    }
    struct timeval tv = {DOVECOT_TIMEOUT, 0};
    bufferevent_set_timeouts(a->bev, &tv, &tv);
    struct evbuffer *out = bufferevent_get_output(a->bev);
    evbuffer_add_printf(out, "CONT\t%lu\t%s\n", a->id, response);
}

void dovecot_auth_free(struct dovecot_auth *a)
{
    if (a == NULL)
        return;
    if (probe == a)
        probe = NULL;
    if (a->bev)
        bufferevent_free(a->bev);
    if (a->answer_ev)
        event_free(a->answer_ev);
    free(a->auth_line);
    free(a->text);
    free(a);
}
