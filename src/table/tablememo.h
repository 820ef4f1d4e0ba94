/* tablememo: lets a decision written as plain synchronous code (the address
 * class of a domain, whether a recipient exists, alias expansion) use remote
 * tables (pgsql) on an event loop without ever blocking the loop.
 *
 * The caller installs a memo and runs its decision. A remote lookup the
 * memo can answer returns that answer; one it cannot is recorded as missing
 * and reads as a failed lookup. After the decision the caller asks
 * table_memo_missing(): when keys are missing, the decision's result is
 * thrown away (it was made on a failure that was not real), the keys are
 * fetched with table_memo_fetch(), and the decision runs again from the
 * start once they are in. A decision may need several rounds (the recipient
 * table is asked only after the class is known); each round answers at
 * least one new key, and a memo holds at most TABLE_MEMO_MAX keys, so the
 * rounds end. Past that bound lookups fail for real (a 451, never an accept).
 *
 * Answers live as long as the memo is not cleared: the caller clears it
 * when a new decision starts (a new SMTP command), so a changed database
 * row is seen at the next command. Outside an event loop remote tables
 * block (delivery processes, command-line tools) and no memo is involved. */
#ifndef KP_TABLEMEMO_H
#define KP_TABLEMEMO_H

#define TABLE_MEMO_MAX 4096

struct table;
struct table_memo;

struct table_memo *table_memo_new(void);
/* Cancels lookups in flight: their answers are dropped. */
void table_memo_free(struct table_memo *m);
/* Forget every answer and anything in flight (a new decision starts). */
void table_memo_clear(struct table_memo *m);
/* Install m for the lookups that follow; returns the memo installed before
 * (to put back). NULL: none installed. */
struct table_memo *table_memo_use(struct table_memo *m);
/* How many keys the decisions since the last fetch could not answer. */
int table_memo_missing(const struct table_memo *m);
/* Look the missing keys up. Returns 0 when done(arg) will be called from
 * the event loop once all are answered, 1 when nothing needs waiting for. */
int table_memo_fetch(struct table_memo *m, void (*done)(void *arg), void *arg);

/* For table.c: a remote table's lookup on an event loop. 0 with *value
 * (NULL when absent), or -1 (the table failed, or the key is missing from
 * the memo and now recorded, or no memo is installed). */
int table_memo_get(struct table *t, const char *key, const char **value);

#endif
