/* queue: list, flush, delete, hold and release queued messages. */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "conf/conf.h"
#include "policy/restrict.h"
#include "queue/notify.h"
#include "queue/queue.h"

static int list_one(const char *id, void *arg)
{
    const char *subdir = arg;
    const char *qdir = conf_str(P_QUEUE_DIRECTORY);
    struct envelope env;
    if (queue_load(qdir, subdir, id, &env) < 0)
        return 0;
    struct queue_state st;
    queue_state_load(qdir, &env, &st);
    char when[32];
    struct tm tm;
    gmtime_r(&env.arrival, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    printf("%s%s %8lld %s <%s>\n", id, strcmp(subdir, "hold") == 0 ? "!" : " ",
           (long long)env.size, when, env.sender);
    if (st.attempts)
        printf("    attempts=%d next=%lds\n", st.attempts,
               (long)(st.next_attempt - time(NULL)));
    for (int i = 0; i < env.nrcpt; i++)
        printf("    %s%s\n", env.rcpts[i],
               st.done[i] == 'D' ? " (delivered)" : st.done[i] ? " (bounced)" : "");
    queue_state_free(&st, env.nrcpt);
    envelope_free(&env);
    return 0;
}

static int valid_id_arg(const char *id)
{
    if (!queue_valid_id(id)) {
        fprintf(stderr, "keypost queue: \"%s\" is not a queue id\n", id);
        return 0;
    }
    return 1;
}

static int act(const char *verb, const char *id)
{
    const char *qdir = conf_str(P_QUEUE_DIRECTORY);
    if (!valid_id_arg(id))
        return 1;
    int r;
    if (strcmp(verb, "delete") == 0)
        r = queue_remove(qdir, id);
    else if (strcmp(verb, "hold") == 0)
        r = queue_move(qdir, id, "active", "hold");
    else
        r = queue_move(qdir, id, "hold", "active");
    if (r < 0) {
        fprintf(stderr, "keypost queue %s: %s: no such message%s\n", verb, id,
                strcmp(verb, "release") == 0 ? " on hold" : "");
        return 2;
    }
    queue_notify(qdir, strcmp(verb, "release") == 0 ? id : "SCAN");
    printf("%s: %s\n", id, strcmp(verb, "delete") == 0 ? "deleted"
                           : strcmp(verb, "hold") == 0 ? "held"
                                                       : "released");
    return 0;
}

int cli_queue(int argc, char **argv)
{
    const char *config = "/etc/keypost/keypost.cf";
    int opt;
    optind = 1;
    while ((opt = getopt(argc, argv, "c:")) != -1) {
        if (opt != 'c')
            goto usage;
        config = optarg;
    }
    if (optind >= argc)
        goto usage;
    struct conf_errors errs = {0};
    conf_defaults();
    if (conf_load(config, &errs)) {
        for (int i = 0; i < errs.count; i++)
            fprintf(stderr, "%s\n", errs.msgs[i]);
        conf_errors_free(&errs);
        return 1;
    }
    const char *verb = argv[optind];
    const char *qdir = conf_str(P_QUEUE_DIRECTORY);
    if (strcmp(verb, "list") == 0 && optind + 1 == argc) {
        queue_scan(qdir, "active", list_one, "active");
        queue_scan(qdir, "hold", list_one, "hold");
        return 0;
    }
    if (strcmp(verb, "flush") == 0 && optind + 1 == argc) {
        if (queue_notify(qdir, "FLUSH") < 0) {
            fprintf(stderr, "keypost queue flush: the queue manager is not running (%s/qmgr.sock)\n",
                    qdir);
            return 2;
        }
        printf("flush requested\n");
        return 0;
    }
    if ((strcmp(verb, "delete") == 0 || strcmp(verb, "hold") == 0 ||
         strcmp(verb, "release") == 0) && optind + 2 == argc)
        return act(verb, argv[optind + 1]);
usage:
    fprintf(stderr, "usage: keypost queue [-c FILE] list|flush|delete ID|hold ID|release ID\n");
    return 1;
}
