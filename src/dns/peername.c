/* peername: asynchronous PTR lookup with forward confirmation. */
#include "dns/peername.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unbound.h>

#include "dns/dns.h"
#include "util/log.h"
#include "util/strutil.h"

#define RCODE_SERVFAIL 2

struct peername_lookup {
    int family;                  /* AF_INET or AF_INET6 (a mapped IPv4 is IPv4) */
    unsigned char addr[16];
    char addr_text[64];
    int async_id;                /* the query in flight; 0 none */
    int failed;                  /* the timer delivers a resolver failure */
    struct event *timer;
    peername_done_fn done;
    void *arg;
    struct peername_result res;
};

static struct {
    struct event_base *base;
    struct ub_ctx *ctx;
    struct event *readable;      /* ub_fd(ctx) */
    int broken;                  /* setup failed once: do not retry each time */
} PN;

/* ---- pure helpers ------------------------------------------------------- */

void peername_result_unknown(struct peername_result *res, enum peername_status status)
{
    str_copy(res->name, PEERNAME_UNKNOWN, sizeof res->name);
    str_copy(res->reverse_name, PEERNAME_UNKNOWN, sizeof res->reverse_name);
    res->name_status = res->reverse_status = status;
    res->warning[0] = '\0';
}

/* The address as 4 or 16 bytes; an IPv4-mapped IPv6 address is IPv4. */
static int address_bytes(const struct sockaddr *sa, unsigned char *out, int *family)
{
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (sa->sa_family == AF_INET) {
        memcpy(out, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        *family = AF_INET;
        return 0;
    }
    if (sa->sa_family != AF_INET6)
        return -1;
    const unsigned char *a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
    if (memcmp(a, mapped, sizeof mapped) == 0) {
        memcpy(out, a + 12, 4);
        *family = AF_INET;
    } else {
        memcpy(out, a, 16);
        *family = AF_INET6;
    }
    return 0;
}

static void reverse_name_of(int family, const unsigned char *a, char *out, size_t len)
{
    if (family == AF_INET) {
        snprintf(out, len, "%u.%u.%u.%u.in-addr.arpa.", a[3], a[2], a[1], a[0]);
        return;
    }
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (int i = 15; i >= 0 && o + 5 < len; i--) {
        out[o++] = hex[a[i] & 0xf];
        out[o++] = '.';
        out[o++] = hex[a[i] >> 4];
        out[o++] = '.';
    }
    out[o] = '\0';
    strncat(out, "ip6.arpa.", len - o - 1);
}

int peername_reverse_query(const struct sockaddr *sa, char *out, size_t len)
{
    unsigned char a[16];
    int family;
    if (len < 80 || address_bytes(sa, a, &family) < 0)
        return -1;
    reverse_name_of(family, a, out, len);
    return 0;
}

int peername_valid_hostname(const char *name)
{
    size_t label = 0, n = strlen(name);
    int only_numeric = 1;
    if (n == 0 || n > 253)
        return 0;
    for (const char *p = name; *p; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch == '.') {
            if (label == 0)
                return 0;
            label = 0;
            continue;
        }
        if (!isalnum(ch) && ch != '-' && ch != '_')
            return 0;
        if (!isdigit(ch))
            only_numeric = 0;
        if (++label > 63)
            return 0;
    }
    /* "192.0.2.1" in a PTR would pass for an address in access tables. */
    return label > 0 && !only_numeric;
}

/* ---- the resolver ------------------------------------------------------- */

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    ub_process(PN.ctx); /* runs the callbacks of finished queries */
}

/* Created on first use, in the worker (libunbound's thread must not be
 * inherited through fork). */
static struct ub_ctx *resolver(void)
{
    if (PN.ctx || PN.broken)
        return PN.ctx;
    char err[256];
    PN.ctx = dns_resolver_new(1, 0, err, sizeof err);
    if (PN.ctx == NULL) {
        log_warn(NULL, "client name lookups: %s", err);
        PN.broken = 1;
        return NULL;
    }
    PN.readable = event_new(PN.base, ub_fd(PN.ctx), EV_READ | EV_PERSIST, on_readable, NULL);
    if (PN.readable == NULL || event_add(PN.readable, NULL) < 0) {
        log_warn(NULL, "client name lookups: cannot watch the resolver");
        peername_shutdown();
        PN.broken = 1;
    }
    return PN.ctx;
}

void peername_set_base(struct event_base *base)
{
    PN.base = base;
}

void peername_shutdown(void)
{
    if (PN.readable)
        event_free(PN.readable);
    PN.readable = NULL;
    if (PN.ctx)
        ub_ctx_delete(PN.ctx);
    PN.ctx = NULL;
}

/* ---- one lookup ----------------------------------------------------------- */

static void finish(struct peername_lookup *lk)
{
    peername_done_fn done = lk->done;
    void *arg = lk->arg;
    struct peername_result res = lk->res;
    event_free(lk->timer);
    free(lk);
    done(arg, &res);
}

/* Neither a name nor data: NXDOMAIN and NODATA are answers (PERM); any
 * other rcode (SERVFAIL, REFUSED) or a resolver error is TEMP. */
static enum peername_status classify(int err, const struct ub_result *r)
{
    if (err != 0 || r == NULL)
        return PEERNAME_TEMP;
    if (r->havedata)
        return PEERNAME_OK;
    if (r->nxdomain || r->rcode == 0)
        return PEERNAME_PERM;
    return PEERNAME_TEMP;
}

static void on_forward(void *arg, int err, struct ub_result *r);

/* The first PTR name, or PERM when it is not a host name. */
static enum peername_status take_ptr(struct peername_lookup *lk, const struct ub_result *r)
{
    char name[256];
    if (r->len[0] <= 0 ||
        dns_wire_name((const unsigned char *)r->data[0], (size_t)r->len[0], name,
                      sizeof name) < 0 || !peername_valid_hostname(name)) {
        snprintf(lk->res.warning, sizeof lk->res.warning,
                 "%s: the PTR record is not a valid host name", lk->addr_text);
        return PEERNAME_PERM;
    }
    str_copy(lk->res.reverse_name, name, sizeof lk->res.reverse_name);
    return PEERNAME_OK;
}

static void on_ptr(void *arg, int err, struct ub_result *r)
{
    struct peername_lookup *lk = arg;
    lk->async_id = 0;
    enum peername_status st = classify(err, r);
    if (st == PEERNAME_OK)
        st = take_ptr(lk, r);
    ub_resolve_free(r);
    if (st != PEERNAME_OK) {
        lk->res.name_status = lk->res.reverse_status = st;
        finish(lk);
        return;
    }
    lk->res.reverse_status = PEERNAME_OK;
    int rc = ub_resolve_async(PN.ctx, lk->res.reverse_name,
                              lk->family == AF_INET ? RR_A : RR_AAAA, 1, lk, on_forward,
                              &lk->async_id);
    if (rc != 0) {
        lk->res.name_status = PEERNAME_TEMP;
        finish(lk);
    }
}

static int lists_address(const struct peername_lookup *lk, const struct ub_result *r)
{
    int want = lk->family == AF_INET ? 4 : 16;
    for (int i = 0; r->data[i]; i++)
        if (r->len[i] == want && memcmp(r->data[i], lk->addr, (size_t)want) == 0)
            return 1;
    return 0;
}

static void on_forward(void *arg, int err, struct ub_result *r)
{
    struct peername_lookup *lk = arg;
    lk->async_id = 0;
    enum peername_status st = classify(err, r);
    if (st == PEERNAME_OK && !lists_address(lk, r))
        st = PEERNAME_PERM;
    ub_resolve_free(r);
    lk->res.name_status = st;
    if (st == PEERNAME_OK)
        str_copy(lk->res.name, lk->res.reverse_name, sizeof lk->res.name);
    else /* Postfix's words */
        snprintf(lk->res.warning, sizeof lk->res.warning,
                 "hostname %s does not resolve to address %s%s", lk->res.reverse_name,
                 lk->addr_text, st == PEERNAME_TEMP ? ": temporary failure in name resolution"
                                                    : "");
    finish(lk);
}

/* The timeout, or a failure found in peername_start() delivered now. */
static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct peername_lookup *lk = arg;
    if (lk->async_id)
        ub_cancel(PN.ctx, lk->async_id);
    lk->async_id = 0;
    if (!lk->failed)
        snprintf(lk->res.warning, sizeof lk->res.warning,
                 "%s: client name lookup timed out", lk->addr_text);
    if (lk->res.reverse_status != PEERNAME_OK)
        lk->res.reverse_status = PEERNAME_TEMP;
    lk->res.name_status = PEERNAME_TEMP;
    finish(lk);
}

struct peername_lookup *peername_start(const struct sockaddr *sa, long timeout_seconds,
                                       peername_done_fn done, void *arg)
{
    struct peername_lookup *lk = calloc(1, sizeof *lk);
    if (lk == NULL)
        return NULL;
    lk->done = done;
    lk->arg = arg;
    peername_result_unknown(&lk->res, PEERNAME_TEMP);
    lk->timer = evtimer_new(PN.base, on_timer, lk);
    if (lk->timer == NULL) {
        free(lk);
        return NULL;
    }
    char query[128];
    struct timeval tv = {timeout_seconds, 0};
    if (address_bytes(sa, lk->addr, &lk->family) < 0 || resolver() == NULL) {
        lk->failed = 1;
    } else {
        inet_ntop(lk->family, lk->addr, lk->addr_text, sizeof lk->addr_text);
        reverse_name_of(lk->family, lk->addr, query, sizeof query);
        int rc = ub_resolve_async(PN.ctx, query, RR_PTR, 1, lk, on_ptr, &lk->async_id);
        if (rc != 0) {
            snprintf(lk->res.warning, sizeof lk->res.warning, "%s: client name lookup: %s",
                     lk->addr_text, ub_strerror(rc));
            lk->failed = 1;
        }
    }
    if (lk->failed)
        tv.tv_sec = 0; /* deliver TEMP from the loop, as promised */
    evtimer_add(lk->timer, &tv);
    return lk;
}

void peername_cancel(struct peername_lookup *lk)
{
    if (lk == NULL)
        return;
    if (lk->async_id)
        ub_cancel(PN.ctx, lk->async_id);
    event_free(lk->timer);
    free(lk);
}
