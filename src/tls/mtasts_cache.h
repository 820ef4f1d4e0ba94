/* mtasts_cache: fetched MTA-STS policies on disk, one file per policy
 * domain in $queue_directory/mta-sts (made by the delivery process, as
 * mail_owner). A file holds the TXT id, the fetch time and the policy
 * text as served; it is re-parsed when read, so a file that was damaged
 * is never used. Writes are durable: a temporary name opened with O_EXCL,
 * fsync, rename, fsync of the directory; a crash leaves the old policy or
 * the new one. Links and other non-regular files are refused. */
#ifndef KP_MTASTS_CACHE_H
#define KP_MTASTS_CACHE_H

#include <stddef.h>

#include "tls/mtasts.h"

/* 1 with out filled (expired or not: the caller decides), 0 when nothing is
 * cached, -1 with err when the file cannot be read or does not parse. */
int mtasts_cache_load(const char *domain, struct mtasts_policy *out, char *err, size_t errlen);
/* Store the policy text fetched under id at time fetched. -1 with err. */
int mtasts_cache_store(const char *domain, const char *id, long fetched, const char *text,
                       size_t len, char *err, size_t errlen);
/* The policy is still usable at now (fetched + max_age not passed). */
int mtasts_cache_fresh(const struct mtasts_policy *p, long now);

#endif
