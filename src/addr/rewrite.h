/* rewrite: envelope address rewriting when a message is queued, before
 * alias expansion, with Postfix's parameters:
 *   canonical_maps, sender_canonical_maps, recipient_canonical_maps
 *     keys "user@domain", then "@domain"; a value "@other" keeps the user
 *     part ("@domain @other" renames a domain), any other value replaces
 *     the address; the sender and recipient maps are tried before
 *     canonical_maps, as in Postfix.
 * and, at MAIL and RCPT time (before the restrictions, so that relay
 * control judges the rewritten address, as in Postfix):
 *   swap_bangpath       "host!user" becomes "user@host"
 *   allow_percent_hack  "user%host@local" becomes "user@host"
 * keypost's default for the last two is no (Postfix's is yes): both
 * predate the domain system, and the percent hack lets a local address
 * name any remote one. Only the envelope is rewritten, not the headers;
 * the "user" key for local domains is not tried. Tables may be pgsql. */
#ifndef KP_REWRITE_H
#define KP_REWRITE_H

#include <stddef.h>

#include "conf/conf.h"

int rewrite_init(struct conf_errors *errs);
/* Ask every database table of the maps once (`keypost check`). */
void rewrite_probe_tables(struct conf_errors *errs);
void rewrite_free(void);
/* Rewrite addr in place (at most len bytes); 0, or -1 when a table cannot
 * answer. An empty address (the null sender) stays empty. */
int rewrite_sender(char *addr, size_t len);
int rewrite_recipient(char *addr, size_t len);
/* swap_bangpath and allow_percent_hack, in place. */
void rewrite_old_forms(char *addr, size_t len);

#endif
