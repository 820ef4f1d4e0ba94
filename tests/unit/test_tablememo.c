/* Unit tests for the memo that lets synchronous decisions use database
 * tables on an event loop (src/table/tablememo.c). The database is one
 * that is not there: each fetched key is answered as a temporary failure,
 * which is enough to see the rounds, the bound and the cancellation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "table/pgsql.h"
#include "table/table.h"
#include "table/tablememo.h"

static char cf[] = "/tmp/kp-memo-XXXXXX";
static struct event_base *base;
static struct table *t;

static int setup(void **state)
{
    (void)state;
    int fd = mkstemp(cf);
    assert_true(fd >= 0);
    /* Port 1 on loopback: nothing listens, connections fail at once. */
    const char *text = "hosts = inet:127.0.0.1:1\nuser = nobody\ndbname = none\n"
                       "query = SELECT '%s'\n";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    char spec[64], err[256];
    snprintf(spec, sizeof spec, "pgsql:%s", cf);
    t = table_open(spec, err, sizeof err);
    assert_non_null(t);
    base = event_base_new();
    pgsql_set_base(base);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    table_free(t);
    pgsql_set_base(NULL);
    event_base_free(base);
    unlink(cf);
    return 0;
}

static int done_calls;
static void on_done(void *arg)
{
    (void)arg;
    done_calls++;
}

static void test_missing_then_answered(void **state)
{
    (void)state;
    struct table_memo *m = table_memo_new();
    struct table_memo *before = table_memo_use(m);
    const char *v = "x";
    /* First round: not known yet, recorded, reads as a failure. */
    assert_int_equal(table_get(t, "Alice@Example.ORG", &v), -1);
    assert_null(v);
    assert_int_equal(table_get(t, "bob@example.org", &v), -1);
    assert_int_equal(table_get(t, "alice@example.org", &v), -1); /* folded: same key */
    assert_int_equal(table_memo_missing(m), 2);
    done_calls = 0;
    assert_int_equal(table_memo_fetch(m, on_done, NULL), 0);
    assert_int_equal(done_calls, 0); /* never inside the caller */
    event_base_dispatch(base);
    assert_int_equal(done_calls, 1);
    /* Second round: answered (a real failure now), nothing missing. */
    assert_int_equal(table_get(t, "alice@example.org", &v), -1);
    assert_int_equal(table_memo_missing(m), 0);
    assert_int_equal(table_memo_fetch(m, on_done, NULL), 1);
    /* Cleared: asked again. */
    table_memo_clear(m);
    assert_int_equal(table_get(t, "alice@example.org", &v), -1);
    assert_int_equal(table_memo_missing(m), 1);
    table_memo_use(before);
    table_memo_free(m);
}

static void test_without_memo_never_blocks(void **state)
{
    (void)state;
    struct table_memo *before = table_memo_use(NULL);
    const char *v = "x";
    assert_int_equal(table_get(t, "alice@example.org", &v), -1);
    assert_null(v);
    table_memo_use(before);
}

static void test_bounded(void **state)
{
    (void)state;
    struct table_memo *m = table_memo_new();
    struct table_memo *before = table_memo_use(m);
    const char *v;
    char key[32];
    for (int i = 0; i < TABLE_MEMO_MAX + 10; i++) {
        snprintf(key, sizeof key, "k%d", i);
        assert_int_equal(table_get(t, key, &v), -1);
    }
    assert_int_equal(table_memo_missing(m), TABLE_MEMO_MAX);
    table_memo_use(before);
    table_memo_free(m);
}

static void test_free_cancels(void **state)
{
    (void)state;
    struct table_memo *m = table_memo_new();
    struct table_memo *before = table_memo_use(m);
    const char *v;
    assert_int_equal(table_get(t, "carol@example.org", &v), -1);
    table_memo_use(before);
    done_calls = 0;
    assert_int_equal(table_memo_fetch(m, on_done, NULL), 0);
    table_memo_free(m); /* the session went away */
    event_base_loop(base, EVLOOP_NONBLOCK);
    event_base_dispatch(base);
    assert_int_equal(done_calls, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_missing_then_answered),
        cmocka_unit_test(test_without_memo_never_blocks),
        cmocka_unit_test(test_bounded),
        cmocka_unit_test(test_free_cancels),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
