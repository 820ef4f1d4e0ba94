/* tls_client: the SMTP client's TLS, with Postfix's security levels.
 *   none         no TLS
 *   may          STARTTLS when offered; without it, or if it fails, plaintext
 *   encrypt      TLS required, certificate not checked
 *   fingerprint  TLS required, the server's certificate or public-key digest
 *                must be one of match=FP1|FP2 (smtp_tls_fingerprint_digest)
 *   verify       TLS required, chain verified by smtp_tls_CAfile, name matches
 *                the MX host name (or the relayhost name)
 *   secure       as verify, but the name must match the next-hop domain
 *                (match=NAME1:NAME2 overrides), since MX records can be forged
 *   dane         RFC 7672 opportunistic DANE: with DNSSEC-secure, usable TLSA
 *                records for the host, TLS is mandatory and the server must
 *                match one of them (tls/dane.h); else as may (or encrypt
 *                when the records published are all unusable)
 *   dane-only    as dane, but a host without usable secure TLSA records is
 *                never used
 * The policy itself (levels, smtp_tls_policy_maps) is tls_policy's.
 * keypost presents its own certificate (smtp_tls_cert_file / _key_file /
 * smtp_tls_chain_files) when the server asks, serverAuth-only included. */
#ifndef KP_TLS_CLIENT_H
#define KP_TLS_CLIENT_H

#include <openssl/ssl.h>

#include "conf/conf.h"
#include "tls/tls_policy.h"

struct tls_client_result {
    char label[16];       /* Untrusted, Trusted or Verified (Postfix's words) */
    int chain_ok;
    int name_ok;
    int fingerprint_ok;
    int meets_policy;
    char reason[256];     /* why the policy was not met */
    const char *tlsrpt;   /* issue 11: the TLSRPT result type of a failure
                           * under DANE or MTA-STS (NULL: none) */
    char dane[300];       /* the TLSA record that matched, "U S M HEX at depth N" */
    char protocol[16];
    char cipher[64];
    int bits, alg_bits;
};

/* The client context from smtp_tls_*, and the policy tables
 * (tls_policy_init); NULL with errs filled on error. */
SSL_CTX *tls_client_ctx(struct conf_errors *errs);
/* The context the master built (as root, before dropping privileges, since
 * key files are not readable by mail_owner); delivery processes inherit it. */
void tls_client_set_shared(SSL_CTX *ctx);
SSL_CTX *tls_client_shared(void);
/* Handshake on a connected blocking socket (with timeouts set), with the
 * destination's protocols and ciphers. */
SSL *tls_client_connect(SSL_CTX *ctx, int fd, const char *sni, const struct tls_policy *p,
                        char *err, size_t errlen);
/* Judge the finished handshake against the policy. */
void tls_client_check(SSL *ssl, const struct tls_policy *p, const char *nexthop,
                      const char *mxhost, struct tls_client_result *r);

#endif
