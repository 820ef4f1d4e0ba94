/* deadline: the time limits of one SMTP session beyond the per-read
 * smtpd_timeout, as arithmetic on a monotonic clock (seconds), so that it
 * can be tested without sockets.
 *   - smtpd_session_deadline (keypost's own): the whole session ends then,
 *     however busy the client keeps it;
 *   - smtpd_per_request_deadline (Postfix's): a request (a command line, or
 *     the message content, with its reply) must be complete within
 *     smtpd_timeout, so a client that trickles a byte every few seconds no
 *     longer holds a session for ever;
 *   - smtpd_min_data_rate (Postfix's): during DATA, every N bytes received
 *     add N / rate seconds to the request's deadline, never more than
 *     smtpd_timeout from now. */
#ifndef KP_DEADLINE_H
#define KP_DEADLINE_H

#include <stddef.h>

struct deadline {
    double session_end;   /* 0: no session deadline */
    double request_end;   /* 0: no request in progress */
    double timeout;       /* smtpd_timeout */
    double min_rate;      /* bytes per second; 0: no data allowance */
    int per_request;
};

void deadline_init(struct deadline *d, double now, long session_seconds, long timeout,
                   int per_request, long min_rate);
/* The first byte of a request arrived (no effect while one is running). */
void deadline_request_start(struct deadline *d, double now);
/* bytes of message content arrived during DATA. */
void deadline_data(struct deadline *d, double now, size_t bytes);
/* The request and its reply are done. */
void deadline_request_end(struct deadline *d);
/* The server's own work (a commit, a policy answer) took the time: the
 * running request gets smtpd_timeout from now again. */
void deadline_request_wait(struct deadline *d, double now);
/* The earliest deadline, 0 when none. */
double deadline_next(const struct deadline *d);
/* NULL, or which deadline has passed: "session" or "request". */
const char *deadline_expired(const struct deadline *d, double now);
/* The monotonic clock, in seconds. */
double deadline_now(void);

#endif
