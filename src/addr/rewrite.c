#include "addr/rewrite.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr/addrclass.h"
#include "table/table.h"
#include "table/tablelist.h"
#include "util/log.h"
#include "util/strutil.h"

static struct table_list canonical, sender_canonical, recipient_canonical;

/* A canonical value is one address (or "@domain"): anything else would be
 * ignored at delivery time, so it is an error now, with FILE:LINE. */
static int one_address(const char *v)
{
    return *v && !strpbrk(v, " \t,");
}

struct entry_check {
    struct conf_errors *errs;
    enum conf_param p;
};

static int check_entry(void *arg, const char *key, const char *value, const char *origin)
{
    struct entry_check *c = arg;
    if (!one_address(value))
        conf_error(c->errs, "%s: %s entry for %s: \"%s\" is not one address", origin,
                   conf_name(c->p), key, value);
    return 0; /* every bad entry, not the first only */
}

static void open_checked(struct table_list *l, enum conf_param p, struct conf_errors *errs)
{
    table_list_open(l, p, 0, errs);
    struct entry_check c = {errs, p};
    for (int i = 0; i < l->n; i++) /* a database's rows are checked when used */
        if (l->t[i] && !table_is_remote(l->t[i]) && table_foreach(l->t[i], check_entry, &c) < 0)
            conf_error(errs, "%s: %s: cannot read %s", conf_origin(p), conf_name(p), l->spec[i]);
}

int rewrite_init(struct conf_errors *errs)
{
    int before = errs->count;
    rewrite_free();
    open_checked(&canonical, P_CANONICAL_MAPS, errs);
    open_checked(&sender_canonical, P_SENDER_CANONICAL_MAPS, errs);
    open_checked(&recipient_canonical, P_RECIPIENT_CANONICAL_MAPS, errs);
    return errs->count - before;
}

void rewrite_probe_tables(struct conf_errors *errs)
{
    table_list_probe(&canonical, P_CANONICAL_MAPS, errs);
    table_list_probe(&sender_canonical, P_SENDER_CANONICAL_MAPS, errs);
    table_list_probe(&recipient_canonical, P_RECIPIENT_CANONICAL_MAPS, errs);
}

void rewrite_free(void)
{
    table_list_free(&canonical);
    table_list_free(&sender_canonical);
    table_list_free(&recipient_canonical);
}

/* canonical(5): "user@domain", then "@domain". */
static int apply_canonical(const struct table_list *ts, char *addr, size_t len)
{
    const char *at = strrchr(addr, '@');
    if (ts->n == 0 || at == NULL)
        return 0;
    const char *value = NULL;
    int r = table_list_get(ts, addr, &value, NULL);
    char out[512];
    if (r == 0) {
        r = table_list_get(ts, at, &value, NULL);
        if (r > 0 && value[0] == '@') {
            snprintf(out, sizeof out, "%.*s%s", (int)(at - addr), addr, value);
            str_copy(addr, out, len);
            return 1;
        }
    }
    if (r > 0 && !one_address(value)) {
        /* Checked at load; a map rebuilt since may still hold such a value. */
        log_warn(NULL, "canonical value \"%.200s\" for <%s> is not one address; the lookup "
                 "fails", value, addr);
        return -1;
    }
    if (r > 0)
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

static int rewrite(const struct table_list *first, char *addr, size_t len)
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
