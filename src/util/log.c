/* log: formats one event per line and writes it with a single write(2), so
 * that lines of concurrent processes never interleave (a line is at most
 * PIPE_BUF bytes, which a pipe also writes whole). */
#include "util/log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "util/strutil.h"

#define LINE_MAX_BYTES 4096
_Static_assert(LINE_MAX_BYTES <= PIPE_BUF, "a log line must fit one atomic pipe write");

enum log_dest { DEST_STDERR, DEST_FILE, DEST_SYSLOG };

static struct {
    char name[33];    /* syslog_name */
    int facility;     /* syslog_facility */
    char role[32];
    char host[128];
    char ident[72];   /* syslog keeps a pointer to it */
    char path[1024];  /* maillog_file, for log_reopen() */
    enum log_dest dest;
    int fd;           /* where lines are written: 2, the file or the pipe */
    int file_fd;      /* the file itself, -1 when not held */
    int tty_copy;     /* syslog mode: copy lines to a terminal on stderr */
} L = {.name = "keypost", .facility = LOG_MAIL, .role = "keypost", .host = "localhost",
       .dest = DEST_STDERR, .fd = 2, .file_fd = -1};

static void open_syslog(void)
{
    snprintf(L.ident, sizeof L.ident, "%s/%s", L.name, L.role);
    openlog(L.ident, LOG_PID | LOG_NDELAY, L.facility);
}

int log_name_ok(const char *name)
{
    size_t n = strlen(name);
    static const char ok[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-";
    return n >= 1 && n < sizeof L.name && strspn(name, ok) == n;
}

int log_set_syslog(const char *name, const char *facility)
{
    static const struct {
        const char *name;
        int value;
    } facilities[] = {{"mail", LOG_MAIL},     {"daemon", LOG_DAEMON}, {"user", LOG_USER},
                      {"local0", LOG_LOCAL0}, {"local1", LOG_LOCAL1}, {"local2", LOG_LOCAL2},
                      {"local3", LOG_LOCAL3}, {"local4", LOG_LOCAL4}, {"local5", LOG_LOCAL5},
                      {"local6", LOG_LOCAL6}, {"local7", LOG_LOCAL7}};
    if (!log_name_ok(name))
        return -1;
    for (size_t i = 0; i < sizeof facilities / sizeof facilities[0]; i++)
        if (strcmp(facility, facilities[i].name) == 0) {
            str_copy(L.name, name, sizeof L.name);
            L.facility = facilities[i].value;
            return 0;
        }
    return -1;
}

void log_set_role(const char *role)
{
    snprintf(L.role, sizeof L.role, "%s", role);
    if (L.dest == DEST_SYSLOG)
        open_syslog();
}

const char *log_get_role(void)
{
    return L.role;
}

void log_set_hostname(const char *host)
{
    snprintf(L.host, sizeof L.host, "%s", host);
}

static int open_path(const char *path)
{
    return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
}

int log_open(const char *maillog_file)
{
    tzset(); /* before any privilege drop, while /etc/localtime is readable */
    if (maillog_file == NULL || *maillog_file == '\0') {
        L.dest = DEST_SYSLOG;
        L.tty_copy = isatty(2);
        open_syslog();
        if (access(_PATH_LOG, W_OK) < 0)
            /* A container without a syslog daemon: say so once, where the
             * operator looks, instead of losing every line in silence. */
            fprintf(stderr, "keypost: warning: maillog_file is empty and %s is missing or not "
                    "writable: log lines are lost; set maillog_file = /dev/stderr or a file\n",
                    _PATH_LOG);
        return 0;
    }
    int fd = open_path(maillog_file);
    if (fd < 0)
        return -1;
    str_copy(L.path, maillog_file, sizeof L.path);
    if (L.file_fd >= 0)
        close(L.file_fd);
    L.dest = DEST_FILE;
    L.fd = L.file_fd = fd;
    return 0;
}

int log_reopen(void)
{
    if (L.dest != DEST_FILE || L.file_fd < 0)
        return 0;
    int fd = open_path(L.path);
    if (fd < 0)
        return -1;
    /* dup2 swaps the file under the same number in one step. */
    if (dup2(fd, L.file_fd) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    close(fd);
    return 0;
}

int log_file_fd(void)
{
    return L.file_fd;
}

int log_adopt_file(int fd)
{
    if (L.file_fd < 0 || dup2(fd, L.file_fd) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    close(fd);
    return 0;
}

int log_to_file(void)
{
    return L.dest == DEST_FILE;
}

void log_use_fd(int fd)
{
    if (fd < 0) {
        L.fd = L.file_fd >= 0 ? L.file_fd : 2;
        return;
    }
    /* A process that writes to the pipe has no business with the file. */
    if (L.file_fd >= 0)
        close(L.file_fd);
    L.file_fd = -1;
    L.fd = fd;
}

void log_write_raw(const char *line, size_t len)
{
    while (len > 0) {
        ssize_t w = write(L.fd, line, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        line += w;
        len -= (size_t)w;
    }
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

static int syslog_priority(enum log_level lvl)
{
    switch (lvl) {
    case LOG_LVL_WARN: return LOG_WARNING;
    case LOG_LVL_ERR: return LOG_ERR;
    case LOG_LVL_FATAL: return LOG_CRIT;
    default: return LOG_INFO;
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

/* "Nov 30 11:51:10 HOST NAME/ROLE[PID]: ", Postfix's maillog_file form;
 * month names from a table, not strftime, so no locale can change them. */
static int file_prefix(char *out, size_t len)
{
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    int n = snprintf(out, len, "%s %02d %02d:%02d:%02d %s %s/%s[%ld]: ", months[tm.tm_mon],
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, L.host, L.name, L.role,
                     (long)getpid());
    return n < 0 || (size_t)n >= len ? 0 : n;
}

/* The text after the prefix: "warning: QID: text session=SID". */
static size_t format_body(char *out, size_t len, enum log_level lvl, const char *id,
                          const char *sid, const char *fmt, va_list ap, int saved_errno)
{
    int n = snprintf(out, len, "%s%s%s", level_prefix(lvl), id ? id : "", id ? ": " : "");
    if (n < 0 || (size_t)n >= len)
        n = 0;
    errno = saved_errno; /* for %m */
    int body = vsnprintf(out + n, len - (size_t)n, fmt, ap);
    size_t used = (size_t)n + (body > 0 ? (size_t)body : 0);
    if (used >= len)
        used = len - 1;
    if (sid && used < len - 1) {
        int m = snprintf(out + used, len - used, " session=%s", sid);
        used += m > 0 ? (size_t)m : 0;
        if (used >= len)
            used = len - 1;
    }
    neutralize_controls(out, used);
    return used;
}

static void emit(enum log_level lvl, const char *id, const char *sid, const char *fmt,
                 va_list ap)
{
    char line[LINE_MAX_BYTES];
    int saved_errno = errno;
    int n = file_prefix(line, sizeof line);
    /* Room for the '\n'. */
    size_t body = format_body(line + n, sizeof line - (size_t)n - 1, lvl, id, sid, fmt, ap,
                              saved_errno);
    size_t len = (size_t)n + body;
    line[len++] = '\n';
    if (L.dest == DEST_SYSLOG) {
        line[len - 1] = '\0';
        syslog(syslog_priority(lvl), "%s", line + n);
        line[len - 1] = '\n';
        if (L.tty_copy)
            (void)!write(2, line, len);
    } else {
        log_write_raw(line, len);
    }
    errno = saved_errno;
}

void log_vmsg(enum log_level lvl, const char *id, const char *fmt, va_list ap)
{
    emit(lvl, id, NULL, fmt, ap);
}

void log_msg(enum log_level lvl, const char *id, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    emit(lvl, id, NULL, fmt, ap);
    va_end(ap);
}

void log_session(enum log_level lvl, const char *sid, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    emit(lvl, NULL, sid, fmt, ap);
    va_end(ap);
}
