/* showq: queue listings (see showq.h). */
#include "queue/showq.h"

#include <errno.h>
#include <string.h>
#include <time.h>

void showq_print(FILE *out, const char *id, const char *subdir, const struct envelope *env,
                 const struct queue_state *st)
{
    char when[32];
    struct tm tm;
    gmtime_r(&env->arrival, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    fprintf(out, "%s%s %8lld %s <%s>\n", id, strcmp(subdir, "hold") == 0 ? "!" : " ",
            (long long)env->size, when, env->sender);
    if (st->attempts)
        fprintf(out, "    attempts=%d next=%lds\n", st->attempts,
                (long)(st->next_attempt - time(NULL)));
    for (int i = 0; i < env->nrcpt; i++)
        fprintf(out, "    %s%s\n", env->rcpts[i],
                st->done[i] == 'D' ? " (delivered)" : st->done[i] ? " (bounced)" : "");
}

struct filter {
    FILE *out;
    const char *qdir, *subdir;
    int all;
    unsigned uid;
};

static int show_one(const char *id, void *arg)
{
    struct filter *f = arg;
    struct envelope env;
    if (queue_load(f->qdir, f->subdir, id, &env) < 0)
        return 0; /* gone, refused (logged) or not a queue file */
    if (f->all || (env.local && env.local_uid == f->uid)) {
        struct queue_state st;
        queue_state_load(f->qdir, &env, &st); /* unreadable: shown as not tried */
        showq_print(f->out, id, f->subdir, &env, &st);
        queue_state_free(&st, env.nrcpt);
    }
    envelope_free(&env);
    return 0;
}

int showq_write(FILE *out, const char *qdir, int all, unsigned uid)
{
    static const char *const subdirs[] = {"active", "hold"};
    for (size_t i = 0; i < sizeof subdirs / sizeof subdirs[0]; i++) {
        struct filter f = {out, qdir, subdirs[i], all, uid};
        if (queue_scan(qdir, subdirs[i], show_one, &f) < 0)
            return -1;
    }
    return 0;
}
