#include "smtpd/listen.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "smtpd/localsubmit.h"
#include "util/netaddr.h"
#include "util/strutil.h"

static int parse_addr(const char *text, struct sockaddr_storage *ss, socklen_t *len)
{
    char host[80];
    int port;
    if (net_split_hostport(text, host, sizeof host, &port) < 0)
        return -1;
    return net_sockaddr(host, port, ss, len);
}

static const struct {
    enum conf_param param;
    enum listener_kind kind;
} sources[] = {
    {P_SMTPD_LISTEN, LISTEN_SMTP},
    {P_SUBMISSION_LISTEN, LISTEN_SUBMISSION},
    {P_SMTPS_LISTEN, LISTEN_SMTPS},
};

static int open_one(const char *text, enum listener_kind kind, struct listener *l,
                    struct conf_errors *errs, enum conf_param p)
{
    struct sockaddr_storage ss;
    socklen_t len;
    if (parse_addr(text, &ss, &len) < 0) {
        conf_error(errs, "%s: %s: bad address \"%s\" (expected addr:port or [addr6]:port)",
                   conf_origin(p), conf_name(p), text);
        return -1;
    }
    if (l == NULL)
        return 0;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0) {
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (ss.ss_family == AF_INET6)
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    }
    /* Right after a crash the old processes may still be going away and
     * holding the port: give them a few seconds before giving up. */
    int bound = -1;
    for (int tries = 0; fd >= 0 && tries < 50; tries++) {
        bound = bind(fd, (struct sockaddr *)&ss, len);
        if (bound == 0 || errno != EADDRINUSE)
            break;
        usleep(100000);
    }
    if (fd < 0 || bound < 0 || listen(fd, 1024) < 0) {
        conf_error(errs, "%s: %s: cannot listen on %s: %s", conf_origin(p), conf_name(p), text,
                   strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    l->fd = fd;
    l->kind = kind;
    str_copy(l->text, text, sizeof l->text);
    return 0;
}

/* local_socket_directory: made if missing; sockets open to all are made
 * there, so nobody but keypost's starting user may change it. */
static int prepare_local_dir(struct conf_errors *errs)
{
    enum conf_param p = P_LOCAL_SOCKET_DIRECTORY;
    const char *dir = conf_str(p);
    struct stat st;
    if (mkdir(dir, 0755) == 0)
        chmod(dir, 0755); /* whatever the umask: every user must get in */
    else if (errno != EEXIST)
        goto fail;
    if (lstat(dir, &st) < 0)
        goto fail;
    if (!S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        goto fail;
    }
    if (st.st_uid != geteuid() || (st.st_mode & 022)) {
        conf_error(errs, "%s: %s: %s must belong to the user keypost starts as and be writable "
                   "only by it", conf_origin(p), conf_name(p), dir);
        return -1;
    }
    return 0;
fail:
    conf_error(errs, "%s: %s: cannot make or use %s: %s", conf_origin(p), conf_name(p), dir,
               strerror(errno));
    return -1;
}

/* The socket is open to every local user (mode 0666): the kernel tells
 * the server who connects. A stale socket from an earlier run is replaced,
 * one a running keypost answers on is not. */
static int open_local(const char *name, enum listener_kind kind, struct listener *l,
                      struct conf_errors *errs)
{
    enum conf_param p = P_LOCAL_SOCKET_DIRECTORY;
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    if (localsubmit_socket_path(name, sun.sun_path, sizeof sun.sun_path) < 0) {
        conf_error(errs, "%s: %s: \"%s\": not an absolute path short enough for a socket",
                   conf_origin(p), conf_name(p), conf_str(p));
        return -1;
    }
    if (l == NULL)
        return 0;
    struct stat st;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto fail;
    if (lstat(sun.sun_path, &st) == 0 && S_ISSOCK(st.st_mode)) {
        /* Left by an earlier run, unless a running keypost answers on it. */
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int live = probe >= 0 && connect(probe, (struct sockaddr *)&sun, sizeof sun) == 0;
        if (probe >= 0)
            close(probe);
        if (live) {
            close(fd);
            errno = EADDRINUSE;
            goto fail;
        }
        unlink(sun.sun_path);
    }
    /* The mode comes with bind (no chmod by name afterwards). */
    mode_t old_mask = umask(0111);
    int bound = bind(fd, (struct sockaddr *)&sun, sizeof sun);
    umask(old_mask);
    if (bound < 0 || listen(fd, 128) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        goto fail;
    }
    l->fd = fd;
    l->kind = kind;
    str_copy(l->text, name, sizeof l->text);
    return 0;
fail:
    conf_error(errs, "%s: %s: cannot listen on %s: %s", conf_origin(p), conf_name(p),
               sun.sun_path, strerror(errno));
    return -1;
}

static int each_listener(struct listener **out, struct conf_errors *errs)
{
    int count = 0, bad = 0;
    struct listener *ls = NULL;
    for (size_t s = 0; s < sizeof sources / sizeof sources[0]; s++) {
        char *copy = strdup(conf_str(sources[s].param));
        char *items[64];
        int n = str_split_list(copy, items, 64);
        for (int i = 0; i < n; i++) {
            struct listener *slot = NULL;
            if (out) {
                ls = realloc(ls, sizeof *ls * (size_t)(count + 1));
                slot = &ls[count];
            }
            if (open_one(items[i], sources[s].kind, slot, errs, sources[s].param) < 0)
                bad++;
            else
                count++;
        }
        free(copy);
    }
    static const struct {
        const char *name;
        enum listener_kind kind;
    } locals[] = {{LOCAL_SUBMIT_SOCKET, LISTEN_LOCAL}, {LOCAL_SHOWQ_SOCKET, LISTEN_SHOWQ}};
    int local = *conf_str(P_LOCAL_SOCKET_DIRECTORY) != '\0';
    if (local && out && prepare_local_dir(errs) < 0) {
        local = 0;
        bad++;
    }
    for (size_t i = 0; local && i < 2; i++) {
        struct listener *slot = NULL;
        if (out) {
            ls = realloc(ls, sizeof *ls * (size_t)(count + 1));
            slot = &ls[count];
        }
        if (open_local(locals[i].name, locals[i].kind, slot, errs) < 0)
            bad++;
        else
            count++;
    }
    if (out)
        *out = ls;
    if (bad && out) {
        listen_close(ls, count);
        *out = NULL;
    }
    return bad ? -1 : count;
}

int listen_check(struct conf_errors *errs)
{
    return each_listener(NULL, errs) < 0 ? -1 : 0;
}

int listen_open(struct listener **out, struct conf_errors *errs)
{
    return each_listener(out, errs);
}

void listen_close(struct listener *ls, int n)
{
    for (int i = 0; i < n; i++)
        close(ls[i].fd);
    free(ls);
}

void listen_unlink_local(void)
{
    static const char *const names[] = {LOCAL_SUBMIT_SOCKET, LOCAL_SHOWQ_SOCKET};
    for (size_t i = 0; *conf_str(P_LOCAL_SOCKET_DIRECTORY) && i < 2; i++) {
        char path[sizeof ((struct sockaddr_un *)0)->sun_path];
        struct stat st;
        if (localsubmit_socket_path(names[i], path, sizeof path) == 0 &&
            lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
            unlink(path);
    }
}
