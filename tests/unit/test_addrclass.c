/* Unit tests for address classes and recipient validation
 * (src/addr/addrclass.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "addr/addrclass.h"
#include "conf/conf.h"

/* conf_set each NAME, VALUE pair, then addrclass_init; returns the errors. */
static int configure(const char *const *pairs, struct conf_errors *errs)
{
    conf_defaults();
    conf_set("myhostname", "mx.example.org", errs);
    conf_set("mydestination", "example.org, $myhostname", errs);
    for (; pairs && pairs[0]; pairs += 2)
        assert_int_equal(conf_set(pairs[0], pairs[1], errs), 0);
    return addrclass_init(errs);
}

static void configure_ok(const char *const *pairs)
{
    struct conf_errors errs = {0};
    int n = configure(pairs, &errs);
    for (int i = 0; i < errs.count; i++)
        print_message("error: %s\n", errs.msgs[i]);
    assert_int_equal(n, 0);
    conf_errors_free(&errs);
}

static enum addr_class class_of(const char *domain)
{
    enum addr_class c;
    assert_int_equal(addrclass_of_domain(domain, &c), 0);
    return c;
}

static void test_classes(void **state)
{
    (void)state;
    static const char *const cfg[] = {
        "virtual_alias_domains", "alias.test, inline:{ listed.test=x }",
        "virtual_mailbox_domains", "box.test",
        "virtual_transport", "lmtp:unix:/run/dovecot/lmtp",
        "relay_domains", "corp.example, .sub.corp.example",
        NULL};
    configure_ok(cfg);
    assert_int_equal(class_of("example.org"), AC_LOCAL);
    assert_int_equal(class_of("MX.EXAMPLE.ORG"), AC_LOCAL);
    assert_int_equal(class_of("alias.test"), AC_VIRTUAL_ALIAS);
    assert_int_equal(class_of("listed.test"), AC_VIRTUAL_ALIAS);
    assert_int_equal(class_of("box.test"), AC_VIRTUAL_MAILBOX);
    assert_int_equal(class_of("corp.example"), AC_RELAY);
    assert_int_equal(class_of("a.sub.corp.example"), AC_RELAY);
    assert_int_equal(class_of("sub.corp.example"), AC_DEFAULT); /* ".x" is subdomains only */
    assert_int_equal(class_of("other.corp.example"), AC_DEFAULT);
    assert_int_equal(class_of("elsewhere.test"), AC_DEFAULT);
    addrclass_free();
}

static void test_domain_in_two_classes_is_an_error(void **state)
{
    (void)state;
    static const char *const cfg[] = {"relay_domains", "example.org", NULL};
    struct conf_errors errs = {0};
    assert_int_equal(configure(cfg, &errs), 1);
    assert_non_null(strstr(errs.msgs[0], "command line: example.org is listed in both "
                                         "mydestination and relay_domains"));
    conf_errors_free(&errs);
    static const char *const tables[] = {
        "virtual_transport", "lmtp:unix:/run/dovecot/lmtp",
        "virtual_mailbox_domains", "inline:{ box.test=1 }", "relay_domains",
        "inline:{ box.test=1, corp.example=1 }", NULL};
    assert_int_equal(configure(tables, &errs), 1);
    assert_non_null(strstr(errs.msgs[0], "box.test is listed in both virtual_mailbox_domains "
                                         "and relay_domains"));
    conf_errors_free(&errs);
    addrclass_free();
}

static int known(const char *addr, char *reply)
{
    return addrclass_recipient_known(addr, reply, 512);
}

static void test_recipient_validation(void **state)
{
    (void)state;
    char reply[512];
    static const char *const cfg[] = {
        "local_recipient_maps", "inline:{ alice=1, bob@example.org=1 }",
        "recipient_delimiter", "+",
        "relay_domains", "corp.example",
        "relay_recipient_maps", "inline:{ carol@corp.example=1, @partner.example=1 }",
        "virtual_alias_domains", "alias.test",
        "virtual_alias_maps", "inline:{ info@alias.test=alice@example.org }",
        NULL};
    configure_ok(cfg);
    assert_int_equal(known("alice@example.org", reply), 1);
    assert_int_equal(known("ALICE@example.org", reply), 1);
    assert_int_equal(known("alice+lists@example.org", reply), 1);
    assert_int_equal(known("bob@example.org", reply), 1);
    assert_int_equal(known("bob@mx.example.org", reply), 0); /* bob is listed with a domain */
    assert_int_equal(known("mallory@example.org", reply), 0);
    assert_string_equal(reply, "550 5.1.1 <mallory@example.org>: Recipient address rejected: "
                               "User unknown in local recipient table");
    assert_int_equal(known("carol@corp.example", reply), 1);
    assert_int_equal(known("dave@corp.example", reply), 0);
    assert_string_equal(reply, "550 5.1.1 <dave@corp.example>: Recipient address rejected: "
                               "User unknown in relay recipient table");
    assert_int_equal(known("info@alias.test", reply), 1);
    assert_int_equal(known("sales@alias.test", reply), 0);
    assert_non_null(strstr(reply, "User unknown in virtual alias table"));
    /* The default class is not ours to validate. */
    assert_int_equal(known("anyone@elsewhere.test", reply), 1);
    addrclass_free();
}

static void test_empty_tables_accept_all(void **state)
{
    (void)state;
    char reply[512];
    static const char *const cfg[] = {"relay_domains", "corp.example", NULL};
    configure_ok(cfg);
    assert_int_equal(known("whoever@example.org", reply), 1);
    assert_int_equal(known("whoever@corp.example", reply), 1);
    addrclass_free();
}

static void test_virtual_mailbox_domains_need_a_transport(void **state)
{
    (void)state;
    /* The default is keypost's own agent ("virtual"); an empty one is an error. */
    static const char *const cfg[] = {"virtual_mailbox_domains", "box.test",
                                      "virtual_transport", "", NULL};
    struct conf_errors errs = {0};
    assert_int_equal(configure(cfg, &errs), 1);
    assert_non_null(strstr(errs.msgs[0], "virtual_mailbox_domains needs virtual_transport"));
    conf_errors_free(&errs);
    addrclass_free();
}

static void test_unreadable_table_is_a_config_error(void **state)
{
    (void)state;
    static const char *const cfg[] = {"relay_domains", "lmdb:/nonexistent/relay", NULL};
    struct conf_errors errs = {0};
    assert_true(configure(cfg, &errs) >= 1);
    assert_non_null(strstr(errs.msgs[0], "relay_domains: cannot open table"));
    conf_errors_free(&errs);
    addrclass_free();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classes),
        cmocka_unit_test(test_domain_in_two_classes_is_an_error),
        cmocka_unit_test(test_recipient_validation),
        cmocka_unit_test(test_empty_tables_accept_all),
        cmocka_unit_test(test_virtual_mailbox_domains_need_a_transport),
        cmocka_unit_test(test_unreadable_table_is_a_config_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
