/* addrclass: Postfix's address classes, and recipient validation.
 * A recipient domain is, in this order of precedence:
 *   local            mydestination             delivered by local_transport
 *   virtual alias    virtual_alias_domains     every address must be an alias
 *   virtual mailbox  virtual_mailbox_domains   delivered by virtual_transport
 *                                              (required: e.g. Dovecot's LMTP)
 *   relay            relay_domains             delivered by relay_transport
 *   default          anything else             (relayhost or MX)
 * Each list holds names (".example.com" also matches subdomains) and
 * tables (texthash:, inline:, lmdb:, pgsql:), whose keys are domains. A
 * domain listed in two classes is a configuration error (checked for the
 * names and local tables; a database's rows cannot be listed). On an event
 * loop pgsql lookups go through the caller's memo (table/tablememo.h):
 * a lookup it cannot answer yet reads as a failure (-1) and is fetched. The recipient tables of
 * each class (local_recipient_maps, virtual_alias_maps,
 * virtual_mailbox_maps, relay_recipient_maps) decide whether an address
 * exists; an empty table list means every address of the class exists.
 * Used by smtpd (reject_unauth_destination, unlisted recipients), routing
 * and the queue manager: it depends on nothing of theirs. */
#ifndef KP_ADDRCLASS_H
#define KP_ADDRCLASS_H

#include <stddef.h>

#include "conf/conf.h"

enum addr_class { AC_LOCAL, AC_VIRTUAL_ALIAS, AC_VIRTUAL_MAILBOX, AC_RELAY, AC_DEFAULT };

int addrclass_init(struct conf_errors *errs);
void addrclass_free(void);
/* Ask every database table of the lists once (`keypost check`). */
void addrclass_probe_tables(struct conf_errors *errs);
/* The class of a domain (without '@'); -1 when a table cannot answer. */
int addrclass_of_domain(const char *domain, enum addr_class *out);
/* The class of an address's domain; -1 when a table cannot answer. */
int addrclass_of_address(const char *addr, enum addr_class *out);
const char *addrclass_name(enum addr_class c);
/* Does the recipient exist in its class? 1 yes (or nothing to check),
 * 0 no (reply holds Postfix's 550 5.1.1 text), -1 a table cannot answer
 * (reply holds 451 4.3.0). */
int addrclass_recipient_known(const char *addr, char *reply, size_t len);
/* The same for a sender in a class keypost is final for
 * (smtpd_reject_unlisted_sender). */
int addrclass_sender_known(const char *addr, char *reply, size_t len);
/* A virtual mailbox: the maildir path below virtual_mailbox_base that
 * virtual_mailbox_maps gives for addr; 0 found, 1 none, -1 tempfail. */
int addrclass_mailbox_path(const char *addr, char *out, size_t len);

/* Where recipient_delimiter splits a local part ("user+ext" -> 4), or its
 * length when it is not split (no delimiter, or a name Postfix never
 * splits: postmaster, mailer-daemon, owner-*, *-request). */
size_t addrclass_extension_cut(const char *local);
/* 1 when local_recipient_maps lists addr (or its local part) as it is. */
int addrclass_local_listed(const char *addr);
/* Alias lookups for expand.c: 1 found (*value valid until the next
 * lookup), 0 none, -1 a table cannot answer. */
int addrclass_virtual_alias(const char *addr, const char **value);
int addrclass_local_alias(const char *addr, const char **value);

#endif
