#include "queue/bounce.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "conf/conf.h"
#include "util/buf.h"
#include "util/strutil.h"

/* "5.1.1" from a reason like "550 5.1.1 <x>: unknown user"; else 5.0.0. A
 * 4.x.x status stays (an expired message: the last temporary failure). */
static void status_code(const char *reason, char *out, size_t len)
{
    snprintf(out, len, "5.0.0");
    for (const char *p = reason; p && *p; p++) {
        if ((p[0] == '4' || p[0] == '5') && p[1] == '.' && p[2] >= '0' && p[2] <= '9') {
            int n = 0;
            while (n < 12 && (p[n] == '.' || (p[n] >= '0' && p[n] <= '9')))
                n++;
            snprintf(out, len, "%.*s", n, p);
            return;
        }
    }
}

static void copy_headers(struct buf *b, const char *path, long offset)
{
    int fd = queue_open_read(path); /* the queue file, never a link */
    FILE *f = fd < 0 ? NULL : fdopen(fd, "r");
    if (f == NULL) {
        if (fd >= 0)
            close(fd);
        return;
    }
    fseek(f, offset, SEEK_SET);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, f)) > 0) {
        if (strcmp(line, "\r\n") == 0 || strcmp(line, "\n") == 0)
            break;
        if (buf_append(b, line, (size_t)n) < 0)
            break;
    }
    free(line);
    fclose(f);
}

static void compose(struct buf *b, const char *qdir, const struct envelope *env,
                    const struct queue_state *st, const char *boundary)
{
    const char *host = conf_str(P_MYHOSTNAME);
    char date[64], arrival[64];
    str_rfc5322_date(time(NULL), date, sizeof date);
    str_rfc5322_date(env->arrival, arrival, sizeof arrival);
    buf_printf(b, "From: MAILER-DAEMON@%s (Mail Delivery System)\r\nTo: <%s>\r\n"
                  "Subject: Undelivered Mail Returned to Sender\r\nDate: %s\r\n"
                  "Message-ID: <%s.bounce@%s>\r\nAuto-Submitted: auto-replied\r\n"
                  "MIME-Version: 1.0\r\n"
                  "Content-Type: multipart/report; report-type=delivery-status;\r\n"
                  "\tboundary=\"%s\"\r\n\r\n",
               host, env->sender, date, env->id, host, boundary);
    buf_printf(b, "--%s\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
                  "This is the mail system at host %s.\r\n\r\n"
                  "Your message could not be delivered to one or more recipients.\r\n\r\n",
               boundary, host);
    for (int i = 0; i < env->nrcpt; i++)
        if (st->done[i] == 'B')
            buf_printf(b, "<%s>: %s\r\n", env->rcpts[i], st->reason[i] ? st->reason[i] : "");
    buf_printf(b, "\r\n--%s\r\nContent-Type: message/delivery-status\r\n\r\n"
                  "Reporting-MTA: dns; %s\r\nX-Keypost-Queue-ID: %s\r\nArrival-Date: %s\r\n",
               boundary, host, env->id, arrival);
    for (int i = 0; i < env->nrcpt; i++) {
        if (st->done[i] != 'B')
            continue;
        const char *why = st->reason[i] ? st->reason[i] : "5.0.0 delivery failed";
        char status[16];
        status_code(why, status, sizeof status);
        int smtp_reply = strlen(why) > 3 && why[0] >= '2' && why[0] <= '5' && why[3] == ' ';
        buf_printf(b, "\r\nFinal-Recipient: rfc822; %s\r\nAction: failed\r\nStatus: %s\r\n"
                      "Diagnostic-Code: %s; %s\r\n",
                   env->rcpts[i], status, smtp_reply ? "smtp" : "X-Keypost", why);
    }
    buf_printf(b, "\r\n--%s\r\nContent-Type: text/rfc822-headers\r\n\r\n", boundary);
    char path[4096];
    snprintf(path, sizeof path, "%s/active/%s", qdir, env->id);
    copy_headers(b, path, (long)env->body_offset);
    buf_printf(b, "\r\n--%s--\r\n", boundary);
}

int bounce_send(const char *qdir, const struct envelope *env, const struct queue_state *st,
                char out_id[QUEUE_ID_LEN])
{
    char *rcpts[1] = {env->sender};
    struct envelope dsn = {
        .arrival = time(NULL),
        .sender = "",
        .rcpts = rcpts,
        .nrcpt = 1,
        .client = "local",
        .helo = "",
        .proto = "bounce",
    };
    struct qfile *q = queue_create(qdir, &dsn);
    if (q == NULL)
        return -1;
    char boundary[64];
    snprintf(boundary, sizeof boundary, "%s/%s", queue_file_id(q), conf_str(P_MYHOSTNAME));
    struct buf b;
    buf_init(&b, 1 << 22);
    compose(&b, qdir, env, st, boundary);
    int ok = queue_write(q, b.data, b.len) == 0 && queue_commit(q) == 0;
    buf_free(&b);
    snprintf(out_id, QUEUE_ID_LEN, "%s", queue_file_id(q));
    if (!ok) {
        queue_abort(q);
        return -1;
    }
    queue_close(q);
    return 0;
}
