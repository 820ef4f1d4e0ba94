/* smtp: the SMTP client. It delivers a batch of messages to one next hop
 * over one connection: MX hosts in preference order (or the relayhost),
 * each address in turn until one answers; EHLO; STARTTLS with the
 * destination's TLS policy and keypost's own client certificate; then for
 * every message MAIL, RCPT..., DATA, pipelined when the server offers
 * PIPELINING. Each recipient's result is reported as soon as the server has
 * answered for it, so that a crash later never delivers it twice. */
#ifndef KP_SMTP_H
#define KP_SMTP_H

#include <openssl/ssl.h>

#include "deliver/deliver.h"
#include "queue/route.h"

struct smtp_item {
    struct dmessage msg;
    int *rcpt;              /* indexes into msg.env->rcpts */
    int nrcpt;
    int needs_smtputf8;
    int needs_8bitmime;
};

typedef void (*smtp_result_fn)(void *arg, int item, int k, const struct dresult *r);

void smtp_deliver(const struct route *route, const char *domain, SSL_CTX *tls,
                  struct smtp_item *items, int nitems, smtp_result_fn done, void *arg);

#endif
