/* tlsrpt: `keypost tlsrpt [-c FILE] [--send]`: the TLS results recorded
 * for each policy domain and not reported yet; with --send, a report run
 * now for everything recorded, today's results included (tls/tlsrpt_send.h).
 *
 * Run as root, the command becomes mail_owner before it touches the queue
 * (a report queued by root would be a file the queue manager cannot read),
 * after reading the CA file of smtp_tls_reporting_CAfile. What it does is
 * printed, and logged to maillog_file when that is set. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "conf/conf.h"
#include "tls/tlsrpt.h"
#include "tls/tlsrpt_report.h"
#include "tls/tlsrpt_send.h"
#include "util/log.h"
#include "util/privs.h"

static int show(const char *qdir)
{
    char err[600] = "";
    struct tlsrpt_agg *a = tlsrpt_load(qdir, err, sizeof err);
    if (a == NULL) {
        fprintf(stderr, "keypost tlsrpt: %s\n", err);
        return 2;
    }
    for (int i = 0; i < tlsrpt_agg_ndomains(a); i++)
        tlsrpt_agg_print(a, i, stdout);
    tlsrpt_agg_free(a);
    return 0;
}

static int setup(const char *config, int send)
{
    struct conf_errors errs = {0};
    conf_defaults();
    if (conf_load(config, &errs) == 0 && send)
        tlsrpt_init(&errs);
    for (int i = 0; i < errs.count; i++)
        fprintf(stderr, "%s\n", errs.msgs[i]);
    int n = errs.count;
    conf_errors_free(&errs);
    if (n)
        return 1;
    log_set_role("tlsrpt");
    log_set_hostname(conf_str(P_MYHOSTNAME));
    const char *logfile = conf_str(P_MAILLOG_FILE);
    log_set_syslog(conf_str(P_SYSLOG_NAME), conf_str(P_SYSLOG_FACILITY));
    if (log_open(logfile) < 0) { /* as the daemon logs: the file, or syslog */
        fprintf(stderr, "keypost tlsrpt: cannot open maillog_file %s\n", logfile);
        return 2;
    }
    char err[300];
    int uid = -1, gid = -1;
    if (privs_lookup(conf_str(P_MAIL_OWNER), &uid, &gid, err, sizeof err) < 0 ||
        privs_drop(uid, gid, err, sizeof err) < 0) {
        fprintf(stderr, "keypost tlsrpt: %s\n", err);
        return 2;
    }
    return 0;
}

int cli_tlsrpt(int argc, char **argv)
{
    const char *config = "/etc/keypost/keypost.cf";
    int send = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-c") == 0 && i + 1 < argc)
            config = argv[++i];
        else if (strcmp(argv[i], "--send") == 0)
            send = 1;
        else {
            fprintf(stderr, "usage: keypost tlsrpt [-c FILE] [--send]\n");
            return 1;
        }
    }
    int r = setup(config, send);
    if (r)
        return r;
    if (!conf_bool(P_SMTP_TLS_REPORTING)) {
        fprintf(stderr, "keypost tlsrpt: %s: smtp_tls_reporting = no: nothing is recorded%s\n",
                config, send ? " or sent" : "");
        return send ? 1 : show(conf_str(P_QUEUE_DIRECTORY));
    }
    if (!send)
        return show(conf_str(P_QUEUE_DIRECTORY));
    int failed = tlsrpt_run(conf_str(P_QUEUE_DIRECTORY), 1, stdout);
    return failed == 0 ? 0 : 2;
}
