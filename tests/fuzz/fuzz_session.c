/* libFuzzer target: the SMTP session state machine (src/smtpd/session.c)
 * with a fake transport, the real queue (in a temp dir made once) and the
 * default restrictions.
 *
 * Input layout:
 *   byte 0  options: bit 0 smtpd_forbid_bare_newline=reject, bit 1 a small
 *           message_size_limit, bits 2-3 the client address, bit 4 TLS
 *           available, bits 5-6 the listener kind, bit 7 (with byte 1
 *           equal to 0x3f) refuse at connect
 *   byte 1  how the rest is cut into pieces (0: all at once; otherwise
 *           pseudo-random sizes below byte 1 + 1), and, in its top bits,
 *           whether the session ends with a timeout or a shutdown
 *   rest    what the client sends
 * Invariants: every reply is whole "DDD text<CRLF>" lines; nothing is
 * written after close; session_feed consumes everything unless the session
 * closed or is starting TLS; after release nothing is left in tmp/. */
#include <arpa/inet.h>
#include <dirent.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "addr/addrclass.h"
#include "conf/conf.h"
#include "policy/restrict.h"
#include "queue/commit.h"
#include "queue/queue.h"
#include "smtpd/session.h"
#include "tls/tls.h"
#include "util/log.h"

struct fake {
    int closed;
    int start_tls;
};

/* Replies must be complete lines: three digits, ' ' or '-', text, CRLF. */
static void check_reply(const char *p, size_t n)
{
    if (n < 6 || p[n - 2] != '\r' || p[n - 1] != '\n')
        abort();
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\r' && (i + 1 >= n || p[i + 1] != '\n'))
            abort();
        if (p[i] == '\n') {
            if (i == 0 || p[i - 1] != '\r')
                abort();
            if (i - start < 5)
                abort();
            for (size_t k = start; k < start + 3; k++)
                if (p[k] < '0' || p[k] > '9')
                    abort();
            if (p[start + 3] != ' ' && p[start + 3] != '-')
                abort();
            start = i + 1;
        }
    }
}

static void io_write(void *ctx, const char *p, size_t n)
{
    struct fake *f = ctx;
    if (f->closed)
        abort();
    check_reply(p, n);
}

static void io_start_tls(void *ctx)
{
    struct fake *f = ctx;
    if (f->start_tls)
        abort();
    f->start_tls = 1;
}

static void io_close(void *ctx)
{
    struct fake *f = ctx;
    if (f->closed)
        abort();
    f->closed = 1;
}

static void io_resume(void *ctx)
{
    (void)ctx;
}

static const struct session_io fake_io = {io_write, io_start_tls, io_close, io_resume};

static char qdir[64];
static int current_cfg = -1;

static void die(const char *what)
{
    fprintf(stderr, "fuzz_session: %s\n", what);
    abort();
}

/* Remove the temp queue when the fuzzer exits (-max_total_time ends with exit()). */
static void remove_qdir(void)
{
    static const char *const subs[] = {"tmp", "active", "hold", "state"};
    for (int i = 0; i < 4; i++) {
        char path[256];
        snprintf(path, sizeof path, "%s/%s", qdir, subs[i]);
        DIR *d = opendir(path);
        if (d) {
            struct dirent *e;
            while ((e = readdir(d)) != NULL) {
                if (e->d_name[0] == '.')
                    continue;
                char file[512];
                snprintf(file, sizeof file, "%s/%s", path, e->d_name);
                unlink(file);
            }
            closedir(d);
        }
        rmdir(path);
    }
    char sock[256];
    snprintf(sock, sizeof sock, "%s/qmgr.sock", qdir);
    unlink(sock);
    rmdir(qdir);
}

static void init_once(void)
{
    static int done;
    if (done)
        return;
    done = 1;
    log_open("/dev/null");
    snprintf(qdir, sizeof qdir, "%s", "/tmp/kp-fuzz-session-XXXXXX");
    if (mkdtemp(qdir) == NULL)
        die("mkdtemp failed");
    char err[256];
    if (queue_init_dirs(qdir, -1, -1, err, sizeof err) < 0)
        die(err);
    atexit(remove_qdir);
    commit_start(NULL, qdir);
}

static void configure(int cfg)
{
    if (cfg == current_cfg)
        return;
    current_cfg = cfg;
    struct conf_errors errs = {0};
    conf_defaults();
    conf_set("myhostname", "mx.fuzz.test", &errs);
    conf_set("mydestination", "example.org, $myhostname", &errs);
    conf_set("queue_directory", qdir, &errs);
    conf_set("smtpd_forbid_bare_newline", cfg & 1 ? "reject" : "normalize", &errs);
    if (cfg & 2)
        conf_set("message_size_limit", "200", &errs);
    addrclass_init(&errs);
    restrict_init(&errs);
    if (errs.count)
        die(errs.msgs[0]);
}

/* Remove delivered-to-queue messages so the directory stays small, and
 * check that nothing half-received was left in tmp/. */
static void check_and_clean_queue(void)
{
    static const char *const subs[] = {"tmp", "active"};
    for (int i = 0; i < 2; i++) {
        char path[256];
        snprintf(path, sizeof path, "%s/%s", qdir, subs[i]);
        DIR *d = opendir(path);
        if (d == NULL)
            die("cannot open queue directory");
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.')
                continue;
            if (i == 0)
                die("a file was left in tmp/ after the session ended");
            char file[512];
            snprintf(file, sizeof file, "%s/%s", path, e->d_name);
            unlink(file);
        }
        closedir(d);
    }
}

static void fill_client(struct session_client *c, uint8_t opts)
{
    static const char *const addrs[] = {"192.0.2.1", "127.0.0.1", "::1", "::ffff:192.0.2.1"};
    static const enum listener_kind kinds[] = {LISTEN_SMTP, LISTEN_SUBMISSION, LISTEN_SMTPS,
                                               LISTEN_SMTP};
    memset(c, 0, sizeof *c);
    const char *a = addrs[(opts >> 2) & 3];
    struct sockaddr_in *sin = (struct sockaddr_in *)&c->addr;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&c->addr;
    if (inet_pton(AF_INET, a, &sin->sin_addr) == 1)
        sin->sin_family = AF_INET;
    else if (inet_pton(AF_INET6, a, &sin6->sin6_addr) == 1)
        sin6->sin6_family = AF_INET6;
    snprintf(c->addr_text, sizeof c->addr_text, "%s", a);
    snprintf(c->name, sizeof c->name, "%s", "unknown");
    c->port = 12345;
    c->kind = kinds[(opts >> 5) & 3];
    c->tls_available = (opts >> 4) & 1;
}

static void fill_peer(struct tls_peer *peer, uint8_t opts)
{
    memset(peer, 0, sizeof *peer);
    snprintf(peer->protocol, sizeof peer->protocol, "%s", "TLSv1.3");
    snprintf(peer->cipher, sizeof peer->cipher, "%s", "TLS_AES_256_GCM_SHA384");
    peer->bits = peer->alg_bits = 256;
    peer->trust.has_cert = opts & 1;
    peer->trust.trusted = (opts >> 1) & 1;
    peer->trust.chain_ok = (opts >> 1) & 1;
    snprintf(peer->trust.subject_cn, sizeof peer->trust.subject_cn, "%s", "client.fuzz.test");
    snprintf(peer->trust.issuer_cn, sizeof peer->trust.issuer_cn, "%s", "Fuzz CA");
    snprintf(peer->trust.cert_fp, sizeof peer->trust.cert_fp, "%s", "AA:BB");
    snprintf(peer->trust.pubkey_fp, sizeof peer->trust.pubkey_fp, "%s", "CC:DD");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    init_once();
    uint8_t opts = data[0], cut = data[1];
    configure(opts & 3);

    struct session_client client;
    fill_client(&client, opts);
    struct tls_peer peer;
    fill_peer(&peer, opts >> 2);

    struct fake f = {0, 0};
    struct smtp_session *s = session_new(&fake_io, &f, &client);
    if (s == NULL)
        die("session_new failed");
    session_start(s, (opts & 0x80) && cut == 0x3f ? "fuzz refusal" : NULL);
    if (!f.closed && client.kind == LISTEN_SMTPS)
        session_tls_established(s, &peer);

    const char *p = (const char *)data + 2;
    size_t n = size - 2, off = 0;
    uint32_t rnd = cut * 2654435761u + 1;
    while (off < n && !f.closed) {
        size_t len = n - off;
        if (cut & 0x3f) {
            rnd = rnd * 1103515245u + 12345u;
            size_t piece = 1 + (rnd >> 16) % ((size_t)(cut & 0x3f) * 4);
            if (piece < len)
                len = piece;
        }
        size_t used = session_feed(s, p + off, len);
        if (used > len)
            abort();
        off += used;
        if (used == len)
            continue;
        if (f.start_tls) {
            /* The transport handshakes; plaintext pipelined after STARTTLS
             * is thrown away. */
            f.start_tls = 0;
            off += len - used;
            session_tls_established(s, &peer);
        } else if (!f.closed) {
            die("session_feed stopped early without STARTTLS or close");
        }
    }
    if (!f.closed && (cut & 0x40))
        session_timeout(s);
    else if (!f.closed && (cut & 0x80))
        session_shutdown(s);
    (void)session_is_idle(s);
    (void)session_id(s);
    session_release(s);
    check_and_clean_queue();
    return 0;
}
