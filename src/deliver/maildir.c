#include "deliver/maildir.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "util/fsutil.h"
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

static int make_dir(const char *path)
{
    return mkdir(path, 0700) == 0 || errno == EEXIST ? 0 : -1;
}

static int make_maildir(const char *base, const char *domain, const char *local, char *dir,
                        size_t len)
{
    static const char *const sub[] = {"tmp", "new", "cur"};
    char path[4096];
    snprintf(dir, len, "%s/%s", base, domain);
    if (make_dir(dir) < 0)
        return -1;
    snprintf(dir, len, "%s/%s/%s", base, domain, local);
    if (make_dir(dir) < 0)
        return -1;
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, sub[i]);
        if (make_dir(path) < 0)
            return -1;
    }
    return 0;
}

/* Copy the message body, CRLF -> LF, after the delivery headers. */
static int copy_body(int out, const struct dmessage *m, const char *rcpt)
{
    FILE *in = fopen(m->path, "re");
    if (in == NULL)
        return -1;
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

void maildir_deliver(const char *base, const struct dmessage *m, const char *rcpt,
                     struct dresult *r)
{
    static unsigned counter;
    char local[512], dir[4096], tmp[4600], new[4600], host[128] = "localhost";
    str_copy(r->relay, "local", sizeof r->relay);
    str_copy(local, rcpt, sizeof local);
    str_lower(local);
    char *at = strrchr(local, '@');
    if (at == NULL || !safe_component(at + 1) || (*at = '\0', !safe_component(local))) {
        dresult_set(r, D_BOUNCED, "5.1.3 recipient address cannot name a mailbox");
        return;
    }
    if (make_maildir(base, at + 1, local, dir, sizeof dir) < 0) {
        dresult_set(r, D_DEFERRED, "4.2.0 cannot create maildir %s: %s", dir, strerror(errno));
        return;
    }
    gethostname(host, sizeof host - 1);
    struct timeval tv;
    gettimeofday(&tv, NULL);
    char name[300];
    snprintf(name, sizeof name, "%ld.M%06ldP%dQ%u.%s", (long)tv.tv_sec, (long)tv.tv_usec,
             (int)getpid(), counter++, host);
    snprintf(tmp, sizeof tmp, "%s/tmp/%s", dir, name);
    snprintf(new, sizeof new, "%s/new/%s", dir, name);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        dresult_set(r, D_DEFERRED, "4.2.0 cannot create %s: %s", tmp, strerror(errno));
        return;
    }
    int bad = copy_body(fd, m, rcpt) < 0 || fsync(fd) < 0;
    bad |= close(fd) != 0;
    if (bad || rename(tmp, new) < 0) {
        int e = errno;
        unlink(tmp);
        dresult_set(r, D_DEFERRED, "4.3.0 cannot write %s: %s", tmp, strerror(e));
        return;
    }
    snprintf(tmp, sizeof tmp, "%s/new", dir);
    if (fsync_dir(tmp) < 0) {
        dresult_set(r, D_DEFERRED, "4.3.0 cannot sync %s: %s", tmp, strerror(errno));
        return;
    }
    dresult_set(r, D_SENT, "delivered to maildir %s", dir);
}
