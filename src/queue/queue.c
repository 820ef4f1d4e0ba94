/* queue: file per message, written to tmp/ with O_EXCL, fsynced, renamed. */
#include "queue/queue.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "util/buf.h"
#include "util/fsutil.h"
#include "util/log.h"
#include "util/strutil.h"

#define QBUF_SIZE 65536

struct qfile {
    char *qdir;
    char id[QUEUE_ID_LEN];
    int hold;  /* commit into hold/ instead of active/ */
    int fd;
    int failed;
    off_t written;       /* bytes flushed to fd */
    off_t message_start; /* where the message follows the envelope */
    const char *suffix;  /* "" or ".r": a replacement not yet in place */
    size_t used;
    char data[QBUF_SIZE];
};

static const char *const subdirs[] = {"tmp", "active", "hold", "state"};

int queue_init_dirs(const char *qdir, int uid, int gid, char *err, size_t errlen)
{
    char path[4096];
    /* queue_directory itself is the operator's choice; what lies inside
     * belongs to mail_owner and is never followed as a link by root. */
    if (own_dir(qdir, uid, gid, 0) < 0) {
        snprintf(err, errlen, "cannot create or own %s: %s", qdir, strerror(errno));
        return -1;
    }
    for (size_t i = 0; i < sizeof subdirs / sizeof subdirs[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", qdir, subdirs[i]);
        if (own_dir(path, uid, gid, 1) < 0) {
            snprintf(err, errlen, "cannot create or own %s: %s", path, strerror(errno));
            return -1;
        }
    }
    return 0;
}

void queue_new_id(char out[QUEUE_ID_LEN])
{
    static unsigned counter;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    /* seconds, microseconds and a per-process counter mixed with the pid:
     * unique across workers; O_EXCL catches the rest. */
    unsigned tail = ((unsigned)getpid() * 131u + counter++) & 0xfffu;
    snprintf(out, QUEUE_ID_LEN, "%08lX%05lX%03X", (unsigned long)tv.tv_sec & 0xffffffffUL,
             (unsigned long)tv.tv_usec & 0xfffffUL, tail);
}

static int flush_buf(struct qfile *q)
{
    size_t off = 0;
    while (off < q->used) {
        ssize_t w = write(q->fd, q->data + off, q->used - off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            q->failed = 1;
            return -1;
        }
        off += (size_t)w;
    }
    q->written += (off_t)q->used;
    q->used = 0;
    return 0;
}

int queue_write(struct qfile *q, const void *p, size_t n)
{
    if (q->failed)
        return -1;
    const char *s = p;
    while (n) {
        size_t room = QBUF_SIZE - q->used;
        size_t c = n < room ? n : room;
        memcpy(q->data + q->used, s, c);
        q->used += c;
        s += c;
        n -= c;
        if (q->used == QBUF_SIZE && flush_buf(q) < 0)
            return -1;
    }
    return 0;
}

static void write_envelope(struct qfile *q, const struct envelope *env)
{
    struct buf b;
    buf_init(&b, 1 << 24);
    buf_printf(&b, "KEYPOST-QUEUE 1\nid %s\narrival %ld\nsender %s\nclient %s\nhelo %s\n"
                   "proto %s\nhold %d\nsmtputf8 %d\neightbit %d\n",
               env->id, (long)env->arrival, env->sender ? env->sender : "",
               env->client ? env->client : "", env->helo ? env->helo : "",
               env->proto ? env->proto : "", env->hold, env->smtputf8, env->eightbit);
    if (env->local)
        buf_printf(&b, "localuid %u\n", env->local_uid);
    for (int i = 0; i < env->nrcpt; i++) {
        buf_printf(&b, "rcpt %s\n", env->rcpts[i]);
        if (env->orig_rcpts && env->orig_rcpts[i] && strcmp(env->orig_rcpts[i], env->rcpts[i]))
            buf_printf(&b, "orig %s\n", env->orig_rcpts[i]);
    }
    buf_puts(&b, "\n");
    queue_write(q, b.data, b.len);
    buf_free(&b);
}

/* A new file qdir/tmp/ID SUFFIX with env's envelope written; id NULL: a
 * fresh unique id. */
static struct qfile *qfile_new(const char *qdir, const char *id, const char *suffix, int hold,
                               const struct envelope *env)
{
    struct qfile *q = calloc(1, sizeof *q);
    if (q == NULL || (q->qdir = strdup(qdir)) == NULL) {
        free(q);
        return NULL;
    }
    q->hold = hold;
    q->suffix = suffix;
    q->fd = -1;
    char path[4096];
    for (int tries = 0; tries < 20 && q->fd < 0; tries++) {
        if (id)
            str_copy(q->id, id, sizeof q->id);
        else
            queue_new_id(q->id);
        snprintf(path, sizeof path, "%s/tmp/%s%s", qdir, q->id, suffix);
        q->fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (q->fd < 0 && (id || errno != EEXIST))
            break; /* a given id has no other name to try */
    }
    if (q->fd < 0) {
        free(q->qdir);
        free(q);
        return NULL;
    }
    struct envelope copy = *env;
    str_copy(copy.id, q->id, sizeof copy.id);
    write_envelope(q, &copy);
    q->message_start = q->written + (off_t)q->used;
    return q;
}

struct qfile *queue_create(const char *qdir, const struct envelope *env)
{
    return qfile_new(qdir, NULL, "", env->hold, env);
}

int queue_message_fd(struct qfile *q)
{
    if (q->failed || flush_buf(q) < 0)
        return -1;
    char path[4096];
    snprintf(path, sizeof path, "%s/tmp/%s", q->qdir, q->id);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd >= 0 && lseek(fd, q->message_start, SEEK_SET) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

void queue_set_hold(struct qfile *q)
{
    q->hold = 1;
}

const char *queue_file_id(const struct qfile *q)
{
    return q->id;
}

int queue_start_writeback(struct qfile *q)
{
    if (q->failed || flush_buf(q) < 0)
        return -1;
    /* Start the disk writes now, so that a group's files are written
     * together instead of one fsync after the other. */
    sync_file_range(q->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
    return 0;
}

int queue_commit_file(struct qfile *q)
{
    /* fdatasync covers the data and the size a reader needs; the name is
     * made durable by the directory fsync that follows. */
    if (q->failed || flush_buf(q) < 0 || fdatasync(q->fd) < 0)
        return -1;
    char from[4096], to[4096];
    snprintf(from, sizeof from, "%s/tmp/%s", q->qdir, q->id);
    snprintf(to, sizeof to, "%s/%s/%s", q->qdir, q->hold ? "hold" : "active", q->id);
    if (rename(from, to) < 0)
        return -1;
    if (q->hold) { /* rare: make it durable here, the group syncs active/ */
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/hold", q->qdir);
        return fsync_dir(dir);
    }
    return 0;
}

int queue_sync_active_dir(const char *qdir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/active", qdir);
    return fsync_dir(path);
}

int queue_commit(struct qfile *q)
{
    if (queue_commit_file(q) < 0)
        return -1;
    return queue_sync_active_dir(q->qdir);
}

void queue_withdraw(struct qfile *q)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s/%s", q->qdir, q->hold ? "hold" : "active", q->id);
    unlink(path);
}

static void qfile_free(struct qfile *q)
{
    if (q->fd >= 0)
        close(q->fd);
    free(q->qdir);
    free(q);
}

void queue_abort(struct qfile *q)
{
    if (q == NULL)
        return;
    char path[4096];
    snprintf(path, sizeof path, "%s/tmp/%s%s", q->qdir, q->id, q->suffix);
    unlink(path);
    qfile_free(q);
}

struct qfile *queue_create_replacement(const struct qfile *old, const struct envelope *env)
{
    return qfile_new(old->qdir, old->id, ".r", old->hold || env->hold, env);
}

int queue_replace(struct qfile *old, struct qfile *rep)
{
    char from[4096], to[4096];
    snprintf(from, sizeof from, "%s/tmp/%s.r", rep->qdir, rep->id);
    snprintf(to, sizeof to, "%s/tmp/%s", old->qdir, old->id);
    if (rep->failed || flush_buf(rep) < 0 || rename(from, to) < 0)
        return -1;
    rep->suffix = "";
    qfile_free(old); /* its name now holds rep's file */
    return 0;
}

void queue_close(struct qfile *q)
{
    if (q)
        qfile_free(q);
}

static int add_rcpt(struct envelope *env, const char *r)
{
    char **n = realloc(env->rcpts, sizeof(char *) * (size_t)(env->nrcpt + 1));
    if (n == NULL)
        return -1;
    env->rcpts = n;
    char **o = realloc(env->orig_rcpts, sizeof(char *) * (size_t)(env->nrcpt + 1));
    if (o == NULL)
        return -1;
    env->orig_rcpts = o;
    env->orig_rcpts[env->nrcpt] = NULL;
    env->rcpts[env->nrcpt++] = strdup(r);
    return 0;
}

/* "orig ADDRESS" follows the rcpt line it belongs to. */
static int add_orig(struct envelope *env, const char *o)
{
    if (env->nrcpt == 0 || env->orig_rcpts[env->nrcpt - 1])
        return -1;
    env->orig_rcpts[env->nrcpt - 1] = strdup(o);
    return 0;
}

const char *envelope_orig_rcpt(const struct envelope *env, int i)
{
    return env->orig_rcpts && env->orig_rcpts[i] ? env->orig_rcpts[i] : env->rcpts[i];
}

static int parse_header_line(struct envelope *env, char *line)
{
    char *sp = strchr(line, ' ');
    const char *v = sp ? sp + 1 : "";
    if (sp)
        *sp = '\0';
    if (strcmp(line, "id") == 0)
        str_copy(env->id, v, sizeof env->id);
    else if (strcmp(line, "arrival") == 0)
        env->arrival = (time_t)atol(v);
    else if (strcmp(line, "sender") == 0)
        env->sender = strdup(v);
    else if (strcmp(line, "client") == 0)
        env->client = strdup(v);
    else if (strcmp(line, "helo") == 0)
        env->helo = strdup(v);
    else if (strcmp(line, "proto") == 0)
        env->proto = strdup(v);
    else if (strcmp(line, "hold") == 0)
        env->hold = atoi(v);
    else if (strcmp(line, "smtputf8") == 0)
        env->smtputf8 = atoi(v);
    else if (strcmp(line, "eightbit") == 0)
        env->eightbit = atoi(v);
    else if (strcmp(line, "localuid") == 0) {
        env->local = 1;
        env->local_uid = (unsigned)strtoul(v, NULL, 10);
    } else if (strcmp(line, "rcpt") == 0)
        return add_rcpt(env, v);
    else if (strcmp(line, "orig") == 0)
        return add_orig(env, v);
    return 0;
}

static void log_refusal(const char *path, const char *why)
{
    log_warn(NULL, "%s: %s; skipped, not read", path, why);
}

static queue_refusal_fn *refusal_reporter = log_refusal;

void queue_set_refusal_reporter(queue_refusal_fn *fn)
{
    refusal_reporter = fn ? fn : log_refusal;
}

/* Report a refused name and fail with ELOOP, the errno callers test for. */
static int refuse(const char *path, const char *why)
{
    refusal_reporter(path, why);
    errno = ELOOP;
    return -1;
}

/* open() fails with ENOTDIR, not ELOOP, for a link opened with
 * O_DIRECTORY|O_NOFOLLOW: tell the two apart for the report. */
static int is_link(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0 && S_ISLNK(st.st_mode);
}

/* The queue subdirectory holding path (its last directory), opened
 * without following a link: mail_owner owns the queue and could point a
 * subdirectory anywhere. */
static int open_queue_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && errno == ENOTDIR && is_link(dir))
        return refuse(dir, "a symbolic link, never followed");
    return fd;
}

/* Why a file opened in the queue may not be read, or NULL. A second hard
 * link means the name was made for a file that lives elsewhere (a queue
 * file is only ever renamed); anything but a regular file is not ours. */
static const char *unfit_file(const struct stat *st)
{
    if (!S_ISREG(st->st_mode))
        return "not a regular file";
    if (st->st_nlink != 1)
        return "a hard link to another file";
    return NULL;
}

int queue_open_read(const char *path)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (slash == NULL || (size_t)(slash - path) >= sizeof dir) {
        errno = ENAMETOOLONG;
        return -1;
    }
    snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    int dfd = open_queue_dir(dir);
    if (dfd < 0)
        return -1;
    /* O_NONBLOCK: a FIFO planted in the queue must not hang the reader
     * before fstat can refuse it. */
    int fd = openat(dfd, slash + 1, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    int saved = errno;
    close(dfd);
    if (fd < 0) {
        errno = saved;
        return saved == ELOOP ? refuse(path, "a symbolic link, never followed") : -1;
    }
    struct stat st;
    const char *why = fstat(fd, &st) < 0 ? "cannot be examined" : unfit_file(&st);
    if (why) {
        close(fd);
        return refuse(path, why);
    }
    return fd;
}

/* queue_open_read as a stdio stream. */
static FILE *open_stream(const char *path)
{
    int fd = queue_open_read(path);
    if (fd < 0)
        return NULL;
    FILE *f = fdopen(fd, "r");
    if (f == NULL) {
        int saved = errno;
        close(fd);
        errno = saved;
    }
    return f;
}

int queue_load(const char *qdir, const char *subdir, const char *id, struct envelope *env)
{
    memset(env, 0, sizeof *env);
    char path[4096];
    snprintf(path, sizeof path, "%s/%s/%s", qdir, subdir, id);
    FILE *f = open_stream(path);
    if (f == NULL)
        return -1;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, f);
    int ok = n > 0 && strcmp(line, "KEYPOST-QUEUE 1\n") == 0;
    while (ok && (n = getline(&line, &cap, f)) > 0) {
        if (line[n - 1] == '\n')
            line[--n] = '\0';
        if (n == 0)
            break;
        parse_header_line(env, line);
    }
    ok = ok && n == 0;
    env->body_offset = ftello(f);
    struct stat st;
    if (ok && fstat(fileno(f), &st) == 0)
        env->size = st.st_size - env->body_offset;
    free(line);
    fclose(f);
    /* The id names the state file: one from the file must not climb out
     * of state/ ("id ../../x"). */
    if (!ok || env->sender == NULL || !queue_valid_id(env->id)) {
        envelope_free(env);
        errno = EBADMSG;
        return -1;
    }
    return 0;
}

void envelope_free(struct envelope *env)
{
    free(env->sender);
    for (int i = 0; i < env->nrcpt; i++) {
        free(env->rcpts[i]);
        if (env->orig_rcpts)
            free(env->orig_rcpts[i]);
    }
    free(env->rcpts);
    free(env->orig_rcpts);
    free(env->client);
    free(env->helo);
    free(env->proto);
    memset(env, 0, sizeof *env);
}

int queue_state_load(const char *qdir, const struct envelope *env, struct queue_state *st)
{
    st->done = calloc((size_t)env->nrcpt + 1, 1);
    st->reason = calloc((size_t)env->nrcpt + 1, sizeof(char *));
    st->attempts = 0;
    st->next_attempt = 0;
    char path[4096];
    snprintf(path, sizeof path, "%s/state/%s", qdir, env->id);
    FILE *f = open_stream(path);
    if (f == NULL)
        return errno == ENOENT ? 0 : -1;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, f)) > 0) {
        if (line[len - 1] == '\n')
            line[--len] = '\0';
        char what = line[0];
        char *rest;
        long v = strtol(line + 1, &rest, 10);
        int valid = v >= 0 && v < env->nrcpt;
        if (*rest == ' ')
            rest++;
        if (valid && (what == 'B' || what == 'T') && *rest) {
            free(st->reason[v]);
            st->reason[v] = strdup(rest);
        }
        if (valid && (what == 'D' || what == 'B' || what == 'N'))
            st->done[v] = (unsigned char)what;
        else if (what == 'A') {
            st->attempts++;
            st->next_attempt = (time_t)v;
        }
    }
    free(line);
    fclose(f);
    return 0;
}

static int state_append(const char *qdir, const char *id, const char *line)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/state/%s", qdir, id);
    int created = 1;
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 && errno == EEXIST) {
        created = 0;
        fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
    }
    if (fd < 0)
        return -1;
    size_t n = strlen(line);
    int r = write(fd, line, n) == (ssize_t)n && fdatasync(fd) == 0 ? 0 : -1;
    close(fd);
    if (r == 0 && created) { /* a new name: make the directory entry durable too */
        snprintf(path, sizeof path, "%s/state", qdir);
        r = fsync_dir(path);
    }
    return r;
}

void queue_state_line(struct buf *b, int rcpt, char what, const char *reason)
{
    char line[700];
    snprintf(line, sizeof line, "%c %d%s%.600s\n", what, rcpt, reason ? " " : "",
             reason ? reason : "");
    /* A reason comes from a remote server: one line, whatever it sent. */
    for (char *p = line; p[1]; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    buf_puts(b, line);
}

int queue_state_append(const char *qdir, const char *id, const char *lines)
{
    return state_append(qdir, id, lines);
}

int queue_state_mark(const char *qdir, const char *id, int rcpt, char what, const char *reason)
{
    struct buf b;
    buf_init(&b, 1024);
    queue_state_line(&b, rcpt, what, reason);
    int r = state_append(qdir, id, buf_str(&b));
    buf_free(&b);
    return r;
}

int queue_state_attempt(const char *qdir, const char *id, time_t next)
{
    char line[64];
    snprintf(line, sizeof line, "A %ld\n", (long)next);
    return state_append(qdir, id, line);
}

void queue_state_free(struct queue_state *st, int nrcpt)
{
    for (int i = 0; st->reason && i < nrcpt; i++)
        free(st->reason[i]);
    free(st->reason);
    free(st->done);
    st->done = NULL;
    st->reason = NULL;
}

int queue_remove(const char *qdir, const char *id)
{
    char path[4096];
    int found = 0;
    /* The message first: if only the first unlink reaches the disk before a
     * crash, a stale state file is left, not a message without its record of
     * finished recipients. (No barrier between the two: should the disk
     * reorder them, the cost is a duplicate delivery, never a loss.) */
    snprintf(path, sizeof path, "%s/active/%s", qdir, id);
    found += unlink(path) == 0;
    snprintf(path, sizeof path, "%s/hold/%s", qdir, id);
    found += unlink(path) == 0;
    snprintf(path, sizeof path, "%s/state/%s", qdir, id);
    unlink(path);
    return found ? 0 : -1;
}

int queue_move(const char *qdir, const char *id, const char *from, const char *to)
{
    char a[4096], b[4096];
    snprintf(a, sizeof a, "%s/%s/%s", qdir, from, id);
    snprintf(b, sizeof b, "%s/%s/%s", qdir, to, id);
    return rename(a, b);
}

int queue_valid_id(const char *name)
{
    size_t n = strlen(name);
    if (n != QUEUE_ID_LEN - 1)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'A' && name[i] <= 'F')))
            return 0;
    return 1;
}

int queue_scan(const char *qdir, const char *subdir, int (*fn)(const char *id, void *arg),
               void *arg)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", qdir, subdir);
    int fd = open_queue_dir(path);
    DIR *d = fd < 0 ? NULL : fdopendir(fd);
    if (d == NULL) {
        int saved = errno;
        if (fd >= 0)
            close(fd);
        errno = saved;
        return -1;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (queue_valid_id(e->d_name) && fn(e->d_name, arg))
            break;
    closedir(d);
    return 0;
}

static int unlink_tmp(const char *id, void *arg)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/tmp/%s", (const char *)arg, id);
    unlink(path);
    /* and a filter's replacement that was never put in place */
    snprintf(path, sizeof path, "%s/tmp/%s.r", (const char *)arg, id);
    unlink(path);
    return 0;
}

void queue_clean_tmp(const char *qdir)
{
    queue_scan(qdir, "tmp", unlink_tmp, (void *)qdir);
}
