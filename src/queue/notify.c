#include "queue/notify.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static int socket_path(const char *qdir, struct sockaddr_un *sun)
{
    memset(sun, 0, sizeof *sun);
    sun->sun_family = AF_UNIX;
    int n = snprintf(sun->sun_path, sizeof sun->sun_path, "%s/qmgr.sock", qdir);
    return n < 0 || (size_t)n >= sizeof sun->sun_path ? -1 : 0;
}

int queue_notify(const char *qdir, const char *id)
{
    struct sockaddr_un sun;
    if (socket_path(qdir, &sun) < 0)
        return -1;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    ssize_t r = sendto(fd, id, strlen(id), 0, (struct sockaddr *)&sun, sizeof sun);
    close(fd);
    return r < 0 ? -1 : 0;
}

int queue_notify_listen(const char *qdir)
{
    struct sockaddr_un sun;
    if (socket_path(qdir, &sun) < 0)
        return -1;
    unlink(sun.sun_path);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    if (bind(fd, (struct sockaddr *)&sun, sizeof sun) < 0) {
        close(fd);
        return -1;
    }
    /* smtpd workers and the queue command send; nobody else may. */
    chmod(sun.sun_path, 0660);
    return fd;
}
