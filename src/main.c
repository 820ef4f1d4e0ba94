/* keypost: a mail transfer agent that authenticates peers by TLS client
 * certificate. main dispatches the subcommands. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "conf/conf.h"
#include "master/master.h"
#include "smtpd/localsubmit.h"
#include "util/proctitle.h"

#define DEFAULT_CONFIG "/etc/keypost/keypost.cf"

static int usage(void)
{
    fprintf(stderr,
            "usage: keypost serve [-c FILE]        run the mail server in the foreground\n"
            "       keypost check [-c FILE] [-v]   check a configuration (-v: and who may send as whom)\n"
            "       keypost conf [-c FILE] [-n|-d] [-x] [NAME...]\n"
            "                                     print parameters (-n: set in FILE, -d: defaults,\n"
            "                                     -x: $name expanded)\n"
            "       keypost conf --man            the PARAMETERS section of keypost.cf(5)\n"
            "       keypost fingerprint [-d DIGEST] FILE.pem\n"
            "       keypost fingerprint --tlsa FILE.pem  its \"3 1 1\" TLSA record\n"
            "       keypost queue [-c FILE] list|flush|delete ID|hold ID|release ID\n"
            "       keypost status [-c FILE]       sessions, queue, recent deliveries, certificates\n"
            "       keypost map FILE...           build FILE.lmdb for lmdb:FILE tables\n"
            "       keypost map -q KEY TYPE:TABLE print the value of KEY (exit 1: none, 2: table failed)\n"
            "       keypost map -q - TYPE:TABLE   look up each line of stdin, print KEY<TAB>VALUE\n"
            "       keypost sendmail [options] [recipient...]  submit a message (also as sendmail,\n"
            "                                     mailq = -bp, newaliases = -bi)\n"
            "       keypost tlsrpt [-c FILE] [--send]\n"
            "                                     TLS results per policy domain (--send: report now)\n");
    return 1;
}

static const char *config_arg(int argc, char **argv)
{
    const char *config = DEFAULT_CONFIG;
    int opt;
    optind = 1;
    while ((opt = getopt(argc, argv, "c:")) != -1) {
        if (opt != 'c')
            return NULL;
        config = optarg;
    }
    return optind == argc ? config : NULL;
}

static int cmd_check(int argc, char **argv)
{
    /* -v: also say who may submit locally and with which senders. */
    int verbose = 0;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "-v") == 0) {
            verbose = 1;
            memmove(argv + i, argv + i + 1, sizeof *argv * (size_t)(argc - i));
            argc--;
            break;
        }
    const char *config = config_arg(argc, argv);
    if (config == NULL)
        return usage();
    struct conf_errors errs = {0};
    int n = master_check_config(config, &errs);
    for (int i = 0; i < errs.count; i++)
        fprintf(stderr, "%s\n", errs.msgs[i]);
    struct conf_errors *warnings = conf_warnings();
    for (int i = 0; i < warnings->count; i++)
        fprintf(stderr, "warning: %s\n", warnings->msgs[i]);
    conf_errors_free(&errs);
    if (n)
        return 1;
    printf("configuration OK\n");
    if (verbose) {
        printf("authorized_submit_users: %s\n", conf_str(P_AUTHORIZED_SUBMIT_USERS));
        localsubmit_describe(stdout);
    }
    return 0;
}

static int cmd_serve(int argc, char **argv)
{
    const char *config = config_arg(argc, argv);
    if (config == NULL)
        return usage();
    return master_serve(config);
}

/* Called as sendmail, mailq or newaliases (links to keypost). */
static const char *called_as(const char *argv0)
{
    static const char *const names[] = {"sendmail", "mailq", "newaliases"};
    const char *base = strrchr(argv0, '/');
    base = base ? base + 1 : argv0;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(base, names[i]) == 0)
            return names[i];
    return NULL;
}

int main(int argc, char **argv)
{
    proctitle_init(argc, argv); /* first: later code may keep argv pointers */
    const char *as = argc > 0 ? called_as(argv[0]) : NULL;
    if (as)
        return cli_sendmail(argc, argv, as);
    if (argc < 2)
        return usage();
    const char *cmd = argv[1];
    argc--;
    argv++;
    if (strcmp(cmd, "serve") == 0)
        return cmd_serve(argc, argv);
    if (strcmp(cmd, "check") == 0)
        return cmd_check(argc, argv);
    if (strcmp(cmd, "conf") == 0)
        return cli_conf(argc, argv);
    if (strcmp(cmd, "fingerprint") == 0)
        return cli_fingerprint(argc, argv);
    if (strcmp(cmd, "queue") == 0)
        return cli_queue(argc, argv);
    if (strcmp(cmd, "status") == 0)
        return cli_status(argc, argv);
    if (strcmp(cmd, "map") == 0)
        return cli_map(argc, argv);
    if (strcmp(cmd, "sendmail") == 0)
        return cli_sendmail(argc, argv, "sendmail");
    if (strcmp(cmd, "tlsrpt") == 0)
        return cli_tlsrpt(argc, argv);
    return usage();
}
