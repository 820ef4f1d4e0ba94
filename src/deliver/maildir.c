#include "deliver/maildir.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "addr/addrclass.h"
#include "conf/conf.h"
#include "util/buf.h"
#include "util/strutil.h"

/* A path component taken from an address must not climb or hide. */
static int safe_component(const char *s)
{
    if (*s == '\0' || *s == '.' || strlen(s) > 200)
        return 0;
    for (; *s; s++)
        if (*s == '/' || (unsigned char)*s < 0x20)
            return 0;
    return 1;
}

/* Open directory name below parent, creating it if missing, never through
 * a link: whoever may write below the maildir base could otherwise point a
 * mailbox, or its new/, at any directory mail_owner may write. */
static int open_dir_at(int parent, const char *name)
{
    if (mkdirat(parent, name, 0700) < 0 && errno != EEXIST)
        return -1;
    int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    /* With O_DIRECTORY a link fails as ENOTDIR: tell the reason apart. */
    if (fd < 0 && errno == ENOTDIR && fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
        S_ISLNK(st.st_mode))
        errno = ELOOP;
    return fd;
}

enum { SUB_TMP, SUB_NEW, SUB_CUR, NSUB };

/* BASE/DOMAIN/LOCAL and its subdirectories, held open while delivering so
 * that every name below the base is looked up once, without links. */
struct mailbox {
    char path[4096];    /* as far as it was opened: BASE/DOMAIN/LOCAL when complete */
    const char *failed; /* the name below path that could not be opened */
    int fd;
    int sub[NSUB];
};

static int enter(struct mailbox *mb, const char *name)
{
    int fd = open_dir_at(mb->fd, name);
    if (fd < 0) {
        mb->failed = name;
        return -1;
    }
    close(mb->fd);
    mb->fd = fd;
    size_t n = strlen(mb->path);
    snprintf(mb->path + n, sizeof mb->path - n, "/%s", name);
    return 0;
}

static int open_subdirs(struct mailbox *mb)
{
    static const char *const names[NSUB] = {"tmp", "new", "cur"};
    for (int i = 0; i < NSUB; i++)
        if ((mb->sub[i] = open_dir_at(mb->fd, names[i])) < 0) {
            mb->failed = names[i];
            return -1;
        }
    return 0;
}

static void start_at_base(struct mailbox *mb, const char *base)
{
    mb->failed = NULL;
    for (int i = 0; i < NSUB; i++)
        mb->sub[i] = -1;
    str_copy(mb->path, base, sizeof mb->path);
    /* The base is the operator's choice and may be a link; below it, no. */
    mb->fd = open(base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

static int open_mailbox(struct mailbox *mb, const char *base, const char *domain,
                        const char *local)
{
    start_at_base(mb, base);
    if (mb->fd < 0 || enter(mb, domain) < 0 || enter(mb, local) < 0)
        return -1;
    return open_subdirs(mb);
}

int maildir_path_ok(const char *rel)
{
    char copy[1024];
    if (str_copy(copy, rel, sizeof copy) >= sizeof copy || copy[0] == '\0' ||
        copy[strlen(copy) - 1] != '/')
        return 0;
    copy[strlen(copy) - 1] = '\0';
    for (char *save = NULL, *c = strtok_r(copy, "/", &save); c; c = strtok_r(NULL, "/", &save))
        if (!safe_component(c))
            return 0;
    return strstr(rel, "//") == NULL && rel[0] != '/';
}

/* BASE/REL/ (several components, each created when missing, none a link). */
static int open_mailbox_path(struct mailbox *mb, const char *base, const char *rel)
{
    start_at_base(mb, base);
    if (mb->fd < 0)
        return -1;
    char copy[1024];
    str_copy(copy, rel, sizeof copy);
    for (char *save = NULL, *c = strtok_r(copy, "/", &save); c; c = strtok_r(NULL, "/", &save))
        if (enter(mb, c) < 0)
            return -1;
    return open_subdirs(mb);
}

static void close_mailbox(struct mailbox *mb)
{
    if (mb->fd >= 0)
        close(mb->fd);
    for (int i = 0; i < NSUB; i++)
        if (mb->sub[i] >= 0)
            close(mb->sub[i]);
}

/* The deferral for a mailbox that could not be opened; a link found is
 * named as such, since strerror(ELOOP) would not say it. */
static void mailbox_failed(struct dresult *r, const struct mailbox *mb, int err)
{
    dresult_set(r, D_DEFERRED, "4.2.0 cannot open maildir %s%s%s: %s", mb->path,
                mb->failed ? "/" : "", mb->failed ? mb->failed : "",
                err == ELOOP ? "a symbolic link, refused" : strerror(err));
}

/* Copy the message body, CRLF -> LF, after the delivery headers. */
int maildir_copy_message(int out, const struct dmessage *m, const char *rcpt)
{
    int fd = queue_open_read(m->path); /* the queue file, never a link */
    FILE *in = fd < 0 ? NULL : fdopen(fd, "r");
    if (in == NULL) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    FILE *o = fdopen(dup(out), "w");
    if (o == NULL) {
        fclose(in);
        return -1;
    }
    fprintf(o, "Return-Path: <%s>\nDelivered-To: %s\n", m->env->sender, rcpt);
    fseeko(in, m->env->body_offset, SEEK_SET);
    int c, prev_cr = 0;
    while ((c = getc_unlocked(in)) != EOF) {
        if (prev_cr && c != '\n')
            putc_unlocked('\r', o);
        prev_cr = c == '\r';
        if (!prev_cr)
            putc_unlocked(c, o);
    }
    if (prev_cr)
        putc_unlocked('\r', o);
    int bad = ferror(in);
    fclose(in);
    bad |= fclose(o) != 0;
    return bad ? -1 : 0;
}

/* Write the message into tmp/NAME, fsync it, rename it into new/ and fsync
 * new/, all relative to the directories mb holds open. */
static void write_message(struct mailbox *mb, const char *name, const struct dmessage *m,
                          const char *rcpt, struct dresult *r)
{
    int tmp = mb->sub[SUB_TMP], new = mb->sub[SUB_NEW];
    int fd = openat(tmp, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        dresult_set(r, D_DEFERRED, "4.2.0 cannot create %s/tmp/%s: %s", mb->path, name,
                    strerror(errno));
        return;
    }
    int bad = maildir_copy_message(fd, m, rcpt) < 0 || fsync(fd) < 0;
    bad |= close(fd) != 0;
    if (bad || renameat(tmp, name, new, name) < 0) {
        int e = errno;
        unlinkat(tmp, name, 0);
        dresult_set(r, D_DEFERRED, "4.3.0 cannot write %s/tmp/%s: %s", mb->path, name,
                    strerror(e));
        return;
    }
    if (fsync(new) < 0) {
        dresult_set(r, D_DEFERRED, "4.3.0 cannot sync %s/new: %s", mb->path, strerror(errno));
        return;
    }
    dresult_set(r, D_SENT, "delivered to maildir %s", mb->path);
}

/* A message that already carries "Delivered-To: rcpt" has been here: an
 * alias or a forward sent it round (Postfix's local(8) checks the same). */
/* The Delivered-To values of one message, read once: an agent delivers a
 * message's local recipients one after another, and the file never changes
 * once queued. Kept as "\nvalue\nvalue\n" for a whole-line search. */
static struct {
    char path[4096];
    struct buf values;
} seen;

static void read_delivered_to(const struct dmessage *m)
{
    if (strcmp(seen.path, m->path) == 0)
        return;
    buf_free(&seen.values);
    buf_init(&seen.values, 1 << 20);
    buf_puts(&seen.values, "\n");
    str_copy(seen.path, m->path, sizeof seen.path);
    int fd = queue_open_read(m->path);
    FILE *in = fd < 0 ? NULL : fdopen(fd, "r");
    if (in == NULL) {
        if (fd >= 0)
            close(fd);
        seen.path[0] = '\0';
        return; /* the copy itself will fail and say why */
    }
    fseeko(in, m->env->body_offset, SEEK_SET);
    char *line = NULL;
    size_t cap = 0;
    int lines = 0;
    /* Whole lines (getline), headers only, a bounded number of them. A
     * folded continuation starts with white space and is never the name. */
    while (lines++ < 10000 && getline(&line, &cap, in) > 0 && strcmp(line, "\r\n") != 0 &&
           strcmp(line, "\n") != 0)
        if (str_iprefix(line, "Delivered-To:")) {
            char *v = str_trim(line + 13);
            str_lower(v);
            buf_printf(&seen.values, "%s\n", v);
        }
    free(line);
    fclose(in);
}

int maildir_delivered_before(const struct dmessage *m, const char *rcpt)
{
    char probe[600];
    snprintf(probe, sizeof probe, "\n%s\n", rcpt);
    str_lower(probe);
    read_delivered_to(m);
    return seen.path[0] && strstr(buf_str(&seen.values), probe) != NULL;
}

/* "user+ext@domain" is delivered to user's mailbox (recipient_delimiter),
 * unless "user+ext" is a user of its own; the full address stays in
 * Delivered-To. at points into addr. */
static void strip_extension(char *addr, char *at)
{
    *at = '\0';
    size_t cut = addrclass_extension_cut(addr);
    *at = '@';
    if (cut < (size_t)(at - addr) && !addrclass_local_listed(addr))
        memmove(addr + cut, at, strlen(at) + 1);
}

void maildir_deliver(const char *base, const struct dmessage *m, const char *rcpt,
                     struct dresult *r)
{
    char local[512];
    str_copy(r->relay, "local", sizeof r->relay);
    if (maildir_delivered_before(m, rcpt)) {
        dresult_set(r, D_BOUNCED, "5.4.6 mail forwarding loop for %s", rcpt);
        return;
    }
    str_copy(local, rcpt, sizeof local);
    str_lower(local);
    char *at = strrchr(local, '@');
    if (at)
        strip_extension(local, at);
    at = strrchr(local, '@');
    if (at == NULL || !safe_component(at + 1) || (*at = '\0', !safe_component(local))) {
        dresult_set(r, D_BOUNCED, "5.1.3 recipient address cannot name a mailbox");
        return;
    }
    struct mailbox mb;
    if (open_mailbox(&mb, base, at + 1, local) < 0) {
        mailbox_failed(r, &mb, errno);
        close_mailbox(&mb);
        return;
    }
    char name[300];
    maildir_unique_name(name, sizeof name);
    write_message(&mb, name, m, rcpt, r);
    close_mailbox(&mb);
}

void maildir_unique_name(char *name, size_t len)
{
    static unsigned counter;
    char host[128] = "localhost";
    gethostname(host, sizeof host - 1);
    for (char *p = host; *p; p++)
        if (*p == '/' || *p == ':')
            *p = '_'; /* never a path separator, nor Maildir's flag mark */
    struct timeval tv;
    gettimeofday(&tv, NULL);
    snprintf(name, len, "%ld.M%06ldP%dQ%u.%s", (long)tv.tv_sec, (long)tv.tv_usec,
             (int)getpid(), counter++, host);
}

/* ---- a mailbox opened for someone else (mailboxd.h) -------------------- */

struct maildir_slot {
    struct mailbox mb;
    char name[300];
    int file;
};

struct maildir_slot *maildir_slot_open(const char *base, const char *rel, char *err,
                                       size_t len)
{
    struct maildir_slot *sl = calloc(1, sizeof *sl);
    if (sl == NULL) {
        snprintf(err, len, "4.3.0 out of memory");
        return NULL;
    }
    sl->file = -1;
    if (open_mailbox_path(&sl->mb, base, rel) < 0) {
        int e = errno;
        snprintf(err, len, "4.2.0 cannot open maildir %s%s%s: %s", sl->mb.path,
                 sl->mb.failed ? "/" : "", sl->mb.failed ? sl->mb.failed : "",
                 e == ELOOP ? "a symbolic link, refused" : strerror(e));
        maildir_slot_close(sl);
        return NULL;
    }
    maildir_unique_name(sl->name, sizeof sl->name);
    sl->file = openat(sl->mb.sub[SUB_TMP], sl->name,
                      O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (sl->file < 0) {
        snprintf(err, len, "4.2.0 cannot create %s/tmp/%s: %s", sl->mb.path, sl->name,
                 strerror(errno));
        maildir_slot_close(sl);
        return NULL;
    }
    return sl;
}

int maildir_slot_file(const struct maildir_slot *sl)
{
    return sl->file;
}

const char *maildir_slot_path(const struct maildir_slot *sl)
{
    return sl->mb.path;
}

int maildir_slot_commit(struct maildir_slot *sl, char *err, size_t len)
{
    int tmp = sl->mb.sub[SUB_TMP], new = sl->mb.sub[SUB_NEW];
    if (renameat(tmp, sl->name, new, sl->name) < 0) {
        snprintf(err, len, "4.3.0 cannot move %s/tmp/%s to new/: %s", sl->mb.path, sl->name,
                 strerror(errno));
        return -1;
    }
    sl->name[0] = '\0'; /* delivered: nothing to remove on close */
    if (fsync(new) < 0) {
        snprintf(err, len, "4.3.0 cannot sync %s/new: %s", sl->mb.path, strerror(errno));
        return -1;
    }
    return 0;
}

void maildir_slot_close(struct maildir_slot *sl)
{
    if (sl == NULL)
        return;
    if (sl->file >= 0)
        close(sl->file);
    if (sl->name[0] && sl->mb.sub[SUB_TMP] >= 0)
        unlinkat(sl->mb.sub[SUB_TMP], sl->name, 0); /* never committed */
    close_mailbox(&sl->mb);
    free(sl);
}
