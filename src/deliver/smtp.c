/* smtp: one connection, many messages. */
#include "deliver/smtp.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/conf.h"
#include "deliver/smtpio.h"
#include "dns/dns.h"
#include "sasl/saslcli.h"
#include "tls/dane.h"
#include "tls/tls_client.h"
#include "tls/tlsrpt.h"
#include "util/buf.h"
#include "util/log.h"
#include "util/strutil.h"

#define MAX_MX 10
#define MAX_ADDRS 8

struct conn_state {
    struct smtpio io;
    char host[DNS_NAME_MAX];
    char relay[200];        /* "host[addr]:port" for the logs */
    int pipelining, size, eightbit, smtputf8, starttls;
    char auth[256];         /* the EHLO AUTH mechanisms (SASL), "" when none */
};

struct batch {
    const struct route *route;
    const char *domain;
    SSL_CTX *tls;
    const struct tls_policy *policy;
    enum dns_sec mx_sec;      /* of the MX RRset (DANE needs it secure) */
    struct smtp_item *items;
    int nitems;
    smtp_result_fn done;
    void *arg;
    unsigned char *finished;  /* per item: every recipient has a result */
    unsigned char **reported; /* per item and recipient */
};

static void report(struct batch *b, int item, int k, enum dstatus st, const char *relay,
                   const char *text)
{
    if (b->reported[item][k])
        return;
    b->reported[item][k] = 1;
    struct dresult r;
    memset(&r, 0, sizeof r);
    str_copy(r.relay, relay, sizeof r.relay);
    dresult_set(&r, st, "%s", text);
    b->done(b->arg, item, k, &r);
}

/* Give every recipient still open the same outcome. */
static void report_rest(struct batch *b, enum dstatus st, const char *relay, const char *text)
{
    for (int i = 0; i < b->nitems; i++) {
        if (b->finished[i])
            continue;
        for (int k = 0; k < b->items[i].nrcpt; k++)
            report(b, i, k, st, relay, text);
        b->finished[i] = 1;
    }
}

/* Every recipient of one message gets the same outcome. */
static void report_item(struct batch *b, int i, enum dstatus st, const char *relay,
                        const char *text)
{
    for (int k = 0; k < b->items[i].nrcpt; k++)
        report(b, i, k, st, relay, text);
    b->finished[i] = 1;
}

static void relay_name(struct conn_state *c, const struct sockaddr_storage *ss, int port)
{
    char addr[64] = "?";
    if (ss->ss_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, addr, sizeof addr);
    else
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, addr, sizeof addr);
    snprintf(c->relay, sizeof c->relay, "%s[%s]:%d", c->host, addr, port);
}

static void parse_ehlo(struct conn_state *c, const char *lines)
{
    c->pipelining = c->size = c->eightbit = c->smtputf8 = c->starttls = 0;
    c->auth[0] = '\0';
    for (const char *l = lines; *l;) {
        const char *nl = strchr(l, '\n');
        size_t n = nl ? (size_t)(nl - l) : strlen(l);
        char word[32];
        str_first_word(l, word, sizeof word);
        /* SASL: "AUTH PLAIN LOGIN" (or the old "AUTH=PLAIN LOGIN") */
        if (str_iprefix(word, "AUTH") && (word[4] == '\0' || word[4] == '=') &&
            n > 5 && n - 5 < sizeof c->auth) {
            memcpy(c->auth, l + 5, n - 5);
            c->auth[n - 5] = '\0';
        }
        c->pipelining |= str_ieq(word, "PIPELINING");
        c->size |= str_ieq(word, "SIZE");
        c->eightbit |= str_ieq(word, "8BITMIME");
        c->smtputf8 |= str_ieq(word, "SMTPUTF8");
        c->starttls |= str_ieq(word, "STARTTLS");
        l += n + (nl ? 1 : 0);
    }
}

static int ehlo(struct conn_state *c, char *text, size_t len)
{
    char lines[4096];
    if (smtpio_printf(&c->io, "EHLO %s", conf_str(P_SMTP_HELO_NAME)) < 0)
        return -1;
    int code = smtpio_reply_lines(&c->io, text, len, lines, sizeof lines);
    if (code == 250) {
        /* The first line is the server's name, not an extension. */
        const char *rest = strchr(lines, '\n');
        parse_ehlo(c, rest ? rest + 1 : "");
        return code;
    }
    if (code < 0 || code >= 400) {
        if (smtpio_printf(&c->io, "HELO %s", conf_str(P_SMTP_HELO_NAME)) < 0)
            return -1;
        code = smtpio_reply(&c->io, text, len);
        parse_ehlo(c, "");
    }
    return code;
}

/* The destination's TLS policy (tls_policy decides); -1 with why set when
 * the policy cannot be known, which defers: never a weaker default. */
static int policy_for(const struct batch *b, struct tls_policy *p, char *why, size_t len)
{
    int mx = b->route->mx;
    const char *key = mx && !(b->domain && *b->route->nexthop) ? "" : b->route->nexthop;
    enum tls_policy_status st = tls_policy_find(key, b->route->port, mx, p, why, len);
    if (st != TLS_POLICY_OK) {
        log_warn(NULL, "%s", why);
        return -1;
    }
    return 0;
}

/* The policy for one host: at dane and dane-only, what its DNSSEC status
 * and TLSA records make of it (tls/dane.h). -1 with why set: skip the host. */
static int host_policy(const struct batch *b, const char *host, const struct dns_hostinfo *hi,
                       struct tls_policy *p, struct dane_host *d, char *why, size_t len)
{
    *p = *b->policy;
    p->dane = NULL;
    memset(d, 0, sizeof *d);
    if (p->level != TL_DANE && p->level != TL_DANE_ONLY)
        return 0;
    /* A [host] next hop has no MX RRset: only its addresses must be secure. */
    enum dns_sec mx_sec = b->route->mx ? b->mx_sec : DNS_SEC_SECURE;
    dane_resolve(p->level, mx_sec, hi, host, b->route->port,
                 b->route->mx ? b->route->nexthop : "", d);
    switch (d->outcome) {
    case DANE_ON:
        p->dane = d;
        p->sts.mode = STS_NONE; /* DANE takes precedence over MTA-STS (RFC 8461 2) */
        log_info(NULL, "%s: DANE: %s", host, d->why);
        return 0;
    case DANE_ENCRYPT:
        p->level = TL_ENCRYPT;
        log_info(NULL, "%s: DANE: %s", host, d->why);
        if (b->route->mx)
            tlsrpt_dane_host(b->domain, host, d); /* issue 11: TLSRPT */
        return 0;
    case DANE_MAY:
        /* No DANE for this host: an MTA-STS policy in enforce mode still
         * asks for TLS. */
        p->level = (enum tls_level)mtasts_level(p, TL_MAY);
        log_info(NULL, "%s: no DANE: %s", host, d->why);
        return 0;
    case DANE_DEFER:
        break;
    }
    str_copy(why, d->why, len);
    log_warn(NULL, "%s: %s", host, d->why);
    if (b->route->mx)
        tlsrpt_dane_host(b->domain, host, d); /* issue 11: TLSRPT */
    return -1;
}

/* issue 11: TLSRPT. One TLS outcome of a session with c's host, for the
 * recipient domain of an MX route (tls/tlsrpt.h records it, or not). */
static void tlsrpt(const struct batch *b, const struct conn_state *c, const struct tls_policy *p,
                   const char *result, const char *detail)
{
    if (b->route->mx)
        tlsrpt_session(p, b->domain, c->host, c->io.fd, result, detail);
}

/* STARTTLS by policy. Returns 0 to go on, 1 to retry this host in
 * plaintext (opportunistic TLS that failed), -1 to give up on this host. */
static int secure(struct batch *b, struct conn_state *c, const struct tls_policy *p,
                  char *why, size_t len)
{
    if (p->level == TL_NONE || (p->level == TL_MAY && !c->starttls)) {
        mtasts_judge(p, NULL, c->host, NULL); /* issue 11: MTA-STS testing logs it */
        if (!c->starttls)
            tlsrpt(b, c, p, "starttls-not-supported", "STARTTLS not offered");
        return 0;
    }
    if (!c->starttls) {
        snprintf(why, len, "4.7.4 TLS is required, but was not offered by host %s", c->relay);
        tlsrpt(b, c, p, "starttls-not-supported", why);
        return -1;
    }
    char text[600] = "connection lost";
    int code = smtpio_printf(&c->io, "STARTTLS") < 0 ? -1
                                                     : smtpio_reply(&c->io, text, sizeof text);
    if (code != 220) {
        snprintf(why, len, "4.7.5 STARTTLS refused by %s: %s", c->relay, text);
        if (code > 0) /* refused, not a lost connection */
            tlsrpt(b, c, p, "starttls-not-supported", why);
        return p->level == TL_MAY ? 1 : -1;
    }
    if (smtpio_starttls(&c->io, b->tls, c->host, p, text, sizeof text) < 0) {
        log_info(NULL, "%s: %s", c->relay, text);
        snprintf(why, len, "4.7.5 %s with %s", text, c->relay);
        tlsrpt(b, c, p, "validation-failure", why);
        return p->level == TL_MAY ? 1 : -1;
    }
    struct tls_client_result r;
    tls_client_check(c->io.ssl, p, b->route->mx ? b->domain : b->route->nexthop, c->host, &r);
    mtasts_judge(p, c->io.ssl, c->host, &r); /* issue 11: MTA-STS */
    log_info(NULL, "%s TLS connection established to %s: %s with cipher %s (%d/%d bits)",
             r.label, c->relay, r.protocol, r.cipher, r.bits, r.alg_bits);
    if (p->dane)
        log_info(NULL, "%s: dane: %s %s", c->relay, r.meets_policy ? "matched" : "failed",
                 r.dane);
    tlsrpt(b, c, p, r.tlsrpt ? r.tlsrpt : r.meets_policy ? TLSRPT_SUCCESS : "validation-failure",
           r.reason);
    if (!r.meets_policy) {
        snprintf(why, len, "4.7.5 TLS policy %s not met by %s: %s",
                 p->sts.mode ? "MTA-STS" : tls_level_name(p->level), c->relay, r.reason);
        return -1;
    }
    if (ehlo(c, text, sizeof text) != 250) {
        snprintf(why, len, "4.4.2 EHLO after STARTTLS failed at %s: %s", c->relay, text);
        return -1;
    }
    return 0;
}

/* SASL (sasl/saslcli.h): after EHLO and STARTTLS, before any mail. */
static int sasl_login(const struct batch *b, struct conn_state *c, char *why, size_t len)
{
    struct saslcli_target t = {
        .nexthop = b->route->nexthop,
        .port = b->route->port,
        .bracketed = !b->route->mx,
        .host = c->host,
        .relay = c->relay,
        .mechs = c->auth,
        .tls = c->io.ssl != NULL,
    };
    return saslcli_login(&c->io, &t, why, len);
}

/* Connect to one address and get to the point of sending mail. Returns 0
 * on success, else a reply-like reason in why (first digit 4 or 5). */
static int open_session(struct batch *b, struct conn_state *c,
                        const struct sockaddr_storage *ss, const struct tls_policy *hp,
                        char *why, size_t len)
{
    struct tls_policy p = *hp; /* "may" may fall back to plaintext below */
    for (int plaintext_retry = 0; plaintext_retry < 2; plaintext_retry++) {
        char text[600];
        relay_name(c, ss, b->route->port);
        if (smtpio_connect_addr(&c->io, ss, (int)conf_long(P_SMTP_CONNECT_TIMEOUT), text,
                                sizeof text) < 0) {
            snprintf(why, len, "4.4.1 connect to %s: %s", c->relay, text);
            return -1;
        }
        c->io.timeout = (int)conf_long(P_SMTP_HELO_TIMEOUT);
        int code = smtpio_reply(&c->io, text, sizeof text);
        if (code != 220) {
            /* The reply comes first: its code decides, if this was the last host. */
            if (code < 0)
                snprintf(why, len, "4.4.2 host %s sent no greeting: %s", c->relay, text);
            else
                snprintf(why, len, "%s (host %s refused to talk to me)", text, c->relay);
            smtpio_close(&c->io);
            return -1;
        }
        code = ehlo(c, text, sizeof text);
        if (code != 250) {
            if (code < 0)
                snprintf(why, len, "4.4.2 lost connection with %s in reply to EHLO: %s",
                         c->relay, text);
            else
                snprintf(why, len, "%s (in reply to EHLO/HELO command from %s)", text,
                         c->relay);
            smtpio_close(&c->io);
            return -1;
        }
        int s = plaintext_retry ? 0 : secure(b, c, &p, why, len);
        if (s == 0 && sasl_login(b, c, why, len) < 0) { /* smtp_sasl_* */
            smtpio_close(&c->io);
            return -1;
        }
        if (s == 0)
            return 0;
        smtpio_close(&c->io);
        if (s < 0)
            return -1;
        p.level = TL_NONE; /* "may": try again without TLS */
    }
    return -1;
}

static void mail_command(struct buf *cmd, const struct conn_state *c, const struct smtp_item *it)
{
    buf_printf(cmd, "MAIL FROM:<%s>", it->msg.env->sender);
    if (c->size)
        buf_printf(cmd, " SIZE=%lld", (long long)it->msg.env->size);
    if (it->needs_8bitmime && c->eightbit)
        buf_puts(cmd, " BODY=8BITMIME");
    if (it->needs_smtputf8)
        buf_puts(cmd, " SMTPUTF8");
    buf_puts(cmd, "\r\n");
}

/* Leave a transaction that will not carry the message. A server that said
 * 354 to a pipelined DATA (with no recipient, or after refusing MAIL) is
 * reading content: an empty message ends it first (RFC 2920 3.1), else
 * the RSET would become content. -1 when the connection is lost. */
static int end_refused_transaction(struct conn_state *c, int data_reply)
{
    char text[300];
    if (data_reply == 354 && (smtpio_write(&c->io, ".\r\n", 3) < 0 ||
                              smtpio_reply(&c->io, text, sizeof text) < 0))
        return -1;
    if (smtpio_printf(&c->io, "RSET") < 0)
        return -1;
    return smtpio_reply(&c->io, text, sizeof text) < 0 ? -1 : 0;
}

/* Send one message. Returns -1 when the connection is no longer usable. */
static int send_message(struct batch *b, struct conn_state *c, int i)
{
    struct smtp_item *it = &b->items[i];
    char text[600];
    if (it->needs_smtputf8 && !c->smtputf8) {
        report_item(b, i, D_BOUNCED, c->relay,
                    "5.6.7 SMTPUTF8 is required, but was not offered by the server");
        return 0;
    }
    if (it->needs_8bitmime && !c->eightbit) {
        report_item(b, i, D_BOUNCED, c->relay,
                    "5.6.3 8BITMIME is required, but was not offered by the server");
        return 0;
    }
    struct buf cmd;
    buf_init(&cmd, 1 << 20);
    mail_command(&cmd, c, it);
    for (int k = 0; c->pipelining && k < it->nrcpt; k++)
        buf_printf(&cmd, "RCPT TO:<%s>\r\n", it->msg.env->rcpts[it->rcpt[k]]);
    if (c->pipelining)
        buf_puts(&cmd, "DATA\r\n");
    int ok = smtpio_write(&c->io, cmd.data, cmd.len) == 0;
    buf_free(&cmd);
    int code = ok ? smtpio_reply(&c->io, text, sizeof text) : -1;
    if (code != 250) {
        if (code < 0) return -1;
        int last = 0;
        if (c->pipelining) { /* drain the RCPT and DATA replies */
            for (int k = 0; k <= it->nrcpt; k++)
                last = smtpio_reply(&c->io, text + 300, 300);
        }
        report_item(b, i, dstatus_of_reply(code), c->relay, text);
        return end_refused_transaction(c, last);
    }
    int accepted = 0;
    int ok_rcpt[it->nrcpt > 0 ? it->nrcpt : 1];
    for (int k = 0; k < it->nrcpt; k++) {
        if (!c->pipelining &&
            smtpio_printf(&c->io, "RCPT TO:<%s>", it->msg.env->rcpts[it->rcpt[k]]) < 0)
            return -1;
        code = smtpio_reply(&c->io, text, sizeof text);
        if (code < 0)
            return -1;
        ok_rcpt[k] = code / 100 == 2;
        accepted += ok_rcpt[k];
        if (!ok_rcpt[k])
            report(b, i, k, dstatus_of_reply(code), c->relay, text);
    }
    if (!c->pipelining && accepted && smtpio_printf(&c->io, "DATA") < 0)
        return -1;
    if (c->pipelining || accepted) {
        code = smtpio_reply(&c->io, text, sizeof text);
        if (code < 0)
            return -1;
    }
    if (accepted == 0 || code != 354) {
        for (int k = 0; accepted && k < it->nrcpt; k++)
            if (ok_rcpt[k])
                report(b, i, k, dstatus_of_reply(code), c->relay, text);
        b->finished[i] = 1;
        return end_refused_transaction(c, code);
    }
    if (smtpio_send_body(&c->io, it->msg.path, (long)it->msg.env->body_offset,
                         (size_t)conf_long(P_SMTP_LINE_LENGTH_LIMIT)) < 0)
        return -1;
    c->io.timeout = (int)conf_long(P_SMTP_DATA_DONE_TIMEOUT);
    code = smtpio_reply(&c->io, text, sizeof text);
    c->io.timeout = (int)conf_long(P_SMTP_HELO_TIMEOUT);
    if (code < 0)
        return -1; /* no answer to the end of data: deferred, may be delivered twice */
    for (int k = 0; k < it->nrcpt; k++)
        if (ok_rcpt[k])
            report(b, i, k, dstatus_of_reply(code), c->relay, text);
    b->finished[i] = 1;
    return 0;
}

/* Send every unfinished message over the open session. Returns -1 when the
 * connection broke (the message in progress is deferred). */
static int send_all(struct batch *b, struct conn_state *c)
{
    for (int i = 0; i < b->nitems; i++) {
        if (b->finished[i])
            continue;
        if (send_message(b, c, i) < 0) {
            char text[400];
            snprintf(text, sizeof text, "4.4.2 lost connection with %s while sending message",
                     c->relay);
            /* Recipients the server already answered keep their result. */
            report_item(b, i, D_DEFERRED, c->relay, text);
            return -1;
        }
    }
    smtpio_printf(&c->io, "QUIT");
    char text[300];
    smtpio_reply(&c->io, text, sizeof text);
    return 0;
}

static int unfinished(const struct batch *b)
{
    for (int i = 0; i < b->nitems; i++)
        if (!b->finished[i])
            return 1;
    return 0;
}

static int host_list(struct batch *b, struct mx_host *mx, int *nmx, char *why, size_t len)
{
    if (!b->route->mx) {
        str_copy(mx[0].name, b->route->nexthop, sizeof mx[0].name);
        *nmx = 1;
        return 0;
    }
    enum dns_status st = dns_mx(b->route->nexthop, mx, MAX_MX, nmx, &b->mx_sec, why, len);
    if (st == DNS_OK)
        return 0;
    char detail[300];
    str_copy(detail, why, sizeof detail);
    snprintf(why, len, "%s %s", st == DNS_NOTFOUND ? "5.1.2 Host or domain name not found:"
                                                   : "4.4.3 Host or domain name lookup failed:",
             detail);
    return -1;
}

static void free_batch(struct batch *b)
{
    for (int i = 0; i < b->nitems; i++)
        free(b->reported[i]);
    free(b->reported);
    free(b->finished);
}

void smtp_deliver(const struct route *route, const char *domain, SSL_CTX *tls,
                  struct smtp_item *items, int nitems, smtp_result_fn done, void *arg)
{
    struct tls_policy policy;
    struct batch b = {route, domain, tls, &policy, DNS_SEC_INDETERMINATE, items, nitems,
                      done, arg,
                      calloc((size_t)nitems, 1), calloc((size_t)nitems, sizeof(unsigned char *))};
    for (int i = 0; i < nitems; i++)
        b.reported[i] = calloc((size_t)items[i].nrcpt + 1, 1);
    struct mx_host mx[MAX_MX];
    int nmx = 0;
    char why[700] = "4.4.1 no host could be reached";
    char relay[200]; /* the last host tried, for the log */
    str_copy(relay, route->nexthop, sizeof relay);
    if (policy_for(&b, &policy, why, sizeof why) < 0 ||
        host_list(&b, mx, &nmx, why, sizeof why) < 0) {
        report_rest(&b, why[0] == '5' ? D_BOUNCED : D_DEFERRED, "none", why);
        free_batch(&b);
        return;
    }
    for (int h = 0; h < nmx && unfinished(&b); h++) {
        struct sockaddr_storage addrs[MAX_ADDRS];
        int naddrs = 0;
        char err[300];
        struct dns_hostinfo hi;
        if (dns_addrs(mx[h].name, route->port, addrs, MAX_ADDRS, &naddrs, &hi, err,
                      sizeof err) != DNS_OK) {
            snprintf(why, sizeof why, "4.4.3 %s", err);
            continue;
        }
        struct tls_policy hp;
        struct dane_host dane;
        if (host_policy(&b, mx[h].name, &hi, &hp, &dane, why, sizeof why) < 0) {
            str_copy(relay, mx[h].name, sizeof relay);
            continue;
        }
        if (!mtasts_mx_allowed(&hp, mx[h].name, why, sizeof why)) { /* issue 11: MTA-STS */
            dane_host_free(&dane);
            continue;
        }
        for (int a = 0; a < naddrs && unfinished(&b); a++) {
            struct conn_state c;
            memset(&c, 0, sizeof c);
            str_copy(c.host, mx[h].name, sizeof c.host);
            int opened = open_session(&b, &c, &addrs[a], &hp, why, sizeof why);
            str_copy(relay, c.relay, sizeof relay);
            if (opened < 0)
                continue;
            send_all(&b, &c);
            smtpio_close(&c.io);
        }
        dane_host_free(&dane);
    }
    report_rest(&b, why[0] == '5' ? D_BOUNCED : D_DEFERRED, relay, why);
    free_batch(&b);
}
