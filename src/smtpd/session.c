/* session: SMTP server protocol (RFC 5321, RFC 3207) as a state machine. */
#include "smtpd/session.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "addr/addrclass.h"
#include "addr/expand.h"
#include "addr/hdrrewrite.h"
#include "addr/rewrite.h"
#include "milter/milter.h"
#include "conf/conf.h"
#include "metrics/metrics.h"
#include "policy/restrict.h"
#include "queue/commit.h"
#include "queue/notify.h"
#include "queue/queue.h"
#include "sasl/dovecot.h"
#include "sasl/saslsrv.h"
#include "smtpd/anvil.h"
#include "smtpd/address.h"
#include "smtpd/dataread.h"
#include "smtpd/localsubmit.h"
#include "table/tablememo.h"
#include "tls/tls.h"
#include "util/buf.h"
#include "util/log.h"
#include "util/qualify.h"
#include "util/strutil.h"

enum sstate {
    ST_CONNECT = 1 << 0, /* before HELO/EHLO */
    ST_HELO = 1 << 1,    /* greeted, no transaction */
    ST_MAIL = 1 << 2,    /* MAIL accepted */
    ST_RCPT = 1 << 3,    /* at least one RCPT accepted */
    ST_DATA = 1 << 4,    /* reading message content */
    ST_COMMIT = 1 << 5,  /* waiting for the queue file to become durable */
    ST_TLS = 1 << 6,     /* waiting for the TLS handshake */
    ST_CLOSED = 1 << 7,
    ST_POLICY = 1 << 8,  /* waiting for a policy server's or a table's answer */
    ST_AUTH_WAIT = 1 << 9, /* AUTH: waiting for Dovecot's answer or the failure delay */
    ST_AUTH_READ = 1 << 10, /* AUTH: reading the client's response to a 334 */
};
#define ST_ANY_COMMAND (ST_CONNECT | ST_HELO | ST_MAIL | ST_RCPT)

#define MAX_ADDR 512

struct command;

struct smtp_session {
    const struct session_io *io;
    void *ctx;
    struct session_client client;
    char sid[20];
    char last_cmd[16]; /* for "... after RCPT from ...", as Postfix logs */
    enum sstate state;
    struct buf line;
    int line_too_long;
    char helo[256];
    int esmtp;
    int tls_active;
    struct tls_peer tls;
    /* the mail transaction */
    char sender[MAX_ADDR];
    char **rcpts;
    int nrcpt;
    int smtputf8;
    int eightbit;
    int hold;
    int discard;
    long declared_size;
    char prepend[512];
    char pending_rcpt[MAX_ADDR];
    char instance[48];
    unsigned long transactions;
    struct restrict_ctx rctx;
    struct restrict_eval reval;
    struct restrict_result rres;
    struct qfile *qf;
    struct data_reader dr;
    /* bookkeeping */
    int errors;
    int shutting_down;
    int released;  /* the transport is gone */
    int commit_pending; /* the commit thread holds qf */
    int policy_pending; /* restrictions wait for a policy server or a table */
    /* remote tables (table/tablememo.h): a command that needs their answers
     * is put aside and runs again when they are in */
    struct table_memo *memo;
    const struct command *current;
    const char *current_arg;
    const struct command *redo;
    char *redo_arg;
    enum sstate redo_state;
    int lookups_pending;
    /* mail filters (milter/milter.h): a phase's answer comes later */
    struct milter_set *milters;
    struct milter_session minfo;
    char minfo_port[8], minfo_bits[16], minfo_daemon[80], minfo_qid[QUEUE_ID_LEN];
    struct milter_result mres;
    void (*milter_after)(struct smtp_session *, const struct milter_result *);
    enum sstate milter_state;
    int milter_pending;
    char milter_refusal[512]; /* a filter refused the connection: every command hears it */
    struct expansion queued;   /* the envelope as queued, for the filters' changes */
    char queued_sender[MAX_ADDR];
    time_t queued_arrival;
    int have_queued;
    unsigned long messages;
    /* SASL AUTH (RFC 4954): the login once authenticated; the exchange in
     * progress (Dovecot's, or EXTERNAL's own) and the failure delay */
    char sasl_method[32];
    char sasl_username[256];
    char sasl_mech[32];          /* of the exchange in progress */
    char sasl_reason[256];       /* of a failure waiting for its delay */
    char sasl_sender[MAX_ADDR];  /* MAIL's AUTH= of an authenticated client */
    struct dovecot_auth *sasl;
    struct saslsrv_timer *sasl_timer;
    int sasl_pending;            /* Dovecot or the delay timer will call back */
};

static const char *myhostname(void)
{
    return conf_str(P_MYHOSTNAME);
}

/* ---- replies ---------------------------------------------------------- */

static void send_raw(struct smtp_session *s, const char *p, size_t n)
{
    if (!s->released)
        s->io->write(s->ctx, p, n);
}

static void close_session(struct smtp_session *s)
{
    if (s->state == ST_CLOSED)
        return;
    s->state = ST_CLOSED;
    if (!s->released)
        s->io->close(s->ctx);
}

static void reply(struct smtp_session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void reply(struct smtp_session *s, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 2, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n > sizeof line - 3)
        n = (int)sizeof line - 3;
    line[n++] = '\r';
    line[n++] = '\n';
    send_raw(s, line, (size_t)n);
    if (line[0] == '4' || line[0] == '5') {
        s->errors++;
        if (s->errors >= conf_long(P_SMTPD_HARD_ERROR_LIMIT) && s->state != ST_CLOSED) {
            /* Without the session id: fail2ban's postfix-many-errors
                 * filter wants the line to end with the client. */
            log_info(NULL, "too many errors after %s from %s[%s]", s->last_cmd,
                     s->client.name, s->client.addr_text);
            char bye[300];
            int m = snprintf(bye, sizeof bye, "421 4.7.0 %s Error: too many errors\r\n",
                             myhostname());
            send_raw(s, bye, (size_t)m);
            close_session(s);
        }
    }
}

/* ---- transaction ------------------------------------------------------ */

static void reset_transaction(struct smtp_session *s)
{
    if (s->sender[0] || s->nrcpt || (s->state & (ST_MAIL | ST_RCPT | ST_DATA)))
        s->transactions++; /* a new policy "instance" for the next one */
    for (int i = 0; i < s->nrcpt; i++)
        free(s->rcpts[i]);
    free(s->rcpts);
    s->rcpts = NULL;
    s->nrcpt = 0;
    s->sender[0] = '\0';
    s->smtputf8 = 0;
    s->eightbit = 0;
    s->hold = 0;
    s->discard = 0;
    s->declared_size = 0;
    s->prepend[0] = '\0';
    s->sasl_sender[0] = '\0';
    if (s->qf) {
        queue_abort(s->qf);
        s->qf = NULL;
    }
    if (s->have_queued)
        expansion_free(&s->queued);
    s->have_queued = 0;
    s->minfo_qid[0] = '\0';
    milter_abort(s->milters);
    if (s->state & (ST_MAIL | ST_RCPT | ST_DATA))
        s->state = ST_HELO;
}

static const char *proto_name(const struct smtp_session *s)
{
    /* Postfix's names: an "A" when the client authenticated (ESMTPSA). */
    int a = s->sasl_username[0] != '\0';
    if (s->smtputf8)
        return s->tls_active ? (a ? "UTF8SMTPSA" : "UTF8SMTPS") : (a ? "UTF8SMTPA" : "UTF8SMTP");
    if (!s->esmtp)
        return "SMTP";
    return s->tls_active ? (a ? "ESMTPSA" : "ESMTPS") : (a ? "ESMTPA" : "ESMTP");
}

/* A refused command in Postfix's shape, which pflogsumm and fail2ban read:
 * "NOQUEUE: reject: RCPT from HOST[ADDR]: REPLY; from=<S> to=<R> proto=P
 * helo=<H>" (the queue id instead of NOQUEUE once there is one; from= once
 * a sender was accepted, to= at RCPT, helo= once given, as Postfix). */
static void log_reject(struct smtp_session *s, const char *stage, const char *text,
                       const char *rcpt)
{
    metrics_reject(metrics_stage_of(stage));
    int has_sender = strcmp(stage, "RCPT") == 0 || strcmp(stage, "DATA") == 0 ||
                     strcmp(stage, "END-OF-MESSAGE") == 0;
    log_sinfo(s->sid, "%s: reject: %s from %s[%s]: %s;%s%s%s%s%s%s proto=%s%s%s%s",
              s->qf ? queue_file_id(s->qf) : "NOQUEUE", stage, s->client.name,
              s->client.addr_text, text, has_sender ? " from=<" : "",
              has_sender ? s->sender : "", has_sender ? ">" : "", rcpt ? " to=<" : "",
              rcpt ? rcpt : "", rcpt ? ">" : "", proto_name(s), s->helo[0] ? " helo=<" : "",
              s->helo, s->helo[0] ? ">" : "");
}

static void reject(struct smtp_session *s, const char *stage, const char *rcpt,
                   const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Refuse: the reply, and the log line that says so. */
static void reject(struct smtp_session *s, const char *stage, const char *rcpt,
                   const char *fmt, ...)
{
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    log_reject(s, stage, text, rcpt);
    reply(s, "%s", text);
}

/* ---- mail filters (milter/milter.h) ------------------------------------ */

typedef void (*milter_after_fn)(struct smtp_session *, const struct milter_result *);

static void milter_answered(void *arg, const struct milter_result *r)
{
    struct smtp_session *s = arg;
    s->milter_pending = 0;
    if (s->state != ST_POLICY)
        return; /* the session ended meanwhile */
    s->state = s->milter_state;
    s->mres = *r;
    s->milter_after(s, &s->mres);
    if (!s->released && s->state != ST_CLOSED && !session_waiting(s))
        s->io->resume(s->ctx);
}

/* after(s, r) runs now when the filters answered at once, else when they
 * answer (input waits meanwhile, as for a policy server). */
static void milter_then(struct smtp_session *s, int now, milter_after_fn after)
{
    if (now) {
        after(s, &s->mres);
        return;
    }
    s->milter_after = after;
    s->milter_state = s->state;
    s->state = ST_POLICY;
    s->milter_pending = 1;
}

/* A filter's reject or tempfail becomes the reply, logged as Postfix logs
 * it ("milter-reject"). 1 when the command was refused. */
static int milter_refused(struct smtp_session *s, const char *cmd,
                          const struct milter_result *r, const char *rcpt)
{
    if (r->verdict != MV_REJECT && r->verdict != MV_TEMPFAIL)
        return 0;
    metrics_reject(metrics_stage_of(cmd));
    log_sinfo(s->sid, "NOQUEUE: milter-reject: %s from %s[%s]: %s; from=<%s>%s%s%s proto=%s "
              "helo=<%s>", cmd, s->client.name, s->client.addr_text, r->reply, s->sender,
              rcpt ? " to=<" : "", rcpt ? rcpt : "", rcpt ? ">" : "", proto_name(s), s->helo);
    reply(s, "%s", r->reply);
    if (strncmp(r->reply, "421", 3) == 0)
        close_session(s);
    return 1;
}

/* What the filters are told about the session (Sendmail's macros). */
static void milter_describe(struct smtp_session *s)
{
    struct milter_session *m = &s->minfo;
    snprintf(s->minfo_port, sizeof s->minfo_port, "%d", s->client.port);
    snprintf(s->minfo_daemon, sizeof s->minfo_daemon, "%s", s->client.server_addr_text);
    *m = (struct milter_session){
        .client_name = s->client.name, .client_addr = s->client.addr_text,
        .client_port = s->minfo_port, .family = s->client.addr.ss_family, .helo = s->helo,
        .daemon_name = myhostname(), .daemon_addr = s->minfo_daemon,
        .myhostname = myhostname(), .queue_id = s->minfo_qid,
        .auth_type = s->sasl_method, .auth_authen = s->sasl_username};
    if (s->tls_active) {
        snprintf(s->minfo_bits, sizeof s->minfo_bits, "%d", s->tls.bits);
        m->tls_version = s->tls.protocol;
        m->cipher = s->tls.cipher;
        m->cipher_bits = s->minfo_bits;
        if (s->tls.trust.trusted) { /* as Postfix: verified certificates only */
            m->cert_subject = s->tls.trust.subject_cn;
            m->cert_issuer = s->tls.trust.issuer_cn;
        }
    }
}

/* ---- address parsing -------------------------------------------------- */

static int valid_utf8(const unsigned char *p)
{
    while (*p) {
        int extra;
        if (*p < 0x80)
            extra = 0;
        else if ((*p & 0xe0) == 0xc0 && *p >= 0xc2)
            extra = 1;
        else if ((*p & 0xf0) == 0xe0)
            extra = 2;
        else if ((*p & 0xf8) == 0xf0 && *p <= 0xf4)
            extra = 3;
        else
            return 0;
        p++;
        for (int i = 0; i < extra; i++, p++)
            if ((*p & 0xc0) != 0x80)
                return 0;
    }
    return 1;
}

/* Parse "FROM:<addr> params". Returns 0 and fills addr/params, or -1. */
static int parse_path(const char *arg, const char *keyword, char *addr, size_t addrlen,
                      const char **params)
{
    size_t kl = strlen(keyword);
    if (strncasecmp(arg, keyword, kl) != 0)
        return -1;
    const char *p = arg + kl;
    while (*p == ' ')
        p++;
    if (*p != '<')
        return -1;
    p++;
    const char *start = p;
    int quoted = 0;
    for (; *p; p++) {
        if (*p == '\\' && quoted && p[1])
            p++;
        else if (*p == '"')
            quoted = !quoted;
        else if (*p == '>' && !quoted)
            break;
        else if (!quoted && (*p == ' ' || *p == '<'))
            return -1;
    }
    if (*p != '>')
        return -1;
    size_t n = (size_t)(p - start);
    /* Drop an RFC 5321 source route: "@a,@b:user@domain". */
    if (n && *start == '@') {
        const char *colon = memchr(start, ':', n);
        if (colon == NULL)
            return -1;
        n -= (size_t)(colon + 1 - start);
        start = colon + 1;
    }
    if (n >= addrlen)
        return -1;
    memcpy(addr, start, n);
    addr[n] = '\0';
    p++;
    while (*p == ' ')
        p++;
    *params = p;
    return 0;
}

static int check_address_text(struct smtp_session *s, const char *addr, int smtputf8,
                              const char *what)
{
    if (str_has_8bit(addr)) {
        if (!valid_utf8((const unsigned char *)addr)) {
            reply(s, "501 5.1.%c Bad %s address syntax", what[0] == 's' ? '7' : '3', what);
            return -1;
        }
        if (!smtputf8) {
            int at_mail = what[0] == 's';
            reject(s, at_mail ? "MAIL" : "RCPT", at_mail ? NULL : addr,
                   "553 5.6.7 Must declare SMTPUTF8 to send unicode address");
            return -1;
        }
    }
    return 0;
}

/* ---- command handlers ------------------------------------------------- */

static const char *sasl_offer(struct smtp_session *s);

static void send_ehlo(struct smtp_session *s)
{
    struct buf b;
    buf_init(&b, 2048);
    buf_printf(&b, "250-%s\r\n250-PIPELINING\r\n250-SIZE %ld\r\n", myhostname(),
               conf_long(P_MESSAGE_SIZE_LIMIT));
    if (s->client.tls_available && !s->tls_active)
        buf_puts(&b, "250-STARTTLS\r\n");
    const char *mechs = sasl_offer(s);
    if (mechs && *mechs)
        buf_printf(&b, "250-AUTH %s\r\n", mechs);
    buf_puts(&b, "250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n");
    send_raw(s, b.data, b.len);
    buf_free(&b);
}

static int printable_ascii(const char *p)
{
    for (; *p; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
            return 0;
    return 1;
}

static void greeted(struct smtp_session *s, const struct milter_result *r)
{
    if (r && (r->verdict == MV_REJECT || r->verdict == MV_TEMPFAIL)) {
        /* As Postfix: a filter that refuses the connection or the HELO
         * refuses every command of the session that follows. */
        str_copy(s->milter_refusal, r->reply, sizeof s->milter_refusal);
        milter_refused(s, "CONNECT", r, NULL);
        return;
    }
    if (s->esmtp)
        send_ehlo(s);
    else
        reply(s, "250 %s", myhostname());
}

static void greet(struct smtp_session *s, const char *arg, int esmtp)
{
    if (*arg == '\0' || !printable_ascii(arg) || strlen(arg) >= sizeof s->helo) {
        reply(s, "501 5.5.4 Syntax: %s hostname", esmtp ? "EHLO" : "HELO");
        return;
    }
    reset_transaction(s);
    str_copy(s->helo, arg, sizeof s->helo);
    s->esmtp = esmtp;
    s->state = ST_HELO;
    if (s->milters) { /* the filters hear of the connection and the HELO now */
        milter_describe(s);
        int now = milter_helo(s->milters, &s->mres, milter_answered, s);
        milter_then(s, now, greeted);
        return;
    }
    greeted(s, NULL);
}

static int await_sasl_mechanisms(struct smtp_session *s);

static void cmd_ehlo(struct smtp_session *s, const char *arg)
{
    if (await_sasl_mechanisms(s))
        return;
    greet(s, arg, 1);
}
static void cmd_helo(struct smtp_session *s, const char *arg) { greet(s, arg, 0); }

static int tls_required(const struct smtp_session *s)
{
    if (s->client.kind == LISTEN_LOCAL)
        return 0; /* a local socket: there is no one in the middle */
    return s->client.kind == LISTEN_SUBMISSION ||
           strcmp(conf_str(P_SMTPD_TLS_SECURITY_LEVEL), "encrypt") == 0;
}

/* SASL: MAIL's AUTH=xtext (RFC 4954 section 5). Kept only from a client
 * that logged in (from others it means nothing: "<>"). 0 or -1 (replied). */
static int mail_auth_param(struct smtp_session *s, const char *val)
{
    char out[MAX_ADDR];
    size_t o = 0;
    for (const char *p = val; *p; p++) {
        unsigned v;
        if ((unsigned char)*p < 33 || (unsigned char)*p > 126 || *p == '=' || o + 1 >= sizeof out)
            break;
        if (*p == '+') {
            if (sscanf(p + 1, "%2X", &v) != 1 || !isxdigit((unsigned char)p[1]) ||
                !isxdigit((unsigned char)p[2]) || v < 33 || v > 126)
                break;
            out[o++] = (char)v;
            p += 2;
        } else
            out[o++] = *p;
        if (p[1] == '\0') {
            out[o] = '\0';
            if (s->sasl_username[0] && strcmp(out, "<>") != 0)
                str_copy(s->sasl_sender, out, sizeof s->sasl_sender);
            return 0;
        }
    }
    reply(s, "501 5.5.4 Bad AUTH parameter syntax");
    return -1;
}

/* MAIL parameters: SIZE, BODY, SMTPUTF8, AUTH. Returns 0 or -1 (replied). */
static int mail_params(struct smtp_session *s, char *params)
{
    /* ESMTP parameters are separated by spaces only; each one is checked
     * (the command line length bounds how many there can be). */
    char *save = NULL;
    for (char *item = strtok_r(params, " ", &save); item; item = strtok_r(NULL, " ", &save)) {
        char *eq = strchr(item, '=');
        const char *val = eq ? eq + 1 : "";
        if (eq)
            *eq = '\0';
        if (str_ieq(item, "SIZE") && eq) {
            long v = str_parse_long(val);
            if (v < 0) {
                reply(s, "501 5.5.4 Bad SIZE parameter");
                return -1;
            }
            if (v > conf_long(P_MESSAGE_SIZE_LIMIT)) {
                reject(s, "MAIL", NULL, "552 5.3.4 Message size exceeds fixed limit");
                return -1;
            }
            s->declared_size = v;
        } else if (str_ieq(item, "BODY") && eq) {
            if (!str_ieq(val, "7BIT") && !str_ieq(val, "8BITMIME")) {
                reply(s, "501 5.5.4 Bad BODY parameter");
                return -1;
            }
            s->eightbit = str_ieq(val, "8BITMIME");
        } else if (str_ieq(item, "SMTPUTF8") && !eq) {
            s->smtputf8 = 1;
        } else if (str_ieq(item, "AUTH") && eq && conf_bool(P_SMTPD_SASL_AUTH_ENABLE)) {
            if (mail_auth_param(s, val) < 0)
                return -1;
        } else {
            reply(s, "555 5.5.4 Unsupported option: %s", item);
            return -1;
        }
    }
    return 0;
}

/* Postfix completes the envelope addresses of local senders ("local"
 * rewriting: append_at_myorigin, append_dot_mydomain). keypost does so for
 * clients in mynetworks only: their users are ours. From anywhere else
 * "user" or "user@host" stays as sent and is refused or routed as such,
 * since a stranger's incomplete address names none of our domains. A
 * result that does not fit leaves the address alone (refused as bad syntax). */
static void qualify_envelope(const struct smtp_session *s, char *addr, size_t len)
{
    /* The old forms first ("host!user", "user%host@local"), as Postfix's
     * canonicalization does, so that the restrictions judge where the
     * address really goes. */
    rewrite_old_forms(addr, len);
    unsigned flags = (conf_bool(P_APPEND_AT_MYORIGIN) ? QUALIFY_APPEND_AT_MYORIGIN : 0) |
                     (conf_bool(P_APPEND_DOT_MYDOMAIN) ? QUALIFY_APPEND_DOT_MYDOMAIN : 0);
    if (flags == 0 || *addr == '\0' ||
        (s->client.kind != LISTEN_LOCAL && !restrict_in_mynetworks(&s->client.addr)))
        return;
    char out[MAX_ADDR];
    if (qualify_address(addr, conf_str(P_MYORIGIN), conf_str(P_MYDOMAIN), flags, out,
                        sizeof out) > 0)
        str_copy(addr, out, len);
}

/* ---- waiting for remote tables (table/tablememo.h) ----------------- */

static void run_command(struct smtp_session *s, const struct command *c, const char *arg);

static void tables_answered(void *arg)
{
    struct smtp_session *s = arg;
    s->lookups_pending = 0;
    const struct command *c = s->redo;
    char *cmd_arg = s->redo_arg;
    s->redo = NULL;
    s->redo_arg = NULL;
    if (s->state == ST_POLICY) { /* else the session ended meanwhile */
        s->state = s->redo_state;
        run_command(s, c, cmd_arg);
        if (!s->released && s->state != ST_CLOSED && !session_waiting(s))
            s->io->resume(s->ctx);
    }
    free(cmd_arg);
}

/* Called by a command after its lookups and before it acts on them. When a
 * remote table could not answer yet, the command's result is not used: the
 * answers are fetched and the command runs again from the start (input
 * waits meanwhile). 1 when the command must return now. */
static int await_tables(struct smtp_session *s)
{
    if (table_memo_missing(s->memo) == 0)
        return 0;
    char *copy = strdup(s->current_arg);
    if (copy == NULL)
        return 0; /* the lookups read as failed: a 451 follows */
    s->redo = s->current;
    s->redo_arg = copy;
    s->redo_state = s->state;
    s->state = ST_POLICY;
    s->lookups_pending = 1;
    if (table_memo_fetch(s->memo, tables_answered, s))
        tables_answered(s); /* nothing to wait for after all */
    return 1;
}

static void mail_filtered(struct smtp_session *s, const struct milter_result *r)
{
    if (r && milter_refused(s, "MAIL", r, NULL)) {
        s->sender[0] = '\0';
        s->smtputf8 = s->eightbit = 0;
        s->declared_size = 0;
        milter_abort(s->milters);
        return;
    }
    s->discard |= r && r->verdict == MV_DISCARD;
    s->state = ST_MAIL;
    reply(s, "250 2.1.0 Ok");
}

/* ---- local submission (smtpd/localsubmit.h) ------------------------ */

/* A local user sends as its own login or as local_login_sender_maps lets
 * it (ok: what localsubmit_sender_ok() said); the reply is Postfix's for a
 * sender login mismatch. 0, or -1 after replying. */
static int local_sender_check(struct smtp_session *s, const char *addr, int ok)
{
    if (ok > 0)
        return 0;
    if (ok < 0) {
        reply(s, "451 4.3.0 <%s>: Sender address rejected: Temporary lookup failure", addr);
        return -1;
    }
    log_sinfo(s->sid, "NOQUEUE: reject: MAIL from local user %s (uid %u): 553 5.7.1 <%s>: Sender "
             "address rejected: not owned by user %s", s->client.local_login,
             s->client.local_uid, addr, s->client.local_login);
    reply(s, "553 5.7.1 <%s>: Sender address rejected: not owned by user %s", addr,
          s->client.local_login);
    return -1;
}

/* Postfix's pickup line: "ID: uid=N from=<SENDER>". */
static void log_local_queued(struct smtp_session *s)
{
    log_sinfo(s->sid, "%s: uid=%u from=<%s>", queue_file_id(s->qf), s->client.local_uid,
             s->sender);
}

static void cmd_mail(struct smtp_session *s, const char *arg)
{
    if (s->milter_refusal[0]) {
        reply(s, "%s", s->milter_refusal);
        return;
    }
    if (tls_required(s) && !s->tls_active) {
        reject(s, "MAIL", NULL, "530 5.7.0 Must issue a STARTTLS command first");
        return;
    }
    char addr[MAX_ADDR];
    const char *params;
    if (parse_path(arg, "FROM:", addr, sizeof addr, &params) < 0) {
        reply(s, "501 5.5.4 Syntax: MAIL FROM:<address>");
        return;
    }
    char pcopy[4096]; /* far more than the few parameters ESMTP defines */
    int bad = 0;
    if (str_copy(pcopy, params, sizeof pcopy) >= sizeof pcopy) {
        reply(s, "555 5.5.4 MAIL parameters too long");
        bad = -1;
    } else
        bad = mail_params(s, pcopy);
    if (bad < 0) { /* replied already: no lookup may run the command again */
        s->smtputf8 = s->eightbit = 0;
        s->declared_size = 0;
        return;
    }
    qualify_envelope(s, addr, sizeof addr);
    int local_ok = s->client.kind == LISTEN_LOCAL
                       ? localsubmit_sender_ok(s->client.local_login, addr) : 1;
    if (await_tables(s))
        return; /* the lookups above are asked again with their answers */
    if (*addr && !address_ok(addr)) {
        reply(s, "501 5.1.7 Bad sender address syntax");
        bad = -1;
    }
    if (bad == 0 && s->client.kind == LISTEN_LOCAL)
        bad = local_sender_check(s, addr, local_ok);
    if (bad < 0 || check_address_text(s, addr, s->smtputf8, "sender") < 0) {
        s->smtputf8 = s->eightbit = 0;
        s->declared_size = 0;
        return;
    }
    str_copy(s->sender, addr, sizeof s->sender);
    if (s->milters) {
        milter_describe(s); /* AUTH may have happened since HELO */
        int now = milter_mail(s->milters, addr, &s->mres, milter_answered, s);
        milter_then(s, now, mail_filtered);
        return;
    }
    mail_filtered(s, NULL);
}

/* A local recipient that local delivery could not store is refused now,
 * not accepted and bounced later (which would send backscatter). */
static int local_mailbox_ok(const char *addr)
{
    enum addr_class cls;
    /* A failed class lookup is answered later (451 by the restrictions). */
    return addrclass_of_address(addr, &cls) < 0 || cls != AC_LOCAL ||
           strncmp(conf_str(P_LOCAL_TRANSPORT), "maildir:", 8) != 0 ||
           address_mailbox_name_ok(addr);
}

/* "Name: value" with a printable name and no control characters. */
static int is_header_line(const char *h)
{
    const char *colon = strchr(h, ':');
    if (colon == NULL || colon == h)
        return 0;
    for (const char *p = h; p < colon; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
            return 0;
    for (const char *p = colon; *p; p++)
        if ((unsigned char)*p < 0x20 && *p != '\t')
            return 0;
    return 1;
}

static void rcpt_filtered(struct smtp_session *s, const struct milter_result *r);

static void rcpt_decided(struct smtp_session *s, const struct restrict_result *res)
{
    const char *rcpt = s->pending_rcpt;
    if (res->action == RA_REJECT || res->action == RA_DEFER) {
        reject(s, "RCPT", rcpt, "%s", res->reply);
        return;
    }
    if (s->milters) { /* the filters hear of recipients the restrictions accepted */
        int now = milter_rcpt(s->milters, rcpt, &s->mres, milter_answered, s);
        milter_then(s, now, rcpt_filtered);
        return;
    }
    rcpt_filtered(s, NULL);
}

static void rcpt_filtered(struct smtp_session *s, const struct milter_result *r)
{
    const char *rcpt = s->pending_rcpt;
    const struct restrict_result *res = &s->rres; /* what the restrictions said */
    if (r && milter_refused(s, "RCPT", r, rcpt))
        return;
    s->discard |= (r && r->verdict == MV_DISCARD) || res->action == RA_DISCARD;
    s->hold |= res->action == RA_HOLD;
    if (res->prepend[0] && s->prepend[0] == '\0' && is_header_line(res->prepend))
        str_copy(s->prepend, res->prepend, sizeof s->prepend);
    char **n = realloc(s->rcpts, sizeof(char *) * (size_t)(s->nrcpt + 1));
    char *copy = strdup(rcpt);
    if (n)
        s->rcpts = n;
    if (n == NULL || copy == NULL) {
        free(copy);
        reply(s, "452 4.3.1 Insufficient system resources");
        return;
    }
    s->rcpts[s->nrcpt++] = copy;
    s->state = ST_RCPT;
    reply(s, "250 2.1.5 Ok");
}

static void policy_done(void *arg, const struct restrict_result *res)
{
    struct smtp_session *s = arg;
    s->policy_pending = 0;
    if (s->state != ST_POLICY)
        return; /* the session ended meanwhile */
    s->state = s->nrcpt ? ST_RCPT : ST_MAIL;
    rcpt_decided(s, res);
    if (!s->released && s->state != ST_CLOSED)
        s->io->resume(s->ctx);
}

static void apply_restrictions(struct smtp_session *s, const char *rcpt)
{
    str_copy(s->pending_rcpt, rcpt, sizeof s->pending_rcpt);
    snprintf(s->instance, sizeof s->instance, "%s.%lu", s->sid, s->transactions);
    s->rctx = (struct restrict_ctx){
        .client = &s->client.addr,
        .client_name = s->client.name,
        .reverse_client_name = s->client.reverse_name,
        .client_name_tempfail = s->client.name_tempfail,
        .reverse_client_name_tempfail = s->client.reverse_name_tempfail,
        .client_addr = s->client.addr_text,
        .helo = s->helo,
        .sender = s->sender,
        .recipient = s->pending_rcpt,
        .tls = s->tls_active ? &s->tls : NULL,
        .client_port = s->client.port,
        .server_addr = s->client.server_addr_text,
        .server_port = s->client.server_port,
        .protocol_name = proto_name(s),
        .queue_id = "",
        .instance = s->instance,
        .recipient_count = 0, /* as Postfix: known only from DATA on */
        .size = s->declared_size,
        .memo = s->memo,
        .sasl_method = s->sasl_method,
        .sasl_username = s->sasl_username,
        .sasl_sender = s->sasl_sender,
        /* As Postfix's pickup: a local user's mail is not judged by the
         * restriction lists (it may go anywhere, as from the machine; who
         * may submit at all is authorized_submit_users); unknown local
         * recipients are still refused at once. */
        .local_submission = s->client.kind == LISTEN_LOCAL,
    };
    if (restrict_start(&s->reval, &s->rctx, &s->rres, policy_done, s)) {
        rcpt_decided(s, &s->rres);
        return;
    }
    s->state = ST_POLICY; /* input waits until policy_done() */
    s->policy_pending = 1;
}

static void cmd_rcpt(struct smtp_session *s, const char *arg)
{
    char addr[MAX_ADDR];
    const char *params;
    if (parse_path(arg, "TO:", addr, sizeof addr, &params) < 0) {
        reply(s, "501 5.5.4 Syntax: RCPT TO:<address>");
        return;
    }
    if (*params) {
        reply(s, "555 5.5.4 Unsupported option: %s", params);
        return;
    }
    /* RFC 5321 4.5.1: "postmaster" alone must be accepted from anyone, and
     * is this server's postmaster, whatever myorigin says. */
    if (str_ieq(addr, "postmaster"))
        snprintf(addr, sizeof addr, "postmaster@%s", myhostname());
    else
        qualify_envelope(s, addr, sizeof addr);
    /* Every lookup before any reply: a command put aside for table answers
     * runs again from the start, and must not have answered already. */
    int mailbox_ok = local_mailbox_ok(addr);
    if (await_tables(s))
        return;
    if (!address_ok(addr)) {
        reply(s, "501 5.1.3 Bad recipient address syntax");
        return;
    }
    if (check_address_text(s, addr, s->smtputf8, "recipient") < 0)
        return;
    if (!mailbox_ok) {
        reject(s, "RCPT", addr, "550 5.1.1 <%s>: Recipient address rejected: unusable mailbox name",
               addr);
        return;
    }
    if (s->nrcpt >= conf_long(P_SMTPD_RECIPIENT_LIMIT)) {
        reject(s, "RCPT", addr, "452 4.5.3 Error: too many recipients");
        return;
    }
    apply_restrictions(s, addr);
}

static void write_received(struct smtp_session *s)
{
    struct buf b;
    char date[64];
    buf_init(&b, 4096);
    str_rfc5322_date(time(NULL), date, sizeof date);
    strncat(date, " (UTC)", sizeof date - strlen(date) - 1);
    if (s->prepend[0])
        buf_printf(&b, "%s\r\n", s->prepend);
    if (s->client.kind == LISTEN_LOCAL) /* as Postfix writes it for local mail */
        buf_printf(&b, "Received: by %s (keypost, from userid %u)\r\n", myhostname(),
                   s->client.local_uid);
    else
        buf_printf(&b, "Received: from %s (%s [%s])\r\n", s->helo, s->client.name,
                   s->client.addr_text);
    if (s->tls_active) {
        buf_printf(&b, "\t(using %s with cipher %s (%d/%d bits))\r\n", s->tls.protocol,
                   s->tls.cipher, s->tls.bits, s->tls.alg_bits);
        if (conf_bool(P_SMTPD_TLS_RECEIVED_HEADER) && s->tls.trust.has_cert)
            buf_printf(&b, "\t(Client CN \"%s\", Issuer \"%s\" (%s))\r\n",
                       s->tls.trust.subject_cn, s->tls.trust.issuer_cn,
                       s->tls.trust.chain_ok ? "verified OK" : "not verified");
    }
    if (s->sasl_username[0] && conf_bool(P_SMTPD_SASL_AUTHENTICATED_HEADER))
        buf_printf(&b, "\t(Authenticated sender: %s)\r\n", s->sasl_username);
    if (s->client.kind == LISTEN_LOCAL)
        buf_printf(&b, "\tid %s", queue_file_id(s->qf));
    else
        buf_printf(&b, "\tby %s (keypost) with %s id %s", myhostname(), proto_name(s),
                   queue_file_id(s->qf));
    if (s->nrcpt == 1)
        buf_printf(&b, "\r\n\tfor <%s>; %s\r\n", s->rcpts[0], date);
    else
        buf_printf(&b, ";\r\n\t%s\r\n", date);
    queue_write(s->qf, b.data, b.len);
    buf_free(&b);
}

static int emit_data(void *arg, const char *p, size_t n)
{
    struct smtp_session *s = arg;
    return queue_write(s->qf, p, n);
}

/* The envelope as queued: sender and recipients through the canonical
 * maps, then the recipients' aliases expanded. -1 with err set. */
static int final_envelope(struct smtp_session *s, char *sender, struct expansion *x, char *err,
                          size_t len)
{
    str_copy(sender, s->sender, MAX_ADDR);
    char **rcpts = calloc((size_t)s->nrcpt + 1, sizeof *rcpts);
    int bad = rcpts == NULL || rewrite_sender(sender, MAX_ADDR) < 0;
    for (int i = 0; !bad && i < s->nrcpt; i++) {
        rcpts[i] = malloc(MAX_ADDR);
        bad = rcpts[i] == NULL;
        if (!bad) {
            str_copy(rcpts[i], s->rcpts[i], MAX_ADDR);
            bad = rewrite_recipient(rcpts[i], MAX_ADDR) < 0;
        }
    }
    if (bad)
        snprintf(err, len, "canonical address lookup failed");
    else if (expand_recipients(rcpts, s->rcpts, s->nrcpt, x, err, len) != EXPAND_OK)
        bad = 1;
    for (int i = 0; rcpts && i < s->nrcpt; i++)
        free(rcpts[i]);
    free(rcpts);
    return bad ? -1 : 0;
}

static void cmd_data(struct smtp_session *s, const char *arg)
{
    if (*arg) {
        reply(s, "501 5.5.4 Syntax: DATA");
        return;
    }
    /* Canonical rewriting and aliases happen once, now, so that the queue
     * holds the final envelope. */
    struct expansion x;
    char err[600], sender[MAX_ADDR];
    int bad = final_envelope(s, sender, &x, err, sizeof err);
    if (await_tables(s)) {
        if (bad == 0)
            expansion_free(&x);
        return;
    }
    if (bad < 0) {
        reject(s, "DATA", NULL, "451 4.3.0 Error: %s; message not accepted, try again later",
               err);
        return;
    }
    char client[400];
    snprintf(client, sizeof client, "%s[%s]", s->client.name, s->client.addr_text);
    struct envelope env = {
        .arrival = time(NULL),
        .sender = sender,
        .rcpts = x.addrs,
        .orig_rcpts = x.origs,
        .nrcpt = x.n,
        .client = client,
        .helo = s->helo,
        .proto = (char *)proto_name(s),
        .hold = s->hold,
        .smtputf8 = s->smtputf8,
        .eightbit = s->eightbit,
        .local = s->client.kind == LISTEN_LOCAL,
        .local_uid = s->client.local_uid,
    };
    s->qf = queue_create(conf_str(P_QUEUE_DIRECTORY), &env);
    if ((s->milters || rewrite_headers_wanted()) && s->qf) { /* kept for a replacement file */
        s->queued = x;
        s->have_queued = 1;
        s->queued_arrival = env.arrival;
        str_copy(s->queued_sender, sender, sizeof s->queued_sender);
        /* a copy: a filter's changes replace the queue file (and its qfile) */
        str_copy(s->minfo_qid, queue_file_id(s->qf), sizeof s->minfo_qid);
    } else
        expansion_free(&x);
    if (s->qf == NULL) {
        log_swarn(s->sid, "cannot create queue file in %s: %m", conf_str(P_QUEUE_DIRECTORY));
        reply(s, "451 4.3.0 Error: queue file write error");
        return;
    }
    if (s->client.kind == LISTEN_LOCAL)
        log_local_queued(s);
    else if (s->sasl_username[0]) /* as Postfix */
        log_sinfo(s->sid, "%s: client=%s, sasl_method=%s, sasl_username=%s%s%s",
                  queue_file_id(s->qf), client, s->sasl_method, s->sasl_username,
                  s->sasl_sender[0] ? ", sasl_sender=" : "", s->sasl_sender);
    else
        log_sinfo(s->sid, "%s: client=%s", queue_file_id(s->qf), client);
    write_received(s);
    data_reader_init(&s->dr, (size_t)conf_long(P_MESSAGE_SIZE_LIMIT), emit_data, s);
    s->state = ST_DATA;
    reply(s, "354 End data with <CR><LF>.<CR><LF>");
}

static void cmd_rset(struct smtp_session *s, const char *arg)
{
    (void)arg;
    reset_transaction(s);
    reply(s, "250 2.0.0 Ok");
}

static void cmd_noop(struct smtp_session *s, const char *arg)
{
    (void)arg;
    reply(s, "250 2.0.0 Ok");
}

static void cmd_quit(struct smtp_session *s, const char *arg)
{
    (void)arg;
    reply(s, "221 2.0.0 Bye");
    close_session(s);
}

static void cmd_vrfy(struct smtp_session *s, const char *arg)
{
    if (*arg == '\0') {
        reply(s, "501 5.5.4 Syntax: VRFY address");
        return;
    }
    reply(s, "252 2.0.0 Cannot VRFY user, but will accept message and attempt delivery");
}

static void cmd_help(struct smtp_session *s, const char *arg)
{
    (void)arg;
    reply(s, "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP STARTTLS AUTH");
}

static void cmd_starttls(struct smtp_session *s, const char *arg)
{
    if (*arg) {
        reply(s, "501 5.5.4 Syntax: STARTTLS");
        return;
    }
    if (s->tls_active) {
        reply(s, "554 5.5.1 Error: TLS already active");
        return;
    }
    if (!s->client.tls_available) {
        reply(s, "502 5.5.1 Error: command not implemented");
        return;
    }
    reply(s, "220 2.0.0 Ready to start TLS");
    s->state = ST_TLS;
    s->io->start_tls(s->ctx);
}

/* ---- SASL AUTH (RFC 4954; sasl/dovecot.h, sasl/saslsrv.h) ----------- */

static void auth_done(struct smtp_session *s);

/* EXTERNAL's login when the client's certificate key is listed: 1, else 0. */
static int external_login(const struct smtp_session *s, char *login, size_t len)
{
    if (!s->tls_active || !s->tls.trust.has_cert)
        return 0;
    return saslsrv_external_login(s->tls.trust.pubkey_fp, login, len) > 0;
}

/* The mechanisms this session may use now, or NULL when AUTH is off. */
static const char *sasl_offer(struct smtp_session *s)
{
    if (!conf_bool(P_SMTPD_SASL_AUTH_ENABLE) || s->sasl_username[0] ||
        (conf_bool(P_SMTPD_TLS_AUTH_ONLY) && !s->tls_active))
        return NULL;
    char login[256];
    return saslsrv_mechanisms(s->tls_active, external_login(s, login, sizeof login));
}

static void tables_answered(void *arg);

/* EHLO lists Dovecot's mechanisms: while a worker has not heard them yet,
 * EHLO is put aside as a command waiting for tables is, and runs again
 * once the handshake is over. 1 when the command must return now. */
static int await_sasl_mechanisms(struct smtp_session *s)
{
    if (!conf_bool(P_SMTPD_SASL_AUTH_ENABLE) ||
        (conf_bool(P_SMTPD_TLS_AUTH_ONLY) && !s->tls_active))
        return 0;
    char *copy = strdup(s->current_arg);
    if (copy == NULL)
        return 0;
    if (!dovecot_mechanisms_wait(tables_answered, s)) {
        free(copy);
        return 0;
    }
    s->redo = s->current;
    s->redo_arg = copy;
    s->redo_state = s->state;
    s->state = ST_POLICY;
    s->lookups_pending = 1;
    return 1;
}

static int mech_offered(const char *list, const char *mech)
{
    char copy[1200], *items[64];
    str_copy(copy, list ? list : "", sizeof copy);
    int n = str_split_list(copy, items, 64);
    for (int i = 0; i < n; i++)
        if (strcmp(items[i], mech) == 0)
            return 1;
    return 0;
}

static void auth_end_exchange(struct smtp_session *s)
{
    dovecot_auth_free(s->sasl);
    s->sasl = NULL;
    s->sasl_mech[0] = '\0';
    if (s->state & (ST_AUTH_WAIT | ST_AUTH_READ))
        s->state = ST_HELO;
}

static void auth_success(struct smtp_session *s, const char *user)
{
    str_copy(s->sasl_method, s->sasl_mech, sizeof s->sasl_method);
    str_copy(s->sasl_username, user, sizeof s->sasl_username);
    for (char *p = s->sasl_username; *p; p++) /* it goes into headers and logs */
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    auth_end_exchange(s);
    reply(s, "235 2.7.0 Authentication successful");
}

/* The delayed 535 (and, past smtpd_client_auth_failure_limit, the end). */

/* AUTH lines carry no session id: fail2ban's postfix-sasl filter wants
 * them to end as Postfix's do. */
#define log_auth_warn(...) log_warn(NULL, __VA_ARGS__)

static void auth_failure_reply(void *arg)
{
    struct smtp_session *s = arg;
    s->sasl_timer = NULL;
    s->sasl_pending = 0;
    if (s->state == ST_CLOSED)
        return;
    auth_end_exchange(s);
    reply(s, "535 5.7.8 Error: authentication failed: %s", s->sasl_reason);
    long limit = conf_long(P_SMTPD_CLIENT_AUTH_FAILURE_LIMIT);
    if (s->state != ST_CLOSED && limit > 0 &&
        anvil_rate(&s->client.addr, ANVIL_AUTH_FAILURE, conf_long(P_ANVIL_RATE_TIME_UNIT), 0) >=
            limit) {
        log_auth_warn("%s[%s]: too many failed AUTH attempts; disconnecting",
                 s->client.name, s->client.addr_text);
        reply(s, "421 4.7.0 %s Error: too many failed AUTH attempts", myhostname());
        close_session(s);
    }
    auth_done(s);
}

/* A failed login is counted for the client and answered after a delay
 * that grows with the client's failures, without holding the worker. */
static void auth_failure(struct smtp_session *s, const char *reason)
{
    log_auth_warn("%s[%s]: SASL %s authentication failed: %s", s->client.name,
             s->client.addr_text, s->sasl_mech, *reason ? reason : "authentication failure");
    str_copy(s->sasl_reason, *reason ? reason : "authentication failure", sizeof s->sasl_reason);
    long n = anvil_rate(&s->client.addr, ANVIL_AUTH_FAILURE, conf_long(P_ANVIL_RATE_TIME_UNIT), 1);
    s->state = ST_AUTH_WAIT;
    s->sasl_pending = 1;
    s->sasl_timer = saslsrv_timer_start(saslsrv_failure_delay(n > 0 ? n : 1), auth_failure_reply, s);
    if (s->sasl_timer == NULL)
        auth_failure_reply(s);
}

/* After an answer that came from the loop: take input again. */
static void auth_done(struct smtp_session *s)
{
    if (!s->released && s->state != ST_CLOSED && !session_waiting(s))
        s->io->resume(s->ctx);
}

static void dovecot_answered(void *arg, enum dovecot_answer a, const char *text)
{
    struct smtp_session *s = arg;
    s->sasl_pending = 0;
    if (s->state == ST_CLOSED) {
        auth_end_exchange(s);
        return;
    }
    if (a == DA_CONT) {
        s->state = ST_AUTH_READ;
        reply(s, "334 %s", text);
    } else if (a == DA_OK) {
        auth_success(s, text);
    } else if (a == DA_FAIL) {
        auth_failure(s, text);
    } else {
        log_auth_warn("%s[%s]: SASL %s authentication aborted: %s", s->client.name,
                 s->client.addr_text, s->sasl_mech, text);
        auth_end_exchange(s);
        reply(s, "454 4.7.0 Temporary authentication failure");
    }
    auth_done(s);
}

/* EXTERNAL: the certificate names the login; the client may only ask for
 * that same identity (an empty authorization identity means it). */
static void external_step(struct smtp_session *s, const char *authzid)
{
    char login[256];
    if (!external_login(s, login, sizeof login)) {
        auth_failure(s, "no login for the client certificate");
        return;
    }
    if (*authzid && strcmp(authzid, login) != 0) {
        auth_failure(s, "authorization identity not allowed");
        return;
    }
    auth_success(s, login);
}

/* Give a base64 response (never NULL) to the exchange in progress. */
static void auth_step(struct smtp_session *s, const char *b64)
{
    unsigned char decoded[4096];
    long n = saslsrv_b64_decode(b64, decoded, sizeof decoded);
    if (n < 0) {
        auth_end_exchange(s);
        reply(s, "501 5.5.2 Cannot decode response");
        return;
    }
    if (strcmp(s->sasl_mech, "EXTERNAL") == 0) {
        if (memchr(decoded, '\0', (size_t)n))
            auth_failure(s, "malformed authorization identity");
        else
            external_step(s, (const char *)decoded);
        return;
    }
    s->state = ST_AUTH_WAIT;
    s->sasl_pending = 1;
    dovecot_auth_continue(s->sasl, b64);
}

/* A line read while the client answers a 334 challenge. */
static void auth_response(struct smtp_session *s, const char *line)
{
    if (strcmp(line, "*") == 0) {
        auth_end_exchange(s);
        reply(s, "501 5.7.0 Authentication aborted");
        return;
    }
    auth_step(s, line);
}

/* Refusals before any exchange starts; 1 when refused (replied). */
static int auth_refused(struct smtp_session *s)
{
    if (!conf_bool(P_SMTPD_SASL_AUTH_ENABLE)) {
        reply(s, "503 5.5.1 Error: authentication not enabled");
        return 1;
    }
    if (s->sasl_username[0]) {
        reply(s, "503 5.5.1 Error: already authenticated");
        return 1;
    }
    if (conf_bool(P_SMTPD_TLS_AUTH_ONLY) && !s->tls_active) {
        reply(s, "538 5.7.11 Encryption required for requested authentication mechanism");
        return 1;
    }
    long unit = conf_long(P_ANVIL_RATE_TIME_UNIT);
    long rate = conf_long(P_SMTPD_CLIENT_AUTH_RATE_LIMIT);
    if (rate > 0 && anvil_rate(&s->client.addr, ANVIL_AUTH_COMMAND, unit, 1) > rate &&
        !restrict_in_limit_exceptions(&s->client.addr)) {
        log_auth_warn("AUTH command rate limit exceeded: %ld from %s[%s]", rate,
                 s->client.name, s->client.addr_text);
        reply(s, "450 4.7.1 Error: too many AUTH commands from %s", s->client.addr_text);
        return 1;
    }
    long limit = conf_long(P_SMTPD_CLIENT_AUTH_FAILURE_LIMIT);
    if (limit > 0 && anvil_rate(&s->client.addr, ANVIL_AUTH_FAILURE, unit, 0) >= limit) {
        log_auth_warn("%s[%s]: too many failed AUTH attempts; disconnecting",
                 s->client.name, s->client.addr_text);
        reply(s, "421 4.7.0 %s Error: too many failed AUTH attempts", myhostname());
        close_session(s);
        return 1;
    }
    return 0;
}

/* "AUTH MECHANISM [initial-response]" */
static void cmd_auth(struct smtp_session *s, const char *arg)
{
    if (auth_refused(s))
        return;
    char mech[64];
    const char *initial = str_first_word(arg, mech, sizeof mech);
    for (char *p = mech; *p; p++)
        *p = (char)toupper((unsigned char)*p);
    if (mech[0] == '\0' || strchr(initial, ' ')) {
        reply(s, "501 5.5.4 Syntax: AUTH mechanism [initial-response]");
        return;
    }
    if (!mech_offered(sasl_offer(s), mech)) {
        /* Dovecot not heard from yet (down): say so, not "unknown" */
        if (strcmp(mech, "EXTERNAL") != 0 && dovecot_mechanisms(0, 0) == NULL)
            reply(s, "454 4.7.0 Temporary authentication failure");
        else
            reply(s, "504 5.5.4 Unrecognized authentication type");
        return;
    }
    str_copy(s->sasl_mech, mech, sizeof s->sasl_mech);
    const char *resp = strcmp(initial, "=") == 0 ? "" : *initial ? initial : NULL;
    unsigned char scratch[4096];
    if (resp && saslsrv_b64_decode(resp, scratch, sizeof scratch) < 0) {
        s->sasl_mech[0] = '\0';
        reply(s, "501 5.5.2 Cannot decode response");
        return;
    }
    if (strcmp(mech, "EXTERNAL") == 0) {
        if (resp)
            auth_step(s, resp);
        else {
            s->state = ST_AUTH_READ;
            reply(s, "334 ");
        }
        return;
    }
    s->state = ST_AUTH_WAIT;
    s->sasl_pending = 1;
    s->sasl = dovecot_auth_start(mech, resp, s->client.server_addr_text, s->client.addr_text,
                                 s->tls_active, dovecot_answered, s);
    if (s->sasl == NULL) {
        s->sasl_pending = 0;
        auth_end_exchange(s);
        reply(s, "454 4.7.0 Temporary authentication failure");
    }
}

/* ---- end of SASL AUTH ------------------------------------------------- */

struct command {
    const char *verb;
    unsigned states;        /* where it is allowed */
    const char *wrong_state; /* reply otherwise */
    void (*handler)(struct smtp_session *, const char *);
};

static const struct command commands[] = {
    {"EHLO", ST_ANY_COMMAND, NULL, cmd_ehlo},
    {"HELO", ST_ANY_COMMAND, NULL, cmd_helo},
    {"MAIL", ST_HELO, NULL, cmd_mail},
    {"RCPT", ST_MAIL | ST_RCPT, "503 5.5.1 Error: need MAIL command", cmd_rcpt},
    {"DATA", ST_RCPT, NULL, cmd_data},
    {"RSET", ST_ANY_COMMAND, NULL, cmd_rset},
    {"NOOP", ST_ANY_COMMAND, NULL, cmd_noop},
    {"QUIT", ST_ANY_COMMAND, NULL, cmd_quit},
    {"VRFY", ST_ANY_COMMAND, NULL, cmd_vrfy},
    {"HELP", ST_ANY_COMMAND, NULL, cmd_help},
    {"STARTTLS", ST_CONNECT | ST_HELO, "503 5.5.1 Error: MAIL transaction in progress",
     cmd_starttls},
    {"AUTH", ST_HELO, "503 5.5.1 Error: MAIL transaction in progress", cmd_auth},
};

static void wrong_state(struct smtp_session *s, const struct command *c)
{
    if (s->state == ST_CONNECT && strcmp(c->verb, "STARTTLS") != 0)
        reply(s, "503 5.5.1 Error: send HELO/EHLO first");
    else if (strcmp(c->verb, "MAIL") == 0)
        reply(s, "503 5.5.1 Error: nested MAIL command");
    else if (strcmp(c->verb, "DATA") == 0)
        reply(s, s->state == ST_MAIL ? "503 5.5.1 Error: need RCPT command"
                                     : "503 5.5.1 Error: need MAIL command");
    else
        reply(s, "%s", c->wrong_state);
}

static void run_command(struct smtp_session *s, const struct command *c, const char *arg)
{
    s->current = c;
    s->current_arg = arg;
    struct table_memo *before = table_memo_use(s->memo);
    c->handler(s, arg);
    table_memo_use(before);
}

static void dispatch(struct smtp_session *s, char *line)
{
    char *sp = line + strcspn(line, " ");
    char *arg = sp;
    if (*sp) {
        *sp = '\0';
        arg = str_trim(sp + 1);
    }
    str_copy(s->last_cmd, "UNKNOWN", sizeof s->last_cmd);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        const struct command *c = &commands[i];
        if (strcasecmp(line, c->verb) != 0)
            continue;
        str_copy(s->last_cmd, c->verb, sizeof s->last_cmd);
        if (s->state & c->states) {
            table_memo_clear(s->memo); /* a new decision: fresh answers */
            run_command(s, c, arg);
        } else
            wrong_state(s, c);
        return;
    }
    reply(s, "502 5.5.2 Error: command not recognized");
}

/* smtpd_forbid_bare_newline: "reject" refuses; "normalize", "yes" and "no"
 * all accept a bare line end as CRLF but never let one end DATA ("no" is
 * safer than Postfix's, which accepts "<LF>.<LF>" as the end). */
static int bare_newline_rejected(void)
{
    return strcmp(conf_str(P_SMTPD_FORBID_BARE_NEWLINE), "reject") == 0;
}

/* As Postfix: the reply, a log line, and the end of the session, since a
 * client that mixes line ends cannot be trusted to agree on what follows. */
static void refuse_bare_newline(struct smtp_session *s, const char *what)
{
    log_sinfo(s->sid, "bare %s received from %s[%s]; disconnecting", what, s->client.name,
              s->client.addr_text);
    reply(s, "550 5.5.2 Error: bare %s received", what);
    close_session(s);
}

/* Check one complete command line (without its line end). */
static void handle_line(struct smtp_session *s, char *line, size_t len, int bare_lf)
{
    if (s->state == ST_AUTH_READ && s->line_too_long) { /* RFC 4954's reply */
        s->line_too_long = 0;
        auth_end_exchange(s);
        reply(s, "500 5.5.6 Authentication Exchange line is too long");
        return;
    }
    if (s->line_too_long) {
        s->line_too_long = 0;
        reply(s, "500 5.5.2 Error: line too long");
        return;
    }
    if (bare_lf && bare_newline_rejected()) {
        refuse_bare_newline(s, "<LF>");
        return;
    }
    if (memchr(line, '\0', len) || memchr(line, '\r', len)) {
        reply(s, "500 5.5.2 Error: bad character in command");
        return;
    }
    if (s->shutting_down) {
        reply(s, "421 4.3.2 %s Service shutting down, closing transmission channel",
              myhostname());
        close_session(s);
        return;
    }
    if (s->state == ST_AUTH_READ)
        auth_response(s, line);
    else
        dispatch(s, line);
}

/* ---- end of data ------------------------------------------------------ */

static void finish_message(struct smtp_session *s);

static void commit_done(void *arg, int ok)
{
    struct smtp_session *s = arg;
    s->commit_pending = 0;
    const char *id = queue_file_id(s->qf);
    if (ok) {
        s->messages++;
        metrics_accepted();
        log_sinfo(s->sid, "%s: from=<%s>, size=%zu, nrcpt=%d (queue %s)", id, s->sender,
                  s->dr.size, s->nrcpt, s->hold ? "hold" : "active");
        queue_notify(conf_str(P_QUEUE_DIRECTORY), id);
        reply(s, "250 2.0.0 Ok: queued as %s", id);
        queue_close(s->qf);
    } else {
        log_swarn(s->sid, "%s: queue file commit failed", id);
        reply(s, "451 4.3.0 Error: queue file write error");
        queue_abort(s->qf);
    }
    s->qf = NULL;
    if (s->released) {
        session_release(s);
        return;
    }
    if (s->state == ST_COMMIT) {
        reset_transaction(s);
        s->state = ST_HELO;
        s->io->resume(s->ctx);
    }
}

static void commit_message(struct smtp_session *s)
{
    s->state = ST_COMMIT;
    s->commit_pending = 1;
    commit_submit(s->qf, commit_done, s);
}

/* The end of a transaction that keypost did not accept. */
static void end_refused(struct smtp_session *s, const char *text)
{
    s->state = ST_HELO;
    reset_transaction(s);
    reply(s, "%s", text);
    if (strncmp(text, "421", 3) == 0)
        close_session(s);
}

/* The envelope as queued at DATA (for the filters' changes). */
static struct envelope queued_envelope(struct smtp_session *s, char *client, size_t len)
{
    snprintf(client, len, "%s[%s]", s->client.name, s->client.addr_text);
    return (struct envelope){
        .arrival = s->queued_arrival, .sender = s->queued_sender, .rcpts = s->queued.addrs,
        .orig_rcpts = s->queued.origs, .nrcpt = s->queued.n, .client = client,
        .helo = s->helo, .proto = (char *)proto_name(s), .hold = s->hold,
        .smtputf8 = s->smtputf8, .eightbit = s->eightbit};
}

/* The filters' changes written into the queue file, under the same id. */
static int apply_filter_changes(struct smtp_session *s)
{
    char client[400], err[300];
    struct envelope env = queued_envelope(s, client, sizeof client);
    struct qfile *rep = milter_apply(s->milters, s->qf, &env, err, sizeof err);
    if (rep && queue_replace(s->qf, rep) == 0) {
        s->qf = rep;
        return 0;
    }
    log_swarn(s->sid, "%s: cannot apply the filters' changes: %s", queue_file_id(s->qf),
              rep ? "cannot replace the queue file" : err);
    queue_abort(rep);
    return -1;
}

static void message_filtered(struct smtp_session *s, const struct milter_result *r)
{
    const char *id = queue_file_id(s->qf);
    if (r->verdict == MV_DISCARD) {
        log_sinfo(s->sid, "%s: milter-discard: END-OF-MESSAGE from %s[%s]: milter triggers "
                  "DISCARD action; from=<%s> proto=%s helo=<%s>", id, s->client.name,
                  s->client.addr_text, s->sender, proto_name(s), s->helo);
        char text[100];
        snprintf(text, sizeof text, "250 2.0.0 Ok: discarded as %s", id);
        end_refused(s, text);
        return;
    }
    if (r->verdict != MV_CONTINUE) {
        log_sinfo(s->sid, "%s: milter-reject: END-OF-MESSAGE from %s[%s]: %s; from=<%s> "
                  "proto=%s helo=<%s>", id, s->client.name, s->client.addr_text, r->reply,
                  s->sender, proto_name(s), s->helo);
        end_refused(s, r->reply);
        return;
    }
    if (milter_changed(s->milters) && apply_filter_changes(s) < 0) {
        end_refused(s, "451 4.3.0 Error: queue file write error");
        return;
    }
    if (r->quarantine) {
        queue_set_hold(s->qf);
        log_sinfo(s->sid, "%s: milter-hold: END-OF-MESSAGE from %s[%s]: milter triggers HOLD "
                  "action (%s); from=<%s> proto=%s helo=<%s>", queue_file_id(s->qf),
                  s->client.name, s->client.addr_text, r->reason, s->sender, proto_name(s),
                  s->helo);
    }
    commit_message(s);
}

/* ---- the end of a message: header rewriting, filters, commit ---------- */

#define HEADER_BLOCK_MAX (1024 * 1024)

static void message_received(struct smtp_session *s);

static void eom_tables_answered(void *arg)
{
    struct smtp_session *s = arg;
    s->lookups_pending = 0;
    if (s->state != ST_POLICY)
        return; /* the session ended meanwhile */
    s->state = ST_DATA;
    message_received(s);
    if (!s->released && s->state != ST_CLOSED && !session_waiting(s))
        s->io->resume(s->ctx);
}

/* The message's header block (up to the empty line), read back from the
 * queue file; *body is where the body starts. NULL when unreadable. */
static char *read_header_block(int fd, size_t *len, off_t *body)
{
    off_t start = lseek(fd, 0, SEEK_CUR);
    char *block = malloc(HEADER_BLOCK_MAX + 1);
    ssize_t got = block && start >= 0 ? pread(fd, block, HEADER_BLOCK_MAX, start) : -1;
    if (got < 0) {
        free(block);
        return NULL;
    }
    block[got] = '\0';
    char *end = strstr(block, "\r\n\r\n");
    size_t n = strncmp(block, "\r\n", 2) == 0 ? 0 : end ? (size_t)(end - block) + 2
                                                          : (size_t)got;
    *len = n;
    *body = start + (off_t)n;
    return block;
}

/* Write headers plus the body from fd at body into a replacement of qf. */
static int replace_headers(struct smtp_session *s, const struct buf *headers, int fd, off_t body)
{
    char client[400];
    struct envelope env = queued_envelope(s, client, sizeof client);
    struct qfile *rep = queue_create_replacement(s->qf, &env);
    int bad = rep == NULL || queue_write(rep, headers->data, headers->len) < 0;
    char chunk[65536];
    for (ssize_t got = 1; !bad && got > 0; body += got) {
        got = pread(fd, chunk, sizeof chunk, body);
        bad = got < 0 || (got > 0 && queue_write(rep, chunk, (size_t)got) < 0);
    }
    if (bad || queue_replace(s->qf, rep) < 0) {
        queue_abort(rep);
        return -1;
    }
    s->qf = rep;
    return 0;
}

/* canonical_maps on the headers' addresses (addr/hdrrewrite.h). 0 go on,
 * 1 waiting for table answers, -1 refused (replied). */
static int canonical_headers(struct smtp_session *s)
{
    int fd = queue_message_fd(s->qf);
    size_t n = 0;
    off_t body = 0;
    char *block = fd < 0 ? NULL : read_header_block(fd, &n, &body);
    struct buf out;
    buf_init(&out, 2 * HEADER_BLOCK_MAX); /* room for every address to grow */
    struct table_memo *before = table_memo_use(s->memo);
    int r = block ? hdr_rewrite_block(block, n, &out) : -2;
    table_memo_use(before);
    free(block);
    int result = 0;
    if (table_memo_missing(s->memo)) { /* rewritten again when the answers are in */
        s->state = ST_POLICY;
        s->lookups_pending = 1;
        result = 1;
        if (table_memo_fetch(s->memo, eom_tables_answered, s) != 0) {
            s->state = ST_DATA; /* cannot wait: a failed lookup */
            s->lookups_pending = 0;
            result = 0;
            r = -1;
        }
    }
    if (result == 0 && r == 1 && replace_headers(s, &out, fd, body) < 0)
        r = -2;
    if (result == 0 && r < 0) {
        const char *id = queue_file_id(s->qf);
        log_swarn(s->sid, "%s: %s", id, r == -1 ? "canonical address lookup failed for a header"
                                              : "cannot rewrite the message headers");
        end_refused(s, "451 4.3.0 Error: temporary failure; message not accepted, try again "
                       "later");
        result = -1;
    }
    buf_free(&out);
    if (fd >= 0)
        close(fd);
    return result;
}

static void message_received(struct smtp_session *s)
{
    if (rewrite_headers_wanted() && canonical_headers(s) != 0)
        return;
    if (s->milters) {
        int fd = queue_message_fd(s->qf);
        if (fd < 0) {
            log_swarn(s->sid, "%s: cannot read the message back for the filters",
                     queue_file_id(s->qf));
            end_refused(s, "451 4.3.0 Error: queue file write error");
            return;
        }
        int now = milter_message(s->milters, fd, &s->mres, milter_answered, s);
        milter_then(s, now, message_filtered);
        return;
    }
    commit_message(s);
}

static void finish_message(struct smtp_session *s)
{
    const char *id = queue_file_id(s->qf);
    const char *err = NULL;
    if (s->dr.too_big)
        err = "552 5.3.4 Error: message file too big";
    else if ((s->dr.bare_lf || s->dr.bare_cr) && bare_newline_rejected()) {
        log_reject(s, "END-OF-MESSAGE",
                   s->dr.bare_lf ? "550 5.5.2 Error: bare <LF> received"
                                 : "550 5.5.2 Error: bare <CR> received", NULL);
        reset_transaction(s);
        refuse_bare_newline(s, s->dr.bare_lf ? "<LF>" : "<CR>");
        return;
    } else if (s->dr.write_error)
        err = "451 4.3.0 Error: queue file write error";
    if (err) {
        log_reject(s, "END-OF-MESSAGE", err, NULL);
        s->state = ST_HELO;
        reset_transaction(s);
        reply(s, "%s", err);
        return;
    }
    if (s->dr.bare_lf || s->dr.bare_cr)
        log_sinfo(s->sid, "%s: bare %s normalized to <CR><LF> in message from %s[%s]", id,
                  s->dr.bare_lf && s->dr.bare_cr ? "<LF> and <CR>" : s->dr.bare_lf ? "<LF>"
                                                                              : "<CR>",
                  s->client.name, s->client.addr_text);
    if (s->discard) {
        log_sinfo(s->sid, "%s: discard: END-OF-MESSAGE from %s[%s]: an access rule said DISCARD; "
                  "from=<%s>", id, s->client.name, s->client.addr_text, s->sender);
        reply(s, "250 2.0.0 Ok: discarded as %s", id);
        s->state = ST_HELO;
        reset_transaction(s);
        return;
    }
    message_received(s);
}

/* ---- input ------------------------------------------------------------ */

static size_t feed_data(struct smtp_session *s, const char *p, size_t n)
{
    int done = 0;
    size_t used = data_reader_feed(&s->dr, p, n, &done);
    if (done)
        finish_message(s);
    return used;
}

/* Take one line from p (up to and including LF); returns bytes used or 0
 * when no LF is there yet (the bytes are kept, within the line limit). */
static size_t feed_line(struct smtp_session *s, const char *p, size_t n)
{
    const char *nl = memchr(p, '\n', n);
    size_t take = nl ? (size_t)(nl - p) + 1 : n;
    size_t content = nl ? take - 1 : take;
    if (!s->line_too_long && buf_append(&s->line, p, content) < 0) {
        s->line_too_long = 1;
        buf_reset(&s->line);
    }
    if (!nl)
        return take;
    int bare_lf = !(s->line.len && s->line.data[s->line.len - 1] == '\r');
    if (!bare_lf)
        s->line.data[--s->line.len] = '\0';
    handle_line(s, s->line.data ? s->line.data : (char *)"", s->line.len, bare_lf);
    buf_reset(&s->line);
    return take;
}

size_t session_feed(struct smtp_session *s, const char *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (s->state & (ST_COMMIT | ST_TLS | ST_CLOSED | ST_POLICY | ST_AUTH_WAIT))
            break;
        if (s->state == ST_DATA)
            i += feed_data(s, p + i, n - i);
        else
            i += feed_line(s, p + i, n - i);
    }
    return i;
}

/* ---- lifecycle -------------------------------------------------------- */

struct smtp_session *session_new(const struct session_io *io, void *ctx,
                                 const struct session_client *client)
{
    static unsigned long counter;
    struct smtp_session *s = calloc(1, sizeof *s);
    if (s)
        s->memo = table_memo_new();
    if (s == NULL || s->memo == NULL) {
        free(s);
        return NULL;
    }
    s->io = io;
    s->ctx = ctx;
    s->client = *client;
    s->state = ST_CONNECT;
    str_copy(s->last_cmd, "CONNECT", sizeof s->last_cmd);
    s->tls_active = client->kind == LISTEN_SMTPS;
    /* Room for the line end, which is stripped after the length check. */
    buf_init(&s->line, (size_t)conf_long(P_LINE_LENGTH_LIMIT) + 1);
    snprintf(s->sid, sizeof s->sid, "S%05lX%06lX", (unsigned long)getpid() & 0xfffff,
             ++counter & 0xffffff);
    return s;
}

const char *session_id(const struct smtp_session *s)
{
    return s->sid;
}

void session_start(struct smtp_session *s, const char *refusal)
{
    log_sinfo(s->sid, "connect from %s[%s]:%d", s->client.name, s->client.addr_text,
              s->client.port);
    if (refusal) {
        log_swarn(s->sid, "refusing %s[%s]: %s", s->client.name, s->client.addr_text, refusal);
        reply(s, "421 4.7.0 %s Error: %s", myhostname(), refusal);
        close_session(s);
        return;
    }
    /* The filters are connected now, so that they are ready by HELO. */
    milter_describe(s);
    s->milters = milter_open(&s->minfo, s->client.kind == LISTEN_LOCAL);
    if (s->milters)
        milter_set_log_id(s->milters, s->sid);
    if (s->client.kind == LISTEN_SMTPS)
        return; /* the banner follows the handshake */
    reply(s, "220 %s", conf_str(P_SMTPD_BANNER));
}

static void require_client_cert(struct smtp_session *s)
{
    if (!conf_bool(P_SMTPD_TLS_REQ_CCERT) ||
        strcmp(conf_str(P_SMTPD_TLS_SECURITY_LEVEL), "encrypt") != 0)
        return;
    const char *why = NULL;
    if (!s->tls.trust.has_cert)
        why = "No client certificate presented";
    else if (!s->tls.trust.trusted)
        why = "Client certificate not trusted";
    if (why) {
        reject(s, "CONNECT", NULL, "421 4.7.1 %s Error: %s", myhostname(), why);
        close_session(s);
    }
}

void session_tls_established(struct smtp_session *s, const struct tls_peer *peer)
{
    s->tls = *peer;
    s->tls_active = 1;
    tls_log_peer(s->sid, s->client.name, s->client.addr_text, peer);
    /* RFC 3207: forget everything learned before the handshake. */
    reset_transaction(s);
    s->sasl_username[0] = s->sasl_method[0] = '\0';
    s->helo[0] = '\0';
    s->esmtp = 0;
    s->state = ST_CONNECT;
    require_client_cert(s);
    if (s->state == ST_CLOSED)
        return;
    if (s->client.kind == LISTEN_SMTPS)
        reply(s, "220 %s", conf_str(P_SMTPD_BANNER));
}

void session_timeout(struct smtp_session *s)
{
    const char *after = s->state == ST_DATA ? "DATA" : s->last_cmd;
    log_sinfo(s->sid, "timeout after %s from %s[%s]", after, s->client.name,
              s->client.addr_text);
    reply(s, "421 4.4.2 %s Error: timeout exceeded", myhostname());
    if (s->state == ST_DATA)
        reset_transaction(s);
    close_session(s);
}

void session_shutdown(struct smtp_session *s)
{
    s->shutting_down = 1;
    if (session_is_idle(s)) {
        reply(s, "421 4.3.2 %s Service shutting down, closing transmission channel",
              myhostname());
        close_session(s);
    }
}

int session_waiting(const struct smtp_session *s)
{
    return s->commit_pending || s->policy_pending || s->lookups_pending || s->milter_pending ||
           s->sasl_pending;
}

int session_between_requests(const struct smtp_session *s)
{
    return (s->state & ST_ANY_COMMAND) && s->line.len == 0;
}

int session_in_data(const struct smtp_session *s)
{
    return s->state == ST_DATA;
}

int session_is_idle(const struct smtp_session *s)
{
    return (s->state & ST_ANY_COMMAND) && s->line.len == 0 && !(s->state & (ST_MAIL | ST_RCPT));
}

void session_release(struct smtp_session *s)
{
    if (s == NULL)
        return;
    s->released = 1;
    if (s->commit_pending)
        return; /* commit_done() finishes the job */
    if (s->policy_pending) {
        restrict_cancel(&s->reval);
        s->policy_pending = 0;
    }
    table_memo_free(s->memo); /* cancels lookups in flight */
    dovecot_auth_free(s->sasl);
    saslsrv_timer_cancel(s->sasl_timer);
    dovecot_mechanisms_cancel(s);
    free(s->redo_arg);
    if (s->state == ST_DATA && s->qf)
        log_sinfo(s->sid, "%s: lost connection after DATA from %s[%s]; message discarded",
                  queue_file_id(s->qf), s->client.name, s->client.addr_text);
    reset_transaction(s);
    milter_close(s->milters); /* a phase in flight is abandoned */
    log_sinfo(s->sid, "disconnect from %s[%s] messages=%lu errors=%d", s->client.name,
              s->client.addr_text, s->messages, s->errors);
    buf_free(&s->line);
    free(s);
}
