/* mailmsg: a message as the sendmail command reads it from standard input,
 * made ready for SMTP. Lines end with LF or CRLF (both become CRLF; a CR
 * elsewhere stays and the server treats it as any bare CR); the last line
 * needs no line end; without ignore_dots a line holding a lone "." ends the
 * message (Sendmail's rule; -i and -oi turn it off). With extract the
 * recipients of To:, Cc: and Bcc: are collected and Bcc: is removed. */
#ifndef KP_MAILMSG_H
#define KP_MAILMSG_H

#include <stddef.h>
#include <stdio.h>

#include "util/buf.h"

struct mailmsg {
    char **headers;  /* header fields, continuation lines joined by CRLF */
    int nheaders;
    struct buf body; /* the body as read, CRLF line ends, not dot-stuffed */
    char **rcpts;    /* from To:, Cc:, Bcc: (extract) */
    int nrcpt;
    int eightbit;    /* a byte >= 0x80 somewhere */
    size_t read;     /* bytes read from the input */
    char bad[256];   /* BAD_ADDRESS: the address, control bytes as '?' */
};

/* BAD_ADDRESS: a To:, Cc: or Bcc: address holds a control character (a CR,
 * say), which no RCPT command may carry: refused, not dropped. */
enum {
    MAILMSG_OK = 0,
    MAILMSG_TOO_BIG = -1,
    MAILMSG_READ_ERROR = -2,
    MAILMSG_NO_MEMORY = -3,
    MAILMSG_BAD_ADDRESS = -4,
};

/* Read in until EOF (or the lone dot). More than limit bytes: TOO_BIG. */
int mailmsg_read(FILE *in, size_t limit, int ignore_dots, int extract, struct mailmsg *m);
/* 1 when a header field with this name exists (case-insensitive). */
int mailmsg_has_header(const struct mailmsg *m, const char *name);
/* The DATA content: the headers, then extra (CRLF-ended fields, may be
 * ""), an empty line and the body, dot-stuffed, without the final ".". */
int mailmsg_render(const struct mailmsg *m, const char *extra, struct buf *out);
void mailmsg_free(struct mailmsg *m);
/* Add the addresses of an address-list header value (RFC 5322: display
 * names, comments, groups) to m->rcpts. 0, or one of the errors above.
 * Exposed for unit tests. */
int mailmsg_add_addresses(struct mailmsg *m, const char *value);
/* 1 when addr can go into an SMTP command: no byte below 0x20, no DEL. */
int mailmsg_address_ok(const char *addr);

#endif
