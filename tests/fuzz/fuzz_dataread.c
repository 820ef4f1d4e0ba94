/* libFuzzer target: the DATA stream reader (src/smtpd/dataread.c).
 *
 * Input layout: byte 0 picks the size limit, byte 1 the piece size the rest
 * is fed in (0: all at once), the rest is the stream after "DATA\r\n".
 * Invariants checked:
 *   - the bytes passed on equal dr.size when the message is not too big,
 *     and never exceed the limit;
 *   - the output never holds a bare LF or a bare CR (only CRLF pairs);
 *   - consumption stops right after a "\r\n.\r\n" (or a leading ".\r\n");
 *   - feeding in pieces gives the same result as feeding all at once. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtpd/dataread.h"

struct sink {
    char *data;
    size_t len, cap;
};

static int sink_emit(void *arg, const char *p, size_t n)
{
    struct sink *s = arg;
    if (s->len + n > s->cap) {
        size_t cap = s->cap ? s->cap : 4096;
        while (cap < s->len + n)
            cap *= 2;
        char *d = realloc(s->data, cap);
        if (d == NULL)
            abort();
        s->data = d;
        s->cap = cap;
    }
    memcpy(s->data + s->len, p, n);
    s->len += n;
    return 0;
}

struct outcome {
    struct sink out;
    struct data_reader dr;
    size_t consumed;
    int done;
};

static void run(const char *p, size_t n, size_t limit, size_t step, struct outcome *o)
{
    memset(&o->out, 0, sizeof o->out);
    data_reader_init(&o->dr, limit, sink_emit, &o->out);
    o->consumed = 0;
    o->done = 0;
    while (o->consumed < n && !o->done) {
        size_t len = step ? step : n - o->consumed;
        if (len > n - o->consumed)
            len = n - o->consumed;
        int done = 0;
        size_t used = data_reader_feed(&o->dr, p + o->consumed, len, &done);
        if (used > len || (!done && used != len))
            abort();
        o->consumed += used;
        o->done = done;
    }
}

static void check(const char *p, size_t limit, const struct outcome *o)
{
    const struct data_reader *dr = &o->dr;
    if (dr->write_error)
        abort();
    if (!dr->too_big && o->out.len != dr->size)
        abort();
    if (dr->too_big && dr->size <= limit)
        abort();
    if (o->out.len > limit)
        abort();
    for (size_t i = 0; i < o->out.len; i++) {
        if (o->out.data[i] == '\n' && (i == 0 || o->out.data[i - 1] != '\r'))
            abort();
        /* Only when the message was kept: a too-big one stops mid-pair. */
        if (!dr->too_big && o->out.data[i] == '\r' &&
            (i + 1 == o->out.len || o->out.data[i + 1] != '\n'))
            abort();
    }
    if (o->done) {
        /* The end is "<CRLF>.<CRLF>", or ".<CRLF>" right at the start. */
        size_t c = o->consumed;
        int at_start = c == 3 && memcmp(p, ".\r\n", 3) == 0;
        int after_crlf = c >= 5 && memcmp(p + c - 5, "\r\n.\r\n", 5) == 0;
        if (!at_start && !after_crlf)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    static const size_t limits[] = {0, 1, 2, 3, 5, 8, 16, 64, 1000, 8191, 8192, 8193, 100000};
    size_t limit = limits[data[0] % (sizeof limits / sizeof limits[0])];
    if (data[0] >= 0xf0)
        limit = (size_t)1 << 30;
    size_t step = data[1];
    const char *p = (const char *)data + 2;
    size_t n = size - 2;

    struct outcome whole, parts;
    run(p, n, limit, 0, &whole);
    check(p, limit, &whole);
    run(p, n, limit, step, &parts);
    check(p, limit, &parts);

    struct outcome bytes;
    run(p, n, limit, 1, &bytes);
    check(p, limit, &bytes);

    const struct outcome *cmp[] = {&parts, &bytes};
    for (int i = 0; i < 2; i++) {
        const struct outcome *o = cmp[i];
        if (o->done != whole.done || o->consumed != whole.consumed ||
            o->dr.size != whole.dr.size || o->dr.bare_lf != whole.dr.bare_lf ||
            o->dr.bare_cr != whole.dr.bare_cr ||
            o->dr.too_big != whole.dr.too_big)
            abort();
        /* The content is only kept when the message fits. */
        if (!whole.dr.too_big && (o->out.len != whole.out.len ||
                                  (whole.out.len &&
                                   memcmp(o->out.data, whole.out.data, whole.out.len) != 0)))
            abort();
    }
    free(whole.out.data);
    free(parts.out.data);
    free(bytes.out.data);
    return 0;
}
