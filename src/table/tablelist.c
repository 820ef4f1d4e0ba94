#include "table/tablelist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "table/table.h"
#include "util/strutil.h"

int table_list_add(struct table_list *l, const char *spec, enum conf_param p, int flags,
                   struct conf_errors *errs)
{
    if (l->n >= TABLE_LIST_MAX) {
        conf_error(errs, "%s: %s: at most %d tables", conf_origin(p), conf_name(p),
                   TABLE_LIST_MAX);
        return -1;
    }
    char err[600];
    struct table *t = table_open(spec, err, sizeof err);
    if (t == NULL)
        conf_error(errs, "%s: %s: %s", conf_origin(p), conf_name(p), err);
    if (t == NULL && !(flags & TL_KEEP_FAILED))
        return -1;
    l->t[l->n] = t;
    l->spec[l->n++] = strdup(spec);
    return t ? 0 : -1;
}

void table_list_open(struct table_list *l, enum conf_param p, int flags,
                     struct conf_errors *errs)
{
    memset(l, 0, sizeof *l);
    char *copy = strdup(conf_str(p));
    char *specs[TABLE_LIST_MAX + 1];
    int n = str_split_list(copy, specs, TABLE_LIST_MAX + 1);
    for (int i = 0; i < n; i++)
        table_list_add(l, specs[i], p, flags, errs);
    free(copy);
}

int table_list_get(const struct table_list *l, const char *key, const char **value,
                   const char **spec)
{
    for (int i = 0; i < l->n; i++) {
        if (spec)
            *spec = l->spec[i] ? l->spec[i] : "";
        if (l->t[i] == NULL || table_get(l->t[i], key, value) < 0)
            return -1;
        if (*value)
            return 1;
    }
    return 0;
}

void table_list_probe(const struct table_list *l, enum conf_param p, struct conf_errors *errs)
{
    for (int i = 0; i < l->n; i++) {
        char err[600];
        if (l->t[i] && table_is_remote(l->t[i]) && table_probe(l->t[i], err, sizeof err) < 0)
            conf_error(errs, "%s: %s: table %s cannot be read: %s", conf_origin(p),
                       conf_name(p), l->spec[i], err);
    }
}

int table_list_get_local(const struct table_list *l, const char *key, const char **value)
{
    for (int i = 0; i < l->n; i++) {
        if (l->t[i] == NULL || table_is_remote(l->t[i]))
            continue;
        if (table_get(l->t[i], key, value) < 0)
            return -1;
        if (*value)
            return 1;
    }
    return 0;
}

void table_list_free(struct table_list *l)
{
    for (int i = 0; i < l->n; i++) {
        table_free(l->t[i]);
        free(l->spec[i]);
    }
    memset(l, 0, sizeof *l);
}
