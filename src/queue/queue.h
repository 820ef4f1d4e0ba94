/* queue: the spool on disk (format in docs/queue-format.md).
 *
 *   QDIR/tmp/ID       a message being received (O_EXCL, never delivered)
 *   QDIR/active/ID    committed: envelope + message, fsynced, renamed here
 *   QDIR/hold/ID      set aside by `keypost queue hold`
 *   QDIR/state/ID     append-only delivery log: which recipients are done
 *
 * A message becomes durable by queue_commit(): fsync the file, rename it
 * from tmp/ to active/, fsync active/. Only then may smtpd reply 250. */
#ifndef KP_QUEUE_H
#define KP_QUEUE_H

#include <stddef.h>
#include <sys/types.h>
#include <time.h>

#define QUEUE_ID_LEN 17 /* 16 hex digits and NUL */

struct envelope {
    char id[QUEUE_ID_LEN];
    time_t arrival;
    char *sender;
    char **rcpts;
    char **orig_rcpts; /* per recipient: the address given at RCPT when an
                          alias expansion changed it, else NULL (may be NULL) */
    int nrcpt;
    char *client;     /* "host[addr]" */
    char *helo;
    char *proto;
    int hold;         /* an access table said HOLD */
    int smtputf8;     /* MAIL FROM had SMTPUTF8 */
    int eightbit;     /* MAIL FROM had BODY=8BITMIME */
    int local;        /* submitted by a local user (sendmail) ... */
    unsigned local_uid; /* ... with this uid */
    off_t body_offset; /* where the message starts in the file */
    off_t size;        /* message bytes */
};

struct qfile;

/* Create the queue directories (and fix their owner when uid >= 0). */
int queue_init_dirs(const char *qdir, int uid, int gid, char *err, size_t errlen);
/* 1 for a well-formed queue id (16 upper-case hex digits). */
int queue_valid_id(const char *id);
/* A fresh unique id. */
void queue_new_id(char out[QUEUE_ID_LEN]);
/* Start a message: creates tmp/ID with the envelope header written. */
struct qfile *queue_create(const char *qdir, const struct envelope *env);
/* Append message bytes (buffered). -1 on a write error (sticky). */
int queue_write(struct qfile *q, const void *p, size_t n);
const char *queue_file_id(const struct qfile *q);
/* The message written so far, read back (end-of-message filters): a new
 * read-only fd positioned after the envelope, or -1. */
int queue_message_fd(struct qfile *q);
/* A new file for the message of old, under the same id (a filter changed
 * it): written as any other, then put in old's place by queue_replace(),
 * which frees old. Aborting the replacement leaves old as it was. */
struct qfile *queue_create_replacement(const struct qfile *old, const struct envelope *env);
int queue_replace(struct qfile *old, struct qfile *rep);
/* Commit into hold/ (a filter quarantined the message). */
void queue_set_hold(struct qfile *q);
/* Make it durable (blocking: run it off the event loop). 0 or -1. */
int queue_commit(struct qfile *q);
/* fsync the active/ directory once for many commits (group commit). */
int queue_sync_active_dir(const char *qdir);
/* The part of queue_commit before the directory fsync. */
int queue_commit_file(struct qfile *q);
/* Write out q's buffer and start the disk writes without waiting (for a
 * group, before queue_commit_file of each). */
int queue_start_writeback(struct qfile *q);
/* Undo a commit whose directory fsync failed (the client hears 451). */
void queue_withdraw(struct qfile *q);
/* Throw away a message that was never acknowledged, and free q. */
void queue_abort(struct qfile *q);
/* Free after a successful commit. */
void queue_close(struct qfile *q);

/* Queue files are read without following links. mail_owner owns the queue,
 * so a name in it may be a symbolic link, a hard link or a FIFO planted to
 * make root (the queue command) or the daemon read a file that is not a
 * queue file. Such a name is refused with errno ELOOP and reported to the
 * refusal reporter: by default a warning in the log; the queue command
 * sets its own to print on stderr. */
typedef void queue_refusal_fn(const char *path, const char *why);
void queue_set_refusal_reporter(queue_refusal_fn *fn); /* NULL: the log again */
/* Open a file of the queue (QDIR/SUBDIR/NAME) for reading: neither the file
 * nor SUBDIR may be a link, and the file must be a regular file with one
 * name. Returns the fd, or -1 with errno (ELOOP when refused). */
int queue_open_read(const char *path);

/* Read the envelope of QDIR/subdir/ID ("active" or "hold"). -1 with errno
 * set: ENOENT (gone), EACCES, ELOOP (refused, see above), EBADMSG (not a
 * queue file). */
int queue_load(const char *qdir, const char *subdir, const char *id, struct envelope *env);
void envelope_free(struct envelope *env);
/* The original recipient of rcpts[i]: orig_rcpts[i], or rcpts[i] itself. */
const char *envelope_orig_rcpt(const struct envelope *env, int i);

/* Delivery state: which recipients are finished, how many attempts. */
struct queue_state {
    unsigned char *done;  /* per recipient: 0 pending, 'D' delivered, 'B' bounced,
                             'N' bounced and the sender notified */
    char **reason;        /* per recipient: the last failure (B or T lines) */
    int attempts;
    time_t next_attempt;
};
/* 0 also when there is no state file yet; -1 with errno when it cannot
 * be read (st is then empty, as for a new message). */
int queue_state_load(const char *qdir, const struct envelope *env, struct queue_state *st);
/* Append "D idx", "B idx reason", "T idx reason" (temporary failure) or
 * "N idx" (bounce sent); durable before return. reason may be NULL. */
int queue_state_mark(const char *qdir, const char *id, int rcpt, char what, const char *reason);
int queue_state_attempt(const char *qdir, const char *id, time_t next);
/* Build state lines in b (as queue_state_mark writes them) and append them
 * all with one durable write. */
struct buf;
void queue_state_line(struct buf *b, int rcpt, char what, const char *reason);
int queue_state_append(const char *qdir, const char *id, const char *lines);
void queue_state_free(struct queue_state *st, int nrcpt);
/* Remove a finished or deleted message from every place. */
int queue_remove(const char *qdir, const char *id);
/* Move between active/ and hold/. */
int queue_move(const char *qdir, const char *id, const char *from, const char *to);
/* Remove leftovers in tmp/ (after a crash: never acknowledged). */
void queue_clean_tmp(const char *qdir);

/* Visit every id in QDIR/subdir; the callback returns nonzero to stop.
 * -1 with errno when the directory cannot be read (ELOOP: it is a link). */
int queue_scan(const char *qdir, const char *subdir,
               int (*fn)(const char *id, void *arg), void *arg);

#endif
