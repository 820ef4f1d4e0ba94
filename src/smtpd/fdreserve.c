#include "smtpd/fdreserve.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int reserve = -1;

int fdreserve_init(void)
{
    if (reserve < 0)
        reserve = open("/dev/null", O_RDONLY | O_CLOEXEC);
    return reserve;
}

int fdreserve_is_exhaustion(int err)
{
    return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM;
}

int fdreserve_refuse(int lfd, const char *reply, int max)
{
    int answered = 0;
    /* Another thread (the commit thread opens directories) may have taken
     * the slot last time: try to get a reserve again first. */
    fdreserve_init();
    while (answered < max && reserve >= 0) {
        close(reserve);
        reserve = -1;
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            /* Best effort: a new socket's send buffer takes one line. */
            ssize_t ignored = send(fd, reply, strlen(reply), MSG_NOSIGNAL | MSG_DONTWAIT);
            (void)ignored;
            close(fd);
            answered++;
        }
        fdreserve_init();
        if (fd < 0)
            break; /* nobody waiting (EAGAIN), or another worker took them */
    }
    return answered;
}
