/* smtpio: the client side of the SMTP family of protocols (LMTP and SMTP)
 * over a blocking socket with a deadline on every read and write, TLS
 * included. Used only in delivery agents, never on an event loop. */
#ifndef KP_SMTPIO_H
#define KP_SMTPIO_H

#include <openssl/ssl.h>
#include <stddef.h>
#include <sys/socket.h>

struct smtpio {
    int fd;
    SSL *ssl;           /* after STARTTLS */
    int timeout;        /* seconds per read or write */
    char in[8192];
    size_t have;
};

/* Connect to "inet:HOST:PORT" or "unix:PATH"; -1 with err filled. */
int smtpio_connect(struct smtpio *io, const char *target, int timeout, char *err, size_t len);
/* Connect to one address (for the SMTP client, which walks MX hosts). */
int smtpio_connect_addr(struct smtpio *io, const struct sockaddr_storage *ss, int timeout,
                        char *err, size_t len);
/* Start TLS on the connection under the destination's policy; -1 with err
 * filled. */
struct tls_policy;
int smtpio_starttls(struct smtpio *io, SSL_CTX *ctx, const char *sni,
                    const struct tls_policy *p, char *err, size_t len);
/* Read one (multi-line) reply; the lines after the first are appended to
 * lines (when not NULL) one per line without codes, for EHLO keywords.
 * Returns the code or -1. */
int smtpio_reply_lines(struct smtpio *io, char *text, size_t len, char *lines, size_t llen);
/* Read one (multi-line) reply; returns the code (e.g. 250) or -1. The text
 * of the last line (code included) goes to text. */
int smtpio_reply(struct smtpio *io, char *text, size_t len);
int smtpio_printf(struct smtpio *io, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Send a message body from a queue file as canonical DATA (deliver/dataout:
 * CRLF only, no NUL, dot-stuffed, lines folded at line_limit), then ".". */
int smtpio_send_body(struct smtpio *io, const char *path, long offset, size_t line_limit);
/* Write raw bytes (pipelined commands). */
int smtpio_write(struct smtpio *io, const char *p, size_t n);
void smtpio_close(struct smtpio *io);

#endif
