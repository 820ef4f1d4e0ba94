/* fsutil: file system helpers for durable writes. */
#ifndef KP_FSUTIL_H
#define KP_FSUTIL_H

/* fsync a directory, so that renames and creations in it survive a crash. */
int fsync_dir(const char *path);
/* Create directory path if missing (mode 0750) and give it to uid/gid
 * (uid < 0: leave the owner). With nofollow, a symbolic link is refused
 * instead of followed: a directory mail_owner controls must not lead root
 * elsewhere. Returns 0, or -1 with errno set. */
int own_dir(const char *path, int uid, int gid, int nofollow);

#endif
