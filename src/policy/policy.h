/* policy: the client of Postfix's policy delegation protocol
 * (SMTPD_POLICY_README): a request is "name=value" lines and a blank line,
 * the answer "action=..." and a blank line. Connections to each server
 * (inet:HOST:PORT or unix:PATH) are kept and reused, within
 * smtpd_policy_service_max_idle and _max_ttl; a request that times out
 * (smtpd_policy_service_timeout) or meets a closed or garbled connection is
 * tried again after _retry_delay, up to _try_limit times, and then answered
 * with smtpd_policy_service_default_action. Everything runs on the worker's
 * event loop: a slow policy server delays only the sessions that wait for it. */
#ifndef KP_POLICY_H
#define KP_POLICY_H

#include <stddef.h>

struct event_base;
struct policy_call;

/* action is the text after "action=" (or the default action). */
typedef void (*policy_done_fn)(void *arg, const char *action);

/* Use this loop; without one every query gets the default action at once. */
void policy_set_base(struct event_base *base);
/* Check a target's form ("inet:HOST:PORT" or "unix:/PATH"). */
int policy_target_ok(const char *target);
/* Send request (the attribute lines, without the final blank line).
 * Returns a handle for policy_cancel, or NULL when done() already ran. */
struct policy_call *policy_query(const char *target, const char *request, size_t len,
                                 policy_done_fn done, void *arg);
/* The caller is going away: done() will not be called. */
void policy_cancel(struct policy_call *call);
/* Close idle connections (at shutdown). */
void policy_shutdown(void);

#endif
