/* dnswait: lookups bounded by a deadline, for MTA-STS policy discovery
 * (the _mta-sts TXT record and the policy host's addresses). dns.c's
 * lookups wait as long as libunbound retries; these use libunbound's
 * asynchronous API on a resolver of their own (dns_resolver_new, so the
 * same dns_resolver), poll its descriptor, and cancel at the deadline
 * (a timeout is DNS_TEMPFAIL). They block the caller: delivery processes
 * only, never an event loop. Deadlines are CLOCK_MONOTONIC milliseconds. */
#ifndef KP_DNSWAIT_H
#define KP_DNSWAIT_H

#include <stddef.h>
#include <sys/socket.h>

#include "dns/dns.h"

#define RR_TXT 16

/* Monotonic milliseconds now. */
long long dnswait_now_ms(void);
/* TXT records of name, one per line in out (a record's strings joined, as
 * RFC 8461 3.1 says); *count records. Records that do not fit are left out. */
enum dns_status dnswait_txt(const char *name, long long deadline, char *out, size_t outlen,
                            int *count, char *err, size_t errlen);
/* A and AAAA records of host, with port filled in. */
enum dns_status dnswait_addrs(const char *host, int port, long long deadline,
                              struct sockaddr_storage *out, int max, int *count, char *err,
                              size_t errlen);

#endif
