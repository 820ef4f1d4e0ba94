/* agent: long-lived delivery processes of the queue manager. A request is
 * one text line; the agent runs it with the work function and answers with
 * a number. Agents are forked on demand up to a limit and reused, so a
 * delivery costs no fork (Postfix's delivery agents serve many requests for
 * the same reason); each exits after AGENT_MAX_USES requests. */
#ifndef KP_AGENT_H
#define KP_AGENT_H

#include <sys/types.h>

struct event_base;

/* In the agent: run one request, return its result (>= 0). */
typedef int (*agent_work_fn)(char *request);
/* In the queue manager: job finished with result, or -1 if the agent died. */
typedef void (*agent_done_fn)(void *job, int result);

void agent_pool_init(struct event_base *base, int max, agent_work_fn work, agent_done_fn done);
/* Hand a request to an idle agent; 0, or -1 when none is free or can be made. */
int agent_submit(const char *request, void *job);
/* Stop agents whose current request has run longer than seconds (a peer
 * that answers one byte at a time defeats every per-read timeout); their
 * jobs end as failed and are retried later. */
void agent_expire(long seconds);
/* Stop every agent that is working (shutdown after a grace period); their
 * jobs end as failed. Returns how many. */
int agent_stop_all_busy(void);
/* A child ended (from the SIGCHLD handler); returns 1 if it was an agent. */
int agent_reaped(pid_t pid);
/* Close every agent's channel and wait for the agents to exit. */
void agent_pool_stop(void);

#endif
