/* commit: a worker thread with a job list; results return through a pipe. */
#include "queue/commit.h"

#include <event2/event.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "queue/queue.h"

struct job {
    struct qfile *q;
    commit_done_fn done;
    void *arg;
    int ok;
    struct job *next;
};

static struct {
    struct event_base *base;
    char *qdir;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    struct job *pending, *pending_tail;
    struct job *finished;
    int pipe_rd, pipe_wr;
    struct event *ev;
    int running;
} C = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER,
       .pipe_rd = -1, .pipe_wr = -1};

static void run_group(struct job *list)
{
    int any = 0;
    if (list->next) /* a group: let the disk write all of it at once */
        for (struct job *j = list; j; j = j->next)
            queue_start_writeback(j->q);
    for (struct job *j = list; j; j = j->next) {
        j->ok = queue_commit_file(j->q) == 0;
        any |= j->ok;
    }
    /* One directory fsync makes every rename of the group durable. If it
     * fails, the clients hear 451: take the files back out of active/ so
     * that no message is delivered after a refusal. */
    if (any && queue_sync_active_dir(C.qdir) < 0)
        for (struct job *j = list; j; j = j->next) {
            if (j->ok)
                queue_withdraw(j->q);
            j->ok = 0;
        }
}

static void *committer(void *unused)
{
    (void)unused;
    pthread_mutex_lock(&C.lock);
    while (C.running || C.pending) {
        if (C.pending == NULL) {
            pthread_cond_wait(&C.wake, &C.lock);
            continue;
        }
        struct job *group = C.pending;
        C.pending = C.pending_tail = NULL;
        pthread_mutex_unlock(&C.lock);

        run_group(group);

        pthread_mutex_lock(&C.lock);
        struct job *last = group;
        while (last->next)
            last = last->next;
        last->next = C.finished;
        C.finished = group;
        pthread_mutex_unlock(&C.lock);
        char one = 1;
        ssize_t w = write(C.pipe_wr, &one, 1);
        (void)w;
        pthread_mutex_lock(&C.lock);
    }
    pthread_mutex_unlock(&C.lock);
    return NULL;
}

static void deliver_results(evutil_socket_t fd, short what, void *unused)
{
    (void)what;
    (void)unused;
    char drain[64];
    while (read(fd, drain, sizeof drain) > 0)
        ;
    pthread_mutex_lock(&C.lock);
    struct job *list = C.finished;
    C.finished = NULL;
    pthread_mutex_unlock(&C.lock);
    while (list) {
        struct job *next = list->next;
        list->done(list->arg, list->ok);
        free(list);
        list = next;
    }
}

int commit_start(struct event_base *base, const char *qdir)
{
    free(C.qdir);
    C.qdir = strdup(qdir);
    C.base = base;
    if (base == NULL)
        return 0;
    int p[2];
    if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0)
        return -1;
    C.pipe_rd = p[0];
    C.pipe_wr = p[1];
    C.ev = event_new(base, C.pipe_rd, EV_READ | EV_PERSIST, deliver_results, NULL);
    event_add(C.ev, NULL);
    C.running = 1;
    if (pthread_create(&C.thread, NULL, committer, NULL) != 0) {
        C.running = 0;
        return -1;
    }
    return 0;
}

void commit_submit(struct qfile *q, commit_done_fn done, void *arg)
{
    if (C.base == NULL) {
        int ok = queue_commit(q) == 0;
        done(arg, ok);
        return;
    }
    struct job *j = calloc(1, sizeof *j);
    if (j == NULL) {
        done(arg, 0);
        return;
    }
    j->q = q;
    j->done = done;
    j->arg = arg;
    pthread_mutex_lock(&C.lock);
    if (C.pending_tail)
        C.pending_tail->next = j;
    else
        C.pending = j;
    C.pending_tail = j;
    pthread_cond_signal(&C.wake);
    pthread_mutex_unlock(&C.lock);
}

void commit_stop(void)
{
    if (C.base == NULL || !C.running)
        return;
    pthread_mutex_lock(&C.lock);
    C.running = 0;
    pthread_cond_signal(&C.wake);
    pthread_mutex_unlock(&C.lock);
    pthread_join(C.thread, NULL);
    deliver_results(C.pipe_rd, 0, NULL);
    event_free(C.ev);
    close(C.pipe_rd);
    close(C.pipe_wr);
    C.base = NULL;
}
