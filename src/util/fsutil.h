/* fsutil: file system helpers for durable writes. */
#ifndef KP_FSUTIL_H
#define KP_FSUTIL_H

/* fsync a directory, so that renames and creations in it survive a crash. */
int fsync_dir(const char *path);

#endif
