/* lmtp: local delivery through an LMTP server (RFC 2033), such as
 * Dovecot's, at "inet:HOST:PORT" or "unix:PATH". One session carries all
 * recipients of a message; each gets its own result. */
#ifndef KP_LMTP_H
#define KP_LMTP_H

#include "deliver/deliver.h"

/* Deliver to rcpts[0..n-1]; results[i] is filled for each. */
void lmtp_deliver(const char *target, const struct dmessage *m, char **rcpts, int n,
                  struct dresult *results, int timeout);

#endif
