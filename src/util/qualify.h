/* qualify: complete an incomplete envelope address as Postfix's
 * trivial-rewrite does in its "local" rewriting context:
 *   append_at_myorigin    "user"      -> "user@$myorigin"
 *   append_dot_mydomain   "user@host" -> "user@host.$mydomain"
 * in that order, so an unqualified address also gets ".$mydomain" when
 * $myorigin has no dot. A pure function of its arguments: which clients'
 * addresses are completed is the caller's decision. */
#ifndef KP_QUALIFY_H
#define KP_QUALIFY_H

#include <stddef.h>

enum {
    QUALIFY_APPEND_AT_MYORIGIN = 1 << 0,
    QUALIFY_APPEND_DOT_MYDOMAIN = 1 << 1,
};

/* Write addr, completed as flags say, to out. The null address "" and
 * address literals ("user@[192.0.2.1]") are never changed. Returns 1 when
 * out differs from addr, 0 when it is a copy, -1 when the result does not
 * fit in outlen bytes (out is then ""). */
int qualify_address(const char *addr, const char *myorigin, const char *mydomain,
                    unsigned flags, char *out, size_t outlen);

#endif
