#include "deliver/deliver.h"

#include <stdarg.h>
#include <stdio.h>

void dresult_set(struct dresult *r, enum dstatus st, const char *fmt, ...)
{
    va_list ap;
    r->status = st;
    va_start(ap, fmt);
    vsnprintf(r->text, sizeof r->text, fmt, ap);
    va_end(ap);
}

const char *dstatus_name(enum dstatus st)
{
    switch (st) {
    case D_SENT: return "sent";
    case D_BOUNCED: return "bounced";
    default: return "deferred";
    }
}

enum dstatus dstatus_of_reply(int code)
{
    return code >= 200 && code < 300 ? D_SENT : code >= 500 ? D_BOUNCED : D_DEFERRED;
}
