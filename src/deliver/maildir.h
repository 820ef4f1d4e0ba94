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

/* The pieces, for virtual mailboxes (virtual.h, mailboxd.h): */
/* The message as a Maildir file holds it (Return-Path, Delivered-To, LF). */
int maildir_copy_message(int out, const struct dmessage *m, const char *rcpt);
/* 1 when the message already carries "Delivered-To: rcpt" (a loop). */
int maildir_delivered_before(const struct dmessage *m, const char *rcpt);
void maildir_unique_name(char *name, size_t len);
/* 1 for a virtual_mailbox_maps value keypost delivers to: a relative
 * Maildir path ending in '/', whose components neither climb nor hide. */
int maildir_path_ok(const char *rel);
/* A new file in BASE/REL/tmp/ (directories made as needed, no link
 * followed), to be written through maildir_slot_file() and moved into new/
 * by maildir_slot_commit(); closing an uncommitted slot removes the file.
 * NULL with err ("4.x.x text") on failure. */
struct maildir_slot;
struct maildir_slot *maildir_slot_open(const char *base, const char *rel, char *err,
                                       size_t len);
int maildir_slot_file(const struct maildir_slot *sl);
const char *maildir_slot_path(const struct maildir_slot *sl);
int maildir_slot_commit(struct maildir_slot *sl, char *err, size_t len);
void maildir_slot_close(struct maildir_slot *sl);

#endif
