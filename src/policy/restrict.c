/* restrict: parsing and evaluation of restriction lists. */
#include "policy/restrict.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdarg.h>
#include <strings.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr/addrclass.h"
#include "policy/policy.h"
#include "table/table.h"
#include "table/tablelist.h"
#include "table/tablememo.h"
#include "tls/tls.h"
#include "util/buf.h"
#include "util/log.h"
#include "util/strutil.h"

enum rkind {
    R_PERMIT, R_REJECT, R_DEFER, R_PERMIT_MYNETWORKS, R_REJECT_UNAUTH_DESTINATION,
    R_PERMIT_AUTH_DESTINATION, R_REJECT_UNLISTED_RECIPIENT, R_REJECT_UNLISTED_SENDER,
    R_PERMIT_TLS_CLIENTCERTS, R_PERMIT_TLS_ALL_CLIENTCERTS, R_CHECK_CCERT_ACCESS,
    R_CHECK_POLICY_SERVICE, R_CHECK_CLIENT_ACCESS, R_CHECK_HELO_ACCESS,
    R_CHECK_SENDER_ACCESS, R_CHECK_RECIPIENT_ACCESS, R_REJECT_UNKNOWN_CLIENT_HOSTNAME,
    R_REJECT_UNKNOWN_REVERSE_CLIENT_HOSTNAME,
    R_PERMIT_SASL_AUTHENTICATED, R_REJECT_SENDER_LOGIN_MISMATCH,
    R_REJECT_AUTH_SENDER_LOGIN_MISMATCH, R_REJECT_UNAUTH_SENDER_LOGIN_MISMATCH
};

enum { ORDER_CERT = 1, ORDER_PUBKEY = 2 };

struct restriction {
    enum rkind kind;
    struct table *table;      /* check_*_access */
    int order[2];             /* search order for check_ccert_access */
    char *target;             /* check_policy_service */
    char *context;            /* its policy_context */
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
static struct table *relay_pins;
static struct table_list sender_logins; /* smtpd_sender_login_maps */

static const struct { const char *name; enum rkind kind; } simple_names[] = {
    {"permit", R_PERMIT},
    {"reject", R_REJECT},
    {"defer", R_DEFER},
    {"permit_mynetworks", R_PERMIT_MYNETWORKS},
    {"reject_unauth_destination", R_REJECT_UNAUTH_DESTINATION},
    {"permit_auth_destination", R_PERMIT_AUTH_DESTINATION},
    {"reject_unlisted_recipient", R_REJECT_UNLISTED_RECIPIENT},
    {"reject_unlisted_sender", R_REJECT_UNLISTED_SENDER},
    {"permit_tls_clientcerts", R_PERMIT_TLS_CLIENTCERTS},
    {"permit_tls_all_clientcerts", R_PERMIT_TLS_ALL_CLIENTCERTS},
    {"reject_unknown_client_hostname", R_REJECT_UNKNOWN_CLIENT_HOSTNAME},
    {"reject_unknown_client", R_REJECT_UNKNOWN_CLIENT_HOSTNAME}, /* Postfix < 2.3 */
    {"reject_unknown_reverse_client_hostname", R_REJECT_UNKNOWN_REVERSE_CLIENT_HOSTNAME},
    {"permit_sasl_authenticated", R_PERMIT_SASL_AUTHENTICATED},
    {"reject_sender_login_mismatch", R_REJECT_SENDER_LOGIN_MISMATCH},
    {"reject_authenticated_sender_login_mismatch", R_REJECT_AUTH_SENDER_LOGIN_MISMATCH},
    {"reject_unauthenticated_sender_login_mismatch", R_REJECT_UNAUTH_SENDER_LOGIN_MISMATCH},
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

static const struct { const char *name; enum rkind kind; } table_names[] = {
    {"check_client_access", R_CHECK_CLIENT_ACCESS},
    {"check_helo_access", R_CHECK_HELO_ACCESS},
    {"check_sender_access", R_CHECK_SENDER_ACCESS},
    {"check_recipient_access", R_CHECK_RECIPIENT_ACCESS},
};

/* "inet:HOST:PORT", "unix:/PATH" or "{ TARGET, policy_context = TEXT }" */
static int parse_policy_spec(char *spec, struct restriction *r, char *err, size_t errlen)
{
    char *context = NULL;
    size_t n = strlen(spec);
    if (spec[0] == '{' && n > 1 && spec[n - 1] == '}') {
        spec[n - 1] = '\0';
        spec++;
        char *pc = strstr(spec, "policy_context");
        if (pc) {
            char *eq = strchr(pc, '=');
            context = eq ? str_trim(eq + 1) : NULL;
            *pc = '\0';
        }
        spec = str_trim(spec);
        n = strlen(spec);
        while (n && (spec[n - 1] == ',' || isspace((unsigned char)spec[n - 1])))
            spec[--n] = '\0';
    }
    if (!policy_target_ok(spec)) {
        snprintf(err, errlen, "check_policy_service: \"%s\" is not inet:ADDRESS:PORT or "
                 "unix:/PATH", spec);
        return -1;
    }
    r->target = strdup(spec);
    r->context = strdup(context ? context : conf_str(P_SMTPD_POLICY_SERVICE_POLICY_CONTEXT));
    return 0;
}

/* A restriction that takes the next list element as its argument. */
static int parse_with_argument(const char *name, char *arg, struct restriction *r, char *err,
                               size_t errlen)
{
    if (strcmp(name, "check_ccert_access") == 0) {
        r->kind = R_CHECK_CCERT_ACCESS;
        return parse_ccert_spec(arg, r, err, errlen);
    }
    if (strcmp(name, "check_policy_service") == 0) {
        r->kind = R_CHECK_POLICY_SERVICE;
        return parse_policy_spec(arg, r, err, errlen);
    }
    for (size_t k = 0; k < sizeof table_names / sizeof table_names[0]; k++)
        if (strcmp(name, table_names[k].name) == 0) {
            r->kind = table_names[k].kind;
            r->table = table_open(arg, err, errlen);
            return r->table ? 0 : -1;
        }
    return 1; /* not one of these */
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
        if (!found) {
            char err[512] = "";
            const char *name = items[i];
            int r2 = parse_with_argument(name, i + 1 < n ? items[i + 1] : (char *)"", r, err,
                                         sizeof err);
            if (r2 <= 0)
                i++;
            if (r2 < 0) {
                conf_error(errs, "%s: %s: %s: %s", conf_origin(p), conf_name(p), name,
                           i < n ? err : "needs an argument");
                bad++;
                continue;
            }
            found = r2 == 0;
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
    table_list_open(&sender_logins, P_SMTPD_SENDER_LOGIN_MAPS, 0, errs);
    const char *pins = conf_str(P_RELAY_CLIENTCERTS);
    if (*pins) {
        char err[512];
        relay_pins = table_open(pins, err, sizeof err);
        if (relay_pins == NULL)
            conf_error(errs, "%s: relay_clientcerts: %s", conf_origin(P_RELAY_CLIENTCERTS), err);
        else if (table_is_remote(relay_pins))
            conf_error(errs, "%s: relay_clientcerts must be a local table (texthash:, lmdb:, "
                       "inline:); share peer keys through check_ccert_access %s instead",
                       conf_origin(P_RELAY_CLIENTCERTS), pins);
    }
    return errs->count - before;
}

int restrict_probe_tables(struct conf_errors *errs)
{
    int before = errs->count;
    for (int l = 0; l < L_COUNT; l++)
        for (int i = 0; i < lists[l].count; i++) {
            char err[600];
            struct table *t = lists[l].items[i].table;
            if (t && table_probe(t, err, sizeof err) < 0)
                conf_error(errs, "table %s cannot be read: %s", table_spec(t), err);
        }
    return errs->count - before;
}

void restrict_free(void)
{
    for (int l = 0; l < L_COUNT; l++) {
        for (int i = 0; i < lists[l].count; i++) {
            table_free(lists[l].items[i].table);
            free(lists[l].items[i].target);
            free(lists[l].items[i].context);
        }
        free(lists[l].items);
        memset(&lists[l], 0, sizeof lists[l]);
    }
    free(mynetworks.nets);
    free(limit_exceptions.nets);
    memset(&mynetworks, 0, sizeof mynetworks);
    memset(&limit_exceptions, 0, sizeof limit_exceptions);
    table_free(relay_pins);
    relay_pins = NULL;
    table_list_free(&sender_logins);
    memset(&sender_logins, 0, sizeof sender_logins);
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

/* Format a reply "CODE X.Y.Z <object>: Stage rejected: text". A text that
 * starts with its own enhanced status code ("5.7.9 go away") keeps it, with
 * the class made to agree with the reply code, as Postfix does. */
static void format_reply(char *out, size_t len, const char *code, const char *dsn,
                         const char *object, const char *stage, const char *text)
{
    char own[16];
    size_t n = strspn(text, "0123456789.");
    if (n >= 5 && n < sizeof own && (text[n] == ' ' || text[n] == '\0') &&
        (text[0] == '2' || text[0] == '4' || text[0] == '5') && text[1] == '.') {
        memcpy(own, text, n);
        own[n] = '\0';
        own[0] = code[0];
        dsn = own;
        text += n;
        text += strspn(text, " ");
    }
    snprintf(out, len, "%s %s <%s>: %s rejected: %s", code, dsn, object, stage,
             *text ? text : "Access denied");
}

/* What an access-table value or a policy server's action means: access(5)
 * actions, plus DEFER_IF_PERMIT, DEFER_IF_REJECT, PREPEND, WARN and INFO. */
static enum restrict_action interpret_action(struct restrict_eval *ev, const char *value,
                                             const char *object, const char *stage)
{
    struct restrict_result *out = ev->out;
    char word[32];
    const char *text = str_first_word(value, word, sizeof word);
    size_t n = strlen(word);
    if (str_ieq(word, "OK") || str_ieq(word, "PERMIT"))
        return RA_PERMIT;
    if (str_ieq(word, "DUNNO") || *word == '\0')
        return RA_DUNNO;
    if (str_ieq(word, "HOLD"))
        return RA_HOLD;
    if (str_ieq(word, "DISCARD"))
        return RA_DISCARD;
    if (str_ieq(word, "WARN") || str_ieq(word, "INFO")) {
        log_info(NULL, "%s: %s: <%s>: %s", str_ieq(word, "WARN") ? "warn" : "info", stage,
                 object, text);
        return RA_DUNNO;
    }
    if (str_ieq(word, "PREPEND")) {
        if (*text && out->prepend[0] == '\0')
            str_copy(out->prepend, text, sizeof out->prepend);
        return RA_DUNNO;
    }
    /* Conditional: remembered, decided by the final outcome. */
    if (str_ieq(word, "DEFER_IF_PERMIT") || str_ieq(word, "DEFER_IF_REJECT")) {
        char *slot = str_ieq(word, "DEFER_IF_PERMIT") ? ev->defer_if_permit : ev->defer_if_reject;
        if (*slot == '\0')
            format_reply(slot, sizeof ev->defer_if_permit, "450", "4.7.1", object, stage,
                         *text ? text : "Service unavailable");
        return RA_DUNNO;
    }
    if (str_ieq(word, "REJECT")) {
        format_reply(out->reply, sizeof out->reply, "554", "5.7.1", object, stage, text);
        return RA_REJECT;
    }
    if (str_ieq(word, "DEFER")) {
        format_reply(out->reply, sizeof out->reply, "450", "4.7.1", object, stage, text);
        return RA_DEFER;
    }
    if (n == 3 && (word[0] == '4' || word[0] == '5') && isdigit((unsigned char)word[1]) &&
        isdigit((unsigned char)word[2])) {
        format_reply(out->reply, sizeof out->reply, word, word[0] == '4' ? "4.7.1" : "5.7.1",
                     object, stage, text);
        return word[0] == '4' ? RA_DEFER : RA_REJECT;
    }
    /* An unknown action is a configuration error: fail safe, temporarily. */
    log_warn(NULL, "unknown access action \"%s\" for <%s>", value, object);
    snprintf(out->reply, sizeof out->reply,
             "451 4.3.5 <%s>: %s rejected: Server configuration error", object, stage);
    return RA_DEFER;
}

/* Lookup keys in Postfix's order. Each generator fills keys[] (pointing
 * into store) and returns the count. */
#define MAX_LOOKUP_KEYS 16
struct keyset {
    const char *keys[MAX_LOOKUP_KEYS];
    int n;
    char store[MAX_LOOKUP_KEYS][300];
};

static void key_add(struct keyset *k, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void key_add(struct keyset *k, const char *fmt, ...)
{
    if (k->n >= MAX_LOOKUP_KEYS)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(k->store[k->n], sizeof k->store[0], fmt, ap);
    va_end(ap);
    k->keys[k->n] = k->store[k->n];
    k->n++;
}

/* A domain, then its parents: "a.b.c": "b.c", ".b.c", "c", ".c". */
static void domain_keys(struct keyset *k, const char *domain)
{
    key_add(k, "%s", domain);
    for (const char *d = strchr(domain, '.'); d && d[1]; d = strchr(d + 1, '.')) {
        key_add(k, "%s", d + 1);
        key_add(k, "%s", d);
    }
}

/* Addresses: user@domain, domain (and parents), user@; "<>" for null. */
static void address_keys(struct keyset *k, const char *addr)
{
    if (*addr == '\0') {
        key_add(k, "<>");
        return;
    }
    key_add(k, "%s", addr);
    const char *at = strrchr(addr, '@');
    if (at == NULL)
        return;
    domain_keys(k, at + 1);
    key_add(k, "%.*s@", (int)(at - addr), addr);
}

static int name_known(const char *name)
{
    return name && *name && strcmp(name, "unknown") != 0;
}

/* Client: name and parents, then the address and its shorter prefixes. */
static void client_keys(struct keyset *k, const struct restrict_ctx *c)
{
    if (name_known(c->client_name))
        domain_keys(k, c->client_name);
    char addr[64];
    str_copy(addr, c->client_addr, sizeof addr);
    char sep = strchr(addr, ':') ? ':' : '.';
    for (;;) {
        key_add(k, "%s", addr);
        char *cut = strrchr(addr, sep);
        if (cut == NULL || cut == addr)
            break;
        *cut = '\0';
    }
}

static void ccert_keys(struct keyset *k, const struct restriction *r,
                       const struct restrict_ctx *c)
{
    if (c->tls == NULL || !c->tls->trust.has_cert)
        return;
    for (int i = 0; i < 2; i++) {
        if (r->order[i] == ORDER_CERT)
            key_add(k, "%s", c->tls->trust.cert_fp);
        else if (r->order[i] == ORDER_PUBKEY)
            key_add(k, "%s", c->tls->trust.pubkey_fp);
    }
}

static void lookup_keys(struct keyset *k, const struct restriction *r,
                        const struct restrict_ctx *c)
{
    k->n = 0;
    switch (r->kind) {
    case R_CHECK_CCERT_ACCESS: ccert_keys(k, r, c); break;
    case R_CHECK_CLIENT_ACCESS: client_keys(k, c); break;
    case R_CHECK_HELO_ACCESS:
        if (*c->helo)
            domain_keys(k, c->helo);
        break;
    case R_CHECK_SENDER_ACCESS: address_keys(k, c->sender); break;
    default: address_keys(k, c->recipient); break;
    }
}

static int is_table_kind(enum rkind kind)
{
    return kind == R_CHECK_CCERT_ACCESS || kind == R_CHECK_CLIENT_ACCESS ||
           kind == R_CHECK_HELO_ACCESS || kind == R_CHECK_SENDER_ACCESS ||
           kind == R_CHECK_RECIPIENT_ACCESS;
}

static int tls_pinned(const struct restrict_ctx *c)
{
    if (c->tls == NULL || !c->tls->trust.has_cert || relay_pins == NULL)
        return 0;
    return table_lookup(relay_pins, c->tls->trust.pubkey_fp) != NULL ||
           table_lookup(relay_pins, c->tls->trust.cert_fp) != NULL;
}

/* A destination keypost is final for or relays to (any address class but
 * the default) is authorized. */
static enum restrict_action auth_destination(enum rkind kind, const struct restrict_ctx *c,
                                             struct restrict_result *out)
{
    enum addr_class cls;
    if (addrclass_of_address(c->recipient, &cls) < 0) {
        snprintf(out->reply, sizeof out->reply,
                 "451 4.3.0 <%s>: Recipient address rejected: Temporary lookup failure",
                 c->recipient);
        return RA_DEFER;
    }
    if (kind == R_PERMIT_AUTH_DESTINATION)
        return cls != AC_DEFAULT ? RA_PERMIT : RA_DUNNO;
    if (cls != AC_DEFAULT)
        return RA_DUNNO;
    snprintf(out->reply, sizeof out->reply, "554 5.7.1 <%s>: Relay access denied", c->recipient);
    return RA_REJECT;
}

static enum restrict_action unlisted(int (*known)(const char *, char *, size_t),
                                     const char *addr, struct restrict_result *out)
{
    int r = known(addr, out->reply, sizeof out->reply);
    return r > 0 ? RA_DUNNO : r == 0 ? RA_REJECT : RA_DEFER;
}

/* reject_unknown_(reverse_)client_hostname, with Postfix's replies: the
 * configured code when the name is unknown for good, 450 when DNS could not
 * say (so that an outage never turns into a bounce). */
static enum restrict_action unknown_client(const char *name, int tempfail, const char *what,
                                           const char *dsn, const struct restrict_ctx *c,
                                           struct restrict_result *out)
{
    if (name_known(name))
        return RA_DUNNO;
    long code = tempfail ? 450 : conf_long(P_UNKNOWN_CLIENT_REJECT_CODE);
    snprintf(out->reply, sizeof out->reply,
             "%ld %c%s Client host rejected: cannot find your %s, [%s]", code,
             code >= 500 ? '5' : '4', dsn + 1, what, c->client_addr);
    return code >= 500 ? RA_REJECT : RA_DEFER;
}

/* The owners smtpd_sender_login_maps gives the sender (the address, then
 * "@domain", as Postfix looks them up): 1 with owners filled, 0 none, -1 a
 * table failed. */
static int sender_owners(const char *sender, char *owners, size_t len)
{
    const char *value;
    int r = table_list_get(&sender_logins, sender, &value, NULL);
    const char *at = strrchr(sender, '@');
    if (r == 0 && at)
        r = table_list_get(&sender_logins, at, &value, NULL);
    if (r > 0)
        str_copy(owners, value, len);
    return r;
}

static int owns(char *owners, const char *login)
{
    char *items[64];
    int n = str_split_list(owners, items, 64);
    for (int i = 0; i < n; i++)
        if (strcasecmp(items[i], login) == 0)
            return 1;
    return 0;
}

/* reject_*sender_login_mismatch, with Postfix's replies: an address that has
 * owners needs one of them logged in; a logged-in client may use only the
 * addresses it owns. The null sender is nobody's. */
static enum restrict_action login_mismatch(enum rkind kind, const struct restrict_ctx *c,
                                           struct restrict_result *out)
{
    const char *login = c->sasl_username && *c->sasl_username ? c->sasl_username : NULL;
    if (*c->sender == '\0' || (kind == R_REJECT_AUTH_SENDER_LOGIN_MISMATCH && !login) ||
        (kind == R_REJECT_UNAUTH_SENDER_LOGIN_MISMATCH && login))
        return RA_DUNNO;
    char owners[1024];
    int r = sender_owners(c->sender, owners, sizeof owners);
    if (r < 0) {
        snprintf(out->reply, sizeof out->reply,
                 "451 4.3.0 <%s>: Sender address rejected: Temporary lookup failure", c->sender);
        return RA_DEFER;
    }
    if (login == NULL && r == 0)
        return RA_DUNNO;
    if (login == NULL) {
        snprintf(out->reply, sizeof out->reply,
                 "553 5.7.1 <%s>: Sender address rejected: not logged in", c->sender);
        return RA_REJECT;
    }
    if (r > 0 && owns(owners, login))
        return RA_DUNNO;
    snprintf(out->reply, sizeof out->reply,
             "553 5.7.1 <%s>: Sender address rejected: not owned by user %s", c->sender, login);
    return RA_REJECT;
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
    case R_PERMIT_AUTH_DESTINATION:
        return auth_destination(r->kind, c, out);
    case R_REJECT_UNLISTED_RECIPIENT:
        return unlisted(addrclass_recipient_known, c->recipient, out);
    case R_REJECT_UNLISTED_SENDER:
        return *c->sender ? unlisted(addrclass_sender_known, c->sender, out) : RA_DUNNO;
    case R_PERMIT_TLS_CLIENTCERTS:
        return tls_pinned(c) ? RA_PERMIT : RA_DUNNO;
    case R_PERMIT_TLS_ALL_CLIENTCERTS:
        return c->tls && c->tls->trust.chain_ok ? RA_PERMIT : RA_DUNNO;
    case R_REJECT_UNKNOWN_CLIENT_HOSTNAME:
        /* RFC 7372's code for a failed reverse-DNS check, as Postfix */
        return unknown_client(c->client_name, c->client_name_tempfail, "hostname", "4.7.25",
                              c, out);
    case R_REJECT_UNKNOWN_REVERSE_CLIENT_HOSTNAME:
        return unknown_client(c->reverse_client_name, c->reverse_client_name_tempfail,
                              "reverse hostname", "4.7.1", c, out);
    case R_PERMIT_SASL_AUTHENTICATED:
        return c->sasl_username && *c->sasl_username ? RA_PERMIT : RA_DUNNO;
    case R_REJECT_SENDER_LOGIN_MISMATCH:
    case R_REJECT_AUTH_SENDER_LOGIN_MISMATCH:
    case R_REJECT_UNAUTH_SENDER_LOGIN_MISMATCH:
        return login_mismatch(r->kind, c, out);
    case R_CHECK_CCERT_ACCESS:
    case R_CHECK_CLIENT_ACCESS:
    case R_CHECK_HELO_ACCESS:
    case R_CHECK_SENDER_ACCESS:
    case R_CHECK_RECIPIENT_ACCESS:
    case R_CHECK_POLICY_SERVICE:
        break; /* may wait: see run() */
    }
    return RA_DUNNO;
}

/* ---- policy delegation -------------------------------------------------- */

static void add_attr(struct buf *b, const char *name, const char *value)
{
    buf_printf(b, "%s=", name);
    /* A value with a newline would end the request early. */
    for (const char *p = value ? value : ""; *p; p++)
        buf_append(b, *p == '\n' || *p == '\r' ? " " : p, 1);
    buf_puts(b, "\n");
}

/* xtext (RFC 3461) as Postfix applies it to certificate names for policy
 * servers: "+XX" for "+", controls, space and 8-bit bytes. */
static void xtext(const char *in, char *out, size_t len)
{
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p && o + 4 < len; p++) {
        if (*p < 33 || *p > 126 || *p == '+') /* Postfix leaves '=' alone */
            o += (size_t)snprintf(out + o, len - o, "+%02X", *p);
        else
            out[o++] = (char)*p;
    }
    out[o] = '\0';
}

static void policy_request(const struct restrict_ctx *c, const struct restriction *r,
                           struct buf *b)
{
    char num[32];
    const struct tls_peer *t = c->tls;
    const struct trust_result *tr = t ? &t->trust : NULL;
    add_attr(b, "request", "smtpd_access_policy");
    add_attr(b, "protocol_state", c->protocol_state ? c->protocol_state : "RCPT");
    add_attr(b, "protocol_name", c->protocol_name);
    add_attr(b, "helo_name", c->helo);
    add_attr(b, "queue_id", c->queue_id);
    add_attr(b, "sender", c->sender);
    add_attr(b, "recipient", c->recipient);
    snprintf(num, sizeof num, "%d", c->recipient_count);
    add_attr(b, "recipient_count", num);
    add_attr(b, "client_address", c->client_addr);
    add_attr(b, "client_name", c->client_name);
    add_attr(b, "reverse_client_name",
             c->reverse_client_name ? c->reverse_client_name : c->client_name);
    snprintf(num, sizeof num, "%d", c->client_port);
    add_attr(b, "client_port", num);
    add_attr(b, "server_address", c->server_addr);
    snprintf(num, sizeof num, "%d", c->server_port);
    add_attr(b, "server_port", num);
    add_attr(b, "instance", c->instance);
    snprintf(num, sizeof num, "%ld", c->size);
    add_attr(b, "size", c->size ? num : "0");
    add_attr(b, "sasl_method", c->sasl_method);
    add_attr(b, "sasl_username", c->sasl_username);
    add_attr(b, "sasl_sender", c->sasl_sender);
    /* As Postfix: subject and issuer only for a verified chain. */
    char subject[3 * TRUST_NAME_LEN + 4] = "", issuer[3 * TRUST_NAME_LEN + 4] = "";
    if (tr && tr->chain_ok) {
        xtext(tr->subject_cn, subject, sizeof subject);
        xtext(tr->issuer_cn, issuer, sizeof issuer);
    }
    add_attr(b, "ccert_subject", subject);
    add_attr(b, "ccert_issuer", issuer);
    add_attr(b, "ccert_fingerprint", tr && tr->has_cert ? tr->cert_fp : "");
    add_attr(b, "ccert_pubkey_fingerprint", tr && tr->has_cert ? tr->pubkey_fp : "");
    add_attr(b, "encryption_protocol", t ? t->protocol : "");
    add_attr(b, "encryption_cipher", t ? t->cipher : "");
    snprintf(num, sizeof num, "%d", t ? t->bits : 0);
    add_attr(b, "encryption_keysize", t ? num : "0");
    add_attr(b, "etrn_domain", "");
    add_attr(b, "stress", "");
    add_attr(b, "compatibility_level", "3.6");
    add_attr(b, "mail_version", "keypost");
    add_attr(b, "policy_context", r->context);
}

static int run(struct restrict_eval *ev);

static void store_table_result(struct restrict_eval *ev, const char *value, int tempfail)
{
    ev->waiting_table = NULL;
    ev->have_table = 1;
    ev->table_tempfail = tempfail;
    ev->table_found = value != NULL;
    str_copy(ev->action, value ? value : "", sizeof ev->action);
}

static void table_answer(void *arg, const char *value, int tempfail)
{
    struct restrict_eval *ev = arg;
    store_table_result(ev, value, tempfail);
    if (ev->in_run)
        return;
    if (run(ev))
        ev->done(ev->arg, ev->out);
}

/* The outcome of a finished table lookup. */
static enum restrict_action table_outcome(struct restrict_eval *ev, const char *object,
                                          const char *stage)
{
    if (ev->table_tempfail) {
        snprintf(ev->out->reply, sizeof ev->out->reply,
                 "451 4.3.0 <%s>: Temporary lookup failure", object);
        return RA_DEFER;
    }
    return ev->table_found ? interpret_action(ev, ev->action, object, stage) : RA_DUNNO;
}

static void policy_answer(void *arg, const char *action)
{
    struct restrict_eval *ev = arg;
    ev->call = NULL;
    str_copy(ev->action, action, sizeof ev->action);
    ev->have_action = 1;
    if (ev->in_run)
        return; /* run() picks it up */
    if (run(ev))
        ev->done(ev->arg, ev->out);
}

/* Record one restriction's outcome; a reject or defer ends the evaluation. */
static int apply(struct restrict_eval *ev, enum restrict_action a)
{
    if (a == RA_REJECT || a == RA_DEFER) {
        ev->out->action = a;
        ev->list = L_COUNT;
        return 1;
    }
    if (a == RA_HOLD && ev->sticky != RA_DISCARD)
        ev->sticky = a;
    if (a == RA_DISCARD) { /* accept, discard, and ask nothing more */
        ev->sticky = a;
        ev->list = L_COUNT;
        return 0;
    }
    if (a == RA_PERMIT) {
        ev->list++;
        ev->item = 0;
    } else
        ev->item++;
    return 0;
}

/* DEFER_IF_PERMIT and DEFER_IF_REJECT take effect on the final outcome. */
static void conditional_defer(struct restrict_eval *ev)
{
    const char *why = NULL;
    if (ev->out->action == RA_REJECT && ev->defer_if_reject[0])
        why = ev->defer_if_reject;
    else if ((ev->out->action == RA_PERMIT || ev->out->action == RA_HOLD) &&
             ev->defer_if_permit[0])
        why = ev->defer_if_permit;
    if (why) {
        ev->out->action = RA_DEFER;
        str_copy(ev->out->reply, why, sizeof ev->out->reply);
    }
}

/* smtpd_reject_unlisted_recipient / _sender: after the lists, as Postfix
 * does, an address of a class keypost is final for must exist. */
static void implicit_unlisted_checks(struct restrict_eval *ev)
{
    const struct restrict_ctx *c = ev->ctx;
    enum restrict_action a = RA_DUNNO;
    if (conf_bool(P_SMTPD_REJECT_UNLISTED_SENDER) && *c->sender)
        a = unlisted(addrclass_sender_known, c->sender, ev->out);
    if (a == RA_DUNNO && conf_bool(P_SMTPD_REJECT_UNLISTED_RECIPIENT))
        a = unlisted(addrclass_recipient_known, c->recipient, ev->out);
    if (a != RA_DUNNO)
        ev->out->action = a;
}

static void memo_answered(void *arg)
{
    struct restrict_eval *ev = arg;
    ev->memo_waiting = 0;
    if (ev->in_run)
        return;
    if (run(ev))
        ev->done(ev->arg, ev->out);
}

/* The address tables an item asked may be remote: when the memo could not
 * answer, the item's result is dropped and the item runs again once the
 * answers are in (table/tablememo.h). 1 when run() must return. */
static int await_memo(struct restrict_eval *ev)
{
    struct table_memo *m = ev->ctx->memo;
    if (table_memo_missing(m) == 0)
        return 0;
    ev->memo_waiting = 1;
    ev->in_run = 1;
    int now = table_memo_fetch(m, memo_answered, ev);
    ev->in_run = 0;
    if (now)
        ev->memo_waiting = 0;
    return ev->memo_waiting;
}

/* One item, with the memo installed for its address table lookups. */
static int eval_item(struct restrict_eval *ev, const struct restriction *r,
                     const struct rlist *l, enum restrict_action *a)
{
    struct table_memo *before = table_memo_use(ev->ctx->memo);
    *a = eval_one(r, l, ev->ctx, ev->out);
    table_memo_use(before);
    return await_memo(ev);
}

static int run(struct restrict_eval *ev)
{
    char object[600];
    while (ev->list < L_COUNT) {
        const struct rlist *l = &lists[ev->list];
        if (ev->item >= l->count) {
            ev->list++;
            ev->item = 0;
            continue;
        }
        const struct restriction *r = &l->items[ev->item];
        object_of(l, ev->ctx, object, sizeof object);
        if (ev->have_action) {
            ev->have_action = 0;
            apply(ev, interpret_action(ev, ev->action, object, l->stage));
            continue;
        }
        if (ev->have_table) {
            ev->have_table = 0;
            apply(ev, table_outcome(ev, object, l->stage));
            continue;
        }
        if (is_table_kind(r->kind)) {
            struct keyset keys;
            lookup_keys(&keys, r, ev->ctx);
            const char *value = NULL;
            int tempfail = 0;
            ev->in_run = 1;
            ev->waiting_table = r->table;
            int now = keys.n == 0 || table_lookup_keys(r->table, keys.keys, keys.n, &value,
                                                       &tempfail, table_answer, ev);
            ev->in_run = 0;
            if (now)
                store_table_result(ev, value, tempfail);
            else if (!ev->have_table)
                return 0; /* table_answer() continues */
            continue;
        }
        if (r->kind == R_CHECK_POLICY_SERVICE) {
            struct buf req;
            buf_init(&req, 65536);
            policy_request(ev->ctx, r, &req);
            ev->in_run = 1;
            ev->call = policy_query(r->target, req.data, req.len, policy_answer, ev);
            ev->in_run = 0;
            buf_free(&req);
            if (!ev->have_action)
                return 0; /* policy_answer() continues */
            continue;
        }
        enum restrict_action a;
        if (eval_item(ev, r, l, &a))
            return 0; /* memo_answered() runs the item again */
        apply(ev, a);
    }
    if (ev->out->action != RA_REJECT && ev->out->action != RA_DEFER) {
        struct table_memo *before = table_memo_use(ev->ctx->memo);
        enum restrict_action saved = ev->out->action;
        implicit_unlisted_checks(ev);
        table_memo_use(before);
        if (await_memo(ev)) {
            ev->out->action = saved; /* judged on missing answers: again later */
            return 0;
        }
    }
    if (ev->out->action != RA_REJECT && ev->out->action != RA_DEFER)
        ev->out->action = ev->sticky == RA_DUNNO ? RA_PERMIT : ev->sticky;
    conditional_defer(ev);
    return 1;
}

int restrict_start(struct restrict_eval *ev, const struct restrict_ctx *ctx,
                   struct restrict_result *out, restrict_done_fn done, void *arg)
{
    memset(ev, 0, sizeof *ev);
    ev->ctx = ctx;
    ev->out = out;
    ev->done = done;
    ev->arg = arg;
    ev->sticky = RA_DUNNO;
    out->action = RA_DUNNO;
    out->reply[0] = '\0';
    out->prepend[0] = '\0';
    if (ctx->local_submission)
        ev->list = L_COUNT;
    return run(ev);
}

void restrict_cancel(struct restrict_eval *ev)
{
    if (ev->call)
        policy_cancel(ev->call);
    ev->call = NULL;
    if (ev->waiting_table)
        table_cancel(ev->waiting_table, ev);
    ev->waiting_table = NULL;
    if (ev->memo_waiting && ev->ctx && ev->ctx->memo)
        table_memo_clear(ev->ctx->memo); /* drops the callback to ev */
    ev->memo_waiting = 0;
}

static void sync_done(void *arg, const struct restrict_result *out)
{
    (void)arg;
    (void)out;
}

void restrict_check_rcpt(const struct restrict_ctx *ctx, struct restrict_result *out)
{
    struct restrict_eval ev;
    /* Without an event loop policy queries answer at once. */
    restrict_start(&ev, ctx, out, sync_done, NULL);
}
