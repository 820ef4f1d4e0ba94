/* sdnotify: the sd_notify protocol (sd_notify(3), "Notes") without libsystemd. */
#include "util/sdnotify.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "util/log.h"

/* $NOTIFY_SOCKET as a socket address: "/path" or "@abstract" (the '@'
 * stands for the leading NUL byte). Other forms (relative paths, vsock:)
 * are refused, not guessed at. */
static int notify_addr(const char *name, struct sockaddr_un *sun, socklen_t *alen, char *err,
                       size_t len)
{
    size_t n = strlen(name);
    memset(sun, 0, sizeof *sun);
    sun->sun_family = AF_UNIX;
    if ((name[0] != '/' && name[0] != '@') || n < 2) {
        snprintf(err, len, "NOTIFY_SOCKET=%s: not an absolute path or @abstract name", name);
        return -1;
    }
    if (n > sizeof sun->sun_path - (name[0] == '/')) {
        snprintf(err, len, "NOTIFY_SOCKET=%s: name too long", name);
        return -1;
    }
    memcpy(sun->sun_path, name, n);
    if (name[0] == '@')
        sun->sun_path[0] = '\0'; /* abstract: the length, not a NUL, ends it */
    *alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (name[0] == '/'));
    return 0;
}

int sdnotify_send(const char *state, char *err, size_t len)
{
    const char *name = getenv("NOTIFY_SOCKET");
    if (name == NULL || name[0] == '\0')
        return 0;
    struct sockaddr_un sun;
    socklen_t alen;
    if (notify_addr(name, &sun, &alen, err, len) < 0)
        return -1;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, len, "NOTIFY_SOCKET: socket: %s", strerror(errno));
        return -1;
    }
    ssize_t r;
    do
        r = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sun, alen);
    while (r < 0 && errno == EINTR);
    int saved = errno;
    close(fd);
    if (r < 0) {
        snprintf(err, len, "NOTIFY_SOCKET=%s: %s", name, strerror(saved));
        return -1;
    }
    return 1;
}

static void send_or_warn(const char *state)
{
    char err[300];
    if (sdnotify_send(state, err, sizeof err) < 0)
        log_warn(NULL, "cannot tell the service manager %.20s: %s", state, err);
}

void sdnotify_ready(const char *status)
{
    char msg[600];
    if (status)
        snprintf(msg, sizeof msg, "READY=1\nSTATUS=%s", status);
    else
        snprintf(msg, sizeof msg, "READY=1");
    send_or_warn(msg);
}

void sdnotify_reloading(void)
{
    /* systemd >= 253 takes the reload as begun only with a time stamp of
     * CLOCK_MONOTONIC, so that it is not confused by a stale message. */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    char msg[128];
    snprintf(msg, sizeof msg, "RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading",
             (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000);
    send_or_warn(msg);
}

void sdnotify_stopping(void)
{
    send_or_warn("STOPPING=1\nSTATUS=stopping");
}
