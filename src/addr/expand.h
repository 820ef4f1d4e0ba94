/* expand: alias and virtual alias expansion, once, when a message is
 * queued (Postfix's cleanup does it then too).
 *   alias_maps          for addresses of the local class: the local part
 *                       ("alice", or "alice" for "alice+ext") is the key
 *   virtual_alias_maps  for every class: "user+ext@domain", "user@domain",
 *                       then "@domain" (a catch-all)
 * Nesting stops at 64 levels at most; a message gets at most 100,000 final
 * recipients and 100,000 lookups (overlapping lists stay cheap).
 * A value is a list of addresses (commas or spaces); an address without
 * '@' gets the alias's own domain when that is local (Maildirs are kept
 * per domain), else "@$myorigin". Expansion is recursive up to
 * virtual_alias_recursion_limit levels and at most
 * virtual_alias_expansion_limit addresses per original recipient; an alias
 * that names itself ("alice: alice, archive") delivers to itself too;
 * duplicates are removed; every final address remembers the original
 * recipient (for orig_to= in the log). Commands, files and :include: are
 * not keypost's to deliver: such an alias is an error, as a limit is.
 * The tables are addrclass's (opened with the other address tables). */
#ifndef KP_EXPAND_H
#define KP_EXPAND_H

#include <stddef.h>

struct expansion {
    char **addrs;   /* final recipients */
    char **origs;   /* for each, the recipient given at RCPT */
    int n;
};

enum expand_status { EXPAND_OK, EXPAND_TEMPFAIL, EXPAND_LIMIT, EXPAND_UNSUPPORTED };

/* Expand rcpts; origs[i] (NULL: rcpts[i]) is what the log calls orig_to
 * (the address given at RCPT, before canonical rewriting). On anything but
 * EXPAND_OK, err says what and for which address, and out is empty. */
enum expand_status expand_recipients(char *const *rcpts, char *const *origs, int n,
                                     struct expansion *out, char *err, size_t len);
void expansion_free(struct expansion *x);

#endif
