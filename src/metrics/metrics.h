/* metrics: keypost's counters, shared by every process without IPC.
 *
 * The master creates QDIR/metrics (mode 0600, owned by mail_owner) before it
 * forks and maps it shared; every smtpd worker, the queue manager and its
 * delivery agents inherit the mapping and update it with relaxed atomic
 * adds: no lock, no allocation, no system call per event. The layout is
 * fixed (struct metrics_area below), so memory is bounded whatever the
 * traffic. `keypost status` and the metrics endpoint read the same file.
 * The file is made afresh at every start: counters reset on restart, never
 * on reload. A process without the mapping (a command, a unit test) counts
 * nothing. */
#ifndef KP_METRICS_H
#define KP_METRICS_H

#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

#include "tls/trust.h"

#define METRICS_MAGIC "KPMETR02"
#define METRICS_FILE "metrics"   /* in queue_directory */
#define METRICS_MAX_LISTENERS 32
#define METRICS_LISTENER_LEN 80
#define METRICS_MAX_PROCS 512

enum metrics_listener_kind { MK_SMTPD, MK_SUBMISSION, MK_SMTPS };

/* Where in the SMTP dialogue a client was refused (Postfix's log names). */
enum metrics_stage {
    MS_CONNECT, MS_HELO, MS_STARTTLS, MS_MAIL, MS_RCPT, MS_DATA, MS_END_OF_MESSAGE, MS_OTHER,
    MS_COUNT
};
enum metrics_delivery { MD_SENT, MD_DEFERRED, MD_BOUNCED, MD_COUNT };
enum metrics_trust_status { MT_NONE, MT_TRUSTED, MT_UNTRUSTED, MT_COUNT };
#define METRICS_VIA_COUNT 5 /* enum trust_via */

/* Histogram bounds (seconds), fixed at build time. */
#define METRICS_TLS_BUCKETS 11
#define METRICS_DELIVERY_BUCKETS 12
extern const double metrics_tls_bounds[METRICS_TLS_BUCKETS];
extern const double metrics_delivery_bounds[METRICS_DELIVERY_BUCKETS];

struct metrics_hist {
    _Atomic uint64_t bucket[METRICS_DELIVERY_BUCKETS + 1]; /* per bucket, not cumulative;
                                                              the last is +Inf */
    _Atomic uint64_t sum_us;                               /* microseconds */
};

/* Recent activity for `keypost status`: 60 one-second and 60 one-minute
 * slots. Each word packs the slot's time (upper 40 bits) with its count
 * (lower 24), so a slot is claimed and counted by one compare-and-swap. */
enum metrics_recent { MR_SENT, MR_DEFERRED, MR_BOUNCED, MR_REJECTED, MR_COUNT };
#define METRICS_SLOTS 60
struct metrics_slot {
    _Atomic uint64_t w[MR_COUNT];
};

/* keypost's own certificates, noted by the master at start and reload. */
#define METRICS_MAX_CERTS 16
struct metrics_cert {
    char param[32];
    char path[224];
    int64_t not_after;       /* epoch seconds; 0: unreadable */
};

struct metrics_area {
    char magic[8];
    uint32_t size;               /* sizeof(struct metrics_area), checked by readers */
    uint32_t nlisteners;
    int64_t started;             /* epoch seconds */
    int64_t master_pid;
    char listener_name[METRICS_MAX_LISTENERS][METRICS_LISTENER_LEN];
    uint32_t listener_kind[METRICS_MAX_LISTENERS];
    int32_t listener_fd[METRICS_MAX_LISTENERS];
    /* Sessions open, per smtpd process: the master clears the slot of a
     * process that ended, so a crashed worker's sessions do not stay
     * counted. "spill" takes the rest if every slot is taken. */
    struct {
        _Atomic int32_t pid;
        _Atomic int64_t open;
    } sessions[METRICS_MAX_PROCS];
    _Atomic int64_t sessions_spill;
    _Atomic uint64_t connections[METRICS_MAX_LISTENERS];
    _Atomic uint64_t tls_handshakes_ok, tls_handshakes_failed;
    struct metrics_hist tls_seconds;
    _Atomic uint64_t trust[METRICS_VIA_COUNT][MT_COUNT];
    _Atomic uint64_t accepted;
    _Atomic uint64_t rejected[MS_COUNT];
    _Atomic uint64_t delivered[MD_COUNT];
    struct metrics_hist delivery_seconds;
    struct metrics_slot per_second[METRICS_SLOTS];
    struct metrics_slot per_minute[METRICS_SLOTS];
    uint32_t ncerts;
    struct metrics_cert certs[METRICS_MAX_CERTS];
};

/* ---- in the master ---- */
/* Make QDIR/metrics anew (O_EXCL: never an existing file or a link), give it
 * to uid/gid (when uid >= 0) and map it. 0, or -1 with err filled. */
int metrics_create(const char *qdir, int uid, int gid, char *err, size_t len);
/* Name listener i ("127.0.0.1:25"), whose socket is fd in every process,
 * for the connection counter's label. */
void metrics_set_listener(int i, int fd, const char *text, enum metrics_listener_kind kind);

/* Note the expiry of every configured certificate (smtpd_tls_cert_file,
 * smtpd_tls_chain_files, smtp_tls_cert_file, smtp_tls_chain_files), in the
 * master, which can read them, at start and after each reload. */
void metrics_note_certificates(void);
/* Call fn for each configured certificate file, in that order. */
void metrics_each_certificate(void (*fn)(const char *param, const char *path, void *arg),
                              void *arg);

/* A child process ended (in the master, when it reaps it). */
void metrics_process_gone(pid_t pid);

/* ---- in any process: each is a few atomic adds, or nothing unmapped ---- */
void metrics_connection(int listen_fd);     /* a connection was accepted there */
void metrics_session_end(void);             /* ... and is gone */
void metrics_tls_handshake(int ok, double seconds);
void metrics_trust(enum trust_via via, int has_cert, int trusted);
void metrics_accepted(void);
void metrics_reject(enum metrics_stage stage);
/* The stage of a Postfix log word: "RCPT", "MAIL", "END-OF-MESSAGE", ... */
enum metrics_stage metrics_stage_of(const char *cmd);
/* A recipient's result; seconds: since the message arrived. */
void metrics_delivery(enum metrics_delivery what, double seconds);

/* ---- readers ---- */
/* Map QDIR/metrics read-only (not following links). NULL with errno. */
const struct metrics_area *metrics_open(const char *qdir);
void metrics_close(const struct metrics_area *a);
/* The area this process updates (NULL when none). */
const struct metrics_area *metrics_area(void);
/* Events of kind k in the last `seconds` (60: the per-second slots; 3600:
 * the per-minute slots, which cover 59 to 60 whole minutes). */
uint64_t metrics_recent(const struct metrics_area *a, enum metrics_recent k, int seconds,
                        time_t now);
/* Sessions open now, in all processes. */
int64_t metrics_sessions_open(const struct metrics_area *a);
/* A consistent-enough copy of a histogram: counts per bucket, total, sum. */
uint64_t metrics_hist_read(const struct metrics_hist *h, int nbuckets, uint64_t *counts,
                           double *sum);

/* Label texts. */
const char *metrics_stage_name(enum metrics_stage s);
const char *metrics_delivery_name(enum metrics_delivery d);
const char *metrics_trust_status_name(enum metrics_trust_status s);
const char *metrics_listener_kind_name(enum metrics_listener_kind k);

/* For tests: use a private anonymous area in this process. */
int metrics_init_anonymous(void);

#endif
