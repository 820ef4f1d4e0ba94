#include "addr/rewrite.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr/addrclass.h"
#include "table/table.h"
#include "util/strutil.h"

#define MAX_TABLES 8

struct tables {
    struct table *t[MAX_TABLES];
    int n;
};

static struct tables canonical, sender_canonical, recipient_canonical;

static void open_tables(struct tables *ts, enum conf_param p, struct conf_errors *errs)
{
    memset(ts, 0, sizeof *ts);
    char *copy = strdup(conf_str(p));
    char *specs[MAX_TABLES + 1];
    int n = str_split_list(copy, specs, MAX_TABLES + 1);
    if (n > MAX_TABLES)
        conf_error(errs, "%s: %s: at most %d tables", conf_origin(p), conf_name(p), MAX_TABLES);
    for (int i = 0; i < n && i < MAX_TABLES; i++) {
        char err[600];
        struct table *t = table_open(specs[i], err, sizeof err);
        if (t == NULL)
            conf_error(errs, "%s: %s: %s", conf_origin(p), conf_name(p), err);
        else if (table_is_remote(t)) {
            conf_error(errs, "%s: %s: %s: only local tables (texthash:, inline:, lmdb:) are "
                       "supported here", conf_origin(p), conf_name(p), specs[i]);
            table_free(t);
        } else
            ts->t[ts->n++] = t;
    }
    free(copy);
}

static void close_tables(struct tables *ts)
{
    for (int i = 0; i < ts->n; i++)
        table_free(ts->t[i]);
    ts->n = 0;
}

int rewrite_init(struct conf_errors *errs)
{
    int before = errs->count;
    rewrite_free();
    open_tables(&canonical, P_CANONICAL_MAPS, errs);
    open_tables(&sender_canonical, P_SENDER_CANONICAL_MAPS, errs);
    open_tables(&recipient_canonical, P_RECIPIENT_CANONICAL_MAPS, errs);
    return errs->count - before;
}

void rewrite_free(void)
{
    close_tables(&canonical);
    close_tables(&sender_canonical);
    close_tables(&recipient_canonical);
}

/* 1 found, 0 not, -1 a table failed. */
static int lookup(const struct tables *ts, const char *key, const char **value)
{
    for (int i = 0; i < ts->n; i++) {
        if (table_get(ts->t[i], key, value) < 0)
            return -1;
        if (*value)
            return 1;
    }
    return 0;
}

/* canonical(5): "user@domain", then "@domain". */
static int apply_canonical(const struct tables *ts, char *addr, size_t len)
{
    const char *at = strrchr(addr, '@');
    if (ts->n == 0 || at == NULL)
        return 0;
    const char *value = NULL;
    int r = lookup(ts, addr, &value);
    char out[512];
    if (r == 0) {
        r = lookup(ts, at, &value);
        if (r > 0 && value[0] == '@') {
            snprintf(out, sizeof out, "%.*s%s", (int)(at - addr), addr, value);
            str_copy(addr, out, len);
            return 1;
        }
    }
    if (r > 0 && *value && !strchr(value, ' ') && !strchr(value, ','))
        str_copy(addr, value, len);
    return r < 0 ? -1 : r;
}

void rewrite_old_forms(char *addr, size_t len)
{
    char out[512];
    const char *bang = strchr(addr, '!');
    if (conf_bool(P_SWAP_BANGPATH) && bang && !strchr(addr, '@') && bang > addr && bang[1]) {
        snprintf(out, sizeof out, "%s@%.*s", bang + 1, (int)(bang - addr), addr);
        str_copy(addr, out, len);
    }
    char *at = strrchr(addr, '@');
    char *pct = at ? memrchr(addr, '%', (size_t)(at - addr)) : NULL;
    enum addr_class cls;
    if (conf_bool(P_ALLOW_PERCENT_HACK) && pct && pct > addr && pct + 1 < at &&
        addrclass_of_domain(at + 1, &cls) == 0 && cls == AC_LOCAL) {
        *at = '\0';
        *pct = '@';
    }
}

static int rewrite(const struct tables *first, char *addr, size_t len)
{
    if (*addr == '\0')
        return 0;
    /* Postfix: the sender/recipient map, then canonical_maps on the result. */
    int r = apply_canonical(first, addr, len);
    if (r >= 0)
        r = apply_canonical(&canonical, addr, len);
    return r < 0 ? -1 : 0;
}

int rewrite_sender(char *addr, size_t len)
{
    return rewrite(&sender_canonical, addr, len);
}

int rewrite_recipient(char *addr, size_t len)
{
    return rewrite(&recipient_canonical, addr, len);
}
