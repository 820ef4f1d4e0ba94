/* fdreserve: what a worker does when it runs out of descriptors. accept()
 * failing with EMFILE leaves the connection in the listen queue, so the
 * listener stays readable and a loop that retries spins at full CPU. The
 * worker instead keeps one descriptor in reserve: it releases it, accepts
 * the waiting clients one at a time to answer them 421 (they retry
 * later, as SMTP clients do), takes the reserve back, and stops accepting
 * for a moment. */
#ifndef KP_FDRESERVE_H
#define KP_FDRESERVE_H

/* Take the reserve descriptor; -1 if even that fails. */
int fdreserve_init(void);
/* Answer up to max clients waiting on the listening socket lfd with
 * reply, using the reserve; returns how many were answered. */
int fdreserve_refuse(int lfd, const char *reply, int max);
/* 1 for accept() errors that mean "out of descriptors or memory". */
int fdreserve_is_exhaustion(int err);

#endif
