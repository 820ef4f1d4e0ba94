/* showq: the queue listing of `keypost queue list` and of mailq, one
 * format for both: "ID[!] SIZE ARRIVAL <SENDER>" ("!": on hold), then the
 * attempts and one indented line per recipient. */
#ifndef KP_SHOWQ_H
#define KP_SHOWQ_H

#include <stdio.h>

#include "queue/queue.h"

void showq_print(FILE *out, const char *id, const char *subdir, const struct envelope *env,
                 const struct queue_state *st);
/* List active/ and hold/ of qdir to out: every message when all is set,
 * else only those a local user with this uid submitted. A message that
 * went away meanwhile is skipped. 0, or -1 with errno when a directory
 * cannot be read. */
int showq_write(FILE *out, const char *qdir, int all, unsigned uid);

#endif
