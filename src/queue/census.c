/* census: counts of the queue by state (see census.h). */
#include "queue/census.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "queue/queue.h"

/* The arrival time a queue id carries in its first 8 hex digits. */
static time_t id_time(const char *id)
{
    char hex[9];
    memcpy(hex, id, 8);
    hex[8] = '\0';
    return (time_t)strtoul(hex, NULL, 16);
}

double queue_id_age(const char *id)
{
    if (!queue_valid_id(id))
        return 0;
    char usec[6];
    memcpy(usec, id + 8, 5);
    usec[5] = '\0';
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    double created = (double)id_time(id) + (double)strtoul(usec, NULL, 16) / 1e6;
    double age = (double)now.tv_sec + now.tv_nsec / 1e9 - created;
    return age > 0 ? age : 0;
}

static void note_oldest(struct queue_census *c, const char *id)
{
    time_t t = id_time(id);
    if (c->oldest == 0 || t < c->oldest)
        c->oldest = t;
}

/* Visit the ids of QDIR/sub; state_fd >= 0 sorts active/ into active and
 * deferred by whether state/ID exists. */
static int count_dir(const char *qdir, const char *sub, long *n, long *deferred, int state_fd,
                     struct queue_census *c)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", qdir, sub);
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (d == NULL) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        errno = e;
        return e == ENOENT ? 0 : -1;
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!queue_valid_id(de->d_name))
            continue;
        struct stat st;
        if (state_fd >= 0 && fstatat(state_fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0)
            (*deferred)++;
        else
            (*n)++;
        if (c)
            note_oldest(c, de->d_name);
    }
    closedir(d);
    return 0;
}

int queue_census(const char *qdir, struct queue_census *out)
{
    memset(out, 0, sizeof *out);
    char path[4096];
    snprintf(path, sizeof path, "%s/state", qdir);
    int state_fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (state_fd < 0 && errno != ENOENT)
        return -1;
    long unused = 0;
    int r = 0;
    if (count_dir(qdir, "active", &out->active, &out->deferred, state_fd, out) < 0 ||
        count_dir(qdir, "hold", &out->hold, &unused, -1, out) < 0 ||
        count_dir(qdir, "tmp", &out->incoming, &unused, -1, NULL) < 0)
        r = -1;
    int e = errno;
    if (state_fd >= 0)
        close(state_fd);
    errno = e;
    return r;
}
