/* qmgr: the queue manager process. It finds messages in active/ (at
 * start, when smtpd notifies it, and every queue_run_delay), runs one
 * delivery process per message up to default_destination_concurrency_limit,
 * and reschedules deferred mail with exponential backoff between
 * minimal_backoff_time and maximal_backoff_time. A message leaves the
 * queue only when every recipient is delivered or bounced. */
#ifndef KP_QMGR_H
#define KP_QMGR_H

/* Run until SIGTERM; returns the exit status. */
int qmgr_run(void);
/* Deliver every pending recipient of one message (in a child process);
 * returns 0 when none is left, 1 when some were deferred. */
int qmgr_deliver_message(const char *qdir, const char *id);
/* The next delay after the given number of failed attempts. */
long qmgr_backoff(int attempts, long minimal, long maximal);

#endif
