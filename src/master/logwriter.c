/* logwriter: a blocking read loop. The master keeps both ends of the pipe
 * open, so a writer that died is replaced without losing what the others
 * wrote meanwhile (they block when the pipe is full, they never fail). */
#include "master/logwriter.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "util/log.h"

#define PIPE_SIZE (1 << 20) /* room for bursts while the file is slow */

static int pipe_fd[2] = {-1, -1};
static volatile sig_atomic_t got_reopen, got_term;

int logwriter_prepare(void)
{
    if (pipe2(pipe_fd, O_CLOEXEC) < 0)
        return -1;
    (void)fcntl(pipe_fd[1], F_SETPIPE_SZ, PIPE_SIZE); /* a smaller pipe works too */
    return 0;
}

int logwriter_enabled(void)
{
    return pipe_fd[0] >= 0;
}

void logwriter_attach(void)
{
    if (!logwriter_enabled())
        return;
    close(pipe_fd[0]);
    pipe_fd[0] = -1;
    log_use_fd(pipe_fd[1]);
}

static void on_signal(int sig)
{
    if (sig == SIGUSR1)
        got_reopen = 1;
    else
        got_term = 1;
}

static void install(int sig)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(sig, &sa, NULL); /* no SA_RESTART: a signal ends the read */
}

#define BUF_SIZE (64 * 1024)

/* Write the complete lines of buf, keep a partial one at its start: the
 * master writes its own lines to the file too, and must never land in the
 * middle of a line. Returns the bytes kept. */
static size_t flush_lines(char *buf, size_t have)
{
    size_t whole = have;
    while (whole > 0 && buf[whole - 1] != '\n')
        whole--;
    if (whole == 0 && have == BUF_SIZE)
        whole = have; /* lines are shorter than that: never stall on a full buffer */
    log_write_raw(buf, whole);
    memmove(buf, buf + whole, have - whole);
    return have - whole;
}

static void reopen(void)
{
    got_reopen = 0;
    if (log_reopen() < 0)
        log_warn(NULL, "cannot reopen maillog_file: %m; still writing to the old file");
}

/* Signals are blocked except inside ppoll(), so a SIGUSR1 is never taken
 * between the check of got_reopen and the wait, and no line read after the
 * signal goes to the old file. */
static void serve(char *buf, size_t *have)
{
    sigset_t none;
    sigemptyset(&none);
    struct pollfd pfd = {.fd = pipe_fd[0], .events = POLLIN};
    while (!got_term) {
        if (got_reopen)
            reopen();
        if (ppoll(&pfd, 1, NULL, &none) < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        ssize_t r = read(pipe_fd[0], buf + *have, BUF_SIZE - *have);
        if (r > 0)
            *have = flush_lines(buf, *have + (size_t)r);
        else if (r == 0 || (errno != EINTR && errno != EAGAIN))
            return;
    }
}

void logwriter_run(void)
{
    static char buf[BUF_SIZE];
    size_t have = 0;
    log_set_role("postlogd");
    
    install(SIGUSR1);
    install(SIGTERM);
    signal(SIGHUP, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    close(pipe_fd[1]);
    pipe_fd[1] = -1;
    fcntl(pipe_fd[0], F_SETFL, O_NONBLOCK);
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR1);
    sigaddset(&block, SIGTERM);
    sigprocmask(SIG_SETMASK, &block, NULL);
    serve(buf, &have);
    /* SIGTERM comes after every other process ended: take what they left. */
    ssize_t r;
    while ((r = read(pipe_fd[0], buf + have, BUF_SIZE - have)) > 0)
        have = flush_lines(buf, have + (size_t)r);
    log_write_raw(buf, have);
    _exit(0);
}
