/* dns: blocking MX, address and TLSA lookups with their DNSSEC status, and
 * the resolver set-up shared with the asynchronous client name lookups
 * (peername.c). */
#include "dns/dns.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unbound.h>
#include <unistd.h>

#include "conf/conf.h"
#include "util/netaddr.h"
#include "util/strutil.h"

static struct ub_ctx *ctx;
static int have_anchor; /* ctx validates: answers are secure, insecure or bogus */

const char *dns_trust_anchor(void)
{
    const char *ta = conf_str(P_DNS_TRUST_ANCHOR_FILE);
    /* The default names Debian's dns-root-data file; a machine without it
     * has no anchor (every answer indeterminate), and keypost check warns
     * when a DANE level is configured then. A file the operator named must
     * exist: that is checked with the configuration. */
    if (strcmp(conf_origin(P_DNS_TRUST_ANCHOR_FILE), "default") == 0 && access(ta, R_OK) < 0)
        return "";
    return ta;
}

static int add_anchor(struct ub_ctx *c, char *err, size_t len)
{
    const char *ta = dns_trust_anchor();
    if (*ta == '\0')
        return 0;
    int r = ub_ctx_add_ta_file(c, ta);
    if (r != 0) {
        snprintf(err, len, "dns_trust_anchor_file %s: %s", ta, ub_strerror(r));
        return -1;
    }
    return 1;
}

struct ub_ctx *dns_resolver_new(int threaded, int validate, char *err, size_t len)
{
    struct ub_ctx *c = ub_ctx_create();
    if (c == NULL) {
        snprintf(err, len, "cannot create resolver");
        return NULL;
    }
    const char *fwd = conf_str(P_DNS_RESOLVER);
    int r = *fwd ? ub_ctx_set_fwd(c, fwd) : ub_ctx_resolvconf(c, NULL);
    /* libunbound answers the special-use "test." and the loopback reverse
     * zone itself (RFC 6761); a resolver named in dns_resolver may serve
     * them on purpose, and then it is asked like for any other name. */
    if (r == 0 && *fwd)
        r = ub_ctx_set_option(c, "local-zone:", "test. transparent");
    if (r == 0 && *fwd)
        r = ub_ctx_set_option(c, "local-zone:", "127.in-addr.arpa. transparent");
    if (r == 0)
        r = ub_ctx_hosts(c, NULL);
    if (r == 0 && threaded)
        r = ub_ctx_async(c, 1);
    if (r != 0) {
        snprintf(err, len, "resolver setup: %s", ub_strerror(r));
        ub_ctx_delete(c);
        return NULL;
    }
    if (validate && add_anchor(c, err, len) < 0) {
        ub_ctx_delete(c);
        return NULL;
    }
    return c;
}

static struct ub_ctx *resolver(char *err, size_t len)
{
    if (ctx == NULL) {
        ctx = dns_resolver_new(0, 1, err, len);
        have_anchor = ctx && *dns_trust_anchor();
    }
    return ctx;
}

const char *dns_sec_name(enum dns_sec sec)
{
    static const char *const names[] = {"indeterminate", "insecure", "secure", "bogus"};
    return names[sec];
}

static enum dns_sec sec_of(const struct ub_result *res)
{
    if (res->bogus)
        return DNS_SEC_BOGUS;
    if (res->secure)
        return DNS_SEC_SECURE;
    return have_anchor ? DNS_SEC_INSECURE : DNS_SEC_INDETERMINATE;
}

/* *sec (may be NULL) is set whenever an answer came back. */
static enum dns_status query(const char *name, int type, struct ub_result **res,
                             enum dns_sec *sec, char *err, size_t len)
{
    struct ub_ctx *c = resolver(err, len);
    if (sec)
        *sec = DNS_SEC_INDETERMINATE;
    if (c == NULL)
        return DNS_TEMPFAIL;
    int r = ub_resolve(c, name, type, 1, res);
    if (r != 0) {
        snprintf(err, len, "lookup of %s: %s", name, ub_strerror(r));
        return DNS_TEMPFAIL;
    }
    if (sec)
        *sec = sec_of(*res);
    if ((*res)->bogus) {
        /* Forged or broken: as if the server had not answered. */
        snprintf(err, len, "DNSSEC validation of %s failed: %s", name,
                 (*res)->why_bogus ? (*res)->why_bogus : "bogus");
        return DNS_TEMPFAIL;
    }
    if ((*res)->havedata)
        return DNS_OK;
    if ((*res)->nxdomain || (*res)->rcode == 0) {
        snprintf(err, len, "%s: %s", name, (*res)->nxdomain ? "no such domain" : "no records");
        return DNS_NOTFOUND;
    }
    snprintf(err, len, "lookup of %s failed (rcode %d)", name, (*res)->rcode);
    return DNS_TEMPFAIL;
}

/* Wire-format name (as libunbound hands it over, uncompressed) to text. */
int dns_wire_name(const unsigned char *p, size_t n, char *out, size_t len)
{
    size_t o = 0, i = 0;
    while (i < n && p[i]) {
        size_t l = p[i++];
        if (l > 63 || i + l > n || o + l + 2 > len)
            return -1;
        if (o)
            out[o++] = '.';
        for (size_t k = 0; k < l; k++) {
            unsigned char ch = p[i + k];
            out[o++] = (ch > 0x20 && ch < 0x7f) ? (char)ch : '?';
        }
        i += l;
    }
    out[o] = '\0';
    return 0;
}

static int cmp_pref(const void *a, const void *b)
{
    return ((const struct mx_host *)a)->pref - ((const struct mx_host *)b)->pref;
}

enum dns_status dns_mx(const char *domain, struct mx_host *out, int max, int *count,
                       enum dns_sec *sec, char *err, size_t errlen)
{
    struct ub_result *res = NULL;
    *count = 0;
    enum dns_status st = query(domain, RR_MX, &res, sec, err, errlen);
    if (st == DNS_NOTFOUND && res && !res->nxdomain) {
        /* No MX: the domain itself, if it has an address (RFC 5321 5.1). */
        ub_resolve_free(res);
        str_copy(out[0].name, domain, sizeof out[0].name);
        out[0].pref = 0;
        *count = 1;
        return DNS_OK;
    }
    if (st != DNS_OK) {
        ub_resolve_free(res);
        return st;
    }
    for (int i = 0; res->data[i] && *count < max; i++) {
        if (res->len[i] < 3)
            continue;
        const unsigned char *d = (const unsigned char *)res->data[i];
        struct mx_host *h = &out[*count];
        h->pref = (d[0] << 8) | d[1];
        if (dns_wire_name(d + 2, (size_t)res->len[i] - 2, h->name, sizeof h->name) == 0)
            (*count)++;
    }
    ub_resolve_free(res);
    if (*count == 1 && out[0].name[0] == '\0') {
        snprintf(err, errlen, "%s does not accept mail (null MX)", domain);
        *count = 0;
        return DNS_NOTFOUND;
    }
    qsort(out, (size_t)*count, sizeof *out, cmp_pref);
    return *count ? DNS_OK : DNS_NOTFOUND;
}

static void add_addr(struct sockaddr_storage *out, int max, int *count, int family,
                     const void *addr, int port)
{
    if (*count < max)
        net_sockaddr_raw(&out[(*count)++], family, addr, port);
}

int dns_literal(const char *text, int port, struct sockaddr_storage *out)
{
    char buf[80];
    size_t n = strlen(text);
    if (n < 3 || text[0] != '[' || text[n - 1] != ']' || n - 2 >= sizeof buf)
        return -1;
    memcpy(buf, text + 1, n - 2);
    buf[n - 2] = '\0';
    const char *a = str_iprefix(buf, "IPv6:") ? buf + 5 : buf;
    unsigned char bin[16];
    int count = 0;
    if (inet_pton(AF_INET, a, bin) == 1)
        add_addr(out, 1, &count, AF_INET, bin, port);
    else if (inet_pton(AF_INET6, a, bin) == 1)
        add_addr(out, 1, &count, AF_INET6, bin, port);
    return count ? 0 : -1;
}

/* The weaker of two statuses, for an answer made of two lookups. */
static enum dns_sec weaker(enum dns_sec a, enum dns_sec b)
{
    static const int rank[] = {[DNS_SEC_BOGUS] = 0, [DNS_SEC_INDETERMINATE] = 1,
                               [DNS_SEC_INSECURE] = 2, [DNS_SEC_SECURE] = 3};
    return rank[a] <= rank[b] ? a : b;
}

/* Note the name a CNAME chain led to (libunbound writes it with a dot). */
static void note_canon(const struct ub_result *res, const char *host, char *canon, size_t len)
{
    if (canon[0] || res == NULL || res->canonname == NULL)
        return;
    char name[DNS_NAME_MAX];
    str_copy(name, res->canonname, sizeof name);
    size_t n = strlen(name);
    if (n > 1 && name[n - 1] == '.')
        name[n - 1] = '\0';
    if (!str_ieq(name, host))
        str_copy(canon, name, len);
}

enum dns_status dns_addrs(const char *host, int port, struct sockaddr_storage *out, int max,
                          int *count, struct dns_hostinfo *info, char *err, size_t errlen)
{
    *count = 0;
    /* An address literal names no DNS data: nothing DNSSEC can vouch for. */
    info->sec = DNS_SEC_INDETERMINATE;
    info->canon[0] = '\0';
    enum dns_sec *sec = &info->sec;
    if (dns_literal(host, port, out) == 0) {
        *count = 1;
        return DNS_OK;
    }
    unsigned char bin[16];
    if (inet_pton(AF_INET, host, bin) == 1) {
        add_addr(out, max, count, AF_INET, bin, port);
        return DNS_OK;
    }
    if (inet_pton(AF_INET6, host, bin) == 1) {
        add_addr(out, max, count, AF_INET6, bin, port);
        return DNS_OK;
    }
    enum dns_status worst = DNS_NOTFOUND;
    static const int types[] = {RR_A, RR_AAAA};
    *sec = DNS_SEC_SECURE;
    for (int t = 0; t < 2; t++) {
        struct ub_result *res = NULL;
        enum dns_sec s;
        char why[300];
        enum dns_status st = query(host, types[t], &res, &s, why, sizeof why);
        /* A failed (or bogus) half adds no address, so it has no say in the
         * status of those that are used: a forged AAAA RRset must not make
         * a host with a secure A RRset look insecure (no DANE). */
        if (st != DNS_TEMPFAIL)
            *sec = weaker(*sec, s);
        if (st == DNS_OK)
            note_canon(res, host, info->canon, sizeof info->canon);
        /* The first failure is the one to report (a bogus A RRset, say,
         * not the AAAA query's "no records" after it). */
        if (st == DNS_TEMPFAIL && worst != DNS_TEMPFAIL)
            str_copy(err, why, errlen);
        if (st == DNS_TEMPFAIL)
            worst = DNS_TEMPFAIL;
        for (int i = 0; st == DNS_OK && res->data[i]; i++) {
            if (types[t] == RR_A && res->len[i] == 4)
                add_addr(out, max, count, AF_INET, res->data[i], port);
            else if (types[t] == RR_AAAA && res->len[i] == 16)
                add_addr(out, max, count, AF_INET6, res->data[i], port);
        }
        ub_resolve_free(res);
    }
    if (*count)
        return DNS_OK;
    if (worst == DNS_NOTFOUND)
        snprintf(err, errlen, "%s: no address", host);
    return worst;
}

int dns_tlsa_parse(const unsigned char *d, size_t n, struct tlsa_rr *rr)
{
    rr->data = NULL;
    if (n < 4) /* RFC 6698 2.1: three octets and some association data */
        return -1;
    rr->usage = d[0];
    rr->selector = d[1];
    rr->mtype = d[2];
    rr->len = n - 3;
    rr->data = malloc(rr->len);
    if (rr->data == NULL)
        return -1;
    memcpy(rr->data, d + 3, rr->len);
    return 0;
}

enum dns_status dns_tlsa(const char *host, int port, struct tlsa_rr *out, int max, int *count,
                         enum dns_sec *sec, char *err, size_t errlen)
{
    char name[DNS_NAME_MAX + 16];
    struct ub_result *res = NULL;
    *count = 0;
    snprintf(name, sizeof name, "_%d._tcp.%s", port, host);
    enum dns_status st = query(name, RR_TLSA, &res, sec, err, errlen);
    for (int i = 0; st == DNS_OK && res->data[i] && *count < max; i++)
        if (res->len[i] > 0 &&
            dns_tlsa_parse((const unsigned char *)res->data[i], (size_t)res->len[i],
                           &out[*count]) == 0)
            (*count)++;
    ub_resolve_free(res);
    if (st == DNS_OK && *count == 0) {
        snprintf(err, errlen, "%s: malformed TLSA records", name);
        return DNS_TEMPFAIL;
    }
    return st;
}

void dns_tlsa_free(struct tlsa_rr *rr, int count)
{
    for (int i = 0; i < count; i++) {
        free(rr[i].data);
        rr[i].data = NULL;
    }
}
