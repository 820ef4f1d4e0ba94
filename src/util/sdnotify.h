/* sdnotify: tells the service manager (systemd, Type=notify) what the
 * master is doing: ready, reloading, stopping. This is the documented
 * sd_notify protocol written out: one datagram of "NAME=value" lines to the
 * AF_UNIX socket named by $NOTIFY_SOCKET (a path, or "@name" for an
 * abstract socket). Without $NOTIFY_SOCKET (keypost started by hand, in a
 * container, by another supervisor) every call does nothing.
 *
 * keypost does not link libsystemd: the protocol is a stable interface of a
 * few lines, and the daemon keeps running where no libsystemd exists
 * without loading its compression and crypto libraries into a root process. */
#ifndef KP_SDNOTIFY_H
#define KP_SDNOTIFY_H

#include <stddef.h>

/* Send state (lines without a trailing newline needed) to $NOTIFY_SOCKET.
 * Returns 1 when sent, 0 when no socket is set, -1 with err on failure. */
int sdnotify_send(const char *state, char *err, size_t len);

/* The master's three moments; failures are logged as warnings (a service
 * manager that cannot be told is no reason to stop serving mail).
 * status is a one-line text for `systemctl status`, or NULL. */
void sdnotify_ready(const char *status);
/* RELOADING=1 with MONOTONIC_USEC, as systemd >= 253 asks; READY=1 follows. */
void sdnotify_reloading(void);
void sdnotify_stopping(void);

#endif
