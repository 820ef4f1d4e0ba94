/* tablelist: the tables a parameter names ("texthash:/a, lmdb:/b"), looked
 * up in order, the first with an entry answering. Used for the address
 * tables (addr/), the canonical maps and the TLS policy maps, so that they
 * open, refuse and fail the same way. */
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
    TL_LOCAL_ONLY = 1,  /* refuse pgsql: the lookups run on an event loop */
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
void table_list_free(struct table_list *l);

#endif
