/* notify: commands to the queue manager through a datagram socket in the
 * queue directory ("qmgr.sock"): FLUSH, SCAN, or a queue id. New messages
 * need no notice (the queue manager watches active/ with inotify); a lost
 * notice costs at most queue_run_delay, never mail. */
#ifndef KP_NOTIFY_H
#define KP_NOTIFY_H

/* Tell the queue manager that message id is new (id "FLUSH": retry all
 * deferred mail now). Returns 0 when the notice was sent, -1 otherwise. */
int queue_notify(const char *qdir, const char *id);
/* Create the queue manager's socket; returns the fd or -1. */
int queue_notify_listen(const char *qdir);

#endif
