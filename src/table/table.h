/* table: lookup tables named as Postfix names them, "TYPE:NAME".
 *   texthash:PATH   a text file of "key value" lines, read when opened
 *   inline:{k=v, k2=v2}
 * Keys are matched without regard to case, as Postfix's tables do. A key
 * alone on a line has the empty value. */
#ifndef KP_TABLE_H
#define KP_TABLE_H

#include <stddef.h>

struct table;

/* Open a table; on failure returns NULL and writes a message to err. */
struct table *table_open(const char *spec, char *err, size_t errlen);
/* The value for key, or NULL when absent. Valid until table_free. */
const char *table_lookup(const struct table *t, const char *key);
const char *table_spec(const struct table *t);
/* The i-th key (0 <= i < table_count), for configuration checks. */
size_t table_count(const struct table *t);
const char *table_key(const struct table *t, size_t i);
void table_free(struct table *t);

#endif
