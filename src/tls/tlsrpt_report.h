/* tlsrpt_report: recorded TLS results (tlsrpt.h) into RFC 8460 aggregate
 * reports, and the _smtp._tls TXT record's syntax. Pure: no I/O, so the
 * unit tests feed it hostile strings.
 *
 * Results are grouped per policy: (policy domain, type, policy strings,
 * and for tlsa the MX host, since TLSA records are per host). A policy
 * counts successful and failed sessions; failures are grouped into
 * failure-details by (result type, sending and receiving address,
 * receiving MX host, reason). The JSON is RFC 8460 section 4.4's; every
 * string is escaped (quotes, backslashes, control characters) and bytes
 * that are not UTF-8 become U+FFFD, so whatever a DNS name or a policy
 * line holds, the report stays valid JSON. */
#ifndef KP_TLSRPT_REPORT_H
#define KP_TLSRPT_REPORT_H

#include <stdio.h>
#include <time.h>

#include "tls/tlsrpt.h"
#include "util/buf.h"

struct tlsrpt_agg;

struct tlsrpt_agg *tlsrpt_agg_new(void);
void tlsrpt_agg_free(struct tlsrpt_agg *a);
/* Count one result; -1 when out of memory. */
int tlsrpt_agg_add(struct tlsrpt_agg *a, const struct tlsrpt_result *r);
/* The policy domains seen, sorted: n of them; name i. */
int tlsrpt_agg_ndomains(const struct tlsrpt_agg *a);
const char *tlsrpt_agg_domain(const struct tlsrpt_agg *a, int i);
/* One line per policy of domain i, for `keypost tlsrpt`:
 * "DOMAIN policy=TYPE successful=N failed=M[ RESULT=K...]". */
void tlsrpt_agg_print(const struct tlsrpt_agg *a, int i, FILE *out);

struct tlsrpt_meta {
    const char *organization;
    const char *contact;
    const char *report_id;
    time_t start, end;
};
/* The report of domain i (RFC 8460 4.4) into out; -1 if out is full. */
int tlsrpt_json(const struct tlsrpt_agg *a, int i, const struct tlsrpt_meta *m, struct buf *out);
/* s as a JSON string, quotes included. */
int tlsrpt_json_string(struct buf *out, const char *s);

/* The rua= of the _smtp._tls TXT records (one record a line): 1 with the
 * comma-separated URIs in rua; 0 when the domain has no usable record
 * (none, or more than one, begins with "v=TLSRPTv1", or it has no rua=),
 * as RFC 8460 3 says. */
int tlsrpt_txt_rua(const char *records, char *rua, size_t len);
/* One rua URI: mailto:ADDR (percent-decoded) or https://HOST[:PORT]/PATH. */
struct tlsrpt_dest {
    int https;
    char addr[320];   /* mailto */
    char host[256];   /* https */
    int port;
    char path[1024];
};
/* 0, or -1 for a URI keypost cannot use (other schemes, malformed). */
int tlsrpt_dest_parse(const char *uri, struct tlsrpt_dest *d);

#endif
