/* tls_policy: the SMTP client's TLS policy for a destination, decided in
 * one place. Postfix's levels and smtp_tls_policy_maps syntax:
 *   none | may | encrypt | fingerprint | verify | secure | dane | dane-only
 *   attributes: match=, protocols=, ciphers=, exclude=
 * An attribute keypost does not implement (tafile=, servername=, ...) is
 * refused, never ignored. The tables of smtp_tls_policy_maps (a list, the
 * first table with an entry wins) are opened and every local entry is
 * checked when the configuration is loaded (FILE:LINE errors); an entry
 * that still does not parse at delivery time (a database row) makes the
 * destination INVALID, and a table that cannot answer (or could not be
 * opened at a reload) makes it TEMPFAIL: both defer the mail, never send it
 * under the default level. */
#ifndef KP_TLS_POLICY_H
#define KP_TLS_POLICY_H

#include <stddef.h>

#include "conf/conf.h"
#include "tls/mtasts.h" /* issue 11: MTA-STS */

enum tls_level { TL_NONE, TL_MAY, TL_ENCRYPT, TL_FINGERPRINT, TL_VERIFY, TL_SECURE, TL_DANE,
                TL_DANE_ONLY };

struct dane_host;

struct tls_policy {
    enum tls_level level;
    char match[1024];     /* fingerprints or names, '|' or ':' separated as written */
    int min_version;      /* from protocols=; 0: the client's default */
    int max_version;
    char ciphers[1024];   /* OpenSSL cipher list from ciphers=/exclude=; "" default */
    char exclude[512];    /* exclude= as written */
    char origin[320];     /* where the policy came from, for the logs */
    /* issue 11: MTA-STS. The domain's policy, attached by tls_policy_find
     * only where the level came from smtp_tls_security_level (mode
     * STS_NONE otherwise); see tls/mtasts.h for how it is used. */
    struct mtasts_policy sts;
    const struct dane_host *dane; /* dane/dane-only with usable TLSA records
                                   * for the host being tried (tls/dane.h) */
};

enum tls_policy_status { TLS_POLICY_OK, TLS_POLICY_INVALID, TLS_POLICY_TEMPFAIL };

/* Parse "LEVEL [attr=value ...]"; -1 with err filled. */
int tls_policy_parse(const char *text, struct tls_policy *out, char *err, size_t errlen);
const char *tls_level_name(enum tls_level level);

/* Open smtp_tls_policy_maps and check every local entry, and the DNSSEC
 * trust anchor the DANE levels need; errors go to errs with FILE:LINE.
 * Replaces what an earlier call opened. */
int tls_policy_init(struct conf_errors *errs);
/* The policy for a next hop: an MX route looks up the domain, a host route
 * "[host]:port" then "[host]". On INVALID or TEMPFAIL, why holds a reason
 * that starts with 4.7.5 / 4.3.0 and names the entry. */
enum tls_policy_status tls_policy_find(const char *nexthop, int port, int mx,
                                       struct tls_policy *out, char *why, size_t len);

#endif
