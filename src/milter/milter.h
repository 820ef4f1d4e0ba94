/* milter: the Sendmail/Postfix mail filter protocol (version 2 to 6) on the
 * client side, for smtpd_milters (and later non_smtpd_milters).
 *
 * A session owns a milter_set: one connection per configured filter, made
 * when the session starts. Each SMTP phase is one call that asks every
 * filter in turn, without blocking the event loop, and answers once
 * through done(): connect and HELO (asked at HELO/EHLO, as smtpd's
 * restrictions are delayed to RCPT), MAIL, RCPT (after the restrictions
 * accepted the recipient), and the message (DATA, headers, end of headers,
 * body, end of body), asked when the whole message is in the queue file
 * and before it is made durable. The message phase also collects what the
 * filters change (headers, body, sender, recipients, quarantine), which
 * milter_apply() writes into a new queue file.
 * A filter that cannot be reached, times out (milter_connect_timeout,
 * milter_command_timeout, milter_content_timeout) or answers outside the
 * protocol is handled by milter_default_action: tempfail (451), reject
 * (550), accept (the filter is skipped for the rest of the session) or
 * quarantine (accept into the hold queue). Every decision is logged. */
#ifndef KP_MILTER_H
#define KP_MILTER_H

#include <stddef.h>

#include "conf/conf.h"

struct event_base;
struct milter_set;
struct qfile;
struct envelope;

enum milter_verdict {
    MV_CONTINUE,   /* go on (or: accepted by every filter) */
    MV_REJECT,     /* reply holds the 5xx to send */
    MV_TEMPFAIL,   /* reply holds the 4xx to send */
    MV_DISCARD,    /* accept and throw the message away */
};

struct milter_result {
    enum milter_verdict verdict;
    char reply[512];       /* "550 5.7.1 text" for reject/tempfail */
    int quarantine;        /* put the message on hold */
    char reason[256];      /* the filter's quarantine reason, or why it failed */
};

typedef void (*milter_done_fn)(void *arg, const struct milter_result *r);

/* What the filters are told about the session, as Sendmail macros. The
 * strings belong to the caller and must live as long as the set. */
struct milter_session {
    const char *client_name, *client_addr, *client_port;
    int family;                /* AF_INET, AF_INET6 */
    const char *helo;
    const char *daemon_name, *daemon_addr, *myhostname;
    const char *tls_version, *cipher, *cipher_bits, *cert_subject, *cert_issuer;
    const char *auth_type, *auth_authen;
    const char *queue_id;      /* "" until DATA */
};

/* Parse smtpd_milters and the milter_* parameters; errors to errs. */
int milter_init(struct conf_errors *errs);
void milter_set_base(struct event_base *base);
/* 1 when smtpd_milters lists any filter. */
int milter_configured(void);

/* A session's filters (non_smtpd_milters for local submissions, else
 * smtpd_milters); connects at once. NULL when none are configured. info
 * is the session's and must outlive the set: the macros are read from it
 * when each phase runs. */
struct milter_set *milter_open(const struct milter_session *info, int local);
/* The session id the log lines name (a string that outlives the set). */
void milter_set_log_id(struct milter_set *set, const char *id);
/* Quit and free; a phase in progress is abandoned (done is not called). */
void milter_close(struct milter_set *set);
/* Forget the message (RSET, or the end of a transaction). */
void milter_abort(struct milter_set *set);

/* The phases. Each returns 1 with *r filled when the answer is known at once
 * (no filter to ask), else 0 and done(arg, r) is called from the loop. */
int milter_helo(struct milter_set *set, struct milter_result *r, milter_done_fn done,
                void *arg);
int milter_mail(struct milter_set *set, const char *sender, struct milter_result *r,
                milter_done_fn done, void *arg);
int milter_rcpt(struct milter_set *set, const char *rcpt, struct milter_result *r,
                milter_done_fn done, void *arg);
/* The message read from fd (headers and body, CRLF lines); fd is closed. */
int milter_message(struct milter_set *set, int fd, struct milter_result *r,
                   milter_done_fn done, void *arg);

/* Did the filters change the message or its envelope? */
int milter_changed(const struct milter_set *set);
/* Write the message with the filters' changes into a replacement of old
 * (same queue id; queue_create_replacement) made from env, whose sender and
 * recipients are changed as asked. The caller puts it in place with
 * queue_replace(). NULL with err on failure (old untouched). */
struct qfile *milter_apply(struct milter_set *set, struct qfile *old, const struct envelope *env,
                           char *err, size_t len);

#endif
