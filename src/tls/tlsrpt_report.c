/* tlsrpt_report: aggregation, the RFC 8460 JSON, the TXT record syntax. */
#include "tls/tlsrpt_report.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/strutil.h"

struct detail {
    char result[40], sendip[64], mxhost[256], recvip[64], reason[300];
    long count;
};

struct policy {
    char domain[256], ptype[20], pstrings[4096], mxhost[256];
    long ok, failed;
    struct detail *d;
    int nd, capd;
};

struct tlsrpt_agg {
    struct policy *p; /* sorted by domain */
    int np, cap;
};

struct tlsrpt_agg *tlsrpt_agg_new(void)
{
    return calloc(1, sizeof(struct tlsrpt_agg));
}

void tlsrpt_agg_free(struct tlsrpt_agg *a)
{
    if (a == NULL)
        return;
    for (int i = 0; i < a->np; i++)
        free(a->p[i].d);
    free(a->p);
    free(a);
}

static int grow(void **arr, int *cap, int need, size_t size)
{
    if (need <= *cap)
        return 0;
    int n = *cap ? *cap * 2 : 8;
    void *p = realloc(*arr, (size_t)n * size);
    if (p == NULL)
        return -1;
    *arr = p;
    *cap = n;
    return 0;
}

/* The policy r belongs to, made if new (kept sorted by domain). */
static struct policy *policy_of(struct tlsrpt_agg *a, const struct tlsrpt_result *r)
{
    /* TLSA records are per MX host: the host is part of a tlsa policy. */
    const char *mx = strcmp(r->ptype, "tlsa") == 0 ? r->mxhost : "";
    int at = a->np;
    for (int i = 0; i < a->np; i++) {
        struct policy *p = &a->p[i];
        int c = strcmp(p->domain, r->domain);
        if (c == 0 && strcmp(p->ptype, r->ptype) == 0 && strcmp(p->pstrings, r->pstrings) == 0 &&
            strcmp(p->mxhost, mx) == 0)
            return p;
        if (c > 0 && at == a->np)
            at = i;
    }
    if (grow((void **)&a->p, &a->cap, a->np + 1, sizeof *a->p) < 0)
        return NULL;
    memmove(&a->p[at + 1], &a->p[at], sizeof *a->p * (size_t)(a->np - at));
    a->np++;
    struct policy *p = &a->p[at];
    memset(p, 0, sizeof *p);
    str_copy(p->domain, r->domain, sizeof p->domain);
    str_copy(p->ptype, r->ptype, sizeof p->ptype);
    str_copy(p->pstrings, r->pstrings, sizeof p->pstrings);
    str_copy(p->mxhost, mx, sizeof p->mxhost);
    return p;
}

int tlsrpt_agg_add(struct tlsrpt_agg *a, const struct tlsrpt_result *r)
{
    struct policy *p = policy_of(a, r);
    if (p == NULL)
        return -1;
    if (strcmp(r->result, TLSRPT_SUCCESS) == 0) {
        p->ok++;
        return 0;
    }
    p->failed++;
    for (int i = 0; i < p->nd; i++) {
        struct detail *d = &p->d[i];
        if (!strcmp(d->result, r->result) && !strcmp(d->sendip, r->sendip) &&
            !strcmp(d->mxhost, r->mxhost) && !strcmp(d->recvip, r->recvip) &&
            !strcmp(d->reason, r->reason)) {
            d->count++;
            return 0;
        }
    }
    if (grow((void **)&p->d, &p->capd, p->nd + 1, sizeof *p->d) < 0)
        return -1;
    struct detail *d = &p->d[p->nd++];
    memset(d, 0, sizeof *d);
    str_copy(d->result, r->result, sizeof d->result);
    str_copy(d->sendip, r->sendip, sizeof d->sendip);
    str_copy(d->mxhost, r->mxhost, sizeof d->mxhost);
    str_copy(d->recvip, r->recvip, sizeof d->recvip);
    str_copy(d->reason, r->reason, sizeof d->reason);
    d->count = 1;
    return 0;
}

/* Domains are runs of policies (sorted): the first policy of domain i. */
static int domain_start(const struct tlsrpt_agg *a, int i)
{
    for (int k = 0, n = -1; k < a->np; k++) {
        if (k == 0 || strcmp(a->p[k].domain, a->p[k - 1].domain) != 0)
            n++;
        if (n == i)
            return k;
    }
    return -1;
}

int tlsrpt_agg_ndomains(const struct tlsrpt_agg *a)
{
    int n = 0;
    for (int k = 0; k < a->np; k++)
        n += k == 0 || strcmp(a->p[k].domain, a->p[k - 1].domain) != 0;
    return n;
}

const char *tlsrpt_agg_domain(const struct tlsrpt_agg *a, int i)
{
    int k = domain_start(a, i);
    return k < 0 ? NULL : a->p[k].domain;
}

void tlsrpt_agg_print(const struct tlsrpt_agg *a, int i, FILE *out)
{
    int k = domain_start(a, i);
    for (int j = k; k >= 0 && j < a->np && strcmp(a->p[j].domain, a->p[k].domain) == 0; j++) {
        const struct policy *p = &a->p[j];
        fprintf(out, "%s policy=%s%s%s successful=%ld failed=%ld", p->domain, p->ptype,
                p->mxhost[0] ? " mx=" : "", p->mxhost, p->ok, p->failed);
        /* per result type, in the order first seen */
        for (int d = 0; d < p->nd; d++) {
            int first = 1;
            long n = 0;
            for (int e = 0; e < p->nd; e++) {
                if (strcmp(p->d[e].result, p->d[d].result) == 0) {
                    first &= e >= d;
                    n += p->d[e].count;
                }
            }
            if (first)
                fprintf(out, " %s=%ld", p->d[d].result, n);
        }
        fputc('\n', out);
    }
}

/* ---- JSON ----------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s (no overlongs, surrogates or
 * code points past U+10FFFF), or 0. */
static int utf8_len(const unsigned char *s)
{
    int n = s[0] >= 0xf0 && s[0] <= 0xf4 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 ? 2 : 0;
    if (n == 0 || s[0] > 0xf4)
        return 0;
    for (int i = 1; i < n; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] >= 0xa0) ||
        (s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] >= 0x90))
        return 0;
    return n;
}

int tlsrpt_json_string(struct buf *out, const char *s)
{
    int bad = buf_puts(out, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p && !bad; p++) {
        if (*p == '"' || *p == '\\')
            bad = buf_printf(out, "\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f)
            bad = buf_printf(out, "\\u%04x", *p);
        else if (*p < 0x80)
            bad = buf_append(out, p, 1);
        else {
            int n = utf8_len(p);
            bad = n ? buf_append(out, p, (size_t)n) : buf_puts(out, "\\ufffd");
            p += n ? n - 1 : 0;
        }
    }
    return bad || buf_puts(out, "\"") ? -1 : 0;
}

static int json_time(struct buf *out, time_t t)
{
    char s[32];
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(s, sizeof s, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return tlsrpt_json_string(out, s);
}

/* A '\n'-separated list as a JSON array of strings; with prefix, only the
 * items that start with it, without it ("mx: "). */
static int json_list(struct buf *out, const char *list, const char *prefix)
{
    int bad = buf_puts(out, "["), n = 0;
    size_t pl = prefix ? strlen(prefix) : 0;
    const char *s = list;
    while (*s && !bad) {
        const char *e = strchr(s, '\n');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        char item[4096];
        snprintf(item, sizeof item, "%.*s", (int)len, s);
        if (!prefix || strncmp(item, prefix, pl) == 0) {
            bad = (n++ && buf_puts(out, ",")) || tlsrpt_json_string(out, item + pl);
        }
        s += len + (e ? 1 : 0);
    }
    return bad || buf_puts(out, "]") ? -1 : 0;
}

static int json_detail(struct buf *out, const struct detail *d)
{
    int bad = buf_puts(out, "{\"result-type\":") || tlsrpt_json_string(out, d->result);
    if (d->sendip[0])
        bad = bad || buf_puts(out, ",\"sending-mta-ip\":") || tlsrpt_json_string(out, d->sendip);
    if (d->mxhost[0])
        bad = bad || buf_puts(out, ",\"receiving-mx-hostname\":") ||
              tlsrpt_json_string(out, d->mxhost);
    if (d->recvip[0])
        bad = bad || buf_puts(out, ",\"receiving-ip\":") || tlsrpt_json_string(out, d->recvip);
    if (d->reason[0])
        bad = bad || buf_puts(out, ",\"failure-reason-code\":") ||
              tlsrpt_json_string(out, d->reason);
    return bad || buf_printf(out, ",\"failed-session-count\":%ld}", d->count) ? -1 : 0;
}

static int json_policy(struct buf *out, const struct policy *p)
{
    int bad = buf_puts(out, "{\"policy\":{\"policy-type\":") ||
              tlsrpt_json_string(out, p->ptype) || buf_puts(out, ",\"policy-string\":") ||
              json_list(out, p->pstrings, NULL) || buf_puts(out, ",\"policy-domain\":") ||
              tlsrpt_json_string(out, p->domain);
    if (strcmp(p->ptype, "sts") == 0 && p->pstrings[0])
        bad = bad || buf_puts(out, ",\"mx-host\":") || json_list(out, p->pstrings, "mx: ");
    else if (p->mxhost[0])
        bad = bad || buf_puts(out, ",\"mx-host\":") || json_list(out, p->mxhost, NULL);
    bad = bad || buf_printf(out, "},\"summary\":{\"total-successful-session-count\":%ld,"
                                 "\"total-failure-session-count\":%ld},\"failure-details\":[",
                            p->ok, p->failed);
    for (int i = 0; i < p->nd && !bad; i++)
        bad = (i && buf_puts(out, ",")) || json_detail(out, &p->d[i]);
    return bad || buf_puts(out, "]}") ? -1 : 0;
}

int tlsrpt_json(const struct tlsrpt_agg *a, int i, const struct tlsrpt_meta *m, struct buf *out)
{
    int k = domain_start(a, i);
    if (k < 0)
        return -1;
    int bad = buf_puts(out, "{\"organization-name\":") ||
              tlsrpt_json_string(out, m->organization) ||
              buf_puts(out, ",\"date-range\":{\"start-datetime\":") ||
              json_time(out, m->start) || buf_puts(out, ",\"end-datetime\":") ||
              json_time(out, m->end) || buf_puts(out, "},\"contact-info\":") ||
              tlsrpt_json_string(out, m->contact) || buf_puts(out, ",\"report-id\":") ||
              tlsrpt_json_string(out, m->report_id) || buf_puts(out, ",\"policies\":[");
    for (int j = k; !bad && j < a->np && strcmp(a->p[j].domain, a->p[k].domain) == 0; j++)
        bad = (j > k && buf_puts(out, ",\n")) || json_policy(out, &a->p[j]);
    return bad || buf_puts(out, "]}\n") ? -1 : 0;
}

/* ---- the _smtp._tls record ------------------------------------------------ */

static const char *skip_wsp(const char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    return s;
}

/* The rua= of one record that begins with v=TLSRPTv1 (-1: it does not;
 * 0: it has no rua=; 1 found). */
static int one_record(const char *rec, char *rua, size_t len)
{
    const char *v = "v=TLSRPTv1";
    if (strncmp(rec, v, strlen(v)) != 0 || *skip_wsp(rec + strlen(v)) != ';')
        return -1;
    int found = 0;
    const char *s = skip_wsp(rec + strlen(v)) + 1;
    while (*s) {
        s = skip_wsp(s);
        const char *e = strchr(s, ';');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        if (n > 4 && strncmp(s, "rua=", 4) == 0 && !found && n - 4 < len) {
            snprintf(rua, len, "%.*s", (int)(n - 4), s + 4);
            str_trim(rua);
            found = *rua != '\0';
        }
        s += n + (e ? 1 : 0);
    }
    return found;
}

int tlsrpt_txt_rua(const char *records, char *rua, size_t len)
{
    int versioned = 0, found = 0;
    char rec[2048], tmp[2048];
    for (const char *s = records; *s;) {
        const char *e = strchr(s, '\n');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        snprintf(rec, sizeof rec, "%.*s", (int)n, s);
        int r = one_record(rec, tmp, sizeof tmp);
        versioned += r >= 0;
        if (r > 0) {
            found = 1;
            str_copy(rua, tmp, len);
        }
        s += n + (e ? 1 : 0);
    }
    return versioned == 1 && found;
}

static int hexdigit(int c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* mailto: address: percent-decoded, no query part, one '@', and nothing
 * that could break an SMTP command or a header (controls, space, <>). */
static int parse_mailto(const char *s, struct tlsrpt_dest *d)
{
    size_t o = 0;
    for (; *s && *s != '?'; s++) {
        int c = (unsigned char)*s;
        if (c == '%') {
            int h = hexdigit(s[1]), l = h < 0 ? -1 : hexdigit(s[2]);
            if (l < 0)
                return -1;
            c = h * 16 + l;
            s += 2;
        }
        if (c <= 0x20 || c == 0x7f || c == '<' || c == '>' || c == '"' || c == ',' ||
            o + 1 >= sizeof d->addr)
            return -1;
        d->addr[o++] = (char)c;
    }
    d->addr[o] = '\0';
    const char *at = strchr(d->addr, '@');
    return at && at != d->addr && at[1] && !strchr(at + 1, '@') ? 0 : -1;
}

/* https://HOST[:PORT][/PATH]: a DNS name (no userinfo, no IP literal
 * brackets), a port 1-65535, a path of visible characters. */
static int parse_https(const char *s, struct tlsrpt_dest *d)
{
    size_t n = strcspn(s, ":/?#");
    if (n == 0 || n >= sizeof d->host)
        return -1;
    snprintf(d->host, sizeof d->host, "%.*s", (int)n, s);
    for (const char *h = d->host; *h; h++)
        if (!((*h >= 'a' && *h <= 'z') || (*h >= 'A' && *h <= 'Z') || (*h >= '0' && *h <= '9') ||
              *h == '-' || *h == '.'))
            return -1;
    s += n;
    d->port = 443;
    if (*s == ':') {
        char *end;
        long port = strtol(s + 1, &end, 10);
        if (end == s + 1 || port < 1 || port > 65535)
            return -1;
        d->port = (int)port;
        s = end;
    }
    if (*s == '\0')
        s = "/";
    if (*s != '/' || strlen(s) >= sizeof d->path)
        return -1;
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
            return -1;
    str_copy(d->path, s, sizeof d->path);
    return 0;
}

int tlsrpt_dest_parse(const char *uri, struct tlsrpt_dest *d)
{
    memset(d, 0, sizeof *d);
    if (strncasecmp(uri, "mailto:", 7) == 0)
        return parse_mailto(uri + 7, d);
    if (strncasecmp(uri, "https://", 8) == 0) {
        d->https = 1;
        return parse_https(uri + 8, d);
    }
    return -1;
}
