/* privs: running as mail_owner. When started as root, keypost does the
 * privileged work first (bind ports, read keys, open the log) and then every
 * process that touches the network or the queue runs as mail_owner. */
#ifndef KP_PRIVS_H
#define KP_PRIVS_H

#include <stddef.h>

/* Look up user; uid/gid are -1 when not running as root. */
int privs_lookup(const char *user, int *uid, int *gid, char *err, size_t len);
/* Become uid/gid for good (no-op when uid < 0). */
int privs_drop(int uid, int gid, char *err, size_t len);

#endif
