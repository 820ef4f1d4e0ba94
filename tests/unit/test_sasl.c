/* Unit tests for the SASL helpers fed by the network (src/sasl/saslsrv.c):
 * the strict base64 decoder every AUTH response goes through, and the
 * growing failure delay. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "conf/conf.h"
#include "sasl/saslsrv.h"

static void test_b64_valid(void **state)
{
    (void)state;
    unsigned char out[64];
    assert_int_equal(saslsrv_b64_decode("", out, sizeof out), 0);
    assert_int_equal(saslsrv_b64_decode("YWxpY2U=", out, sizeof out), 5);
    assert_string_equal((char *)out, "alice");
    assert_int_equal(saslsrv_b64_decode("AGFsaWNlAHNlY3JldA==", out, sizeof out), 13);
    assert_memory_equal(out, "\0alice\0secret", 13);
    assert_int_equal(saslsrv_b64_decode("YWI+Lw==", out, sizeof out), 4);
    assert_memory_equal(out, "ab>/", 4);
}

static void test_b64_invalid(void **state)
{
    (void)state;
    unsigned char out[8];
    const char *bad[] = {"A", "AAA", "YWxp Y2U=", "YW=pY2U=", "=AAA", "AA=A", "YWxpY2U=AAAA",
                         "not*b64!", "YWxpY2U\n", "AA\0A"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(saslsrv_b64_decode(bad[i], out, sizeof out), -1);
    /* 9 bytes do not fit in 8 (with the NUL) */
    assert_int_equal(saslsrv_b64_decode("YWFhYWFhYWFh", out, sizeof out), -1);
    assert_int_equal(saslsrv_b64_decode("YWFhYWFh", out, sizeof out), 6);
}

static void test_failure_delay(void **state)
{
    (void)state;
    struct conf_errors errs = {0};
    conf_defaults();
    assert_int_equal(conf_set("smtpd_sasl_failure_delay", "2s", &errs), 0);
    assert_true(saslsrv_failure_delay(1) == 2.0);
    assert_true(saslsrv_failure_delay(2) == 4.0);
    assert_true(saslsrv_failure_delay(3) == 8.0);
    assert_true(saslsrv_failure_delay(100) == 64.0); /* at most 32 times */
    conf_errors_free(&errs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_b64_valid),
        cmocka_unit_test(test_b64_invalid),
        cmocka_unit_test(test_failure_delay),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
