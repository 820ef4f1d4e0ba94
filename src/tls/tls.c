/* tls: server context, certificate callback and handshake description. */
#include "tls/tls.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "metrics/metrics.h"
#include "table/table.h"
#include "tls/tlsopt.h"
#include "util/log.h"
#include "util/strutil.h"

struct tls_server {
    SSL_CTX *ctx;
    struct trust_config trust;
    struct table *pins;
};

static int peer_ex_index = -1;

int tls_error_text(unsigned long e, char *out, size_t len)
{
    /* Library 0 is no OpenSSL library. libevent files the SSL_get_error()
     * category it gave up on (SSL_ERROR_SSL = 1, SSL_ERROR_SYSCALL = 5) in
     * its error list; printed as an OpenSSL code it reads
     * "error:00000001:lib(0)::reason(1)", and read as an errno it would lie
     * ("Operation not permitted"). The reasons that matter are the OpenSSL
     * codes around it. System errors OpenSSL raises carry ERR_LIB_SYS and
     * print with their strerror text. */
    if (ERR_GET_LIB(e) == 0) {
        out[0] = '\0';
        return 0;
    }
    ERR_error_string_n(e, out, len);
    return 1;
}

void tls_error_string(char *out, size_t len)
{
    unsigned long e;
    size_t o = 0;
    out[0] = '\0';
    while ((e = ERR_get_error()) != 0) {
        char one[256];
        if (!tls_error_text(e, one, sizeof one))
            continue;
        int n = snprintf(out + o, len - o, "%s%s", o ? "; " : "", one);
        if (n < 0 || (size_t)n >= len - o)
            break;
        o += (size_t)n;
    }
}

const EVP_MD *tls_digest_by_name(const char *name)
{
    if (strcmp(name, "sha1") == 0)
        return EVP_sha1();
    if (strcmp(name, "md5") == 0)
        return EVP_md5();
    return EVP_sha256();
}

/* Replaces OpenSSL's own verification: the trust engine decides, and the
 * handshake always continues so that an untrusted client can still be
 * told why in SMTP (Postfix's smtpd_tls_ask_ccert behaviour). */
static int verify_cb(X509_STORE_CTX *xctx, void *arg)
{
    struct tls_server *ts = arg;
    SSL *ssl = X509_STORE_CTX_get_ex_data(xctx, SSL_get_ex_data_X509_STORE_CTX_idx());
    struct tls_peer *peer = ssl ? SSL_get_ex_data(ssl, peer_ex_index) : NULL;
    if (peer == NULL)
        return 1;
    trust_evaluate(&ts->trust, X509_STORE_CTX_get0_cert(xctx),
                   X509_STORE_CTX_get0_untrusted(xctx), &peer->trust);
    return 1;
}

/* smtpd_tls_key_file defaults to $smtpd_tls_cert_file (and smtp_tls_key_file
 * to $smtp_tls_cert_file): a key file never set is blamed on the line that
 * named the certificate. */
static const char *key_origin(enum conf_param p)
{
    if (strcmp(conf_origin(p), "default") != 0)
        return conf_origin(p);
    if (p == P_SMTPD_TLS_KEY_FILE)
        return conf_origin(P_SMTPD_TLS_CERT_FILE);
    if (p == P_SMTP_TLS_KEY_FILE)
        return conf_origin(P_SMTP_TLS_CERT_FILE);
    return conf_origin(p);
}

/* keypost reads its keys as root before it drops privileges, so it needs
 * no group or world access. World-readable means every local user can take
 * the key: warn. Group-readable alone is not warned about: root:ssl-cert
 * 0640 is Debian's documented way to share keys with the daemons of one
 * group (Postfix's and Debian's practice: root:root 0600 or root:ssl-cert
 * 0640), and the group is the operator's deliberate choice; a warning on
 * every such host would teach operators to ignore warnings. */
void tls_warn_key_file_mode(const char *path, enum conf_param p)
{
    struct stat st;
    if (path == NULL || *path == '\0' || stat(path, &st) < 0 || !(st.st_mode & S_IROTH))
        return;
    conf_warning("%s: %s %s is readable by all local users (mode %04o); make it 0600, or "
                 "0640 with a group such as ssl-cert", key_origin(p), conf_name(p), path,
                 (unsigned)(st.st_mode & 07777));
}

/* A daemon has no terminal to ask for a passphrase on: refuse at once
 * rather than let OpenSSL prompt on /dev/tty. */
static int no_passphrase(char *buf, int size, int rwflag, void *arg)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)arg;
    return -1;
}

static EVP_PKEY *read_key(const char *path)
{
    BIO *in = BIO_new_file(path, "r");
    EVP_PKEY *key = in ? PEM_read_bio_PrivateKey(in, NULL, no_passphrase, NULL) : NULL;
    BIO_free(in);
    return key;
}

/* One key and one certificate chain, named by the parameters in params
 * ("smtpd_tls_chain_files" or the cert and key file parameters). */
struct key_pair {
    const char *cert, *key;
    const char *origin, *key_origin;
    const char *params;
};

static void report_mismatch(const struct key_pair *kp, X509 *leaf, EVP_PKEY *key,
                            struct conf_errors *errs)
{
    const char *kt = EVP_PKEY_get0_type_name(key);
    const char *ct = leaf ? EVP_PKEY_get0_type_name(X509_get0_pubkey(leaf)) : NULL;
    char kinds[128] = "";
    if (kt && ct && strcmp(kt, ct) != 0)
        snprintf(kinds, sizeof kinds, ": the key is %s, the certificate's key is %s", kt, ct);
    if (strcmp(kp->cert, kp->key) == 0)
        conf_error(errs, "%s: private key in %s does not match the certificate in the same "
                   "file%s (%s: a private key, then its certificate chain)", kp->origin,
                   kp->cert, kinds, kp->params);
    else
        conf_error(errs, "%s: private key %s does not match certificate %s%s (%s must be one "
                   "key pair)", kp->origin, kp->key, kp->cert, kinds, kp->params);
}

/* The key is read here and compared with the certificate before OpenSSL
 * installs it: SSL_CTX_use_PrivateKey files a key of another type (RSA for
 * an EC certificate) in a slot of its own, and SSL_CTX_check_private_key
 * then looks at that empty slot and says "no certificate assigned". */
static int load_pair(SSL_CTX *ctx, const struct key_pair *kp, struct conf_errors *errs)
{
    char why[512];
    ERR_clear_error(); /* leftovers would be blamed on these files */
    if (SSL_CTX_use_certificate_chain_file(ctx, kp->cert) != 1) {
        tls_error_string(why, sizeof why);
        conf_error(errs, "%s: cannot load certificate %s: %s", kp->origin, kp->cert, why);
        return -1;
    }
    EVP_PKEY *key = read_key(kp->key);
    if (key == NULL) {
        unsigned long last = ERR_peek_last_error();
        tls_error_string(why, sizeof why);
        if (ERR_GET_LIB(last) == ERR_LIB_PEM && ERR_GET_REASON(last) == PEM_R_BAD_PASSWORD_READ)
            str_copy(why, "the key is encrypted with a passphrase, which a daemon cannot "
                     "type; store it unencrypted (openssl pkey -in KEY -out NEWKEY)",
                     sizeof why);
        conf_error(errs, "%s: cannot load private key %s: %s", kp->key_origin, kp->key, why);
        return -1;
    }
    X509 *leaf = SSL_CTX_get0_certificate(ctx);
    int ok = leaf != NULL && X509_check_private_key(leaf, key) == 1;
    if (!ok) {
        report_mismatch(kp, leaf, key, errs);
    } else if (SSL_CTX_use_PrivateKey(ctx, key) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
        tls_error_string(why, sizeof why);
        conf_error(errs, "%s: cannot use private key %s: %s", kp->key_origin, kp->key, why);
        ok = 0;
    }
    EVP_PKEY_free(key);
    ERR_clear_error();
    return ok ? 0 : -1;
}

static int load_keys(SSL_CTX *ctx, struct conf_errors *errs)
{
    int loaded = 0;
    const char *cert = conf_str(P_SMTPD_TLS_CERT_FILE);
    if (*cert) {
        struct key_pair kp = {cert, conf_str(P_SMTPD_TLS_KEY_FILE),
                              conf_origin(P_SMTPD_TLS_CERT_FILE),
                              key_origin(P_SMTPD_TLS_KEY_FILE),
                              "smtpd_tls_key_file and smtpd_tls_cert_file"};
        tls_warn_key_file_mode(kp.key, P_SMTPD_TLS_KEY_FILE);
        if (load_pair(ctx, &kp, errs) < 0)
            return -1;
        loaded++;
    }
    char *files = strdup(conf_str(P_SMTPD_TLS_CHAIN_FILES));
    char *item[16];
    int n = str_split_list(files, item, 16);
    for (int i = 0; i < n; i++) {
        /* Each chain file holds a key followed by its certificate chain. */
        const char *origin = conf_origin(P_SMTPD_TLS_CHAIN_FILES);
        struct key_pair kp = {item[i], item[i], origin, origin, "smtpd_tls_chain_files"};
        tls_warn_key_file_mode(item[i], P_SMTPD_TLS_CHAIN_FILES);
        if (load_pair(ctx, &kp, errs) < 0) {
            free(files);
            return -1;
        }
        loaded++;
    }
    free(files);
    return loaded;
}

/* TLS 1.2 suites: Postfix's grade minus the exclusions (keypost's default
 * exclusions remove every CBC suite, leaving AEAD). TLS 1.3 suites are all
 * AEAD and keep OpenSSL's list. Anonymous suites, which Postfix's smtpd
 * excludes when it asks for client certificates, need no rule here: at
 * OpenSSL's default security level (1 and up) they are never negotiated. */
static int set_ciphers(SSL_CTX *ctx, struct conf_errors *errs)
{
    const char *grade = conf_str(P_SMTPD_TLS_CIPHERS);
    char list[2048], why[512];
    /* The grade alone first, so that an error names the line at fault. */
    if (tlsopt_cipher_list(grade, "", list, sizeof list, why, sizeof why) < 0) {
        conf_error(errs, "%s: smtpd_tls_ciphers: %s", conf_origin(P_SMTPD_TLS_CIPHERS), why);
        return -1;
    }
    const char *exclude = conf_str(P_SMTPD_TLS_EXCLUDE_CIPHERS);
    const char *origin = conf_origin(P_SMTPD_TLS_EXCLUDE_CIPHERS);
    if (tlsopt_cipher_list(grade, exclude, list, sizeof list, why, sizeof why) < 0) {
        conf_error(errs, "%s: smtpd_tls_exclude_ciphers: %s", origin, why);
        return -1;
    }
    char unmatched[512];
    if (tlsopt_unmatched(exclude, unmatched, sizeof unmatched))
        conf_warning("%s: smtpd_tls_exclude_ciphers: %s: selects no cipher this OpenSSL "
                     "offers (misspelt, or no longer there); nothing is excluded by it", origin,
                     unmatched);
    ERR_clear_error();
    if (SSL_CTX_set_cipher_list(ctx, list) != 1) {
        tls_error_string(why, sizeof why);
        conf_error(errs, "%s: smtpd_tls_exclude_ciphers: OpenSSL refuses \"%s\": %s", origin,
                   list, why);
        return -1;
    }
    return 0;
}

static int load_cas(struct tls_server *ts, struct conf_errors *errs)
{
    const char *cafile = conf_str(P_SMTPD_TLS_CAFILE);
    const char *capath = conf_str(P_SMTPD_TLS_CAPATH);
    char why[512];
    if ((*cafile || *capath) &&
        SSL_CTX_load_verify_locations(ts->ctx, *cafile ? cafile : NULL,
                                      *capath ? capath : NULL) != 1) {
        tls_error_string(why, sizeof why);
        conf_error(errs, "%s: cannot load CA certificates from %s: %s",
                   conf_origin(*cafile ? P_SMTPD_TLS_CAFILE : P_SMTPD_TLS_CAPATH),
                   *cafile ? cafile : capath, why);
        return -1;
    }
    if (conf_bool(P_TLS_APPEND_DEFAULT_CA))
        SSL_CTX_set_default_verify_paths(ts->ctx);
    if (*cafile) {
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cafile);
        if (names)
            SSL_CTX_set_client_CA_list(ts->ctx, names);
    }
    ts->trust.store = SSL_CTX_get_cert_store(ts->ctx);
    return 0;
}

/* A public CA bundle plus tls_trust_server_ccerts admits every holder of a
 * public certificate as a peer: say so. */
static void warn_broad_clique(void)
{
    if (!conf_bool(P_TLS_TRUST_SERVER_CCERTS))
        return;
    if (conf_bool(P_TLS_APPEND_DEFAULT_CA)) {
        conf_warning("%s: tls_trust_server_ccerts = yes with tls_append_default_CA = yes: "
                     "any server certificate from any public CA is a trusted peer",
                     conf_origin(P_TLS_TRUST_SERVER_CCERTS));
        return;
    }
    const char *cafile = conf_str(P_SMTPD_TLS_CAFILE);
    STACK_OF(X509_NAME) *names = *cafile ? SSL_load_client_CA_file(cafile) : NULL;
    int n = names ? sk_X509_NAME_num(names) : 0;
    sk_X509_NAME_pop_free(names, X509_NAME_free);
    if (n > 5)
        conf_warning("%s: tls_trust_server_ccerts = yes with %d CAs in %s: every server "
                     "certificate those CAs issue is a trusted peer; keep the CAfile to "
                     "the clique's own CA, or pin peers by key",
                     conf_origin(P_SMTPD_TLS_CAFILE), n, cafile);
}

/* Pins must be digests of the configured kind: a typo pins nobody. */
static void check_pin_format(const struct table *pins)
{
    size_t want = (size_t)EVP_MD_get_size(tls_digest_by_name(
                      conf_str(P_SMTPD_TLS_FINGERPRINT_DIGEST))) * 3 - 1;
    for (size_t i = 0; i < table_count(pins); i++) {
        const char *k = table_key(pins, i);
        size_t n = strlen(k);
        int ok = n == want;
        for (size_t j = 0; ok && j < n; j++)
            ok = j % 3 == 2 ? k[j] == ':' : strchr("0123456789abcdef", k[j]) != NULL;
        if (!ok)
            conf_warning("%s: relay_clientcerts: \"%s\" is not a %s fingerprint "
                         "(AA:BB:... as `keypost fingerprint` prints it)",
                         conf_origin(P_RELAY_CLIENTCERTS), k,
                         conf_str(P_SMTPD_TLS_FINGERPRINT_DIGEST));
    }
}

static int load_pins(struct tls_server *ts, struct conf_errors *errs)
{
    const char *spec = conf_str(P_RELAY_CLIENTCERTS);
    if (!*spec)
        return 0;
    char why[512];
    ts->pins = table_open(spec, why, sizeof why);
    if (ts->pins == NULL) {
        conf_error(errs, "%s: relay_clientcerts: %s", conf_origin(P_RELAY_CLIENTCERTS), why);
        return -1;
    }
    ts->trust.pins = ts->pins;
    check_pin_format(ts->pins);
    return 0;
}

static void ask_for_certificates(struct tls_server *ts)
{
    SSL_CTX_set_verify(ts->ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_cert_verify_callback(ts->ctx, verify_cb, ts);
    /* A resumed session carries no certificate to decide on again: turn
     * resumption off when certificates are asked for (Postfix does too). */
    SSL_CTX_set_session_cache_mode(ts->ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ts->ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_num_tickets(ts->ctx, 0);
}

struct tls_server *tls_server_new(struct conf_errors *errs)
{
    if (peer_ex_index < 0)
        peer_ex_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    struct tls_server *ts = calloc(1, sizeof *ts);
    if (ts != NULL)
        ts->ctx = SSL_CTX_new(TLS_server_method());
    if (ts == NULL || ts->ctx == NULL) {
        conf_error(errs, "cannot create TLS context");
        tls_server_free(ts);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ts->ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ts->ctx, SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                      SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_mode(ts->ctx, SSL_MODE_RELEASE_BUFFERS);
    ts->trust.verify_depth = (int)conf_long(P_SMTPD_TLS_CCERT_VERIFYDEPTH);
    ts->trust.trust_server_ccerts = conf_bool(P_TLS_TRUST_SERVER_CCERTS);
    ts->trust.digest = tls_digest_by_name(conf_str(P_SMTPD_TLS_FINGERPRINT_DIGEST));

    int ciphers = set_ciphers(ts->ctx, errs);
    int keys = load_keys(ts->ctx, errs);
    int level_on = strcmp(conf_str(P_SMTPD_TLS_SECURITY_LEVEL), "none") != 0;
    if (keys == 0 && level_on)
        conf_error(errs, "%s: smtpd_tls_security_level = %s needs smtpd_tls_cert_file or "
                   "smtpd_tls_chain_files", conf_origin(P_SMTPD_TLS_SECURITY_LEVEL),
                   conf_str(P_SMTPD_TLS_SECURITY_LEVEL));
    if (ciphers < 0 || keys <= 0 || load_cas(ts, errs) < 0 || load_pins(ts, errs) < 0) {
        tls_server_free(ts);
        return NULL;
    }
    if (conf_bool(P_SMTPD_TLS_ASK_CCERT) || conf_bool(P_SMTPD_TLS_REQ_CCERT))
        ask_for_certificates(ts);
    warn_broad_clique();
    /* Failures tolerated above (a CA file for the client list, the default
     * verify paths) leave errors behind; workers inherit the queue, and a
     * handshake failure would report them as its own. */
    ERR_clear_error();
    return ts;
}

void tls_server_free(struct tls_server *ts)
{
    if (ts == NULL)
        return;
    SSL_CTX_free(ts->ctx);
    table_free(ts->pins);
    free(ts);
}

static double monotonic_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

SSL *tls_server_session(struct tls_server *ts, struct tls_peer *peer)
{
    SSL *ssl = SSL_new(ts->ctx);
    if (ssl == NULL)
        return NULL;
    memset(peer, 0, sizeof *peer);
    peer->started = monotonic_seconds();
    SSL_set_ex_data(ssl, peer_ex_index, peer);
    return ssl;
}

void tls_peer_finish(SSL *ssl, struct tls_peer *peer)
{
    str_copy(peer->protocol, SSL_get_version(ssl), sizeof peer->protocol);
    const SSL_CIPHER *c = SSL_get_current_cipher(ssl);
    str_copy(peer->cipher, c ? SSL_CIPHER_get_name(c) : "unknown", sizeof peer->cipher);
    peer->bits = c ? SSL_CIPHER_get_bits(c, &peer->alg_bits) : 0;
    metrics_tls_handshake(1, monotonic_seconds() - peer->started);
    metrics_trust(peer->trust.via, peer->trust.has_cert, peer->trust.trusted);
}

const char *tls_peer_label(const struct tls_peer *peer)
{
    if (!peer->trust.has_cert)
        return "Anonymous";
    return peer->trust.chain_ok ? "Trusted" : "Untrusted";
}

void tls_log_peer(const char *sid, const char *host, const char *addr,
                  const struct tls_peer *peer)
{
    log_sinfo(sid, "%s TLS connection established from %s[%s]: %s with cipher %s (%d/%d bits)",
              tls_peer_label(peer), host, addr, peer->protocol, peer->cipher, peer->bits,
              peer->alg_bits);
    const struct trust_result *t = &peer->trust;
    if (!t->has_cert) {
        log_sinfo(sid, "ccert: status=none via=none");
        return;
    }
    log_sinfo(sid,
              "ccert: status=%s via=%s chain=%s subject_cn=\"%s\" issuer_cn=\"%s\" "
              "cert_fingerprint=%s pubkey_fingerprint=%s days_left=%ld%s%s%s",
              t->trusted ? "trusted" : "untrusted", trust_via_name(t->via),
              t->chain_ok ? "ok" : "failed", t->subject_cn, t->issuer_cn, t->cert_fp,
              t->pubkey_fp, t->days_left, t->chain_ok ? "" : " reason=\"",
              t->chain_ok ? "" : t->reason, t->chain_ok ? "" : "\"");
    if (t->via == VIA_CERT_PIN)
        log_swarn(sid, "%s is pinned by its certificate digest, which changes at every "
                  "renewal: pin its public key instead: %s", t->subject_cn, t->pubkey_fp);
    if (t->via == VIA_CERT_PIN || t->via == VIA_PUBKEY_PIN) {
        if (t->days_left < 0)
            log_swarn(sid, "pinned client certificate of %s expired %ld days ago",
                      t->subject_cn, -t->days_left);
        else if (t->days_left < 14)
            log_swarn(sid, "pinned client certificate of %s expires in %ld days",
                      t->subject_cn, t->days_left);
    }
}
