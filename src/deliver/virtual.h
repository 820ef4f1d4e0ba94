/* virtual: keypost's delivery agent for virtual mailbox domains, as
 * Postfix's virtual(8) with Maildir mailboxes:
 *   virtual_mailbox_maps   address -> path below virtual_mailbox_base,
 *                          ending in '/' (Maildir; mbox is not supported)
 *   virtual_uid_maps       address -> uid of the files ("static:N" or tables)
 *   virtual_gid_maps       address -> gid
 *   virtual_minimum_uid    the smallest uid accepted (default 100)
 * Keys are tried as virtual_mailbox_maps tries them: the address, without
 * its extension, then "@domain". Files are written through the mailbox
 * helper (mailboxd.h) when keypost runs as root; otherwise only a uid/gid
 * equal to keypost's own can be served, and any other defers with a reason.
 * The route "virtual" (the default virtual_transport) reaches this agent. */
#ifndef KP_VIRTUAL_H
#define KP_VIRTUAL_H

#include "conf/conf.h"
#include "deliver/deliver.h"

/* Check and open virtual_uid_maps/virtual_gid_maps (static:N or tables). */
int virtual_init(struct conf_errors *errs);
void virtual_free(void);
void virtual_deliver(const struct dmessage *m, const char *rcpt, struct dresult *r);

#endif
