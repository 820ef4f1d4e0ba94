/* strutil: small string helpers shared by the config, tables and protocol. */
#ifndef KP_STRUTIL_H
#define KP_STRUTIL_H

#include <stddef.h>
#include <time.h>

/* Copy at most size-1 bytes and terminate; returns strlen(src). */
size_t str_copy(char *dst, const char *src, size_t size);
void str_lower(char *s);
/* Trim white space at both ends, in place; returns s. */
char *str_trim(char *s);
int str_ieq(const char *a, const char *b);
int str_iprefix(const char *s, const char *prefix);
/* Split a Postfix-style list (commas and/or white space) in place.
 * Braces group: "{ a, b }" stays one element. Returns the count; at most max. */
int str_split_list(char *s, char **out, int max);
/* Copy the first word of s (up to a space, tab or newline; truncated to
 * fit) to word; returns what follows it, leading spaces and tabs skipped. */
const char *str_first_word(const char *s, char *word, size_t len);
/* 1 when s holds a byte >= 0x80 (UTF-8 or other 8-bit text). */
int str_has_8bit(const char *s);
/* "Mon, 23 Nov 2026 12:00:00 +0000" (RFC 5322) for t, in UTC. */
void str_rfc5322_date(time_t t, char *out, size_t len);
/* Parse "yes"/"no" (also true/false, 1/0); -1 if neither. */
int str_parse_bool(const char *s);
/* Time with an optional unit s|m|h|d|w (default seconds). -1 on error. */
long str_parse_time(const char *s);
/* A non-negative decimal number that fits in long. -1 on error. */
long str_parse_long(const char *s);
/* The number of one-character insertions, deletions, substitutions and
 * swaps of neighbours that turn a into b (for "did you mean"); strings
 * longer than 127 bytes count as far from everything. */
size_t str_edit_distance(const char *a, const char *b);

#endif
