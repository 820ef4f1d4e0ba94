/* cli: the subcommands other than serve and check. */
#ifndef KP_CLI_H
#define KP_CLI_H

/* keypost fingerprint [-d sha256|sha1|md5] FILE.pem */
int cli_fingerprint(int argc, char **argv);
/* keypost queue list|flush|delete ID|hold ID|release ID [-c FILE] */
int cli_queue(int argc, char **argv);

#endif
