/* commit: makes messages durable off the event loop, in groups.
 * One thread per smtpd worker takes every commit waiting at that moment,
 * starts the disk writes of all its files, fdatasyncs and renames each into
 * active/, then fsyncs active/ once for the whole group, and only then reports each one back to the event loop,
 * where the session sends its 250. Without an event base (unit tests and
 * command-line tools) commits run synchronously. */
#ifndef KP_COMMIT_H
#define KP_COMMIT_H

struct event_base;
struct qfile;

typedef void (*commit_done_fn)(void *arg, int ok);

/* Start the committer for this process. base may be NULL (synchronous). */
int commit_start(struct event_base *base, const char *qdir);
/* Queue q for commit; done(arg, ok) is called on the loop thread. */
void commit_submit(struct qfile *q, commit_done_fn done, void *arg);
void commit_stop(void);

#endif
