/* mtasts_cache: durable per-domain policy files. */
#include "tls/mtasts_cache.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf/conf.h"
#include "util/fsutil.h"
#include "util/strutil.h"

#define MAGIC "keypost-mta-sts 1\n"
#define FILE_MAX (MTASTS_MAX_BODY + 512)

/* The cache directory, made if missing; the file name for domain, which
 * must be a plain lower-case DNS name (it becomes a path). */
static int paths(const char *domain, char *dir, char *file, size_t len)
{
    size_t n = strlen(domain);
    if (n == 0 || n > 253 || domain[0] == '.' || strstr(domain, "..") ||
        strspn(domain, "abcdefghijklmnopqrstuvwxyz0123456789.-") != n) {
        errno = EINVAL;
        return -1;
    }
    snprintf(dir, len, "%s/mta-sts", conf_str(P_QUEUE_DIRECTORY));
    snprintf(file, len, "%s/%s", dir, domain);
    return own_dir(dir, -1, -1, 1);
}

int mtasts_cache_fresh(const struct mtasts_policy *p, long now)
{
    return p->fetched <= now && now - p->fetched < p->max_age;
}

static int read_file(const char *path, char *buf, size_t size, size_t *n)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : -1;
    struct stat st;
    int r = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_nlink == 1 &&
            (size_t)st.st_size < size ? 1 : -1;
    if (r < 0 && errno == 0)
        errno = EINVAL;
    *n = 0;
    while (r > 0) {
        ssize_t got = read(fd, buf + *n, size - 1 - *n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            r = got < 0 ? -1 : 1;
            break;
        }
        *n += (size_t)got;
    }
    close(fd);
    buf[*n] = '\0';
    return r;
}

/* "id ID\nfetched N\n\n" after the magic line. */
static const char *parse_head(const char *buf, struct mtasts_policy *out)
{
    char id[MTASTS_ID_MAX + 2];
    long fetched;
    int used = 0;
    if (strncmp(buf, MAGIC, strlen(MAGIC)) != 0 ||
        sscanf(buf + strlen(MAGIC), "id %33[A-Za-z0-9]\nfetched %ld\n\n%n", id, &fetched,
               &used) != 2 || used == 0 || strlen(id) > MTASTS_ID_MAX)
        return NULL;
    str_copy(out->id, id, sizeof out->id);
    out->fetched = fetched;
    return buf + strlen(MAGIC) + used;
}

int mtasts_cache_load(const char *domain, struct mtasts_policy *out, char *err, size_t errlen)
{
    char dir[4096], file[4096];
    if (paths(domain, dir, file, sizeof dir) < 0) {
        snprintf(err, errlen, "cache for %s: %s", domain, strerror(errno));
        return -1;
    }
    char *buf = malloc(FILE_MAX);
    size_t n = 0;
    int r = buf ? read_file(file, buf, FILE_MAX, &n) : -1;
    if (r < 0)
        snprintf(err, errlen, "cannot read %s: %s", file, strerror(errno));
    struct mtasts_policy head = {0};
    const char *body = r > 0 ? parse_head(buf, &head) : NULL;
    char why[200];
    if (r > 0 && (body == NULL || mtasts_parse(body, n - (size_t)(body - buf), out, why,
                                               sizeof why) < 0)) {
        snprintf(err, errlen, "%s: damaged (%s)", file, body ? why : "bad header");
        r = -1;
    }
    if (r > 0) {
        memcpy(out->id, head.id, sizeof out->id);
        out->fetched = head.fetched;
        str_copy(out->domain, domain, sizeof out->domain);
    }
    free(buf);
    return r;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int mtasts_cache_store(const char *domain, const char *id, long fetched, const char *text,
                       size_t len, char *err, size_t errlen)
{
    char dir[4096], file[4096], tmp[4200], head[128];
    if (paths(domain, dir, file, sizeof dir) < 0) {
        snprintf(err, errlen, "cache for %s: %s", domain, strerror(errno));
        return -1;
    }
    snprintf(tmp, sizeof tmp, "%s/.%s.%ld.tmp", dir, domain, (long)getpid());
    int hn = snprintf(head, sizeof head, MAGIC "id %s\nfetched %ld\n\n", id, fetched);
    unlink(tmp); /* a leftover of this pid's crash; O_EXCL below refuses anything else */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    int ok = fd >= 0 && write_all(fd, head, (size_t)hn) == 0 && write_all(fd, text, len) == 0 &&
             fsync(fd) == 0;
    int saved = errno;
    if (fd >= 0 && close(fd) < 0 && ok) {
        ok = 0;
        saved = errno;
    }
    if (ok && rename(tmp, file) < 0) {
        ok = 0;
        saved = errno;
    }
    if (ok && fsync_dir(dir) < 0) {
        ok = 0;
        saved = errno;
    }
    if (!ok) {
        unlink(tmp);
        snprintf(err, errlen, "cannot store %s: %s", file, strerror(saved));
        return -1;
    }
    return 0;
}
