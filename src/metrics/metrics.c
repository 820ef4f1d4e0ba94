/* metrics: the shared counter area (see metrics.h). */
#include "metrics/metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util/strutil.h"

const double metrics_tls_bounds[METRICS_TLS_BUCKETS] = {
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
const double metrics_delivery_bounds[METRICS_DELIVERY_BUCKETS] = {
    0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 14400, 86400};

static struct metrics_area *A; /* this process's mapping, or NULL */
static _Atomic int64_t *my_sessions; /* this process's slot, claimed on first use */

#define RELAXED memory_order_relaxed
#define ADD(field, n) atomic_fetch_add_explicit(&(field), (n), RELAXED)

/* ---- creating ------------------------------------------------------------ */

static void stamp(struct metrics_area *a)
{
    memcpy(a->magic, METRICS_MAGIC, sizeof a->magic);
    a->size = (uint32_t)sizeof *a;
    a->started = (int64_t)time(NULL);
    a->master_pid = (int64_t)getpid();
}

int metrics_create(const char *qdir, int uid, int gid, char *err, size_t len)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", qdir, METRICS_FILE);
    /* The queue belongs to mail_owner: remove whatever name is there and
     * create a new file, so root never opens a file or link planted there. */
    if (unlink(path) < 0 && errno != ENOENT) {
        snprintf(err, len, "cannot remove the old %s: %s", path, strerror(errno));
        return -1;
    }
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0 || (uid >= 0 && fchown(fd, (uid_t)uid, (gid_t)gid) < 0) ||
        ftruncate(fd, (off_t)sizeof(struct metrics_area)) < 0) {
        snprintf(err, len, "cannot create %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    void *p = mmap(NULL, sizeof(struct metrics_area), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED) {
        snprintf(err, len, "cannot map %s: %s", path, strerror(errno));
        return -1;
    }
    if (A)
        munmap(A, sizeof *A);
    A = p;
    stamp(A);
    return 0;
}

int metrics_init_anonymous(void)
{
    void *p = mmap(NULL, sizeof(struct metrics_area), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return -1;
    if (A)
        munmap(A, sizeof *A);
    A = p;
    my_sessions = NULL;
    stamp(A);
    return 0;
}

void metrics_set_listener(int i, int fd, const char *text, enum metrics_listener_kind kind)
{
    if (A == NULL || i < 0 || i >= METRICS_MAX_LISTENERS)
        return;
    str_copy(A->listener_name[i], text, METRICS_LISTENER_LEN);
    A->listener_kind[i] = (uint32_t)kind;
    A->listener_fd[i] = fd;
    if ((uint32_t)i >= A->nlisteners)
        A->nlisteners = (uint32_t)i + 1;
}

const struct metrics_area *metrics_area(void)
{
    return A;
}

/* ---- updating ------------------------------------------------------------ */

#define SLOT_COUNT_BITS 24
#define SLOT_COUNT_MASK ((1ull << SLOT_COUNT_BITS) - 1)

/* Count one event in the slot for time unit t (a second or a minute). A
 * slot still holding an older unit is claimed with a count of 1. */
static void slot_add(struct metrics_slot *ring, enum metrics_recent k, uint64_t t)
{
    _Atomic uint64_t *w = &ring[t % METRICS_SLOTS].w[k];
    uint64_t old = atomic_load_explicit(w, RELAXED);
    for (;;) {
        uint64_t next;
        if (old >> SLOT_COUNT_BITS != t)
            next = t << SLOT_COUNT_BITS | 1;
        else if ((old & SLOT_COUNT_MASK) == SLOT_COUNT_MASK)
            return; /* 16 million in one second: the count saturates */
        else
            next = old + 1;
        if (atomic_compare_exchange_weak_explicit(w, &old, next, RELAXED, RELAXED))
            return;
    }
}

static void recent_add(enum metrics_recent k)
{
    uint64_t now = (uint64_t)time(NULL);
    slot_add(A->per_second, k, now);
    slot_add(A->per_minute, k, now / 60);
}

static void hist_add(struct metrics_hist *h, const double *bounds, int n, double seconds)
{
    if (seconds < 0)
        seconds = 0;
    int i = 0;
    while (i < n && seconds > bounds[i])
        i++;
    ADD(h->bucket[i], 1);
    ADD(h->sum_us, (uint64_t)(seconds * 1e6 + 0.5));
}

static _Atomic int64_t *session_slot(void)
{
    if (my_sessions)
        return my_sessions;
    int32_t pid = (int32_t)getpid();
    for (int i = 0; i < METRICS_MAX_PROCS; i++) {
        int32_t free_slot = 0;
        if (atomic_compare_exchange_strong(&A->sessions[i].pid, &free_slot, pid)) {
            atomic_store(&A->sessions[i].open, 0);
            return my_sessions = &A->sessions[i].open;
        }
    }
    return &A->sessions_spill;
}

void metrics_process_gone(pid_t pid)
{
    if (A == NULL)
        return;
    for (int i = 0; i < METRICS_MAX_PROCS; i++)
        if (atomic_load(&A->sessions[i].pid) == (int32_t)pid) {
            atomic_store(&A->sessions[i].open, 0);
            atomic_store(&A->sessions[i].pid, 0);
        }
}

int64_t metrics_sessions_open(const struct metrics_area *a)
{
    int64_t n = atomic_load_explicit(&a->sessions_spill, RELAXED);
    for (int i = 0; i < METRICS_MAX_PROCS; i++)
        if (atomic_load_explicit(&a->sessions[i].pid, RELAXED))
            n += atomic_load_explicit(&a->sessions[i].open, RELAXED);
    return n > 0 ? n : 0;
}

void metrics_connection(int listen_fd)
{
    if (A == NULL)
        return;
    ADD(*session_slot(), 1);
    for (uint32_t i = 0; i < A->nlisteners; i++)
        if (A->listener_fd[i] == listen_fd) {
            ADD(A->connections[i], 1);
            return;
        }
}

void metrics_session_end(void)
{
    if (A)
        atomic_fetch_sub_explicit(session_slot(), 1, RELAXED);
}

void metrics_tls_handshake(int ok, double seconds)
{
    if (A == NULL)
        return;
    if (!ok) {
        ADD(A->tls_handshakes_failed, 1);
        return;
    }
    ADD(A->tls_handshakes_ok, 1);
    hist_add(&A->tls_seconds, metrics_tls_bounds, METRICS_TLS_BUCKETS, seconds);
}

void metrics_trust(enum trust_via via, int has_cert, int trusted)
{
    if (A == NULL || (int)via < 0 || (int)via >= METRICS_VIA_COUNT)
        return;
    enum metrics_trust_status st = !has_cert ? MT_NONE : trusted ? MT_TRUSTED : MT_UNTRUSTED;
    ADD(A->trust[via][st], 1);
}

void metrics_accepted(void)
{
    if (A)
        ADD(A->accepted, 1);
}

void metrics_reject(enum metrics_stage stage)
{
    if (A == NULL)
        return;
    ADD(A->rejected[(unsigned)stage < MS_COUNT ? stage : MS_OTHER], 1);
    recent_add(MR_REJECTED);
}

void metrics_delivery(enum metrics_delivery what, double seconds)
{
    if (A == NULL || (unsigned)what >= MD_COUNT)
        return;
    ADD(A->delivered[what], 1);
    static const enum metrics_recent recent[MD_COUNT] = {MR_SENT, MR_DEFERRED, MR_BOUNCED};
    recent_add(recent[what]);
    if (what == MD_SENT)
        hist_add(&A->delivery_seconds, metrics_delivery_bounds, METRICS_DELIVERY_BUCKETS,
                 seconds);
}

/* ---- names --------------------------------------------------------------- */

static const char *const stage_names[MS_COUNT] = {
    "CONNECT", "HELO", "STARTTLS", "MAIL", "RCPT", "DATA", "END-OF-MESSAGE", "other"};

enum metrics_stage metrics_stage_of(const char *cmd)
{
    if (strcasecmp(cmd, "EHLO") == 0)
        return MS_HELO;
    for (int i = 0; i < MS_OTHER; i++)
        if (strcasecmp(cmd, stage_names[i]) == 0)
            return (enum metrics_stage)i;
    return MS_OTHER;
}

const char *metrics_stage_name(enum metrics_stage s)
{
    return (unsigned)s < MS_COUNT ? stage_names[s] : "other";
}

const char *metrics_delivery_name(enum metrics_delivery d)
{
    static const char *const names[MD_COUNT] = {"sent", "deferred", "bounced"};
    return (unsigned)d < MD_COUNT ? names[d] : "unknown";
}

const char *metrics_trust_status_name(enum metrics_trust_status s)
{
    static const char *const names[MT_COUNT] = {"none", "trusted", "untrusted"};
    return (unsigned)s < MT_COUNT ? names[s] : "unknown";
}

const char *metrics_listener_kind_name(enum metrics_listener_kind k)
{
    static const char *const names[] = {"smtpd", "submission", "smtps"};
    return (unsigned)k < 3 ? names[k] : "unknown";
}

/* ---- reading ------------------------------------------------------------- */

const struct metrics_area *metrics_open(const char *qdir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", qdir, METRICS_FILE);
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return NULL;
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
        st.st_size != (off_t)sizeof(struct metrics_area)) {
        close(fd);
        errno = EBADMSG;
        return NULL;
    }
    void *p = mmap(NULL, sizeof(struct metrics_area), PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED)
        return NULL;
    const struct metrics_area *a = p;
    if (memcmp(a->magic, METRICS_MAGIC, sizeof a->magic) != 0 || a->size != sizeof *a ||
        a->nlisteners > METRICS_MAX_LISTENERS) {
        munmap(p, sizeof *a);
        errno = EBADMSG;
        return NULL;
    }
    return a;
}

void metrics_close(const struct metrics_area *a)
{
    if (a && a != A)
        munmap((void *)a, sizeof *a);
}

uint64_t metrics_recent(const struct metrics_area *a, enum metrics_recent k, int seconds,
                        time_t now)
{
    const struct metrics_slot *ring = seconds <= 60 ? a->per_second : a->per_minute;
    uint64_t unit = seconds <= 60 ? 1 : 60;
    uint64_t cur = (uint64_t)now / unit;
    uint64_t total = 0;
    for (int i = 0; i < METRICS_SLOTS; i++) {
        uint64_t w = atomic_load_explicit(&ring[i].w[k], RELAXED);
        uint64_t t = w >> SLOT_COUNT_BITS;
        if (t <= cur && cur - t < METRICS_SLOTS)
            total += w & SLOT_COUNT_MASK;
    }
    return total;
}

uint64_t metrics_hist_read(const struct metrics_hist *h, int nbuckets, uint64_t *counts,
                           double *sum)
{
    uint64_t total = 0;
    for (int i = 0; i <= nbuckets; i++) {
        counts[i] = atomic_load_explicit(&h->bucket[i], RELAXED);
        total += counts[i];
    }
    *sum = (double)atomic_load_explicit(&h->sum_us, RELAXED) / 1e6;
    return total;
}
