#include "util/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

int fsync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int r = fsync(fd);
    close(fd);
    return r;
}

int own_dir(const char *path, int uid, int gid, int nofollow)
{
    if (mkdir(path, 0750) < 0 && errno != EEXIST)
        return -1;
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | (nofollow ? O_NOFOLLOW : 0));
    if (fd < 0)
        return -1;
    struct stat st;
    int r = fstat(fd, &st);
    if (r == 0 && !S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        r = -1;
    }
    if (r == 0 && uid >= 0 && fchown(fd, (uid_t)uid, (gid_t)gid) < 0)
        r = -1;
    int saved = errno;
    close(fd);
    errno = saved;
    return r;
}
