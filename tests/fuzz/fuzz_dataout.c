/* libFuzzer target: the canonical DATA writer (src/deliver/dataout.c).
 *
 * Input layout: byte 0 picks the line limit, byte 1 the piece size (0: all
 * at once), the rest is stored message content, any bytes at all.
 * Invariants checked:
 *   - the output ends with ".\r\n" and holds only CRLF pairs, no NUL;
 *   - no line is longer than the limit;
 *   - read as the most lenient receiver would (CR, LF or CRLF end a line,
 *     NUL stripped), the only "." line is the last one;
 *   - without a line limit, removing the dot-stuffing gives back the
 *     input's content bytes (line ends made CRLF, NUL dropped);
 *   - feeding in pieces gives the same bytes as feeding all at once. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "deliver/dataout.h"

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

static void encode(const char *p, size_t n, size_t limit, size_t step, struct sink *out)
{
    static struct data_writer dw;
    memset(out, 0, sizeof *out);
    data_writer_init(&dw, limit, sink_emit, out);
    for (size_t off = 0; off < n;) {
        size_t len = step && step < n - off ? step : n - off;
        if (data_writer_feed(&dw, p + off, len) < 0)
            abort();
        off += len;
    }
    if (data_writer_finish(&dw) < 0)
        abort();
}

static void check_lines(const struct sink *o, size_t limit)
{
    const char *d = o->data;
    size_t n = o->len, col = 0, start = 0;
    if (n < 3 || memcmp(d + n - 3, ".\r\n", 3) != 0)
        abort();
    for (size_t i = 0; i < n; i++) {
        if (d[i] == '\0' || (d[i] == '\r' && (i + 1 == n || d[i + 1] != '\n')) ||
            (d[i] == '\n' && (i == 0 || d[i - 1] != '\r')))
            abort();
        col = d[i] == '\r' || d[i] == '\n' ? 0 : col + 1;
        if (limit && col > limit)
            abort();
        if (d[i] == '\n') {
            if (i - 1 - start == 1 && d[start] == '.' && i != n - 1)
                abort(); /* a lone "." line before the end */
            start = i + 1;
        }
    }
}

/* The content again (no folds: limit 0), stuffing removed. */
static size_t decode(const struct sink *o, char *out)
{
    size_t k = 0;
    int bol = 1;
    for (size_t i = 0; i + 3 < o->len; i++) {
        char c = o->data[i];
        if (bol && c == '.') {
            bol = 0;
            continue;
        }
        out[k++] = c;
        bol = c == '\n';
    }
    return k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    static const size_t limits[] = {0, 2, 3, 10, 998};
    size_t limit = limits[data[0] % (sizeof limits / sizeof limits[0])];
    size_t step = data[1];
    const char *p = (const char *)data + 2;
    size_t n = size - 2;

    struct sink whole, parts;
    encode(p, n, limit, 0, &whole);
    check_lines(&whole, limit);
    encode(p, n, limit, step, &parts);
    if (parts.len != whole.len || memcmp(parts.data, whole.data, whole.len) != 0)
        abort();
    if (limit == 0) {
        /* Without folds, decoding must give the canonical content back. */
        char *back = malloc(whole.len + 1), *want = malloc(2 * n + 3);
        size_t k = decode(&whole, back), w = 0;
        for (size_t i = 0; i < n; i++) {
            if (p[i] == '\0')
                continue;
            if (p[i] == '\r' || p[i] == '\n') {
                want[w++] = '\r';
                want[w++] = '\n';
                if (p[i] == '\r' && i + 1 < n && p[i + 1] == '\n')
                    i++;
                continue;
            }
            want[w++] = p[i];
        }
        if (w && want[w - 1] != '\n') {
            want[w++] = '\r';
            want[w++] = '\n';
        }
        if (k != w || memcmp(back, want, w) != 0)
            abort();
        free(back);
        free(want);
    }
    free(whole.data);
    free(parts.data);
    return 0;
}
