/* httpd: the optional Prometheus endpoint (metrics_listen). The master
 * binds the socket at start; a small process of its own, running as
 * mail_owner, answers `GET /metrics` from the shared counter area and a
 * census of the queue, one request per connection, so that no smtpd worker
 * ever spends time on a scrape. The address must be a loopback one unless
 * metrics_allow_non_loopback = yes: the numbers are not secret, but an
 * unauthenticated HTTP service on a public address is nobody's intent. */
#ifndef KP_HTTPD_H
#define KP_HTTPD_H

#include <stddef.h>

#include "conf/conf.h"

/* Check metrics_listen (for `keypost check` and every load). */
void metrics_listen_check(struct conf_errors *errs);
/* Bind and listen on metrics_listen: the descriptor, -1 when it is empty,
 * -2 with err filled when it cannot be bound. */
int metrics_listen_open(char *err, size_t len);
/* After a reload: a warning when metrics_listen is no longer what was bound
 * at start (the socket stays; a restart moves it). */
void metrics_listen_reload_check(void);
/* Serve scrapes on fd until killed (SIGTERM, or SIGUSR1 on reload). */
__attribute__((noreturn)) void metrics_httpd_run(int fd, const char *qdir);

/* Answer one request (the bytes read so far) into out: the status line and
 * headers, and the body unless the method was HEAD. For tests. */
struct buf;
void metrics_http_answer(const char *req, size_t len, const char *qdir, struct buf *out);

#endif
