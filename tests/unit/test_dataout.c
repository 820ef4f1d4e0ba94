/* Unit tests for the canonical DATA writer (src/deliver/dataout.c): every
 * end-of-data variant a sender can smuggle in, NUL bytes, long lines. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deliver/dataout.h"
#include "util/buf.h"

static int emit(void *arg, const char *p, size_t n)
{
    assert_int_equal(buf_append(arg, p, n), 0);
    return 0;
}

static int emit_fail(void *arg, const char *p, size_t n)
{
    (void)arg;
    (void)p;
    (void)n;
    return -1;
}

/* Write n bytes of content (in pieces of step, 0: at once) with a limit. */
static void encode(struct buf *out, const char *in, size_t n, size_t limit, size_t step)
{
    struct data_writer *dw = malloc(sizeof *dw);
    buf_init(out, 1 << 22);
    data_writer_init(dw, limit, emit, out);
    for (size_t off = 0; off < n;) {
        size_t len = step && step < n - off ? step : n - off;
        assert_int_equal(data_writer_feed(dw, in + off, len), 0);
        off += len;
    }
    assert_int_equal(data_writer_finish(dw), 0);
    free(dw);
}

static void expect_wire(const char *in, size_t n, const char *wire)
{
    for (size_t step = 0; step <= 3; step++) {
        struct buf out;
        encode(&out, in, n, 998, step);
        assert_string_equal(buf_str(&out), wire);
        buf_free(&out);
    }
}
#define EXPECT(in, wire) expect_wire(in, sizeof(in) - 1, wire)

/* The properties every output must have, whatever the input. */
static void assert_canonical(const struct buf *out, size_t limit)
{
    const char *o = out->data;
    size_t n = out->len, col = 0;
    assert_true(n >= 3 && memcmp(o + n - 3, ".\r\n", 3) == 0);
    for (size_t i = 0; i < n; i++) {
        assert_int_not_equal(o[i], '\0');
        if (o[i] == '\r')
            assert_true(i + 1 < n && o[i + 1] == '\n');
        if (o[i] == '\n')
            assert_true(i > 0 && o[i - 1] == '\r');
        if (o[i] == '\r' || o[i] == '\n') {
            col = 0;
            continue;
        }
        col++;
        if (limit)
            assert_true(col <= limit);
    }
    /* Read as the most lenient receiver would (CR, LF or CRLF end a line,
     * NUL stripped): the only "." line is the last one. */
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && o[i] != '\r' && o[i] != '\n')
            continue;
        int dot_line = i - start == 1 && o[start] == '.';
        if (dot_line)
            assert_int_equal(i, n - 2);
        if (i + 1 < n && o[i] == '\r' && o[i + 1] == '\n')
            i++;
        start = i + 1;
    }
}

static void test_plain_message(void **state)
{
    (void)state;
    EXPECT("Subject: x\r\n\r\nbody\r\n", "Subject: x\r\n\r\nbody\r\n.\r\n");
    EXPECT("", ".\r\n");
    EXPECT("no final line end", "no final line end\r\n.\r\n");
}

static void test_dot_stuffing(void **state)
{
    (void)state;
    EXPECT(".\r\n", "..\r\n.\r\n");
    EXPECT("a\r\n.b\r\n..\r\n", "a\r\n..b\r\n...\r\n.\r\n");
    EXPECT("a.\r\nb.c\r\n", "a.\r\nb.c\r\n.\r\n");
}

/* Each end-of-data look-alike the issue lists, inside a message followed
 * by a smuggled command: on the wire it must be a stuffed dot line. */
static void test_end_of_data_variants(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        size_t n;
        const char *wire;
    } v[] = {
#define V(in, wire) {in, sizeof(in) - 1, wire}
        V("a\n.\nMAIL", "a\r\n..\r\nMAIL\r\n.\r\n"),
        V("a\n.\rMAIL", "a\r\n..\r\nMAIL\r\n.\r\n"),
        V("a\r.\nMAIL", "a\r\n..\r\nMAIL\r\n.\r\n"),
        V("a\r.\rMAIL", "a\r\n..\r\nMAIL\r\n.\r\n"),
        V("a\n.\r\nMAIL", "a\r\n..\r\nMAIL\r\n.\r\n"),
        V("a\r.\r\nMAIL", "a\r\n..\r\nMAIL\r\n.\r\n"),
        V("a\r\n.\nMAIL", "a\r\n..\r\nMAIL\r\n.\r\n"),
        V("a\r\n.\rMAIL", "a\r\n..\r\nMAIL\r\n.\r\n"),
        V("a\r\n\0.\r\nMAIL", "a\r\n..\r\nMAIL\r\n.\r\n"),
        V("a\r\n.\0\r\nMAIL", "a\r\n..\r\nMAIL\r\n.\r\n"),
        V("a\rb", "a\r\nb\r\n.\r\n"),
        V("a\nb", "a\r\nb\r\n.\r\n"),
        V("a\r", "a\r\n.\r\n"),
        V("a\r\r\n", "a\r\n\r\n.\r\n"),
#undef V
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        expect_wire(v[i].in, v[i].n, v[i].wire);
        struct buf out;
        encode(&out, v[i].in, v[i].n, 998, 1);
        assert_canonical(&out, 998);
        buf_free(&out);
    }
}

static void test_nul_dropped(void **state)
{
    (void)state;
    expect_wire("x\0y\r\n", 5, "xy\r\n.\r\n");
    expect_wire("\0\0", 2, ".\r\n");
}

static void test_long_line_folded(void **state)
{
    (void)state;
    size_t n = 100000;
    char *in = malloc(n + 3);
    memset(in, 'h', n);
    memcpy(in, "X-Long: ", 8);
    memcpy(in + n, "\r\n", 3);
    struct buf out;
    encode(&out, in, n + 2, 998, 0);
    assert_canonical(&out, 998);
    /* Folded with CRLF SPACE: the header stays one header, all bytes kept. */
    size_t hs = 0;
    for (size_t i = 0; i < out.len; i++)
        hs += out.data[i] == 'h';
    assert_int_equal(hs, n - 8);
    assert_non_null(strstr(out.data, "\r\n h"));
    assert_int_equal(memcmp(out.data + 998, "\r\n ", 3), 0);
    buf_free(&out);
    /* Exactly at the limit: no fold. */
    memset(in, 'x', 998);
    memcpy(in + 998, "\r\n", 2);
    encode(&out, in, 1000, 998, 0);
    assert_int_equal(out.len, 1000 + 3);
    buf_free(&out);
    /* Limit 0: no folding at all. */
    memset(in, 'x', n);
    encode(&out, in, n, 0, 0);
    assert_int_equal(out.len, n + 5);
    buf_free(&out);
    free(in);
}

static void test_stuffed_dot_counts_toward_limit(void **state)
{
    (void)state;
    char in[12] = ".234567890\r\n";
    struct buf out;
    encode(&out, in, sizeof in, 10, 0);
    assert_string_equal(buf_str(&out), "..23456789\r\n 0\r\n.\r\n");
    assert_canonical(&out, 10);
    buf_free(&out);
}

/* Every input of up to 4 bytes over an alphabet of the bytes that matter. */
static void test_exhaustive_small_inputs(void **state)
{
    (void)state;
    static const char alphabet[] = {'\r', '\n', '.', '\0', 'a'};
    char in[4];
    for (int len = 0; len <= 4; len++) {
        int total = 1;
        for (int i = 0; i < len; i++)
            total *= 5;
        for (int k = 0; k < total; k++) {
            for (int i = 0, x = k; i < len; i++, x /= 5)
                in[i] = alphabet[x % 5];
            struct buf out;
            encode(&out, in, (size_t)len, 3, 1);
            assert_canonical(&out, 3);
            buf_free(&out);
        }
    }
}

static void test_emit_failure_reported(void **state)
{
    (void)state;
    struct data_writer *dw = malloc(sizeof *dw);
    data_writer_init(dw, 998, emit_fail, NULL);
    assert_int_equal(data_writer_feed(dw, "abc\r\n", 5), 0); /* still buffered */
    assert_int_equal(data_writer_finish(dw), -1);
    free(dw);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_message),
        cmocka_unit_test(test_dot_stuffing),
        cmocka_unit_test(test_end_of_data_variants),
        cmocka_unit_test(test_nul_dropped),
        cmocka_unit_test(test_long_line_folded),
        cmocka_unit_test(test_stuffed_dot_counts_toward_limit),
        cmocka_unit_test(test_exhaustive_small_inputs),
        cmocka_unit_test(test_emit_failure_reported),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
