/* table: texthash and inline tables, held as a sorted array and searched
 * with bsearch; both are small and read once per process start. */
#include "table/table.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/strutil.h"

struct entry {
    char *key;
    char *value;
};

struct table {
    char *spec;
    struct entry *entries;
    size_t count;
};

static int add_entry(struct table *t, const char *key, const char *value)
{
    struct entry *e = realloc(t->entries, sizeof *e * (t->count + 1));
    if (e == NULL)
        return -1;
    t->entries = e;
    e[t->count].key = strdup(key);
    e[t->count].value = strdup(value);
    str_lower(e[t->count].key);
    t->count++;
    return 0;
}

static int cmp_entry(const void *a, const void *b)
{
    return strcmp(((const struct entry *)a)->key, ((const struct entry *)b)->key);
}

static int load_texthash(struct table *t, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, errlen, "cannot open table %s: %s", path, strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) >= 0) {
        char *s = str_trim(line);
        if (*s == '#' || *s == '\0')
            continue;
        char *sp = s + strcspn(s, " \t");
        if (*sp)
            *sp++ = '\0';
        add_entry(t, s, str_trim(sp));
    }
    free(line);
    fclose(f);
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
        add_entry(t, str_trim(item), eq ? str_trim(eq + 1) : "");
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
    else {
        snprintf(err, errlen, "unsupported table type in \"%s\" (use texthash: or inline:)",
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

const char *table_lookup(const struct table *t, const char *key)
{
    char lower[512];
    if (str_copy(lower, key, sizeof lower) >= sizeof lower)
        return NULL;
    str_lower(lower);
    struct entry probe = {lower, NULL};
    if (t->count == 0)
        return NULL;
    struct entry *e = bsearch(&probe, t->entries, t->count, sizeof *t->entries, cmp_entry);
    return e ? e->value : NULL;
}

const char *table_spec(const struct table *t)
{
    return t->spec;
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
    free(t);
}
