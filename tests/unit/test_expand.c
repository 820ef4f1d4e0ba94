/* Unit tests for alias expansion (src/addr/expand.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr/addrclass.h"
#include "addr/expand.h"
#include "conf/conf.h"

static void configure(const char *aliases, const char *virtual_aliases)
{
    struct conf_errors errs = {0};
    conf_defaults();
    conf_set("myhostname", "mx.example.org", &errs);
    conf_set("mydestination", "example.org, $myhostname", &errs);
    conf_set("virtual_alias_domains", "alias.test", &errs);
    conf_set("recipient_delimiter", "+", &errs);
    conf_set("alias_maps", aliases, &errs);
    conf_set("virtual_alias_maps", virtual_aliases, &errs);
    addrclass_init(&errs);
    for (int i = 0; i < errs.count; i++)
        print_message("error: %s\n", errs.msgs[i]);
    assert_int_equal(errs.count, 0);
}

/* Expand one recipient; the result as "addr<orig addr<orig ...". */
static enum expand_status run(const char *rcpt, char *result, size_t len, char *err)
{
    char *rcpts[1] = {(char *)rcpt};
    struct expansion x;
    enum expand_status st = expand_recipients(rcpts, NULL, 1, &x, err, 300);
    result[0] = '\0';
    for (int i = 0; i < x.n; i++)
        snprintf(result + strlen(result), len - strlen(result), "%s%s<%s", i ? " " : "",
                 x.addrs[i], x.origs[i]);
    expansion_free(&x);
    return st;
}

static void expect(const char *rcpt, const char *want)
{
    char got[4096], err[300];
    assert_int_equal(run(rcpt, got, sizeof got, err), EXPAND_OK);
    assert_string_equal(got, want);
}

static void test_no_alias(void **state)
{
    (void)state;
    configure("", "");
    expect("alice@example.org", "alice@example.org<alice@example.org");
    expect("x@elsewhere.test", "x@elsewhere.test<x@elsewhere.test");
}

static void test_local_aliases(void **state)
{
    (void)state;
    configure("inline:{ postmaster=alice, { team = alice, bob@example.org, carol@remote.test },"
              " alice=alice }", "");
    expect("postmaster@example.org", "alice@example.org<postmaster@example.org");
    expect("team@example.org", "alice@example.org<team@example.org "
                               "bob@example.org<team@example.org "
                               "carol@remote.test<team@example.org");
    /* Extension: looked up as team+x, then team. */
    expect("team+x@example.org", "alice@example.org<team+x@example.org "
                                 "bob@example.org<team+x@example.org "
                                 "carol@remote.test<team+x@example.org");
    /* An alias file names users: remote addresses are not looked up in it. */
    expect("team@remote.test", "team@remote.test<team@remote.test");
}

static void test_virtual_aliases_recursive_and_deduplicated(void **state)
{
    (void)state;
    configure("", "inline:{ { info@alias.test = sales@alias.test, alice@example.org },"
                  " { sales@alias.test = bob@example.org, alice@example.org },"
                  " @catch.test=catchall@example.org }");
    expect("info@alias.test", "bob@example.org<info@alias.test "
                              "alice@example.org<info@alias.test");
    expect("anyone@catch.test", "catchall@example.org<anyone@catch.test");
}

static void test_self_reference_keeps_the_address(void **state)
{
    (void)state;
    configure("", "inline:{ { alice@example.org = alice@example.org, archive@example.org } }");
    expect("alice@example.org", "alice@example.org<alice@example.org "
                                "archive@example.org<alice@example.org");
}

static void test_loop_and_limits(void **state)
{
    (void)state;
    char got[4096], err[300];
    configure("", "inline:{ a@alias.test=b@alias.test, b@alias.test=a@alias.test }");
    assert_int_equal(run("a@alias.test", got, sizeof got, err), EXPAND_LIMIT);
    assert_non_null(strstr(err, "alias loop"));
    addrclass_free();
    /* Fan-out above virtual_alias_expansion_limit. */
    char table[8192] = "inline:{ { big@alias.test = ";
    for (int i = 0; i < 30; i++)
        snprintf(table + strlen(table), sizeof table - strlen(table), "%su%d@example.org",
                 i ? ", " : "", i);
    snprintf(table + strlen(table), sizeof table - strlen(table), " } }");
    configure("", table);
    struct conf_errors errs = {0};
    conf_set("virtual_alias_expansion_limit", "20", &errs);
    assert_int_equal(run("big@alias.test", got, sizeof got, err), EXPAND_LIMIT);
    assert_non_null(strstr(err, "expansion size for <big@alias.test>"));
    conf_set("virtual_alias_expansion_limit", "1000", &errs);
    assert_int_equal(run("big@alias.test", got, sizeof got, err), EXPAND_OK);
    addrclass_free();
}

static void test_commands_and_files_refused(void **state)
{
    (void)state;
    char got[4096], err[300];
    configure("inline:{ root=|/usr/bin/logger, log=/var/log/mail.txt }", "");
    assert_int_equal(run("root@example.org", got, sizeof got, err), EXPAND_UNSUPPORTED);
    assert_non_null(strstr(err, "command or file"));
    assert_int_equal(run("log@example.org", got, sizeof got, err), EXPAND_UNSUPPORTED);
    addrclass_free();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_alias),
        cmocka_unit_test(test_local_aliases),
        cmocka_unit_test(test_virtual_aliases_recursive_and_deduplicated),
        cmocka_unit_test(test_self_reference_keeps_the_address),
        cmocka_unit_test(test_loop_and_limits),
        cmocka_unit_test(test_commands_and_files_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
