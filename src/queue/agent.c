#include "queue/agent.h"

#include <errno.h>
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "util/log.h"
#include "util/proctitle.h"

#define AGENT_MAX_USES 1000
#define REQUEST_MAX 4096

struct agent {
    pid_t pid;
    int fd;
    struct event *ev;
    void *job;          /* in progress, NULL when idle */
    int retiring;       /* said its last answer: give it no more work */
    time_t started;     /* when the current request was sent */
    char in[64];
    size_t have;
    struct agent *next;
};

static struct {
    struct event_base *base;
    int max;
    int count;
    agent_work_fn work;
    agent_done_fn done;
    struct agent *agents;
} P;

void agent_pool_init(struct event_base *base, int max, agent_work_fn work, agent_done_fn done)
{
    P.base = base;
    P.max = max > 0 ? max : 1;
    P.work = work;
    P.done = done;
}

/* ---- in the agent --------------------------------------------------------- */

static int read_request(int fd, char *buf, size_t len)
{
    size_t have = 0;
    while (have + 1 < len) {
        ssize_t r = read(fd, buf + have, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        if (buf[have] == '\n') {
            buf[have] = '\0';
            return 0;
        }
        have++;
    }
    return -1;
}

/* Between requests an agent is a "deliver" process; a request names it for
 * its transport meanwhile (see qmgr_deliver_job). */
static void agent_idle(void)
{
    log_set_role("deliver");
    proctitle_set("deliver");
}

static void agent_main(int fd)
{
    agent_idle();
    signal(SIGTERM, SIG_DFL);
    signal(SIGCHLD, SIG_DFL);
    signal(SIGPIPE, SIG_IGN);
    char req[REQUEST_MAX];
    for (int uses = 1; read_request(fd, req, sizeof req) == 0; uses++) {
        char answer[32];
        /* The last answer says so, before the agent goes, so that no new
         * request is sent to an agent that will not read it. */
        int last = uses >= AGENT_MAX_USES;
        int n = snprintf(answer, sizeof answer, "%d%s\n", P.work(req), last ? " last" : "");
        agent_idle();
        if (write(fd, answer, (size_t)n) != n || last)
            break;
    }
    _exit(0);
}

/* ---- in the queue manager ------------------------------------------------ */

static void forget(struct agent *a)
{
    for (struct agent **p = &P.agents; *p; p = &(*p)->next)
        if (*p == a) {
            *p = a->next;
            break;
        }
    P.count--;
    event_free(a->ev);
    close(a->fd);
    void *job = a->job;
    free(a);
    if (job)
        P.done(job, -1); /* the agent died with a job: treat it as failed */
}

static void on_answer(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct agent *a = arg;
    ssize_t r = read(fd, a->in + a->have, sizeof a->in - 1 - a->have);
    if (r <= 0) {
        forget(a); /* it exited (max uses) or died */
        return;
    }
    a->have += (size_t)r;
    a->in[a->have] = '\0';
    char *nl = strchr(a->in, '\n');
    if (nl == NULL) {
        if (a->have == sizeof a->in - 1)
            forget(a);
        return;
    }
    int result = atoi(a->in);
    a->retiring |= strstr(a->in, " last") != NULL;
    a->have = 0;
    void *job = a->job;
    a->job = NULL;
    if (job)
        P.done(job, result);
}

static struct agent *spawn(void)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return NULL;
    pid_t pid = fork();
    if (pid < 0) {
        close(sv[0]);
        close(sv[1]);
        return NULL;
    }
    if (pid == 0) {
        close(sv[0]);
        for (struct agent *a = P.agents; a; a = a->next)
            close(a->fd); /* the other agents' channels are not ours */
        agent_main(sv[1]);
    }
    close(sv[1]);
    struct agent *a = calloc(1, sizeof *a);
    if (a == NULL) {
        close(sv[0]);
        kill(pid, SIGTERM);
        return NULL;
    }
    a->pid = pid;
    a->fd = sv[0];
    a->ev = event_new(P.base, a->fd, EV_READ | EV_PERSIST, on_answer, a);
    event_add(a->ev, NULL);
    a->next = P.agents;
    P.agents = a;
    P.count++;
    return a;
}

int agent_submit(const char *request, void *job)
{
    struct agent *a = P.agents;
    while (a && (a->job || a->retiring))
        a = a->next;
    int working = 0; /* retiring agents do not count against the limit */
    for (struct agent *b = P.agents; b; b = b->next)
        working += !b->retiring;
    if (a == NULL && working < P.max)
        a = spawn();
    if (a == NULL)
        return -1;
    size_t n = strlen(request);
    char line[REQUEST_MAX];
    if (n + 2 > sizeof line)
        return -1;
    memcpy(line, request, n);
    line[n++] = '\n';
    if (write(a->fd, line, n) != (ssize_t)n) {
        forget(a);
        return -1;
    }
    a->job = job;
    a->started = time(NULL);
    return 0;
}

/* Stop a busy agent: its job ends as failed (the channel closes) and the
 * messages it worked on are tried again; one may be delivered twice, never
 * lost. */
static void stop_busy(struct agent *a)
{
    kill(a->pid, SIGKILL);
    a->retiring = 1; /* forget() runs when its channel closes */
}

void agent_expire(long seconds)
{
    time_t now = time(NULL);
    for (struct agent *a = P.agents; a; a = a->next)
        if (a->job && now - a->started > seconds && !a->retiring) {
            log_warn(NULL, "delivery agent %d exceeded delivery_job_deadline (%lds): stopped",
                     (int)a->pid, seconds);
            stop_busy(a);
        }
}

int agent_stop_all_busy(void)
{
    int n = 0;
    for (struct agent *a = P.agents; a; a = a->next)
        if (a->job && !a->retiring) {
            stop_busy(a);
            n++;
        }
    return n;
}

int agent_reaped(pid_t pid)
{
    for (struct agent *a = P.agents; a; a = a->next)
        if (a->pid == pid) {
            forget(a);
            return 1;
        }
    return 0;
}

void agent_pool_stop(void)
{
    while (P.agents) {
        struct agent *a = P.agents;
        pid_t pid = a->pid;
        a->job = NULL;
        forget(a);
        waitpid(pid, NULL, 0); /* EOF on its channel makes it exit */
    }
}
