/* logwriter: a poll loop over the pipe and the socket that brings new
 * files. The master keeps both ends of the pipe open, so a writer that died
 * is replaced without losing what the others wrote meanwhile (they block
 * when the pipe is full, they never fail). */
#include "master/logwriter.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "util/log.h"

#define PIPE_SIZE (1 << 20) /* room for bursts while the file is slow */
#define BUF_SIZE (64 * 1024)
#define ACK_WAIT_MS 2000 /* the writer blocks only on a slow disk */

static int pipe_fd[2] = {-1, -1};
static int ctl_fd[2] = {-1, -1}; /* [0] the master's end, [1] the writer's */
static volatile sig_atomic_t got_term;

int logwriter_prepare(void)
{
    if (pipe2(pipe_fd, O_CLOEXEC) < 0)
        return -1;
    if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, ctl_fd) < 0) {
        close(pipe_fd[0]);
        close(pipe_fd[1]);
        pipe_fd[0] = pipe_fd[1] = -1;
        return -1;
    }
    (void)fcntl(pipe_fd[1], F_SETPIPE_SZ, PIPE_SIZE); /* a smaller pipe works too */
    return 0;
}

int logwriter_enabled(void)
{
    return pipe_fd[0] >= 0;
}

/* The writer's answer that it writes to the new file; a late answer to an
 * earlier request is dropped first. 0, or -1 when none came in time. */
static int wait_ack(int drain_only)
{
    char byte;
    if (drain_only) {
        while (recv(ctl_fd[0], &byte, 1, MSG_DONTWAIT) == 1)
            ;
        return 0;
    }
    struct pollfd pfd = {.fd = ctl_fd[0], .events = POLLIN};
    int n;
    while ((n = poll(&pfd, 1, ACK_WAIT_MS)) < 0 && errno == EINTR)
        ;
    if (n <= 0 || recv(ctl_fd[0], &byte, 1, MSG_DONTWAIT) != 1) {
        errno = n == 0 ? ETIMEDOUT : errno;
        return -1;
    }
    return 0;
}

int logwriter_send_file(void)
{
    int fd = log_file_fd();
    if (!logwriter_enabled() || fd < 0)
        return -1;
    wait_ack(1);
    char byte = 'F';
    struct iovec iov = {&byte, 1};
    union {
        struct cmsghdr h;
        char space[CMSG_SPACE(sizeof(int))];
    } c;
    memset(&c, 0, sizeof c);
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = c.space,
                         .msg_controllen = sizeof c.space};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &fd, sizeof fd);
    if (sendmsg(ctl_fd[0], &msg, MSG_DONTWAIT) != 1)
        return -1;
    /* Until the writer answers, a line written now could still be read
     * into the old file. */
    return wait_ack(0);
}

void logwriter_attach(void)
{
    if (!logwriter_enabled())
        return;
    close(pipe_fd[0]);
    close(ctl_fd[0]);
    close(ctl_fd[1]);
    pipe_fd[0] = ctl_fd[0] = ctl_fd[1] = -1;
    log_use_fd(pipe_fd[1]);
}

static void on_term(int sig)
{
    (void)sig;
    got_term = 1;
}

/* Take a file the master sent; every later line goes there. */
static void take_file(void)
{
    char byte;
    struct iovec iov = {&byte, 1};
    union {
        struct cmsghdr h;
        char space[CMSG_SPACE(sizeof(int))];
    } c;
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = c.space,
                         .msg_controllen = sizeof c.space};
    if (recvmsg(ctl_fd[1], &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC) != 1)
        return;
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    if (cm == NULL || cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
        return;
    int fd;
    memcpy(&fd, CMSG_DATA(cm), sizeof fd);
    if (log_adopt_file(fd) < 0)
        log_warn(NULL, "cannot switch to the reopened maillog_file: %m");
    (void)!send(ctl_fd[1], "A", 1, MSG_DONTWAIT);
}

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

/* The master logs "maillog_file reopened" only once the writer answered
 * that it took the new file, so whatever was written after that line is
 * read after the switch. SIGTERM is blocked except in ppoll(). */
static void serve(char *buf, size_t *have)
{
    sigset_t none;
    sigemptyset(&none);
    struct pollfd pfd[2] = {{.fd = ctl_fd[1], .events = POLLIN},
                            {.fd = pipe_fd[0], .events = POLLIN}};
    while (!got_term) {
        if (ppoll(pfd, 2, NULL, &none) < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        if (pfd[0].revents & POLLIN)
            take_file();
        if (!(pfd[1].revents & POLLIN))
            continue;
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
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGHUP, SIG_IGN);
    signal(SIGUSR1, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    close(pipe_fd[1]);
    close(ctl_fd[0]);
    pipe_fd[1] = ctl_fd[0] = -1;
    fcntl(pipe_fd[0], F_SETFL, O_NONBLOCK);
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigprocmask(SIG_SETMASK, &block, NULL);
    serve(buf, &have);
    /* SIGTERM comes after every other process ended: take what they left. */
    take_file();
    ssize_t r;
    while ((r = read(pipe_fd[0], buf + have, BUF_SIZE - have)) > 0)
        have = flush_lines(buf, have + (size_t)r);
    log_write_raw(buf, have);
    _exit(0);
}
