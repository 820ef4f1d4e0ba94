/* log: formats one event per line and writes it with a single write(2), so
 * that lines of concurrent worker processes never interleave. */
#include "util/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static char log_role[32] = "keypost";
static char log_host[128] = "localhost";
static int log_fd = 2;

void log_set_role(const char *role)
{
    snprintf(log_role, sizeof log_role, "%s", role);
}

void log_set_hostname(const char *host)
{
    snprintf(log_host, sizeof log_host, "%s", host);
}

int log_open_file(const char *path)
{
    if (path == NULL || *path == '\0') {
        log_fd = 2;
        return 0;
    }
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0)
        return -1;
    if (log_fd != 2)
        close(log_fd);
    log_fd = fd;
    return 0;
}

static const char *level_prefix(enum log_level lvl)
{
    switch (lvl) {
    case LOG_LVL_WARN: return "warning: ";
    case LOG_LVL_ERR: return "error: ";
    case LOG_LVL_FATAL: return "fatal: ";
    default: return "";
    }
}

/* Replace control characters so that text from the network cannot forge
 * extra log lines. */
static void neutralize_controls(char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            s[i] = '?';
}

void log_vmsg(enum log_level lvl, const char *id, const char *fmt, va_list ap)
{
    char line[4096];
    struct timeval tv;
    struct tm tm;
    int saved_errno = errno;

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    int n = snprintf(line, sizeof line,
                     "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ %s keypost/%s[%ld]: %s%s%s",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                     tm.tm_min, tm.tm_sec, (long)tv.tv_usec, log_host, log_role,
                     (long)getpid(), id ? id : "", id ? ": " : "", level_prefix(lvl));
    if (n < 0 || (size_t)n >= sizeof line)
        n = 0;
    int body = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    if (body < 0)
        body = 0;
    size_t len = (size_t)n + (size_t)body;
    if (len > sizeof line - 2)
        len = sizeof line - 2;
    neutralize_controls(line + n, len - (size_t)n);
    line[len++] = '\n';
    ssize_t w = write(log_fd, line, len);
    (void)w;
    errno = saved_errno;
}

void log_msg(enum log_level lvl, const char *id, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vmsg(lvl, id, fmt, ap);
    va_end(ap);
}
