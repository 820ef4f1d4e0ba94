/* tlsrpt: TLS reporting (RFC 8460) in the SMTP client, with
 * smtp_tls_reporting = yes. This module records results; tlsrpt_report.h
 * aggregates them into the RFC's JSON and tlsrpt_send.h sends the reports.
 *
 * What is recorded: for a policy domain (a recipient domain reached by MX
 * lookup whose MX host has usable DNSSEC-secure TLSA records, or whose
 * MTA-STS policy is in mode enforce or testing), one result per delivery
 * session: "success" or one of the RFC's result types, with the policy
 * (tlsa or sts and its strings), the MX host and both addresses. Outcomes
 * that end before any session (a TLSA lookup that failed, dane-only
 * without records, an MX host an enforced MTA-STS policy does not name, a
 * policy that could not be fetched) count as one failed session too, as
 * RFC 8460 4.3 counts them.
 *
 * Where: $queue_directory/tlsrpt/day-YYYYMMDD (UTC), one line per result,
 * appended with O_APPEND in one write() and fdatasync'ed: delivery agents
 * are separate processes that block anyway, so concurrent agents never
 * interleave their lines and a result survives a crash. The reporter
 * renames a day's file away before it reads it and then takes an
 * exclusive flock on it; a writer holds a shared flock while it writes and
 * checks after locking that its file still has that name, so no line is
 * written into a file that is being (or was) reported. Recording never
 * fails a delivery: a failure to write is logged. */
#ifndef KP_TLSRPT_H
#define KP_TLSRPT_H

#include <stddef.h>
#include <time.h>

#include <openssl/ssl.h>

#include "conf/conf.h"

#define TLSRPT_SUCCESS "success"
#define TLSRPT_DIR "tlsrpt"

struct tls_policy;
struct dane_host;
struct mtasts_policy;

/* One result, as recorded and as read back. pstrings: the policy-string
 * items, '\n'-separated ("" for none). */
struct tlsrpt_result {
    time_t when;
    char domain[256];
    char ptype[20];        /* tlsa | sts | no-policy-found */
    char pstrings[4096];
    char result[40];       /* success or an RFC 8460 4.3 result type */
    char mxhost[256];
    char recvip[64];
    char sendip[64];
    char reason[300];      /* failure-reason-code: what keypost logged */
};

/* The HTTPS context for rua=https: reports (system store or
 * smtp_tls_reporting_CAfile), made as root at load and reload. */
int tlsrpt_init(struct conf_errors *errs);
/* The store-verifying client context of tlsrpt_init (NULL when off). */
SSL_CTX *tlsrpt_https_ctx(void);

/* A session with mxhost over the connected socket fd ended in result
 * (detail: the reason, for failures). Nothing when p carries no policy
 * (no DANE records in use, no MTA-STS policy) or domain is NULL. */
void tlsrpt_session(const struct tls_policy *p, const char *domain, const char *mxhost, int fd,
                    const char *result, const char *detail);
/* DANE decided about mxhost before connecting: a TLSA lookup failure,
 * dane-only without records, or records none of which is usable. */
void tlsrpt_dane_host(const char *domain, const char *mxhost, const struct dane_host *d);
/* An MTA-STS failure without a session (an MX host the policy does not
 * name) or of the policy's discovery (mxhost ""; s may have mode
 * STS_NONE, then the policy-string is empty). */
void tlsrpt_sts(const struct mtasts_policy *s, const char *domain, const char *mxhost,
                const char *result, const char *detail);
/* The result type for an X509_V_ERR_* code from verifying a server
 * certificate; dane: the verification was DANE's. */
const char *tlsrpt_x509_result(long verify_error, int dane);

/* The record line (with '\n') into out; -1 if it does not fit. */
int tlsrpt_format(const struct tlsrpt_result *r, char *out, size_t len);
/* Parse one line (without or with its '\n'); -1 if malformed. */
int tlsrpt_parse(const char *line, struct tlsrpt_result *r);
/* Append r to QDIR/tlsrpt/day-YYYYMMDD of r->when; -1 with err. */
int tlsrpt_append(const char *qdir, const struct tlsrpt_result *r, char *err, size_t errlen);

#endif
