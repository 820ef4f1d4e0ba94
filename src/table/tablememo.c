#include "table/tablememo.h"

#include <event2/event.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "table/pgsql.h"
#include "table/table.h"
#include "util/log.h"

enum entry_state { E_MISSING, E_IN_FLIGHT, E_ANSWERED };

struct memo_entry {
    struct table_memo *memo;
    struct table *table;
    char *key;
    char *value;          /* NULL: absent */
    int tempfail;
    enum entry_state state;
};

struct table_memo {
    struct memo_entry **entries;
    int count, cap;
    int *slots;           /* open addressing over entries; -1 empty */
    int nslots;
    int missing, waiting, fetching, overflow_logged;
    void (*done)(void *arg);
    void *arg;
    struct event *later;  /* runs done() when every answer came at once */
};

static struct table_memo *current;

struct table_memo *table_memo_new(void)
{
    return calloc(1, sizeof(struct table_memo));
}

static void drop_entries(struct table_memo *m)
{
    for (int i = 0; i < m->count; i++) {
        struct memo_entry *e = m->entries[i];
        if (e->state == E_IN_FLIGHT)
            table_cancel(e->table, e);
        free(e->key);
        free(e->value);
        free(e);
    }
    free(m->entries);
    free(m->slots);
    m->entries = NULL;
    m->slots = NULL;
    m->count = m->cap = m->nslots = 0;
}

void table_memo_clear(struct table_memo *m)
{
    if (m == NULL)
        return;
    drop_entries(m);
    if (m->later)
        event_del(m->later);
    m->missing = m->waiting = m->fetching = m->overflow_logged = 0;
    m->done = NULL;
    m->arg = NULL;
}

void table_memo_free(struct table_memo *m)
{
    if (m == NULL)
        return;
    table_memo_clear(m);
    if (m->later)
        event_free(m->later);
    if (current == m)
        current = NULL;
    free(m);
}

struct table_memo *table_memo_use(struct table_memo *m)
{
    struct table_memo *before = current;
    current = m;
    return before;
}

int table_memo_missing(const struct table_memo *m)
{
    return m ? m->missing : 0;
}

static uint32_t entry_hash(const struct table *t, const char *key)
{
    uint32_t h = 2166136261u ^ (uint32_t)(uintptr_t)t;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++)
        h = (h ^ *p) * 16777619u;
    return h;
}

/* The slot of (t, key): the entry's, or the empty one where it belongs. */
static int find_slot(const struct table_memo *m, const struct table *t, const char *key)
{
    int mask = m->nslots - 1;
    for (int i = (int)(entry_hash(t, key) & (uint32_t)mask);; i = (i + 1) & mask) {
        int k = m->slots[i];
        if (k < 0 || (m->entries[k]->table == t && strcmp(m->entries[k]->key, key) == 0))
            return i;
    }
}

/* Keep the slots at most half full, so that find_slot always ends. */
static int grow(struct table_memo *m)
{
    if (m->count + 1 <= m->cap && (m->count + 1) * 2 <= m->nslots)
        return 0;
    int cap = m->cap ? m->cap * 2 : 8;
    struct memo_entry **e = realloc(m->entries, sizeof *e * (size_t)cap);
    if (e == NULL)
        return -1;
    m->entries = e;
    m->cap = cap;
    int nslots = cap * 2;
    int *slots = malloc(sizeof *slots * (size_t)nslots);
    if (slots == NULL)
        return -1;
    free(m->slots);
    m->slots = slots;
    m->nslots = nslots;
    memset(slots, -1, sizeof *slots * (size_t)nslots);
    for (int i = 0; i < m->count; i++)
        slots[find_slot(m, m->entries[i]->table, m->entries[i]->key)] = i;
    return 0;
}

static int record_missing(struct table_memo *m, struct table *t, const char *key)
{
    if (m->count >= TABLE_MEMO_MAX || grow(m) < 0) {
        if (!m->overflow_logged)
            log_warn(NULL, "%s: more than %d lookups for one command; treated as a temporary "
                     "failure", table_spec(t), TABLE_MEMO_MAX);
        m->overflow_logged = 1;
        return -1;
    }
    struct memo_entry *e = calloc(1, sizeof *e);
    char *k = strdup(key);
    if (e == NULL || k == NULL) {
        free(e);
        free(k);
        return -1;
    }
    *e = (struct memo_entry){.memo = m, .table = t, .key = k, .state = E_MISSING};
    m->slots[find_slot(m, t, key)] = m->count;
    m->entries[m->count++] = e;
    m->missing++;
    return -1;
}

int table_memo_get(struct table *t, const char *key, const char **value)
{
    *value = NULL;
    struct table_memo *m = current;
    if (m == NULL) {
        /* A blocking lookup here would stall every session of the worker. */
        log_warn(NULL, "%s: lookup on the event loop outside a decision that can wait; "
                 "treated as a temporary failure", table_spec(t));
        return -1;
    }
    if (m->nslots) {
        int k = m->slots[find_slot(m, t, key)];
        if (k >= 0) {
            struct memo_entry *e = m->entries[k];
            if (e->state != E_ANSWERED)
                return -1;
            *value = e->value;
            return e->tempfail ? -1 : 0;
        }
    }
    return record_missing(m, t, key);
}

static void finish(struct table_memo *m)
{
    void (*done)(void *) = m->done;
    m->done = NULL;
    if (done)
        done(m->arg);
}

static void answered(void *arg, const char *value, int tempfail)
{
    struct memo_entry *e = arg;
    struct table_memo *m = e->memo;
    e->state = E_ANSWERED;
    e->tempfail = tempfail;
    e->value = value ? strdup(value) : NULL;
    if (value && e->value == NULL)
        e->tempfail = 1;
    m->waiting--;
    if (!m->fetching && m->waiting == 0)
        finish(m);
}

static void run_later(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    finish(arg);
}

/* Every answer came while fetching (a database known to be down answers
 * at once): done() still runs from the loop, never inside the caller. */
static int finish_later(struct table_memo *m)
{
    if (m->later == NULL)
        m->later = evtimer_new(pgsql_base(), run_later, m);
    struct timeval now = {0, 0};
    if (m->later == NULL || evtimer_add(m->later, &now) < 0) {
        log_warn(NULL, "cannot schedule the end of a table lookup");
        return -1;
    }
    return 0;
}

int table_memo_fetch(struct table_memo *m, void (*done)(void *arg), void *arg)
{
    if (m == NULL || m->missing == 0)
        return 1;
    m->missing = 0;
    m->done = done;
    m->arg = arg;
    m->fetching = 1;
    for (int i = 0; i < m->count; i++) {
        struct memo_entry *e = m->entries[i];
        if (e->state != E_MISSING)
            continue;
        const char *keys[1] = {e->key};
        const char *value;
        int tempfail;
        e->state = E_IN_FLIGHT;
        m->waiting++;
        if (table_lookup_keys(e->table, keys, 1, &value, &tempfail, answered, e))
            answered(e, value, tempfail);
    }
    m->fetching = 0;
    if (m->waiting == 0 && finish_later(m) < 0) {
        m->done = NULL; /* the entries answered: the caller's next run sees them */
        return 1;
    }
    return 0;
}
