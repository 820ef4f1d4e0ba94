#include "deliver/dataout.h"

#include <string.h>

void data_writer_init(struct data_writer *dw, size_t line_limit, dataout_emit_fn emit,
                      void *arg)
{
    memset(dw, 0, offsetof(struct data_writer, out));
    dw->bol = 1;
    /* A folded line starts with a space and needs room for one more byte,
     * so a limit of 1 acts as 2. */
    dw->limit = line_limit == 1 ? 2 : line_limit;
    dw->emit = emit;
    dw->arg = arg;
}

static void flush_out(struct data_writer *dw)
{
    if (dw->used && !dw->failed && dw->emit(dw->arg, dw->out, dw->used) < 0)
        dw->failed = 1;
    dw->used = 0;
}

static void put(struct data_writer *dw, const char *p, size_t n)
{
    if (dw->used + n > sizeof dw->out)
        flush_out(dw);
    memcpy(dw->out + dw->used, p, n);
    dw->used += n;
}

static void new_line(struct data_writer *dw)
{
    put(dw, "\r\n", 2);
    dw->bol = 1;
    dw->col = 0;
}

/* One byte of line content. */
static void content_byte(struct data_writer *dw, char c)
{
    if (c == '\0')
        return;
    if (dw->limit && dw->col >= dw->limit) {
        /* The continuation starts with a space: never a dot, and a header
         * stays one header. */
        put(dw, "\r\n ", 3);
        dw->col = 1;
    }
    if (dw->bol && c == '.') {
        put(dw, ".", 1);
        dw->col++;
    }
    put(dw, &c, 1);
    dw->col++;
    dw->bol = 0;
}

int data_writer_feed(struct data_writer *dw, const char *p, size_t n)
{
    for (size_t i = 0; i < n && !dw->failed; i++) {
        char c = p[i];
        if (dw->pending_cr) {
            dw->pending_cr = 0;
            new_line(dw);
            if (c == '\n')
                continue; /* else a CR alone ended the line too */
        }
        if (c == '\r')
            dw->pending_cr = 1;
        else if (c == '\n')
            new_line(dw);
        else
            content_byte(dw, c);
    }
    return dw->failed ? -1 : 0;
}

int data_writer_finish(struct data_writer *dw)
{
    if (dw->pending_cr) {
        dw->pending_cr = 0;
        new_line(dw);
    }
    if (!dw->bol)
        new_line(dw);
    put(dw, ".\r\n", 3);
    flush_out(dw);
    return dw->failed ? -1 : 0;
}
