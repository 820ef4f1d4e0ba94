/* certs: which certificates keypost presents, and their expiry in the
 * shared area (see metrics.h). */
#include <stdlib.h>
#include <string.h>

#include "conf/conf.h"
#include "metrics/metrics.h"
#include "tls/certinfo.h"
#include "util/strutil.h"

void metrics_each_certificate(void (*fn)(const char *param, const char *path, void *arg),
                              void *arg)
{
    static const enum conf_param single[] = {P_SMTPD_TLS_CERT_FILE, P_SMTP_TLS_CERT_FILE};
    static const enum conf_param lists[] = {P_SMTPD_TLS_CHAIN_FILES, P_SMTP_TLS_CHAIN_FILES};
    for (int i = 0; i < 2; i++) {
        if (*conf_str(single[i]))
            fn(conf_name(single[i]), conf_str(single[i]), arg);
        char *files = strdup(conf_str(lists[i]));
        char *item[16];
        int n = files ? str_split_list(files, item, 16) : 0;
        for (int k = 0; k < n; k++)
            fn(conf_name(lists[i]), item[k], arg);
        free(files);
    }
}

static void note_one(const char *param, const char *path, void *arg)
{
    struct metrics_area *a = arg;
    if (a->ncerts >= METRICS_MAX_CERTS)
        return;
    struct metrics_cert *c = &a->certs[a->ncerts];
    struct certinfo ci;
    char err[512];
    str_copy(c->param, param, sizeof c->param);
    str_copy(c->path, path, sizeof c->path);
    c->not_after = certinfo_read(path, &ci, err, sizeof err) == 0 ? (int64_t)ci.not_after : 0;
    a->ncerts++;
}

void metrics_note_certificates(void)
{
    struct metrics_area *a = (struct metrics_area *)metrics_area();
    if (a == NULL)
        return;
    a->ncerts = 0;
    metrics_each_certificate(note_one, a);
}
