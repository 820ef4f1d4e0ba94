#include "deliver/mailboxd.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <grp.h>

#include "conf/conf.h"
#include "deliver/maildir.h"
#include "util/log.h"
#include "util/strutil.h"

#define REQUEST_MAX 1200
#define SERVE_SECONDS 600 /* an agent writes a large message between OPEN and COMMIT */

static struct sockaddr_un helper_addr;
static socklen_t helper_len;

int mailboxd_available(void)
{
    return helper_len != 0;
}

int mailboxd_listen(char *err, size_t len)
{
    /* Autobind: the kernel picks an unused abstract name, so no local user
     * can take it first; the children learn it by inheriting helper_addr. */
    sa_family_t family = AF_UNIX;
    helper_len = sizeof helper_addr;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&family, sizeof family) < 0 ||
        getsockname(fd, (struct sockaddr *)&helper_addr, &helper_len) < 0 ||
        listen(fd, 64) < 0) {
        snprintf(err, len, "mailbox helper socket: %s", strerror(errno));
        if (fd >= 0)
            close(fd);
        helper_len = 0;
        return -1;
    }
    return fd;
}

/* ---- the helper ------------------------------------------------------------ */

/* One line, up to '\n', from a peer that has SERVE_SECONDS in all. */
static int read_line(int fd, char *buf, size_t len)
{
    size_t n = 0;
    while (n + 1 < len) {
        ssize_t r = read(fd, buf + n, 1);
        if (r <= 0)
            return -1;
        if (buf[n] == '\n') {
            buf[n] = '\0';
            return 0;
        }
        n++;
    }
    return -1;
}

static void say(int fd, const char *text)
{
    char line[700];
    int n = snprintf(line, sizeof line, "%.680s\n", text);
    if (write(fd, line, (size_t)n) != n)
        return; /* the agent went away: it defers on its side */
}

static int send_file(int conn, int file, const char *path)
{
    char line[4200];
    int n = snprintf(line, sizeof line, "OK %.4000s\n", path);
    struct iovec iov = {line, (size_t)n};
    union {
        struct cmsghdr h;
        char space[CMSG_SPACE(sizeof(int))];
    } ctl;
    memset(&ctl, 0, sizeof ctl);
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.space,
                         .msg_controllen = sizeof ctl.space};
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &file, sizeof file);
    return sendmsg(conn, &msg, MSG_NOSIGNAL) == n ? 0 : -1;
}

/* Act on the filesystem as uid:gid only (and with none of root's file
 * capabilities, which Linux clears when the fsuid leaves 0). */
static int become_owner(long uid, long gid, char *err, size_t len)
{
    if (uid < conf_long(P_VIRTUAL_MINIMUM_UID) || gid <= 0) {
        snprintf(err, len, "4.3.5 uid %ld or gid %ld is below virtual_minimum_uid (%ld) or "
                 "root's group", uid, gid, conf_long(P_VIRTUAL_MINIMUM_UID));
        return -1;
    }
    setgroups(0, NULL);
    setfsgid((gid_t)gid);
    setfsuid((uid_t)uid);
    if ((long)setfsgid((gid_t)-1) != gid || (long)setfsuid((uid_t)-1) != uid) {
        snprintf(err, len, "4.3.0 cannot act as uid %ld gid %ld", uid, gid);
        return -1;
    }
    return 0;
}

static void serve(int conn)
{
    char req[REQUEST_MAX], err[600], rel[REQUEST_MAX];
    long uid, gid;
    int used = 0;
    if (read_line(conn, req, sizeof req) < 0 ||
        sscanf(req, "OPEN %ld %ld %n", &uid, &gid, &used) != 2 || used == 0) {
        say(conn, "ERR 4.3.0 bad request to the mailbox helper");
        return;
    }
    str_copy(rel, req + used, sizeof rel);
    if (!maildir_path_ok(rel)) {
        say(conn, "ERR 4.3.5 not a Maildir path below virtual_mailbox_base");
        return;
    }
    if (become_owner(uid, gid, err, sizeof err) < 0) {
        char line[700];
        snprintf(line, sizeof line, "ERR %s", err);
        say(conn, line);
        return;
    }
    struct maildir_slot *sl = maildir_slot_open(conf_str(P_VIRTUAL_MAILBOX_BASE), rel, err,
                                                sizeof err);
    char line[700];
    if (sl == NULL) {
        snprintf(line, sizeof line, "ERR %s", err);
        say(conn, line);
        return;
    }
    if (send_file(conn, maildir_slot_file(sl), maildir_slot_path(sl)) == 0 &&
        read_line(conn, req, sizeof req) == 0 && strcmp(req, "COMMIT") == 0) {
        if (maildir_slot_commit(sl, err, sizeof err) == 0)
            say(conn, "OK");
        else {
            snprintf(line, sizeof line, "ERR %s", err);
            say(conn, line);
        }
    }
    maildir_slot_close(sl); /* removes the file unless committed */
}

static int peer_is(int conn, int uid)
{
    struct ucred cred;
    socklen_t n = sizeof cred;
    return getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &cred, &n) == 0 && (int)cred.uid == uid;
}

void mailboxd_run(int listen_fd, int peer_uid)
{
    prctl(PR_SET_PDEATHSIG, SIGTERM); /* never outlive the master */
    signal(SIGCHLD, SIG_IGN);         /* children reap themselves */
    for (;;) {
        int conn = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (conn < 0) {
            if (errno != EINTR && errno != ECONNABORTED)
                sleep(1); /* out of descriptors: no busy loop */
            continue;
        }
        if (!peer_is(conn, peer_uid)) {
            log_warn(NULL, "mailbox helper: refused a connection from another user");
            close(conn);
            continue;
        }
        pid_t pid = fork();
        if (pid == 0) {
            close(listen_fd);
            alarm(SERVE_SECONDS);
            serve(conn);
            _exit(0);
        }
        if (pid < 0)
            log_warn(NULL, "mailbox helper: fork: %s", strerror(errno));
        close(conn);
    }
}

/* ---- the agent's side ----------------------------------------------------- */

static int receive_file(int conn, char *line, size_t len, int *file)
{
    struct iovec iov = {line, len - 1};
    union {
        struct cmsghdr h;
        char space[CMSG_SPACE(sizeof(int))];
    } ctl;
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.space,
                         .msg_controllen = sizeof ctl.space};
    ssize_t n = recvmsg(conn, &msg, MSG_CMSG_CLOEXEC);
    if (n <= 0)
        return -1;
    line[n] = '\0';
    line[strcspn(line, "\n")] = '\0';
    *file = -1;
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
        memcpy(file, CMSG_DATA(c), sizeof *file);
    return 0;
}

static int helper_failed(int conn, const char *line, char *err, size_t len)
{
    if (strncmp(line, "ERR ", 4) == 0)
        snprintf(err, len, "%s", line + 4);
    else
        snprintf(err, len, "4.3.0 the mailbox helper did not answer");
    close(conn);
    return -1;
}

int mailboxd_open(int uid, int gid, const char *rel, int *file, char *err, size_t len)
{
    *file = -1;
    int conn = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (conn < 0 || connect(conn, (struct sockaddr *)&helper_addr, helper_len) < 0) {
        snprintf(err, len, "4.3.0 cannot reach the mailbox helper: %s", strerror(errno));
        if (conn >= 0)
            close(conn);
        return -1;
    }
    char line[4200];
    int n = snprintf(line, sizeof line, "OPEN %d %d %s\n", uid, gid, rel);
    if (n >= REQUEST_MAX || write(conn, line, (size_t)n) != n) {
        snprintf(err, len, "4.3.0 cannot ask the mailbox helper");
        close(conn);
        return -1;
    }
    if (receive_file(conn, line, sizeof line, file) < 0 || strncmp(line, "OK ", 3) != 0 ||
        *file < 0) {
        if (*file >= 0)
            close(*file);
        return helper_failed(conn, line, err, len);
    }
    return conn;
}

int mailboxd_commit(int conn, char *err, size_t len)
{
    char line[700] = "";
    if (write(conn, "COMMIT\n", 7) != 7 || read_line(conn, line, sizeof line) < 0 ||
        strcmp(line, "OK") != 0)
        return helper_failed(conn, line, err, len);
    close(conn);
    return 0;
}
