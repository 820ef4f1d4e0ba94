/* notify: wakes the queue manager through a datagram socket in the queue
 * directory ("qmgr.sock"). Losing a notice loses no mail: the queue
 * manager also scans the queue every queue_run_delay. */
#ifndef KP_NOTIFY_H
#define KP_NOTIFY_H

/* Tell the queue manager that message id is new (id "FLUSH": retry all
 * deferred mail now). Returns 0 when the notice was sent, -1 otherwise. */
int queue_notify(const char *qdir, const char *id);
/* Create the queue manager's socket; returns the fd or -1. */
int queue_notify_listen(const char *qdir);

#endif
