/* census: how many messages the queue holds in each state, and the oldest,
 * by reading directory names only (a queue id starts with its arrival
 * time, docs/queue-format.md), for `keypost status` and the metrics.
 *
 *   incoming  tmp/ (being received)
 *   active    active/ without a state file (not tried yet, or in its
 *             first delivery)
 *   deferred  active/ with a state file (tried before, recipients left)
 *   hold      hold/ */
#ifndef KP_CENSUS_H
#define KP_CENSUS_H

#include <time.h>

struct queue_census {
    long incoming, active, deferred, hold;
    time_t oldest;  /* arrival of the oldest message in active/ or hold/; 0 none */
};

/* Seconds since the message with this queue id was created (the id holds
 * its creation time to the microsecond); 0 for an id that is not one. */
double queue_id_age(const char *id);

/* 0, or -1 with errno when a directory cannot be read (ELOOP: a link). */
int queue_census(const char *qdir, struct queue_census *out);

#endif
