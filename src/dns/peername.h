/* peername: the SMTP client's host name, as Postfix's smtpd finds it.
 * The address's PTR name is the reverse name; it becomes the client name
 * only when one of its A (IPv4) or AAAA (IPv6) records is the address
 * itself (forward confirmation). Lookups run through libunbound's
 * asynchronous API on the worker's libevent loop, one resolver per worker
 * (configured as dns.c's: dns_resolver or /etc/resolv.conf), and never
 * take longer than the timeout given to peername_start(). */
#ifndef KP_PEERNAME_H
#define KP_PEERNAME_H

#include <stddef.h>
#include <sys/socket.h>

struct event_base;
struct peername_lookup;

/* Why a name is unknown: TEMP (SERVFAIL, timeout, resolver trouble) may
 * go away; PERM (NXDOMAIN, no PTR, a bad PTR name, a forward mismatch)
 * will not. */
enum peername_status { PEERNAME_OK, PEERNAME_TEMP, PEERNAME_PERM };

#define PEERNAME_UNKNOWN "unknown"

struct peername_result {
    char name[256];              /* forward-confirmed name, or "unknown" */
    char reverse_name[256];      /* the PTR name, even unconfirmed, or "unknown" */
    enum peername_status name_status, reverse_status;
    char warning[512];           /* for the log when not empty */
};

typedef void (*peername_done_fn)(void *arg, const struct peername_result *res);

/* The worker's loop; call once before the first lookup. */
void peername_set_base(struct event_base *base);
/* Start a lookup of sa's names. done() is called exactly once, always from
 * the event loop (never from inside this call), unless the lookup is
 * cancelled first. After done() the handle is gone. NULL: out of memory. */
struct peername_lookup *peername_start(const struct sockaddr *sa, long timeout_seconds,
                                       peername_done_fn done, void *arg);
/* Forget a lookup whose done() has not been called; done() never will be. */
void peername_cancel(struct peername_lookup *lk);
/* Free the worker's resolver (no lookup may be pending). */
void peername_shutdown(void);

/* Pure helpers, also for tests. */
/* "7.0.2.192.in-addr.arpa." or the ip6.arpa nibble name; -1 if not IP. */
int peername_reverse_query(const struct sockaddr *sa, char *out, size_t len);
/* A host name Postfix would accept from a PTR: letters, digits, '-', '_'
 * and dots, labels of 1 to 63 bytes, and not all digits and dots. */
int peername_valid_hostname(const char *name);
/* Both names "unknown" with this status (lookups off: PERM, as Postfix). */
void peername_result_unknown(struct peername_result *res, enum peername_status status);

#endif
