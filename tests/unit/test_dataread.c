/* Unit tests for the DATA stream reader (src/smtpd/dataread.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtpd/dataread.h"
#include "util/buf.h"

/* What the reader passed on, and how it ended. */
struct capture {
    struct buf out;
    int fail_writes; /* make emit() report an error */
    int emits;
};

struct run {
    struct capture cap;
    struct data_reader dr;
    size_t consumed;
    int done;
};

static int emit(void *arg, const char *p, size_t n)
{
    struct capture *c = arg;
    c->emits++;
    if (c->fail_writes)
        return -1;
    assert_int_equal(buf_append(&c->out, p, n), 0);
    return 0;
}

/* Feed all of input in one call (step == 0) or in pieces of step bytes,
 * stopping after the end of data as a session would. */
static void run_feed(struct run *r, const char *input, size_t n, size_t limit, size_t step)
{
    memset(r, 0, sizeof *r);
    buf_init(&r->cap.out, 1 << 24);
    data_reader_init(&r->dr, limit, emit, &r->cap);
    size_t off = 0;
    while (off < n && !r->done) {
        size_t len = step ? step : n - off;
        if (len > n - off)
            len = n - off;
        int done = 0;
        size_t used = data_reader_feed(&r->dr, input + off, len, &done);
        assert_true(used <= len);
        if (!done)
            assert_int_equal(used, len);
        off += used;
        r->done = done;
    }
    r->consumed = off;
}

static void run_free(struct run *r)
{
    buf_free(&r->cap.out);
}

static const char *out_str(const struct run *r)
{
    return buf_str(&r->cap.out);
}

enum { LF = 1, CR = 2 }; /* which bare line ends the reader must report */

/* Run input as one buffer and expect exactly the given message. */
static void expect_message(const char *input, const char *message, int bare)
{
    struct run r;
    run_feed(&r, input, strlen(input), 1 << 20, 0);
    assert_true(r.done);
    assert_int_equal(r.consumed, strlen(input));
    assert_string_equal(out_str(&r), message);
    assert_int_equal(r.cap.out.len, strlen(message));
    assert_int_equal(r.dr.size, strlen(message));
    assert_int_equal(r.dr.bare_lf, (bare & LF) != 0);
    assert_int_equal(r.dr.bare_cr, (bare & CR) != 0);
    assert_int_equal(r.dr.too_big, 0);
    assert_int_equal(r.dr.write_error, 0);
    run_free(&r);
}

static void test_simple_message(void **state)
{
    (void)state;
    expect_message("Subject: hi\r\n\r\nHello\r\n.\r\n", "Subject: hi\r\n\r\nHello\r\n", 0);
}

static void test_empty_message(void **state)
{
    (void)state;
    /* The DATA line ended with CRLF, so "." right away ends an empty message. */
    expect_message(".\r\n", "", 0);
}

static void test_not_done_without_end(void **state)
{
    (void)state;
    const char *in = "line one\r\nline two\r\n";
    struct run r;
    run_feed(&r, in, strlen(in), 1 << 20, 0);
    assert_false(r.done);
    assert_int_equal(r.consumed, strlen(in));
    assert_string_equal(out_str(&r), in);
    assert_int_equal(r.dr.size, strlen(in));
    run_free(&r);
}

static void test_stops_after_end(void **state)
{
    (void)state;
    /* Pipelined commands after the end of data are not part of the message. */
    const char *in = "Hello\r\n.\r\nQUIT\r\n";
    struct data_reader dr;
    struct capture cap = {0};
    buf_init(&cap.out, 1 << 20);
    data_reader_init(&dr, 1 << 20, emit, &cap);
    int done = 0;
    size_t used = data_reader_feed(&dr, in, strlen(in), &done);
    assert_true(done);
    assert_int_equal(used, strlen("Hello\r\n.\r\n"));
    assert_string_equal(buf_str(&cap.out), "Hello\r\n");
    buf_free(&cap.out);
}

static void test_dot_unstuffing(void **state)
{
    (void)state;
    expect_message("..leading dot\r\n.\r\n", ".leading dot\r\n", 0);
    expect_message("...\r\n.\r\n", "..\r\n", 0);
    expect_message("..\r\n.\r\n", ".\r\n", 0);
    /* Only a dot at the start of a line is stuffing. */
    expect_message("a.b\r\nx..\r\n.\r\n", "a.b\r\nx..\r\n", 0);
    /* A line of a single stuffed dot followed by more text. */
    expect_message("hello\r\n..\r\nworld\r\n.\r\n", "hello\r\n.\r\nworld\r\n", 0);
    /* ".x" without stuffing: the dot is dropped as RFC 5321 4.5.2 says. */
    expect_message(".x\r\n.\r\n", "x\r\n", 0);
}

static void test_end_requires_crlf_dot_crlf(void **state)
{
    (void)state;
    /* "\n.\n": a dot line reached through a bare LF and ended by one. */
    expect_message("a\n.\nb\r\n.\r\n", "a\r\n.\r\nb\r\n", 1);
    /* "\r\n.\n": ended by a bare LF. */
    expect_message("a\r\n.\nb\r\n.\r\n", "a\r\n.\r\nb\r\n", 1);
    /* "\n.\r\n": reached through a bare LF. */
    expect_message("a\n.\r\nb\r\n.\r\n", "a\r\n.\r\nb\r\n", 1);
    /* "\r.\r\n": reached through a bare CR, which ends a line too. */
    expect_message("a\r.\r\nb\r\n.\r\n", "a\r\n.\r\nb\r\n", CR);
    /* "\r\n.\r": the dot line ended by a bare CR. */
    expect_message("a\r\n.\rb\r\n.\r\n", "a\r\n.\r\nb\r\n", CR);
    /* "\r.\r": both. */
    expect_message("a\r.\rb\r\n.\r\n", "a\r\n.\r\nb\r\n", CR);
}

static void test_smuggling_variants_never_end(void **state)
{
    (void)state;
    static const char *const variants[] = {
        "Subject: x\r\n\r\nbody\n.\nMAIL FROM:<evil@example.com>\r\n",
        "Subject: x\r\n\r\nbody\r\n.\nMAIL FROM:<evil@example.com>\r\n",
        "Subject: x\r\n\r\nbody\n.\r\nMAIL FROM:<evil@example.com>\r\n",
        "\n.\n",
        "\n.\r\n",
        ".\n",
    };
    for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++) {
        for (size_t step = 0; step <= 3; step++) {
            struct run r;
            run_feed(&r, variants[i], strlen(variants[i]), 1 << 20, step);
            assert_false(r.done);
            assert_int_equal(r.consumed, strlen(variants[i]));
            assert_true(r.dr.bare_lf);
            /* The smuggled command stays inside the message. */
            if (strstr(variants[i], "MAIL FROM"))
                assert_non_null(strstr(out_str(&r), "\r\n.\r\nMAIL FROM:<evil@example.com>\r\n"));
            run_free(&r);
        }
    }
}

static void test_bare_lf_normalized(void **state)
{
    (void)state;
    expect_message("a\nb\r\n.\r\n", "a\r\nb\r\n", 1);
    expect_message("\n\n.\r\n.\r\n", "\r\n\r\n.\r\n", 1);
    /* No bare LF: the flag stays clear. */
    expect_message("a\r\nb\r\n.\r\n", "a\r\nb\r\n", 0);
}

static void test_output_has_no_bare_lf(void **state)
{
    (void)state;
    const char *in = "x\ny\n\n..z\n\r\nw\r\r\n.\n.\r\n";
    /* This input never has CRLF.CRLF after a real CRLF: add one. */
    char buf[128];
    snprintf(buf, sizeof buf, "%s\r\n.\r\n", in);
    struct run r;
    run_feed(&r, buf, strlen(buf), 1 << 20, 0);
    assert_true(r.done);
    const char *o = out_str(&r);
    for (size_t i = 0; i < r.cap.out.len; i++)
        if (o[i] == '\n')
            assert_true(i > 0 && o[i - 1] == '\r');
    run_free(&r);
}

static void test_bare_cr_normalized(void **state)
{
    (void)state;
    expect_message("a\rb\r\n.\r\n", "a\r\nb\r\n", CR);
    expect_message("a\r\r\n.\r\n", "a\r\n\r\n", CR);
    expect_message("\r\r\r\n.\r\n", "\r\n\r\n\r\n", CR);
    expect_message("a\rb\nc\r\n.\r\n", "a\r\nb\r\nc\r\n", CR | LF);
    /* A dot line begun after a bare CR is content, never the end. */
    expect_message("x\r.\r\nMAIL FROM:<e@x>\r\n.\r\n", "x\r\n.\r\nMAIL FROM:<e@x>\r\n", CR);
}

static void test_output_has_no_bare_cr(void **state)
{
    (void)state;
    const char *in = "\r\ra\r.\r.\r\n\r\r\n\rz\r\n.\r\n";
    struct run r;
    run_feed(&r, in, strlen(in), 1 << 20, 0);
    assert_true(r.done);
    const char *o = out_str(&r);
    for (size_t i = 0; i < r.cap.out.len; i++)
        if (o[i] == '\r')
            assert_true(i + 1 < r.cap.out.len && o[i + 1] == '\n');
    run_free(&r);
}

static void test_size_limit(void **state)
{
    (void)state;
    /* Exactly at the limit: accepted. */
    {
        struct run r;
        const char *in = "12345\r\n.\r\n";
        run_feed(&r, in, strlen(in), 7, 0);
        assert_true(r.done);
        assert_false(r.dr.too_big);
        assert_string_equal(out_str(&r), "12345\r\n");
        run_free(&r);
    }
    /* One byte more: too big, but the end is still found and every byte counted. */
    {
        struct run r;
        const char *in = "123456\r\nmore text here\r\n.\r\nNOOP\r\n";
        run_feed(&r, in, strlen(in), 7, 0);
        assert_true(r.done);
        assert_true(r.dr.too_big);
        assert_int_equal(r.consumed, strlen(in) - strlen("NOOP\r\n"));
        assert_int_equal(r.dr.size, strlen("123456\r\nmore text here\r\n"));
        assert_true(r.cap.out.len <= 7);
        run_free(&r);
    }
    /* A large message over a small limit, in pieces: nothing past the limit. */
    {
        size_t n = 100000;
        char *in = malloc(n + 3);
        for (size_t i = 0; i < n; i++)
            in[i] = (i % 80 == 78) ? '\r' : (i % 80 == 79) ? '\n' : 'x';
        memcpy(in + n - 2, "\r\n", 2);
        memcpy(in + n, ".\r\n", 3);
        for (size_t step = 0; step <= 4096; step += 4096) {
            struct run r;
            run_feed(&r, in, n + 3, 50000, step);
            assert_true(r.done);
            assert_true(r.dr.too_big);
            assert_true(r.cap.out.len <= 50000);
            assert_int_equal(r.dr.size, n);
            run_free(&r);
        }
        free(in);
    }
}

static void test_large_message_passes_through(void **state)
{
    (void)state;
    /* Bigger than the reader's output buffer: flushed in several emits. */
    struct buf in, expect;
    buf_init(&in, 1 << 22);
    buf_init(&expect, 1 << 22);
    for (int i = 0; i < 3000; i++) {
        buf_printf(&in, "%sline %d of a longer message\r\n", i % 7 == 0 ? ".." : "", i);
        buf_printf(&expect, "%sline %d of a longer message\r\n", i % 7 == 0 ? "." : "", i);
    }
    buf_puts(&in, ".\r\n");
    struct run r;
    run_feed(&r, in.data, in.len, 1 << 22, 0);
    assert_true(r.done);
    assert_true(r.cap.emits > 1);
    assert_int_equal(r.cap.out.len, expect.len);
    assert_memory_equal(r.cap.out.data, expect.data, expect.len);
    assert_int_equal(r.dr.size, expect.len);
    run_free(&r);
    buf_free(&in);
    buf_free(&expect);
}

static void test_write_error_is_sticky(void **state)
{
    (void)state;
    struct data_reader dr;
    struct capture cap = {0};
    cap.fail_writes = 1;
    buf_init(&cap.out, 1 << 20);
    data_reader_init(&dr, 1 << 20, emit, &cap);
    const char *in = "hello\r\nworld\r\n.\r\n";
    int done = 0;
    size_t used = data_reader_feed(&dr, in, strlen(in), &done);
    assert_true(done);
    assert_int_equal(used, strlen(in));
    assert_true(dr.write_error);
    assert_false(dr.too_big);
    buf_free(&cap.out);
}

/* Bytes fed one at a time (and in other piece sizes) give the same result as
 * the whole input at once. */
static void test_bytewise_equals_whole(void **state)
{
    (void)state;
    static const char *const inputs[] = {
        "Subject: hi\r\n\r\nHello\r\n.\r\n",
        "..stuffed\r\n...\r\n.\r\n",
        "a\n.\nb\r\n.\nc\n.\r\nd\r\n.\r\nafter\r\n",
        "a\rb\r\r\n\r.\r\n.\r\n",
        "\r\n\r\n\n\n.\r\n",
        ".\r\n",
        "no end here\r\n.\n",
        "x\r\n.\r",
        "x\r\n.",
        "1234567890\r\n1234567890\r\n.\r\n",
    };
    static const size_t limits[] = {1 << 20, 11, 12, 24};
    for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++) {
        for (size_t l = 0; l < sizeof limits / sizeof limits[0]; l++) {
            size_t n = strlen(inputs[i]);
            struct run whole;
            run_feed(&whole, inputs[i], n, limits[l], 0);
            for (size_t step = 1; step <= 5; step++) {
                struct run part;
                run_feed(&part, inputs[i], n, limits[l], step);
                assert_int_equal(part.done, whole.done);
                assert_int_equal(part.consumed, whole.consumed);
                assert_int_equal(part.dr.size, whole.dr.size);
                assert_int_equal(part.dr.bare_lf, whole.dr.bare_lf);
                assert_int_equal(part.dr.too_big, whole.dr.too_big);
                /* A message over the limit is refused: what was passed on
                 * before the limit was crossed may differ, and never
                 * exceeds the limit. */
                if (whole.dr.too_big) {
                    assert_true(part.cap.out.len <= limits[l]);
                    run_free(&part);
                    continue;
                }
                assert_int_equal(part.cap.out.len, whole.cap.out.len);
                if (whole.cap.out.len)
                    assert_memory_equal(part.cap.out.data, whole.cap.out.data,
                                        whole.cap.out.len);
                run_free(&part);
            }
            run_free(&whole);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_message),
        cmocka_unit_test(test_empty_message),
        cmocka_unit_test(test_not_done_without_end),
        cmocka_unit_test(test_stops_after_end),
        cmocka_unit_test(test_dot_unstuffing),
        cmocka_unit_test(test_end_requires_crlf_dot_crlf),
        cmocka_unit_test(test_smuggling_variants_never_end),
        cmocka_unit_test(test_bare_lf_normalized),
        cmocka_unit_test(test_output_has_no_bare_lf),
        cmocka_unit_test(test_bare_cr_normalized),
        cmocka_unit_test(test_output_has_no_bare_cr),
        cmocka_unit_test(test_size_limit),
        cmocka_unit_test(test_large_message_passes_through),
        cmocka_unit_test(test_write_error_is_sticky),
        cmocka_unit_test(test_bytewise_equals_whole),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
