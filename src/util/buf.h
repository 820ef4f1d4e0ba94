/* buf: a growable byte buffer with a hard upper bound.
 * Every string that comes from the network or from a file lives in one; an
 * append past the bound fails (returns -1) instead of growing without end.
 * The contents are always NUL-terminated for convenience, but may also hold
 * NUL bytes: use len, not strlen. */
#ifndef KP_BUF_H
#define KP_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct buf {
    char *data;   /* NUL-terminated; NULL until the first append */
    size_t len;
    size_t cap;
    size_t limit; /* largest len allowed */
};

void buf_init(struct buf *b, size_t limit);
void buf_free(struct buf *b);
void buf_reset(struct buf *b);
int buf_append(struct buf *b, const void *p, size_t n);
int buf_puts(struct buf *b, const char *s);
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int buf_vprintf(struct buf *b, const char *fmt, va_list ap);
/* Returns the contents as a C string ("" when empty). */
const char *buf_str(const struct buf *b);

#endif
