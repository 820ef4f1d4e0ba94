/* Unit tests for address qualification (src/util/qualify.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "util/qualify.h"

#define AT QUALIFY_APPEND_AT_MYORIGIN
#define DOT QUALIFY_APPEND_DOT_MYDOMAIN

/* Qualify addr with myorigin example.org and mydomain example.net. */
static const char *q(const char *addr, unsigned flags, int *changed)
{
    static char out[256];
    memset(out, 'x', sizeof out);
    *changed = qualify_address(addr, "example.org", "example.net", flags, out, sizeof out);
    return out;
}

static void expect(const char *addr, unsigned flags, const char *want)
{
    int changed;
    assert_string_equal(q(addr, flags, &changed), want);
    assert_int_equal(changed, strcmp(addr, want) != 0);
}

static void test_append_at_myorigin(void **state)
{
    (void)state;
    expect("alice", AT, "alice@example.org");
    expect("alice", AT | DOT, "alice@example.org");
    expect("Alice.Smith", AT, "Alice.Smith@example.org");
    expect("alice@example.com", AT | DOT, "alice@example.com");
    /* Turned off, an unqualified address stays as it is. */
    expect("alice", 0, "alice");
    expect("alice", DOT, "alice");
}

static void test_append_dot_mydomain(void **state)
{
    (void)state;
    expect("bob@host", AT | DOT, "bob@host.example.net");
    expect("bob@host", DOT, "bob@host.example.net");
    expect("bob@host", AT, "bob@host"); /* keypost's and Postfix 3's default */
    expect("bob@host.sub", AT | DOT, "bob@host.sub");
    expect("bob@host.", AT | DOT, "bob@host.");
}

static void test_left_alone(void **state)
{
    (void)state;
    expect("", AT | DOT, "");                 /* the null sender */
    expect("bob@[192.0.2.1]", AT | DOT, "bob@[192.0.2.1]");
    expect("bob@[IPv6:2001:db8::1]", AT | DOT, "bob@[IPv6:2001:db8::1]");
    expect("bob@", AT | DOT, "bob@");         /* an error, not a partial domain */
}

static void test_quoted_local_part(void **state)
{
    (void)state;
    /* An '@' inside quotes is part of the local part, not the domain's start. */
    expect("\"a@b\"", AT, "\"a@b\"@example.org");
    expect("\"a@b\"@host", AT | DOT, "\"a@b\"@host.example.net");
    expect("\"a\\\"@b\"", AT, "\"a\\\"@b\"@example.org");
    expect("\"a@b\"@c.d", AT | DOT, "\"a@b\"@c.d");
}

static void test_myorigin_without_dot(void **state)
{
    (void)state;
    /* Both steps apply in turn, as in trivial-rewrite. */
    char out[64];
    assert_int_equal(qualify_address("carol", "mailhost", "example.net", AT | DOT, out,
                                     sizeof out), 1);
    assert_string_equal(out, "carol@mailhost.example.net");
    assert_int_equal(qualify_address("carol", "mailhost", "example.net", AT, out, sizeof out),
                     1);
    assert_string_equal(out, "carol@mailhost");
}

static void test_empty_parameters_append_nothing(void **state)
{
    (void)state;
    char out[64];
    assert_int_equal(qualify_address("dave", "", "", AT | DOT, out, sizeof out), 0);
    assert_string_equal(out, "dave");
    assert_int_equal(qualify_address("dave@host", "example.org", "", AT | DOT, out, sizeof out),
                     0);
    assert_string_equal(out, "dave@host");
}

static void test_bounded_output(void **state)
{
    (void)state;
    char out[18];
    /* "alice@example.org" is 17 bytes: it fits exactly. */
    assert_int_equal(qualify_address("alice", "example.org", "x", AT, out, sizeof out), 1);
    assert_string_equal(out, "alice@example.org");
    /* One byte short: nothing half-written. */
    assert_int_equal(qualify_address("alice", "example.org", "x", AT, out, sizeof out - 1), -1);
    assert_string_equal(out, "");
    /* "bob@host.example.net" needs 21 bytes. */
    char wide[21];
    assert_int_equal(qualify_address("bob@host", "o", "example.net", DOT, wide, sizeof wide), 1);
    assert_string_equal(wide, "bob@host.example.net");
    assert_int_equal(qualify_address("bob@host", "o", "example.net", DOT, wide, 20), -1);
    assert_string_equal(wide, "");
    /* The input alone does not fit. */
    assert_int_equal(qualify_address("a-very-long-local-part", "o", "d", AT, out, sizeof out),
                     -1);
    assert_string_equal(out, "");
    assert_int_equal(qualify_address("a", "o", "d", AT, out, 0), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_at_myorigin),
        cmocka_unit_test(test_append_dot_mydomain),
        cmocka_unit_test(test_left_alone),
        cmocka_unit_test(test_quoted_local_part),
        cmocka_unit_test(test_myorigin_without_dot),
        cmocka_unit_test(test_empty_parameters_append_nothing),
        cmocka_unit_test(test_bounded_output),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
