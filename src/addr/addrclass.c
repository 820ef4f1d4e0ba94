#include "addr/addrclass.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "table/table.h"
#include "table/tablelist.h"
#include "util/strutil.h"

#define MAX_ITEMS 64

/* One parameter's list: names and tables. */
struct dlist {
    enum conf_param param;
    char *names[MAX_ITEMS];
    int nnames;
    struct table_list tables;
};

static struct dlist domains[AC_DEFAULT];   /* one list per class but default */
static struct dlist aliases;                /* alias_maps */
static struct dlist recipients[AC_DEFAULT]; /* the tables of known recipients */

static const enum conf_param domain_params[AC_DEFAULT] = {
    P_MYDESTINATION, P_VIRTUAL_ALIAS_DOMAINS, P_VIRTUAL_MAILBOX_DOMAINS, P_RELAY_DOMAINS};
static const enum conf_param recipient_params[AC_DEFAULT] = {
    P_LOCAL_RECIPIENT_MAPS, P_VIRTUAL_ALIAS_MAPS, P_VIRTUAL_MAILBOX_MAPS,
    P_RELAY_RECIPIENT_MAPS};
static const char *const class_names[] = {"local", "virtual alias", "virtual mailbox", "relay",
                                          "default"};

const char *addrclass_name(enum addr_class c)
{
    return class_names[c];
}

static int is_table_spec(const char *item)
{
    const char *colon = strchr(item, ':');
    return colon && colon > item && strspn(item, "abcdefghijklmnopqrstuvwxyz") ==
                                        (size_t)(colon - item);
}

static void parse_list(struct dlist *l, enum conf_param p, int names_allowed,
                       struct conf_errors *errs)
{
    memset(l, 0, sizeof *l);
    l->param = p;
    char *copy = strdup(conf_str(p));
    char *items[MAX_ITEMS + 1];
    int n = str_split_list(copy, items, MAX_ITEMS + 1);
    if (n > MAX_ITEMS)
        conf_error(errs, "%s: %s: at most %d items", conf_origin(p), conf_name(p), MAX_ITEMS);
    for (int i = 0; i < n && i < MAX_ITEMS; i++) {
        if (is_table_spec(items[i]))
            table_list_add(&l->tables, items[i], p, 0, errs);
        else if (!names_allowed)
            conf_error(errs, "%s: %s: \"%s\" is not a table (TYPE:NAME)", conf_origin(p),
                       conf_name(p), items[i]);
        else {
            l->names[l->nnames] = strdup(items[i]);
            str_lower(l->names[l->nnames++]);
        }
    }
    free(copy);
}

/* ---- matching ----------------------------------------------------------- */

static int name_matches(const char *name, const char *domain)
{
    if (name[0] != '.')
        return str_ieq(name, domain);
    size_t n = strlen(name), d = strlen(domain);
    return d > n && str_ieq(domain + d - n, name); /* ".example.com": subdomains */
}

/* 1 when any table has key; -1 when one cannot answer. */
static int tables_have(const struct dlist *l, const char *key, const char **value)
{
    const char *v = NULL;
    int r = table_list_get(&l->tables, key, &v, NULL);
    if (r > 0 && value)
        *value = v;
    return r;
}

static int list_has_domain(const struct dlist *l, const char *domain)
{
    for (int i = 0; i < l->nnames; i++)
        if (name_matches(l->names[i], domain))
            return 1;
    return tables_have(l, domain, NULL);
}

int addrclass_of_domain(const char *domain, enum addr_class *out)
{
    for (int c = 0; c < AC_DEFAULT; c++) {
        int r = list_has_domain(&domains[c], domain);
        if (r < 0)
            return -1;
        if (r) {
            *out = (enum addr_class)c;
            return 0;
        }
    }
    *out = AC_DEFAULT;
    return 0;
}

int addrclass_of_address(const char *addr, enum addr_class *out)
{
    const char *at = strrchr(addr, '@');
    return addrclass_of_domain(at ? at + 1 : "", out);
}

/* ---- known recipients --------------------------------------------------- */

struct keys {
    char k[5][600];
    int n;
};

static void key_add(struct keys *ks, const char *fmt, const char *a, const char *b)
{
    if (ks->n < 5)
        snprintf(ks->k[ks->n++], sizeof ks->k[0], fmt, a, b);
}

size_t addrclass_extension_cut(const char *local)
{
    const char *delim = conf_str(P_RECIPIENT_DELIMITER);
    size_t n = strlen(local), cut = *delim ? strcspn(local, delim) : n;
    /* Postfix's split_addr: these names are never split. */
    if (cut == 0 || str_ieq(local, "postmaster") || str_ieq(local, "mailer-daemon") ||
        str_iprefix(local, "owner-") || (n > 8 && str_ieq(local + n - 8, "-request")))
        return n;
    return cut;
}

int addrclass_local_listed(const char *addr)
{
    const char *at = strrchr(addr, '@');
    char local[512];
    snprintf(local, sizeof local, "%.*s", at ? (int)(at - addr) : (int)strlen(addr), addr);
    const char *v;
    return tables_have(&recipients[AC_LOCAL], addr, &v) > 0 ||
           tables_have(&recipients[AC_LOCAL], local, &v) > 0;
}

/* Postfix's lookup order: user+ext@domain, user@domain, then the local part
 * alone for local domains, or "@domain" (a catch-all) for the others. */
static void recipient_keys(const char *addr, enum addr_class c, struct keys *ks)
{
    char local[512], bare[512];
    const char *at = strrchr(addr, '@');
    const char *domain = at ? at + 1 : "";
    snprintf(local, sizeof local, "%.*s", at ? (int)(at - addr) : (int)strlen(addr), addr);
    str_copy(bare, local, sizeof bare);
    size_t cut = addrclass_extension_cut(local);
    int has_ext = cut < strlen(local);
    bare[cut] = '\0';
    ks->n = 0;
    key_add(ks, "%s@%s", local, domain);
    if (has_ext)
        key_add(ks, "%s@%s", bare, domain);
    if (c == AC_LOCAL) {
        key_add(ks, "%s%s", local, "");
        if (has_ext)
            key_add(ks, "%s%s", bare, "");
    } else
        key_add(ks, "@%s%s", domain, "");
}

/* 1 found (*value set), 0 not, -1 a table failed. */
static int find_recipient(const struct dlist *l, const char *addr, enum addr_class c,
                          const char **value)
{
    struct keys ks;
    recipient_keys(addr, c, &ks);
    for (int i = 0; i < ks.n; i++) {
        int r = tables_have(l, ks.k[i], value);
        if (r)
            return r;
    }
    return 0;
}

static const char *const unknown_text[] = {
    "User unknown in local recipient table", "User unknown in virtual alias table",
    "User unknown in virtual mailbox table", "User unknown in relay recipient table"};

static int known(const char *addr, const char *what, char *reply, size_t len)
{
    enum addr_class c;
    if (addrclass_of_address(addr, &c) < 0) {
        snprintf(reply, len, "451 4.3.0 <%s>: %s address rejected: Temporary lookup failure",
                 addr, what);
        return -1;
    }
    if (c == AC_DEFAULT)
        return 1;
    const char *value = NULL;
    int r = 0;
    /* An address that virtual_alias_maps rewrites exists, in every class
     * (Postfix's check_rcpt_maps does the same). */
    if (c != AC_VIRTUAL_ALIAS && recipients[AC_VIRTUAL_ALIAS].tables.n)
        r = addrclass_virtual_alias(addr, &value);
    if (r == 0 && c == AC_LOCAL && recipients[AC_LOCAL].tables.n == 0)
        return 1; /* empty local_recipient_maps: every local address exists */
    if (r == 0 && c != AC_LOCAL && c != AC_VIRTUAL_ALIAS && recipients[c].tables.n == 0)
        return 1;
    if (r == 0)
        r = find_recipient(&recipients[c], addr, c, &value);
    /* A local alias is a local recipient too (Postfix's default
     * local_recipient_maps includes $alias_maps), and so is any address
     * that virtual_alias_maps rewrites. */
    if (r == 0 && c == AC_LOCAL)
        r = addrclass_local_alias(addr, &value);
    if (r < 0) {
        snprintf(reply, len, "451 4.3.0 <%s>: %s address rejected: Temporary lookup failure",
                 addr, what);
        return -1;
    }
    if (r == 0)
        snprintf(reply, len, "550 5.1.1 <%s>: %s address rejected: %s", addr, what,
                 unknown_text[c]);
    return r;
}

int addrclass_recipient_known(const char *addr, char *reply, size_t len)
{
    return known(addr, "Recipient", reply, len);
}

int addrclass_sender_known(const char *addr, char *reply, size_t len)
{
    return known(addr, "Sender", reply, len);
}

int addrclass_virtual_alias(const char *addr, const char **value)
{
    return find_recipient(&recipients[AC_VIRTUAL_ALIAS], addr, AC_VIRTUAL_ALIAS, value);
}

int addrclass_local_alias(const char *addr, const char **value)
{
    /* The local-part keys only: an aliases file names users, not addresses. */
    struct keys ks;
    recipient_keys(addr, AC_LOCAL, &ks);
    for (int i = 0; i < ks.n; i++) {
        if (strchr(ks.k[i], '@'))
            continue;
        int r = tables_have(&aliases, ks.k[i], value);
        if (r)
            return r;
    }
    return 0;
}

int addrclass_mailbox_path(const char *addr, char *out, size_t len)
{
    const char *value = NULL;
    int r = find_recipient(&recipients[AC_VIRTUAL_MAILBOX], addr, AC_VIRTUAL_MAILBOX, &value);
    if (r <= 0)
        return r < 0 ? -1 : 1;
    str_copy(out, value, len);
    return 0;
}

/* ---- loading ------------------------------------------------------------ */

struct conflict_check {
    struct conf_errors *errs;
    int cls;              /* the class whose keys are walked */
};

static void report_conflict(struct conf_errors *errs, const char *domain, int a, int b)
{
    conf_error(errs, "%s: %s is listed in both %s and %s (a domain has one address class)",
               conf_origin(domain_params[b]), domain, conf_name(domain_params[a]),
               conf_name(domain_params[b]));
}

/* Names and local tables only: a database's rows cannot be listed, and
 * change after start. */
static int list_has_domain_locally(const struct dlist *l, const char *domain)
{
    for (int i = 0; i < l->nnames; i++)
        if (name_matches(l->names[i], domain))
            return 1;
    const char *v = NULL;
    return table_list_get_local(&l->tables, domain, &v) > 0;
}

static void check_domain(struct conf_errors *errs, const char *domain, int cls)
{
    if (domain[0] == '.')
        return; /* a subdomain pattern, not one domain */
    for (int other = cls + 1; other < AC_DEFAULT; other++)
        if (list_has_domain_locally(&domains[other], domain))
            report_conflict(errs, domain, cls, other);
}

static int check_key(void *arg, const char *key, const char *value, const char *origin)
{
    (void)value;
    (void)origin;
    struct conflict_check *c = arg;
    check_domain(c->errs, key, c->cls);
    return 0;
}

static void check_conflicts(struct conf_errors *errs)
{
    for (int c = 0; c < AC_DEFAULT; c++) {
        for (int i = 0; i < domains[c].nnames; i++)
            check_domain(errs, domains[c].names[i], c);
        struct conflict_check cc = {errs, c};
        for (int i = 0; i < domains[c].tables.n; i++)
            if (domains[c].tables.t[i] && !table_is_remote(domains[c].tables.t[i]))
                table_foreach(domains[c].tables.t[i], check_key, &cc);
    }
}

static void free_list(struct dlist *l)
{
    for (int i = 0; i < l->nnames; i++)
        free(l->names[i]);
    table_list_free(&l->tables);
    memset(l, 0, sizeof *l);
}

void addrclass_free(void)
{
    for (int c = 0; c < AC_DEFAULT; c++) {
        free_list(&domains[c]);
        free_list(&recipients[c]);
    }
    free_list(&aliases);
}

void addrclass_probe_tables(struct conf_errors *errs)
{
    for (int c = 0; c < AC_DEFAULT; c++) {
        table_list_probe(&domains[c].tables, domain_params[c], errs);
        table_list_probe(&recipients[c].tables, recipient_params[c], errs);
    }
    table_list_probe(&aliases.tables, P_ALIAS_MAPS, errs);
}

int addrclass_init(struct conf_errors *errs)
{
    int before = errs->count;
    addrclass_free();
    for (int c = 0; c < AC_DEFAULT; c++) {
        parse_list(&domains[c], domain_params[c], 1, errs);
        parse_list(&recipients[c], recipient_params[c], 0, errs);
    }
    parse_list(&aliases, P_ALIAS_MAPS, 0, errs);
    check_conflicts(errs);
    if ((domains[AC_VIRTUAL_MAILBOX].nnames || domains[AC_VIRTUAL_MAILBOX].tables.n) &&
        !*conf_str(P_VIRTUAL_TRANSPORT))
        conf_error(errs, "%s: virtual_mailbox_domains needs virtual_transport (virtual, or "
                   "for example lmtp:unix:/run/dovecot/lmtp)", conf_origin(P_VIRTUAL_MAILBOX_DOMAINS));
    if (recipients[AC_LOCAL].tables.n == 0 && conf_bool(P_SMTPD_REJECT_UNLISTED_RECIPIENT)) {
        const char *origin = conf_origin(P_LOCAL_RECIPIENT_MAPS);
        conf_warning("%s%slocal_recipient_maps is empty: every address of mydestination is "
                     "accepted (and a mailbox made for it); list the users, e.g. "
                     "local_recipient_maps = texthash:/etc/keypost/users",
                     strcmp(origin, "default") ? origin : "", strcmp(origin, "default") ? ": " : "");
    }
    return errs->count - before;
}
