/* route: where a recipient's mail goes next, without DNS.
 *   1. transport_maps (domain, then .parent domains): smtp:[host]:port,
 *      smtp:host[:port] (MX lookup), lmtp:inet:HOST:PORT, lmtp:unix:PATH,
 *      maildir:DIR, virtual (deliver/virtual.h), discard:[text], error:text
 *   2. a mydestination domain: local_transport; a relay_domains domain:
 *      relay_transport when set (addr/addrclass.h decides the class)
 *   3. relayhost ([host]:port without MX lookup, host with it)
 *   4. the recipient's domain by MX lookup, port 25
 * Recipients with the same route key can share one delivery connection. */
#ifndef KP_ROUTE_H
#define KP_ROUTE_H

#include <stddef.h>

#include "conf/conf.h"

enum transport { TR_MAILDIR, TR_LMTP, TR_SMTP, TR_DISCARD, TR_ERROR, TR_VIRTUAL };

struct route {
    enum transport transport;
    char nexthop[300];   /* domain or host for smtp; target for lmtp; dir for maildir */
    int port;
    int mx;              /* look up MX records for nexthop */
    char text[300];      /* error: and discard: text */
    char key[340];       /* equal keys share a connection */
};

int route_init(struct conf_errors *errs);
void route_free(void);
/* Parse one transport spec (as in transport_maps or local_transport). */
int route_parse(const char *spec, const char *domain, struct route *r, char *err, size_t len);
void route_for(const char *rcpt, struct route *r);
/* The maildir: targets of transport_maps (local tables), which serve
 * creates and gives to mail_owner as it does local_transport's. */
int route_maildir_bases(char (*out)[300], int max);
/* 1 when some route may lead to the virtual agent (its helper is needed). */
int route_may_use_virtual(void);

#endif
