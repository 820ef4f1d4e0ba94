/* Unit tests for the log line shapes and destinations (src/util/log.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/log.h"

static char dir[64];
static char path[128];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/kp-logtest-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/maillog", dir);
    log_set_role("smtpd");
    log_set_hostname("mx.example.org");
    assert_int_equal(log_open(path), 0);
    assert_int_equal(log_to_file(), 1);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
    return 0;
}

/* The file's content (at most 8 KiB). */
static char *slurp(const char *p)
{
    static char buf[8192];
    FILE *f = fopen(p, "r");
    assert_non_null(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void assert_matches(const char *text, const char *pattern)
{
    regex_t re;
    assert_int_equal(regcomp(&re, pattern, REG_EXTENDED | REG_NEWLINE | REG_NOSUB), 0);
    int r = regexec(&re, text, 0, NULL, 0);
    regfree(&re);
    if (r != 0)
        fail_msg("no line matching %s in:\n%s", pattern, text);
}

#define PREFIX "^[A-Z][a-z]{2} [0-3][0-9] [0-2][0-9]:[0-5][0-9]:[0-6][0-9] mx\\.example\\.org " \
               "keypost/smtpd\\[[0-9]+\\]: "

static void test_postfix_shapes(void **state)
{
    (void)state;
    log_info("4A2B3C", "to=<a@example.org>, relay=local, delay=0, status=sent (ok)");
    log_sinfo("S1234", "NOQUEUE: reject: RCPT from unknown[192.0.2.1]: 554 5.7.1 no");
    log_warn("4A2B3C", "cannot record delivery results");
    log_swarn("S1234", "pinned");
    const char *text = slurp(path);
    assert_matches(text, PREFIX "4A2B3C: to=<a@example\\.org>, relay=local, delay=0, "
                             "status=sent \\(ok\\)$");
    assert_matches(text, PREFIX "NOQUEUE: reject: RCPT from unknown\\[192\\.0\\.2\\.1\\]: "
                             "554 5\\.7\\.1 no session=S1234$");
    assert_matches(text, PREFIX "warning: 4A2B3C: cannot record delivery results$");
    assert_matches(text, PREFIX "warning: pinned session=S1234$");
}

static void test_controls_cannot_forge_lines(void **state)
{
    (void)state;
    log_sinfo("S1", "helo=<a\nJan 01 00:00:00 mx keypost/smtpd[1]: forged\r>");
    const char *text = slurp(path);
    assert_matches(text, PREFIX "helo=<a\\?Jan 01 00:00:00 mx keypost/smtpd\\[1\\]: "
                             "forged\\?> session=S1$");
    assert_null(strstr(text, "\nJan 01"));
}

static void test_long_line_is_cut_and_ended(void **state)
{
    (void)state;
    char big[6000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    log_sinfo("S9", "%s", big);
    const char *text = slurp(path);
    size_t len = strlen(text);
    assert_true(len <= 4096);
    assert_int_equal(text[len - 1], '\n');
    assert_int_equal(strchr(text, '\n') - text, (long)len - 1); /* one line */
}

static void test_reopen_follows_a_rename(void **state)
{
    (void)state;
    char old[160];
    snprintf(old, sizeof old, "%s.1", path);
    log_info(NULL, "before");
    assert_int_equal(rename(path, old), 0);
    log_info(NULL, "still old");
    assert_int_equal(log_reopen(), 0);
    log_info(NULL, "after");
    assert_matches(slurp(old), PREFIX "still old$");
    assert_null(strstr(slurp(old), "after"));
    assert_matches(slurp(path), PREFIX "after$");
}

static void test_pipe_takes_whole_lines(void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    log_use_fd(fds[1]);
    log_sinfo("S7", "connect from unknown[192.0.2.7]:25");
    char buf[512];
    ssize_t n = read(fds[0], buf, sizeof buf - 1);
    assert_true(n > 0);
    buf[n] = '\0';
    assert_matches(buf, PREFIX "connect from unknown\\[192\\.0\\.2\\.7\\]:25 session=S7$");
    close(fds[0]);
    close(fds[1]);
}

static void test_syslog_name_in_the_file_form(void **state)
{
    (void)state;
    assert_int_equal(log_set_syslog("key post", "mail"), -1);
    assert_int_equal(log_set_syslog("keypost", "kern"), -1);
    assert_int_equal(log_set_syslog("", "mail"), -1);
    assert_int_equal(log_set_syslog("postfix-keypost", "local3"), 0);
    log_info(NULL, "started");
    assert_int_equal(log_set_syslog("keypost", "mail"), 0);
    assert_matches(slurp(path), "^[A-Z][a-z]{2} [0-3][0-9] [0-9:]{8} mx\\.example\\.org "
                                "postfix-keypost/smtpd\\[[0-9]+\\]: started$");
    assert_true(log_name_ok("postfix.out_2-a"));
    assert_false(log_name_ok("a/b"));
    assert_false(log_name_ok("123456789012345678901234567890123")); /* 33 */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_postfix_shapes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_controls_cannot_forge_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_line_is_cut_and_ended, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_follows_a_rename, setup, teardown),
        cmocka_unit_test_setup_teardown(test_syslog_name_in_the_file_form, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipe_takes_whole_lines, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
