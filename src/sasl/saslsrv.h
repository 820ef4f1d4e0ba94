/* saslsrv: what the SMTP server's AUTH needs besides Dovecot's wire
 * protocol (sasl/dovecot.h): the mechanism list a session may offer, the
 * smtpd_sasl_external_maps lookup for AUTH EXTERNAL, strict base64, the
 * growing delay before a failure reply and a timer for it on the worker's
 * loop (the session itself has no loop). */
#ifndef KP_SASLSRV_H
#define KP_SASLSRV_H

#include <stddef.h>

#include "conf/conf.h"

struct event_base;
struct saslsrv_timer;

/* Check the SASL parameters and open smtpd_sasl_external_maps. */
int saslsrv_init(struct conf_errors *errs);
void saslsrv_free(void);
void saslsrv_set_base(struct event_base *base);
/* The mechanisms to announce: Dovecot's, filtered by the security options
 * of an encrypted (tls) or plain session, plus EXTERNAL when external is
 * set. NULL when Dovecot's list is not known yet and external is not set. */
const char *saslsrv_mechanisms(int tls, int external);
/* The login smtpd_sasl_external_maps gives a public-key fingerprint:
 * 1 (login filled), 0 not listed, -1 a table failed. */
int saslsrv_external_login(const char *pubkey_fp, char *login, size_t len);
/* Decode strict base64 (RFC 4648, padding required, no white space).
 * Returns the decoded length, or -1 when it is not base64 or does not fit
 * (out gets a terminating NUL too). */
long saslsrv_b64_decode(const char *in, unsigned char *out, size_t len);
/* Seconds before the reply to the client's n-th failure (n >= 1):
 * smtpd_sasl_failure_delay doubled for each earlier failure, at most 32x. */
double saslsrv_failure_delay(long n);
/* Call fn(arg) from the loop after secs; NULL when there is no loop. */
struct saslsrv_timer *saslsrv_timer_start(double secs, void (*fn)(void *), void *arg);
void saslsrv_timer_cancel(struct saslsrv_timer *t);

#endif
