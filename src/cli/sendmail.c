/* sendmail: the sendmail command (also called as sendmail, mailq and
 * newaliases), for scripts and cron jobs.
 *
 * It needs no privileges: it reads the message, then hands it over SMTP to
 * the running keypost through the local submission socket
 * (local_socket_directory/submit; the server side and the design are in
 * smtpd/localsubmit.h). keypost names the user by the socket's peer
 * credentials and checks the envelope sender; the message is queued with
 * keypost's normal durable commit, and this command exits 0 only after the
 * server's "250 ... queued as", that is after the fsyncs. A transaction is
 * all or nothing: a refused recipient or sender, a message that is too big,
 * a server that is not running or answers 4xx leave nothing queued and give
 * a non-zero sysexits.h status with the server's reply on stderr:
 *   EX_USAGE bad options or no recipients, EX_DATAERR a refused message
 *   (size, bare CR with smtpd_forbid_bare_newline = reject), EX_NOUSER an
 *   unknown recipient, EX_NOPERM a sender the user does not own or a user
 *   not in authorized_submit_users, EX_TEMPFAIL keypost not running or a
 *   4xx reply, EX_UNAVAILABLE another 5xx, EX_IOERR a read error,
 *   EX_CONFIG a configuration that cannot be read, EX_SOFTWARE otherwise.
 * -f from a user who may not use that sender is refused, not ignored: the
 * script learns of it, and no mail goes out under an address it did not
 * mean. -N (DSN) is accepted and ignored: keypost does not keep DSN
 * requests yet. -o options other than -oi, and -L, -h, -R, -V, -X, -e, -p,
 * -m, -n, -x, -G, -U, -c are accepted and ignored, as by Postfix. */
#include <errno.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/mailmsg.h"
#include "conf/conf.h"
#include "queue/showq.h"
#include "smtpd/localsubmit.h"
#include "table/table.h"
#include "util/buf.h"
#include "util/qualify.h"
#include "util/strutil.h"

#define REPLY_TIMEOUT 300 /* seconds, as smtpd_timeout's default */

enum sm_action { SM_DELIVER, SM_SMTP, SM_QUEUE, SM_ALIASES };

struct sm_opts {
    const char *config;
    const char *sender;    /* -f; NULL: the login */
    const char *fullname;  /* -F */
    const char *body;      /* -B: NULL, 7BIT or 8BITMIME */
    int ignore_dots;       /* -i, -oi */
    int extract;           /* -t */
    int verbose;           /* -v */
    enum sm_action action;
    char **rcpts;
    int nrcpt;
};

static const char *prog = "sendmail";

static int fail(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", prog);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return status;
}

/* ---- options -------------------------------------------------------------- */

static int set_action(struct sm_opts *o, const char *b)
{
    if (strcmp(b, "m") == 0)
        o->action = SM_DELIVER;
    else if (strcmp(b, "s") == 0)
        o->action = SM_SMTP;
    else if (strcmp(b, "p") == 0)
        o->action = SM_QUEUE;
    else if (strcmp(b, "i") == 0)
        o->action = SM_ALIASES;
    else
        return fail(EX_USAGE, "-b%s is not supported (-bm, -bs, -bp and -bi are)", b);
    return 0;
}

/* -N never | success,delay,failure: checked, then ignored (no DSN yet). */
static int check_notify(const char *v)
{
    char *copy = strdup(v), *save = NULL;
    int bad = copy == NULL;
    for (char *w = copy ? strtok_r(copy, ",", &save) : NULL; w; w = strtok_r(NULL, ",", &save))
        if (!str_ieq(w, "never") && !str_ieq(w, "success") && !str_ieq(w, "delay") &&
            !str_ieq(w, "failure"))
            bad = 1;
    free(copy);
    return bad ? fail(EX_USAGE, "-N %s: expected never or success,delay,failure", v) : 0;
}

static int one_option(struct sm_opts *o, int opt, const char *arg)
{
    switch (opt) {
    case 'B':
        if (!str_ieq(arg, "7BIT") && !str_ieq(arg, "8BITMIME"))
            return fail(EX_USAGE, "-B %s: expected 7BIT or 8BITMIME", arg);
        o->body = str_ieq(arg, "7BIT") ? "7BIT" : "8BITMIME";
        return 0;
    case 'C':
        o->config = arg;
        return 0;
    case 'F':
        o->fullname = arg;
        return 0;
    case 'f':
    case 'r':
        o->sender = arg;
        return 0;
    case 'N':
        return check_notify(arg);
    case 'b':
        return set_action(o, arg);
    case 'I':
        o->action = SM_ALIASES;
        return 0;
    case 'i':
        o->ignore_dots = 1;
        return 0;
    case 'o':
        if (arg[0] == 'i' && arg[1] == '\0')
            o->ignore_dots = 1;
        return 0;
    case 't':
        o->extract = 1;
        return 0;
    case 'v':
        o->verbose = 1;
        return 0;
    case 'q':
        return fail(EX_USAGE, "-q is not supported: use keypost queue flush");
    case '?':
        return fail(EX_USAGE, "usage: sendmail [-t] [-i] [-f sender] [-F name] [-B body] "
                    "[-N dsn] [-v] [-bm|-bs|-bp|-bi] [-C config] [recipient...]");
    default:
        return 0; /* accepted and ignored, as Sendmail's and Postfix's options */
    }
}

static int parse_options(int argc, char **argv, struct sm_opts *o)
{
    int opt;
    optind = 1;
    opterr = 0;
    /* "+": recipients end the options, as for Sendmail. */
    while ((opt = getopt(argc, argv, "+B:C:F:GIL:N:R:UV:X:b:ce:f:h:imno:p:q::r:tvx")) != -1) {
        int r = one_option(o, opt, optarg ? optarg : "");
        if (r)
            return r;
    }
    o->rcpts = argv + optind;
    o->nrcpt = argc - optind;
    return 0;
}

/* ---- talking to keypost ------------------------------------------------------ */

struct link {
    int fd;
    FILE *in;
    int verbose;
    char reply[1024]; /* the last line of the last reply */
};

static int connect_socket(const char *name, int *fd)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    if (localsubmit_socket_path(name, sun.sun_path, sizeof sun.sun_path) < 0) {
        errno = ENAMETOOLONG;
        return -1;
    }
    *fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (*fd < 0)
        return -1;
    if (connect(*fd, (struct sockaddr *)&sun, sizeof sun) < 0) {
        int e = errno;
        close(*fd);
        errno = e;
        return -1;
    }
    struct timeval tv = {REPLY_TIMEOUT, 0};
    setsockopt(*fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(*fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    return 0;
}

static int not_running(const char *name)
{
    char path[300] = "";
    localsubmit_socket_path(name, path, sizeof path);
    return fail(EX_TEMPFAIL, "cannot connect to keypost at %s: %s (is keypost running?); "
                "nothing was sent", path, strerror(errno));
}

/* Read one reply; returns its code, 0 when the connection ended. */
static int read_reply(struct link *l)
{
    char line[1024];
    while (fgets(line, sizeof line, l->in)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (l->verbose)
            fprintf(stderr, "<<< %s\n", line);
        if (strlen(line) < 3 || line[3] == '-')
            continue;
        str_copy(l->reply, line, sizeof l->reply);
        return atoi(line);
    }
    snprintf(l->reply, sizeof l->reply, "connection to keypost lost: %s",
             ferror(l->in) ? strerror(errno) : "end of file");
    return 0;
}

static int send_all(struct link *l, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(l->fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int command(struct link *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int command(struct link *l, const char *fmt, ...)
{
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 2, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof line - 2) {
        snprintf(l->reply, sizeof l->reply, "address too long for an SMTP command");
        return 500;
    }
    if (l->verbose)
        fprintf(stderr, ">>> %s\n", line);
    memcpy(line + n, "\r\n", 2);
    /* Even when the write fails, the server may have said why it closed. */
    send_all(l, line, (size_t)n + 2);
    return read_reply(l);
}

/* The sysexits.h status for a refusal at stage (MAIL, RCPT or DATA). */
static int status_of(int code, const char *reply, const char *stage)
{
    if (code == 0 || code / 100 == 4)
        return EX_TEMPFAIL;
    if (code == 552) /* message size, at MAIL (SIZE=) or at the end of data */
        return EX_DATAERR;
    if (strcmp(stage, "DATA") == 0 && (code == 550 || code == 554))
        return EX_DATAERR; /* the content: a bare CR refused, say */
    if (strstr(reply, "5.7.1") || strstr(reply, "5.7.0"))
        return EX_NOPERM;
    if (strcmp(stage, "RCPT") == 0 && (code == 550 || code == 551 || code == 553))
        return EX_NOUSER;
    if (code == 500 || code == 501 || code == 553)
        return EX_DATAERR; /* a malformed or overlong address */
    return EX_UNAVAILABLE;
}

static int refused(struct link *l, int code, const char *stage, const char *what)
{
    fprintf(stderr, "%s: %s%s%s refused: %s; nothing was sent\n", prog, stage,
            *what ? " " : "", what, l->reply);
    return status_of(code, l->reply, stage);
}

static int greet(struct link *l)
{
    int code = read_reply(l);
    if (code != 220) {
        fprintf(stderr, "%s: keypost refused the submission: %s\n", prog, l->reply);
        return strstr(l->reply, "authorized_submit_users") ? EX_NOPERM : EX_TEMPFAIL;
    }
    code = command(l, "EHLO localhost");
    return code == 250 ? 0 : refused(l, code, "EHLO", "");
}

/* ---- the message ------------------------------------------------------------ */

static void login_of(char *login, size_t len, char *gecos, size_t glen)
{
    struct passwd *pw = getpwuid(getuid());
    snprintf(login, len, "%s", pw ? pw->pw_name : "");
    snprintf(gecos, glen, "%s", pw && pw->pw_gecos ? pw->pw_gecos : "");
    gecos[strcspn(gecos, ",")] = '\0';
}

/* The sender in MAIL FROM: -f's value, or the login, qualified as keypost
 * qualifies local addresses (append_at_myorigin, append_dot_mydomain), so
 * that From: shows it so too. "<>" or "" is the null sender. */
static void envelope_sender(const struct sm_opts *o, const char *login, char *out, size_t len)
{
    const char *s = o->sender ? o->sender : login;
    size_t n = strlen(s);
    char bare[1024];
    if (n >= 2 && s[0] == '<' && s[n - 1] == '>')
        snprintf(bare, sizeof bare, "%.*s", (int)(n - 2), s + 1);
    else
        snprintf(bare, sizeof bare, "%s", s);
    unsigned flags = (conf_bool(P_APPEND_AT_MYORIGIN) ? QUALIFY_APPEND_AT_MYORIGIN : 0) |
                     (conf_bool(P_APPEND_DOT_MYDOMAIN) ? QUALIFY_APPEND_DOT_MYDOMAIN : 0);
    if (qualify_address(bare, conf_str(P_MYORIGIN), conf_str(P_MYDOMAIN), flags, out, len) < 0)
        snprintf(out, len, "%s", bare); /* too long: the server refuses it */
}

/* From:, Date: and Message-ID: when the message has none, as Postfix's
 * cleanup adds them to local mail. */
static void missing_headers(const struct mailmsg *m, const char *sender, const char *name,
                            struct buf *extra)
{
    if (!mailmsg_has_header(m, "From")) {
        if (*name && strpbrk(name, "\"\\\r\n") == NULL)
            buf_printf(extra, "From: \"%s\" <%s>\r\n", name, sender);
        else
            buf_printf(extra, "From: <%s>\r\n", sender);
    }
    time_t now = time(NULL);
    if (!mailmsg_has_header(m, "Date")) {
        char date[64];
        str_rfc5322_date(now, date, sizeof date);
        buf_printf(extra, "Date: %s\r\n", date);
    }
    if (!mailmsg_has_header(m, "Message-ID"))
        buf_printf(extra, "Message-ID: <%lld.%ld.%ld@%s>\r\n", (long long)now, (long)getpid(),
                   random() % 1000000, conf_str(P_MYHOSTNAME));
}

static int read_message(const struct sm_opts *o, struct mailmsg *m)
{
    size_t limit = (size_t)conf_long(P_MESSAGE_SIZE_LIMIT);
    int r = mailmsg_read(stdin, limit, o->ignore_dots, o->extract, m);
    if (r == MAILMSG_TOO_BIG)
        return fail(EX_DATAERR, "the message is larger than message_size_limit (%zu bytes); "
                    "nothing was sent", limit);
    if (r == MAILMSG_BAD_ADDRESS)
        return fail(EX_DATAERR, "bad address in To:, Cc: or Bcc: \"%s\" (a control "
                    "character); nothing was sent", m->bad);
    if (r == MAILMSG_READ_ERROR)
        return fail(EX_IOERR, "cannot read the message: %s; nothing was sent", strerror(errno));
    if (r < 0)
        return fail(EX_SOFTWARE, "out of memory reading the message; nothing was sent");
    return 0;
}

static int send_envelope(struct link *l, const struct sm_opts *o, const struct mailmsg *m,
                         const char *sender, size_t size)
{
    const char *body = o->body ? o->body : m->eightbit ? "8BITMIME" : NULL;
    int code = command(l, "MAIL FROM:<%s> SIZE=%zu%s%s", sender, size, body ? " BODY=" : "",
                       body ? body : "");
    if (code != 250)
        return refused(l, code, "MAIL", "");
    for (int pass = 0; pass < 2; pass++) {
        char **list = pass ? m->rcpts : o->rcpts;
        int n = pass ? m->nrcpt : o->nrcpt;
        for (int i = 0; i < n; i++) {
            code = command(l, "RCPT TO:<%s>", list[i]);
            if (code != 250 && code != 251)
                return refused(l, code, "RCPT", list[i]);
        }
    }
    return 0;
}

static int send_content(struct link *l, const struct buf *data)
{
    int code = command(l, "DATA");
    if (code != 354)
        return refused(l, code, "DATA", "");
    if (l->verbose)
        fprintf(stderr, ">>> (%zu bytes of message)\n>>> .\n", data->len);
    if (send_all(l, buf_str(data), data->len) < 0 || send_all(l, ".\r\n", 3) < 0) {
        code = read_reply(l); /* it may have refused the content and closed */
        return refused(l, code, "DATA", "");
    }
    code = read_reply(l);
    if (code != 250)
        return refused(l, code, "DATA", "");
    if (l->verbose)
        fprintf(stderr, "%s: %s\n", prog, l->reply);
    command(l, "QUIT");
    return 0;
}

static int submit(const struct sm_opts *o, struct mailmsg *m, const struct buf *data,
                  const char *sender)
{
    struct link l = {.verbose = o->verbose};
    if (connect_socket(LOCAL_SUBMIT_SOCKET, &l.fd) < 0)
        return not_running(LOCAL_SUBMIT_SOCKET);
    l.in = fdopen(dup(l.fd), "r");
    int r = l.in ? greet(&l) : fail(EX_OSERR, "cannot read from keypost: %s", strerror(errno));
    if (r == 0)
        r = send_envelope(&l, o, m, sender, data->len);
    if (r == 0)
        r = send_content(&l, data);
    if (l.in)
        fclose(l.in);
    close(l.fd);
    return r;
}

/* Sender and recipients go into SMTP commands: no control characters. */
static int check_arguments(const struct sm_opts *o)
{
    if (o->sender && !mailmsg_address_ok(o->sender))
        return fail(EX_USAGE, "-f: the sender address holds a control character");
    for (int i = 0; i < o->nrcpt; i++)
        if (!mailmsg_address_ok(o->rcpts[i]) || o->rcpts[i][0] == '\0')
            return fail(EX_USAGE, "recipient %d is empty or holds a control character", i + 1);
    return 0;
}

static int deliver(const struct sm_opts *o)
{
    int bad = check_arguments(o);
    if (bad)
        return bad;
    char login[256], gecos[256], sender[1024];
    login_of(login, sizeof login, gecos, sizeof gecos);
    if (!*login)
        return fail(EX_NOUSER, "uid %u has no user name; nothing was sent", (unsigned)getuid());
    envelope_sender(o, login, sender, sizeof sender);
    struct mailmsg m;
    int r = read_message(o, &m);
    if (r == 0 && o->nrcpt == 0 && m.nrcpt == 0)
        r = fail(EX_USAGE, "no recipients specified%s; nothing was sent",
                 o->extract ? " (none in To:, Cc: or Bcc:)" : "");
    struct buf extra, data;
    buf_init(&extra, 8192);
    buf_init(&data, (size_t)conf_long(P_MESSAGE_SIZE_LIMIT) * 3 + 65536);
    if (r == 0) {
        /* With the null sender, From: names the user itself. */
        char self[1024];
        struct sm_opts mine = {.sender = NULL};
        envelope_sender(&mine, login, self, sizeof self);
        missing_headers(&m, *sender ? sender : self, o->fullname ? o->fullname : gecos, &extra);
        if (mailmsg_render(&m, buf_str(&extra), &data) < 0)
            r = fail(EX_SOFTWARE, "out of memory; nothing was sent");
    }
    if (r == 0)
        r = submit(o, &m, &data, sender);
    buf_free(&extra);
    buf_free(&data);
    mailmsg_free(&m);
    return r;
}

/* ---- -bs, -bp, -bi ------------------------------------------------------------ */

/* After the end of the input, how long the replies to its last commands
 * may take (a commit's fsyncs) before the session is ended. The server
 * reads the end of input as a lost connection, so the socket stays open
 * meanwhile; a client that sent QUIT is closed by the server at once. */
#define SMTP_DRAIN_SECONDS 30

/* Copy between stdin/stdout and the socket until the server closes. */
static int relay_smtp(void)
{
    int fd;
    if (connect_socket(LOCAL_SUBMIT_SOCKET, &fd) < 0)
        return not_running(LOCAL_SUBMIT_SOCKET);
    struct pollfd p[2] = {{.fd = 0, .events = POLLIN}, {.fd = fd, .events = POLLIN}};
    char b[16384];
    for (;;) {
        int ready = poll(p, 2, p[0].fd < 0 ? SMTP_DRAIN_SECONDS * 1000 : -1);
        if (ready == 0 || (ready < 0 && errno != EINTR))
            break;
        if (p[1].revents) {
            ssize_t n = read(fd, b, sizeof b);
            if (n <= 0 || write(1, b, (size_t)n) != n)
                break;
        }
        if (p[0].revents) {
            ssize_t n = read(0, b, sizeof b);
            if (n <= 0) {
                p[0].fd = -1;
            } else if (send(fd, b, (size_t)n, MSG_NOSIGNAL) != n)
                break;
        }
    }
    close(fd);
    return 0;
}

static int list_queue(void)
{
    int fd;
    if (connect_socket(LOCAL_SHOWQ_SOCKET, &fd) < 0) {
        if (getuid() != 0)
            return not_running(LOCAL_SHOWQ_SOCKET);
        /* root can read the queue itself. */
        return showq_write(stdout, conf_str(P_QUEUE_DIRECTORY), 1, 0) < 0
                   ? fail(EX_NOINPUT, "cannot read the queue: %s", strerror(errno))
                   : 0;
    }
    char b[16384];
    ssize_t n;
    size_t total = 0;
    while ((n = read(fd, b, sizeof b)) > 0) {
        fwrite(b, 1, (size_t)n, stdout);
        total += (size_t)n;
    }
    close(fd);
    if (n < 0)
        return fail(EX_IOERR, "reading the queue listing: %s", strerror(errno));
    if (total == 0)
        printf("Mail queue is empty\n");
    return 0;
}

/* newaliases: keypost reads texthash and inline tables when it starts and
 * on reload (SIGHUP), so there is nothing to build for them; an lmdb table
 * is rebuilt from its text file, as postalias does for hash tables. */
static int rebuild_aliases(void)
{
    char *copy = strdup(conf_str(P_ALIAS_MAPS));
    char *items[64];
    int n = copy ? str_split_list(copy, items, 64) : 0, status = 0;
    for (int i = 0; i < n; i++) {
        char err[512];
        if (strncmp(items[i], "lmdb:", 5) == 0) {
            if (table_build_lmdb(items[i] + 5, err, sizeof err) < 0)
                status = fail(EX_CANTCREAT, "%s", err);
        } else
            printf("%s: alias_maps %s is read by keypost when it starts and on reload "
                   "(SIGHUP): nothing to build\n", prog, items[i]);
    }
    if (n == 0)
        printf("%s: alias_maps is empty: nothing to build\n", prog);
    free(copy);
    return status;
}

/* ---- entry ----------------------------------------------------------------- */

static int load_config(const char *path)
{
    struct conf_errors errs = {0};
    conf_defaults();
    int bad = conf_load(path, &errs);
    for (int i = 0; i < errs.count; i++)
        fprintf(stderr, "%s: %s\n", prog, errs.msgs[i]);
    conf_errors_free(&errs);
    return bad ? EX_CONFIG : 0;
}

int cli_sendmail(int argc, char **argv, const char *name)
{
    prog = name;
    signal(SIGPIPE, SIG_IGN);
    srandom((unsigned)time(NULL) ^ (unsigned)getpid());
    struct sm_opts o = {.config = "/etc/keypost/keypost.cf", .action = SM_DELIVER};
    if (strcmp(name, "mailq") == 0)
        o.action = SM_QUEUE;
    else if (strcmp(name, "newaliases") == 0)
        o.action = SM_ALIASES;
    int r = parse_options(argc, argv, &o);
    if (r == 0)
        r = load_config(o.config);
    if (r)
        return r;
    switch (o.action) {
    case SM_SMTP:
        return relay_smtp();
    case SM_QUEUE:
        return list_queue();
    case SM_ALIASES:
        return rebuild_aliases();
    default:
        return deliver(&o);
    }
}
