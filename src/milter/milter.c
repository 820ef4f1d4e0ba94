/* The protocol engine: connections, option negotiation, phases, replies.
 * The message phase's reading and the changes' writing are in
 * milter_msg.c. Packets are "LEN(4, network order) CMD DATA"; LEN counts
 * CMD and DATA. */
#include "milter/milter.h"
#include "milter/milter_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "util/log.h"
#include "util/netaddr.h"
#include "util/strutil.h"

/* smtpd_milters, and non_smtpd_milters for the sendmail command's mail */
static struct milter_def defs[2][MILTER_MAX];
static int ndefs[2];
static struct event_base *base;
static const enum conf_param macro_params[MS_COUNT] = {
    P_MILTER_CONNECT_MACROS, P_MILTER_HELO_MACROS, P_MILTER_MAIL_MACROS, P_MILTER_RCPT_MACROS,
    P_MILTER_DATA_MACROS, P_MILTER_END_OF_DATA_MACROS, P_MILTER_END_OF_HEADER_MACROS};

void milter_set_base(struct event_base *b)
{
    base = b;
}

int milter_configured(void)
{
    return ndefs[0] > 0 || ndefs[1] > 0;
}

/* A numeric address (a host name would need a blocking lookup), or
 * localhost. */
static int inet_target(const char *hostport, struct sockaddr_storage *ss, socklen_t *len)
{
    char host[256];
    int port;
    if (net_split_hostport(hostport, host, sizeof host, &port) < 0)
        return -1;
    return net_sockaddr(strcmp(host, "localhost") == 0 ? "127.0.0.1" : host, port, ss, len);
}

/* "inet:HOST:PORT" or "unix:/PATH" (Postfix's forms; "local:" too). */
static int parse_target(const char *t, struct milter_def *d)
{
    str_copy(d->target, t, sizeof d->target);
    if (strncmp(t, "unix:", 5) == 0 || strncmp(t, "local:", 6) == 0) {
        const char *path = strchr(t, ':') + 1;
        return path[0] == '/' && strlen(path) < sizeof ((struct sockaddr_un *)0)->sun_path
                   ? 0 : -1;
    }
    struct sockaddr_storage ss;
    socklen_t len;
    return strncmp(t, "inet:", 5) == 0 && inet_target(t + 5, &ss, &len) == 0 ? 0 : -1;
}

static void parse_list(enum conf_param p, struct milter_def *out, int *count,
                       struct conf_errors *errs)
{
    *count = 0;
    char *copy = strdup(conf_str(p));
    char *items[MILTER_MAX + 1];
    int n = copy ? str_split_list(copy, items, MILTER_MAX + 1) : 0;
    if (n > MILTER_MAX)
        conf_error(errs, "%s: %s: at most %d filters", conf_origin(p), conf_name(p), MILTER_MAX);
    for (int i = 0; i < n && i < MILTER_MAX; i++) {
        if (parse_target(items[i], &out[*count]) < 0)
            conf_error(errs, "%s: %s: \"%s\" is not inet:HOST:PORT or unix:/PATH",
                       conf_origin(p), conf_name(p), items[i]);
        else
            (*count)++;
    }
    free(copy);
}

int milter_init(struct conf_errors *errs)
{
    int before = errs->count;
    parse_list(P_SMTPD_MILTERS, defs[0], &ndefs[0], errs);
    parse_list(P_NON_SMTPD_MILTERS, defs[1], &ndefs[1], errs);
    return errs->count - before;
}

/* ---- packets -------------------------------------------------------------- */

void milter_send(struct filter *f, char cmd, const void *data, size_t len)
{
    uint32_t n = htonl((uint32_t)len + 1);
    struct evbuffer *out = bufferevent_get_output(f->bev);
    evbuffer_add(out, &n, 4);
    evbuffer_add(out, &cmd, 1);
    if (len)
        evbuffer_add(out, data, len);
}

/* "name\0value\0..." for the macros the filter asked for at this stage. */
void milter_send_macros(struct filter *f, enum milter_stage st, char cmd)
{
    const char *list = f->symlist[st] ? f->symlist[st] : conf_str(macro_params[st]);
    struct buf b;
    buf_init(&b, 4096);
    buf_append(&b, &cmd, 1);
    char copy[1024];
    str_copy(copy, list, sizeof copy);
    for (char *save = NULL, *m = strtok_r(copy, " ,\t", &save); m;
         m = strtok_r(NULL, " ,\t", &save)) {
        const char *v = milter_macro_value(f->set, m);
        if (v == NULL)
            continue;
        buf_append(&b, m, strlen(m) + 1);
        buf_append(&b, v, strlen(v) + 1);
    }
    if (b.len > 1)
        milter_send(f, 'D', b.data, b.len);
    buf_free(&b);
}

/* ---- failure and verdicts --------------------------------------------------- */

static void finish_phase(struct milter_set *set);
static void drive(struct milter_set *set);

static void set_reply(struct milter_result *r, enum milter_verdict v, const char *text)
{
    r->verdict = v;
    str_copy(r->reply, text, sizeof r->reply);
}

/* milter_default_action decides what a broken filter means. */
void milter_fail(struct filter *f, const char *why)
{
    struct milter_set *set = f->set;
    log_session(LOG_LVL_WARN, set->log_id, "milter %s: %s; default_action=%s", f->def->target,
                why, conf_str(P_MILTER_DEFAULT_ACTION)); /* log_id: the session's */
    if (f->bev)
        bufferevent_free(f->bev);
    f->bev = NULL;
    /* As Postfix: from now on every phase of the session gets the default
     * action's answer for this filter (failed_answer() in drive()), not
     * just the command that was in progress. */
    f->state = F_FAILED;
    int waiting = set->active && set->cur < set->n && &set->f[set->cur] == f;
    if (waiting) {
        f->waiting = 0;
        drive(set);
    }
}

static int valid_reply_code(const char *text)
{
    return (text[0] == '4' || text[0] == '5') && text[1] >= '0' && text[1] <= '9' &&
           text[2] >= '0' && text[2] <= '9' && (text[3] == ' ' || text[3] == '-' || !text[3]);
}

/* A final answer for this phase from filter f; 1 when the chain stops. */
static int verdict(struct filter *f, char cmd, const char *data, size_t len)
{
    struct milter_result *r = &f->set->result;
    switch (cmd) {
    case 'c':
        return 0;
    case 'a': /* accepted: this filter has nothing more to say for now */
        f->state = f->set->stage <= MS_HELO ? F_DONE : F_ACCEPTED;
        return 0;
    case 'r':
        set_reply(r, MV_REJECT, "550 5.7.1 Command rejected");
        return 1;
    case 't':
        set_reply(r, MV_TEMPFAIL, "451 4.7.1 Service unavailable - try again later");
        return 1;
    case 'd':
        if (f->set->stage <= MS_HELO) { /* as Postfix: there is no message yet */
            milter_fail(f, "discard before MAIL FROM");
            return 0;
        }
        set_reply(r, MV_DISCARD, "");
        return 1;
    case 'y': {
        char all[4096], text[512];
        snprintf(all, sizeof all, "%.*s", (int)strnlen(data, len), data);
        /* A multi-line reply (smfi_setmlreply) is answered with its last
         * line: one SMTP reply line, never a continuation a pipelining
         * client could mistake for the end. */
        char *last = all, *p;
        while ((p = strpbrk(last, "\r\n")) != NULL && p[strspn(p, "\r\n")])
            last = p + strspn(p, "\r\n");
        last[strcspn(last, "\r\n")] = '\0';
        str_copy(text, last, sizeof text);
        if (text[3] == '-')
            text[3] = ' ';
        if (!valid_reply_code(text)) {
            milter_fail(f, "a reply code that is not 4xx or 5xx");
            return 0;
        }
        set_reply(r, text[0] == '4' ? MV_TEMPFAIL : MV_REJECT, text);
        return 1;
    }
    case '4':
    case 'f':
        set_reply(r, MV_TEMPFAIL, "421 4.7.0 Service unavailable - closing connection");
        return 1;
    }
    milter_fail(f, "an answer outside the protocol");
    return 0;
}

/* ---- reading ------------------------------------------------------------------ */

static void handle_optneg(struct filter *f, const char *data, size_t len)
{
    if (len < 12) {
        milter_fail(f, "a short option negotiation");
        return;
    }
    uint32_t v[3];
    memcpy(v, data, 12);
    f->version = ntohl(v[0]);
    f->actions = ntohl(v[1]);
    f->pflags = ntohl(v[2]);
    if (f->version < 2 || f->version > (uint32_t)conf_long(P_MILTER_PROTOCOL) ||
        (f->actions & ~MILTER_ACTIONS) || (f->pflags & ~MILTER_PFLAGS)) {
        milter_fail(f, "an option negotiation keypost did not offer");
        return;
    }
    /* Older filters know no DATA (v4) and no unknown commands (v3). */
    if (f->version < 4)
        f->pflags |= SMFIP_NODATA;
    if (f->version < 3)
        f->pflags |= SMFIP_NOUNKNOWN;
    /* SETSYMLIST: (stage, "macro names") pairs after the options. */
    for (size_t off = 12; off + 5 <= len;) {
        uint32_t st;
        memcpy(&st, data + off, 4);
        st = ntohl(st);
        size_t slen = strnlen(data + off + 4, len - off - 4);
        if (st < MS_COUNT && (f->actions & SMFIF_SETSYMLIST)) {
            free(f->symlist[st]);
            f->symlist[st] = strndup(data + off + 4, slen);
        }
        off += 4 + slen + 1;
    }
    f->state = F_READY;
    f->waiting = 0;
    milter_disarm_timeout(f);
    drive(f->set);
}

static void handle_reply(struct filter *f, char cmd, const char *data, size_t len)
{
    struct milter_set *set = f->set;
    if (f->state == F_NEGOTIATING) {
        if (cmd == 'O')
            handle_optneg(f, data, len);
        else
            milter_fail(f, "no option negotiation");
        return;
    }
    if (!f->waiting) {
        milter_fail(f, "an answer nobody asked for");
        return;
    }
    if (cmd == 'p') { /* progress: the filter needs more time */
        milter_arm_timeout(f);
        return;
    }
    if (!(set->stage == MS_EOM && strchr("hmib+2-eq", cmd)))
        milter_disarm_timeout(f); /* answered: an idle filter is not a late one */
    if (set->stage == MS_EOM && strchr("hmib+2-eq", cmd)) {
        if (milter_record_change(f, cmd, data, len) < 0)
            milter_fail(f, "a change it did not ask to make, or a malformed one");
        return;
    }
    if (cmd == 's' && set->stage == MS_BODY) {
        f->skip_body = 1;
        cmd = 'c';
    }
    f->waiting = 0;
    if (verdict(f, cmd, data, len)) {
        set->stopped = 1;
        finish_phase(set);
        return;
    }
    drive(set);
}

static void on_read(struct bufferevent *bev, void *arg)
{
    struct filter *f = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    while (f->bev && evbuffer_get_length(in) >= 4) {
        uint32_t n;
        evbuffer_copyout(in, &n, 4);
        n = ntohl(n);
        if (n == 0 || n > MILTER_MAX_PACKET) {
            milter_fail(f, "a packet longer than the protocol allows");
            return;
        }
        if (evbuffer_get_length(in) < 4 + (size_t)n)
            return;
        char *p = malloc(n + 1);
        if (p == NULL) {
            milter_fail(f, "out of memory");
            return;
        }
        evbuffer_drain(in, 4);
        evbuffer_remove(in, p, n);
        p[n] = '\0';
        handle_reply(f, p[0], p + 1, n - 1);
        free(p);
    }
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    struct filter *f = arg;
    if (what & BEV_EVENT_CONNECTED) {
        f->state = F_NEGOTIATING;
        uint32_t v[3] = {htonl((uint32_t)conf_long(P_MILTER_PROTOCOL)), htonl(MILTER_ACTIONS),
                         htonl(MILTER_PFLAGS)};
        milter_send(f, 'O', v, sizeof v);
        f->waiting = 1;
        milter_arm_timeout(f);
        return;
    }
    milter_fail(f, what & BEV_EVENT_TIMEOUT ? "timed out" : "connection lost");
}

void milter_disarm_timeout(struct filter *f)
{
    if (f->bev)
        bufferevent_set_timeouts(f->bev, NULL, NULL);
}

void milter_arm_timeout(struct filter *f)
{
    enum conf_param p = f->state != F_READY ? P_MILTER_CONNECT_TIMEOUT
                        : f->set->stage >= MS_DATA ? P_MILTER_CONTENT_TIMEOUT
                                                   : P_MILTER_COMMAND_TIMEOUT;
    struct timeval tv = {conf_long(p), 0};
    bufferevent_set_timeouts(f->bev, &tv, &tv);
}

static void open_filter(struct milter_set *set, struct filter *f, const struct milter_def *d)
{
    f->set = set;
    f->def = d;
    f->state = F_CONNECTING;
    struct sockaddr_storage ss;
    socklen_t len = 0;
    memset(&ss, 0, sizeof ss);
    if (strncmp(d->target, "inet:", 5) == 0)
        inet_target(d->target + 5, &ss, &len);
    else {
        struct sockaddr_un *un = (struct sockaddr_un *)&ss;
        un->sun_family = AF_UNIX;
        str_copy(un->sun_path, strchr(d->target, ':') + 1, sizeof un->sun_path);
        len = sizeof *un;
    }
    f->bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (f->bev == NULL) {
        milter_fail(f, "out of memory");
        return;
    }
    bufferevent_setcb(f->bev, on_read, NULL, on_event, f);
    bufferevent_enable(f->bev, EV_READ | EV_WRITE);
    milter_arm_timeout(f);
    if (bufferevent_socket_connect(f->bev, (struct sockaddr *)&ss, (int)len) < 0)
        milter_fail(f, strerror(errno));
}

struct milter_set *milter_open(const struct milter_session *info, int local)
{
    int which = local ? 1 : 0;
    if (ndefs[which] == 0 || base == NULL)
        return NULL;
    struct milter_set *set = calloc(1, sizeof *set);
    if (set == NULL)
        return NULL;
    set->info = info; /* the session's: it changes at STARTTLS, AUTH and DATA */
    set->n = ndefs[which];
    for (int i = 0; i < set->n; i++)
        open_filter(set, &set->f[i], &defs[which][i]);
    return set;
}

void milter_set_log_id(struct milter_set *set, const char *id)
{
    set->log_id = id;
}

void milter_close(struct milter_set *set)
{
    if (set == NULL)
        return;
    for (int i = 0; i < set->n; i++) {
        struct filter *f = &set->f[i];
        if (f->bev) {
            milter_send(f, 'Q', NULL, 0);
            bufferevent_free(f->bev); /* a filter sees the QUIT or the close */
        }
        for (int s = 0; s < MS_COUNT; s++)
            free(f->symlist[s]);
    }
    milter_message_free(set);
    free(set);
}

void milter_abort(struct milter_set *set)
{
    if (set == NULL || set->active)
        return; /* none, or a phase in flight (the session ends: milter_close) */
    for (int i = 0; i < set->n; i++) {
        struct filter *f = &set->f[i];
        if (f->bev && (f->state == F_READY || f->state == F_ACCEPTED) && set->told_mail)
            milter_send(f, 'A', NULL, 0);
        if (f->state == F_ACCEPTED)
            f->state = F_READY;
    }
    set->told_mail = 0;
    set->quarantine = 0;
    milter_message_free(set);
}

/* ---- phases ------------------------------------------------------------------ */

static void finish_phase(struct milter_set *set)
{
    set->active = 0;
    if (set->stage >= MS_MESSAGE)
        set->told_mail = 0; /* the message is over for the filters */
    if (!set->stopped && set->failed_verdict != MV_CONTINUE)
        set_reply(&set->result, set->failed_verdict,
                  set->failed_verdict == MV_REJECT ? "550 5.7.1 Service unavailable"
                                                   : "451 4.7.1 Service unavailable - try "
                                                     "again later");
    set->failed_verdict = MV_CONTINUE;
    if (set->stage >= MS_MESSAGE && set->quarantine && !set->result.quarantine) {
        /* a quarantine decided in any phase holds the message */
        set->result.quarantine = 1;
        str_copy(set->result.reason, set->quarantine_reason, sizeof set->result.reason);
    }
    milter_done_fn done = set->done;
    set->done = NULL;
    if (done && !set->sync)
        done(set->arg, &set->result);
}

/* Send filter f's next packet of the phase; 0 when it has none left. */
static int next_packet(struct milter_set *set, struct filter *f)
{
    if (set->stage == MS_MESSAGE || set->stage == MS_BODY || set->stage == MS_EOM)
        return milter_next_content(set, f);
    if (set->step > 0)
        return 0;
    set->step++;
    return milter_command_packet(set, f);
}

/* A failed filter's part in a phase, as milter_default_action says:
 * accept skips it, quarantine marks the message, tempfail and reject
 * answer the command. */
static void failed_answer(struct milter_set *set, const struct filter *f)
{
    const char *action = conf_str(P_MILTER_DEFAULT_ACTION);
    if (strcmp(action, "quarantine") == 0) {
        set->quarantine = 1;
        snprintf(set->quarantine_reason, sizeof set->quarantine_reason, "milter %s failed",
                 f->def->target);
    } else if (strcmp(action, "reject") == 0)
        set->failed_verdict = MV_REJECT;
    else if (strcmp(action, "accept") != 0)
        set->failed_verdict = MV_TEMPFAIL;
}

/* Ask the filters in order; a filter that needs no answer is passed over. */
static void drive(struct milter_set *set)
{
    while (set->active && !set->stopped && set->cur < set->n) {
        struct filter *f = &set->f[set->cur];
        if (f->state == F_CONNECTING || f->state == F_NEGOTIATING)
            return; /* handle_optneg() or milter_fail() drives again */
        if (f->state == F_FAILED) {
            failed_answer(set, f);
            set->cur++;
            set->step = 0;
            continue;
        }
        if (f->state != F_READY || f->waiting) {
            if (f->waiting)
                return;
            set->cur++;
            set->step = 0;
            continue;
        }
        set->expect_reply = 0;
        if (!next_packet(set, f)) {
            set->cur++;
            set->step = 0;
            continue;
        }
        if (set->expect_reply) {
            f->waiting = 1;
            milter_arm_timeout(f);
            return;
        }
    }
    if (set->active)
        finish_phase(set);
}

int milter_run(struct milter_set *set, enum milter_stage stage, struct milter_result *r,
               milter_done_fn done, void *arg)
{
    memset(&set->result, 0, sizeof set->result);
    set->stage = stage;
    set->cur = 0;
    set->step = 0;
    set->stopped = 0;
    set->active = 1;
    set->done = done;
    set->arg = arg;
    set->sync = 1;
    drive(set);
    set->sync = 0;
    if (!set->active) {
        *r = set->result;
        return 1;
    }
    return 0;
}

int milter_helo(struct milter_set *set, struct milter_result *r, milter_done_fn done, void *arg)
{
    return milter_run(set, MS_HELO, r, done, arg);
}

int milter_mail(struct milter_set *set, const char *sender, struct milter_result *r,
                milter_done_fn done, void *arg)
{
    str_copy(set->sender, sender, sizeof set->sender);
    set->told_mail = 1;
    return milter_run(set, MS_MAIL, r, done, arg);
}

int milter_rcpt(struct milter_set *set, const char *rcpt, struct milter_result *r,
                milter_done_fn done, void *arg)
{
    str_copy(set->rcpt, rcpt, sizeof set->rcpt);
    return milter_run(set, MS_RCPT, r, done, arg);
}

/* ---- the commands of connect, HELO, MAIL and RCPT ------------------------- */

static void add_string(struct buf *b, const char *s)
{
    buf_append(b, s, strlen(s) + 1);
}

/* Connect information, sent once, first in the HELO phase. 1 when sent. */
static int send_connect(struct milter_set *set, struct filter *f)
{
    const struct milter_session *in = set->info;
    milter_send_macros(f, MS_CONNECT, 'C');
    if (f->pflags & SMFIP_NOCONNECT)
        return 0;
    struct buf b;
    buf_init(&b, 1024);
    add_string(&b, in->client_name);
    char family = in->family == AF_INET6 ? '6' : '4';
    buf_append(&b, &family, 1);
    uint16_t port = htons((uint16_t)atoi(in->client_port));
    buf_append(&b, &port, 2);
    add_string(&b, in->client_addr);
    milter_send(f, 'C', b.data, b.len);
    buf_free(&b);
    set->expect_reply = !(f->pflags & SMFIP_NR_CONN);
    return 1;
}

int milter_command_packet(struct milter_set *set, struct filter *f)
{
    struct buf b;
    buf_init(&b, 1024);
    char cmd = 0;
    uint32_t skip = 0, noreply = 0;
    switch (set->stage) {
    case MS_HELO:
        if (!f->told_connect) {
            f->told_connect = 1;
            if (send_connect(set, f)) {
                set->step = 0; /* the HELO itself is the next packet */
                buf_free(&b);
                return 1;
            }
        }
        milter_send_macros(f, MS_HELO, 'H');
        cmd = 'H';
        skip = SMFIP_NOHELO;
        noreply = SMFIP_NR_HELO;
        add_string(&b, set->info->helo);
        break;
    default: { /* MAIL or RCPT: "<address>" */
        int mail = set->stage == MS_MAIL;
        cmd = mail ? 'M' : 'R';
        milter_send_macros(f, mail ? MS_MAIL : MS_RCPT, cmd);
        skip = mail ? SMFIP_NOMAIL : SMFIP_NORCPT;
        noreply = mail ? SMFIP_NR_MAIL : SMFIP_NR_RCPT;
        buf_printf(&b, "<%s>", mail ? set->sender : set->rcpt);
        buf_append(&b, "", 1);
        break;
    }
    }
    int sent = !(f->pflags & skip);
    if (sent)
        milter_send(f, cmd, b.data, b.len);
    buf_free(&b);
    set->expect_reply = sent && !(f->pflags & noreply);
    return 1;
}
