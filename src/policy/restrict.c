/* restrict: parsing and evaluation of restriction lists. */
#include "policy/restrict.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "table/table.h"
#include "tls/tls.h"
#include "util/strutil.h"

enum rkind {
    R_PERMIT, R_REJECT, R_DEFER, R_PERMIT_MYNETWORKS, R_REJECT_UNAUTH_DESTINATION,
    R_PERMIT_TLS_CLIENTCERTS, R_PERMIT_TLS_ALL_CLIENTCERTS, R_CHECK_CCERT_ACCESS
};

enum { ORDER_CERT = 1, ORDER_PUBKEY = 2 };

struct restriction {
    enum rkind kind;
    struct table *table;      /* check_ccert_access */
    int order[2];             /* search order for check_ccert_access */
};

struct rlist {
    const char *stage;        /* "Client host", "Recipient address", ... */
    struct restriction *items;
    int count;
};

struct network {
    int family;
    unsigned char addr[16];
    int prefix;
};

enum { L_CLIENT, L_HELO, L_SENDER, L_RELAY, L_RECIPIENT, L_COUNT };

static struct rlist lists[L_COUNT];
struct netlist {
    struct network *nets;
    int count;
};

static struct netlist mynetworks, limit_exceptions;
static char **local_domains;
static int local_domain_count;
static struct table *relay_pins;

static const struct { const char *name; enum rkind kind; } simple_names[] = {
    {"permit", R_PERMIT},
    {"reject", R_REJECT},
    {"defer", R_DEFER},
    {"permit_mynetworks", R_PERMIT_MYNETWORKS},
    {"reject_unauth_destination", R_REJECT_UNAUTH_DESTINATION},
    {"permit_tls_clientcerts", R_PERMIT_TLS_CLIENTCERTS},
    {"permit_tls_all_clientcerts", R_PERMIT_TLS_ALL_CLIENTCERTS},
};

/* "{ texthash:/x, search_order = cert_fingerprint, pubkey_fingerprint }" */
static int parse_ccert_spec(char *spec, struct restriction *r, char *err, size_t errlen)
{
    r->order[0] = ORDER_CERT;
    r->order[1] = ORDER_PUBKEY;
    size_t n = strlen(spec);
    if (spec[0] == '{') {
        if (n < 2 || spec[n - 1] != '}') {
            snprintf(err, errlen, "missing '}' in \"%s\"", spec);
            return -1;
        }
        spec[n - 1] = '\0';
        spec++;
        char *so = strstr(spec, "search_order");
        if (so) {
            char *eq = strchr(so, '=');
            if (eq == NULL) {
                snprintf(err, errlen, "search_order needs '='");
                return -1;
            }
            *so = '\0';
            char *names[4];
            int k = str_split_list(eq + 1, names, 4);
            r->order[0] = r->order[1] = 0;
            for (int i = 0; i < k && i < 2; i++) {
                if (strcmp(names[i], "cert_fingerprint") == 0)
                    r->order[i] = ORDER_CERT;
                else if (strcmp(names[i], "pubkey_fingerprint") == 0)
                    r->order[i] = ORDER_PUBKEY;
                else {
                    snprintf(err, errlen, "unknown search_order element \"%s\"", names[i]);
                    return -1;
                }
            }
        }
        spec = str_trim(spec);
        n = strlen(spec);
        while (n && (spec[n - 1] == ',' || isspace((unsigned char)spec[n - 1])))
            spec[--n] = '\0';
    }
    r->table = table_open(spec, err, errlen);
    return r->table ? 0 : -1;
}

static int parse_list(enum conf_param p, const char *stage, struct rlist *out,
                      struct conf_errors *errs)
{
    char *copy = strdup(conf_str(p));
    char *items[128];
    int n = str_split_list(copy, items, 128);
    out->stage = stage;
    out->items = calloc((size_t)n + 1, sizeof *out->items);
    out->count = 0;
    int bad = 0;
    for (int i = 0; i < n; i++) {
        struct restriction *r = &out->items[out->count];
        int found = 0;
        for (size_t k = 0; k < sizeof simple_names / sizeof simple_names[0]; k++)
            if (strcmp(items[i], simple_names[k].name) == 0) {
                r->kind = simple_names[k].kind;
                found = 1;
            }
        if (!found && strcmp(items[i], "check_ccert_access") == 0) {
            char err[512];
            r->kind = R_CHECK_CCERT_ACCESS;
            if (i + 1 >= n) {
                conf_error(errs, "%s: %s: check_ccert_access needs a table", conf_origin(p),
                           conf_name(p));
                bad++;
                continue;
            }
            if (parse_ccert_spec(items[++i], r, err, sizeof err) < 0) {
                conf_error(errs, "%s: %s: %s", conf_origin(p), conf_name(p), err);
                bad++;
                continue;
            }
            found = 1;
        }
        if (!found) {
            conf_error(errs, "%s: %s: unknown restriction \"%s\"", conf_origin(p),
                       conf_name(p), items[i]);
            bad++;
            continue;
        }
        out->count++;
    }
    free(copy);
    return bad ? -1 : 0;
}

static int parse_network(const char *text, struct network *net)
{
    char buf[128];
    if (str_copy(buf, text, sizeof buf) >= sizeof buf)
        return -1;
    char *slash = strchr(buf, '/');
    if (slash)
        *slash++ = '\0';
    char *a = buf;
    size_t n = strlen(a);
    if (a[0] == '[' && n > 1 && a[n - 1] == ']') {
        a[n - 1] = '\0';
        a++;
    }
    if (inet_pton(AF_INET, a, net->addr) == 1) {
        net->family = AF_INET;
        net->prefix = 32;
    } else if (inet_pton(AF_INET6, a, net->addr) == 1) {
        net->family = AF_INET6;
        net->prefix = 128;
    } else
        return -1;
    if (slash) {
        long p = str_parse_long(slash);
        if (p < 0 || p > net->prefix)
            return -1;
        net->prefix = (int)p;
    }
    return 0;
}

static int parse_networks(enum conf_param p, struct netlist *out, struct conf_errors *errs)
{
    char *copy = strdup(conf_str(p));
    char *items[256];
    int n = str_split_list(copy, items, 256);
    out->nets = calloc((size_t)n + 1, sizeof *out->nets);
    out->count = 0;
    int bad = 0;
    for (int i = 0; i < n; i++) {
        if (parse_network(items[i], &out->nets[out->count]) == 0)
            out->count++;
        else {
            conf_error(errs, "%s: %s: bad network \"%s\" (expected addr/prefix)",
                       conf_origin(p), conf_name(p), items[i]);
            bad++;
        }
    }
    free(copy);
    return bad ? -1 : 0;
}

static void parse_domains(void)
{
    char *copy = strdup(conf_str(P_MYDESTINATION));
    char *items[256];
    int n = str_split_list(copy, items, 256);
    local_domains = calloc((size_t)n + 1, sizeof *local_domains);
    for (int i = 0; i < n; i++) {
        local_domains[i] = strdup(items[i]);
        str_lower(local_domains[i]);
    }
    local_domain_count = n;
    free(copy);
}

int restrict_init(struct conf_errors *errs)
{
    int before = errs->count;
    restrict_free();
    parse_list(P_SMTPD_CLIENT_RESTRICTIONS, "Client host", &lists[L_CLIENT], errs);
    parse_list(P_SMTPD_HELO_RESTRICTIONS, "Helo command", &lists[L_HELO], errs);
    parse_list(P_SMTPD_SENDER_RESTRICTIONS, "Sender address", &lists[L_SENDER], errs);
    parse_list(P_SMTPD_RELAY_RESTRICTIONS, "Recipient address", &lists[L_RELAY], errs);
    parse_list(P_SMTPD_RECIPIENT_RESTRICTIONS, "Recipient address", &lists[L_RECIPIENT], errs);
    parse_networks(P_MYNETWORKS, &mynetworks, errs);
    parse_networks(P_SMTPD_CLIENT_EVENT_LIMIT_EXCEPTIONS, &limit_exceptions, errs);
    parse_domains();
    const char *pins = conf_str(P_RELAY_CLIENTCERTS);
    if (*pins) {
        char err[512];
        relay_pins = table_open(pins, err, sizeof err);
        if (relay_pins == NULL)
            conf_error(errs, "%s: relay_clientcerts: %s", conf_origin(P_RELAY_CLIENTCERTS), err);
    }
    return errs->count - before;
}

void restrict_free(void)
{
    for (int l = 0; l < L_COUNT; l++) {
        for (int i = 0; i < lists[l].count; i++)
            table_free(lists[l].items[i].table);
        free(lists[l].items);
        memset(&lists[l], 0, sizeof lists[l]);
    }
    free(mynetworks.nets);
    free(limit_exceptions.nets);
    memset(&mynetworks, 0, sizeof mynetworks);
    memset(&limit_exceptions, 0, sizeof limit_exceptions);
    for (int i = 0; i < local_domain_count; i++)
        free(local_domains[i]);
    free(local_domains);
    local_domains = NULL;
    local_domain_count = 0;
    table_free(relay_pins);
    relay_pins = NULL;
}

int restrict_is_local_domain(const char *domain)
{
    for (int i = 0; i < local_domain_count; i++)
        if (str_ieq(local_domains[i], domain))
            return 1;
    return 0;
}

static int net_match(const struct network *n, const unsigned char *addr)
{
    int full = n->prefix / 8, rest = n->prefix % 8;
    if (memcmp(n->addr, addr, (size_t)full) != 0)
        return 0;
    if (rest == 0)
        return 1;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return (n->addr[full] & mask) == (addr[full] & mask);
}

static int netlist_match(const struct netlist *list, const struct sockaddr_storage *ss)
{
    const unsigned char *a4 = NULL, *a6 = NULL;
    if (ss->ss_family == AF_INET)
        a4 = (const unsigned char *)&((const struct sockaddr_in *)ss)->sin_addr;
    else if (ss->ss_family == AF_INET6) {
        a6 = (const unsigned char *)&((const struct sockaddr_in6 *)ss)->sin6_addr;
        static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(a6, mapped, 12) == 0)
            a4 = a6 + 12;
    }
    for (int i = 0; i < list->count; i++) {
        const struct network *n = &list->nets[i];
        if ((n->family == AF_INET && a4 && net_match(n, a4)) ||
            (n->family == AF_INET6 && a6 && net_match(n, a6)))
            return 1;
    }
    return 0;
}

int restrict_in_mynetworks(const struct sockaddr_storage *ss)
{
    return netlist_match(&mynetworks, ss);
}

int restrict_in_limit_exceptions(const struct sockaddr_storage *ss)
{
    return netlist_match(&limit_exceptions, ss);
}

static const char *domain_of(const char *addr)
{
    const char *at = strrchr(addr, '@');
    return at ? at + 1 : "";
}

/* The object an error is about: "<rcpt>" or "<host[addr]>" as Postfix says. */
static void object_of(const struct rlist *l, const struct restrict_ctx *c, char *out,
                      size_t len)
{
    if (l == &lists[L_CLIENT])
        snprintf(out, len, "%s[%s]", c->client_name, c->client_addr);
    else if (l == &lists[L_HELO])
        snprintf(out, len, "%s", c->helo);
    else if (l == &lists[L_SENDER])
        snprintf(out, len, "%s", c->sender);
    else
        snprintf(out, len, "%s", c->recipient);
}

/* Map an access-table value to a result (Postfix access(5) actions). */
static enum restrict_action access_action(const char *value, const char *object,
                                          const char *stage, struct restrict_result *out)
{
    char word[32];
    size_t n = strcspn(value, " \t");
    if (n >= sizeof word)
        n = sizeof word - 1;
    memcpy(word, value, n);
    word[n] = '\0';
    const char *text = value + n;
    while (*text == ' ' || *text == '\t')
        text++;
    if (str_ieq(word, "OK") || str_ieq(word, "PERMIT"))
        return RA_PERMIT;
    if (str_ieq(word, "DUNNO") || *word == '\0')
        return RA_DUNNO;
    if (str_ieq(word, "HOLD"))
        return RA_HOLD;
    if (str_ieq(word, "DISCARD"))
        return RA_DISCARD;
    if (str_ieq(word, "REJECT")) {
        snprintf(out->reply, sizeof out->reply, "554 5.7.1 <%s>: %s rejected: %s", object,
                 stage, *text ? text : "Access denied");
        return RA_REJECT;
    }
    if (str_ieq(word, "DEFER")) {
        snprintf(out->reply, sizeof out->reply, "450 4.7.1 <%s>: %s rejected: %s", object,
                 stage, *text ? text : "Access denied");
        return RA_DEFER;
    }
    if (n == 3 && (word[0] == '4' || word[0] == '5') && isdigit((unsigned char)word[1]) &&
        isdigit((unsigned char)word[2])) {
        snprintf(out->reply, sizeof out->reply, "%s %c.7.1 <%s>: %s rejected: %s", word,
                 word[0], object, stage, *text ? text : "Access denied");
        return word[0] == '4' ? RA_DEFER : RA_REJECT;
    }
    /* An unknown action is a configuration error: fail safe, temporarily. */
    snprintf(out->reply, sizeof out->reply,
             "451 4.3.5 <%s>: %s rejected: Server configuration error", object, stage);
    return RA_DEFER;
}

static enum restrict_action ccert_access(const struct restriction *r,
                                         const struct restrict_ctx *c, const char *object,
                                         const char *stage, struct restrict_result *out)
{
    if (c->tls == NULL || !c->tls->trust.has_cert)
        return RA_DUNNO;
    for (int i = 0; i < 2; i++) {
        const char *key = r->order[i] == ORDER_CERT     ? c->tls->trust.cert_fp
                          : r->order[i] == ORDER_PUBKEY ? c->tls->trust.pubkey_fp
                                                        : NULL;
        const char *v = key ? table_lookup(r->table, key) : NULL;
        if (v)
            return access_action(v, object, stage, out);
    }
    return RA_DUNNO;
}

static int tls_pinned(const struct restrict_ctx *c)
{
    if (c->tls == NULL || !c->tls->trust.has_cert || relay_pins == NULL)
        return 0;
    return table_lookup(relay_pins, c->tls->trust.pubkey_fp) != NULL ||
           table_lookup(relay_pins, c->tls->trust.cert_fp) != NULL;
}

static enum restrict_action eval_one(const struct restriction *r, const struct rlist *l,
                                     const struct restrict_ctx *c, struct restrict_result *out)
{
    char object[600];
    object_of(l, c, object, sizeof object);
    switch (r->kind) {
    case R_PERMIT: return RA_PERMIT;
    case R_REJECT:
        snprintf(out->reply, sizeof out->reply, "554 5.7.1 <%s>: %s rejected: Access denied",
                 object, l->stage);
        return RA_REJECT;
    case R_DEFER:
        snprintf(out->reply, sizeof out->reply, "450 4.7.1 <%s>: %s rejected: Try again later",
                 object, l->stage);
        return RA_DEFER;
    case R_PERMIT_MYNETWORKS:
        return restrict_in_mynetworks(c->client) ? RA_PERMIT : RA_DUNNO;
    case R_REJECT_UNAUTH_DESTINATION:
        if (restrict_is_local_domain(domain_of(c->recipient)))
            return RA_DUNNO;
        snprintf(out->reply, sizeof out->reply, "554 5.7.1 <%s>: Relay access denied",
                 c->recipient);
        return RA_REJECT;
    case R_PERMIT_TLS_CLIENTCERTS:
        return tls_pinned(c) ? RA_PERMIT : RA_DUNNO;
    case R_PERMIT_TLS_ALL_CLIENTCERTS:
        return c->tls && c->tls->trust.chain_ok ? RA_PERMIT : RA_DUNNO;
    case R_CHECK_CCERT_ACCESS:
        return ccert_access(r, c, object, l->stage, out);
    }
    return RA_DUNNO;
}

void restrict_check_rcpt(const struct restrict_ctx *ctx, struct restrict_result *out)
{
    out->action = RA_DUNNO;
    out->reply[0] = '\0';
    enum restrict_action sticky = RA_DUNNO; /* HOLD or DISCARD seen earlier */
    for (int l = 0; l < L_COUNT; l++) {
        for (int i = 0; i < lists[l].count; i++) {
            enum restrict_action a = eval_one(&lists[l].items[i], &lists[l], ctx, out);
            if (a == RA_REJECT || a == RA_DEFER) {
                out->action = a;
                return;
            }
            if (a == RA_HOLD || a == RA_DISCARD) {
                sticky = a;
                continue;
            }
            if (a == RA_PERMIT)
                break;
        }
    }
    out->action = sticky == RA_DUNNO ? RA_PERMIT : sticky;
}
