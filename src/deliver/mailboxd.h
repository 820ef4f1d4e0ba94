/* mailboxd: writes virtual mailboxes as the users that own them.
 * Delivery agents run as mail_owner and cannot make files that belong to
 * the uid virtual_uid_maps names (Dovecot's vmail, say). When keypost is
 * started as root, the master keeps one small helper as root for this; it
 * reads no message: an agent asks "OPEN uid gid path", the helper (with
 * its filesystem ids set to uid/gid, so that the kernel applies exactly
 * that user's rights and drops root's) makes the directories and a new
 * file in tmp/, and passes the open file back; the agent writes and syncs
 * it and asks "COMMIT", and the helper moves it into new/ and syncs new/.
 * A connection that ends before COMMIT leaves nothing behind.
 * The helper listens on an autobound abstract Unix socket (no file to
 * attack, no name to take first), takes
 * connections from mail_owner's uid only, serves each in a child of its own
 * and refuses uids below virtual_minimum_uid and gid 0. */
#ifndef KP_MAILBOXD_H
#define KP_MAILBOXD_H

#include <stddef.h>

/* In the master, as root: the helper's listening socket, or -1 with err. */
int mailboxd_listen(char *err, size_t len);
/* The helper's main loop, as root; peers must have uid peer_uid. */
void mailboxd_run(int listen_fd, int peer_uid) __attribute__((noreturn));
/* 1 when a helper was set up (keypost started as root). */
int mailboxd_available(void);

/* In an agent: a new file for BASE/rel/ owned by uid:gid. Returns the
 * connection (give it to mailboxd_commit or close it to abandon the file)
 * and *file, or -1 with err ("4.x.x text"). */
int mailboxd_open(int uid, int gid, const char *rel, int *file, char *err, size_t len);
/* Move the written file into new/; 0, or -1 with err. Closes conn. */
int mailboxd_commit(int conn, char *err, size_t len);

#endif
