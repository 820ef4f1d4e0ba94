/* Unit tests for the pure parts of client name lookups (src/dns/peername.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <string.h>
#include <sys/socket.h>

#include "dns/peername.h"

static const char *reverse(const char *text)
{
    static char out[128];
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, text, &s4->sin_addr) == 1)
        s4->sin_family = AF_INET;
    else if (inet_pton(AF_INET6, text, &s6->sin6_addr) == 1)
        s6->sin6_family = AF_INET6;
    if (peername_reverse_query((struct sockaddr *)&ss, out, sizeof out) < 0)
        return NULL;
    return out;
}

static void test_reverse_query(void **state)
{
    (void)state;
    assert_string_equal(reverse("192.0.2.7"), "7.2.0.192.in-addr.arpa.");
    assert_string_equal(reverse("2001:db8::1"),
                        "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.");
    /* A client on an IPv6 socket speaking IPv4 is looked up as IPv4. */
    assert_string_equal(reverse("::ffff:198.51.100.9"), "9.100.51.198.in-addr.arpa.");
    struct sockaddr_storage none;
    memset(&none, 0, sizeof none);
    char out[128];
    assert_int_equal(peername_reverse_query((struct sockaddr *)&none, out, sizeof out), -1);
}

static void test_valid_hostname(void **state)
{
    (void)state;
    assert_true(peername_valid_hostname("mx.partner.example"));
    assert_true(peername_valid_hostname("a-b_c.example"));
    assert_true(peername_valid_hostname("localhost"));
    assert_true(peername_valid_hostname("1host.example"));
    /* an address in a PTR would pass for the address in access tables */
    assert_false(peername_valid_hostname("192.0.2.1"));
    assert_false(peername_valid_hostname(""));
    assert_false(peername_valid_hostname("a..b"));
    assert_false(peername_valid_hostname(".a"));
    assert_false(peername_valid_hostname("a.b."));
    assert_false(peername_valid_hostname("sp ace.example"));
    assert_false(peername_valid_hostname("bad?byte.example"));
    char label[80];
    memset(label, 'a', 64);
    label[64] = '\0';
    assert_false(peername_valid_hostname(label));
    label[63] = '\0';
    assert_true(peername_valid_hostname(label));
}

static void test_result_unknown(void **state)
{
    (void)state;
    struct peername_result r;
    peername_result_unknown(&r, PEERNAME_PERM);
    assert_string_equal(r.name, "unknown");
    assert_string_equal(r.reverse_name, "unknown");
    assert_int_equal(r.name_status, PEERNAME_PERM);
    assert_int_equal(r.reverse_status, PEERNAME_PERM);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reverse_query),
        cmocka_unit_test(test_valid_hostname),
        cmocka_unit_test(test_result_unknown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
