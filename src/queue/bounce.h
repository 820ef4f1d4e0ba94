/* bounce: delivery status notifications (RFC 3464) to the envelope sender
 * for recipients that failed for good. The notice is itself queued with the
 * null sender <>, so a bounce never bounces. */
#ifndef KP_BOUNCE_H
#define KP_BOUNCE_H

#include "queue/queue.h"

/* Queue one DSN for the recipients whose done[] is 'B'; returns the new
 * message's id in out_id, 0 on success, -1 on failure. */
int bounce_send(const char *qdir, const struct envelope *env, const struct queue_state *st,
                char out_id[QUEUE_ID_LEN]);

#endif
