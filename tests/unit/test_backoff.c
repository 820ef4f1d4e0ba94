/* Unit tests for the queue manager's retry schedule (qmgr_backoff). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>

#include "queue/qmgr.h"

static void test_first_attempt_uses_minimal(void **state)
{
    (void)state;
    assert_int_equal(qmgr_backoff(0, 300, 4000), 300);
    assert_int_equal(qmgr_backoff(1, 300, 4000), 300);
}

static void test_doubles(void **state)
{
    (void)state;
    assert_int_equal(qmgr_backoff(2, 300, 4000), 600);
    assert_int_equal(qmgr_backoff(3, 300, 4000), 1200);
    assert_int_equal(qmgr_backoff(4, 300, 4000), 2400);
    assert_int_equal(qmgr_backoff(2, 60, 1000000), 120);
    assert_int_equal(qmgr_backoff(11, 60, 1000000), 60L << 10);
    /* Each step is at least the one before it. */
    long prev = 0;
    for (int a = 1; a < 40; a++) {
        long d = qmgr_backoff(a, 300, 4000);
        assert_true(d >= prev);
        assert_true(d >= 300 && d <= 4000);
        prev = d;
    }
}

static void test_capped(void **state)
{
    (void)state;
    /* 4800 would be next: the cap is the maximal time itself. */
    assert_int_equal(qmgr_backoff(5, 300, 4000), 4000);
    assert_int_equal(qmgr_backoff(6, 300, 4000), 4000);
    assert_int_equal(qmgr_backoff(1000, 300, 4000), 4000);
    assert_int_equal(qmgr_backoff(INT_MAX, 300, 4000), 4000);
    /* An exact power of two reaches the cap without passing it. */
    assert_int_equal(qmgr_backoff(4, 500, 4000), 4000);
    /* minimal above maximal: maximal wins. */
    assert_int_equal(qmgr_backoff(1, 5000, 4000), 4000);
    assert_int_equal(qmgr_backoff(3, 5000, 4000), 4000);
}

static void test_no_overflow_with_huge_cap(void **state)
{
    (void)state;
    /* maximal_backoff_time may be set very large ("100000000000000d" parses);
     * doubling must stop at the cap, never wrap around to a negative or zero
     * delay (which would retry in a tight loop). */
    long huge = LONG_MAX;
    for (int a = 1; a < 200; a += 7) {
        long d = qmgr_backoff(a, 300, huge);
        assert_true(d >= 300);
        assert_true(d <= huge);
    }
    assert_int_equal(qmgr_backoff(200, 300, huge), huge);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_attempt_uses_minimal),
        cmocka_unit_test(test_doubles),
        cmocka_unit_test(test_capped),
        cmocka_unit_test(test_no_overflow_with_huge_cap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
