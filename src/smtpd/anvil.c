#include "smtpd/anvil.h"

#include <netinet/in.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define ANVIL_BUCKETS 65536

static atomic_int *counts;
struct rate {
    atomic_long window; /* when the current window started */
    atomic_long count;
};
static struct rate *rates; /* ANVIL_EVENTS * ANVIL_BUCKETS */
static uint32_t hash_key; /* random per start: bucket collisions cannot be planned */

int anvil_init(void)
{
    if (counts)
        return 0;
    void *p = mmap(NULL, sizeof(atomic_int) * ANVIL_BUCKETS, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return -1;
    counts = p;
    p = mmap(NULL, sizeof(struct rate) * ANVIL_EVENTS * ANVIL_BUCKETS, PROT_READ | PROT_WRITE,
             MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p != MAP_FAILED)
        rates = p;
    if (getrandom(&hash_key, sizeof hash_key, 0) != sizeof hash_key)
        hash_key = (uint32_t)getpid() * 2654435761u;
    return 0;
}

static unsigned bucket_of(const struct sockaddr_storage *ss)
{
    const unsigned char *p;
    size_t n;
    if (ss->ss_family == AF_INET) {
        p = (const unsigned char *)&((const struct sockaddr_in *)ss)->sin_addr;
        n = 4;
    } else {
        p = (const unsigned char *)&((const struct sockaddr_in6 *)ss)->sin6_addr;
        n = 16;
    }
    uint32_t h = 2166136261u ^ hash_key; /* FNV-1a, keyed */
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 16777619u;
    return h % ANVIL_BUCKETS;
}

int anvil_enter(const struct sockaddr_storage *addr, long limit)
{
    if (counts == NULL)
        return -2;
    unsigned b = bucket_of(addr);
    int now = atomic_fetch_add(&counts[b], 1) + 1;
    if (limit > 0 && now > limit) {
        atomic_fetch_sub(&counts[b], 1);
        return -1;
    }
    return (int)b;
}

void anvil_leave(int bucket)
{
    if (counts && bucket >= 0)
        atomic_fetch_sub(&counts[bucket], 1);
}

long anvil_rate(const struct sockaddr_storage *addr, enum anvil_event ev, long unit, int add)
{
    if (rates == NULL || ev >= ANVIL_EVENTS)
        return 0;
    struct rate *r = &rates[(size_t)ev * ANVIL_BUCKETS + bucket_of(addr)];
    long now = (long)time(NULL);
    long start = atomic_load(&r->window);
    /* The first worker to see the window over restarts it. */
    if (now - start >= unit && atomic_compare_exchange_strong(&r->window, &start, now))
        atomic_store(&r->count, 0);
    return atomic_fetch_add(&r->count, add) + add;
}
