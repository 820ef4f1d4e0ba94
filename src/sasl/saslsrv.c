/* saslsrv: the SMTP server's SASL helpers (see saslsrv.h). */
#include "sasl/saslsrv.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sasl/dovecot.h"
#include "table/tablelist.h"
#include "util/strutil.h"

struct saslsrv_timer {
    struct event *ev;
    void (*fn)(void *);
    void *arg;
};

static struct table_list external_maps;
static struct event_base *base;
static char mech_buf[1200];

/* "noanonymous, noplaintext": the flags of a security options list. */
static int security_options(enum conf_param p, int *noanon, int *noplain,
                            struct conf_errors *errs)
{
    char copy[512], *items[16];
    str_copy(copy, conf_str(p), sizeof copy);
    int n = str_split_list(copy, items, 16);
    *noanon = *noplain = 0;
    for (int i = 0; i < n; i++) {
        if (strcmp(items[i], "noanonymous") == 0)
            *noanon = 1;
        else if (strcmp(items[i], "noplaintext") == 0)
            *noplain = 1;
        else if (strcmp(items[i], "nodictionary") == 0 || strcmp(items[i], "noactive") == 0 ||
                 strcmp(items[i], "mutual_auth") == 0 || strcmp(items[i], "forward_secrecy") == 0)
            continue; /* Postfix's other options: Dovecot's PLAIN/LOGIN never claim them */
        else {
            if (errs)
                conf_error(errs, "%s: unknown SASL security option \"%s\"", conf_origin(p),
                           items[i]);
            return -1;
        }
    }
    return 0;
}

int saslsrv_init(struct conf_errors *errs)
{
    int a, b;
    saslsrv_free(); /* a reload opens the tables again */
    security_options(P_SMTPD_SASL_SECURITY_OPTIONS, &a, &b, errs);
    security_options(P_SMTPD_SASL_TLS_SECURITY_OPTIONS, &a, &b, errs);
    if (conf_bool(P_SMTPD_SASL_AUTH_ENABLE) && dovecot_path_ok(conf_str(P_SMTPD_SASL_PATH)) < 0)
        conf_error(errs, "%s: smtpd_sasl_path: expected a socket path, unix:PATH or "
                   "inet:ADDRESS:PORT", conf_origin(P_SMTPD_SASL_PATH));
    table_list_open(&external_maps, P_SMTPD_SASL_EXTERNAL_MAPS, 0, errs);
    return 0;
}

void saslsrv_free(void)
{
    table_list_free(&external_maps);
    memset(&external_maps, 0, sizeof external_maps);
}

void saslsrv_set_base(struct event_base *b)
{
    base = b;
    dovecot_set_base(b);
    if (b && conf_bool(P_SMTPD_SASL_AUTH_ENABLE))
        dovecot_probe(); /* so that the first EHLO need not wait */
}

const char *saslsrv_mechanisms(int tls, int external)
{
    int noanon, noplain;
    if (security_options(tls ? P_SMTPD_SASL_TLS_SECURITY_OPTIONS : P_SMTPD_SASL_SECURITY_OPTIONS,
                         &noanon, &noplain, NULL) < 0)
        noanon = noplain = 1;
    const char *d = dovecot_mechanisms(noanon, noplain);
    if (d == NULL && !external)
        return NULL;
    snprintf(mech_buf, sizeof mech_buf, "%s%s%s", d ? d : "", d && *d && external ? " " : "",
             external ? "EXTERNAL" : "");
    return mech_buf;
}

int saslsrv_external_login(const char *pubkey_fp, char *login, size_t len)
{
    const char *value;
    if (external_maps.n == 0 || *pubkey_fp == '\0')
        return 0;
    int r = table_list_get(&external_maps, pubkey_fp, &value, NULL);
    if (r <= 0)
        return r;
    char word[256];
    str_first_word(value, word, sizeof word);
    if (word[0] == '\0')
        return 0;
    str_copy(login, word, len);
    return 1;
}

static int b64_value(int c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

long saslsrv_b64_decode(const char *in, unsigned char *out, size_t len)
{
    size_t n = strlen(in), o = 0;
    if (n % 4 != 0)
        return -1;
    for (size_t i = 0; i < n; i += 4) {
        int v[4], pad = 0;
        for (int k = 0; k < 4; k++) {
            if (in[i + k] == '=' && i + 4 == n && k >= 2) {
                v[k] = 0;
                pad++;
            } else if (pad || (v[k] = b64_value((unsigned char)in[i + k])) < 0)
                return -1; /* a character after '=' or outside the alphabet */
        }
        unsigned long bits = (unsigned long)v[0] << 18 | (unsigned long)v[1] << 12 |
                             (unsigned long)v[2] << 6 | (unsigned long)v[3];
        unsigned char b[3] = {bits >> 16 & 0xff, bits >> 8 & 0xff, bits & 0xff};
        if (o + (size_t)(3 - pad) + 1 > len)
            return -1;
        memcpy(out + o, b, (size_t)(3 - pad));
        o += (size_t)(3 - pad);
    }
    out[o] = '\0';
    return (long)o;
}

double saslsrv_failure_delay(long n)
{
    double d = (double)conf_long(P_SMTPD_SASL_FAILURE_DELAY);
    for (long i = 1; i < n && i <= 5; i++)
        d *= 2;
    return d;
}

static void timer_fired(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct saslsrv_timer *t = arg;
    void (*fn)(void *) = t->fn;
    void *fn_arg = t->arg;
    event_free(t->ev);
    free(t);
    fn(fn_arg);
}

struct saslsrv_timer *saslsrv_timer_start(double secs, void (*fn)(void *), void *arg)
{
    struct saslsrv_timer *t = base ? calloc(1, sizeof *t) : NULL;
    if (t == NULL)
        return NULL;
    t->fn = fn;
    t->arg = arg;
    t->ev = evtimer_new(base, timer_fired, t);
    if (t->ev == NULL) {
        free(t);
        return NULL;
    }
    struct timeval tv = {(time_t)secs, (suseconds_t)((secs - (double)(time_t)secs) * 1e6)};
    evtimer_add(t->ev, &tv);
    return t;
}

void saslsrv_timer_cancel(struct saslsrv_timer *t)
{
    if (t == NULL)
        return;
    event_free(t->ev);
    free(t);
}
