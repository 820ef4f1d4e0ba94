/* pgsql: tables in PostgreSQL, configured as Postfix's pgsql_table(5):
 * a file of "name = value" lines with hosts, user, password, dbname and
 * query ("%s" is the key, "%u" its local part, "%d" its domain, all
 * escaped). On an event loop the lookups are asynchronous (libpq's
 * non-blocking API): a slow or lost database delays only the sessions that
 * wait for it, and a lost database is a temporary failure, never a match. */
#ifndef KP_PGSQL_H
#define KP_PGSQL_H

#include <stddef.h>

struct event_base;
struct pgsql_table;

typedef void (*pgsql_done_fn)(void *arg, const char *value, int tempfail);

struct pgsql_table *pgsql_open(const char *file, char *err, size_t errlen);
void pgsql_free(struct pgsql_table *t);
/* Without a loop lookups block (command-line tools and delivery processes). */
void pgsql_set_base(struct event_base *base);
/* The loop set above, NULL when lookups block. */
struct event_base *pgsql_base(void);
/* Try keys in order; the first row's first column of the first key that
 * has one is the value. Returns 1 when answered at once (*value, which
 * stays valid until the next lookup on t, or NULL; *tempfail), else 0 and
 * done() is called from the loop. */
int pgsql_lookup(struct pgsql_table *t, const char *const *keys, int n, const char **value,
                 int *tempfail, pgsql_done_fn done, void *arg);
/* Forget the callbacks of lookups made with arg (the caller goes away). */
void pgsql_cancel(struct pgsql_table *t, void *arg);
/* Connect once, for `keypost check`: 0, or -1 with err filled. */
int pgsql_probe(struct pgsql_table *t, char *err, size_t errlen);

#endif
