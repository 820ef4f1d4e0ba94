/* Unit tests for the spool (src/queue/queue.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "queue/queue.h"

static char qdir[64];

static int setup(void **state)
{
    (void)state;
    snprintf(qdir, sizeof qdir, "%s", "/tmp/kp-test-queue-XXXXXX");
    if (mkdtemp(qdir) == NULL)
        return -1;
    char err[256];
    return queue_init_dirs(qdir, -1, -1, err, sizeof err);
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", qdir);
    return system(cmd) == 0 ? 0 : -1;
}

static int exists(const char *sub, const char *id)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s/%s", qdir, sub, id);
    struct stat st;
    return stat(path, &st) == 0;
}

/* Number of entries in QDIR/sub other than "." and "..". */
static int count_files(const char *sub)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", qdir, sub);
    DIR *d = opendir(path);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

/* The whole file as a malloc'd buffer. */
static char *slurp(const char *sub, const char *id, size_t *len)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s/%s", qdir, sub, id);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = malloc((size_t)n + 1);
    assert_int_equal(fread(p, 1, (size_t)n, f), (size_t)n);
    p[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return p;
}

static char *rcpts2[] = {"alice@example.org", "carol@example.org"};

static struct envelope sample_env(void)
{
    struct envelope env = {0};
    env.arrival = 1795436593;
    env.sender = "bob@remote.test";
    env.rcpts = rcpts2;
    env.nrcpt = 2;
    env.client = "client.example[192.0.2.10]";
    env.helo = "client.test";
    env.proto = "ESMTPS";
    env.hold = 0;
    env.smtputf8 = 0;
    env.eightbit = 1;
    return env;
}

/* Create, write, commit; returns the id in out. */
static void make_message(const struct envelope *env, const char *body, size_t n,
                         char out[QUEUE_ID_LEN])
{
    struct qfile *q = queue_create(qdir, env);
    assert_non_null(q);
    assert_int_equal(strlen(queue_file_id(q)), QUEUE_ID_LEN - 1);
    snprintf(out, QUEUE_ID_LEN, "%s", queue_file_id(q));
    assert_true(exists("tmp", out));
    assert_int_equal(queue_write(q, body, n), 0);
    assert_int_equal(queue_commit(q), 0);
    queue_close(q);
}

static void test_init_dirs(void **state)
{
    (void)state;
    static const char *const subs[] = {"tmp", "active", "hold", "state"};
    for (size_t i = 0; i < 4; i++) {
        char path[256];
        snprintf(path, sizeof path, "%s/%s", qdir, subs[i]);
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        assert_true(S_ISDIR(st.st_mode));
    }
    /* Running it again is harmless. */
    char err[256];
    assert_int_equal(queue_init_dirs(qdir, -1, -1, err, sizeof err), 0);
    /* A directory that cannot be made is an error with a message. */
    err[0] = '\0';
    assert_int_equal(queue_init_dirs("/nonexistent-dir/for/keypost", -1, -1, err, sizeof err),
                     -1);
    assert_non_null(strstr(err, "/nonexistent-dir/for/keypost"));
}

static void test_ids(void **state)
{
    (void)state;
    char seen[50][QUEUE_ID_LEN];
    for (int i = 0; i < 50; i++) {
        queue_new_id(seen[i]);
        assert_int_equal(strlen(seen[i]), 16);
        for (int k = 0; k < 16; k++)
            assert_non_null(strchr("0123456789ABCDEF", seen[i][k]));
        for (int j = 0; j < i; j++)
            assert_string_not_equal(seen[i], seen[j]);
    }
}

static void test_round_trip(void **state)
{
    (void)state;
    struct envelope env = sample_env();
    const char *body = "Received: from client.test\r\n\tby mx\r\n"
                       "Subject: test\r\n\r\nHello\r\n";
    char id[QUEUE_ID_LEN];
    make_message(&env, body, strlen(body), id);
    /* Committed: in active/, gone from tmp/. */
    assert_true(exists("active", id));
    assert_false(exists("tmp", id));
    assert_int_equal(count_files("tmp"), 0);

    struct envelope got;
    assert_int_equal(queue_load(qdir, "active", id, &got), 0);
    assert_string_equal(got.id, id);
    assert_int_equal(got.arrival, 1795436593);
    assert_string_equal(got.sender, "bob@remote.test");
    assert_int_equal(got.nrcpt, 2);
    assert_string_equal(got.rcpts[0], "alice@example.org");
    assert_string_equal(got.rcpts[1], "carol@example.org");
    assert_string_equal(got.client, "client.example[192.0.2.10]");
    assert_string_equal(got.helo, "client.test");
    assert_string_equal(got.proto, "ESMTPS");
    assert_int_equal(got.hold, 0);
    assert_int_equal(got.smtputf8, 0);
    assert_int_equal(got.eightbit, 1);
    assert_int_equal(got.size, (off_t)strlen(body));

    /* body_offset points at the message, right after the header's blank line. */
    size_t len;
    char *file = slurp("active", id, &len);
    assert_int_equal(len, (size_t)got.body_offset + strlen(body));
    assert_memory_equal(file + got.body_offset, body, strlen(body));
    assert_memory_equal(file, "KEYPOST-QUEUE 1\nid ", 19);
    assert_memory_equal(file + got.body_offset - 2, "\n\n", 2);
    free(file);
    envelope_free(&got);
    assert_null(got.sender);
    assert_int_equal(got.nrcpt, 0);
}

static void test_null_sender_and_flags(void **state)
{
    (void)state;
    struct envelope env = sample_env();
    env.sender = "";
    env.nrcpt = 1;
    env.smtputf8 = 1;
    env.eightbit = 0;
    char id[QUEUE_ID_LEN];
    make_message(&env, "", 0, id);
    struct envelope got;
    assert_int_equal(queue_load(qdir, "active", id, &got), 0);
    assert_non_null(got.sender);
    assert_string_equal(got.sender, "");
    assert_int_equal(got.nrcpt, 1);
    assert_int_equal(got.hold, 0);
    assert_int_equal(got.smtputf8, 1);
    assert_int_equal(got.eightbit, 0);
    assert_int_equal(got.size, 0);
    envelope_free(&got);
}

static void test_hold_commits_to_hold(void **state)
{
    (void)state;
    /* A message an access table put on HOLD is committed into hold/. */
    struct envelope env = sample_env();
    env.hold = 1;
    struct qfile *q = queue_create(qdir, &env);
    assert_non_null(q);
    char id[QUEUE_ID_LEN];
    snprintf(id, sizeof id, "%s", queue_file_id(q));
    assert_int_equal(queue_write(q, "held\r\n", 6), 0);
    assert_int_equal(queue_commit(q), 0);
    queue_close(q);
    assert_false(exists("active", id));
    assert_false(exists("tmp", id));
    assert_true(exists("hold", id));
    struct envelope got;
    assert_int_equal(queue_load(qdir, "hold", id, &got), 0);
    assert_int_equal(got.hold, 1);
    assert_int_equal(got.size, 6);
    envelope_free(&got);
    /* Released with `keypost queue release`: back to active/. */
    assert_int_equal(queue_move(qdir, id, "hold", "active"), 0);
    assert_true(exists("active", id));
}

static void test_large_body(void **state)
{
    (void)state;
    /* Several times the write buffer, written in odd-sized pieces. */
    size_t n = 300000;
    char *body = malloc(n);
    for (size_t i = 0; i < n; i++)
        body[i] = (char)('a' + i % 26);
    struct envelope env = sample_env();
    struct qfile *q = queue_create(qdir, &env);
    assert_non_null(q);
    char id[QUEUE_ID_LEN];
    snprintf(id, sizeof id, "%s", queue_file_id(q));
    for (size_t off = 0; off < n;) {
        size_t c = n - off < 7777 ? n - off : 7777;
        assert_int_equal(queue_write(q, body + off, c), 0);
        off += c;
    }
    assert_int_equal(queue_commit(q), 0);
    queue_close(q);
    struct envelope got;
    assert_int_equal(queue_load(qdir, "active", id, &got), 0);
    assert_int_equal(got.size, (off_t)n);
    size_t len;
    char *file = slurp("active", id, &len);
    assert_memory_equal(file + got.body_offset, body, n);
    free(file);
    free(body);
    envelope_free(&got);
}

static void test_abort_leaves_nothing(void **state)
{
    (void)state;
    struct envelope env = sample_env();
    struct qfile *q = queue_create(qdir, &env);
    assert_non_null(q);
    char id[QUEUE_ID_LEN];
    snprintf(id, sizeof id, "%s", queue_file_id(q));
    assert_true(exists("tmp", id));
    assert_int_equal(queue_write(q, "data\r\n", 6), 0);
    queue_abort(q);
    assert_int_equal(count_files("tmp"), 0);
    assert_int_equal(count_files("active"), 0);
    queue_abort(NULL);
}

static void test_state_marks(void **state)
{
    (void)state;
    struct envelope env = sample_env();
    char *four[] = {"a@x.test", "b@x.test", "c@x.test", "d@x.test"};
    env.rcpts = four;
    env.nrcpt = 4;
    char id[QUEUE_ID_LEN];
    make_message(&env, "x\r\n", 3, id);
    struct envelope got;
    assert_int_equal(queue_load(qdir, "active", id, &got), 0);

    struct queue_state st;
    assert_int_equal(queue_state_load(qdir, &got, &st), 0);
    assert_int_equal(st.attempts, 0);
    assert_int_equal(st.next_attempt, 0);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(st.done[i], 0);
        assert_null(st.reason[i]);
    }
    queue_state_free(&st, got.nrcpt);

    assert_int_equal(queue_state_mark(qdir, id, 0, 'D', NULL), 0);
    assert_int_equal(queue_state_mark(qdir, id, 2, 'B', "550 5.1.1 <c@x.test>: no such user"), 0);
    /* A temporary failure keeps the recipient pending but records why. */
    assert_int_equal(queue_state_mark(qdir, id, 1, 'T', "451 4.3.0 try\r\nlater"), 0);
    assert_int_equal(queue_state_attempt(qdir, id, 1795437000), 0);
    assert_int_equal(queue_state_attempt(qdir, id, 1795438000), 0);
    /* Bounced, then the sender was notified. */
    assert_int_equal(queue_state_mark(qdir, id, 3, 'B', "554 rejected"), 0);
    assert_int_equal(queue_state_mark(qdir, id, 3, 'N', NULL), 0);
    /* A recipient number out of range is ignored when read back. */
    assert_int_equal(queue_state_mark(qdir, id, 7, 'D', NULL), 0);

    assert_int_equal(queue_state_load(qdir, &got, &st), 0);
    assert_int_equal(st.done[0], 'D');
    assert_int_equal(st.done[1], 0);
    assert_int_equal(st.done[2], 'B');
    assert_int_equal(st.done[3], 'N');
    assert_null(st.reason[0]);
    assert_string_equal(st.reason[1], "451 4.3.0 try  later");
    assert_string_equal(st.reason[2], "550 5.1.1 <c@x.test>: no such user");
    assert_string_equal(st.reason[3], "554 rejected");
    assert_int_equal(st.attempts, 2);
    assert_int_equal(st.next_attempt, 1795438000);
    queue_state_free(&st, got.nrcpt);
    assert_null(st.done);
    assert_null(st.reason);

    /* The state file is the documented append-only text, one line per
     * event even when a remote reply held line breaks. */
    size_t len;
    char *text = slurp("state", id, &len);
    assert_string_equal(text, "D 0\n"
                              "B 2 550 5.1.1 <c@x.test>: no such user\n"
                              "T 1 451 4.3.0 try  later\n"
                              "A 1795437000\n"
                              "A 1795438000\n"
                              "B 3 554 rejected\n"
                              "N 3\n"
                              "D 7\n");
    free(text);
    envelope_free(&got);
}

static void test_remove(void **state)
{
    (void)state;
    struct envelope env = sample_env();
    char id[QUEUE_ID_LEN];
    make_message(&env, "x\r\n", 3, id);
    assert_int_equal(queue_state_mark(qdir, id, 0, 'D', NULL), 0);
    assert_true(exists("state", id));
    assert_int_equal(queue_remove(qdir, id), 0);
    assert_false(exists("active", id));
    assert_false(exists("state", id));
    struct envelope got;
    assert_int_equal(queue_load(qdir, "active", id, &got), -1);
    /* Nothing left to remove. */
    assert_int_equal(queue_remove(qdir, id), -1);
}

static void test_move_hold(void **state)
{
    (void)state;
    struct envelope env = sample_env();
    char id[QUEUE_ID_LEN];
    make_message(&env, "x\r\n", 3, id);
    assert_int_equal(queue_move(qdir, id, "active", "hold"), 0);
    assert_false(exists("active", id));
    assert_true(exists("hold", id));
    struct envelope got;
    assert_int_equal(queue_load(qdir, "hold", id, &got), 0);
    assert_string_equal(got.sender, "bob@remote.test");
    envelope_free(&got);
    assert_int_equal(queue_remove(qdir, id), 0);
    assert_false(exists("hold", id));
}

static int collect(const char *id, void *arg)
{
    int *n = arg;
    assert_int_equal(strlen(id), 16);
    (*n)++;
    return 0;
}

static void test_scan_and_clean_tmp(void **state)
{
    (void)state;
    struct envelope env = sample_env();
    char id[QUEUE_ID_LEN];
    make_message(&env, "x\r\n", 3, id);
    make_message(&env, "y\r\n", 3, id);
    /* Not queue ids: ignored by the scan. */
    char path[256];
    snprintf(path, sizeof path, "%s/active/README", qdir);
    fclose(fopen(path, "w"));
    snprintf(path, sizeof path, "%s/active/0123456789abcdef", qdir);
    fclose(fopen(path, "w"));
    int n = 0;
    assert_int_equal(queue_scan(qdir, "active", collect, &n), 0);
    assert_int_equal(n, 2);

    /* Two unfinished messages, as after a crash. */
    struct qfile *a = queue_create(qdir, &env);
    struct qfile *b = queue_create(qdir, &env);
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(count_files("tmp"), 2);
    queue_clean_tmp(qdir);
    assert_int_equal(count_files("tmp"), 0);
    queue_close(a);
    queue_close(b);
    assert_int_equal(queue_scan("/nonexistent-dir", "active", collect, &n), -1);
}

static void test_load_rejects_bad_files(void **state)
{
    (void)state;
    struct envelope got;
    assert_int_equal(queue_load(qdir, "active", "0000000000000000", &got), -1);

    static const char *const bad[] = {
        "NOT-A-QUEUE 1\nid 1\nsender a@b\n\nbody",
        "KEYPOST-QUEUE 1\nid 1\nsender a@b\nrcpt c@d\n", /* no end of header */
        "KEYPOST-QUEUE 1\nid 1\nrcpt c@d\n\nbody",        /* no sender line */
        "KEYPOST-QUEUE 1\nid ../../etc/x\nsender a@b\n\nbody", /* an id that climbs */
        "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char path[256];
        snprintf(path, sizeof path, "%s/active/00000000000000A%zu", qdir, i);
        FILE *f = fopen(path, "w");
        fputs(bad[i], f);
        fclose(f);
        char id[32];
        snprintf(id, sizeof id, "00000000000000A%zu", i);
        memset(&got, 0x55, sizeof got);
        assert_int_equal(queue_load(qdir, "active", id, &got), -1);
        assert_int_equal(errno, EBADMSG);
        /* Nothing is left allocated for the caller to free. */
        assert_null(got.sender);
        assert_null(got.rcpts);
    }
}

/* What queue.c reported as refused: the last path and reason, and a count. */
static char refused_path[512], refused_why[128];
static int refusals;

static void note_refusal(const char *path, const char *why)
{
    snprintf(refused_path, sizeof refused_path, "%s", path);
    snprintf(refused_why, sizeof refused_why, "%s", why);
    refusals++;
}

/* queue_load of QDIR/sub/id must fail with ELOOP and report a path that
 * contains what (the id, or the directory when that is the link). */
static void assert_refused_as(const char *sub, const char *id, const char *what, const char *why)
{
    struct envelope got;
    int before = refusals;
    errno = 0;
    assert_int_equal(queue_load(qdir, sub, id, &got), -1);
    assert_int_equal(errno, ELOOP);
    assert_null(got.sender);
    assert_int_equal(refusals, before + 1);
    assert_non_null(strstr(refused_path, what));
    assert_non_null(strstr(refused_why, why));
}

static void assert_refused(const char *sub, const char *id, const char *why)
{
    assert_refused_as(sub, id, id, why);
}

static void qpath(char *out, size_t len, const char *sub, const char *id)
{
    snprintf(out, len, "%s/%s/%s", qdir, sub, id);
}

static void test_load_refuses_links(void **state)
{
    (void)state;
    queue_set_refusal_reporter(note_refusal);
    struct envelope env = sample_env();
    char id[QUEUE_ID_LEN], real[256], name[256];
    make_message(&env, "x\r\n", 3, id);
    qpath(real, sizeof real, "active", id);

    /* A valid queue file behind a symbolic link is never read. */
    qpath(name, sizeof name, "active", "00000000000000A1");
    assert_int_equal(symlink(real, name), 0);
    assert_refused("active", "00000000000000A1", "symbolic link");
    qpath(name, sizeof name, "hold", "00000000000000A2");
    assert_int_equal(symlink(real, name), 0);
    assert_refused("hold", "00000000000000A2", "symbolic link");

    /* A second name of a file is refused, under both names while it exists. */
    qpath(name, sizeof name, "hold", "00000000000000A3");
    assert_int_equal(link(real, name), 0);
    assert_refused("hold", "00000000000000A3", "hard link");
    assert_refused("active", id, "hard link");
    assert_int_equal(unlink(name), 0);
    struct envelope got;
    assert_int_equal(queue_load(qdir, "active", id, &got), 0);
    envelope_free(&got);

    /* A FIFO is refused at once, not waited on. */
    qpath(name, sizeof name, "active", "00000000000000A4");
    assert_int_equal(mkfifo(name, 0600), 0);
    assert_refused("active", "00000000000000A4", "not a regular file");

    /* Gone is not refused: ENOENT, nothing reported. */
    int before = refusals;
    assert_int_equal(queue_load(qdir, "active", "00000000000000A5", &got), -1);
    assert_int_equal(errno, ENOENT);
    assert_int_equal(refusals, before);
    queue_set_refusal_reporter(NULL);
}

static void test_state_link_refused(void **state)
{
    (void)state;
    queue_set_refusal_reporter(note_refusal);
    struct envelope env = sample_env();
    char id[QUEUE_ID_LEN], name[256], elsewhere[256];
    make_message(&env, "x\r\n", 3, id);
    snprintf(elsewhere, sizeof elsewhere, "%s/elsewhere", qdir);
    FILE *f = fopen(elsewhere, "w");
    fputs("D 0\nA 1795437000\n", f);
    fclose(f);
    qpath(name, sizeof name, "state", id);
    assert_int_equal(symlink(elsewhere, name), 0);
    struct envelope got;
    assert_int_equal(queue_load(qdir, "active", id, &got), 0);
    struct queue_state st;
    errno = 0;
    assert_int_equal(queue_state_load(qdir, &got, &st), -1);
    assert_int_equal(errno, ELOOP);
    assert_string_equal(refused_path, name);
    /* Nothing of the linked file was taken in. */
    assert_int_equal(st.done[0], 0);
    assert_int_equal(st.attempts, 0);
    queue_state_free(&st, got.nrcpt);
    envelope_free(&got);
    queue_set_refusal_reporter(NULL);
}

static void test_linked_subdir_refused(void **state)
{
    (void)state;
    queue_set_refusal_reporter(note_refusal);
    struct envelope env = sample_env();
    char id[QUEUE_ID_LEN], hold[256], moved[256];
    make_message(&env, "x\r\n", 3, id);
    /* hold/ replaced by a link to a directory with a valid queue file. */
    snprintf(hold, sizeof hold, "%s/hold", qdir);
    snprintf(moved, sizeof moved, "%s/hold.real", qdir);
    assert_int_equal(rename(hold, moved), 0);
    assert_int_equal(symlink("active", hold), 0);
    int n = 0;
    errno = 0;
    assert_int_equal(queue_scan(qdir, "hold", collect, &n), -1);
    assert_int_equal(errno, ELOOP);
    assert_int_equal(n, 0);
    assert_string_equal(refused_path, hold);
    assert_refused_as("hold", id, hold, "symbolic link");
    assert_string_equal(refused_path, hold); /* the directory, not the file */
    queue_set_refusal_reporter(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_init_dirs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ids, setup, teardown),
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_null_sender_and_flags, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hold_commits_to_hold, setup, teardown),
        cmocka_unit_test_setup_teardown(test_large_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abort_leaves_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_state_marks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remove, setup, teardown),
        cmocka_unit_test_setup_teardown(test_move_hold, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scan_and_clean_tmp, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_rejects_bad_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_refuses_links, setup, teardown),
        cmocka_unit_test_setup_teardown(test_state_link_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_linked_subdir_refused, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
