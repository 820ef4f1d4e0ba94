/* localsubmit: mail from local users (the sendmail command), as the server
 * sees it.
 *
 * Design. The queue belongs to mail_owner and the workers run unprivileged,
 * so a local user cannot write the queue and keypost installs no setuid or
 * setgid program. Instead the master, as root, opens two UNIX sockets in
 * local_socket_directory (mode 0755, root's), each mode 0666:
 *   submit  SMTP, served by the smtpd workers as one more listener kind
 *           (LISTEN_LOCAL): the same session machine, limits, restrictions
 *           (the client is localhost[127.0.0.1], as Postfix's stand-alone
 *           smtpd) and durable commit (queue/commit.c: the 250 follows the
 *           fsyncs), so that a later end-of-message hook (non_smtpd_milters)
 *           sees local mail where it sees SMTP mail;
 *   showq   one queue listing per connection, filtered by the caller.
 * The kernel names the connecting user (SO_PEERCRED); nothing the client
 * says about itself is believed. A user not in authorized_submit_users is
 * refused at the greeting. The envelope sender must be one the user owns:
 * its login (qualified with myorigin) or what local_login_sender_maps lists
 * for it (an address extension does not count, as in Postfix); anything
 * else gets 553 5.7.1, as Postfix's sender login checks answer (Postfix's
 * postdrop refuses such a sender too, its default just allows all). The queue file records the submitter's uid (docs/queue-format.md)
 * so that showq shows a user only its own messages (root and mail_owner
 * see all). */
#ifndef KP_LOCALSUBMIT_H
#define KP_LOCALSUBMIT_H

#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

#include "conf/conf.h"

#define LOCAL_SUBMIT_SOCKET "submit"
#define LOCAL_SHOWQ_SOCKET "showq"

/* Open local_login_sender_maps and check authorized_submit_users. */
int localsubmit_init(struct conf_errors *errs);
void localsubmit_free(void);
/* "DIR/NAME" for a socket of local_socket_directory; -1 if it does not fit
 * or the directory is not an absolute path. */
int localsubmit_socket_path(const char *name, char *out, size_t len);
/* The user's name and uid behind a connected UNIX socket. 0 or -1. */
int localsubmit_peer(int fd, uid_t *uid, char *login, size_t len);
/* 1 when login may submit (authorized_submit_users). */
int localsubmit_authorized(const char *login);
/* 1 when login may use the (qualified) envelope sender addr ("" is the
 * null sender), 0 when not, -1 when a table could not answer. */
int localsubmit_sender_ok(const char *login, const char *addr);
/* For `keypost check`: which users may name senders other than their own,
 * as found in the local tables (one line each). */
void localsubmit_describe(FILE *out);

#endif
