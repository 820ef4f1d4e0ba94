/* dnswait: deadline-bounded lookups through libunbound's asynchronous API. */
#include "dns/dnswait.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unbound.h>

#include "util/netaddr.h"

static struct ub_ctx *actx;

long long dnswait_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct pending {
    int done;
    int err;
    struct ub_result *res;
};

static void on_result(void *arg, int err, struct ub_result *res)
{
    struct pending *p = arg;
    p->done = 1;
    p->err = err;
    p->res = res;
}

/* One query, answered or cancelled by the deadline. */
static enum dns_status resolve(const char *name, int type, long long deadline,
                               struct ub_result **res, char *err, size_t len)
{
    /* Validating as every delivery lookup does: a bogus answer is never used. */
    if (actx == NULL && (actx = dns_resolver_new(1, 1, err, len)) == NULL)
        return DNS_TEMPFAIL;
    struct pending p = {0, 0, NULL};
    int id = 0, r = ub_resolve_async(actx, name, type, 1, &p, on_result, &id);
    if (r != 0) {
        snprintf(err, len, "lookup of %s: %s", name, ub_strerror(r));
        return DNS_TEMPFAIL;
    }
    while (!p.done) {
        long long left = deadline - dnswait_now_ms();
        struct pollfd pfd = {ub_fd(actx), POLLIN, 0};
        if (left <= 0 || (poll(&pfd, 1, (int)left) > 0 && ub_process(actx) != 0 && !p.done)) {
            ub_cancel(actx, id);
            snprintf(err, len, "lookup of %s: %s", name, left <= 0 ? "timed out"
                                                                   : "resolver failed");
            return DNS_TEMPFAIL;
        }
    }
    *res = p.res;
    if (p.err != 0) {
        snprintf(err, len, "lookup of %s: %s", name, ub_strerror(p.err));
        return DNS_TEMPFAIL;
    }
    if (p.res->bogus) {
        snprintf(err, len, "lookup of %s: DNSSEC validation failed (bogus)", name);
        return DNS_TEMPFAIL;
    }
    if (p.res->havedata)
        return DNS_OK;
    if (p.res->nxdomain || p.res->rcode == 0) {
        snprintf(err, len, "%s: %s", name, p.res->nxdomain ? "no such domain" : "no records");
        return DNS_NOTFOUND;
    }
    snprintf(err, len, "lookup of %s failed (rcode %d)", name, p.res->rcode);
    return DNS_TEMPFAIL;
}

/* One TXT record's character-strings, joined. -1 if malformed or too long. */
static int txt_record(const unsigned char *d, int n, char *out, size_t len)
{
    size_t o = 0;
    for (int i = 0; i < n;) {
        int l = d[i++];
        if (i + l > n || o + (size_t)l + 1 >= len)
            return -1;
        memcpy(out + o, d + i, (size_t)l);
        o += (size_t)l;
        i += l;
    }
    out[o] = '\0';
    return memchr(out, '\0', o) || memchr(out, '\n', o) ? -1 : (int)o;
}

enum dns_status dnswait_txt(const char *name, long long deadline, char *out, size_t outlen,
                            int *count, char *err, size_t errlen)
{
    struct ub_result *res = NULL;
    *count = 0;
    out[0] = '\0';
    enum dns_status st = resolve(name, RR_TXT, deadline, &res, err, errlen);
    size_t used = 0;
    for (int i = 0; st == DNS_OK && res->data[i]; i++) {
        int n = txt_record((const unsigned char *)res->data[i], res->len[i], out + used,
                           outlen - used);
        if (n < 0 || used + (size_t)n + 2 > outlen) {
            out[used] = '\0';
            continue;
        }
        used += (size_t)n;
        out[used++] = '\n';
        out[used] = '\0';
        (*count)++;
    }
    if (res)
        ub_resolve_free(res);
    return st;
}


enum dns_status dnswait_addrs(const char *host, int port, long long deadline,
                              struct sockaddr_storage *out, int max, int *count, char *err,
                              size_t errlen)
{
    static const int types[] = {RR_A, RR_AAAA};
    enum dns_status worst = DNS_NOTFOUND;
    *count = 0;
    for (int t = 0; t < 2; t++) {
        struct ub_result *res = NULL;
        enum dns_status st = resolve(host, types[t], deadline, &res, err, errlen);
        if (st == DNS_TEMPFAIL)
            worst = DNS_TEMPFAIL;
        for (int i = 0; st == DNS_OK && res->data[i] && *count < max; i++) {
            int want = types[t] == RR_A ? 4 : 16;
            if (res->len[i] == want)
                net_sockaddr_raw(&out[(*count)++], want == 4 ? AF_INET : AF_INET6,
                                 res->data[i], port);
        }
        if (res)
            ub_resolve_free(res);
    }
    if (*count)
        return DNS_OK;
    if (worst == DNS_NOTFOUND)
        snprintf(err, errlen, "%s: no address", host);
    return worst;
}
