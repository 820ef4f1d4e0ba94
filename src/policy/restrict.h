/* restrict: Postfix-style restriction lists, evaluated at RCPT time.
 * As with Postfix's default smtpd_delay_reject = yes, the client, helo and
 * sender lists are evaluated at RCPT together with the relay and recipient
 * lists, in that order. In each list the first permit ends that list, the
 * first reject or defer ends the evaluation. Supported restrictions:
 *   permit reject defer permit_mynetworks reject_unauth_destination
 *   permit_tls_clientcerts permit_tls_all_clientcerts
 *   check_ccert_access TYPE:TABLE
 *   check_ccert_access { TYPE:TABLE, search_order = cert_fingerprint, pubkey_fingerprint } */
#ifndef KP_RESTRICT_H
#define KP_RESTRICT_H

#include <netinet/in.h>
#include <stddef.h>

#include "conf/conf.h"

struct tls_peer;

enum restrict_action { RA_DUNNO, RA_PERMIT, RA_REJECT, RA_DEFER, RA_HOLD, RA_DISCARD };

struct restrict_ctx {
    const struct sockaddr_storage *client;
    const char *client_name;   /* "unknown" when there is no name */
    const char *client_addr;
    const char *helo;
    const char *sender;
    const char *recipient;
    const struct tls_peer *tls; /* NULL when the session is not encrypted */
};

struct restrict_result {
    enum restrict_action action;
    char reply[512];           /* the full SMTP reply for reject/defer */
};

/* Parse every restriction list and table; errors name the FILE:LINE. */
int restrict_init(struct conf_errors *errs);
void restrict_free(void);
/* Evaluate all lists for one recipient. HOLD and DISCARD are returned as
 * such only when no later list rejects. */
void restrict_check_rcpt(const struct restrict_ctx *ctx, struct restrict_result *out);
/* 1 when domain (without '@') is one of mydestination. */
int restrict_is_local_domain(const char *domain);
/* 1 when the address is inside mynetworks. */
int restrict_in_mynetworks(const struct sockaddr_storage *addr);
/* 1 when the address is in smtpd_client_event_limit_exceptions. */
int restrict_in_limit_exceptions(const struct sockaddr_storage *addr);

#endif
