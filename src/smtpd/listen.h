/* listen: the listening sockets named by smtpd_listen, submission_listen
 * and smtps_listen ("127.0.0.1:25", "[::1]:587", "0.0.0.0:465"). The master
 * opens them (as root, before dropping privileges); every worker accepts on
 * the same sockets, so that replacing a worker on reload drops nothing that
 * waits in the accept queue. */
#ifndef KP_LISTEN_H
#define KP_LISTEN_H

#include "conf/conf.h"
#include "smtpd/session.h"

struct listener {
    int fd;
    enum listener_kind kind;
    char text[80];
};

/* Parse every list and check the addresses (for `keypost check`). */
int listen_check(struct conf_errors *errs);
/* Open all listeners; returns the count, or -1 with errs filled. */
int listen_open(struct listener **out, struct conf_errors *errs);
void listen_close(struct listener *ls, int n);
/* At shutdown: remove the sendmail command's sockets (local_socket_directory),
 * so that the command says at once that keypost is not running. */
void listen_unlink_local(void);

#endif
