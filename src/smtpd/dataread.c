#include "smtpd/dataread.h"

#include <string.h>

enum { BOL, MID, CR, DOT, DOT_CR };

void data_reader_init(struct data_reader *dr, size_t limit, data_emit_fn emit, void *arg)
{
    memset(dr, 0, offsetof(struct data_reader, out));
    dr->state = BOL;
    dr->bol_crlf = 1; /* the DATA command line ended the previous line */
    dr->limit = limit;
    dr->emit = emit;
    dr->arg = arg;
}

static void flush_out(struct data_reader *dr)
{
    if (dr->used && !dr->too_big && !dr->write_error && dr->emit(dr->arg, dr->out, dr->used) < 0)
        dr->write_error = 1;
    dr->used = 0;
}

static void put(struct data_reader *dr, const char *p, size_t n)
{
    dr->size += n;
    if (dr->size > dr->limit) {
        dr->too_big = 1;
        dr->used = 0;
        return;
    }
    if (dr->used + n > sizeof dr->out)
        flush_out(dr);
    memcpy(dr->out + dr->used, p, n);
    dr->used += n;
}

enum line_end { REAL_CRLF, BARE_LF, BARE_CR };

static void end_line(struct data_reader *dr, enum line_end how)
{
    put(dr, "\r\n", 2);
    dr->bol_crlf = how == REAL_CRLF;
    if (how == BARE_LF)
        dr->bare_lf = 1;
    else if (how == BARE_CR)
        dr->bare_cr = 1;
    dr->state = BOL;
}

/* One byte in the middle of a line. */
static void mid_byte(struct data_reader *dr, char c)
{
    if (c == '\r')
        dr->state = CR;
    else if (c == '\n')
        end_line(dr, BARE_LF);
    else {
        put(dr, &c, 1);
        dr->state = MID;
    }
}

/* The first byte of a line: a dot may start the end of data or be stuffing. */
static void bol_byte(struct data_reader *dr, char c)
{
    if (c == '.')
        dr->state = DOT;
    else
        mid_byte(dr, c);
}

/* A CR that no LF follows ends the line too: a receiver further on may
 * read it so, and a line end must never be hidden from the end-of-data
 * check (the next line does not begin after a real CRLF). */
static void after_bare_cr(struct data_reader *dr, char c)
{
    end_line(dr, BARE_CR);
    bol_byte(dr, c);
}

size_t data_reader_feed(struct data_reader *dr, const char *p, size_t n, int *done)
{
    *done = 0;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        switch (dr->state) {
        case BOL:
            bol_byte(dr, c);
            break;
        case DOT:
            if (c == '\r')
                dr->state = DOT_CR;
            else if (c == '\n') {
                put(dr, ".", 1); /* ".<LF>" is content, never the end */
                end_line(dr, BARE_LF);
            } else
                mid_byte(dr, c); /* dot-stuffing: drop the leading dot */
            break;
        case DOT_CR:
            if (c == '\n' && dr->bol_crlf) {
                flush_out(dr);
                *done = 1;
                return i + 1;
            }
            put(dr, ".", 1);
            if (c == '\n')
                end_line(dr, REAL_CRLF);
            else
                after_bare_cr(dr, c);
            break;
        case CR:
            if (c == '\n')
                end_line(dr, REAL_CRLF);
            else
                after_bare_cr(dr, c);
            break;
        default:
            mid_byte(dr, c);
            break;
        }
    }
    flush_out(dr);
    return n;
}
