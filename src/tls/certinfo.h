/* certinfo: the expiry of keypost's own certificates, for `keypost status`
 * and the metrics: the first certificate (the leaf) of a PEM file, which
 * may also hold the key and the chain (smtpd_tls_chain_files). */
#ifndef KP_CERTINFO_H
#define KP_CERTINFO_H

#include <stddef.h>
#include <time.h>

struct certinfo {
    time_t not_after;
    char subject[256];   /* one-line form, "CN=mx.example.org" */
};

/* 0, or -1 with err filled (unreadable file, no certificate, bad date). */
int certinfo_read(const char *path, struct certinfo *out, char *err, size_t len);
/* Whole days from now to not_after, rounded down (negative: expired). */
long certinfo_days_left(time_t not_after, time_t now);

#endif
