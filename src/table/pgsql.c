#include "table/pgsql.h"

#include <event2/event.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/buf.h"
#include "util/log.h"
#include "util/strutil.h"

#define MAX_KEYS 16
#define QUERY_TIMEOUT_SECONDS 10
#define DOWN_SECONDS 10

struct request {
    char *keys[MAX_KEYS];
    int n, next;
    pgsql_done_fn done;
    void *arg;
    struct request *after;
};

struct pgsql_table {
    char *file;
    char *hosts[8];
    int nhosts, host;     /* the host to try next */
    char user[128], password[128], dbname[128];
    char query[1024];
    PGconn *conn;
    int connected;
    struct event *ev, *timer;
    struct request *queue, *queue_tail;
    int busy;             /* a query is in flight for queue's head */
    char *value;
    time_t down_until;    /* blocking mode: fail at once until then */
};

static struct event_base *base;

void pgsql_set_base(struct event_base *b)
{
    base = b;
}

struct event_base *pgsql_base(void)
{
    return base;
}

static int parse_line(struct pgsql_table *t, char *line, char *err, size_t errlen)
{
    char *eq = strchr(line, '=');
    if (eq == NULL) {
        snprintf(err, errlen, "%s: \"%s\" is not name = value", t->file, line);
        return -1;
    }
    *eq = '\0';
    char *name = str_trim(line), *value = str_trim(eq + 1);
    if (strcmp(name, "hosts") == 0) {
        char *copy = strdup(value), *items[8];
        int n = str_split_list(copy, items, 8);
        for (int i = 0; i < n; i++)
            t->hosts[t->nhosts++] = strdup(items[i]);
        free(copy);
    } else if (strcmp(name, "user") == 0)
        str_copy(t->user, value, sizeof t->user);
    else if (strcmp(name, "password") == 0)
        str_copy(t->password, value, sizeof t->password);
    else if (strcmp(name, "dbname") == 0)
        str_copy(t->dbname, value, sizeof t->dbname);
    else if (strcmp(name, "query") == 0)
        str_copy(t->query, value, sizeof t->query);
    else {
        snprintf(err, errlen, "%s: unknown setting \"%s\"", t->file, name);
        return -1;
    }
    return 0;
}

struct pgsql_table *pgsql_open(const char *file, char *err, size_t errlen)
{
    FILE *f = fopen(file, "r");
    if (f == NULL) {
        snprintf(err, errlen, "cannot open pgsql table configuration %s: %m", file);
        return NULL;
    }
    struct pgsql_table *t = calloc(1, sizeof *t);
    t->file = strdup(file);
    char *line = NULL;
    size_t cap = 0;
    int bad = 0;
    while (!bad && getline(&line, &cap, f) > 0) {
        char *s = str_trim(line);
        if (*s && *s != '#')
            bad = parse_line(t, s, err, errlen) < 0;
    }
    free(line);
    fclose(f);
    if (!bad && (t->nhosts == 0 || !t->dbname[0] || !strstr(t->query, "%s"))) {
        snprintf(err, errlen, "%s: needs hosts, dbname and a query with %%s", file);
        bad = 1;
    }
    if (bad) {
        pgsql_free(t);
        return NULL;
    }
    return t;
}

/* "inet:host:port", "host:port", "host", "unix:/dir" as libpq parameters. */
static void conninfo(const struct pgsql_table *t, const char *h, struct buf *b)
{
    char host[256];
    const char *port = NULL;
    if (strncmp(h, "unix:", 5) == 0)
        h += 5;
    else if (strncmp(h, "inet:", 5) == 0)
        h += 5;
    str_copy(host, h, sizeof host);
    char *colon = host[0] == '/' ? NULL : strrchr(host, ':');
    if (colon) {
        *colon = '\0';
        port = colon + 1;
    }
    /* Values are quoted for libpq: backslash and quote escaped. */
    const char *names[] = {"host", "port", "user", "password", "dbname"};
    const char *values[] = {host, port, t->user, t->password, t->dbname};
    for (int i = 0; i < 5; i++) {
        if (values[i] == NULL || values[i][0] == '\0')
            continue;
        buf_printf(b, "%s='", names[i]);
        for (const char *p = values[i]; *p; p++) {
            if (*p == '\'' || *p == '\\')
                buf_puts(b, "\\");
            buf_append(b, p, 1);
        }
        buf_puts(b, "' ");
    }
    /* Bounds for the blocking mode too: a database that stops answering
     * ends a query after QUERY_TIMEOUT_SECONDS, not at TCP's timeout. */
    buf_printf(b, "connect_timeout=5 tcp_user_timeout=%d options='-c statement_timeout=%d'",
               QUERY_TIMEOUT_SECONDS * 1000, QUERY_TIMEOUT_SECONDS * 1000);
}

/* The query with %s, %u, %d replaced by escaped parts of key. */
static int build_query(struct pgsql_table *t, const char *key, struct buf *q)
{
    const char *at = strrchr(key, '@');
    for (const char *p = t->query; *p; p++) {
        if (*p != '%' || !p[1]) {
            buf_append(q, p, 1);
            continue;
        }
        char part[512];
        p++;
        if (*p == 's')
            str_copy(part, key, sizeof part);
        else if (*p == 'u')
            snprintf(part, sizeof part, "%.*s", at ? (int)(at - key) : (int)strlen(key), key);
        else if (*p == 'd')
            str_copy(part, at ? at + 1 : "", sizeof part);
        else {
            buf_append(q, p, 1);
            continue;
        }
        char esc[1100];
        int error = 0;
        PQescapeStringConn(t->conn, esc, part, strlen(part), &error);
        if (error)
            return -1;
        buf_puts(q, esc);
    }
    return 0;
}

/* ---- blocking mode ------------------------------------------------------ */

/* After every host failed, lookups fail at once for DOWN_SECONDS: a
 * process that blocks on its lookups (the queue manager's routing) must not
 * wait connect_timeout for each recipient of a lost database. */
static int connect_blocking(struct pgsql_table *t, char *err, size_t errlen)
{
    if (t->conn && PQstatus(t->conn) == CONNECTION_OK)
        return 0;
    time_t now = time(NULL);
    if (now < t->down_until) {
        snprintf(err, errlen, "database unavailable, next attempt in %lds",
                 (long)(t->down_until - now));
        return -1;
    }
    for (int i = 0; i < t->nhosts; i++) {
        if (t->conn)
            PQfinish(t->conn);
        struct buf ci;
        buf_init(&ci, 4096);
        conninfo(t, t->hosts[i], &ci);
        t->conn = PQconnectdb(ci.data);
        buf_free(&ci);
        if (PQstatus(t->conn) == CONNECTION_OK)
            return 0;
        snprintf(err, errlen, "%s: %s", t->hosts[i], PQerrorMessage(t->conn));
    }
    t->down_until = now + DOWN_SECONDS;
    return -1;
}

static int lookup_blocking(struct pgsql_table *t, const char *const *keys, int n,
                           const char **value, int *tempfail)
{
    char err[512];
    *value = NULL;
    *tempfail = 0;
    if (connect_blocking(t, err, sizeof err) < 0) {
        log_warn(NULL, "pgsql:%s: %s", t->file, err);
        *tempfail = 1;
        return 1;
    }
    for (int i = 0; i < n && *value == NULL; i++) {
        struct buf q;
        buf_init(&q, 8192);
        if (build_query(t, keys[i], &q) < 0) {
            buf_free(&q);
            continue;
        }
        PGresult *res = PQexec(t->conn, q.data);
        buf_free(&q);
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
            log_warn(NULL, "pgsql:%s: %s", t->file, PQerrorMessage(t->conn));
            *tempfail = 1;
            PQclear(res);
            PQfinish(t->conn);
            t->conn = NULL;
            return 1;
        }
        if (PQntuples(res) > 0 && PQnfields(res) > 0) {
            free(t->value);
            t->value = strdup(PQgetvalue(res, 0, 0));
            *value = t->value;
        }
        PQclear(res);
    }
    return 1;
}

int pgsql_probe(struct pgsql_table *t, char *err, size_t errlen)
{
    return connect_blocking(t, err, errlen);
}

/* ---- asynchronous mode --------------------------------------------------- */

static void drive(struct pgsql_table *t);

static void reset(struct pgsql_table *t)
{
    if (t->ev) {
        event_free(t->ev);
        t->ev = NULL;
    }
    if (t->conn)
        PQfinish(t->conn);
    t->conn = NULL;
    t->connected = 0;
    t->busy = 0;
}

static void complete_head(struct pgsql_table *t, const char *value, int tempfail)
{
    struct request *r = t->queue;
    t->queue = r->after;
    if (t->queue == NULL)
        t->queue_tail = NULL;
    t->busy = 0;
    if (t->timer)
        evtimer_del(t->timer);
    if (r->done)
        r->done(r->arg, value, tempfail);
    for (int i = 0; i < r->n; i++)
        free(r->keys[i]);
    free(r);
}

/* The database is gone: every waiting lookup fails temporarily. */
static void fail_all(struct pgsql_table *t, const char *why)
{
    log_warn(NULL, "pgsql:%s: %s", t->file, why);
    reset(t);
    t->host = (t->host + 1) % t->nhosts;
    while (t->queue)
        complete_head(t, NULL, 1);
}

static void on_io(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    drive(arg);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    fail_all(arg, "timeout");
}

static void watch(struct pgsql_table *t, short events)
{
    if (t->ev)
        event_free(t->ev);
    t->ev = event_new(base, PQsocket(t->conn), events, on_io, t);
    event_add(t->ev, NULL);
    if (t->timer == NULL)
        t->timer = evtimer_new(base, on_timeout, t);
    if (!evtimer_pending(t->timer, NULL)) {
        struct timeval tv = {QUERY_TIMEOUT_SECONDS, 0};
        evtimer_add(t->timer, &tv);
    }
}

static void send_next_key(struct pgsql_table *t)
{
    struct request *r = t->queue;
    if (r->next >= r->n) {
        complete_head(t, NULL, 0);
        return;
    }
    struct buf q;
    buf_init(&q, 8192);
    if (build_query(t, r->keys[r->next++], &q) < 0 || !PQsendQuery(t->conn, q.data)) {
        buf_free(&q);
        fail_all(t, PQerrorMessage(t->conn));
        return;
    }
    buf_free(&q);
    t->busy = 1;
    watch(t, EV_READ);
}

/* One query at a time per connection: the next waiting lookup goes out as
 * soon as the connection is free. */
static void send_queued(struct pgsql_table *t)
{
    while (t->queue && !t->busy && t->conn && t->connected)
        send_next_key(t);
    if (t->queue == NULL && t->timer)
        evtimer_del(t->timer);
}

static void read_result(struct pgsql_table *t)
{
    if (!PQconsumeInput(t->conn)) {
        fail_all(t, PQerrorMessage(t->conn));
        return;
    }
    if (PQisBusy(t->conn)) {
        watch(t, EV_READ);
        return;
    }
    PGresult *res;
    const char *value = NULL;
    int bad = 0;
    while ((res = PQgetResult(t->conn)) != NULL) {
        if (PQresultStatus(res) != PGRES_TUPLES_OK)
            bad = 1;
        else if (value == NULL && PQntuples(res) > 0 && PQnfields(res) > 0) {
            free(t->value);
            t->value = strdup(PQgetvalue(res, 0, 0));
            value = t->value;
        }
        PQclear(res);
    }
    t->busy = 0;
    if (bad) {
        fail_all(t, PQerrorMessage(t->conn));
        return;
    }
    if (value)
        complete_head(t, value, 0);
    else
        send_next_key(t);
    send_queued(t); /* lookups that came while this one was in flight */
}

static void drive(struct pgsql_table *t)
{
    if (t->conn == NULL) {
        if (t->queue == NULL)
            return;
        struct buf ci;
        buf_init(&ci, 4096);
        conninfo(t, t->hosts[t->host], &ci);
        t->conn = PQconnectStart(ci.data);
        buf_free(&ci);
        if (t->conn == NULL || PQstatus(t->conn) == CONNECTION_BAD) {
            fail_all(t, t->conn ? PQerrorMessage(t->conn) : "out of memory");
            return;
        }
        PQsetnonblocking(t->conn, 1);
        watch(t, EV_WRITE);
        return;
    }
    if (!t->connected) {
        switch (PQconnectPoll(t->conn)) {
        case PGRES_POLLING_READING: watch(t, EV_READ); return;
        case PGRES_POLLING_WRITING: watch(t, EV_WRITE); return;
        case PGRES_POLLING_OK: t->connected = 1; break;
        default: fail_all(t, PQerrorMessage(t->conn)); return;
        }
    }
    if (t->busy) {
        read_result(t);
        return;
    }
    send_queued(t);
}

int pgsql_lookup(struct pgsql_table *t, const char *const *keys, int n, const char **value,
                 int *tempfail, pgsql_done_fn done, void *arg)
{
    if (base == NULL)
        return lookup_blocking(t, keys, n, value, tempfail);
    struct request *r = calloc(1, sizeof *r);
    if (r == NULL) {
        *value = NULL;
        *tempfail = 1;
        return 1;
    }
    for (int i = 0; i < n && i < MAX_KEYS; i++)
        r->keys[r->n++] = strdup(keys[i]);
    r->done = done;
    r->arg = arg;
    if (t->queue_tail)
        t->queue_tail->after = r;
    else
        t->queue = r;
    t->queue_tail = r;
    if (!t->busy && (t->conn == NULL || t->connected))
        drive(t);
    return 0;
}

void pgsql_free(struct pgsql_table *t)
{
    if (t == NULL)
        return;
    reset(t);
    if (t->timer)
        event_free(t->timer);
    for (int i = 0; i < t->nhosts; i++)
        free(t->hosts[i]);
    free(t->value);
    free(t->file);
    free(t);
}

void pgsql_cancel(struct pgsql_table *t, void *arg)
{
    for (struct request *r = t->queue; r; r = r->after)
        if (r->arg == arg)
            r->done = NULL;
}
