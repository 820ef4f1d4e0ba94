/* maildir: local delivery into BASE/DOMAIN/LOCALPART/{tmp,new,cur}.
 * The message is written to tmp/, fsynced, renamed into new/, and new/ is
 * fsynced: only then is the recipient marked delivered. Line ends become
 * LF as Maildir readers expect; Return-Path and Delivered-To are added.
 * Below BASE no symbolic link is followed (DOMAIN, LOCALPART, tmp, new,
 * cur): a link there defers the recipient with a reason that names it. */
#ifndef KP_MAILDIR_H
#define KP_MAILDIR_H

#include "deliver/deliver.h"

void maildir_deliver(const char *base, const struct dmessage *m, const char *rcpt,
                     struct dresult *r);

#endif
