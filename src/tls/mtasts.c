/* mtasts: policy discovery (TXT, cache, fetch) and its use by the SMTP
 * client; see mtasts.h for the rules and where the fetch runs. */
#include "tls/mtasts.h"

#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dns/dnswait.h"
#include "tls/mtasts_cache.h"
#include "tls/mtasts_fetch.h"
#include "tls/tls.h"
#include "tls/tls_client.h"
#include "tls/tls_policy.h"
#include "tls/tlsrpt.h"
#include "util/log.h"
#include "util/strutil.h"

/* The WebPKI as keypost sees it (the system store, or smtp_mta_sts_CAfile
 * instead): for the policy fetch and for MX certificates under a policy.
 * Not smtp_tls_CAfile, which may hold a private clique's CA. */
static X509_STORE *store;
static SSL_CTX *fetch_ctx;

static void free_contexts(void)
{
    SSL_CTX_free(fetch_ctx);
    X509_STORE_free(store);
    fetch_ctx = NULL;
    store = NULL;
}

static int make_contexts(char *err, size_t len)
{
    const char *cafile = conf_str(P_SMTP_MTA_STS_CAFILE);
    store = X509_STORE_new();
    fetch_ctx = SSL_CTX_new(TLS_client_method());
    if (store == NULL || fetch_ctx == NULL ||
        (*cafile ? X509_STORE_load_file(store, cafile) : X509_STORE_set_default_paths(store)) !=
            1) {
        tls_error_string(err, len);
        free_contexts();
        return -1;
    }
    SSL_CTX_set1_cert_store(fetch_ctx, store);
    SSL_CTX_set_min_proto_version(fetch_ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(fetch_ctx, SSL_VERIFY_PEER, NULL);
    return 0;
}

int mtasts_init(struct conf_errors *errs)
{
    free_contexts();
    if (!conf_bool(P_SMTP_MTA_STS))
        return 0;
    char why[400];
    if (make_contexts(why, sizeof why) < 0) {
        const char *cafile = conf_str(P_SMTP_MTA_STS_CAFILE);
        conf_error(errs, "%s: smtp_mta_sts_CAfile %s: %s", conf_origin(P_SMTP_MTA_STS_CAFILE),
                   *cafile ? cafile : "(the system store)", why);
        return -1;
    }
    return 0;
}

/* ---- discovery ---------------------------------------------------------- */

/* The _mta-sts TXT record's id: 1 found; 0 no record; -1 the lookup failed,
 * or records are malformed (err says which). Records that are not STSv1
 * are ignored; anything but exactly one valid STSv1 record means no
 * record (RFC 8461 3.1). */
static int txt_id(const char *domain, long long deadline, char *id, size_t idlen, char *err,
                  size_t errlen)
{
    char name[300], recs[2048], tmp[MTASTS_ID_MAX + 1];
    int count = 0, valid = 0, bad = 0;
    snprintf(name, sizeof name, "_mta-sts.%s", domain);
    enum dns_status st = dnswait_txt(name, deadline, recs, sizeof recs, &count, err, errlen);
    if (st != DNS_OK)
        return st == DNS_TEMPFAIL ? -1 : 0;
    for (char *save = NULL, *r = strtok_r(recs, "\n", &save); r; r = strtok_r(NULL, "\n", &save)) {
        int v = mtasts_txt_parse(r, tmp, sizeof tmp);
        valid += v > 0;
        bad += v < 0;
        if (v > 0)
            str_copy(id, tmp, idlen);
    }
    if (valid == 1 && bad == 0)
        return 1;
    if (valid + bad == 0)
        return 0;
    snprintf(err, errlen, "%s: %d STSv1 records, %d of them malformed (exactly one valid "
             "record needed)", name, valid + bad, bad);
    return -1;
}

static int fetch_policy(const char *domain, const char *id, long long deadline,
                        struct mtasts_policy *out, char *err, size_t errlen)
{
    char *body = malloc(MTASTS_MAX_BODY + 1);
    size_t n = 0;
    char why[300];
    int r = body ? mtasts_fetch(fetch_ctx, domain, deadline, body, MTASTS_MAX_BODY + 1, &n,
                                err, errlen)
                 : -1;
    /* issue 11: TLSRPT's kinds of failure (RFC 8460 4.3.2.2); the fetch
     * names a certificate failure "...: certificate: ...". */
    if (body == NULL)
        snprintf(err, errlen, "out of memory");
    const char *kind = r < 0 && strstr(err, ": certificate: ") ? "sts-webpki-invalid"
                                                               : "sts-policy-fetch-error";
    if (r == 0 && mtasts_parse(body, n, out, why, sizeof why) < 0) {
        snprintf(err, errlen, "malformed policy at https://mta-sts.%s/.well-known/mta-sts.txt: "
                 "%s", domain, why);
        kind = "sts-policy-invalid";
        r = -1;
    }
    static const struct mtasts_policy no_policy; /* its strings are unknown */
    if (r < 0)
        tlsrpt_sts(&no_policy, domain, "", kind, err);
    if (r == 0) {
        out->fetched = time(NULL);
        str_copy(out->id, id, sizeof out->id);
        str_copy(out->domain, domain, sizeof out->domain);
        if (mtasts_cache_store(domain, id, (long)out->fetched, body, n, why, sizeof why) < 0)
            log_warn(NULL, "MTA-STS: %s", why);
    }
    free(body);
    return r;
}

/* The policy to use for domain now (mode STS_NONE: none). */
static void discover(const char *domain, struct mtasts_policy *out)
{
    long long deadline = dnswait_now_ms() + conf_long(P_SMTP_MTA_STS_TIMEOUT) * 1000;
    struct mtasts_policy cached;
    char err[500], id[MTASTS_ID_MAX + 1] = "";
    int have = mtasts_cache_load(domain, &cached, err, sizeof err);
    if (have < 0)
        log_warn(NULL, "MTA-STS: %s", err);
    int fresh = have > 0 && mtasts_cache_fresh(&cached, (long)time(NULL));
    if (have > 0 && !fresh)
        log_info(NULL, "MTA-STS: cached policy of %s (id %s) expired", domain, cached.id);
    int txt = txt_id(domain, deadline, id, sizeof id, err, sizeof err);
    if (txt > 0 && fresh && strcmp(id, cached.id) == 0) {
        *out = cached;
        return;
    }
    if (txt > 0 && fetch_policy(domain, id, deadline, out, err, sizeof err) == 0)
        return;
    if (txt != 0 || fresh) /* a failure worth a line: the TXT is broken, or a policy was seen */
        log_warn(NULL, "MTA-STS policy of %s: %s; %s", domain, err,
                 fresh ? "keeping the cached policy" : "no policy used (RFC 8461 5.1)");
    if (fresh) {
        *out = cached;
        return;
    }
    memset(out, 0, sizeof *out);
    str_copy(out->domain, domain, sizeof out->domain);
}

/* ---- use ---------------------------------------------------------------- */

int mtasts_level(const struct tls_policy *p, int level)
{
    return p->sts.mode == STS_ENFORCE && (level == TL_NONE || level == TL_MAY) ? TL_ENCRYPT
                                                                                : level;
}

int mtasts_apply(const char *nexthop, struct tls_policy *p, char *why, size_t len)
{
    memset(&p->sts, 0, sizeof p->sts);
    /* fingerprint, verify and secure as the default are the operator's
     * explicit choice for every destination: MTA-STS leaves them alone. */
    if (!conf_bool(P_SMTP_MTA_STS) || (p->level > TL_ENCRYPT && p->level != TL_DANE))
        return 0;
    /* The policy domain as DNS compares it: the cache file is named by it. */
    char domain[256];
    size_t n = str_copy(domain, nexthop, sizeof domain);
    if (n == 0 || n >= sizeof domain || domain[0] == '[')
        return 0;
    if (domain[n - 1] == '.')
        domain[--n] = '\0';
    str_lower(domain);
    if (fetch_ctx == NULL && make_contexts(why, len) < 0) {
        log_warn(NULL, "MTA-STS: cannot set up: %s", why);
        return 0;
    }
    discover(domain, &p->sts);
    if (p->sts.mode == STS_NONE)
        return 0;
    log_info(NULL, "MTA-STS policy of %s: mode %s, id %s, max_age %ld", domain,
             mtasts_mode_name(p->sts.mode), p->sts.id, p->sts.max_age);
    if (p->level != TL_DANE) /* DANE's code raises its own fallback */
        p->level = (enum tls_level)mtasts_level(p, (int)p->level);
    snprintf(p->origin, sizeof p->origin, "MTA-STS policy of %.200s (%s)", domain,
             mtasts_mode_name(p->sts.mode));
    return 0;
}

int mtasts_mx_allowed(const struct tls_policy *p, const char *mxhost, char *why, size_t len)
{
    const struct mtasts_policy *s = &p->sts;
    if (s->mode == STS_NONE || mtasts_mx_match(s, mxhost))
        return 1;
    if (s->mode == STS_TESTING) {
        log_warn(NULL, "MTA-STS policy of %s (testing): MX host %s matches no mx pattern; "
                 "delivering anyway", s->domain, mxhost);
        return 1;
    }
    snprintf(why, len, "4.7.5 MTA-STS policy of %s: MX host %s matches no mx pattern of the "
             "policy", s->domain, mxhost);
    tlsrpt_sts(s, s->domain, mxhost, "validation-failure", why); /* issue 11 */
    return 0;
}

/* The peer's chain against the WebPKI store, for the MX host name. */
static int verify_peer(SSL *ssl, const char *mxhost, char *reason, size_t len, long *verr)
{
    X509 *cert = SSL_get0_peer_certificate(ssl);
    if (cert == NULL) {
        snprintf(reason, len, "no server certificate");
        return 0;
    }
    X509_STORE_CTX *vc = X509_STORE_CTX_new();
    int ok = 0;
    if (vc && X509_STORE_CTX_init(vc, store, cert, SSL_get_peer_cert_chain(ssl)) == 1 &&
        X509_STORE_CTX_set_default(vc, "ssl_server") == 1) {
        X509_VERIFY_PARAM *param = X509_STORE_CTX_get0_param(vc);
        X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        if (X509_VERIFY_PARAM_set1_host(param, mxhost, 0) == 1)
            ok = X509_verify_cert(vc) == 1;
        *verr = X509_STORE_CTX_get_error(vc);
        if (!ok)
            snprintf(reason, len, "server certificate not valid for %s: %s", mxhost,
                     X509_verify_cert_error_string(*verr));
    } else {
        snprintf(reason, len, "cannot verify the server certificate");
    }
    X509_STORE_CTX_free(vc);
    ERR_clear_error();
    return ok;
}

void mtasts_judge(const struct tls_policy *p, SSL *ssl, const char *mxhost,
                  struct tls_client_result *r)
{
    const struct mtasts_policy *s = &p->sts;
    if (s->mode == STS_NONE)
        return;
    char reason[300];
    long verr = X509_V_ERR_UNSPECIFIED;
    if (ssl == NULL) /* under enforce the level requires TLS: testing only */
        snprintf(reason, sizeof reason, "no TLS session with %s", mxhost);
    else if (store == NULL)
        snprintf(reason, sizeof reason, "no certificate store");
    else if (verify_peer(ssl, mxhost, reason, sizeof reason, &verr)) {
        str_copy(r->label, "Verified", sizeof r->label);
        /* issue 11: under testing, an MX host the policy does not name is
         * this session's TLSRPT failure (mtasts_mx_allowed let it pass). */
        if (!mtasts_mx_match(s, mxhost)) {
            r->tlsrpt = "validation-failure";
            snprintf(r->reason, sizeof r->reason, "MX host %s matches no mx pattern", mxhost);
        }
        return;
    }
    if (r)
        r->tlsrpt = tlsrpt_x509_result(verr, 0); /* issue 11: TLSRPT */
    if (s->mode == STS_TESTING || r == NULL) {
        if (r)
            snprintf(r->reason, sizeof r->reason, "%s", reason);
        log_warn(NULL, "MTA-STS policy of %s (%s): %s; delivering anyway", s->domain,
                 mtasts_mode_name(s->mode), reason);
        return;
    }
    r->meets_policy = 0;
    snprintf(r->reason, sizeof r->reason, "MTA-STS policy of %.100s: %s", s->domain, reason);
}
