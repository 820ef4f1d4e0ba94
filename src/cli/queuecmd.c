/* queue: list, flush, delete, hold and release queued messages.
 *
 * Run as root, this command reads a directory that mail_owner controls:
 * queue.c refuses links there and this file says so on stderr. Run by a
 * user who may not read or change the queue, it says "permission denied"
 * and exits 2: an empty listing or "no such message" would be a lie. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "conf/conf.h"
#include "policy/restrict.h"
#include "queue/notify.h"
#include "queue/queue.h"
#include "queue/showq.h"

static void warn_refused(const char *path, const char *why)
{
    fprintf(stderr, "keypost queue: warning: skipped %s: %s\n", path, why);
}

static int denied(int err)
{
    return err == EACCES || err == EPERM;
}

/* A queue that cannot be read or changed is a runtime failure (exit 2). */
static int fail(const char *verb, const char *path, int err)
{
    if (denied(err))
        fprintf(stderr, "keypost queue %s: %s: permission denied\n", verb, path);
    else
        fprintf(stderr, "keypost queue %s: %s: %s\n", verb, path, strerror(err));
    return 2;
}

struct listing {
    const char *subdir;
    int status; /* the exit status so far */
};

/* A file that went away was delivered or moved meanwhile, a refused one
 * was reported by warn_refused and a malformed one is not a message: the
 * rest (permission, I/O) means the listing is incomplete. */
static void unreadable(struct listing *l, const char *subdir, const char *id, int err)
{
    if (err == ENOENT || err == ELOOP || err == EBADMSG)
        return;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s/%s", conf_str(P_QUEUE_DIRECTORY), subdir, id);
    l->status = fail("list", path, err);
}

static int list_one(const char *id, void *arg)
{
    struct listing *l = arg;
    const char *qdir = conf_str(P_QUEUE_DIRECTORY);
    struct envelope env;
    if (queue_load(qdir, l->subdir, id, &env) < 0) {
        unreadable(l, l->subdir, id, errno);
        return 0;
    }
    struct queue_state st;
    if (queue_state_load(qdir, &env, &st) < 0)
        unreadable(l, "state", id, errno);
    showq_print(stdout, id, l->subdir, &env, &st);
    queue_state_free(&st, env.nrcpt);
    envelope_free(&env);
    return 0;
}

static int list_queue(const char *qdir)
{
    static const char *const subdirs[] = {"active", "hold"};
    int status = 0;
    for (size_t i = 0; i < sizeof subdirs / sizeof subdirs[0]; i++) {
        struct listing l = {subdirs[i], 0};
        if (queue_scan(qdir, subdirs[i], list_one, &l) < 0) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", qdir, subdirs[i]);
            l.status = errno == ELOOP ? 2 : fail("list", path, errno); /* ELOOP: warned */
        }
        if (l.status)
            status = l.status;
    }
    return status;
}

static int valid_id_arg(const char *id)
{
    if (!queue_valid_id(id)) {
        fprintf(stderr, "keypost queue: \"%s\" is not a queue id\n", id);
        return 0;
    }
    return 1;
}

/* Without this check, a user who may not change the queue would hear
 * "no such message" (every unlink and rename fails alike). */
static int may_change(const char *verb, const char *qdir, const char *const *subdirs, int n)
{
    char path[4096];
    for (int i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/%s", qdir, subdirs[i]);
        if (faccessat(AT_FDCWD, path, W_OK | X_OK, AT_EACCESS) < 0 && errno != ENOENT) {
            fail(verb, path, errno);
            return 0;
        }
    }
    return 1;
}

static int act(const char *verb, const char *id)
{
    static const char *const all[] = {"active", "hold", "state"};
    const char *qdir = conf_str(P_QUEUE_DIRECTORY);
    if (!valid_id_arg(id))
        return 1;
    int release = strcmp(verb, "release") == 0;
    const char *from = release ? "hold" : "active", *to = release ? "active" : "hold";
    int r;
    if (strcmp(verb, "delete") == 0)
        r = may_change(verb, qdir, all, 3) ? queue_remove(qdir, id) : -2;
    else
        r = may_change(verb, qdir, all, 2) ? queue_move(qdir, id, from, to) : -2;
    if (r == -2)
        return 2;
    if (r < 0 && denied(errno)) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s/%s", qdir, from, id);
        return fail(verb, path, errno);
    }
    if (r < 0) {
        fprintf(stderr, "keypost queue %s: %s: no such message%s\n", verb, id,
                release ? " on hold" : "");
        return 2;
    }
    queue_notify(qdir, release ? id : "SCAN");
    printf("%s: %s\n", id, strcmp(verb, "delete") == 0 ? "deleted"
                           : strcmp(verb, "hold") == 0 ? "held"
                                                       : "released");
    return 0;
}

static int request_flush(const char *qdir)
{
    if (queue_notify(qdir, "FLUSH") == 0) {
        printf("flush requested\n");
        return 0;
    }
    char sock[4096];
    snprintf(sock, sizeof sock, "%s/qmgr.sock", qdir);
    if (denied(errno))
        return fail("flush", sock, errno);
    fprintf(stderr, "keypost queue flush: the queue manager is not running (%s)\n", sock);
    return 2;
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
    queue_set_refusal_reporter(warn_refused);
    if (strcmp(verb, "list") == 0 && optind + 1 == argc)
        return list_queue(qdir);
    if (strcmp(verb, "flush") == 0 && optind + 1 == argc)
        return request_flush(qdir);
    if ((strcmp(verb, "delete") == 0 || strcmp(verb, "hold") == 0 ||
         strcmp(verb, "release") == 0) && optind + 2 == argc)
        return act(verb, argv[optind + 1]);
usage:
    fprintf(stderr, "usage: keypost queue [-c FILE] list|flush|delete ID|hold ID|release ID\n");
    return 1;
}
