/* dataout: a stored message turned into canonical SMTP DATA bytes, the
 * mirror of smtpd/dataread. Whatever the queue file holds (a message from
 * before bare line ends were normalized, a bounce, a header of 100,000
 * bytes), what goes on the wire is:
 *   - CRLF line ends only: a bare LF or a bare CR becomes CRLF, so no
 *     receiver, however it reads line ends, finds a line end we did not
 *     dot-stuff;
 *   - no NUL bytes (keypost never offers BINARYMIME), dropped before the
 *     dot-stuffing decision, so a receiver that strips NUL sees what we
 *     saw;
 *   - every line that begins with "." dot-stuffed (RFC 5321 4.5.2);
 *   - no line longer than smtp_line_length_limit bytes (0: no limit):
 *     longer lines are folded by inserting CRLF SPACE, as Postfix does;
 *   - then the end of data, ".\r\n", after a final CRLF.
 * Used by the SMTP and LMTP clients. */
#ifndef KP_DATAOUT_H
#define KP_DATAOUT_H

#include <stddef.h>

typedef int (*dataout_emit_fn)(void *arg, const char *p, size_t n);

struct data_writer {
    int bol;             /* at the start of an output line */
    int pending_cr;      /* a CR was read; the next byte decides its kind */
    size_t col;          /* bytes on the current output line */
    size_t limit;
    int failed;          /* emit() failed: everything after is dropped */
    dataout_emit_fn emit;
    void *arg;
    size_t used;
    char out[16384];
};

void data_writer_init(struct data_writer *dw, size_t line_limit, dataout_emit_fn emit,
                      void *arg);
/* Content bytes (without dot-stuffing). Returns -1 once emit() failed. */
int data_writer_feed(struct data_writer *dw, const char *p, size_t n);
/* Ends the last line and sends ".\r\n". Returns -1 if any emit() failed. */
int data_writer_finish(struct data_writer *dw);

#endif
