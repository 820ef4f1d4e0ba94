/* Unit tests for the session time limits (src/smtpd/deadline.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "smtpd/deadline.h"

static void test_session_deadline(void **state)
{
    (void)state;
    struct deadline d;
    deadline_init(&d, 100, 60, 300, 1, 500);
    assert_true(deadline_next(&d) == 160);
    assert_null(deadline_expired(&d, 159.9));
    assert_string_equal(deadline_expired(&d, 160), "session");
    /* No session limit: nothing is due while no request runs. */
    deadline_init(&d, 100, 0, 300, 1, 500);
    assert_true(deadline_next(&d) == 0);
    assert_null(deadline_expired(&d, 1e9));
}

static void test_request_deadline(void **state)
{
    (void)state;
    struct deadline d;
    deadline_init(&d, 0, 0, 300, 1, 500);
    deadline_request_start(&d, 10);
    assert_true(deadline_next(&d) == 310);
    deadline_request_start(&d, 200); /* a request already runs: unchanged */
    assert_true(deadline_next(&d) == 310);
    assert_string_equal(deadline_expired(&d, 310), "request");
    deadline_request_end(&d);
    assert_null(deadline_expired(&d, 1000));
    /* Without smtpd_per_request_deadline there is no request deadline. */
    deadline_init(&d, 0, 0, 300, 0, 500);
    deadline_request_start(&d, 10);
    assert_true(deadline_next(&d) == 0);
}

static void test_earliest_wins(void **state)
{
    (void)state;
    struct deadline d;
    deadline_init(&d, 0, 100, 300, 1, 500);
    deadline_request_start(&d, 0);
    assert_true(deadline_next(&d) == 100);
    assert_string_equal(deadline_expired(&d, 100), "session");
    deadline_init(&d, 0, 1000, 300, 1, 500);
    deadline_request_start(&d, 0);
    assert_true(deadline_next(&d) == 300);
}

static void test_data_rate_extends_up_to_the_timeout(void **state)
{
    (void)state;
    struct deadline d;
    deadline_init(&d, 0, 0, 300, 1, 500);
    deadline_request_start(&d, 0);
    /* 5,000 bytes at 500 bytes/s earn 10 s. */
    deadline_data(&d, 100, 5000);
    assert_true(deadline_next(&d) == 310);
    /* Never more than smtpd_timeout from now. */
    deadline_data(&d, 100, 100000000);
    assert_true(deadline_next(&d) == 400);
    /* A trickle earns almost nothing: the deadline comes. */
    deadline_data(&d, 399, 10);
    assert_true(deadline_next(&d) > 400 && deadline_next(&d) < 400.1);
    assert_string_equal(deadline_expired(&d, 401), "request");
    /* smtpd_min_data_rate = 0: no allowance. */
    deadline_init(&d, 0, 0, 300, 1, 0);
    deadline_request_start(&d, 0);
    deadline_data(&d, 100, 1000000);
    assert_true(deadline_next(&d) == 300);
}

static void test_own_wait_restarts_the_request_clock(void **state)
{
    (void)state;
    struct deadline d;
    deadline_init(&d, 0, 0, 300, 1, 500);
    deadline_request_wait(&d, 50); /* no request: nothing starts */
    assert_true(deadline_next(&d) == 0);
    deadline_request_start(&d, 0);
    deadline_request_wait(&d, 290);
    assert_true(deadline_next(&d) == 590);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_session_deadline),
        cmocka_unit_test(test_request_deadline),
        cmocka_unit_test(test_earliest_wins),
        cmocka_unit_test(test_data_rate_extends_up_to_the_timeout),
        cmocka_unit_test(test_own_wait_restarts_the_request_clock),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
