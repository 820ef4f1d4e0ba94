/* smtpblast: an SMTP load generator for keypost's benchmarks.
 *
 * One libevent loop drives N concurrent sessions over non-blocking sockets,
 * with OpenSSL for STARTTLS and implicit TLS (optionally with a client
 * certificate). Each session sends M messages of a given size, then QUIT,
 * and its slot reconnects until a time or message bound is reached. Messages
 * go as fast as possible or at a fixed total rate; with --pipelining, MAIL,
 * RCPT and DATA go in one write when the server offers PIPELINING.
 *
 * --hold S first opens every session up to the ready point (after the final
 * EHLO), holds them idle for S seconds (the orchestrator samples the server's
 * memory meanwhile; --ready-file tells it when), then runs the load on the
 * same sessions.
 *
 * Output: a text report on stdout (or stderr with --json -), and JSON with
 * --json FILE: messages/s, handshakes/s, reply latency percentiles, errors by
 * reply code and kind, and the generator's own CPU time.
 *
 * Build: cc -O2 -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror bench/smtpblast.c \
 *        -o build/smtpblast -levent_openssl -levent_core -lssl -lcrypto
 */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

/* ---- time and histograms ------------------------------------------------ */

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Log-linear buckets: exact below 64 us, then 32 sub-buckets per power of
 * two (about 3% resolution), up to 2^40 us. */
#define H_SUB 32
#define H_LIN 64
#define H_MAXEXP 40
#define H_BUCKETS (H_LIN + (H_MAXEXP - 6 + 1) * H_SUB)

struct hist {
    uint64_t count, sum, max;
    uint64_t b[H_BUCKETS];
};

static int h_index(uint64_t v)
{
    if (v < H_LIN)
        return (int)v;
    int e = 63 - __builtin_clzll(v); /* >= 6 */
    if (e > H_MAXEXP)
        return H_BUCKETS - 1;
    int sub = (int)((v >> (e - 5)) & (H_SUB - 1));
    return H_LIN + (e - 6) * H_SUB + sub;
}

static uint64_t h_value(int i) /* the middle of bucket i */
{
    if (i < H_LIN)
        return (uint64_t)i;
    int e = (i - H_LIN) / H_SUB + 6, sub = (i - H_LIN) % H_SUB;
    uint64_t lo = ((uint64_t)(H_SUB + sub)) << (e - 5);
    uint64_t width = 1ull << (e - 5);
    return lo + width / 2;
}

static void h_add(struct hist *h, uint64_t v)
{
    h->count++;
    h->sum += v;
    if (v > h->max)
        h->max = v;
    h->b[h_index(v)]++;
}

static uint64_t h_pct(const struct hist *h, double p)
{
    if (h->count == 0)
        return 0;
    uint64_t want = (uint64_t)(p / 100.0 * (double)h->count + 0.5);
    if (want < 1)
        want = 1;
    uint64_t seen = 0;
    for (int i = 0; i < H_BUCKETS; i++) {
        seen += h->b[i];
        if (seen >= want) {
            uint64_t v = h_value(i);
            return v > h->max ? h->max : v;
        }
    }
    return h->max;
}

/* ---- options and global state ------------------------------------------- */

enum tlsmode { TM_PLAIN, TM_STARTTLS, TM_SMTPS };
enum phase { P_RAMP, P_HOLD, P_LOAD, P_DRAIN, P_DONE };
enum cmd { C_BANNER, C_EHLO, C_STARTTLS, C_MAIL, C_RCPT, C_DATA, C_DOT, C_RSET, C_QUIT };
enum sstate { S_FREE, S_CONNECTING, S_HANDSHAKE, S_SMTP, S_READY, S_RATEWAIT, S_QUITTING };
enum ekind { E_CONNECT, E_TLS, E_TIMEOUT, E_EOF, E_IO, E_PROTOCOL, E_REFUSED_SESSION, E_KINDS };
static const char *ekind_name[E_KINDS] = {"connect", "tls", "timeout", "eof", "io",
                                          "protocol", "session_refused"};

#define MAX_RCPT 16
#define EXPQ 32

struct session {
    int slot;
    int fd;
    unsigned gen;
    SSL *ssl;
    struct event *rev, *wev;
    enum sstate state;
    int in_setup;     /* counted in G.in_setup: connect .. first ready */
    int tls_on;
    int want_write;   /* TLS wants the socket writable */
    int cap_pipelining, cap_starttls;
    int ehlo_pipelining, ehlo_starttls; /* collected while reading the EHLO reply */
    unsigned char exp[EXPQ];
    uint64_t exp_t[EXPQ];
    int exp_head, exp_n;
    /* the mail transaction */
    int in_tx, tx_step, tx_mail_ok, tx_rcpt_ok, tx_failed, tx_nrcpt;
    uint64_t tx_id;
    int msgs; /* accepted on this connection */
    uint64_t t_conn, t_tls, t_wait;
    int waiting;
    struct session *rnext;
    size_t inlen, outlen, outoff;
    const char *seg;
    size_t seglen, segoff;
    char in[2048];
    char out[2048];
};

static struct {
    /* options */
    const char *host, *port;
    int nsess, per_session, size, nrcpt, users;
    enum tlsmode tls;
    const char *cert, *key, *helo, *domain, *sender, *json, *ready_file, *label;
    int pipelining, tls_version, verbose, connect_burst;
    double rate, duration, hold, stall, timeout;
    long long total;
    /* state */
    struct event_base *base;
    SSL_CTX *ctx;
    struct sockaddr_storage addr;
    socklen_t alen;
    struct session *S;
    char *body;
    size_t bodylen;
    enum phase phase;
    int in_setup, live, ready, ramp_failed, held;
    int *launchq, lq_head, lq_n; /* slots waiting to connect */
    int *retryq, rq_n;           /* slots to reconnect at the next tick */
    struct session *rq_first, *rq_last; /* waiting for the rate limiter */
    uint64_t next_send, interval;
    struct event *tick, *deadline_ev, *hold_ev, *rate_ev, *drain_ev, *sigint_ev;
    uint64_t t_start, t_ramp_done, t_load, t_last_work, t_end, t_progress;
    long long msgs_started, msgs_ok, msgs_failed, sessions, handshakes, bytes;
    long long load_handshakes0, load_sessions0;
    long long codes[600];
    long long ekinds[E_KINDS];
    struct hist h_reply, h_data, h_banner, h_tls;
    struct rusage ru_load, ru_end;
    char err_sample[256];
} G;

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "smtpblast: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(2);
}

static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "smtpblast: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
}

static void ready_file(const char *fmt, ...)
{
    if (G.ready_file == NULL)
        return;
    FILE *f = fopen(G.ready_file, "a");
    if (f == NULL)
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fputc('\n', f);
    fclose(f);
}

/* ---- forward declarations ----------------------------------------------- */

static void drive(struct session *s);
static void kick(struct session *s);
static void next_action(struct session *s);
static void close_session(struct session *s, int kind);
static void begin_hold(void);
static void begin_drain(void);
static void launch_pump(void);
static void check_done(void);

/* ---- output ------------------------------------------------------------- */

static void out_add(struct session *s, const char *fmt, ...)
{
    if (s->outoff > 0 && s->outoff == s->outlen)
        s->outoff = s->outlen = 0;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(s->out + s->outlen, sizeof s->out - s->outlen, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof s->out - s->outlen)
        die("internal: output buffer overflow");
    s->outlen += (size_t)n;
}

static void expect(struct session *s, enum cmd c)
{
    if (s->exp_n >= EXPQ)
        die("internal: too many pipelined commands");
    int i = (s->exp_head + s->exp_n++) % EXPQ;
    s->exp[i] = (unsigned char)c;
    s->exp_t[i] = 0; /* stamped when the command has been written out */
    s->waiting = 1;
    s->t_wait = now_us();
}

static int out_pending(const struct session *s)
{
    return s->outoff < s->outlen || (s->seg && s->segoff < s->seglen);
}

static void stamp_sent(struct session *s)
{
    uint64_t t = now_us();
    for (int k = 0; k < s->exp_n; k++) {
        int i = (s->exp_head + k) % EXPQ;
        if (s->exp_t[i] == 0)
            s->exp_t[i] = t;
    }
    s->t_wait = t;
}

static const char *ssl_err(void)
{
    unsigned long e = ERR_get_error();
    static char buf[256];
    if (e == 0)
        return "no OpenSSL error";
    ERR_error_string_n(e, buf, sizeof buf);
    ERR_clear_error();
    return buf;
}

static void note_error(const char *fmt, ...)
{
    if (G.err_sample[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(G.err_sample, sizeof G.err_sample, fmt, ap);
    va_end(ap);
}

/* Write what is pending. Returns -1 when the session was closed. */
static int flush(struct session *s)
{
    if (!out_pending(s))
        return 0;
    while (out_pending(s)) {
        if (s->ssl == NULL || !s->tls_on) {
            struct iovec iov[2];
            int n = 0;
            if (s->outoff < s->outlen)
                iov[n++] = (struct iovec){s->out + s->outoff, s->outlen - s->outoff};
            if (s->seg && s->segoff < s->seglen)
                iov[n++] = (struct iovec){(void *)(s->seg + s->segoff), s->seglen - s->segoff};
            ssize_t w = writev(s->fd, iov, n);
            if (w < 0) {
                if (errno == EAGAIN || errno == EINTR)
                    return 0;
                note_error("write: %s", strerror(errno));
                close_session(s, E_IO);
                return -1;
            }
            size_t left = (size_t)w;
            G.bytes += w;
            size_t a = s->outlen - s->outoff;
            if (left >= a) {
                s->outoff = s->outlen;
                left -= a;
                if (s->seg)
                    s->segoff += left;
            } else
                s->outoff += left;
        } else {
            const char *p;
            size_t n;
            if (s->outoff < s->outlen) {
                p = s->out + s->outoff;
                n = s->outlen - s->outoff;
            } else {
                p = s->seg + s->segoff;
                n = s->seglen - s->segoff;
            }
            ERR_clear_error();
            int w = SSL_write(s->ssl, p, (int)(n > 65536 ? 65536 : n));
            if (w <= 0) {
                int e = SSL_get_error(s->ssl, w);
                if (e == SSL_ERROR_WANT_WRITE) {
                    s->want_write = 1;
                    return 0;
                }
                if (e == SSL_ERROR_WANT_READ)
                    return 0;
                note_error("SSL_write: %s", ssl_err());
                close_session(s, E_IO);
                return -1;
            }
            s->want_write = 0;
            G.bytes += w;
            if (s->outoff < s->outlen)
                s->outoff += (size_t)w;
            else
                s->segoff += (size_t)w;
        }
    }
    s->outoff = s->outlen = 0;
    s->seg = NULL;
    s->seglen = s->segoff = 0;
    stamp_sent(s);
    return 0;
}

static void kick(struct session *s)
{
    if (s->fd < 0)
        return;
    if (flush(s) < 0)
        return;
    if (out_pending(s) || s->want_write || s->state == S_CONNECTING)
        event_add(s->wev, NULL);
}

/* ---- session lifetime --------------------------------------------------- */

static void setup_done(struct session *s, int ok)
{
    if (!s->in_setup)
        return;
    s->in_setup = 0;
    G.in_setup--;
    if (ok) {
        G.ready++;
        G.t_progress = now_us();
    } else if (G.phase == P_RAMP)
        G.ramp_failed++;
}

static void close_session(struct session *s, int kind)
{
    if (s->fd < 0)
        return;
    int was_setup = s->in_setup;
    if (kind >= 0) {
        G.ekinds[kind]++;
        if (s->in_tx)
            G.msgs_failed++;
    }
    setup_done(s, 0);
    if (s->ssl) {
        if (kind < 0 && s->tls_on)
            SSL_shutdown(s->ssl);
        SSL_free(s->ssl);
        s->ssl = NULL;
    }
    event_free(s->rev);
    event_free(s->wev);
    s->rev = s->wev = NULL;
    close(s->fd);
    s->fd = -1;
    s->gen++;
    if (s->state == S_RATEWAIT) { /* unlink from the rate queue */
        struct session **pp = &G.rq_first, *prev = NULL;
        while (*pp && *pp != s) {
            prev = *pp;
            pp = &(*pp)->rnext;
        }
        if (*pp) {
            *pp = s->rnext;
            if (G.rq_last == s)
                G.rq_last = prev;
        }
    }
    s->state = S_FREE;
    s->exp_n = 0;
    s->in_tx = 0;
    G.live--;
    if (G.phase == P_LOAD) {
        /* the slot goes on with a new connection; after a failed attempt
         * only at the next tick, so that a dead server is not hammered */
        if (kind >= 0 && was_setup)
            G.retryq[G.rq_n++] = s->slot;
        else {
            G.launchq[(G.lq_head + G.lq_n++) % G.nsess] = s->slot;
        }
    }
    launch_pump();
    if (G.phase == P_RAMP && G.ready + G.ramp_failed >= G.nsess)
        begin_hold();
    check_done();
}

static void on_event(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    drive(arg);
}

static void slot_start(struct session *s)
{
    int fd = socket(G.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        note_error("socket: %s", strerror(errno));
        G.ekinds[E_CONNECT]++;
        if (G.phase == P_LOAD)
            G.retryq[G.rq_n++] = s->slot;
        else if (G.phase == P_RAMP)
            G.ramp_failed++;
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    s->fd = fd;
    s->rev = event_new(G.base, fd, EV_READ | EV_PERSIST, on_event, s);
    s->wev = event_new(G.base, fd, EV_WRITE, on_event, s);
    s->state = S_CONNECTING;
    s->in_setup = 1;
    G.in_setup++;
    G.live++;
    s->tls_on = 0;
    s->want_write = 0;
    s->cap_pipelining = s->cap_starttls = 0;
    s->exp_n = s->exp_head = 0;
    s->inlen = s->outlen = s->outoff = 0;
    s->seg = NULL;
    s->in_tx = 0;
    s->msgs = 0;
    s->t_conn = now_us();
    s->t_wait = s->t_conn;
    s->waiting = 1;
    G.sessions++;
    if (connect(fd, (struct sockaddr *)&G.addr, G.alen) < 0 && errno != EINPROGRESS) {
        note_error("connect: %s", strerror(errno));
        close_session(s, E_CONNECT);
        return;
    }
    event_add(s->rev, NULL);
    event_add(s->wev, NULL);
}

static void launch_pump(void)
{
    static int pumping; /* a connect that fails at once must not recurse */
    if (pumping)
        return;
    pumping = 1;
    while (G.lq_n > 0 && (G.phase == P_RAMP || G.phase == P_LOAD) &&
           (G.connect_burst <= 0 || G.in_setup < G.connect_burst)) {
        int slot = G.launchq[G.lq_head];
        G.lq_head = (G.lq_head + 1) % G.nsess;
        G.lq_n--;
        slot_start(&G.S[slot]);
    }
    pumping = 0;
}

static void quit(struct session *s)
{
    s->state = S_QUITTING;
    out_add(s, "QUIT\r\n");
    expect(s, C_QUIT);
}

/* ---- TLS ----------------------------------------------------------------- */

static void tls_done(struct session *s);

static void tls_step(struct session *s)
{
    ERR_clear_error();
    int r = SSL_do_handshake(s->ssl);
    if (r == 1) {
        s->want_write = 0;
        tls_done(s);
        return;
    }
    int e = SSL_get_error(s->ssl, r);
    if (e == SSL_ERROR_WANT_READ) {
        s->want_write = 0;
        return;
    }
    if (e == SSL_ERROR_WANT_WRITE) {
        s->want_write = 1;
        event_add(s->wev, NULL);
        return;
    }
    note_error("TLS handshake: %s", e == SSL_ERROR_SSL ? ssl_err() : "connection closed");
    close_session(s, E_TLS);
}

static void tls_start(struct session *s)
{
    s->ssl = SSL_new(G.ctx);
    if (s->ssl == NULL)
        die("SSL_new: %s", ssl_err());
    SSL_set_fd(s->ssl, s->fd);
    SSL_set_connect_state(s->ssl);
    s->tls_on = 1;
    s->state = S_HANDSHAKE;
    s->t_tls = now_us();
    s->t_wait = s->t_tls;
    s->waiting = 1;
    s->inlen = 0;
    tls_step(s);
}

static void send_ehlo(struct session *s)
{
    s->ehlo_pipelining = s->ehlo_starttls = 0;
    out_add(s, "EHLO %s\r\n", G.helo);
    expect(s, C_EHLO);
}

static void tls_done(struct session *s)
{
    uint64_t t = now_us();
    h_add(&G.h_tls, t - s->t_tls);
    G.handshakes++;
    G.t_last_work = t;
    s->state = S_SMTP;
    if (G.tls == TM_SMTPS)
        expect(s, C_BANNER), s->exp_t[(s->exp_head + s->exp_n - 1) % EXPQ] = s->t_conn;
    else
        send_ehlo(s);
}

/* ---- the mail transaction ---------------------------------------------- */

static void tx_send_step(struct session *s)
{
    if (s->tx_step == 0) {
        out_add(s, "MAIL FROM:<%s> SIZE=%zu\r\n", G.sender, G.bodylen + 256);
        expect(s, C_MAIL);
    } else if (s->tx_step <= s->tx_nrcpt) {
        int u = (int)((s->tx_id + (uint64_t)s->tx_step - 1) % (uint64_t)G.users);
        out_add(s, "RCPT TO:<user%d@%s>\r\n", u, G.domain);
        expect(s, C_RCPT);
    } else {
        out_add(s, "DATA\r\n");
        expect(s, C_DATA);
    }
    s->tx_step++;
}

static void begin_message(struct session *s)
{
    s->state = S_SMTP;
    s->in_tx = 1;
    s->tx_step = 0;
    s->tx_mail_ok = s->tx_rcpt_ok = s->tx_failed = 0;
    s->tx_nrcpt = G.nrcpt;
    s->tx_id = (uint64_t)G.msgs_started++;
    if (G.pipelining && s->cap_pipelining) {
        while (s->tx_step <= s->tx_nrcpt + 1)
            tx_send_step(s);
    } else
        tx_send_step(s);
    if (G.total > 0 && G.msgs_started >= G.total)
        begin_drain();
}

static void send_body(struct session *s)
{
    static char date[64];
    if (date[0] == '\0') {
        time_t t = time(NULL);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", &tm);
    }
    out_add(s,
            "From: <%s>\r\nTo: <user%d@%s>\r\nSubject: smtpblast message %" PRIu64
            "\r\nDate: %s\r\nMessage-ID: <%" PRIu64 ".%d.%ld@smtpblast.test>\r\n\r\n",
            G.sender, (int)(s->tx_id % (uint64_t)G.users), G.domain, s->tx_id, date, s->tx_id,
            s->slot, (long)getpid());
    s->seg = G.body;
    s->seglen = G.bodylen;
    s->segoff = 0;
    expect(s, C_DOT);
}

static void want_message(struct session *s)
{
    if (G.rate <= 0) {
        begin_message(s);
        return;
    }
    uint64_t t = now_us();
    if (G.rq_first == NULL && t >= G.next_send) {
        if (G.next_send + 1000000 < t) /* do not burst to catch up after a stall */
            G.next_send = t;
        G.next_send += G.interval;
        begin_message(s);
        return;
    }
    s->state = S_RATEWAIT;
    s->rnext = NULL;
    if (G.rq_last)
        G.rq_last->rnext = s;
    else
        G.rq_first = s;
    G.rq_last = s;
    if (!evtimer_pending(G.rate_ev, NULL)) {
        uint64_t d = G.next_send > t ? G.next_send - t : 0;
        struct timeval tv = {(time_t)(d / 1000000), (suseconds_t)(d % 1000000)};
        evtimer_add(G.rate_ev, &tv);
    }
}

static void on_rate(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    uint64_t t = now_us();
    while (G.rq_first && t >= G.next_send) {
        struct session *s = G.rq_first;
        G.rq_first = s->rnext;
        if (G.rq_first == NULL)
            G.rq_last = NULL;
        if (G.next_send + 1000000 < t)
            G.next_send = t;
        G.next_send += G.interval;
        if (G.phase == P_LOAD) {
            begin_message(s);
            kick(s);
        } else {
            quit(s);
            kick(s);
        }
    }
    if (G.rq_first) {
        uint64_t d = G.next_send > t ? G.next_send - t : 0;
        struct timeval tv = {(time_t)(d / 1000000), (suseconds_t)(d % 1000000)};
        evtimer_add(G.rate_ev, &tv);
    }
}

/* What a session does once it has nothing outstanding. */
static void next_action(struct session *s)
{
    s->waiting = 0;
    s->state = S_READY;
    if (s->in_setup)
        setup_done(s, 1);
    switch (G.phase) {
    case P_RAMP:
        if (G.ready + G.ramp_failed >= G.nsess)
            begin_hold();
        launch_pump();
        return;
    case P_HOLD:
        return;
    case P_LOAD:
        if (G.per_session > 0 && s->msgs >= G.per_session)
            quit(s);
        else
            want_message(s);
        launch_pump();
        return;
    default:
        quit(s);
        return;
    }
}

/* ---- replies ------------------------------------------------------------- */

static void reply_error(int code)
{
    if (code >= 0 && code < 600)
        G.codes[code]++;
}

static void handle_reply(struct session *s, int code, const char *text)
{
    if (s->exp_n == 0) {
        note_error("unexpected reply: %d %s", code, text);
        close_session(s, E_PROTOCOL);
        return;
    }
    enum cmd c = (enum cmd)s->exp[s->exp_head];
    uint64_t sent = s->exp_t[s->exp_head];
    s->exp_head = (s->exp_head + 1) % EXPQ;
    s->exp_n--;
    uint64_t t = now_us();
    if (c == C_BANNER)
        h_add(&G.h_banner, t - (sent ? sent : s->t_conn));
    else
        h_add(&G.h_reply, sent && t > sent ? t - sent : 0);
    s->t_wait = t;
    int cls = code / 100;

    switch (c) {
    case C_BANNER:
        if (code != 220) {
            reply_error(code);
            note_error("banner: %d %s", code, text);
            if (code == 421 || code == 554) {
                close_session(s, E_REFUSED_SESSION);
                return;
            }
            quit(s);
            return;
        }
        send_ehlo(s);
        return;
    case C_EHLO:
        if (code != 250) {
            reply_error(code);
            note_error("EHLO: %d %s", code, text);
            if (code == 421) {
                close_session(s, E_REFUSED_SESSION);
                return;
            }
            quit(s);
            return;
        }
        s->cap_pipelining = s->ehlo_pipelining;
        s->cap_starttls = s->ehlo_starttls;
        if (G.tls == TM_STARTTLS && !s->tls_on) {
            if (!s->cap_starttls) {
                note_error("server does not offer STARTTLS");
                G.ekinds[E_TLS]++;
                quit(s);
                return;
            }
            out_add(s, "STARTTLS\r\n");
            expect(s, C_STARTTLS);
            return;
        }
        next_action(s);
        return;
    case C_STARTTLS:
        if (code != 220) {
            reply_error(code);
            note_error("STARTTLS: %d %s", code, text);
            quit(s);
            return;
        }
        tls_start(s);
        return;
    case C_MAIL:
        if (cls == 2)
            s->tx_mail_ok = 1;
        else {
            reply_error(code);
            note_error("MAIL: %d %s", code, text);
            s->tx_failed = 1;
        }
        break;
    case C_RCPT:
        if (cls == 2)
            s->tx_rcpt_ok++;
        else {
            reply_error(code);
            note_error("RCPT: %d %s", code, text);
        }
        break;
    case C_DATA:
        if (code == 354) {
            send_body(s);
            return;
        }
        if (!(s->tx_failed || s->tx_rcpt_ok == 0)) { /* a DATA refusal of its own */
            reply_error(code);
            note_error("DATA: %d %s", code, text);
        }
        s->tx_failed = 1;
        break;
    case C_DOT:
        s->in_tx = 0;
        if (cls == 2) {
            G.msgs_ok++;
            s->msgs++;
            h_add(&G.h_data, t - sent);
            G.t_last_work = t;
        } else {
            reply_error(code);
            note_error("end of DATA: %d %s", code, text);
            G.msgs_failed++;
        }
        if (code == 421) {
            close_session(s, E_REFUSED_SESSION);
            return;
        }
        next_action(s);
        return;
    case C_RSET:
        next_action(s);
        return;
    case C_QUIT:
        close_session(s, -1);
        return;
    }
    /* MAIL, RCPT, DATA refused */
    if (code == 421) {
        close_session(s, E_REFUSED_SESSION);
        return;
    }
    if (s->tx_failed && s->exp_n == 0) {
        /* Without pipelining stop here; with it, the DATA reply was the last. */
        s->in_tx = 0;
        G.msgs_failed++;
        out_add(s, "RSET\r\n");
        expect(s, C_RSET);
        return;
    }
    if (!(G.pipelining && s->cap_pipelining) && s->exp_n == 0) {
        if (c == C_MAIL && !s->tx_mail_ok) {
            s->tx_failed = 1;
        } else if (s->tx_step == s->tx_nrcpt + 1 && s->tx_rcpt_ok == 0) {
            /* every recipient refused: no DATA */
            s->in_tx = 0;
            G.msgs_failed++;
            out_add(s, "RSET\r\n");
            expect(s, C_RSET);
            return;
        }
        if (s->tx_failed) {
            s->in_tx = 0;
            G.msgs_failed++;
            out_add(s, "RSET\r\n");
            expect(s, C_RSET);
            return;
        }
        tx_send_step(s);
    }
}

/* Returns 1 when the session changed under us (closed, TLS started). */
static int parse_input(struct session *s)
{
    unsigned gen = s->gen;
    size_t start = 0;
    for (;;) {
        char *nl = memchr(s->in + start, '\n', s->inlen - start);
        if (nl == NULL)
            break;
        char *line = s->in + start;
        size_t len = (size_t)(nl - line) + 1;
        start += len;
        *nl = '\0';
        if (nl > line && nl[-1] == '\r')
            nl[-1] = '\0';
        if (len < 4 || line[0] < '2' || line[0] > '5') {
            note_error("bad reply line: %.60s", line);
            close_session(s, E_PROTOCOL);
            return 1;
        }
        int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
        const char *text = line[3] ? line + 4 : "";
        if (s->exp_n > 0 && s->exp[s->exp_head] == C_EHLO && code == 250) {
            if (strncasecmp(text, "PIPELINING", 10) == 0)
                s->ehlo_pipelining = 1;
            if (strncasecmp(text, "STARTTLS", 8) == 0)
                s->ehlo_starttls = 1;
        }
        if (line[3] == '-')
            continue;
        int was_tls = s->tls_on;
        handle_reply(s, code, text);
        if (s->gen != gen)
            return 1;
        if (s->tls_on != was_tls) {
            /* STARTTLS began: anything after the 220 was not protected */
            return 1;
        }
    }
    if (start > 0) {
        memmove(s->in, s->in + start, s->inlen - start);
        s->inlen -= start;
    }
    if (s->inlen == sizeof s->in) {
        note_error("reply line too long");
        close_session(s, E_PROTOCOL);
        return 1;
    }
    return 0;
}

/* Read and handle what has arrived. Returns 1 when the session changed. */
static int read_input(struct session *s)
{
    unsigned gen = s->gen;
    for (;;) {
        ssize_t n;
        if (s->tls_on) {
            ERR_clear_error();
            int r = SSL_read(s->ssl, s->in + s->inlen, (int)(sizeof s->in - s->inlen));
            if (r <= 0) {
                int e = SSL_get_error(s->ssl, r);
                if (e == SSL_ERROR_WANT_READ)
                    return 0;
                if (e == SSL_ERROR_WANT_WRITE) {
                    s->want_write = 1;
                    return 0;
                }
                int quitting = s->exp_n > 0 && s->exp[s->exp_head] == C_QUIT;
                if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0)) {
                    if (!quitting)
                        note_error("connection closed by server%s",
                                   s->in_setup ? " during setup" : "");
                    close_session(s, quitting ? -1 : E_EOF);
                } else {
                    if (!quitting)
                        note_error("SSL_read: %s", ssl_err());
                    close_session(s, quitting ? -1 : E_IO);
                }
                return 1;
            }
            n = r;
        } else {
            n = read(s->fd, s->in + s->inlen, sizeof s->in - s->inlen);
            if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return 0;
            if (n <= 0) {
                int quitting = s->exp_n > 0 && s->exp[s->exp_head] == C_QUIT;
                if (!quitting)
                    note_error("%s", n == 0 ? "connection closed by server"
                                            : strerror(errno));
                close_session(s, quitting ? -1 : (n == 0 ? E_EOF : E_IO));
                return 1;
            }
        }
        s->inlen += (size_t)n;
        if (parse_input(s))
            return s->gen != gen || s->state == S_HANDSHAKE ? 1 : 0;
        if (s->fd < 0)
            return 1;
    }
}

static void drive(struct session *s)
{
    unsigned gen = s->gen;
    if (s->fd < 0)
        return;
    if (s->state == S_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err == EINPROGRESS)
            return;
        if (err != 0) {
            note_error("connect: %s", strerror(err));
            close_session(s, E_CONNECT);
            return;
        }
        s->state = S_SMTP;
        if (G.tls == TM_SMTPS) {
            tls_start(s);
            if (s->gen != gen)
                return;
        } else
            expect(s, C_BANNER), s->exp_t[(s->exp_head + s->exp_n - 1) % EXPQ] = s->t_conn;
    }
    for (int rounds = 0; rounds < 8; rounds++) {
        if (s->state == S_HANDSHAKE) {
            tls_step(s);
            if (s->gen != gen || s->state == S_HANDSHAKE)
                return;
        }
        if (flush(s) < 0)
            return;
        int changed = read_input(s);
        if (s->gen != gen)
            return;
        if (!changed)
            break;
        /* STARTTLS began: go round to drive the handshake */
    }
    kick(s);
}

/* ---- phases ---------------------------------------------------------------- */

static void check_done(void)
{
    if (G.phase == P_DRAIN && G.live == 0) {
        G.phase = P_DONE;
        G.t_end = now_us();
        event_base_loopbreak(G.base);
    }
    if (G.phase == P_LOAD && G.live == 0 && G.lq_n == 0 && G.rq_n == 0)
        begin_drain();
}

static void begin_drain(void)
{
    if (G.phase == P_DRAIN || G.phase == P_DONE)
        return;
    G.phase = P_DRAIN;
    G.lq_n = 0;
    G.rq_n = 0;
    struct timeval tv = {(time_t)G.timeout + 5, 0};
    evtimer_add(G.drain_ev, &tv);
    for (int i = 0; i < G.nsess; i++) {
        struct session *s = &G.S[i];
        if (s->fd < 0)
            continue;
        if (s->state == S_READY) {
            quit(s);
            kick(s);
        } else if (s->state == S_CONNECTING) {
            close_session(s, -1);
        }
    }
    /* sessions waiting for the rate limiter quit */
    while (G.rq_first) {
        struct session *s = G.rq_first;
        G.rq_first = s->rnext;
        quit(s);
        kick(s);
    }
    G.rq_last = NULL;
    check_done();
}

static void on_drain_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    for (int i = 0; i < G.nsess; i++)
        if (G.S[i].fd >= 0)
            close_session(&G.S[i], E_TIMEOUT);
    check_done();
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    begin_drain();
}

static void begin_load(void)
{
    if (G.per_session == 0 || (G.duration <= 0 && G.total <= 0)) {
        begin_drain(); /* hold only */
        return;
    }
    G.phase = P_LOAD;
    G.t_load = now_us();
    G.t_last_work = 0;
    getrusage(RUSAGE_SELF, &G.ru_load);
    memset(&G.h_reply, 0, sizeof G.h_reply);
    memset(&G.h_data, 0, sizeof G.h_data);
    memset(&G.h_banner, 0, sizeof G.h_banner);
    memset(&G.h_tls, 0, sizeof G.h_tls);
    memset(G.codes, 0, sizeof G.codes);
    memset(G.ekinds, 0, sizeof G.ekinds);
    G.load_handshakes0 = G.handshakes;
    G.load_sessions0 = G.sessions;
    G.next_send = G.t_load;
    ready_file("load");
    if (G.duration > 0) {
        struct timeval tv = {(time_t)G.duration,
                             (suseconds_t)((G.duration - (double)(time_t)G.duration) * 1e6)};
        evtimer_add(G.deadline_ev, &tv);
    }
    for (int i = 0; i < G.nsess && G.phase == P_LOAD; i++) {
        struct session *s = &G.S[i];
        if (s->fd >= 0 && s->state == S_READY) {
            next_action(s);
            kick(s);
        } else if (s->fd < 0 && G.hold <= 0)
            G.launchq[(G.lq_head + G.lq_n++) % G.nsess] = i;
    }
    launch_pump();
    check_done();
}

static void on_hold_end(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    say("hold over, %d sessions still open", G.live);
    begin_load();
}

static void begin_hold(void)
{
    if (G.phase != P_RAMP)
        return;
    G.phase = P_HOLD;
    G.t_ramp_done = now_us();
    G.lq_n = 0;
    /* sessions that did not make it by now (a server at its process limit
     * keeps them in the listen queue) are not held */
    int dropped = 0;
    for (int i = 0; i < G.nsess; i++)
        if (G.S[i].fd >= 0 && G.S[i].state != S_READY) {
            close_session(&G.S[i], -1);
            dropped++;
        }
    G.held = 0;
    for (int i = 0; i < G.nsess; i++)
        if (G.S[i].fd >= 0)
            G.held++;
    say("holding %d of %d sessions idle after %.2f s ramp (%d failed, %d given up)", G.held,
        G.nsess, (double)(G.t_ramp_done - G.t_start) / 1e6, G.ramp_failed, dropped);
    ready_file("held %d", G.held);
    struct timeval tv = {(time_t)G.hold, (suseconds_t)((G.hold - (double)(time_t)G.hold) * 1e6)};
    evtimer_add(G.hold_ev, &tv);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    uint64_t t = now_us();
    uint64_t to = (uint64_t)(G.timeout * 1e6);
    for (int i = 0; i < G.nsess; i++) {
        struct session *s = &G.S[i];
        if (s->fd >= 0 && s->waiting && s->state != S_RATEWAIT && t - s->t_wait > to) {
            note_error("timeout in state %d", (int)s->state);
            close_session(s, E_TIMEOUT);
        }
    }
    if (G.rq_n > 0 && G.phase == P_LOAD) {
        for (int i = 0; i < G.rq_n; i++)
            G.launchq[(G.lq_head + G.lq_n++) % G.nsess] = G.retryq[i];
        G.rq_n = 0;
        launch_pump();
    }
    if (G.phase == P_RAMP && t - G.t_progress > (uint64_t)(G.stall * 1e6)) {
        say("ramp stalled for %.0f s at %d ready sessions", G.stall, G.ready);
        begin_hold();
    }
    if (G.verbose)
        say("t=%.1fs phase=%d live=%d setup=%d ready=%d msgs=%lld hs=%lld",
            (double)(t - G.t_start) / 1e6, (int)G.phase, G.live, G.in_setup, G.ready, G.msgs_ok,
            G.handshakes);
}

static void on_sigint(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what, (void)arg;
    say("interrupted: draining");
    if (G.phase == P_RAMP || G.phase == P_HOLD)
        G.phase = P_LOAD; /* so that begin_drain quits every session */
    begin_drain();
}

/* ---- report ---------------------------------------------------------------- */

static double tv_s(struct timeval tv)
{
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

static void json_hist(FILE *f, const char *name, const struct hist *h, int last)
{
    fprintf(f,
            "    \"%s\": {\"count\": %" PRIu64 ", \"mean\": %.3f, \"p50\": %.3f, \"p90\": %.3f, "
            "\"p99\": %.3f, \"p999\": %.3f, \"max\": %.3f}%s\n",
            name, h->count, h->count ? (double)h->sum / (double)h->count / 1000.0 : 0.0,
            (double)h_pct(h, 50) / 1000.0, (double)h_pct(h, 90) / 1000.0,
            (double)h_pct(h, 99) / 1000.0, (double)h_pct(h, 99.9) / 1000.0,
            (double)h->max / 1000.0, last ? "" : ",");
}

static void text_hist(FILE *f, const char *name, const struct hist *h)
{
    if (h->count == 0)
        return;
    fprintf(f, "  %-14s %9.3f %9.3f %9.3f %9.3f   (%" PRIu64 ")\n", name,
            (double)h_pct(h, 50) / 1000.0, (double)h_pct(h, 90) / 1000.0,
            (double)h_pct(h, 99) / 1000.0, (double)h->max / 1000.0, h->count);
}

static const char *tls_name(void)
{
    switch (G.tls) {
    case TM_PLAIN: return "plain";
    case TM_STARTTLS: return "starttls";
    default: return "smtps";
    }
}

static void report(void)
{
    getrusage(RUSAGE_SELF, &G.ru_end);
    uint64_t t0 = G.t_load ? G.t_load : G.t_start;
    uint64_t t1 = G.t_last_work > t0 ? G.t_last_work : G.t_end;
    if (t1 <= t0)
        t1 = t0 + 1;
    double el = (double)(t1 - t0) / 1e6;
    double wall = (double)(G.t_end - t0) / 1e6;
    long long hs = G.handshakes - G.load_handshakes0;
    long long sess = G.sessions - G.load_sessions0;
    double cpu_u = tv_s(G.ru_end.ru_utime) - tv_s(G.ru_load.ru_utime);
    double cpu_s = tv_s(G.ru_end.ru_stime) - tv_s(G.ru_load.ru_stime);
    double cpu = cpu_u + cpu_s;
    long long errs = 0;
    for (int i = 0; i < 600; i++)
        errs += G.codes[i];
    for (int i = 0; i < E_KINDS; i++)
        errs += G.ekinds[i];

    FILE *tf = G.json && strcmp(G.json, "-") == 0 ? stderr : stdout;
    fprintf(tf, "smtpblast %s%s -> %s:%s: %s%s%s, %d sessions, %d msgs/session, %d bytes, "
                "%d rcpt, %s\n",
            G.label ? G.label : "", G.label ? ":" : "", G.host, G.port, tls_name(),
            G.cert ? "+client-cert" : "", G.pipelining ? " pipelining" : "", G.nsess,
            G.per_session, G.size, G.nrcpt,
            G.rate > 0 ? "fixed rate" : "as fast as possible");
    if (G.hold > 0)
        fprintf(tf, "  held           %d of %d sessions idle (ramp %.2f s)\n", G.held, G.nsess,
                (double)(G.t_ramp_done - G.t_start) / 1e6);
    fprintf(tf, "  elapsed        %.3f s (load), %.3f s wall\n", el, wall);
    fprintf(tf, "  messages       %lld accepted, %lld failed: %.1f msg/s\n", G.msgs_ok,
            G.msgs_failed, (double)G.msgs_ok / el);
    fprintf(tf, "  connections    %lld, TLS handshakes %lld: %.1f handshakes/s\n", sess, hs,
            (double)hs / el);
    fprintf(tf, "  latency ms          p50       p90       p99       max   (count)\n");
    text_hist(tf, "reply", &G.h_reply);
    text_hist(tf, "end of DATA", &G.h_data);
    text_hist(tf, "banner", &G.h_banner);
    text_hist(tf, "TLS handshake", &G.h_tls);
    fprintf(tf, "  errors         %lld", errs);
    for (int i = 0; i < 600; i++)
        if (G.codes[i])
            fprintf(tf, "  %d:%lld", i, G.codes[i]);
    for (int i = 0; i < E_KINDS; i++)
        if (G.ekinds[i])
            fprintf(tf, "  %s:%lld", ekind_name[i], G.ekinds[i]);
    fprintf(tf, "\n");
    if (G.err_sample[0])
        fprintf(tf, "  first error    %s\n", G.err_sample);
    fprintf(tf, "  client CPU     %.3f s (%.1f%% of one core): %.3f ms/msg, %.3f ms/handshake\n",
            cpu, 100.0 * cpu / (wall > 0 ? wall : 1),
            G.msgs_ok ? 1000.0 * cpu / (double)G.msgs_ok : 0.0, hs ? 1000.0 * cpu / (double)hs : 0.0);
    fflush(tf);

    if (G.json == NULL)
        return;
    FILE *f = strcmp(G.json, "-") == 0 ? stdout : fopen(G.json, "w");
    if (f == NULL)
        die("%s: %s", G.json, strerror(errno));
    fprintf(f, "{\n  \"label\": \"%s\",\n", G.label ? G.label : "");
    fprintf(f,
            "  \"params\": {\"host\": \"%s\", \"port\": \"%s\", \"tls\": \"%s\", "
            "\"client_cert\": %s, \"pipelining\": %s, \"sessions\": %d, "
            "\"messages_per_session\": %d, \"size\": %d, \"recipients\": %d, \"rate\": %.1f, "
            "\"duration\": %.1f, \"total\": %lld, \"hold\": %.1f},\n",
            G.host, G.port, tls_name(), G.cert ? "true" : "false",
            G.pipelining ? "true" : "false", G.nsess, G.per_session, G.size, G.nrcpt, G.rate,
            G.duration, G.total, G.hold);
    fprintf(f, "  \"elapsed_s\": %.6f,\n  \"wall_s\": %.6f,\n", el, wall);
    fprintf(f, "  \"messages\": %lld,\n  \"messages_failed\": %lld,\n  \"messages_per_s\": %.3f,\n",
            G.msgs_ok, G.msgs_failed, (double)G.msgs_ok / el);
    fprintf(f, "  \"connections\": %lld,\n  \"handshakes\": %lld,\n  \"handshakes_per_s\": %.3f,\n",
            sess, hs, (double)hs / el);
    fprintf(f, "  \"bytes_sent\": %lld,\n", G.bytes);
    fprintf(f, "  \"hold\": {\"requested\": %d, \"held\": %d, \"ramp_s\": %.3f, \"failed\": %d},\n",
            G.hold > 0 ? G.nsess : 0, G.held,
            G.hold > 0 ? (double)(G.t_ramp_done - G.t_start) / 1e6 : 0.0, G.ramp_failed);
    fprintf(f, "  \"latency_ms\": {\n");
    json_hist(f, "reply", &G.h_reply, 0);
    json_hist(f, "data", &G.h_data, 0);
    json_hist(f, "banner", &G.h_banner, 0);
    json_hist(f, "tls", &G.h_tls, 1);
    fprintf(f, "  },\n  \"errors\": {\"total\": %lld, \"by_code\": {", errs);
    int first = 1;
    for (int i = 0; i < 600; i++)
        if (G.codes[i]) {
            fprintf(f, "%s\"%d\": %lld", first ? "" : ", ", i, G.codes[i]);
            first = 0;
        }
    fprintf(f, "}, \"by_kind\": {");
    first = 1;
    for (int i = 0; i < E_KINDS; i++)
        if (G.ekinds[i]) {
            fprintf(f, "%s\"%s\": %lld", first ? "" : ", ", ekind_name[i], G.ekinds[i]);
            first = 0;
        }
    char sample[600];
    size_t k = 0;
    for (const char *p = G.err_sample; *p && k < sizeof sample - 2; p++) {
        if (*p == '"' || *p == '\\')
            sample[k++] = '\\';
        sample[k++] = (*p >= 32 && *p < 127) ? *p : '?';
    }
    sample[k] = '\0';
    fprintf(f, "}, \"first\": \"%s\"},\n", sample);
    fprintf(f,
            "  \"client_cpu\": {\"user_s\": %.4f, \"sys_s\": %.4f, \"total_s\": %.4f, "
            "\"core_fraction\": %.4f, \"ms_per_message\": %.4f, \"ms_per_handshake\": %.4f, "
            "\"maxrss_kb\": %ld}\n}\n",
            cpu_u, cpu_s, cpu, wall > 0 ? cpu / wall : 0.0,
            G.msgs_ok ? 1000.0 * cpu / (double)G.msgs_ok : 0.0,
            hs ? 1000.0 * cpu / (double)hs : 0.0, G.ru_end.ru_maxrss);
    if (f != stdout)
        fclose(f);
    else
        fflush(f);
}

/* ---- set-up ------------------------------------------------------------------ */

static void usage(void)
{
    fprintf(stderr,
"usage: smtpblast -p PORT [options]\n"
"  -H, --host ADDR          server address (default 127.0.0.1)\n"
"  -p, --port PORT          server port\n"
"  -c, --sessions N         concurrent sessions (default 10)\n"
"  -m, --messages M         messages per session, then QUIT and reconnect (default 10;\n"
"                           0 = none, with --hold: only hold idle sessions)\n"
"  -s, --size BYTES         message size (default 4096)\n"
"  -r, --rcpts N            recipients per message (default 1, at most 16)\n"
"  -u, --users N            spread recipients over userN@DOMAIN, N users (default 1)\n"
"  -D, --domain DOMAIN      recipient domain (default example.org)\n"
"  -t, --tls MODE           plain | starttls | smtps (default plain)\n"
"      --cert FILE          client certificate (chain) PEM\n"
"      --key FILE           client key PEM (default: --cert)\n"
"      --tls-version V      1.2 or 1.3 (default: negotiate, at least 1.2)\n"
"  -P, --pipelining         send MAIL, RCPT and DATA at once when offered\n"
"  -R, --rate R             fixed total rate in messages/s (default: as fast as possible)\n"
"  -d, --duration S         time bound in seconds\n"
"  -n, --total N            message bound\n"
"      --hold S             open all sessions first, hold them idle S seconds, then load\n"
"      --stall S            end the ramp when no session became ready for S s (default 5)\n"
"      --burst K            at most K sessions connecting at once (default 100; 0 = no limit)\n"
"      --timeout S          reply timeout (default 30)\n"
"      --helo NAME          EHLO name (default smtpblast.test)\n"
"      --label TEXT         label for the report\n"
"      --json FILE          write the JSON report (- = stdout, text goes to stderr)\n"
"      --ready-file FILE    append \"held N\", \"load\", \"done\" as phases begin\n"
"  -v, --verbose            progress every second\n");
    exit(1);
}

static void build_body(void)
{
    /* per-message headers are about 230 bytes; the rest is 76-char lines */
    size_t want = G.size > 300 ? (size_t)G.size - 230 : 64;
    size_t lines = (want + 77) / 78;
    G.bodylen = lines * 78 + 3;
    G.body = malloc(G.bodylen + 1);
    if (G.body == NULL)
        die("out of memory");
    char *p = G.body;
    for (size_t i = 0; i < lines; i++) {
        for (int k = 0; k < 76; k++)
            *p++ = (char)('a' + (int)((i + (size_t)k) % 26));
        *p++ = '\r';
        *p++ = '\n';
    }
    memcpy(p, ".\r\n", 3);
}

static void init_tls(void)
{
    G.ctx = SSL_CTX_new(TLS_client_method());
    if (G.ctx == NULL)
        die("SSL_CTX_new: %s", ssl_err());
    SSL_CTX_set_min_proto_version(G.ctx, TLS1_2_VERSION);
    if (G.tls_version == 12)
        SSL_CTX_set_max_proto_version(G.ctx, TLS1_2_VERSION);
    else if (G.tls_version == 13)
        SSL_CTX_set_min_proto_version(G.ctx, TLS1_3_VERSION);
    SSL_CTX_set_verify(G.ctx, SSL_VERIFY_NONE, NULL); /* the benchmark measures servers */
    SSL_CTX_set_session_cache_mode(G.ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_mode(G.ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                                SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
    if (G.cert) {
        if (SSL_CTX_use_certificate_chain_file(G.ctx, G.cert) != 1)
            die("%s: %s", G.cert, ssl_err());
        if (SSL_CTX_use_PrivateKey_file(G.ctx, G.key ? G.key : G.cert, SSL_FILETYPE_PEM) != 1)
            die("%s: %s", G.key ? G.key : G.cert, ssl_err());
        if (SSL_CTX_check_private_key(G.ctx) != 1)
            die("client key does not match the certificate");
    }
}

static void resolve(void)
{
    struct addrinfo hints = {0}, *res;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    int r = getaddrinfo(G.host, G.port, &hints, &res);
    if (r != 0)
        die("%s:%s: %s", G.host, G.port, gai_strerror(r));
    memcpy(&G.addr, res->ai_addr, res->ai_addrlen);
    G.alen = res->ai_addrlen;
    freeaddrinfo(res);
}

static double num(const char *s, const char *what)
{
    char *end;
    double v = strtod(s, &end);
    if (*s == '\0' || *end != '\0' || v < 0)
        die("bad %s: %s", what, s);
    return v;
}

int main(int argc, char **argv)
{
    G.host = "127.0.0.1";
    G.nsess = 10;
    G.per_session = 10;
    G.size = 4096;
    G.nrcpt = 1;
    G.users = 1;
    G.domain = "example.org";
    G.sender = "blast@smtpblast.test";
    G.helo = "smtpblast.test";
    G.stall = 5;
    G.timeout = 30;
    G.connect_burst = 100;
    enum { O_CERT = 256, O_KEY, O_HOLD, O_STALL, O_BURST, O_TIMEOUT, O_HELO, O_JSON, O_READY,
           O_LABEL, O_TLSV };
    static const struct option opts[] = {
        {"host", required_argument, NULL, 'H'},      {"port", required_argument, NULL, 'p'},
        {"sessions", required_argument, NULL, 'c'},  {"messages", required_argument, NULL, 'm'},
        {"size", required_argument, NULL, 's'},      {"rcpts", required_argument, NULL, 'r'},
        {"users", required_argument, NULL, 'u'},     {"domain", required_argument, NULL, 'D'},
        {"tls", required_argument, NULL, 't'},       {"cert", required_argument, NULL, O_CERT},
        {"key", required_argument, NULL, O_KEY},     {"pipelining", no_argument, NULL, 'P'},
        {"rate", required_argument, NULL, 'R'},      {"duration", required_argument, NULL, 'd'},
        {"total", required_argument, NULL, 'n'},     {"hold", required_argument, NULL, O_HOLD},
        {"stall", required_argument, NULL, O_STALL}, {"burst", required_argument, NULL, O_BURST},
        {"timeout", required_argument, NULL, O_TIMEOUT},
        {"helo", required_argument, NULL, O_HELO},   {"json", required_argument, NULL, O_JSON},
        {"ready-file", required_argument, NULL, O_READY},
        {"label", required_argument, NULL, O_LABEL},
        {"tls-version", required_argument, NULL, O_TLSV},
        {"verbose", no_argument, NULL, 'v'},         {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "H:p:c:m:s:r:u:D:t:PR:d:n:vh", opts, NULL)) != -1) {
        switch (c) {
        case 'H': G.host = optarg; break;
        case 'p': G.port = optarg; break;
        case 'c': G.nsess = (int)num(optarg, "sessions"); break;
        case 'm': G.per_session = (int)num(optarg, "messages"); break;
        case 's': G.size = (int)num(optarg, "size"); break;
        case 'r': G.nrcpt = (int)num(optarg, "rcpts"); break;
        case 'u': G.users = (int)num(optarg, "users"); break;
        case 'D': G.domain = optarg; break;
        case 't':
            if (strcmp(optarg, "plain") == 0)
                G.tls = TM_PLAIN;
            else if (strcmp(optarg, "starttls") == 0)
                G.tls = TM_STARTTLS;
            else if (strcmp(optarg, "smtps") == 0)
                G.tls = TM_SMTPS;
            else
                die("--tls: plain, starttls or smtps");
            break;
        case O_CERT: G.cert = optarg; break;
        case O_KEY: G.key = optarg; break;
        case 'P': G.pipelining = 1; break;
        case 'R': G.rate = num(optarg, "rate"); break;
        case 'd': G.duration = num(optarg, "duration"); break;
        case 'n': G.total = (long long)num(optarg, "total"); break;
        case O_HOLD: G.hold = num(optarg, "hold"); break;
        case O_STALL: G.stall = num(optarg, "stall"); break;
        case O_BURST: G.connect_burst = (int)num(optarg, "burst"); break;
        case O_TIMEOUT: G.timeout = num(optarg, "timeout"); break;
        case O_HELO: G.helo = optarg; break;
        case O_JSON: G.json = optarg; break;
        case O_READY: G.ready_file = optarg; break;
        case O_LABEL: G.label = optarg; break;
        case O_TLSV:
            G.tls_version = strcmp(optarg, "1.2") == 0 ? 12 : strcmp(optarg, "1.3") == 0 ? 13 : -1;
            if (G.tls_version < 0)
                die("--tls-version: 1.2 or 1.3");
            break;
        case 'v': G.verbose = 1; break;
        default: usage();
        }
    }
    if (G.port == NULL || optind != argc || G.nsess < 1 || G.nrcpt < 1 || G.nrcpt > MAX_RCPT ||
        G.users < 1)
        usage();
    if (G.hold <= 0 && G.duration <= 0 && G.total <= 0)
        die("give a bound: --duration, --total or --hold");
    if (G.timeout < 1)
        G.timeout = 1;

    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)G.nsess + 16)
        say("warning: only %ld file descriptors for %d sessions (raise ulimit -n)",
            (long)rl.rlim_cur, G.nsess);

    resolve();
    build_body();
    if (G.tls != TM_PLAIN)
        init_tls();
    G.interval = G.rate > 0 ? (uint64_t)(1e6 / G.rate) : 0;
    if (G.rate > 0 && G.interval == 0)
        G.interval = 1;

    struct event_config *cfg = event_config_new();
    event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK);
    G.base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    if (G.base == NULL)
        die("event_base_new failed");
    G.S = calloc((size_t)G.nsess, sizeof *G.S);
    G.launchq = calloc((size_t)G.nsess, sizeof(int));
    G.retryq = calloc((size_t)G.nsess, sizeof(int));
    if (G.S == NULL || G.launchq == NULL || G.retryq == NULL)
        die("out of memory");
    for (int i = 0; i < G.nsess; i++) {
        G.S[i].slot = i;
        G.S[i].fd = -1;
        G.launchq[i] = i;
    }
    G.lq_n = G.nsess;
    G.tick = event_new(G.base, -1, EV_PERSIST, on_tick, NULL);
    G.deadline_ev = evtimer_new(G.base, on_deadline, NULL);
    G.hold_ev = evtimer_new(G.base, on_hold_end, NULL);
    G.rate_ev = evtimer_new(G.base, on_rate, NULL);
    G.drain_ev = evtimer_new(G.base, on_drain_timeout, NULL);
    G.sigint_ev = evsignal_new(G.base, SIGINT, on_sigint, NULL);
    evsignal_add(G.sigint_ev, NULL);
    struct event *sigterm = evsignal_new(G.base, SIGTERM, on_sigint, NULL);
    evsignal_add(sigterm, NULL);
    struct timeval one = {1, 0};
    event_add(G.tick, &one);

    G.t_start = G.t_progress = now_us();
    if (G.hold > 0) {
        G.phase = P_RAMP;
        launch_pump();
    } else {
        G.lq_n = 0;
        begin_load();
    }
    event_base_dispatch(G.base);
    if (G.t_end == 0)
        G.t_end = now_us();
    ready_file("done");
    report();

    for (int i = 0; i < G.nsess; i++)
        if (G.S[i].fd >= 0)
            close_session(&G.S[i], -1);
    event_free(G.tick);
    event_free(G.deadline_ev);
    event_free(G.hold_ev);
    event_free(G.rate_ev);
    event_free(G.drain_ev);
    event_free(G.sigint_ev);
    event_free(sigterm);
    event_base_free(G.base);
    SSL_CTX_free(G.ctx);
    free(G.S);
    free(G.launchq);
    free(G.retryq);
    free(G.body);
    long long bad = G.msgs_failed;
    for (int i = 0; i < E_KINDS; i++)
        bad += G.ekinds[i];
    return G.msgs_ok == 0 && G.per_session > 0 && (G.duration > 0 || G.total > 0) && bad > 0 ? 3
                                                                                         : 0;
}
