/* qmgr: the queue manager process. It finds messages in active/ (at start,
 * when notified through qmgr.sock, and every queue_run_delay), groups the
 * due recipients by route (route.h), and hands each next hop's batch of
 * messages to a delivery agent (agent.h: long-lived processes), so that one
 * SMTP connection carries many messages. Concurrency: at most
 * default_destination_concurrency_limit batches per next hop and
 * default_process_limit agents in all. When a message's
 * deliveries end, its "finish" step sends bounces (RFC 3464) for recipients
 * that failed for good or outlived maximal_queue_lifetime
 * (bounce_queue_lifetime for bounces), removes a finished message, or
 * schedules the next attempt with exponential backoff between
 * minimal_backoff_time and maximal_backoff_time. */
#ifndef KP_QMGR_H
#define KP_QMGR_H

/* Run until SIGTERM; returns the exit status. */
int qmgr_run(void);
/* Deliver the recipients of messages ids[0..n-1] whose route key is key;
 * finish[i]: no other delivery works on ids[i] in this round. */
void qmgr_deliver_job(const char *qdir, const char *key, char **ids, const int *finish, int n);
/* Bounce, remove or reschedule one message after its deliveries; returns 0
 * when the message left the queue, 1 when recipients remain. */
int qmgr_finish_message(const char *qdir, const char *id);
/* The delay after the given number of failed attempts. */
long qmgr_backoff(int attempts, long minimal, long maximal);

#endif
