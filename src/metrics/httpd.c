/* httpd: the metrics endpoint process (see httpd.h). */
#include "metrics/httpd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "metrics/metrics.h"
#include "metrics/render.h"
#include "queue/census.h"
#include "util/buf.h"
#include "util/log.h"
#include "util/netaddr.h"
#include "util/strutil.h"

#define REQUEST_MAX 8192
#define REQUEST_SECONDS 5       /* a scraper that sends nothing is dropped */
#define BODY_MAX (1024 * 1024)

static int is_loopback(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr) >> 24) == 127;
    const struct in6_addr *a = &((const struct sockaddr_in6 *)ss)->sin6_addr;
    if (IN6_IS_ADDR_V4MAPPED(a))
        return a->s6_addr[12] == 127;
    return IN6_IS_ADDR_LOOPBACK(a);
}

static int parse(const char *text, struct sockaddr_storage *ss, socklen_t *len)
{
    char host[80];
    int port;
    if (net_split_hostport(text, host, sizeof host, &port) < 0 || port <= 0)
        return -1;
    return net_sockaddr(host, port, ss, len);
}

void metrics_listen_check(struct conf_errors *errs)
{
    const char *v = conf_str(P_METRICS_LISTEN);
    struct sockaddr_storage ss;
    socklen_t len;
    if (*v == '\0')
        return;
    if (parse(v, &ss, &len) < 0)
        conf_error(errs, "%s: metrics_listen: bad address \"%s\" (expected addr:port or "
                   "[addr6]:port, numeric)", conf_origin(P_METRICS_LISTEN), v);
    else if (!is_loopback(&ss) && !conf_bool(P_METRICS_ALLOW_NON_LOOPBACK))
        conf_error(errs, "%s: metrics_listen: %s is not a loopback address; the endpoint has "
                   "no authentication (set metrics_allow_non_loopback = yes to allow it)",
                   conf_origin(P_METRICS_LISTEN), v);
}

static char bound[128]; /* what metrics_listen was when the socket was made */

void metrics_listen_reload_check(void)
{
    if (strcmp(bound, conf_str(P_METRICS_LISTEN)) != 0)
        log_warn(NULL, "reload: metrics_listen changed from \"%s\" to \"%s\"; the change "
                 "takes effect when keypost is restarted", bound, conf_str(P_METRICS_LISTEN));
}

int metrics_listen_open(char *err, size_t errlen)
{
    const char *v = conf_str(P_METRICS_LISTEN);
    str_copy(bound, v, sizeof bound);
    if (*v == '\0')
        return -1;
    struct sockaddr_storage ss;
    socklen_t len;
    if (parse(v, &ss, &len) < 0) {
        snprintf(err, errlen, "metrics_listen: bad address \"%s\"", v);
        return -2;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd < 0 || bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, 16) < 0) {
        snprintf(err, errlen, "metrics_listen: cannot listen on %s: %s", v, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -2;
    }
    return fd;
}

/* ---- one request ---------------------------------------------------------- */

static void status_only(struct buf *out, const char *status, const char *extra)
{
    char body[128];
    snprintf(body, sizeof body, "%s\n", status);
    buf_printf(out, "HTTP/1.1 %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
               "Content-Length: %zu\r\n%sConnection: close\r\n\r\n%s", status, strlen(body),
               extra, body);
}

void metrics_http_answer(const char *req, size_t len, const char *qdir, struct buf *out)
{
    const char *eol = memchr(req, '\n', len);
    char method[8], path[256], version[16];
    char line[300];
    size_t n = eol ? (size_t)(eol - req) : 0;
    if (n == 0 || n >= sizeof line) {
        status_only(out, "400 Bad Request", "");
        return;
    }
    memcpy(line, req, n);
    line[n] = '\0';
    if (sscanf(line, "%7s %255s %15s", method, path, version) != 3 ||
        strncmp(version, "HTTP/1.", 7) != 0) {
        status_only(out, "400 Bad Request", "");
        return;
    }
    int head = strcmp(method, "HEAD") == 0;
    if (!head && strcmp(method, "GET") != 0) {
        status_only(out, "405 Method Not Allowed", "Allow: GET, HEAD\r\n");
        return;
    }
    char *q = strchr(path, '?');
    if (q)
        *q = '\0'; /* Prometheus may add parameters; there are none to honour */
    if (strcmp(path, "/metrics") != 0) {
        status_only(out, "404 Not Found", "");
        return;
    }
    const struct metrics_area *a = metrics_area();
    struct queue_census census;
    int have_queue = queue_census(qdir, &census) == 0;
    struct buf body;
    buf_init(&body, BODY_MAX);
    if (a == NULL || metrics_render(&body, a, have_queue ? &census : NULL, time(NULL)) < 0) {
        buf_free(&body);
        status_only(out, "500 Internal Server Error", "");
        return;
    }
    buf_printf(out, "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; "
               "charset=utf-8\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n", body.len);
    if (!head)
        buf_append(out, body.data ? body.data : "", body.len);
    buf_free(&body);
}

/* Read until the end of the headers, the size limit or the time limit. */
static size_t read_request(int fd, char *req, size_t max)
{
    size_t len = 0;
    time_t end = time(NULL) + REQUEST_SECONDS;
    while (len < max - 1) {
        int left = (int)(end - time(NULL));
        struct pollfd p = {fd, POLLIN, 0};
        if (left <= 0 || poll(&p, 1, left * 1000) <= 0)
            break;
        ssize_t n = read(fd, req + len, max - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
        req[len] = '\0';
        if (strstr(req, "\r\n\r\n") || strstr(req, "\n\n"))
            break;
    }
    req[len] = '\0';
    return len;
}

static void write_all(int fd, const char *p, size_t n)
{
    time_t end = time(NULL) + REQUEST_SECONDS;
    while (n > 0 && time(NULL) < end) {
        struct pollfd pf = {fd, POLLOUT, 0};
        if (poll(&pf, 1, 1000) < 0 && errno != EINTR)
            return;
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && errno != EAGAIN && errno != EINTR)
            return;
        if (w > 0) {
            p += w;
            n -= (size_t)w;
        }
    }
}

static void serve_one(int fd, const char *qdir)
{
    char req[REQUEST_MAX];
    size_t len = read_request(fd, req, sizeof req);
    if (len == 0)
        return; /* nothing asked, or too slow */
    struct buf out;
    buf_init(&out, BODY_MAX + 1024);
    metrics_http_answer(req, len, qdir, &out);
    write_all(fd, out.data ? out.data : "", out.len);
    buf_free(&out);
}

void metrics_httpd_run(int fd, const char *qdir)
{
    log_set_role("metrics");
    for (;;) {
        int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0) {
            if (errno != EINTR && errno != ECONNABORTED) {
                log_warn(NULL, "metrics: accept: %s", strerror(errno));
                sleep(1); /* out of descriptors: do not spin */
            }
            continue;
        }
        serve_one(c, qdir);
        close(c);
    }
}
