/* cli: the subcommands other than serve and check. */
#ifndef KP_CLI_H
#define KP_CLI_H

/* keypost fingerprint [-d sha256|sha1|md5] FILE.pem */
int cli_fingerprint(int argc, char **argv);
/* keypost queue list|flush|delete ID|hold ID|release ID [-c FILE] */
int cli_queue(int argc, char **argv);
/* keypost map FILE...: build FILE.lmdb; keypost map -q KEY|- TYPE:TABLE:
 * print what a lookup returns (exit 0 found, 1 not found, 2 table failed). */
int cli_map(int argc, char **argv);

#endif
