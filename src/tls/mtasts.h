/* mtasts: MTA-STS (RFC 8461) for the SMTP client, with smtp_mta_sts = yes.
 *
 * What it offers:
 *   - the policy parser and the MX pattern matcher (pure, unit-tested);
 *   - mtasts_apply(): called by tls_policy_find() for an MX destination
 *     whose level comes from smtp_tls_security_level (none, may, encrypt or
 *     dane) and not from an smtp_tls_policy_maps entry. It attaches the
 *     domain's policy to the destination: mode enforce raises the level to
 *     at least encrypt (STARTTLS required, no plaintext retry);
 *   - mtasts_mx_allowed() before connecting to an MX host, and
 *     mtasts_judge() after the handshake: under enforce an MX host that
 *     matches no mx pattern, or a certificate that is not WebPKI-valid for
 *     the MX host name (system store, or smtp_mta_sts_CAfile instead), defers
 *     the mail; under testing the failure is logged and the mail goes out.
 *
 * DANE takes precedence (RFC 8461 section 2): a level dane keeps its policy
 * attached, and the DANE code must ignore it for an MX host whose TLSA
 * records are usable; it applies where DANE falls back (no secure TLSA).
 * Until DANE is built, dane means may and the attached policy applies.
 *
 * Where the fetch runs, and why there: in the delivery process, before any
 * connection, once per domain and policy id (the TXT record's id), bounded
 * by smtp_mta_sts_timeout for the TXT lookup, the address lookup and the
 * HTTPS fetch together (non-blocking sockets and libunbound's asynchronous
 * API, polled against one deadline). Delivery processes may block (they are
 * separate from every event loop, and delivery_job_deadline bounds them);
 * a separate prefetch process would save the first message to a domain
 * those seconds but needs a new process role, which is not worth it yet.
 *
 * Failures, as the RFC says and keypost's rule allows: a policy that was
 * fetched is honoured (enforce defers, never sends under a weaker one); a
 * fetch that fails (HTTP error, bad certificate, redirect, wrong type, too
 * big, too slow, malformed) while an unexpired policy is cached keeps the
 * cached one; when none is cached the domain has no policy (RFC 8461 5.1:
 * "MUST continue with delivery as though the domain has not implemented
 * MTA-STS"), and the failure is logged. A malformed policy is never used.
 *
 * The cache (mtasts_cache.c) is $queue_directory/mta-sts, one file per
 * domain, written durably; it survives restarts and honours max_age. */
#ifndef KP_MTASTS_H
#define KP_MTASTS_H

#include <openssl/ssl.h>
#include <stddef.h>
#include <time.h>

#include "conf/conf.h"

#define MTASTS_MAX_MX 32          /* more mx lines: the policy is malformed */
#define MTASTS_MAX_AGE 31557600L  /* RFC 8461 3.2 */
#define MTASTS_MAX_BODY 65536     /* the largest policy file fetched */
#define MTASTS_ID_MAX 32

enum mtasts_mode { STS_NONE, STS_TESTING, STS_ENFORCE };

struct mtasts_policy {
    enum mtasts_mode mode;     /* STS_NONE also when the domain has no policy */
    long max_age;
    int nmx;
    char mx[MTASTS_MAX_MX][256];
    char domain[256];          /* the policy domain, for the logs */
    char id[MTASTS_ID_MAX + 1];/* TXT id the policy was fetched under */
    time_t fetched;
};

struct tls_policy;
struct tls_client_result;

/* Parse a policy file (LF or CRLF lines). Strict: a missing or repeated
 * version, mode or max_age, an unknown mode, a bad mx pattern, max_age out
 * of 0..31557600, a NUL or bare CR, or an empty line before the end are
 * errors (-1 with err); unknown fields are ignored as RFC 8461 says. */
int mtasts_parse(const char *text, size_t len, struct mtasts_policy *out, char *err,
                 size_t errlen);
/* The TXT record "v=STSv1; id=...;": 1 with id filled, 0 when the record is
 * not an STSv1 record (ignored), -1 when it is one but malformed. */
int mtasts_txt_parse(const char *txt, char *id, size_t idlen);
/* host (an MX name, a trailing dot allowed) matches one of the policy's
 * patterns: exactly, or "*.example.com" for one more label on the left. */
int mtasts_mx_match(const struct mtasts_policy *p, const char *host);
const char *mtasts_mode_name(enum mtasts_mode mode);

/* The certificate store and the fetch context (as root, at load and
 * reload; delivery processes inherit them). Errors with FILE:LINE. */
int mtasts_init(struct conf_errors *errs);
/* See above. -1 never happens today (a failure means "no policy"); kept so
 * that a source that must defer can say so with why. */
int mtasts_apply(const char *domain, struct tls_policy *p, char *why, size_t len);
/* The level to use where the policy applies: encrypt for none and may
 * under enforce, else level (an enum tls_level). For the DANE code's
 * fallback when a host has no usable TLSA records. */
int mtasts_level(const struct tls_policy *p, int level);
/* 1: connect to mxhost; 0: skip it, why says so (enforce only). */
int mtasts_mx_allowed(const struct tls_policy *p, const char *mxhost, char *why, size_t len);
/* After tls_client_check(): under an attached policy, verify the chain and
 * the MX name; enforce fails r->meets_policy with a reason, testing logs.
 * ssl and r NULL: the session goes on without TLS (testing logs that). */
void mtasts_judge(const struct tls_policy *p, SSL *ssl, const char *mxhost,
                  struct tls_client_result *r);

#endif
