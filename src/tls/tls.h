/* tls: all of keypost's OpenSSL code for the server side.
 * Builds the SSL_CTX from the smtpd_tls_* parameters (TLS 1.2 and 1.3 only,
 * RSA and ECDSA keys side by side), hands every client certificate to the
 * trust engine during the handshake, and describes the finished handshake
 * in Postfix's log form. */
#ifndef KP_TLS_H
#define KP_TLS_H

#include <openssl/ssl.h>

#include "conf/conf.h"
#include "tls/trust.h"

struct tls_server;

/* What one handshake established about the client. */
struct tls_peer {
    char protocol[16];
    char cipher[64];
    int bits;
    int alg_bits;
    struct trust_result trust;
    double started;  /* monotonic seconds when the handshake began (metrics) */
};

/* Build the server context from the configuration; errors go to errs with
 * the parameter's FILE:LINE. Returns NULL when the level is none and no
 * certificate is configured, or on error (errs->count tells which). */
struct tls_server *tls_server_new(struct conf_errors *errs);
void tls_server_free(struct tls_server *ts);
/* A new SSL object for one accepted connection; results of the certificate
 * check are written to *peer during the handshake. */
SSL *tls_server_session(struct tls_server *ts, struct tls_peer *peer);
/* Fill protocol, cipher and bits once the handshake is done. */
void tls_peer_finish(SSL *ssl, struct tls_peer *peer);
/* "Anonymous", "Untrusted" or "Trusted", as Postfix's TLS line says. */
const char *tls_peer_label(const struct tls_peer *peer);
/* Log Postfix's line and keypost's certificate decision line. */
void tls_log_peer(const char *sid, const char *host, const char *addr,
                  const struct tls_peer *peer);
/* The digest named by smtpd_tls_fingerprint_digest ("sha256" etc.). */
const EVP_MD *tls_digest_by_name(const char *name);
/* OpenSSL's error queue as one line (and cleared). */
void tls_error_string(char *out, size_t len);
/* One error code as text, for lists such as libevent's
 * bufferevent_get_openssl_error(). Returns 0 with out empty for a code of
 * library 0, which carries no OpenSSL reason (libevent files the
 * SSL_get_error() category there): leave it out of the log line. */
int tls_error_text(unsigned long e, char *out, size_t len);
/* A conf warning when the private key file path (the value of parameter p:
 * smtpd_tls_key_file, smtp_tls_key_file, or one entry of a *_chain_files
 * list) is readable by all local users. Group-readable keys (0640, e.g.
 * root:ssl-cert) are accepted. */
void tls_warn_key_file_mode(const char *path, enum conf_param p);

#endif
