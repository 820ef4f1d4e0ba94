/* table: lookup tables named as Postfix names them, "TYPE:NAME".
 *   texthash:PATH   a text file of "key value" lines, read when opened
 *   inline:{k=v, k2=v2}      ({ k = value with spaces } keeps the spaces)
 *   lmdb:PATH       PATH.lmdb, built from the text file PATH by `keypost map`
 *   pgsql:FILE      PostgreSQL, configured as Postfix's pgsql_table(5) (pgsql.h)
 * Keys are matched without regard to case, as Postfix's tables do. A key
 * alone on a line has the empty value. */
#ifndef KP_TABLE_H
#define KP_TABLE_H

#include <stddef.h>

struct table;

/* Open a table; on failure returns NULL and writes a message to err. */
struct table *table_open(const char *spec, char *err, size_t errlen);
typedef void (*table_done_fn)(void *arg, const char *value, int tempfail);

/* Try keys in order, first match wins. Returns 1 when answered at once
 * (*value or NULL, *tempfail), else 0: done() is called from the event
 * loop (pgsql on a loop). */
int table_lookup_keys(struct table *t, const char *const *keys, int n, const char **value,
                      int *tempfail, table_done_fn done, void *arg);
void table_cancel(struct table *t, void *arg);
/* 1 for tables that live in a server (lookups may wait). */
int table_is_remote(const struct table *t);
/* Check that the table's server answers (for `keypost check`). */
int table_probe(struct table *t, char *err, size_t errlen);
/* The value for key, or NULL when absent (blocks for remote tables).
 * Valid until the next lookup or table_free. A table that cannot answer
 * reads as absent here: use table_get where that matters. */
const char *table_lookup(const struct table *t, const char *key);
/* The same, but says when the table could not answer: 0 with *value (NULL
 * when absent), or -1 (a lost database, an unreadable map). */
int table_get(const struct table *t, const char *key, const char **value);
/* Call fn for every entry of a local table (texthash, inline, lmdb), with
 * where it was written: "PATH:LINE" for texthash. Stops at the first
 * non-zero return and returns it; -1 for a table that cannot be listed
 * (pgsql) or read. */
typedef int (*table_entry_fn)(void *arg, const char *key, const char *value,
                              const char *origin);
int table_foreach(const struct table *t, table_entry_fn fn, void *arg);
const char *table_spec(const struct table *t);
/* The i-th key (0 <= i < table_count), for configuration checks. */
size_t table_count(const struct table *t);
const char *table_key(const struct table *t, size_t i);
void table_free(struct table *t);
/* `keypost map PATH`: build PATH.lmdb from the text file PATH, replacing
 * the old one atomically. 0 or -1 with err filled. */
int table_build_lmdb(const char *path, char *err, size_t errlen);

#endif
