/* Unit tests for the sendmail command's message reader (src/cli/mailmsg.c):
 * line ends, the lone dot, -t recipients and Bcc removal, dot-stuffing of
 * what goes to the server, and the size limit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/mailmsg.h"
#include "util/buf.h"

/* Read text (n bytes) as stdin would give it, render with extra. */
static int read_render(const char *text, size_t n, size_t limit, int dots, int extract,
                       struct mailmsg *m, struct buf *out)
{
    FILE *in = fmemopen((void *)text, n, "r");
    assert_non_null(in);
    int r = mailmsg_read(in, limit, dots, extract, m);
    fclose(in);
    buf_init(out, 1 << 20);
    if (r == 0)
        assert_int_equal(mailmsg_render(m, "X-Added: 1\r\n", out), 0);
    return r;
}

static void test_lf_crlf_and_no_final_newline(void **state)
{
    (void)state;
    const char text[] = "Subject: a\nX: b\r\n\r\nline\r\nlast";
    struct mailmsg m;
    struct buf out;
    assert_int_equal(read_render(text, sizeof text - 1, 1000, 0, 0, &m, &out), 0);
    assert_string_equal(buf_str(&out),
                        "Subject: a\r\nX: b\r\nX-Added: 1\r\n\r\nline\r\nlast\r\n");
    mailmsg_free(&m);
    buf_free(&out);
}

static void test_lone_dot(void **state)
{
    (void)state;
    const char text[] = "Subject: d\n\n.hidden\n.\nafter\n";
    struct mailmsg m;
    struct buf out;
    assert_int_equal(read_render(text, sizeof text - 1, 1000, 0, 0, &m, &out), 0);
    assert_string_equal(buf_str(&out), "Subject: d\r\nX-Added: 1\r\n\r\n..hidden\r\n");
    mailmsg_free(&m);
    buf_free(&out);
    assert_int_equal(read_render(text, sizeof text - 1, 1000, 1, 0, &m, &out), 0);
    assert_string_equal(buf_str(&out),
                        "Subject: d\r\nX-Added: 1\r\n\r\n..hidden\r\n..\r\nafter\r\n");
    mailmsg_free(&m);
    buf_free(&out);
}

static void test_extract_recipients_and_drop_bcc(void **state)
{
    (void)state;
    const char text[] = "To: \"Doe, J\" <j@x.test>, k@x.test (Kay)\n"
                        "Cc: team: a@x.test, b@x.test;\nBcc: hidden@x.test,\n secret@x.test\n"
                        "Subject: t\n\nbody\n";
    struct mailmsg m;
    struct buf out;
    assert_int_equal(read_render(text, sizeof text - 1, 1000, 0, 1, &m, &out), 0);
    const char *want[] = {"j@x.test", "k@x.test", "a@x.test", "b@x.test", "hidden@x.test",
                          "secret@x.test"};
    assert_int_equal(m.nrcpt, 6);
    for (int i = 0; i < 6; i++)
        assert_string_equal(m.rcpts[i], want[i]);
    assert_null(strstr(buf_str(&out), "Bcc"));
    assert_null(strstr(buf_str(&out), "secret"));
    assert_non_null(strstr(buf_str(&out), "Cc: team: a@x.test, b@x.test;\r\n"));
    mailmsg_free(&m);
    buf_free(&out);
}

static void test_bare_cr_and_8bit(void **state)
{
    (void)state;
    const char text[] = "Subject: c\n\na\r.b\n\xc3\xa4\n";
    struct mailmsg m;
    struct buf out;
    assert_int_equal(read_render(text, sizeof text - 1, 1000, 0, 0, &m, &out), 0);
    /* The server ends a line at a bare CR: the dot after it is stuffed. */
    assert_string_equal(buf_str(&out), "Subject: c\r\nX-Added: 1\r\n\r\na\r..b\r\n\xc3\xa4\r\n");
    assert_int_equal(m.eightbit, 1);
    mailmsg_free(&m);
    buf_free(&out);
}

static void test_too_big(void **state)
{
    (void)state;
    char text[300];
    memset(text, 'x', sizeof text);
    text[sizeof text - 1] = '\n';
    struct mailmsg m;
    struct buf out;
    assert_int_equal(read_render(text, sizeof text, 200, 0, 0, &m, &out), MAILMSG_TOO_BIG);
    mailmsg_free(&m);
    buf_free(&out);
    assert_int_equal(read_render(text, sizeof text, 300, 0, 0, &m, &out), 0);
    mailmsg_free(&m);
    buf_free(&out);
}

static void test_no_headers(void **state)
{
    (void)state;
    const char text[] = "just a line\n";
    struct mailmsg m;
    struct buf out;
    assert_int_equal(read_render(text, sizeof text - 1, 1000, 0, 1, &m, &out), 0);
    assert_int_equal(m.nheaders, 0);
    assert_int_equal(m.nrcpt, 0);
    assert_string_equal(buf_str(&out), "X-Added: 1\r\n\r\njust a line\r\n");
    mailmsg_free(&m);
    buf_free(&out);
}

static void test_control_character_in_address(void **state)
{
    (void)state;
    const char text[] = "To: ok@x.test, a\rb@x.test\n\nbody\n";
    struct mailmsg m;
    struct buf out;
    assert_int_equal(read_render(text, sizeof text - 1, 1000, 0, 1, &m, &out),
                     MAILMSG_BAD_ADDRESS);
    assert_string_equal(m.bad, "a?b@x.test");
    mailmsg_free(&m);
    buf_free(&out);
    /* Without -t the header is just text. */
    assert_int_equal(read_render(text, sizeof text - 1, 1000, 0, 0, &m, &out), 0);
    mailmsg_free(&m);
    buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lf_crlf_and_no_final_newline),
        cmocka_unit_test(test_lone_dot),
        cmocka_unit_test(test_extract_recipients_and_drop_bcc),
        cmocka_unit_test(test_bare_cr_and_8bit),
        cmocka_unit_test(test_too_big),
        cmocka_unit_test(test_no_headers),
        cmocka_unit_test(test_control_character_in_address),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
