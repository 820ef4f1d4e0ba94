/* anvil: concurrent connections per client address, shared by all smtpd
 * workers through an anonymous shared mapping made by the master before it
 * forks. Addresses are hashed (with a random key) into buckets; a collision
 * can only make the count too high for both clients, never let one exceed
 * the limit. A worker that crashes leaves its counts behind until the next
 * start: the limit errs on the side of refusing. */
#ifndef KP_ANVIL_H
#define KP_ANVIL_H

#include <sys/socket.h>

/* Create the shared table (in the master, before forking). */
int anvil_init(void);
/* Count one more connection; returns the bucket, or -1 when over limit. */
int anvil_enter(const struct sockaddr_storage *addr, long limit);
void anvil_leave(int bucket);

/* Per-client event rates in fixed windows of `unit` seconds, shared the
 * same way (a window restarts when it is over; a collision can only count
 * too much). Counts add events (0 only reads) and returns the client's
 * count in the current window, or 0 without a table. */
enum anvil_event { ANVIL_AUTH_COMMAND, ANVIL_AUTH_FAILURE, ANVIL_EVENTS };
long anvil_rate(const struct sockaddr_storage *addr, enum anvil_event ev, long unit, int add);

#endif
