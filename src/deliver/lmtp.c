#include "deliver/lmtp.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "conf/conf.h"
#include "deliver/smtpio.h"
#include "util/strutil.h"

static void set_all(struct dresult *res, int n, const int *pending, enum dstatus st,
                    const char *text)
{
    for (int i = 0; i < n; i++)
        if (pending[i])
            dresult_set(&res[i], st, "%s", text);
}

void lmtp_deliver(const char *target, const struct dmessage *m, char **rcpts, int n,
                  struct dresult *res, int timeout)
{
    struct smtpio io;
    char text[600], err[300], host[256] = "localhost";
    int pending[n > 0 ? n : 1];
    for (int i = 0; i < n; i++) {
        pending[i] = 1;
        str_copy(res[i].relay, target, sizeof res[i].relay);
    }
    if (smtpio_connect(&io, target, timeout, err, sizeof err) < 0) {
        set_all(res, n, pending, D_DEFERRED, err);
        return;
    }
    gethostname(host, sizeof host - 1);
    int code = smtpio_reply(&io, text, sizeof text);
    if (code == 220 && smtpio_printf(&io, "LHLO %s", host) == 0)
        code = smtpio_reply(&io, text, sizeof text);
    if (code == 250 && smtpio_printf(&io, "MAIL FROM:<%s>", m->env->sender) == 0)
        code = smtpio_reply(&io, text, sizeof text);
    if (code != 250) {
        set_all(res, n, pending, code >= 500 ? D_BOUNCED : D_DEFERRED, text);
        smtpio_close(&io);
        return;
    }
    int accepted = 0;
    for (int i = 0; i < n; i++) {
        if (smtpio_printf(&io, "RCPT TO:<%s>", rcpts[i]) < 0 ||
            (code = smtpio_reply(&io, text, sizeof text)) < 0)
            break;
        if (code / 100 != 2) {
            dresult_set(&res[i], dstatus_of_reply(code), "%s", text);
            pending[i] = 0;
        } else
            accepted++;
    }
    if (code < 0 || accepted == 0) {
        set_all(res, n, pending, D_DEFERRED, code < 0 ? text : "no recipient accepted");
        smtpio_close(&io);
        return;
    }
    if (smtpio_printf(&io, "DATA") < 0 || smtpio_reply(&io, text, sizeof text) != 354 ||
        smtpio_send_body(&io, m->path, (long)m->env->body_offset,
                         (size_t)conf_long(P_SMTP_LINE_LENGTH_LIMIT)) < 0) {
        set_all(res, n, pending, D_DEFERRED, text);
        smtpio_close(&io);
        return;
    }
    /* LMTP answers the end of data once for every accepted recipient. */
    for (int i = 0; i < n; i++) {
        if (!pending[i])
            continue;
        code = smtpio_reply(&io, text, sizeof text);
        dresult_set(&res[i], code < 0 ? D_DEFERRED : dstatus_of_reply(code), "%s", text);
        pending[i] = 0;
    }
    smtpio_printf(&io, "QUIT");
    smtpio_close(&io);
}
