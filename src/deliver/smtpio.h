/* smtpio: the client side of the SMTP family of protocols (LMTP now, SMTP
 * relay next) over a blocking socket with a deadline on every step. Used
 * only in delivery processes, never on an event loop. */
#ifndef KP_SMTPIO_H
#define KP_SMTPIO_H

#include <stddef.h>

struct smtpio {
    int fd;
    int timeout;        /* seconds per read or write */
    char in[8192];
    size_t have;
};

/* Connect to "inet:HOST:PORT" or "unix:PATH"; -1 with err filled. */
int smtpio_connect(struct smtpio *io, const char *target, int timeout, char *err, size_t len);
/* Read one (multi-line) reply; returns the code (e.g. 250) or -1. The text
 * of the last line (code included) goes to text. */
int smtpio_reply(struct smtpio *io, char *text, size_t len);
int smtpio_printf(struct smtpio *io, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Send a message body from a queue file: CRLF lines, dot-stuffed, then ".". */
int smtpio_send_body(struct smtpio *io, const char *path, long offset);
void smtpio_close(struct smtpio *io);

#endif
