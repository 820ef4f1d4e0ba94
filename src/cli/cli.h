/* cli: the subcommands other than serve and check. */
#ifndef KP_CLI_H
#define KP_CLI_H

#include <stdio.h>

/* keypost fingerprint [-d sha256|sha1|md5] FILE.pem */
int cli_fingerprint(int argc, char **argv);
/* keypost queue list|flush|delete ID|hold ID|release ID [-c FILE] */
int cli_queue(int argc, char **argv);
/* keypost map FILE...: build FILE.lmdb; keypost map -q KEY|- TYPE:TABLE:
 * print what a lookup returns (exit 0 found, 1 not found, 2 table failed). */
int cli_map(int argc, char **argv);
/* keypost conf [-c FILE] [-n] [-d] [-x] [NAME...]: "name = value" lines as
 * postconf prints them (as written; -x expanded), sorted by name; -n only
 * those set in the file, -d the defaults. Exit 1 on an unknown NAME or a
 * file with errors. keypost conf --man: cli_conf_man to stdout. */
int cli_conf(int argc, char **argv);
/* The PARAMETERS section of keypost.cf(5), in man(7) roff, grouped as
 * params.def groups them. 0, or -1 when out cannot be written. */
int cli_conf_man(FILE *out);
/* keypost status [-c FILE]: sessions, queue by state, the oldest message,
 * recent deliveries and rejects, certificate expiry (statuscmd.c). */
int cli_status(int argc, char **argv);

/* sendmail [options] [recipient...], also called as mailq (-bp) and
 * newaliases (-bi); name is the name it was called by, for messages.
 * Returns a sysexits.h status. */
int cli_sendmail(int argc, char **argv, const char *name);

/* keypost tlsrpt [-c FILE] [--send]: the TLS results recorded per policy
 * domain; --send reports them now (exit 2 when a destination failed). */
int cli_tlsrpt(int argc, char **argv);

#endif
