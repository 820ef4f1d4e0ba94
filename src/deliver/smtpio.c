#include "deliver/smtpio.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "deliver/dataout.h"
#include "queue/queue.h"
#include "tls/tls_client.h"
#include "util/netaddr.h"
#include "util/strutil.h"

static void set_timeouts(int fd, int seconds)
{
    /* A backstop for OpenSSL's own blocking reads and writes. */
    struct timeval tv = {seconds, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

static int wait_fd(struct smtpio *io, short events)
{
    struct pollfd p = {io->fd, events, 0};
    int r;
    do
        r = poll(&p, 1, io->timeout * 1000);
    while (r < 0 && errno == EINTR);
    if (r == 0)
        errno = ETIMEDOUT;
    return r > 0 ? 0 : -1;
}

static int connect_unix(struct smtpio *io, const char *path)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    if (str_copy(sun.sun_path, path, sizeof sun.sun_path) >= sizeof sun.sun_path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    io->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (io->fd < 0)
        return -1;
    set_timeouts(io->fd, io->timeout); /* a stalled reader must not block a send forever */
    return connect(io->fd, (struct sockaddr *)&sun, sizeof sun);
}

static int connect_sockaddr(struct smtpio *io, const struct sockaddr *sa, socklen_t len)
{
    io->fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (io->fd < 0)
        return -1;
    int r = connect(io->fd, sa, len);
    if (r < 0 && errno == EINPROGRESS && wait_fd(io, POLLOUT) == 0) {
        int err = 0;
        socklen_t el = sizeof err;
        getsockopt(io->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        r = err ? -1 : 0;
        errno = err;
    }
    if (r < 0) {
        int e = errno;
        close(io->fd);
        io->fd = -1;
        errno = e;
        return -1;
    }
    fcntl(io->fd, F_SETFL, 0);
    set_timeouts(io->fd, io->timeout);
    return 0;
}

int smtpio_connect_addr(struct smtpio *io, const struct sockaddr_storage *ss, int timeout,
                        char *err, size_t len)
{
    memset(io, 0, sizeof *io);
    io->timeout = timeout;
    socklen_t sl = ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                             : sizeof(struct sockaddr_in);
    if (connect_sockaddr(io, (const struct sockaddr *)ss, sl) < 0) {
        snprintf(err, len, "connect: %s", strerror(errno));
        io->fd = -1;
        return -1;
    }
    return 0;
}

int smtpio_starttls(struct smtpio *io, SSL_CTX *ctx, const char *sni,
                    const struct tls_policy *p, char *err, size_t len)
{
    if (io->have) {
        /* Bytes after the 220 cannot have come through TLS. */
        snprintf(err, len, "server sent data after its STARTTLS reply");
        return -1;
    }
    io->ssl = tls_client_connect(ctx, io->fd, sni, p, err, len);
    return io->ssl ? 0 : -1;
}

static ssize_t io_recv(struct smtpio *io, char *p, size_t n)
{
    if (io->ssl) {
        if (SSL_pending(io->ssl) == 0 && wait_fd(io, POLLIN) < 0)
            return -1;
        int r = SSL_read(io->ssl, p, (int)n);
        return r > 0 ? r : -1;
    }
    if (wait_fd(io, POLLIN) < 0)
        return -1;
    return read(io->fd, p, n);
}

static int connect_inet(struct smtpio *io, const char *hostport)
{
    char host[256], port[8];
    int p;
    if (net_split_hostport(hostport, host, sizeof host, &p) < 0) {
        errno = EINVAL;
        return -1;
    }
    snprintf(port, sizeof port, "%d", p);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
    if (getaddrinfo(host, port, &hints, &ai) != 0) {
        errno = EHOSTUNREACH;
        return -1;
    }
    int r = -1;
    for (struct addrinfo *a = ai; a && r < 0; a = a->ai_next)
        r = connect_sockaddr(io, a->ai_addr, a->ai_addrlen);
    freeaddrinfo(ai);
    return r;
}

int smtpio_connect(struct smtpio *io, const char *target, int timeout, char *err, size_t len)
{
    memset(io, 0, sizeof *io);
    io->fd = -1;
    io->timeout = timeout;
    int r;
    if (strncmp(target, "unix:", 5) == 0)
        r = connect_unix(io, target + 5);
    else if (strncmp(target, "inet:", 5) == 0)
        r = connect_inet(io, target + 5);
    else {
        snprintf(err, len, "unknown address form \"%s\"", target);
        return -1;
    }
    if (r < 0) {
        snprintf(err, len, "connect to %s: %s", target, strerror(errno));
        smtpio_close(io);
        return -1;
    }
    return 0;
}

/* A reply line goes into logs, bounces and DSNs: a control byte from the
 * peer (a bare CR, a NUL, an escape) becomes a space there. */
static void copy_printable(char *dst, const char *src, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)src[i];
        dst[i] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
    }
    dst[n] = '\0';
}

/* One line without its CRLF; -1 on error, timeout or an overlong line. */
static int read_line(struct smtpio *io, char *line, size_t len)
{
    for (;;) {
        char *nl = memchr(io->in, '\n', io->have);
        if (nl) {
            size_t n = (size_t)(nl - io->in);
            size_t c = n && io->in[n - 1] == '\r' ? n - 1 : n;
            if (c >= len)
                c = len - 1;
            copy_printable(line, io->in, c);
            io->have -= n + 1;
            memmove(io->in, nl + 1, io->have);
            return 0;
        }
        if (io->have == sizeof io->in)
            return -1;
        ssize_t r = io_recv(io, io->in + io->have, sizeof io->in - io->have);
        if (r <= 0)
            return -1;
        io->have += (size_t)r;
    }
}

static int lines_add(char *lines, size_t llen, size_t *used, const char *l)
{
    size_t n = strlen(l);
    if (*used + n + 2 > llen)
        return -1;
    memcpy(lines + *used, l, n);
    *used += n;
    lines[(*used)++] = '\n';
    lines[*used] = '\0';
    return 0;
}

int smtpio_reply(struct smtpio *io, char *text, size_t len)
{
    return smtpio_reply_lines(io, text, len, NULL, 0);
}

int smtpio_reply_lines(struct smtpio *io, char *text, size_t len, char *lines, size_t llen)
{
    char line[1024];
    size_t used = 0;
    if (lines && llen)
        lines[0] = '\0';
    for (int count = 0; count < 100; count++) {
        if (read_line(io, line, sizeof line) < 0) {
            snprintf(text, len, "lost connection or timeout while reading reply");
            return -1;
        }
        if (strlen(line) < 3 || line[0] < '2' || line[0] > '5') {
            snprintf(text, len, "malformed reply: %.200s", line);
            return -1;
        }
        if (lines && lines_add(lines, llen, &used, line + (line[3] ? 4 : 3)) < 0)
            lines = NULL;
        if (line[3] != '-') {
            str_copy(text, line, len);
            return atoi(line);
        }
    }
    snprintf(text, len, "reply too long");
    return -1;
}

static int write_all(struct smtpio *io, const char *p, size_t n)
{
    if (io->ssl) {
        while (n) {
            int w = SSL_write(io->ssl, p, n > 65536 ? 65536 : (int)n);
            if (w <= 0)
                return -1;
            p += w;
            n -= (size_t)w;
        }
        return 0;
    }
    while (n) {
        if (wait_fd(io, POLLOUT) < 0)
            return -1;
        ssize_t w = send(io->fd, p, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int smtpio_printf(struct smtpio *io, const char *fmt, ...)
{
    char line[1100];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 2, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof line - 2)
        return -1;
    line[n++] = '\r';
    line[n++] = '\n';
    return write_all(io, line, (size_t)n);
}

static int emit_to_io(void *arg, const char *p, size_t n)
{
    return write_all(arg, p, n);
}

int smtpio_send_body(struct smtpio *io, const char *path, long offset, size_t line_limit)
{
    int fd = queue_open_read(path); /* the queue file, never a link */
    FILE *f = fd < 0 ? NULL : fdopen(fd, "r");
    if (f == NULL) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    struct data_writer *dw = malloc(sizeof *dw);
    if (dw == NULL || fseek(f, offset, SEEK_SET) < 0) {
        free(dw);
        fclose(f);
        return -1;
    }
    data_writer_init(dw, line_limit, emit_to_io, io);
    char chunk[16384];
    size_t n;
    int bad = 0;
    while (!bad && (n = fread(chunk, 1, sizeof chunk, f)) > 0)
        bad = data_writer_feed(dw, chunk, n) < 0;
    bad = bad || ferror(f);
    fclose(f);
    /* A read error must not end the data as if the message were whole. */
    if (!bad)
        bad = data_writer_finish(dw) < 0;
    free(dw);
    return bad ? -1 : 0;
}

int smtpio_write(struct smtpio *io, const char *p, size_t n)
{
    return write_all(io, p, n);
}

void smtpio_close(struct smtpio *io)
{
    if (io->ssl) {
        SSL_shutdown(io->ssl);
        SSL_free(io->ssl);
        io->ssl = NULL;
    }
    if (io->fd >= 0)
        close(io->fd);
    io->fd = -1;
}
