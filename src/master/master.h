/* master: `keypost serve` and `keypost check`. The master reads and checks
 * the whole configuration, binds the listeners and loads keys (as root when
 * started so), then forks the queue manager and one smtpd worker per core,
 * all running as mail_owner. It restarts a worker that dies, stops
 * everything cleanly on SIGTERM, and on SIGHUP re-reads configuration,
 * certificates and tables: new workers take over the listeners while the
 * old ones finish their sessions, so no connection is dropped. */
#ifndef KP_MASTER_H
#define KP_MASTER_H

#include "conf/conf.h"

/* Load and check everything a server needs (no sockets are bound). */
int master_check_config(const char *path, struct conf_errors *errs);
int master_serve(const char *path);

#endif
