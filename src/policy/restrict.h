/* restrict: Postfix-style restriction lists, evaluated at RCPT time.
 * As with Postfix's default smtpd_delay_reject = yes, the client, helo and
 * sender lists are evaluated at RCPT together with the relay and recipient
 * lists, in that order. In each list the first permit ends that list, the
 * first reject or defer ends the evaluation. Supported restrictions:
 *   permit reject defer permit_mynetworks reject_unauth_destination
 *   permit_auth_destination reject_unlisted_recipient reject_unlisted_sender
 *   permit_tls_clientcerts permit_tls_all_clientcerts
 *   check_ccert_access TYPE:TABLE
 *   check_ccert_access { TYPE:TABLE, search_order = cert_fingerprint, pubkey_fingerprint }
 *   check_client_access, check_helo_access, check_sender_access,
 *   check_recipient_access TYPE:TABLE (access(5) actions)
 *   check_policy_service inet:ADDR:PORT | unix:/PATH | { TARGET, policy_context = X }
 *   reject_unknown_client_hostname, reject_unknown_reverse_client_hostname
 *   permit_sasl_authenticated, reject_sender_login_mismatch,
 *   reject_authenticated_sender_login_mismatch,
 *   reject_unauthenticated_sender_login_mismatch (smtpd_sender_login_maps)
 * After the lists, smtpd_reject_unlisted_recipient (and _sender) check the
 * address against its class's recipient tables (addr/addrclass.h).
 * A policy service, a remote access table or a remote address table (the
 * latter through ctx->memo) makes the evaluation asynchronous:
 * restrict_start() returns 0 and calls done() when the answer is in. */
#ifndef KP_RESTRICT_H
#define KP_RESTRICT_H

#include <netinet/in.h>
#include <stddef.h>

#include "conf/conf.h"

struct tls_peer;
struct policy_call;
struct table;
struct table_memo;

enum restrict_action { RA_DUNNO, RA_PERMIT, RA_REJECT, RA_DEFER, RA_HOLD, RA_DISCARD };

struct restrict_ctx {
    const struct sockaddr_storage *client;
    const char *client_name;   /* forward-confirmed name, "unknown" when none */
    const char *reverse_client_name; /* the PTR name, "unknown" when none */
    int client_name_tempfail;  /* a name is unknown for a temporary reason: */
    int reverse_client_name_tempfail; /* reject_unknown_* then answer 450 */
    const char *client_addr;
    const char *helo;
    const char *sender;
    const char *recipient;
    const struct tls_peer *tls; /* NULL when the session is not encrypted */
    /* for policy services */
    int client_port;
    const char *server_addr;
    int server_port;
    const char *protocol_name;
    const char *protocol_state;  /* NULL: "RCPT" */
    const char *queue_id;
    const char *instance;
    int recipient_count;
    long size;
    /* answers of remote address tables (table/tablememo.h); NULL: none */
    struct table_memo *memo;
    /* the sendmail command: no restriction lists, only the unlisted checks */
    int local_submission;
    /* SASL: "" (or NULL) when the client did not authenticate */
    const char *sasl_method;
    const char *sasl_username;
    const char *sasl_sender;
};

struct restrict_result {
    enum restrict_action action;
    char reply[512];           /* the full SMTP reply for reject/defer */
    char prepend[512];         /* a header line a policy server asked for */
};

typedef void (*restrict_done_fn)(void *arg, const struct restrict_result *out);

/* The state of one evaluation; lives as long as the caller's ctx. */
struct restrict_eval {
    const struct restrict_ctx *ctx;
    struct restrict_result *out;
    restrict_done_fn done;
    void *arg;
    int list, item;
    enum restrict_action sticky;
    struct policy_call *call;
    struct table *waiting_table;
    int in_run, have_action;
    int memo_waiting;          /* the memo fetches answers for an item */
    int have_table, table_tempfail, table_found;
    char action[1024];
    char defer_if_permit[512], defer_if_reject[512];
};

/* Parse every restriction list and table; errors name the FILE:LINE. */
int restrict_init(struct conf_errors *errs);
void restrict_free(void);
/* Ask every remote table (pgsql) once, for `keypost check`. */
int restrict_probe_tables(struct conf_errors *errs);
/* Evaluate all lists for one recipient. HOLD and DISCARD are returned as
 * such only when no later list rejects. Returns 1 with *out final, or 0
 * when done(arg, out) will be called from the event loop. */
int restrict_start(struct restrict_eval *ev, const struct restrict_ctx *ctx,
                   struct restrict_result *out, restrict_done_fn done, void *arg);
/* The caller goes away while an evaluation is pending. */
void restrict_cancel(struct restrict_eval *ev);
/* Synchronous form (no event loop: policy services get the default action). */
void restrict_check_rcpt(const struct restrict_ctx *ctx, struct restrict_result *out);
/* 1 when the address is inside mynetworks. */
int restrict_in_mynetworks(const struct sockaddr_storage *addr);
/* 1 when the address is in smtpd_client_event_limit_exceptions. */
int restrict_in_limit_exceptions(const struct sockaddr_storage *addr);

#endif
