/* tablelist: the tables a parameter names ("texthash:/a, pgsql:/b"), looked
 * up in order, the first with an entry answering. Used for the address
 * tables (addr/), the canonical maps and the TLS policy maps, so that they
 * open, refuse and fail the same way. A pgsql table on an event loop is
 * answered through the installed memo (table/tablememo.h). */
#ifndef KP_TABLELIST_H
#define KP_TABLELIST_H

#include "conf/conf.h"

#define TABLE_LIST_MAX 16

struct table;

struct table_list {
    struct table *t[TABLE_LIST_MAX]; /* NULL: could not be opened (TL_KEEP_FAILED) */
    char *spec[TABLE_LIST_MAX];
    int n;
};

enum {
    TL_KEEP_FAILED = 2, /* keep a table that failed to open: lookups through it fail */
};

/* Open spec as the next table of l; errors go to errs as "ORIGIN: NAME: ..."
 * for parameter p. Returns 0, or -1 (and l unchanged unless TL_KEEP_FAILED). */
int table_list_add(struct table_list *l, const char *spec, enum conf_param p, int flags,
                   struct conf_errors *errs);
/* Open every table of parameter p's value. */
void table_list_open(struct table_list *l, enum conf_param p, int flags,
                     struct conf_errors *errs);
/* 1 found (*value valid until the next lookup; *spec names the table when
 * spec is not NULL), 0 absent from all, -1 a table cannot answer. */
int table_list_get(const struct table_list *l, const char *key, const char **value,
                   const char **spec);
/* Ask every remote table (pgsql) once, for `keypost check`; errors name
 * parameter p. */
void table_list_probe(const struct table_list *l, enum conf_param p, struct conf_errors *errs);
/* table_list_get over the local tables only (configuration checks). */
int table_list_get_local(const struct table_list *l, const char *key, const char **value);
void table_list_free(struct table_list *l);

#endif
