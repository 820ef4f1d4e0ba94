/* dataread: the DATA stream reader, a byte state machine.
 * It removes dot-stuffing, finds the end of data and passes the message on
 * with CRLF line ends. Only <CR><LF>.<CR><LF> ends the message: a "." line
 * reached through a bare LF, or ended by one, is content (no SMTP
 * smuggling). A bare LF or a bare CR inside the message is normalized to
 * CRLF (so that what is stored, and later sent on, has one kind of line
 * end only) and recorded, so that the message can be rejected
 * (smtpd_forbid_bare_newline = reject).
 * Bytes past the size limit are counted but not passed on. */
#ifndef KP_DATAREAD_H
#define KP_DATAREAD_H

#include <stddef.h>

typedef int (*data_emit_fn)(void *arg, const char *p, size_t n);

struct data_reader {
    int state;
    int bol_crlf;        /* the current line began after a real CRLF */
    int bare_lf;         /* a bare LF was seen */
    int bare_cr;         /* a bare CR was seen */
    int too_big;
    int write_error;
    size_t size;         /* bytes of message content seen */
    size_t limit;
    data_emit_fn emit;
    void *arg;
    size_t used;
    char out[8192];
};

void data_reader_init(struct data_reader *dr, size_t limit, data_emit_fn emit, void *arg);
/* Consume up to n bytes; *done becomes 1 right after the end-of-data line,
 * and the return value says how many bytes belonged to the message. */
size_t data_reader_feed(struct data_reader *dr, const char *p, size_t n, int *done);

#endif
