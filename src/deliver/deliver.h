/* deliver: the outcome of one delivery attempt for one recipient, shared by
 * every transport (maildir, lmtp, and later smtp). */
#ifndef KP_DELIVER_H
#define KP_DELIVER_H

#include <stddef.h>

#include "queue/queue.h"

enum dstatus { D_SENT, D_DEFERRED, D_BOUNCED };

struct dresult {
    enum dstatus status;
    char relay[128];   /* "local", "dovecot[127.0.0.1]:24", ... */
    char text[512];    /* what happened, or the remote reply */
};

/* The open message: its envelope and where the body starts in the file. */
struct dmessage {
    const struct envelope *env;
    const char *path;  /* the queue file */
};

void dresult_set(struct dresult *r, enum dstatus st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
const char *dstatus_name(enum dstatus st);
/* The outcome an SMTP/LMTP reply code means: 2xx sent, 5xx bounced, else deferred. */
enum dstatus dstatus_of_reply(int code);

#endif
