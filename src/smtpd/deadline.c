#include "smtpd/deadline.h"

#include <time.h>

void deadline_init(struct deadline *d, double now, long session_seconds, long timeout,
                   int per_request, long min_rate)
{
    d->session_end = session_seconds > 0 ? now + (double)session_seconds : 0;
    d->request_end = 0;
    d->timeout = (double)timeout;
    d->min_rate = min_rate > 0 ? (double)min_rate : 0;
    d->per_request = per_request;
}

void deadline_request_start(struct deadline *d, double now)
{
    if (d->per_request && d->request_end == 0)
        d->request_end = now + d->timeout;
}

void deadline_data(struct deadline *d, double now, size_t bytes)
{
    if (d->request_end == 0 || d->min_rate == 0)
        return;
    double end = d->request_end + (double)bytes / d->min_rate;
    d->request_end = end < now + d->timeout ? end : now + d->timeout;
}

void deadline_request_end(struct deadline *d)
{
    d->request_end = 0;
}

void deadline_request_wait(struct deadline *d, double now)
{
    if (d->request_end != 0)
        d->request_end = now + d->timeout;
}

double deadline_next(const struct deadline *d)
{
    if (d->session_end == 0)
        return d->request_end;
    if (d->request_end == 0)
        return d->session_end;
    return d->request_end < d->session_end ? d->request_end : d->session_end;
}

const char *deadline_expired(const struct deadline *d, double now)
{
    if (d->session_end != 0 && now >= d->session_end)
        return "session";
    if (d->request_end != 0 && now >= d->request_end)
        return "request";
    return 0;
}

double deadline_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}
