/* Unit tests for lookup tables (src/table/table.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "table/table.h"

static char tmpdir[64];

static const char *write_file(const char *name, const char *text)
{
    static char path[128];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static void test_inline(void **state)
{
    (void)state;
    char err[256] = "";
    struct table *t = table_open("inline:{ alpha=1, Beta=two,gamma=x, lonely }", err,
                                 sizeof err);
    assert_non_null(t);
    assert_string_equal(table_spec(t), "inline:{ alpha=1, Beta=two,gamma=x, lonely }");
    assert_string_equal(table_lookup(t, "alpha"), "1");
    assert_string_equal(table_lookup(t, "beta"), "two");
    assert_string_equal(table_lookup(t, "GAMMA"), "x");
    assert_int_equal(table_count(t), 4);
    /* A key alone has the empty value, which is not the same as absent. */
    assert_non_null(table_lookup(t, "lonely"));
    assert_string_equal(table_lookup(t, "lonely"), "");
    assert_null(table_lookup(t, "delta"));
    assert_null(table_lookup(t, ""));
    assert_null(table_lookup(t, "alph"));
    assert_null(table_lookup(t, "alphaa"));
    table_free(t);
}

static void test_inline_case_insensitive(void **state)
{
    (void)state;
    char err[256] = "";
    struct table *t = table_open("inline:{ Example.ORG=OK, AB:CD:EF=pinned }", err, sizeof err);
    assert_non_null(t);
    assert_string_equal(table_lookup(t, "example.org"), "OK");
    assert_string_equal(table_lookup(t, "EXAMPLE.ORG"), "OK");
    assert_string_equal(table_lookup(t, "eXaMpLe.OrG"), "OK");
    assert_string_equal(table_lookup(t, "ab:cd:ef"), "pinned");
    assert_string_equal(table_lookup(t, "AB:CD:EF"), "pinned");
    /* Values keep their case. */
    assert_string_equal(table_lookup(t, "Example.ORG"), "OK");
    /* Keys are stored lower case. */
    assert_int_equal(table_count(t), 2);
    int seen = 0;
    for (size_t i = 0; i < table_count(t); i++) {
        seen |= strcmp(table_key(t, i), "example.org") == 0;
        seen |= (strcmp(table_key(t, i), "ab:cd:ef") == 0) << 1;
    }
    assert_int_equal(seen, 3);
    assert_null(table_key(t, 2));
    table_free(t);
}

static void test_inline_values_with_spaces(void **state)
{
    (void)state;
    char err[256] = "";
    struct table *t = table_open("inline:{ { Gone@Example.org = 550 mailbox gone }, k=v }", err,
                                 sizeof err);
    assert_non_null(t);
    assert_int_equal(table_count(t), 2);
    assert_string_equal(table_lookup(t, "gone@example.org"), "550 mailbox gone");
    assert_string_equal(table_lookup(t, "K"), "v");
    table_free(t);
}

static void test_inline_empty_and_bad(void **state)
{
    (void)state;
    char err[256] = "";
    struct table *t = table_open("inline:{}", err, sizeof err);
    assert_non_null(t);
    assert_int_equal(table_count(t), 0);
    assert_null(table_lookup(t, "anything"));
    table_free(t);

    err[0] = '\0';
    assert_null(table_open("inline:a=b", err, sizeof err));
    assert_true(strlen(err) > 0);
    assert_non_null(strstr(err, "inline"));

    err[0] = '\0';
    assert_null(table_open("inline:{ a=b", err, sizeof err));
    assert_true(strlen(err) > 0);
}

static void test_unsupported_type(void **state)
{
    (void)state;
    char err[256] = "";
    assert_null(table_open("hash:/etc/keypost/peers", err, sizeof err));
    assert_non_null(strstr(err, "hash:/etc/keypost/peers"));
    err[0] = '\0';
    assert_null(table_open("/etc/keypost/peers", err, sizeof err));
    assert_true(strlen(err) > 0);
}

static void test_texthash(void **state)
{
    (void)state;
    const char *path = write_file("peers",
                                  "# partners\n"
                                  "\n"
                                  "99:5A:CC:D5   mx.partner.example\n"
                                  "   Mixed.Case.Key\tvalue with  spaces  \n"
                                  "keyonly\n"
                                  "  # indented comment\n"
                                  "last value-without-newline");
    char spec[200];
    snprintf(spec, sizeof spec, "texthash:%s", path);
    char err[256] = "";
    struct table *t = table_open(spec, err, sizeof err);
    assert_non_null(t);
    assert_string_equal(table_spec(t), spec);
    assert_int_equal(table_count(t), 4);
    assert_string_equal(table_lookup(t, "99:5A:CC:D5"), "mx.partner.example");
    assert_string_equal(table_lookup(t, "99:5a:cc:d5"), "mx.partner.example");
    assert_string_equal(table_lookup(t, "mixed.case.key"), "value with  spaces");
    assert_string_equal(table_lookup(t, "MIXED.CASE.KEY"), "value with  spaces");
    assert_string_equal(table_lookup(t, "keyonly"), "");
    assert_string_equal(table_lookup(t, "last"), "value-without-newline");
    assert_null(table_lookup(t, "#"));
    assert_null(table_lookup(t, "partners"));
    assert_null(table_lookup(t, "mx.partner.example"));
    table_free(t);
}

static void test_texthash_many_keys(void **state)
{
    (void)state;
    /* Enough keys that the lookup depends on the sort being right. */
    char path[128];
    snprintf(path, sizeof path, "%s/many", tmpdir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (int i = 999; i >= 0; i--)
        fprintf(f, "%s%04d v%d\n", i % 2 ? "KEY" : "key", i, i);
    fclose(f);
    char spec[200];
    snprintf(spec, sizeof spec, "texthash:%s", path);
    char err[256] = "";
    struct table *t = table_open(spec, err, sizeof err);
    assert_non_null(t);
    assert_int_equal(table_count(t), 1000);
    for (int i = 0; i < 1000; i++) {
        char key[32], want[32];
        snprintf(key, sizeof key, "%s%04d", i % 3 ? "Key" : "kEY", i);
        snprintf(want, sizeof want, "v%d", i);
        const char *v = table_lookup(t, key);
        assert_non_null(v);
        assert_string_equal(v, want);
    }
    assert_null(table_lookup(t, "key1000"));
    table_free(t);
}

static void test_texthash_missing(void **state)
{
    (void)state;
    char spec[200];
    snprintf(spec, sizeof spec, "texthash:%s/nope", tmpdir);
    char err[256] = "";
    assert_null(table_open(spec, err, sizeof err));
    assert_non_null(strstr(err, "nope"));
    assert_non_null(strstr(err, "No such file or directory"));
}

static void test_long_key(void **state)
{
    (void)state;
    char err[256] = "";
    struct table *t = table_open("inline:{ a=1 }", err, sizeof err);
    assert_non_null(t);
    char key[2000];
    memset(key, 'a', sizeof key - 1);
    key[sizeof key - 1] = '\0';
    assert_null(table_lookup(t, key));
    table_free(t);
    table_free(NULL);
}

static int group_setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "%s", "/tmp/kp-test-table-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_inline),
        cmocka_unit_test(test_inline_case_insensitive),
        cmocka_unit_test(test_inline_values_with_spaces),
        cmocka_unit_test(test_inline_empty_and_bad),
        cmocka_unit_test(test_unsupported_type),
        cmocka_unit_test(test_texthash),
        cmocka_unit_test(test_texthash_many_keys),
        cmocka_unit_test(test_texthash_missing),
        cmocka_unit_test(test_long_key),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
