#include "queue/route.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr/addrclass.h"
#include "table/table.h"
#include "util/strutil.h"

static struct table *transports;

/* "[host]:port", "[host]", "host:port", "host" */
static int parse_host(const char *text, struct route *r)
{
    char buf[300];
    str_copy(buf, text, sizeof buf);
    r->port = 25;
    r->mx = buf[0] != '[';
    char *host = buf, *end = buf;
    if (buf[0] == '[') {
        end = strchr(buf, ']');
        if (end == NULL)
            return -1;
        *end++ = '\0';
        host = buf + 1;
    }
    char *colon = strchr(end, ':');
    if (colon) {
        long p = str_parse_long(colon + 1);
        if (p <= 0 || p > 65535)
            return -1;
        r->port = (int)p;
        *colon = '\0';
    } else if (buf[0] == '[' && *end)
        return -1; /* junk after "[host]" */
    if (*host == '\0')
        return -1;
    str_copy(r->nexthop, host, sizeof r->nexthop);
    return 0;
}

int route_parse(const char *spec, const char *domain, struct route *r, char *err, size_t len)
{
    memset(r, 0, sizeof *r);
    int bad = 0;
    if (strncmp(spec, "smtp:", 5) == 0) {
        r->transport = TR_SMTP;
        bad = parse_host(spec[5] ? spec + 5 : domain, r);
    } else if (strncmp(spec, "lmtp:", 5) == 0) {
        r->transport = TR_LMTP;
        str_copy(r->nexthop, spec + 5, sizeof r->nexthop);
        bad = strncmp(spec + 5, "inet:", 5) != 0 && strncmp(spec + 5, "unix:/", 6) != 0;
    } else if (strncmp(spec, "maildir:", 8) == 0) {
        r->transport = TR_MAILDIR;
        str_copy(r->nexthop, spec + 8, sizeof r->nexthop);
        bad = spec[8] != '/';
    } else if (strcmp(spec, "virtual") == 0 || strcmp(spec, "virtual:") == 0) {
        r->transport = TR_VIRTUAL;
        str_copy(r->nexthop, conf_str(P_VIRTUAL_MAILBOX_BASE), sizeof r->nexthop);
    } else if (strncmp(spec, "discard:", 8) == 0) {
        r->transport = TR_DISCARD;
        str_copy(r->text, spec[8] ? spec + 8 : "discarded", sizeof r->text);
    } else if (strncmp(spec, "error:", 6) == 0) {
        r->transport = TR_ERROR;
        str_copy(r->text, spec[6] ? spec + 6 : "5.0.0 mail for this destination is refused",
                 sizeof r->text);
    } else
        bad = 1;
    if (bad) {
        snprintf(err, len, "bad transport \"%s\" (smtp:, lmtp:inet:|unix:, maildir:/DIR, "
                 "virtual, discard:, error:)", spec);
        return -1;
    }
    if (r->transport == TR_SMTP)
        snprintf(r->key, sizeof r->key, r->mx ? "smtp:%s:%d" : "smtp:[%s]:%d", r->nexthop,
                 r->port);
    else if (r->transport == TR_LMTP || r->transport == TR_MAILDIR || r->transport == TR_VIRTUAL)
        snprintf(r->key, sizeof r->key, "%s", spec);
    else
        /* Routes that differ only in their text must not share a job. */
        snprintf(r->key, sizeof r->key, "%s%s", r->transport == TR_ERROR ? "error:" : "discard:",
                 r->text);
    return 0;
}

static void check_spec(const char *spec, enum conf_param p, struct conf_errors *errs)
{
    struct route r;
    char err[400];
    if (route_parse(spec, "example.org", &r, err, sizeof err) < 0)
        conf_error(errs, "%s: %s: %s", conf_origin(p), conf_name(p), err);
}

int route_init(struct conf_errors *errs)
{
    int before = errs->count;
    route_free();
    check_spec(conf_str(P_LOCAL_TRANSPORT), P_LOCAL_TRANSPORT, errs);
    const char *relay = conf_str(P_RELAYHOST);
    if (*relay) {
        char spec[320];
        snprintf(spec, sizeof spec, "smtp:%s", relay);
        check_spec(spec, P_RELAYHOST, errs);
    }
    const char *maps = conf_str(P_TRANSPORT_MAPS);
    if (*maps) {
        char err[512];
        transports = table_open(maps, err, sizeof err);
        if (transports == NULL)
            conf_error(errs, "%s: transport_maps: %s", conf_origin(P_TRANSPORT_MAPS), err);
        for (size_t i = 0; transports && i < table_count(transports); i++)
            check_spec(table_lookup(transports, table_key(transports, i)), P_TRANSPORT_MAPS,
                       errs);
    }
    return errs->count - before;
}

void route_free(void)
{
    table_free(transports);
    transports = NULL;
}

static const char *lookup_transport(const char *domain)
{
    if (transports == NULL)
        return NULL;
    const char *v = table_lookup(transports, domain);
    for (const char *d = strchr(domain, '.'); v == NULL && d; d = strchr(d + 1, '.'))
        v = table_lookup(transports, d);
    return v;
}

/* The recipient's own domain, by MX: built directly, so that nothing in
 * an address (a ":port", say) can choose where a delivery goes. */
static void mx_route(const char *domain, struct route *r)
{
    memset(r, 0, sizeof *r);
    r->transport = TR_SMTP;
    r->port = 25;
    size_t n = strlen(domain);
    if (domain[0] == '[' && n > 2 && domain[n - 1] == ']') {
        /* An address literal: that address, no MX lookup. */
        const char *a = str_iprefix(domain + 1, "IPv6:") ? domain + 6 : domain + 1;
        snprintf(r->nexthop, sizeof r->nexthop, "%.*s", (int)(domain + n - 1 - a), a);
        r->mx = 0;
    } else {
        str_copy(r->nexthop, domain, sizeof r->nexthop);
        r->mx = 1;
    }
    snprintf(r->key, sizeof r->key, r->mx ? "smtp:%s:%d" : "smtp:[%s]:%d", r->nexthop, r->port);
}

/* A route that defers (4.x) or bounces (5.x) with text. */
static void error_route(struct route *r, const char *text)
{
    memset(r, 0, sizeof *r);
    r->transport = TR_ERROR;
    str_copy(r->text, text, sizeof r->text);
    str_copy(r->key, "error:", sizeof r->key);
}

struct base_walk {
    char (*out)[300];
    int max, n;
};

static int collect_base(void *arg, const char *key, const char *value, const char *origin)
{
    (void)origin;
    struct base_walk *w = arg;
    struct route r;
    char err[400];
    if (route_parse(value, key, &r, err, sizeof err) == 0 && r.transport == TR_MAILDIR &&
        w->n < w->max)
        str_copy(w->out[w->n++], r.nexthop, sizeof w->out[0]);
    return 0;
}

static int names_virtual(void *arg, const char *key, const char *value, const char *origin)
{
    (void)arg;
    (void)key;
    (void)origin;
    return strcmp(value, "virtual") == 0 || strcmp(value, "virtual:") == 0;
}

int route_may_use_virtual(void)
{
    const enum conf_param ps[] = {P_LOCAL_TRANSPORT, P_RELAY_TRANSPORT, P_VIRTUAL_TRANSPORT};
    for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) {
        const char *t = conf_str(ps[i]);
        int used = ps[i] != P_VIRTUAL_TRANSPORT || *conf_str(P_VIRTUAL_MAILBOX_DOMAINS);
        if (used && (strcmp(t, "virtual") == 0 || strcmp(t, "virtual:") == 0))
            return 1;
    }
    /* A database's rows cannot be listed: it may name virtual any time. */
    return transports && (table_is_remote(transports) ||
                          table_foreach(transports, names_virtual, NULL) == 1);
}

int route_maildir_bases(char (*out)[300], int max)
{
    struct base_walk w = {out, max, 0};
    if (transports)
        table_foreach(transports, collect_base, &w);
    return w.n;
}

void route_for(const char *rcpt, struct route *r)
{
    const char *at = strrchr(rcpt, '@');
    const char *domain = at ? at + 1 : "";
    char err[400], spec[320];
    const char *t = lookup_transport(domain);
    enum addr_class cls = AC_DEFAULT;
    if (t == NULL && addrclass_of_domain(domain, &cls) < 0) {
        error_route(r, "4.3.0 address class lookup failed for the recipient domain");
        return;
    }
    if (t == NULL && cls == AC_LOCAL)
        t = conf_str(P_LOCAL_TRANSPORT);
    if (t == NULL && cls == AC_RELAY && *conf_str(P_RELAY_TRANSPORT))
        t = conf_str(P_RELAY_TRANSPORT);
    if (t == NULL && cls == AC_VIRTUAL_ALIAS) {
        /* Every address of the class is an alias; one that is still here
         * matched none (an alias target's typo): Postfix's answer. */
        error_route(r, "5.1.1 User unknown in virtual alias table");
        return;
    }
    if (t == NULL && cls == AC_VIRTUAL_MAILBOX) {
        if (!*conf_str(P_VIRTUAL_TRANSPORT)) { /* check refuses this; a reload race */
            error_route(r, "4.3.5 no virtual_transport for a virtual mailbox domain");
            return;
        }
        t = conf_str(P_VIRTUAL_TRANSPORT);
    }
    if (t == NULL && *conf_str(P_RELAYHOST)) {
        snprintf(spec, sizeof spec, "smtp:%s", conf_str(P_RELAYHOST));
        t = spec;
    }
    if (t == NULL) {
        mx_route(domain, r);
        return;
    }
    if (route_parse(t, domain, r, err, sizeof err) < 0) {
        char text[450];
        snprintf(text, sizeof text, "4.3.5 %s", err);
        error_route(r, text);
    }
}
