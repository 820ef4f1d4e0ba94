/* Unit tests for canonical rewriting of header addresses
 * (src/addr/hdrrewrite.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "addr/addrclass.h"
#include "addr/hdrrewrite.h"
#include "addr/rewrite.h"
#include "conf/conf.h"
#include "util/buf.h"

static void configure(const char *classes)
{
    struct conf_errors errs = {0};
    conf_defaults();
    conf_set("mydestination", "example.org", &errs);
    conf_set("canonical_maps",
             "inline:{ old@example.org=new@example.org, @legacy.test=@example.org }", &errs);
    if (classes)
        conf_set("canonical_classes", classes, &errs);
    addrclass_init(&errs);
    rewrite_init(&errs);
    for (int i = 0; i < errs.count; i++)
        print_message("error: %s\n", errs.msgs[i]);
    assert_int_equal(errs.count, 0);
}

/* The rewritten block, or the input when nothing changed. */
static const char *run(const char *in, struct buf *out)
{
    int r = hdr_rewrite_block(in, strlen(in), out);
    assert_true(r >= 0);
    if (r == 0)
        return in;
    buf_append(out, "", 1);
    return out->data;
}

static void test_addresses_rewritten_names_kept(void **state)
{
    (void)state;
    configure(NULL);
    assert_true(rewrite_headers_wanted());
    struct buf out;
    buf_init(&out, 4096);
    assert_string_equal(run("From: Old Name <old@example.org>\r\n", &out),
                        "From: Old Name <new@example.org>\r\n");
    assert_string_equal(run("To: \"Doe, J\" <old@example.org>, plain@legacy.test,\r\n"
                            "\tother@x.test\r\nSubject: old@example.org\r\n", &out),
                        "To: \"Doe, J\" <new@example.org>, plain@example.org,\r\n"
                        "\tother@x.test\r\nSubject: old@example.org\r\n");
    assert_string_equal(run("reply-to: A <old@example.org>; x\r\n", &out),
                        "reply-to: A <new@example.org>; x\r\n");
    buf_free(&out);
    rewrite_free();
    addrclass_free();
}

static void test_what_is_left_alone(void **state)
{
    (void)state;
    configure(NULL);
    struct buf out;
    buf_init(&out, 4096);
    const char *same[] = {
        "Cc: undisclosed-recipients:;\r\n",
        "From: old@example.org (a comment could hide anything)\r\n",
        "To: \"unterminated <old@example.org>\r\n",
        "To: (unterminated <old@example.org>\r\n",
        "To: <old@example.org\r\n",
        "X-Other: old@example.org\r\n",
        "From: <>\r\n",
        "To: a@b@c, \"q\"@x.test, <\"q@example.org\">\r\n",
        "To:\r\n",
        "To",
    };
    for (size_t i = 0; i < sizeof same / sizeof same[0]; i++)
        assert_string_equal(run(same[i], &out), same[i]);
    buf_free(&out);
    rewrite_free();
    addrclass_free();
}

static void test_classes_decide(void **state)
{
    (void)state;
    configure("envelope_sender, envelope_recipient");
    assert_false(rewrite_headers_wanted());
    struct buf out;
    buf_init(&out, 4096);
    assert_string_equal(run("From: <old@example.org>\r\n", &out), "From: <old@example.org>\r\n");
    char addr[512] = "old@example.org";
    assert_int_equal(rewrite_sender(addr, sizeof addr), 0);
    assert_string_equal(addr, "new@example.org");
    buf_free(&out);
    rewrite_free();
    addrclass_free();
    struct conf_errors errs = {0};
    conf_defaults();
    conf_set("canonical_classes", "header_sender, envelope_bogus", &errs);
    rewrite_init(&errs);
    assert_int_equal(errs.count, 1);
    assert_non_null(strstr(errs.msgs[0], "unknown address class \"envelope_bogus\""));
    conf_errors_free(&errs);
    rewrite_free();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_addresses_rewritten_names_kept),
        cmocka_unit_test(test_what_is_left_alone),
        cmocka_unit_test(test_classes_decide),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
