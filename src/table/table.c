/* table: texthash and inline tables, held as a sorted array and searched
 * with bsearch; both are small and read once per process start. */
#include "table/table.h"

#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/strutil.h"

#include <lmdb.h>

#include "table/pgsql.h"
#include "table/tablememo.h"

struct entry {
    char *key;
    char *value;
    int line;               /* texthash: where it was written */
};

struct table {
    char *spec;
    struct entry *entries;  /* texthash, inline */
    size_t count;
    MDB_env *env;           /* lmdb */
    MDB_dbi dbi;
    char *value;            /* the last lmdb value, valid until the next lookup */
    struct pgsql_table *pg; /* pgsql */
};

static int add_entry(struct table *t, const char *key, const char *value, int line)
{
    struct entry *e = realloc(t->entries, sizeof *e * (t->count + 1));
    if (e == NULL)
        return -1;
    t->entries = e;
    e[t->count].key = strdup(key);
    e[t->count].value = strdup(value);
    e[t->count].line = line;
    str_lower(e[t->count].key);
    t->count++;
    return 0;
}

static int cmp_entry(const void *a, const void *b)
{
    return strcmp(((const struct entry *)a)->key, ((const struct entry *)b)->key);
}

/* Read "key value" lines; fn gets each pair. */
static int read_pairs(const char *path,
                      int (*fn)(void *arg, const char *k, const char *v, int line), void *arg,
                      char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, errlen, "cannot open table %s: %s", path, strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    int lineno = 0;
    while (getline(&line, &cap, f) >= 0) {
        lineno++;
        char *s = str_trim(line);
        if (*s == '#' || *s == '\0')
            continue;
        char *sp = s + strcspn(s, " \t");
        if (*sp)
            *sp++ = '\0';
        if (fn(arg, s, str_trim(sp), lineno) < 0) {
            snprintf(err, errlen, "cannot store the entries of %s", path);
            free(line);
            fclose(f);
            return -1;
        }
    }
    /* A read error (a directory named as the table, an I/O error) must not
     * pass for a short table: the missing entries would read as absent. */
    int failed = ferror(f);
    int saved = errno;
    free(line);
    fclose(f);
    if (failed) {
        snprintf(err, errlen, "cannot read table %s: %s", path, strerror(saved));
        return -1;
    }
    return 0;
}

static int add_pair(void *arg, const char *k, const char *v, int line)
{
    return add_entry(arg, k, v, line);
}

static int load_texthash(struct table *t, const char *path, char *err, size_t errlen)
{
    return read_pairs(path, add_pair, t, err, errlen);
}

/* lmdb:PATH reads PATH.lmdb, built by `keypost map PATH`. The file is
 * replaced by rename, so an open map stays valid; no lock file is used. */
static int open_lmdb(struct table *t, const char *path, char *err, size_t errlen)
{
    char file[4096];
    snprintf(file, sizeof file, "%s.lmdb", path);
    MDB_txn *txn = NULL;
    int r = mdb_env_create(&t->env);
    if (r == 0)
        r = mdb_env_open(t->env, file, MDB_NOSUBDIR | MDB_RDONLY | MDB_NOLOCK | MDB_NOTLS, 0);
    if (r == 0)
        r = mdb_txn_begin(t->env, NULL, MDB_RDONLY, &txn);
    if (r == 0)
        r = mdb_dbi_open(txn, NULL, 0, &t->dbi);
    if (txn)
        mdb_txn_abort(txn);
    if (r != 0) {
        snprintf(err, errlen, "cannot open table %s: %s (build it with `keypost map %s`)", file,
                 mdb_strerror(r), path);
        return -1;
    }
    return 0;
}

/* 0 with *value (NULL when absent), or -1 when the map cannot be read. */
static int lookup_lmdb(const struct table *t, const char *lower, const char **value)
{
    MDB_txn *txn;
    *value = NULL;
    if (mdb_txn_begin(t->env, NULL, MDB_RDONLY, &txn) != 0)
        return -1;
    MDB_val k = {strlen(lower), (void *)lower}, v;
    struct table *mt = (struct table *)t; /* the cached value is not part of the contents */
    free(mt->value);
    mt->value = NULL;
    int r = mdb_get(txn, t->dbi, &k, &v);
    if (r == 0)
        mt->value = strndup(v.mv_data, v.mv_size);
    mdb_txn_abort(txn);
    *value = mt->value;
    return r == 0 || r == MDB_NOTFOUND ? 0 : -1;
}

/* Every pair of the map, for configuration checks. */
static int foreach_lmdb(const struct table *t, table_entry_fn fn, void *arg)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    if (mdb_txn_begin(t->env, NULL, MDB_RDONLY, &txn) != 0)
        return -1;
    if (mdb_cursor_open(txn, t->dbi, &cur) != 0) {
        mdb_txn_abort(txn);
        return -1;
    }
    char origin[4200];
    snprintf(origin, sizeof origin, "%s.lmdb", t->spec + 5);
    MDB_val k, v;
    int r = 0;
    while (r == 0 && mdb_cursor_get(cur, &k, &v, MDB_NEXT) == 0) {
        char *key = strndup(k.mv_data, k.mv_size), *value = strndup(v.mv_data, v.mv_size);
        r = key && value ? fn(arg, key, value, origin) : -1;
        free(key);
        free(value);
    }
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    return r;
}

struct map_writer {
    MDB_txn *txn;
    MDB_dbi dbi;
    int rc;
};

static int put_pair(void *arg, const char *k, const char *v, int line)
{
    (void)line;
    struct map_writer *w = arg;
    char lower[512];
    if (str_copy(lower, k, sizeof lower) >= sizeof lower)
        return 0;
    str_lower(lower);
    MDB_val key = {strlen(lower), lower}, val = {strlen(v), (void *)v};
    w->rc = mdb_put(w->txn, w->dbi, &key, &val, 0);
    return w->rc ? -1 : 0;
}

int table_build_lmdb(const char *path, char *err, size_t errlen)
{
    char tmp[4096], final[4096], lock[4200];
    snprintf(final, sizeof final, "%s.lmdb", path);
    snprintf(tmp, sizeof tmp, "%s.lmdb.tmp", path);
    snprintf(lock, sizeof lock, "%s-lock", tmp);
    unlink(tmp);
    struct stat st;
    if (stat(path, &st) < 0) {
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    MDB_env *env = NULL;
    struct map_writer w = {0};
    int r = mdb_env_create(&env);
    if (r == 0)
        r = mdb_env_set_mapsize(env, (size_t)st.st_size * 8 + (1 << 20));
    if (r == 0)
        r = mdb_env_open(env, tmp, MDB_NOSUBDIR, 0644);
    if (r == 0)
        r = mdb_txn_begin(env, NULL, 0, &w.txn);
    if (r == 0)
        r = mdb_dbi_open(w.txn, NULL, 0, &w.dbi);
    if (r == 0 && read_pairs(path, put_pair, &w, err, errlen) < 0)
        r = w.rc ? w.rc : -1;
    if (r == 0)
        r = mdb_txn_commit(w.txn);
    else if (w.txn)
        mdb_txn_abort(w.txn);
    if (env)
        mdb_env_close(env);
    unlink(lock);
    if (r == 0 && rename(tmp, final) < 0)
        r = errno;
    if (r != 0) {
        if (r > 0)
            snprintf(err, errlen, "cannot build %s: %s", final, mdb_strerror(r));
        unlink(tmp);
        return -1;
    }
    return 0;
}

static int load_inline(struct table *t, const char *body, char *err, size_t errlen)
{
    size_t n = strlen(body);
    if (n < 2 || body[0] != '{' || body[n - 1] != '}') {
        snprintf(err, errlen, "inline table must be written inline:{ key=value, ... }");
        return -1;
    }
    char *copy = strndup(body + 1, n - 2);
    char *items[256];
    int count = str_split_list(copy, items, 256);
    for (int i = 0; i < count; i++) {
        char *item = items[i];
        size_t len = strlen(item);
        /* "{ key = value with spaces }" keeps white space in the value. */
        if (item[0] == '{' && len > 1 && item[len - 1] == '}') {
            item[len - 1] = '\0';
            item++;
        }
        char *eq = strchr(item, '=');
        if (eq)
            *eq = '\0';
        add_entry(t, str_trim(item), eq ? str_trim(eq + 1) : "", 0);
    }
    free(copy);
    return 0;
}

struct table *table_open(const char *spec, char *err, size_t errlen)
{
    struct table *t = calloc(1, sizeof *t);
    if (t == NULL)
        return NULL;
    t->spec = strdup(spec);
    int r;
    if (strncmp(spec, "texthash:", 9) == 0)
        r = load_texthash(t, spec + 9, err, errlen);
    else if (strncmp(spec, "inline:", 7) == 0)
        r = load_inline(t, spec + 7, err, errlen);
    else if (strncmp(spec, "lmdb:", 5) == 0)
        r = open_lmdb(t, spec + 5, err, errlen);
    else if (strncmp(spec, "pgsql:", 6) == 0)
        r = (t->pg = pgsql_open(spec + 6, err, errlen)) ? 0 : -1;
    else {
        snprintf(err, errlen, "unsupported table type in \"%s\" (texthash:, inline:, lmdb:, pgsql:)",
                 spec);
        r = -1;
    }
    if (r < 0) {
        table_free(t);
        return NULL;
    }
    if (t->count)
        qsort(t->entries, t->count, sizeof *t->entries, cmp_entry);
    return t;
}

int table_get(const struct table *t, const char *key, const char **value)
{
    char lower[512];
    *value = NULL;
    if (str_copy(lower, key, sizeof lower) >= sizeof lower)
        return 0; /* longer than any key a table can hold */
    str_lower(lower);
    if (t->env)
        return lookup_lmdb(t, lower, value);
    if (t->pg && pgsql_base()) /* on an event loop: never block it */
        return table_memo_get((struct table *)t, lower, value);
    if (t->pg) {
        const char *keys[1] = {lower};
        int tempfail = 0;
        pgsql_lookup(t->pg, keys, 1, value, &tempfail, NULL, NULL); /* blocking here */
        return tempfail ? -1 : 0;
    }
    struct entry probe = {lower, NULL, 0};
    if (t->count == 0)
        return 0;
    struct entry *e = bsearch(&probe, t->entries, t->count, sizeof *t->entries, cmp_entry);
    *value = e ? e->value : NULL;
    return 0;
}

const char *table_lookup(const struct table *t, const char *key)
{
    const char *value;
    table_get(t, key, &value);
    return value;
}

int table_foreach(const struct table *t, table_entry_fn fn, void *arg)
{
    if (t->pg)
        return -1;
    if (t->env)
        return foreach_lmdb(t, fn, arg);
    const char *path = strncmp(t->spec, "texthash:", 9) == 0 ? t->spec + 9 : NULL;
    for (size_t i = 0; i < t->count; i++) {
        char origin[4200];
        if (path)
            snprintf(origin, sizeof origin, "%s:%d", path, t->entries[i].line);
        else
            snprintf(origin, sizeof origin, "%.4100s", t->spec);
        int r = fn(arg, t->entries[i].key, t->entries[i].value, origin);
        if (r)
            return r;
    }
    return 0;
}

const char *table_spec(const struct table *t)
{
    return t->spec;
}

int table_is_remote(const struct table *t)
{
    return t->pg != NULL;
}

int table_lookup_keys(struct table *t, const char *const *keys, int n, const char **value,
                      int *tempfail, table_done_fn done, void *arg)
{
    *tempfail = 0;
    *value = NULL;
    if (t->pg)
        return pgsql_lookup(t->pg, keys, n, value, tempfail, done, arg);
    for (int i = 0; i < n && *value == NULL; i++)
        *value = table_lookup(t, keys[i]);
    return 1;
}

void table_cancel(struct table *t, void *arg)
{
    if (t->pg)
        pgsql_cancel(t->pg, arg);
}

int table_probe(struct table *t, char *err, size_t errlen)
{
    return t->pg ? pgsql_probe(t->pg, err, errlen) : 0;
}

size_t table_count(const struct table *t)
{
    return t->count;
}

const char *table_key(const struct table *t, size_t i)
{
    return i < t->count ? t->entries[i].key : NULL;
}

void table_free(struct table *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->count; i++) {
        free(t->entries[i].key);
        free(t->entries[i].value);
    }
    free(t->entries);
    free(t->spec);
    free(t->value);
    if (t->env)
        mdb_env_close(t->env);
    pgsql_free(t->pg);
    free(t);
}
