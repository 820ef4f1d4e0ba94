/* tlsrpt_send: sending TLSRPT aggregate reports (RFC 8460).
 *
 * A report run takes the day files of $queue_directory/tlsrpt (tlsrpt.h)
 * whose UTC day has ended (with all: today's too, for `keypost tlsrpt
 * --send`), renames each away (rpt-DAY-UNIQUE), waits for its writers,
 * and sends one report per policy domain found in it: the RFC's JSON,
 * gzip-compressed, to every rua= of the domain's _smtp._tls TXT record
 * (looked up and DNSSEC-validated as delivery lookups are: a bogus or
 * failed answer means no report). rua=mailto: gets an RFC 8460 5.3 MIME
 * message, injected into keypost's own queue from the null sender (as a
 * bounce is, so it never bounces); rua=https: gets a POST of
 * application/tlsrpt+gzip, the server's certificate checked against the
 * system store (or smtp_tls_reporting_CAfile) and its name. Then the file
 * is removed: reports are best effort (RFC 8460 3), a destination that
 * fails is logged and not tried again. A file left by a run that died is
 * reported by the next run.
 *
 * Who runs it: the queue manager checks once a minute whether a day has
 * ended with results and then forks a child that runs the report and
 * exits; the queue manager's event loop never waits for its DNS lookups or
 * HTTPS POSTs (each bounded by smtp_tls_reporting_timeout). A child rather
 * than a delivery agent: the run is once a day, needs no agent slot, and
 * its end only matters to the next minute's check. Runs never overlap: a
 * lock file in the directory serializes them (the command's too). */
#ifndef KP_TLSRPT_SEND_H
#define KP_TLSRPT_SEND_H

#include <stdio.h>
#include <sys/types.h>

struct tlsrpt_agg;

/* Every recorded result not yet reported (for `keypost tlsrpt`); NULL
 * with err when the directory cannot be read (none yet is no error). */
struct tlsrpt_agg *tlsrpt_load(const char *qdir, char *err, size_t errlen);
/* One report run (see above). Progress lines go to the log, and to out
 * when not NULL. Returns how many destinations failed, or -1 when the run
 * could not start. */
int tlsrpt_run(const char *qdir, int all, FILE *out);
/* In the queue manager, every second: start a run in a child when due. */
void tlsrpt_tick(const char *qdir);
/* A child ended: 1 when it was the report run. */
int tlsrpt_reaped(pid_t pid);

#endif
