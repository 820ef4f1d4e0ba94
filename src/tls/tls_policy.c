#include "tls/tls_policy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unistd.h>

#include "dns/dns.h"
#include "table/table.h"
#include "table/tablelist.h"
#include "tls/tlsopt.h"
#include "tls/tlsrpt.h"
#include "util/strutil.h"


static const char *const level_names[] = {"none", "may", "encrypt", "fingerprint",
                                          "verify", "secure", "dane", "dane-only"};

/* A table that could not be opened stays in the list (TL_KEEP_FAILED):
 * lookups through it fail (TEMPFAIL), so the destinations it names are
 * deferred, never sent under the default level (a reload that raced a file
 * change). */
static struct table_list policy_tables;

const char *tls_level_name(enum tls_level level)
{
    return level_names[level];
}

static int parse_level(const char *word, struct tls_policy *out, char *err, size_t errlen)
{
    for (size_t i = 0; i < sizeof level_names / sizeof level_names[0]; i++)
        if (strcmp(word, level_names[i]) == 0) {
            out->level = (enum tls_level)i;
            return 0;
        }
    snprintf(err, errlen, "unknown TLS security level \"%s\"", word);
    return -1;
}

/* One "name=value" attribute: applied to out, or refused. */
static int parse_attribute(const char *word, struct tls_policy *out, char *grade,
                           size_t gradelen, char *exclude, size_t exlen, char *err,
                           size_t errlen)
{
    const char *eq = strchr(word, '=');
    size_t n = eq ? (size_t)(eq - word) : strlen(word);
    const char *v = eq ? eq + 1 : "";
    if (eq && n == 5 && strncmp(word, "match", 5) == 0) {
        str_copy(out->match, v, sizeof out->match);
        return 0;
    }
    if (eq && n == 9 && strncmp(word, "protocols", 9) == 0)
        return tlsopt_protocols(v, &out->min_version, &out->max_version, err, errlen);
    if (eq && n == 7 && strncmp(word, "ciphers", 7) == 0) {
        str_copy(grade, v, gradelen);
        return 0;
    }
    if (eq && n == 7 && strncmp(word, "exclude", 7) == 0) {
        if (str_copy(exclude, v, exlen) >= exlen) {
            snprintf(err, errlen, "exclude= list too long");
            return -1;
        }
        return 0;
    }
    snprintf(err, errlen, "%s TLS policy attribute \"%.*s\"",
             eq ? "unsupported" : "malformed (expected name=value)", (int)n, word);
    return -1;
}

int tls_policy_parse(const char *text, struct tls_policy *out, char *err, size_t errlen)
{
    char copy[1200], grade[64] = "", exclude[sizeof out->exclude] = "";
    if (str_copy(copy, text, sizeof copy) >= sizeof copy) {
        snprintf(err, errlen, "TLS policy too long");
        return -1;
    }
    memset(out, 0, sizeof *out);
    char *words[16];
    int n = str_split_list(copy, words, 16);
    if (n == 0 || n == 16) { /* 16: the words did not all fit */
        snprintf(err, errlen, n ? "too many TLS policy attributes" : "empty TLS policy");
        return -1;
    }
    if (parse_level(words[0], out, err, errlen) < 0)
        return -1;
    for (int i = 1; i < n; i++)
        if (parse_attribute(words[i], out, grade, sizeof grade, exclude, sizeof exclude, err,
                            errlen) < 0)
            return -1;
    str_copy(out->exclude, exclude, sizeof out->exclude);
    if ((*grade || *exclude) &&
        tlsopt_cipher_list(*grade ? grade : "medium", exclude, out->ciphers, sizeof out->ciphers,
                           err, errlen) < 0)
        return -1;
    if (out->level == TL_FINGERPRINT && out->match[0] == '\0') {
        snprintf(err, errlen, "fingerprint level needs match=FINGERPRINT");
        return -1;
    }
    return 0;
}

/* ---- the tables -------------------------------------------------------- */

struct entry_check {
    struct conf_errors *errs;
    const char *table;
    int dane; /* an entry asks for dane or dane-only */
};

static int check_entry(void *arg, const char *key, const char *value, const char *origin)
{
    struct entry_check *c = arg;
    struct tls_policy p;
    char err[300];
    char unmatched[512];
    if (tls_policy_parse(value, &p, err, sizeof err) < 0) {
        conf_error(c->errs, "%s: smtp_tls_policy_maps %s entry for %s: %s", origin, c->table, key,
                   err);
        return 0; /* report every bad entry, not the first only */
    }
    if (tlsopt_unmatched(p.exclude, unmatched, sizeof unmatched))
        conf_warning("%s: smtp_tls_policy_maps %s entry for %s: exclude=%s selects no cipher "
                     "this OpenSSL offers", origin, c->table, key, unmatched);
    c->dane |= p.level == TL_DANE || p.level == TL_DANE_ONLY;
    return 0; /* report every bad entry, not the first only */
}

/* 1 when the default level is dane or dane-only. */
static int check_default_level(struct conf_errors *errs)
{
    struct tls_policy p;
    char err[300];
    if (tls_policy_parse(conf_str(P_SMTP_TLS_SECURITY_LEVEL), &p, err, sizeof err) < 0) {
        conf_error(errs, "%s: smtp_tls_security_level: %s (only smtp_tls_policy_maps entries "
                   "can carry match=)", conf_origin(P_SMTP_TLS_SECURITY_LEVEL), err);
        return 0;
    }
    return p.level == TL_DANE || p.level == TL_DANE_ONLY;
}

/* A named trust anchor must be readable; DANE without any anchor can never
 * authenticate (dane acts as may, dane-only defers everything): say so. */
static void check_anchor(struct conf_errors *errs, int dane)
{
    const char *ta = dns_trust_anchor();
    if (*ta && access(ta, R_OK) < 0)
        conf_error(errs, "%s: dns_trust_anchor_file %s: cannot read it",
                   conf_origin(P_DNS_TRUST_ANCHOR_FILE), ta);
    else if (!*ta && dane)
        conf_warning("a TLS security level is dane or dane-only, but there is no DNSSEC trust "
                     "anchor (dns_trust_anchor_file; %s): no DANE lookup can be secure",
                     conf_origin(P_DNS_TRUST_ANCHOR_FILE));
}

int tls_policy_init(struct conf_errors *errs)
{
    int before = errs->count, dane = 0;
    table_list_free(&policy_tables);
    table_list_open(&policy_tables, P_SMTP_TLS_POLICY_MAPS, TL_KEEP_FAILED, errs);
    for (int i = 0; i < policy_tables.n; i++) {
        struct table *t = policy_tables.t[i];
        struct entry_check c = {errs, policy_tables.spec[i], 0};
        if (t && !table_is_remote(t) && table_foreach(t, check_entry, &c) < 0)
            conf_error(errs, "%s: smtp_tls_policy_maps: cannot read %s",
                       conf_origin(P_SMTP_TLS_POLICY_MAPS), policy_tables.spec[i]);
        dane |= c.dane;
    }
    dane |= check_default_level(errs);
    check_anchor(errs, dane);
    mtasts_init(errs); /* issue 11: MTA-STS */
    tlsrpt_init(errs); /* issue 11: TLSRPT */
    return errs->count - before;
}

/* Look key up in every table; 1 found, 0 absent, -1 a table failed. */
static int lookup(const char *key, const char **value, const char **spec)
{
    return table_list_get(&policy_tables, key, value, spec);
}

enum tls_policy_status tls_policy_find(const char *nexthop, int port, int mx,
                                       struct tls_policy *out, char *why, size_t len)
{
    char keys[2][320];
    int nkeys = 1;
    if (mx)
        str_copy(keys[0], nexthop, sizeof keys[0]);
    else {
        snprintf(keys[0], sizeof keys[0], "[%s]:%d", nexthop, port);
        snprintf(keys[1], sizeof keys[1], "[%s]", nexthop);
        nkeys = 2;
    }
    const char *value = NULL, *spec = "";
    int found = 0, k;
    for (k = 0; k < nkeys && found == 0; k++)
        found = lookup(keys[k], &value, &spec);
    char err[300];
    if (found < 0) {
        snprintf(why, len, "4.3.0 TLS policy lookup for %s failed: %s cannot answer", keys[k - 1],
                 spec);
        return TLS_POLICY_TEMPFAIL;
    }
    if (found == 0) {
        /* Checked by tls_policy_init; should it still fail, defer. */
        if (tls_policy_parse(conf_str(P_SMTP_TLS_SECURITY_LEVEL), out, err, sizeof err) < 0) {
            snprintf(why, len, "4.7.5 client TLS configuration problem: "
                     "smtp_tls_security_level: %s", err);
            return TLS_POLICY_INVALID;
        }
        snprintf(out->origin, sizeof out->origin, "smtp_tls_security_level");
        /* issue 11: MTA-STS may raise the default level (tls/mtasts.h) */
        if (mx && mtasts_apply(nexthop, out, why, len) < 0)
            return TLS_POLICY_TEMPFAIL;
        return TLS_POLICY_OK;
    }
    if (tls_policy_parse(value, out, err, sizeof err) < 0) {
        snprintf(why, len, "4.7.5 client TLS configuration problem: smtp_tls_policy_maps %s "
                 "entry for %s: %s", spec, keys[k - 1], err);
        return TLS_POLICY_INVALID;
    }
    snprintf(out->origin, sizeof out->origin, "%.150s entry %.150s", spec, keys[k - 1]);
    return TLS_POLICY_OK;
}
