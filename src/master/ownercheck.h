/* ownercheck: can the unprivileged processes use what they need?
 *
 * After the privilege drop, the queue manager, the smtpd workers and the
 * delivery agents run as mail_owner and open by path: the queue directory,
 * the Maildir bases of maildir: transports, the smtpd_tls_CApath
 * directory (OpenSSL reads it during each handshake) and the DNSSEC trust
 * anchor dns_trust_anchor_file (libunbound reads it in each delivery agent). Every other file
 * (keys, certificates, tables of restrictions and TLS policies, the log) is
 * opened by the master while it is still root. A path mail_owner cannot use does not fail
 * at start but later, one message at a time (451 4.3.0, a queue manager
 * restarting forever); so it is tested here, in a child that becomes
 * mail_owner, and reported as a configuration error. */
#ifndef KP_OWNERCHECK_H
#define KP_OWNERCHECK_H

#include "conf/conf.h"

/* For `keypost check`. As root: tests as mail_owner, taking into account
 * that `serve` creates the queue directory and the local Maildir base and
 * gives them to mail_owner. Not as root: tests as the current user if that
 * is mail_owner, else adds a warning that the test was skipped. Adds
 * "FILE:LINE: ..." errors; returns their number. */
int ownercheck_config(struct conf_errors *errs);

/* For `keypost serve`, before it creates anything: tests as uid/gid, the
 * identity its children will have (uid < 0: not started as root, so they
 * keep the current user's). Adds errors; returns their number. */
int ownercheck_serve(int uid, int gid, struct conf_errors *errs);

#endif
