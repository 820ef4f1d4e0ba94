/* ownercheck: the paths mail_owner must use, tested as mail_owner. */
#include "master/ownercheck.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dns/dns.h"
#include "queue/route.h"
#include "util/privs.h"
#include "util/strutil.h"

enum need_kind {
    NEED_OWNED_DIR, /* serve creates it if missing and gives it to mail_owner */
    NEED_ENTRY_DIR, /* must exist; mail_owner creates entries in it */
    NEED_READ_DIR,  /* mail_owner lists and reads it */
    NEED_READ_FILE, /* mail_owner reads it */
};

struct need {
    enum need_kind kind;
    enum conf_param param;
    char subject[600]; /* "queue_directory /var/spool/keypost" */
    char path[4096];
};

#define MAX_NEEDS 64

struct needs {
    struct need item[MAX_NEEDS];
    int n;
};

/* Who the test runs as, and what serve will have done by then. */
struct probe {
    int uid, gid;    /* become these first (uid < 0: stay who we are) */
    int owner_uid;   /* serve gives NEED_OWNED_DIR paths to this uid (< 0: it does not) */
    char who[300];   /* "mail_owner keypost", for messages */
};

/* ---- what to test ------------------------------------------------------- */

static void add_need(struct needs *nd, enum need_kind kind, enum conf_param p, const char *value,
                     const char *path)
{
    for (int i = 0; i < nd->n; i++)
        if (strcmp(nd->item[i].path, path) == 0)
            return; /* one message per path: the first use named is enough */
    if (nd->n >= MAX_NEEDS)
        return;
    struct need *n = &nd->item[nd->n++];
    n->kind = kind;
    n->param = p;
    snprintf(n->subject, sizeof n->subject, "%s %s", conf_name(p), value);
    str_copy(n->path, path, sizeof n->path);
}

/* maildir: targets of transport_maps, as routing lists them (local tables
 * only); serve creates a missing base and gives it to mail_owner, as
 * local_transport's; one that exists must let mail_owner in as it is. */
static void add_transport_maps(struct needs *nd)
{
    char bases[64][300], spec[320];
    int n = route_maildir_bases(bases, 64);
    for (int i = 0; i < n; i++) {
        snprintf(spec, sizeof spec, "maildir:%s", bases[i]);
        add_need(nd, access(bases[i], F_OK) == 0 ? NEED_ENTRY_DIR : NEED_OWNED_DIR,
                 P_TRANSPORT_MAPS, spec, bases[i]);
    }
}

static void collect(struct needs *nd)
{
    const char *q = conf_str(P_QUEUE_DIRECTORY);
    add_need(nd, NEED_OWNED_DIR, P_QUEUE_DIRECTORY, q, q);
    const char *local = conf_str(P_LOCAL_TRANSPORT);
    if (strncmp(local, "maildir:", 8) == 0 && local[8] == '/')
        add_need(nd, NEED_OWNED_DIR, P_LOCAL_TRANSPORT, local, local + 8);
    add_transport_maps(nd);
    /* OpenSSL looks certificates up in a CApath during each handshake. */
    const char *capath = conf_str(P_SMTPD_TLS_CAPATH);
    if (*capath && strcmp(conf_str(P_SMTPD_TLS_SECURITY_LEVEL), "none") != 0)
        add_need(nd, NEED_READ_DIR, P_SMTPD_TLS_CAPATH, capath, capath);
    /* Delivery agents load the DNSSEC trust anchor at their first lookup. */
    const char *anchor = dns_trust_anchor();
    if (*anchor)
        add_need(nd, NEED_READ_FILE, P_DNS_TRUST_ANCHOR_FILE, anchor, anchor);
}

/* ---- the tests, in the child that became mail_owner ---------------------- */

static void report(int fd, const struct probe *pr, const struct need *n, const char *verb,
                   const char *path, int err, const char *note)
{
    char line[8192];
    int len = snprintf(line, sizeof line, "%s: %s: %s cannot %s %s: %s%s\n",
                       conf_origin(n->param), n->subject, pr->who, verb, path, strerror(err),
                       note);
    if (len < 0)
        return;
    if ((size_t)len >= sizeof line) {
        len = (int)sizeof line - 1;
        line[len - 1] = '\n';
    }
    if (write(fd, line, (size_t)len) < 0)
        _exit(1);
}

/* Every directory on the way to path must be searchable; on failure dir
 * names the first that is not, and errno says why. */
static int reach(const char *path, char *dir, size_t len)
{
    str_copy(dir, path, len);
    if (dir[0] == '/' && faccessat(AT_FDCWD, "/", X_OK, AT_EACCESS) < 0) {
        str_copy(dir, "/", len);
        return -1;
    }
    for (char *s = strchr(dir + 1, '/'); s; s = strchr(s + 1, '/')) {
        *s = '\0';
        if (faccessat(AT_FDCWD, dir, X_OK, AT_EACCESS) < 0)
            return -1;
        *s = '/';
    }
    return 0;
}

static void test_owned_dir(int fd, const struct probe *pr, const struct need *n)
{
    struct stat st;
    if (stat(n->path, &st) < 0) {
        /* Missing is fine: serve creates it, as root, in a parent that
         * reach() has just walked through. */
        if (errno != ENOENT)
            report(fd, pr, n, "use", n->path, errno, "");
        return;
    }
    if (!S_ISDIR(st.st_mode)) {
        report(fd, pr, n, "use", n->path, ENOTDIR, "");
        return;
    }
    if (pr->owner_uid >= 0 && st.st_uid != (uid_t)pr->owner_uid) {
        /* serve will make mail_owner its owner: then the owner bits count. */
        if ((st.st_mode & S_IRWXU) != S_IRWXU) {
            char note[80];
            snprintf(note, sizeof note, " (mode %04o once it owns it)",
                     (unsigned)(st.st_mode & 07777));
            report(fd, pr, n, "read, write and search", n->path, EACCES, note);
        }
        return;
    }
    if (faccessat(AT_FDCWD, n->path, R_OK | W_OK | X_OK, AT_EACCESS) < 0)
        report(fd, pr, n, "read, write and search", n->path, errno, "");
}

static void test_access(int fd, const struct probe *pr, const struct need *n, int mode,
                        const char *verb, int want_dir)
{
    struct stat st;
    if (stat(n->path, &st) < 0)
        report(fd, pr, n, verb, n->path, errno, "");
    else if (want_dir != (S_ISDIR(st.st_mode) != 0))
        report(fd, pr, n, verb, n->path, want_dir ? ENOTDIR : EISDIR, "");
    else if (faccessat(AT_FDCWD, n->path, mode, AT_EACCESS) < 0)
        report(fd, pr, n, verb, n->path, errno, "");
}

static void test_need(int fd, const struct probe *pr, const struct need *n)
{
    char dir[4096];
    if (reach(n->path, dir, sizeof dir) < 0) {
        report(fd, pr, n, "search", dir, errno, "");
        return;
    }
    switch (n->kind) {
    case NEED_OWNED_DIR:
        test_owned_dir(fd, pr, n);
        break;
    case NEED_ENTRY_DIR:
        /* The agent opens the base, then creates DOMAIN/LOCAL below it. */
        test_access(fd, pr, n, R_OK | W_OK | X_OK, "create maildirs in", 1);
        break;
    case NEED_READ_DIR:
        test_access(fd, pr, n, R_OK | X_OK, "read", 1);
        break;
    case NEED_READ_FILE:
        test_access(fd, pr, n, R_OK, "read", 0);
        break;
    }
}

__attribute__((noreturn)) static void probe_child(int fd, const struct probe *pr,
                                                  const struct needs *nd)
{
    char err[256];
    if (privs_drop(pr->uid, pr->gid, err, sizeof err) < 0) {
        dprintf(fd, "%s: cannot test as %s: %s\n", conf_origin(P_MAIL_OWNER), pr->who, err);
        _exit(1);
    }
    for (int i = 0; i < nd->n; i++)
        test_need(fd, pr, &nd->item[i]);
    _exit(0);
}

/* ---- the parent ------------------------------------------------------- */

/* One error per line the child wrote, until it closes the pipe. */
static void read_reports(int fd, struct conf_errors *errs)
{
    char buf[16384];
    size_t used = 0;
    for (;;) {
        char scratch[512];
        int full = used == sizeof buf - 1;
        ssize_t r = full ? read(fd, scratch, sizeof scratch)
                         : read(fd, buf + used, sizeof buf - 1 - used);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        if (!full)
            used += (size_t)r;
    }
    buf[used] = '\0';
    for (char *line = buf, *nl; (nl = strchr(line, '\n')) != NULL; line = nl + 1) {
        *nl = '\0';
        conf_error(errs, "%s", line);
    }
}

static int run_probe(const struct probe *pr, const struct needs *nd, struct conf_errors *errs)
{
    int before = errs->count;
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) {
        conf_error(errs, "cannot test access as %s: pipe: %s", pr->who, strerror(errno));
        return 1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        conf_error(errs, "cannot test access as %s: fork: %s", pr->who, strerror(errno));
        close(p[0]);
        close(p[1]);
        return 1;
    }
    if (pid == 0) {
        close(p[0]);
        probe_child(p[1], pr, nd);
    }
    close(p[1]);
    read_reports(p[0], errs);
    close(p[0]);
    int status = -1;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (errs->count == before && (!WIFEXITED(status) || WEXITSTATUS(status) != 0))
        conf_error(errs, "cannot test access as %s: the test process ended without a report "
                   "(status %d)", pr->who, status);
    return errs->count - before;
}

static int check_needs(const struct probe *pr, struct conf_errors *errs)
{
    struct needs *nd = calloc(1, sizeof *nd);
    if (nd == NULL) {
        conf_error(errs, "cannot test access as %s: out of memory", pr->who);
        return 1;
    }
    collect(nd);
    int n = run_probe(pr, nd, errs);
    free(nd);
    return n;
}

int ownercheck_config(struct conf_errors *errs)
{
    const char *user = conf_str(P_MAIL_OWNER);
    struct probe pr = {-1, -1, -1, ""};
    char err[300];
    snprintf(pr.who, sizeof pr.who, "mail_owner %s", user);
    if (geteuid() == 0) {
        if (privs_lookup(user, &pr.uid, &pr.gid, err, sizeof err) < 0) {
            conf_error(errs, "%s: %s", conf_origin(P_MAIL_OWNER), err);
            return 1;
        }
        pr.owner_uid = pr.uid;
    } else if (privs_is_current_user(user)) {
        pr.owner_uid = (int)geteuid();
    } else {
        /* Only root can become mail_owner; say so rather than pass quietly. */
        conf_warning("%s: mail_owner %s: access check skipped: only root can test whether "
                     "mail_owner can use queue_directory, the Maildir bases and the files it "
                     "opens (run keypost check as root or as %s)", conf_origin(P_MAIL_OWNER),
                     user, user);
        return 0;
    }
    return check_needs(&pr, errs);
}

int ownercheck_serve(int uid, int gid, struct conf_errors *errs)
{
    struct probe pr = {uid, gid, uid, ""};
    if (uid >= 0)
        snprintf(pr.who, sizeof pr.who, "mail_owner %s", conf_str(P_MAIL_OWNER));
    else {
        char name[200];
        privs_current_user(name, sizeof name);
        snprintf(pr.who, sizeof pr.who, "user %s", name);
    }
    return check_needs(&pr, errs);
}
