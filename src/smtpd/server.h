/* server: one smtpd worker process. It accepts on the shared listeners,
 * runs every session on a libevent loop with non-blocking sockets and
 * OpenSSL, and connects each session's protocol machine (session.h) to its
 * socket. SIGTERM: stop accepting, end idle sessions with 421, let busy ones
 * finish their message, exit. SIGUSR1 (reload): stop accepting, let every
 * session finish, exit. */
#ifndef KP_SERVER_H
#define KP_SERVER_H

#include "smtpd/listen.h"
#include "tls/tls.h"

/* Run the worker loop until it is told to stop; returns the exit status. */
int server_run(struct listener *ls, int nls, struct tls_server *tls);

#endif
