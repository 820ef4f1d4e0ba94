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
/* 1 when the effective user is the user named user. */
int privs_is_current_user(const char *user);
/* The effective user's name ("uid N" when it has none), for messages. */
void privs_current_user(char *name, size_t len);

#endif
