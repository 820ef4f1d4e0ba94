/* saslcli: the SMTP client's AUTH (RFC 4954) as Postfix's smtp_sasl_*
 * parameters configure it. The credentials for a next hop come from
 * smtp_sasl_password_maps ("user:password"), looked up as "[host]:port"
 * and "[host]" for a next hop written in brackets, then the server's host
 * name, then the next-hop domain. Mechanisms PLAIN and LOGIN (both
 * plaintext ones): smtp_sasl_security_options (smtp_sasl_tls_security_options
 * once TLS is up) decide whether they may be used; with Postfix's defaults
 * (noplaintext everywhere) they may not, so no password leaves keypost
 * until an administrator allows it, normally over TLS only. A server that
 * offers no AUTH is used without it, as Postfix does; one that offers AUTH
 * but no mechanism keypost may use, or refuses the login, is a temporary
 * failure for that server. The password is never logged. */
#ifndef KP_SASLCLI_H
#define KP_SASLCLI_H

#include <stddef.h>

#include "conf/conf.h"

struct smtpio;

/* Open smtp_sasl_password_maps (at load time, with the master's rights) and
 * check the security options. */
int saslcli_init(struct conf_errors *errs);
void saslcli_free(void);

struct saslcli_target {
    const char *nexthop;  /* the route's next hop (domain or host) */
    int port;
    int bracketed;        /* "[host]": no MX lookup */
    const char *host;     /* the server's host name */
    const char *relay;    /* "host[addr]:port" for the logs */
    const char *mechs;    /* the EHLO AUTH keywords, "" when AUTH was not offered */
    int tls;              /* the session is encrypted */
};

/* Log in when smtp_sasl_auth_enable is set and the maps have credentials
 * for t. 0: go on (logged in, or nothing to do); -1: why holds a reason
 * starting with a 4.x.x status (the caller tries the next server). */
int saslcli_login(struct smtpio *io, const struct saslcli_target *t, char *why, size_t len);

#endif
