/* hdrrewrite: canonical_maps for the addresses in a message's headers, as
 * Postfix's cleanup applies them when canonical_classes (and the sender/
 * recipient variants) name header_sender or header_recipient:
 *   sender headers     From, Sender, Resent-From, Resent-Sender,
 *                      Return-Receipt-To, Errors-To
 *   recipient headers  To, Cc, Bcc, Resent-To, Resent-Cc, Resent-Bcc,
 *                      Apparently-To, Reply-To, Resent-Reply-To
 * Only the address is replaced: display names, comments, groups and the
 * rest of the header stay as written. An element whose address cannot be
 * told apart with certainty (quotes or comments around a bare address) is
 * left alone rather than guessed at. Lookups go through rewrite.h, so a
 * database table works through the caller's memo (table/tablememo.h). Whether
 * any of this is wanted: rewrite_headers_wanted() (addr/rewrite.h). */
#ifndef KP_HDRREWRITE_H
#define KP_HDRREWRITE_H

#include <stddef.h>

#include "util/buf.h"

/* Rewrite the header block (CRLF lines, without the empty line) into out.
 * Returns 1 when something changed, 0 when not (out unused), -1 when a
 * table could not answer, -2 when the result does not fit out's bound. */
int hdr_rewrite_block(const char *block, size_t n, struct buf *out);

#endif
