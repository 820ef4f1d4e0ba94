/* Unit tests for the SMTP session state machine (src/smtpd/session.c),
 * driven through its session_io callbacks with a fake transport. Commits run
 * synchronously (commit_start(NULL, ...)), so "250 queued as" arrives during
 * session_feed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "addr/addrclass.h"
#include "conf/conf.h"
#include "policy/restrict.h"
#include "queue/commit.h"
#include "queue/queue.h"
#include "smtpd/session.h"
#include "tls/tls.h"
#include "util/buf.h"
#include "util/log.h"

/* ---- the fake transport ------------------------------------------------ */

struct fake {
    struct buf out;     /* every reply byte */
    size_t mark;        /* start of the replies not yet looked at */
    int closed;
    int start_tls;
    int resumed;
    struct smtp_session *s;
};

static void io_write(void *ctx, const char *p, size_t n)
{
    struct fake *f = ctx;
    assert_false(f->closed); /* nothing may follow close */
    assert_int_equal(buf_append(&f->out, p, n), 0);
}

static void io_start_tls(void *ctx)
{
    ((struct fake *)ctx)->start_tls++;
}

static void io_close(void *ctx)
{
    struct fake *f = ctx;
    assert_false(f->closed);
    f->closed = 1;
}

static void io_resume(void *ctx)
{
    ((struct fake *)ctx)->resumed++;
}

static const struct session_io fake_io = {io_write, io_start_tls, io_close, io_resume};

static char qdir[64];

/* A session from addr ("192.0.2.10" or an IPv6 address). */
static struct fake *fake_new_from(const char *addr, int tls_available,
                                  enum listener_kind kind)
{
    struct fake *f = calloc(1, sizeof *f);
    buf_init(&f->out, 1 << 20);
    struct session_client c;
    memset(&c, 0, sizeof c);
    struct sockaddr_in *sin = (struct sockaddr_in *)&c.addr;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&c.addr;
    if (inet_pton(AF_INET, addr, &sin->sin_addr) == 1)
        sin->sin_family = AF_INET;
    else {
        assert_int_equal(inet_pton(AF_INET6, addr, &sin6->sin6_addr), 1);
        sin6->sin6_family = AF_INET6;
    }
    snprintf(c.addr_text, sizeof c.addr_text, "%s", addr);
    snprintf(c.name, sizeof c.name, "%s", "client.example");
    c.port = 40000;
    c.kind = kind;
    c.tls_available = tls_available;
    f->s = session_new(&fake_io, f, &c);
    assert_non_null(f->s);
    return f;
}

static struct fake *fake_new(void)
{
    return fake_new_from("192.0.2.10", 0, LISTEN_SMTP);
}

static void fake_free(struct fake *f)
{
    session_release(f->s);
    buf_free(&f->out);
    free(f);
}

/* The replies since the last call. Valid until the next feed. */
static const char *replies(struct fake *f)
{
    const char *r = buf_str(&f->out) + f->mark;
    f->mark = f->out.len;
    return r;
}

/* Feed text; every byte must be taken. */
static void feed(struct fake *f, const char *text)
{
    size_t n = strlen(text);
    assert_int_equal(session_feed(f->s, text, n), n);
}

/* Feed one command and expect exactly one reply. */
static void expect(struct fake *f, const char *cmd, const char *reply)
{
    feed(f, cmd);
    const char *got = replies(f);
    if (strcmp(got, reply) != 0)
        print_message("command: %s\n", cmd);
    assert_string_equal(got, reply);
}

static struct fake *greeted(void)
{
    struct fake *f = fake_new();
    session_start(f->s, NULL);
    assert_string_equal(replies(f), "220 mx.test ESMTP keypost\r\n");
    feed(f, "EHLO client.test\r\n");
    replies(f);
    return f;
}

/* ---- queue helpers ----------------------------------------------------- */

static int count_files(const char *sub)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", qdir, sub);
    DIR *d = opendir(path);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

/* Pull the id out of "250 2.0.0 Ok: queued as ID\r\n". */
static void queued_id(const char *reply, char id[QUEUE_ID_LEN])
{
    const char *p = strstr(reply, "250 2.0.0 Ok: queued as ");
    assert_non_null(p);
    p += strlen("250 2.0.0 Ok: queued as ");
    assert_int_equal(strspn(p, "0123456789ABCDEF"), 16);
    assert_memory_equal(p + 16, "\r\n", 2);
    memcpy(id, p, 16);
    id[16] = '\0';
}

/* The message part of a queue file (after the envelope). */
static char *message_of(const char *id, struct envelope *env)
{
    assert_int_equal(queue_load(qdir, "active", id, env), 0);
    char path[256];
    snprintf(path, sizeof path, "%s/active/%s", qdir, id);
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    char *msg = calloc(1, (size_t)env->size + 1);
    fseek(fp, env->body_offset, SEEK_SET);
    assert_int_equal(fread(msg, 1, (size_t)env->size, fp), (size_t)env->size);
    fclose(fp);
    return msg;
}

/* ---- setup ------------------------------------------------------------- */

static void empty_dir(const char *sub)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", qdir, sub);
    DIR *d = opendir(path);
    if (d == NULL)
        return;
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

/* Default test configuration plus NAME, VALUE pairs. */
static void configure(const char *const *pairs)
{
    struct conf_errors errs = {0};
    conf_defaults();
    conf_set("myhostname", "mx.test", &errs);
    conf_set("mydestination", "example.org, $myhostname", &errs);
    conf_set("queue_directory", qdir, &errs);
    for (; pairs && pairs[0]; pairs += 2)
        conf_set(pairs[0], pairs[1], &errs);
    addrclass_init(&errs);
    restrict_init(&errs);
    for (int i = 0; i < errs.count; i++)
        print_message("config error: %s\n", errs.msgs[i]);
    assert_int_equal(errs.count, 0);
    commit_start(NULL, qdir);
}

static int setup(void **state)
{
    (void)state;
    configure(NULL);
    empty_dir("tmp");
    empty_dir("active");
    empty_dir("state");
    empty_dir("hold");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    restrict_free();
    return 0;
}

/* ---- tests ------------------------------------------------------------- */

static void test_greeting(void **state)
{
    (void)state;
    struct fake *f = fake_new();
    session_start(f->s, NULL);
    assert_string_equal(replies(f), "220 mx.test ESMTP keypost\r\n");
    assert_false(f->closed);
    assert_true(session_is_idle(f->s));
    assert_non_null(session_id(f->s));
    assert_true(strlen(session_id(f->s)) > 0);
    fake_free(f);
}

static void test_greeting_refused(void **state)
{
    (void)state;
    struct fake *f = fake_new();
    session_start(f->s, "too many connections");
    assert_string_equal(replies(f), "421 4.7.0 mx.test Error: too many connections\r\n");
    assert_true(f->closed);
    /* A closed session takes no input. */
    assert_int_equal(session_feed(f->s, "EHLO x\r\n", 8), 0);
    assert_string_equal(replies(f), "");
    fake_free(f);
}

static void test_ehlo_helo(void **state)
{
    (void)state;
    struct fake *f = fake_new();
    session_start(f->s, NULL);
    replies(f);
    expect(f, "EHLO client.test\r\n",
           "250-mx.test\r\n"
           "250-PIPELINING\r\n"
           "250-SIZE 10240000\r\n"
           "250-ENHANCEDSTATUSCODES\r\n"
           "250-8BITMIME\r\n"
           "250 SMTPUTF8\r\n");
    expect(f, "HELO client.test\r\n", "250 mx.test\r\n");
    expect(f, "ehlo client.test\r\n",
           "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n"
           "250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n");
    expect(f, "EHLO\r\n", "501 5.5.4 Syntax: EHLO hostname\r\n");
    expect(f, "HELO \r\n", "501 5.5.4 Syntax: HELO hostname\r\n");
    expect(f, "EHLO bad\x01name\r\n", "501 5.5.4 Syntax: EHLO hostname\r\n");
    fake_free(f);

    /* STARTTLS is offered only when TLS is available. */
    f = fake_new_from("192.0.2.10", 1, LISTEN_SMTP);
    session_start(f->s, NULL);
    replies(f);
    expect(f, "EHLO client.test\r\n",
           "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-STARTTLS\r\n"
           "250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n");
    fake_free(f);
}

static void test_ehlo_size_follows_config(void **state)
{
    (void)state;
    static const char *const cfg[] = {"message_size_limit", "12345", NULL};
    configure(cfg);
    struct fake *f = fake_new();
    session_start(f->s, NULL);
    replies(f);
    feed(f, "EHLO client.test\r\n");
    assert_non_null(strstr(replies(f), "250-SIZE 12345\r\n"));
    fake_free(f);
}

static void test_mail_happy_path(void **state)
{
    (void)state;
    struct fake *f = greeted();
    expect(f, "MAIL FROM:<bob@remote.test>\r\n", "250 2.1.0 Ok\r\n");
    assert_false(session_is_idle(f->s));
    expect(f, "RCPT TO:<alice@example.org>\r\n", "250 2.1.5 Ok\r\n");
    expect(f, "DATA\r\n", "354 End data with <CR><LF>.<CR><LF>\r\n");
    assert_int_equal(count_files("tmp"), 1);
    feed(f, "Subject: hello\r\n\r\nHi Alice,\r\n..a line with a dot\r\n");
    assert_string_equal(replies(f), "");
    feed(f, ".\r\n");
    char id[QUEUE_ID_LEN];
    const char *r = replies(f);
    queued_id(r, id);
    assert_true(f->resumed >= 1);
    assert_true(session_is_idle(f->s));
    /* Durable: in active/, nothing left in tmp/. */
    assert_int_equal(count_files("tmp"), 0);
    assert_int_equal(count_files("active"), 1);

    struct envelope env;
    char *msg = message_of(id, &env);
    assert_string_equal(env.id, id);
    assert_string_equal(env.sender, "bob@remote.test");
    assert_int_equal(env.nrcpt, 1);
    assert_string_equal(env.rcpts[0], "alice@example.org");
    assert_string_equal(env.client, "client.example[192.0.2.10]");
    assert_string_equal(env.helo, "client.test");
    assert_string_equal(env.proto, "ESMTP");
    assert_int_equal(env.hold, 0);
    /* The Received header, then the content with the dot-stuffing removed. */
    char want[512];
    snprintf(want, sizeof want,
             "Received: from client.test (client.example [192.0.2.10])\r\n"
             "\tby mx.test (keypost) with ESMTP id %s\r\n"
             "\tfor <alice@example.org>; ",
             id);
    assert_memory_equal(msg, want, strlen(want));
    const char *date_end = strstr(msg + strlen(want), " +0000 (UTC)\r\n");
    assert_non_null(date_end);
    assert_string_equal(date_end + strlen(" +0000 (UTC)\r\n"),
                        "Subject: hello\r\n\r\nHi Alice,\r\n.a line with a dot\r\n");
    free(msg);
    envelope_free(&env);

    /* A second transaction on the same connection. */
    expect(f, "MAIL FROM:<>\r\n", "250 2.1.0 Ok\r\n");
    expect(f, "RCPT TO:<carol@example.org>\r\n", "250 2.1.5 Ok\r\n");
    expect(f, "RCPT TO:<dave@EXAMPLE.ORG>\r\n", "250 2.1.5 Ok\r\n");
    expect(f, "DATA\r\n", "354 End data with <CR><LF>.<CR><LF>\r\n");
    feed(f, "x\r\n.\r\n");
    char id2[QUEUE_ID_LEN];
    queued_id(replies(f), id2);
    assert_string_not_equal(id, id2);
    msg = message_of(id2, &env);
    assert_string_equal(env.sender, "");
    assert_int_equal(env.nrcpt, 2);
    assert_string_equal(env.rcpts[0], "carol@example.org");
    assert_string_equal(env.rcpts[1], "dave@EXAMPLE.ORG");
    /* With several recipients there is no "for" clause. */
    assert_null(strstr(msg, "\tfor <"));
    assert_non_null(strstr(msg, "with ESMTP id "));
    free(msg);
    envelope_free(&env);

    expect(f, "QUIT\r\n", "221 2.0.0 Bye\r\n");
    assert_true(f->closed);
    fake_free(f);
}

static void test_pipelined_dialogue(void **state)
{
    (void)state;
    struct fake *f = fake_new();
    session_start(f->s, NULL);
    replies(f);
    /* One packet with the whole conversation (PIPELINING). */
    const char *all = "EHLO client.test\r\n"
                      "MAIL FROM:<bob@remote.test> SIZE=100 BODY=8BITMIME\r\n"
                      "RCPT TO:<alice@example.org>\r\n"
                      "DATA\r\n"
                      "Subject: pipelined\r\n\r\nbody\r\n.\r\n"
                      "QUIT\r\n";
    size_t n = strlen(all);
    assert_int_equal(session_feed(f->s, all, n), n);
    const char *r = replies(f);
    const char *p = strstr(r, "250 SMTPUTF8\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"
                              "354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued as ");
    assert_non_null(p);
    p = strstr(p, "queued as ");
    assert_memory_equal(p + strlen("queued as ") + 16, "\r\n221 2.0.0 Bye\r\n", 17);
    assert_true(f->closed);
    assert_int_equal(count_files("active"), 1);
    fake_free(f);
}

static void test_bytewise_dialogue(void **state)
{
    (void)state;
    /* The same conversation one byte at a time. */
    struct fake *f = fake_new();
    session_start(f->s, NULL);
    replies(f);
    const char *all = "EHLO client.test\r\nMAIL FROM:<bob@remote.test>\r\n"
                      "RCPT TO:<alice@example.org>\r\nDATA\r\nline\r\n..dot\r\n.\r\nQUIT\r\n";
    for (size_t i = 0; all[i]; i++)
        assert_int_equal(session_feed(f->s, all + i, 1), 1);
    const char *r = replies(f);
    char id[QUEUE_ID_LEN];
    queued_id(r, id);
    assert_non_null(strstr(r, "221 2.0.0 Bye\r\n"));
    struct envelope env;
    char *msg = message_of(id, &env);
    const char *body = strstr(msg, "+0000 (UTC)\r\n");
    assert_non_null(body);
    assert_string_equal(body + strlen("+0000 (UTC)\r\n"), "line\r\n.dot\r\n");
    free(msg);
    envelope_free(&env);
    fake_free(f);
}

static void test_wrong_order(void **state)
{
    (void)state;
    struct fake *f = fake_new();
    session_start(f->s, NULL);
    replies(f);
    expect(f, "MAIL FROM:<bob@remote.test>\r\n", "503 5.5.1 Error: send HELO/EHLO first\r\n");
    expect(f, "RCPT TO:<alice@example.org>\r\n", "503 5.5.1 Error: send HELO/EHLO first\r\n");
    expect(f, "DATA\r\n", "503 5.5.1 Error: send HELO/EHLO first\r\n");
    expect(f, "NOOP\r\n", "250 2.0.0 Ok\r\n");
    expect(f, "EHLO client.test\r\n",
           "250-mx.test\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n"
           "250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n");
    expect(f, "RCPT TO:<alice@example.org>\r\n", "503 5.5.1 Error: need MAIL command\r\n");
    expect(f, "DATA\r\n", "503 5.5.1 Error: need MAIL command\r\n");
    expect(f, "MAIL FROM:<bob@remote.test>\r\n", "250 2.1.0 Ok\r\n");
    expect(f, "DATA\r\n", "503 5.5.1 Error: need RCPT command\r\n");
    expect(f, "MAIL FROM:<bob@remote.test>\r\n", "503 5.5.1 Error: nested MAIL command\r\n");
    expect(f, "STARTTLS\r\n", "503 5.5.1 Error: MAIL transaction in progress\r\n");
    expect(f, "RCPT TO:<alice@example.org>\r\n", "250 2.1.5 Ok\r\n");
    expect(f, "MAIL FROM:<bob@remote.test>\r\n", "503 5.5.1 Error: nested MAIL command\r\n");
    /* RSET forgets the transaction. */
    expect(f, "RSET\r\n", "250 2.0.0 Ok\r\n");
    expect(f, "RCPT TO:<alice@example.org>\r\n", "503 5.5.1 Error: need MAIL command\r\n");
    expect(f, "DATA\r\n", "503 5.5.1 Error: need MAIL command\r\n");
    /* So does a new EHLO. */
    expect(f, "MAIL FROM:<bob@remote.test>\r\n", "250 2.1.0 Ok\r\n");
    feed(f, "EHLO again.test\r\n");
    replies(f);
    expect(f, "RCPT TO:<alice@example.org>\r\n", "503 5.5.1 Error: need MAIL command\r\n");
    assert_false(f->closed);
    assert_int_equal(count_files("tmp"), 0);
    fake_free(f);
}

static void test_syntax_errors(void **state)
{
    (void)state;
    struct fake *f = greeted();
    expect(f, "FOO bar\r\n", "502 5.5.2 Error: command not recognized\r\n");
    expect(f, "\r\n", "502 5.5.2 Error: command not recognized\r\n");
    expect(f, "MAIL FROM:bob@remote.test\r\n", "501 5.5.4 Syntax: MAIL FROM:<address>\r\n");
    expect(f, "MAIL TO:<bob@remote.test>\r\n", "501 5.5.4 Syntax: MAIL FROM:<address>\r\n");
    expect(f, "MAIL FROM:<bob@remote.test> FOO=1\r\n",
           "555 5.5.4 Unsupported option: FOO\r\n");
    expect(f, "MAIL FROM:<bob@remote.test> SIZE=abc\r\n", "501 5.5.4 Bad SIZE parameter\r\n");
    expect(f, "MAIL FROM:<bob@remote.test> SIZE=99999999999\r\n",
           "552 5.3.4 Message size exceeds fixed limit\r\n");
    expect(f, "MAIL FROM:<bob@remote.test> BODY=BINARYMIME\r\n",
           "501 5.5.4 Bad BODY parameter\r\n");
    expect(f, "VRFY\r\n", "501 5.5.4 Syntax: VRFY address\r\n");
    expect(f, "mail from:<bob@remote.test>\r\n", "250 2.1.0 Ok\r\n");
    expect(f, "RCPT TO:<alice>\r\n", "501 5.1.3 Bad recipient address syntax\r\n");
    expect(f, "RCPT TO:alice@example.org\r\n", "501 5.5.4 Syntax: RCPT TO:<address>\r\n");
    expect(f, "RCPT TO:<alice@example.org> NOTIFY=NEVER\r\n",
           "555 5.5.4 Unsupported option: NOTIFY=NEVER\r\n");
    /* A NUL or a CR inside a command line. */
    assert_int_equal(session_feed(f->s, "NOOP\0x\r\n", 8), 8);
    assert_string_equal(replies(f), "500 5.5.2 Error: bad character in command\r\n");
    expect(f, "NOOP\rx\r\n", "500 5.5.2 Error: bad character in command\r\n");
    expect(f, "DATA extra\r\n", "503 5.5.1 Error: need RCPT command\r\n");
    /* postmaster without a domain is accepted (RFC 5321 4.5.1). */
    expect(f, "RCPT TO:<Postmaster>\r\n", "250 2.1.5 Ok\r\n");
    expect(f, "DATA extra\r\n", "501 5.5.4 Syntax: DATA\r\n");
    assert_int_equal(count_files("tmp"), 0);
    fake_free(f);
}

static void test_relay_denied(void **state)
{
    (void)state;
    struct fake *f = greeted();
    expect(f, "MAIL FROM:<bob@remote.test>\r\n", "250 2.1.0 Ok\r\n");
    expect(f, "RCPT TO:<someone@other.net>\r\n",
           "554 5.7.1 <someone@other.net>: Relay access denied\r\n");
    /* Still no recipient. */
    expect(f, "DATA\r\n", "503 5.5.1 Error: need RCPT command\r\n");
    fake_free(f);

    /* From mynetworks the same recipient is fine. */
    f = fake_new_from("127.0.0.1", 0, LISTEN_SMTP);
    session_start(f->s, NULL);
    feed(f, "EHLO localhost\r\n");
    replies(f);
    expect(f, "MAIL FROM:<bob@remote.test>\r\n", "250 2.1.0 Ok\r\n");
    expect(f, "RCPT TO:<someone@other.net>\r\n", "250 2.1.5 Ok\r\n");
    fake_free(f);
}

static void test_recipient_limit(void **state)
{
    (void)state;
    static const char *const cfg[] = {"smtpd_recipient_limit", "2", NULL};
    configure(cfg);
    struct fake *f = greeted();
    expect(f, "MAIL FROM:<bob@remote.test>\r\n", "250 2.1.0 Ok\r\n");
    expect(f, "RCPT TO:<a@example.org>\r\n", "250 2.1.5 Ok\r\n");
    expect(f, "RCPT TO:<b@example.org>\r\n", "250 2.1.5 Ok\r\n");
    expect(f, "RCPT TO:<c@example.org>\r\n", "452 4.5.3 Error: too many recipients\r\n");
    fake_free(f);
}

static void test_overlong_line(void **state)
{
    (void)state;
    struct fake *f = greeted();
    /* Exactly line_length_limit (2048) bytes before CRLF: accepted. */
    char line[4000];
    memset(line, 'x', sizeof line);
    memcpy(line, "NOOP ", 5);
    memcpy(line + 2048, "\r\n", 3);
    expect(f, line, "250 2.0.0 Ok\r\n");
    /* One more byte: refused, and the session goes on. */
    memset(line, 'x', sizeof line);
    memcpy(line, "NOOP ", 5);
    memcpy(line + 2049, "\r\n", 3);
    expect(f, line, "500 5.5.2 Error: line too long\r\n");
    expect(f, "NOOP\r\n", "250 2.0.0 Ok\r\n");
    /* Much longer, in pieces: one error for the whole line, and what
     * follows the line is not taken as a command. */
    memset(line, 'y', sizeof line);
    line[sizeof line - 1] = '\0';
    memcpy(line, "MAIL FROM:<", 11);
    feed(f, line);
    feed(f, line);
    feed(f, "@x>\r\n");
    assert_string_equal(replies(f), "500 5.5.2 Error: line too long\r\n");
    expect(f, "MAIL FROM:<bob@remote.test>\r\n", "250 2.1.0 Ok\r\n");
    fake_free(f);
}

static void test_hard_error_limit(void **state)
{
    (void)state;
    static const char *const cfg[] = {"smtpd_hard_error_limit", "3", NULL};
    configure(cfg);
    struct fake *f = greeted();
    expect(f, "BOGUS\r\n", "502 5.5.2 Error: command not recognized\r\n");
    expect(f, "BOGUS\r\n", "502 5.5.2 Error: command not recognized\r\n");
    assert_false(f->closed);
    /* The third error ends the session; input after it is not consumed. */
    const char *in = "BOGUS\r\nNOOP\r\n";
    assert_int_equal(session_feed(f->s, in, strlen(in)), strlen("BOGUS\r\n"));
    assert_string_equal(replies(f), "502 5.5.2 Error: command not recognized\r\n"
                                    "421 4.7.0 mx.test Error: too many errors\r\n");
    assert_true(f->closed);
    fake_free(f);
}

static void test_hard_error_limit_default(void **state)
{
    (void)state;
    struct fake *f = greeted();
    for (int i = 0; i < 19; i++)
        expect(f, "XYZZY\r\n", "502 5.5.2 Error: command not recognized\r\n");
    assert_false(f->closed);
    feed(f, "XYZZY\r\n");
    assert_string_equal(replies(f), "502 5.5.2 Error: command not recognized\r\n"
                                    "421 4.7.0 mx.test Error: too many errors\r\n");
    assert_true(f->closed);
    fake_free(f);
}

static void test_starttls_unavailable(void **state)
{
    (void)state;
    struct fake *f = greeted();
    expect(f, "STARTTLS\r\n", "502 5.5.1 Error: command not implemented\r\n");
    assert_int_equal(f->start_tls, 0);
    expect(f, "STARTTLS now\r\n", "501 5.5.4 Syntax: STARTTLS\r\n");
    expect(f, "NOOP\r\n", "250 2.0.0 Ok\r\n");
    fake_free(f);
}

static void test_starttls(void **state)
{
    (void)state;
    struct fake *f = fake_new_from("192.0.2.10", 1, LISTEN_SMTP);
    session_start(f->s, NULL);
    feed(f, "EHLO client.test\r\n");
    replies(f);
    /* Plaintext pipelined after STARTTLS is not consumed. */
    const char *in = "STARTTLS\r\nMAIL FROM:<evil@remote.test>\r\n";
    assert_int_equal(session_feed(f->s, in, strlen(in)), strlen("STARTTLS\r\n"));
    assert_string_equal(replies(f), "220 2.0.0 Ready to start TLS\r\n");
    assert_int_equal(f->start_tls, 1);

    struct tls_peer peer;
    memset(&peer, 0, sizeof peer);
    snprintf(peer.protocol, sizeof peer.protocol, "%s", "TLSv1.3");
    snprintf(peer.cipher, sizeof peer.cipher, "%s", "TLS_AES_256_GCM_SHA384");
    peer.bits = peer.alg_bits = 256;
    session_tls_established(f->s, &peer);
    assert_string_equal(replies(f), "");
    /* RFC 3207: the client must greet again. */
    expect(f, "MAIL FROM:<bob@remote.test>\r\n", "503 5.5.1 Error: send HELO/EHLO first\r\n");
    feed(f, "EHLO client.test\r\n");
    const char *r = replies(f);
    assert_null(strstr(r, "STARTTLS"));
    assert_non_null(strstr(r, "250 SMTPUTF8\r\n"));
    expect(f, "STARTTLS\r\n", "554 5.5.1 Error: TLS already active\r\n");
    expect(f, "MAIL FROM:<bob@remote.test>\r\n", "250 2.1.0 Ok\r\n");
    expect(f, "RCPT TO:<alice@example.org>\r\n", "250 2.1.5 Ok\r\n");
    expect(f, "DATA\r\n", "354 End data with <CR><LF>.<CR><LF>\r\n");
    feed(f, "tls body\r\n.\r\n");
    char id[QUEUE_ID_LEN];
    queued_id(replies(f), id);
    struct envelope env;
    char *msg = message_of(id, &env);
    assert_string_equal(env.proto, "ESMTPS");
    assert_non_null(strstr(msg, "\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 "
                                "(256/256 bits))\r\n"));
    assert_non_null(strstr(msg, "with ESMTPS id "));
    free(msg);
    envelope_free(&env);
    fake_free(f);
}

static void test_message_too_big(void **state)
{
    (void)state;
    static const char *const cfg[] = {"message_size_limit", "100", NULL};
    configure(cfg);
    struct fake *f = greeted();
    expect(f, "MAIL FROM:<bob@remote.test> SIZE=101\r\n",
           "552 5.3.4 Message size exceeds fixed limit\r\n");
    expect(f, "MAIL FROM:<bob@remote.test> SIZE=100\r\n", "250 2.1.0 Ok\r\n");
    expect(f, "RCPT TO:<alice@example.org>\r\n", "250 2.1.5 Ok\r\n");
    expect(f, "DATA\r\n", "354 End data with <CR><LF>.<CR><LF>\r\n");
    for (int i = 0; i < 10; i++)
        feed(f, "0123456789012345678901234567890123456789\r\n");
    assert_string_equal(replies(f), "");
    feed(f, ".\r\n");
    assert_string_equal(replies(f), "552 5.3.4 Error: message file too big\r\n");
    assert_int_equal(count_files("tmp"), 0);
    assert_int_equal(count_files("active"), 0);
    /* The session is back to the greeted state. */
    expect(f, "RCPT TO:<alice@example.org>\r\n", "503 5.5.1 Error: need MAIL command\r\n");
    expect(f, "MAIL FROM:<bob@remote.test>\r\n", "250 2.1.0 Ok\r\n");
    fake_free(f);
}

static void test_bare_lf_in_data(void **state)
{
    (void)state;
    /* Default (normalize): accepted with CRLF line ends. */
    struct fake *f = greeted();
    feed(f, "MAIL FROM:<bob@remote.test>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n");
    replies(f);
    feed(f, "one\ntwo\r\n.\r\n");
    char id[QUEUE_ID_LEN];
    queued_id(replies(f), id);
    struct envelope env;
    char *msg = message_of(id, &env);
    const char *body = strstr(msg, "+0000 (UTC)\r\n");
    assert_non_null(body);
    assert_string_equal(body + strlen("+0000 (UTC)\r\n"), "one\r\ntwo\r\n");
    free(msg);
    envelope_free(&env);
    fake_free(f);

    /* reject: the message is refused and nothing is queued. */
    static const char *const cfg[] = {"smtpd_forbid_bare_newline", "reject", NULL};
    configure(cfg);
    empty_dir("active");
    f = greeted();
    feed(f, "MAIL FROM:<bob@remote.test>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n");
    replies(f);
    feed(f, "one\ntwo\r\n.\r\n");
    assert_string_equal(replies(f), "550 5.5.2 Error: bare <LF> received\r\n");
    assert_int_equal(count_files("active"), 0);
    assert_int_equal(count_files("tmp"), 0);
    assert_true(f->closed); /* as Postfix: the session ends */
    fake_free(f);
    /* ... and a command ended by a bare LF is refused too. */
    f = greeted();
    expect(f, "NOOP\n", "550 5.5.2 Error: bare <LF> received\r\n");
    assert_true(f->closed);
    fake_free(f);
    /* A bare CR in the message is refused as well. */
    f = greeted();
    feed(f, "MAIL FROM:<bob@remote.test>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n");
    replies(f);
    feed(f, "one\rtwo\r\n.\r\n");
    assert_string_equal(replies(f), "550 5.5.2 Error: bare <CR> received\r\n");
    assert_int_equal(count_files("active"), 0);
    fake_free(f);
}

static void test_no_smuggling(void **state)
{
    (void)state;
    struct fake *f = greeted();
    feed(f, "MAIL FROM:<bob@remote.test>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n");
    replies(f);
    /* "\n.\n" and friends do not end the message: what follows stays content. */
    feed(f, "Subject: s\r\n\r\nbody\n.\nMAIL FROM:<evil@remote.test>\r\n"
            "RCPT TO:<victim@example.org>\r\nDATA\r\nsmuggled\r\n.\r\n");
    const char *r = replies(f);
    char id[QUEUE_ID_LEN];
    queued_id(r, id);
    /* Exactly one reply: the 250 for the one message. */
    assert_int_equal(strlen(r), strlen("250 2.0.0 Ok: queued as ") + 16 + 2);
    assert_int_equal(count_files("active"), 1);
    struct envelope env;
    char *msg = message_of(id, &env);
    assert_int_equal(env.nrcpt, 1);
    assert_string_equal(env.rcpts[0], "alice@example.org");
    assert_non_null(strstr(msg, "body\r\n.\r\nMAIL FROM:<evil@remote.test>\r\n"
                                "RCPT TO:<victim@example.org>\r\nDATA\r\nsmuggled\r\n"));
    free(msg);
    envelope_free(&env);
    fake_free(f);
}

static void test_release_during_data(void **state)
{
    (void)state;
    struct fake *f = greeted();
    feed(f, "MAIL FROM:<bob@remote.test>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n"
            "half a message\r\n");
    assert_int_equal(count_files("tmp"), 1);
    /* The client goes away: nothing may stay behind. */
    fake_free(f);
    assert_int_equal(count_files("tmp"), 0);
    assert_int_equal(count_files("active"), 0);
}

static void test_queue_unavailable(void **state)
{
    (void)state;
    char missing[128];
    snprintf(missing, sizeof missing, "%s/does-not-exist", qdir);
    struct conf_errors errs = {0};
    conf_set("queue_directory", missing, &errs);
    assert_int_equal(errs.count, 0);
    struct fake *f = greeted();
    feed(f, "MAIL FROM:<bob@remote.test>\r\nRCPT TO:<alice@example.org>\r\n");
    replies(f);
    expect(f, "DATA\r\n", "451 4.3.0 Error: queue file write error\r\n");
    /* The transaction is still there: the client may retry DATA. */
    expect(f, "DATA\r\n", "451 4.3.0 Error: queue file write error\r\n");
    fake_free(f);
}

static void test_shutdown_and_timeout(void **state)
{
    (void)state;
    struct fake *f = greeted();
    session_shutdown(f->s);
    assert_string_equal(replies(f),
                        "421 4.3.2 mx.test Service shutting down, closing transmission channel\r\n");
    assert_true(f->closed);
    fake_free(f);

    /* During a transaction the shutdown waits for the next command. */
    f = greeted();
    expect(f, "MAIL FROM:<bob@remote.test>\r\n", "250 2.1.0 Ok\r\n");
    session_shutdown(f->s);
    assert_string_equal(replies(f), "");
    assert_false(f->closed);
    expect(f, "RCPT TO:<alice@example.org>\r\n",
           "421 4.3.2 mx.test Service shutting down, closing transmission channel\r\n");
    assert_true(f->closed);
    fake_free(f);

    f = greeted();
    feed(f, "MAIL FROM:<bob@remote.test>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\npartial\r\n");
    replies(f);
    session_timeout(f->s);
    assert_string_equal(replies(f), "421 4.4.2 mx.test Error: timeout exceeded\r\n");
    assert_true(f->closed);
    assert_int_equal(count_files("tmp"), 0);
    fake_free(f);
}

static void test_smtputf8(void **state)
{
    (void)state;
    struct fake *f = greeted();
    expect(f, "MAIL FROM:<j\xc3\xb6rg@remote.test>\r\n",
           "553 5.6.7 Must declare SMTPUTF8 to send unicode address\r\n");
    expect(f, "MAIL FROM:<j\xc3\x28rg@remote.test> SMTPUTF8\r\n",
           "501 5.1.7 Bad sender address syntax\r\n");
    expect(f, "MAIL FROM:<j\xc3\xb6rg@remote.test> SMTPUTF8\r\n", "250 2.1.0 Ok\r\n");
    expect(f, "RCPT TO:<m\xc3\xbcller@example.org>\r\n", "250 2.1.5 Ok\r\n");
    feed(f, "DATA\r\nx\r\n.\r\n");
    char id[QUEUE_ID_LEN];
    queued_id(replies(f), id);
    struct envelope env;
    char *msg = message_of(id, &env);
    assert_string_equal(env.proto, "UTF8SMTP");
    assert_string_equal(env.sender, "j\xc3\xb6rg@remote.test");
    free(msg);
    envelope_free(&env);
    fake_free(f);
}

static void test_address_forms(void **state)
{
    (void)state;
    struct fake *f = greeted();
    /* A source route is dropped; a quoted local part may hold '>' and spaces. */
    expect(f, "MAIL FROM:<@relay.test,@other.test:bob@remote.test>\r\n", "250 2.1.0 Ok\r\n");
    expect(f, "RCPT TO:<\"odd> name\"@example.org>\r\n", "250 2.1.5 Ok\r\n");
    expect(f, "RCPT TO: <alice@example.org>\r\n", "250 2.1.5 Ok\r\n");
    expect(f, "RCPT TO:<a b@example.org>\r\n", "501 5.5.4 Syntax: RCPT TO:<address>\r\n");
    expect(f, "RCPT TO:<@relay.test>\r\n", "501 5.5.4 Syntax: RCPT TO:<address>\r\n");
    expect(f, "RCPT TO:<>\r\n", "501 5.1.3 Bad recipient address syntax\r\n");
    feed(f, "DATA\r\nx\r\n.\r\n");
    char id[QUEUE_ID_LEN];
    queued_id(replies(f), id);
    struct envelope env;
    char *msg = message_of(id, &env);
    assert_string_equal(env.sender, "bob@remote.test");
    assert_int_equal(env.nrcpt, 2);
    assert_string_equal(env.rcpts[0], "\"odd> name\"@example.org");
    assert_string_equal(env.rcpts[1], "alice@example.org");
    free(msg);
    envelope_free(&env);
    fake_free(f);
}

static void test_smtps_banner_after_handshake(void **state)
{
    (void)state;
    struct fake *f = fake_new_from("2001:db8::10", 1, LISTEN_SMTPS);
    session_start(f->s, NULL);
    /* The banner waits for the TLS handshake. */
    assert_string_equal(replies(f), "");
    struct tls_peer peer;
    memset(&peer, 0, sizeof peer);
    snprintf(peer.protocol, sizeof peer.protocol, "%s", "TLSv1.3");
    snprintf(peer.cipher, sizeof peer.cipher, "%s", "TLS_AES_128_GCM_SHA256");
    peer.bits = peer.alg_bits = 128;
    session_tls_established(f->s, &peer);
    assert_string_equal(replies(f), "220 mx.test ESMTP keypost\r\n");
    feed(f, "EHLO client.test\r\n");
    assert_null(strstr(replies(f), "STARTTLS"));
    expect(f, "MAIL FROM:<bob@remote.test>\r\n", "250 2.1.0 Ok\r\n");
    expect(f, "RCPT TO:<alice@example.org>\r\n", "250 2.1.5 Ok\r\n");
    feed(f, "DATA\r\nx\r\n.\r\n");
    char id[QUEUE_ID_LEN];
    queued_id(replies(f), id);
    struct envelope env;
    char *msg = message_of(id, &env);
    assert_string_equal(env.client, "client.example[2001:db8::10]");
    assert_string_equal(env.proto, "ESMTPS");
    assert_non_null(strstr(msg, "Received: from client.test (client.example [2001:db8::10])\r\n"));
    free(msg);
    envelope_free(&env);
    fake_free(f);
}

static void test_tls_required(void **state)
{
    (void)state;
    static const char *const cfg[] = {"smtpd_tls_security_level", "encrypt",
                                      "smtpd_tls_req_ccert", "yes", NULL};
    configure(cfg);
    struct fake *f = fake_new_from("192.0.2.10", 1, LISTEN_SMTP);
    session_start(f->s, NULL);
    feed(f, "EHLO client.test\r\n");
    replies(f);
    expect(f, "MAIL FROM:<bob@remote.test>\r\n",
           "530 5.7.0 Must issue a STARTTLS command first\r\n");
    expect(f, "STARTTLS\r\n", "220 2.0.0 Ready to start TLS\r\n");
    struct tls_peer peer;
    memset(&peer, 0, sizeof peer);
    snprintf(peer.protocol, sizeof peer.protocol, "%s", "TLSv1.3");
    session_tls_established(f->s, &peer);
    assert_string_equal(replies(f), "421 4.7.1 mx.test Error: No client certificate presented\r\n");
    assert_true(f->closed);
    fake_free(f);

    /* A certificate that is not trusted is refused as well. */
    f = fake_new_from("192.0.2.10", 1, LISTEN_SMTP);
    session_start(f->s, NULL);
    feed(f, "EHLO client.test\r\nSTARTTLS\r\n");
    replies(f);
    peer.trust.has_cert = 1;
    session_tls_established(f->s, &peer);
    assert_string_equal(replies(f), "421 4.7.1 mx.test Error: Client certificate not trusted\r\n");
    assert_true(f->closed);
    fake_free(f);

    /* A trusted one goes on. */
    f = fake_new_from("192.0.2.10", 1, LISTEN_SMTP);
    session_start(f->s, NULL);
    feed(f, "EHLO client.test\r\nSTARTTLS\r\n");
    replies(f);
    peer.trust.trusted = 1;
    session_tls_established(f->s, &peer);
    assert_string_equal(replies(f), "");
    assert_false(f->closed);
    feed(f, "EHLO client.test\r\n");
    replies(f);
    expect(f, "MAIL FROM:<bob@remote.test>\r\n", "250 2.1.0 Ok\r\n");
    fake_free(f);
}

static void test_hold_and_discard(void **state)
{
    (void)state;
    static const char *const cfg[] = {
        "smtpd_recipient_restrictions",
        "check_recipient_access inline:{ held@example.org=HOLD, dropped@example.org=DISCARD }",
        NULL};
    configure(cfg);
    empty_dir("hold");
    struct fake *f = greeted();
    /* HOLD: the message is committed into hold/, not active/. */
    feed(f, "MAIL FROM:<bob@remote.test>\r\nRCPT TO:<held@example.org>\r\nDATA\r\n");
    assert_string_equal(replies(f), "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"
                                    "354 End data with <CR><LF>.<CR><LF>\r\n");
    feed(f, "held\r\n.\r\n");
    char id[QUEUE_ID_LEN];
    queued_id(replies(f), id);
    assert_int_equal(count_files("active"), 0);
    assert_int_equal(count_files("hold"), 1);
    assert_int_equal(count_files("tmp"), 0);
    struct envelope env;
    assert_int_equal(queue_load(qdir, "hold", id, &env), 0);
    assert_int_equal(env.hold, 1);
    envelope_free(&env);
    empty_dir("hold");

    /* DISCARD: accepted, then dropped; nothing stays in the queue. */
    feed(f, "MAIL FROM:<bob@remote.test>\r\nRCPT TO:<dropped@example.org>\r\n"
            "RCPT TO:<alice@example.org>\r\nDATA\r\nx\r\n.\r\n");
    const char *r = replies(f);
    const char *d = strstr(r, "250 2.0.0 Ok: discarded as ");
    assert_non_null(d);
    assert_int_equal(count_files("active"), 0);
    assert_int_equal(count_files("hold"), 0);
    assert_int_equal(count_files("tmp"), 0);
    /* The next transaction is normal again. */
    feed(f, "MAIL FROM:<bob@remote.test>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n"
            "y\r\n.\r\n");
    queued_id(replies(f), id);
    assert_int_equal(count_files("active"), 1);
    fake_free(f);
}

/* AUTH's refusals, which need no Dovecot (no event loop here). */
static void test_auth_refusals(void **state)
{
    (void)state;
    struct fake *f = greeted();
    expect(f, "AUTH PLAIN AGEAYg==\r\n", "503 5.5.1 Error: authentication not enabled\r\n");
    fake_free(f);

    const char *on[] = {"smtpd_sasl_auth_enable", "yes", NULL};
    configure(on);
    f = greeted();
    expect(f, "AUTH PLAIN AGEAYg==\r\n",
           "538 5.7.11 Encryption required for requested authentication mechanism\r\n");
    fake_free(f);

    const char *clear[] = {"smtpd_sasl_auth_enable", "yes", "smtpd_tls_auth_only", "no", NULL};
    configure(clear);
    f = greeted();
    /* Dovecot never answered: no AUTH line, and a temporary failure */
    feed(f, "EHLO client.test\r\n");
    assert_null(strstr(replies(f), "AUTH"));
    expect(f, "AUTH PLAIN AGEAYg==\r\n", "454 4.7.0 Temporary authentication failure\r\n");
    expect(f, "AUTH EXTERNAL =\r\n", "504 5.5.4 Unrecognized authentication type\r\n");
    expect(f, "AUTH\r\n", "501 5.5.4 Syntax: AUTH mechanism [initial-response]\r\n");
    expect(f, "MAIL FROM:<a@example.org>\r\n", "250 2.1.0 Ok\r\n");
    expect(f, "AUTH PLAIN AGEAYg==\r\n", "503 5.5.1 Error: MAIL transaction in progress\r\n");
    fake_free(f);
}

static int group_setup(void **state)
{
    (void)state;
    log_open("/dev/null");
    snprintf(qdir, sizeof qdir, "%s", "/tmp/kp-test-session-XXXXXX");
    if (mkdtemp(qdir) == NULL)
        return -1;
    char err[256];
    return queue_init_dirs(qdir, -1, -1, err, sizeof err);
}

static int group_teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", qdir);
    conf_defaults();
    return system(cmd) == 0 ? 0 : -1;
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_greeting),
        T(test_auth_refusals),
        T(test_greeting_refused),
        T(test_ehlo_helo),
        T(test_ehlo_size_follows_config),
        T(test_mail_happy_path),
        T(test_pipelined_dialogue),
        T(test_bytewise_dialogue),
        T(test_wrong_order),
        T(test_syntax_errors),
        T(test_relay_denied),
        T(test_recipient_limit),
        T(test_overlong_line),
        T(test_hard_error_limit),
        T(test_hard_error_limit_default),
        T(test_starttls_unavailable),
        T(test_starttls),
        T(test_message_too_big),
        T(test_bare_lf_in_data),
        T(test_no_smuggling),
        T(test_release_during_data),
        T(test_queue_unavailable),
        T(test_shutdown_and_timeout),
        T(test_smtputf8),
        T(test_address_forms),
        T(test_smtps_banner_after_handshake),
        T(test_tls_required),
        T(test_hold_and_discard),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
