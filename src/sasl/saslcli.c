/* saslcli: SMTP client AUTH (see saslcli.h). */
#include "sasl/saslcli.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

#include "deliver/smtpio.h"
#include "table/tablelist.h"
#include "util/log.h"
#include "util/strutil.h"

#define MAX_SECRET 512    /* user:password */

static struct table_list password_maps;

/* Returns the noplaintext flag of a security options list, or -1. */
static int noplaintext(enum conf_param p, struct conf_errors *errs)
{
    char copy[512], *items[16];
    str_copy(copy, conf_str(p), sizeof copy);
    int n = str_split_list(copy, items, 16), flag = 0;
    for (int i = 0; i < n; i++) {
        if (strcmp(items[i], "noplaintext") == 0)
            flag = 1;
        else if (strcmp(items[i], "noanonymous") != 0 && strcmp(items[i], "nodictionary") != 0 &&
                 strcmp(items[i], "noactive") != 0 && strcmp(items[i], "mutual_auth") != 0) {
            if (errs)
                conf_error(errs, "%s: unknown SASL security option \"%s\"", conf_origin(p),
                           items[i]);
            return -1;
        }
    }
    return flag;
}

int saslcli_init(struct conf_errors *errs)
{
    saslcli_free();
    noplaintext(P_SMTP_SASL_SECURITY_OPTIONS, errs);
    noplaintext(P_SMTP_SASL_TLS_SECURITY_OPTIONS, errs);
    table_list_open(&password_maps, P_SMTP_SASL_PASSWORD_MAPS, 0, errs);
    return 0;
}

void saslcli_free(void)
{
    table_list_free(&password_maps);
    memset(&password_maps, 0, sizeof password_maps);
}

/* "user:password" for the target: 1 found, 0 none, -1 a table failed. */
static int credentials(const struct saslcli_target *t, char *out, size_t len)
{
    char keys[4][320];
    int n = 0;
    if (t->bracketed) {
        snprintf(keys[n++], sizeof keys[0], "[%s]:%d", t->nexthop, t->port);
        snprintf(keys[n++], sizeof keys[0], "[%s]", t->nexthop);
    }
    snprintf(keys[n++], sizeof keys[0], "%s", t->host);
    if (!t->bracketed)
        snprintf(keys[n++], sizeof keys[0], "%s", t->nexthop);
    for (int i = 0; i < n; i++) {
        const char *value;
        int r = table_list_get(&password_maps, keys[i], &value, NULL);
        if (r != 0) {
            if (r > 0)
                str_copy(out, value, len);
            return r;
        }
    }
    return 0;
}

static int offered(const char *mechs, const char *name)
{
    char copy[512], *items[32];
    str_copy(copy, mechs, sizeof copy);
    int n = str_split_list(copy, items, 32);
    for (int i = 0; i < n; i++)
        if (str_ieq(items[i], name))
            return 1;
    return 0;
}

/* Send "prefix" + base64(data) + CRLF, wiping the buffer after. */
static int send_b64(struct smtpio *io, const char *prefix, const unsigned char *data, size_t n)
{
    unsigned char line[2 * MAX_SECRET + 64];
    size_t p = strlen(prefix);
    if (p + (n + 2) / 3 * 4 + 3 > sizeof line)
        return -1;
    memcpy(line, prefix, p);
    p += (size_t)EVP_EncodeBlock(line + p, data, (int)n);
    memcpy(line + p, "\r\n", 2);
    int r = smtpio_write(io, (const char *)line, p + 2);
    OPENSSL_cleanse(line, sizeof line);
    return r;
}

/* The exchange; returns the final reply code (235 on success) or -1. */
static int exchange(struct smtpio *io, const char *mech, const char *user, const char *pw,
                    char *text, size_t len)
{
    size_t ul = strlen(user), pl = strlen(pw);
    if (strcmp(mech, "PLAIN") == 0) {
        unsigned char msg[MAX_SECRET + 2];
        msg[0] = '\0';
        memcpy(msg + 1, user, ul);
        msg[ul + 1] = '\0';
        memcpy(msg + ul + 2, pw, pl);
        int r = send_b64(io, "AUTH PLAIN ", msg, ul + pl + 2);
        OPENSSL_cleanse(msg, sizeof msg);
        return r < 0 ? -1 : smtpio_reply(io, text, len);
    }
    if (smtpio_printf(io, "AUTH LOGIN") < 0)
        return -1;
    int code = smtpio_reply(io, text, len);
    if (code != 334 || send_b64(io, "", (const unsigned char *)user, ul) < 0)
        return code == 334 ? -1 : code;
    code = smtpio_reply(io, text, len);
    if (code != 334 || send_b64(io, "", (const unsigned char *)pw, pl) < 0)
        return code == 334 ? -1 : code;
    return smtpio_reply(io, text, len);
}

int saslcli_login(struct smtpio *io, const struct saslcli_target *t, char *why, size_t len)
{
    if (!conf_bool(P_SMTP_SASL_AUTH_ENABLE) || *t->mechs == '\0')
        return 0; /* as Postfix: a server without AUTH gets mail without it */
    char secret[MAX_SECRET];
    int r = credentials(t, secret, sizeof secret);
    if (r <= 0) {
        if (r < 0)
            snprintf(why, len, "4.3.0 SASL password lookup failed for %s", t->relay);
        return r;
    }
    char *colon = strchr(secret, ':');
    if (colon == NULL) {
        OPENSSL_cleanse(secret, sizeof secret);
        log_warn(NULL, "smtp_sasl_password_maps: the entry for %s is not user:password",
                 t->relay);
        snprintf(why, len, "4.3.5 SASL credentials for %s are malformed", t->relay);
        return -1;
    }
    *colon = '\0';
    int plain_ok = noplaintext(t->tls ? P_SMTP_SASL_TLS_SECURITY_OPTIONS
                                      : P_SMTP_SASL_SECURITY_OPTIONS, NULL) == 0;
    const char *mech = !plain_ok ? NULL : offered(t->mechs, "PLAIN") ? "PLAIN"
                                        : offered(t->mechs, "LOGIN") ? "LOGIN" : NULL;
    if (mech == NULL) {
        OPENSSL_cleanse(secret, sizeof secret);
        snprintf(why, len, "4.7.0 SASL authentication failed; cannot authenticate to server "
                 "%s: no mechanism available%s", t->relay,
                 plain_ok ? "" : t->tls ? " (smtp_sasl_tls_security_options forbid plaintext)"
                                        : " (no TLS, smtp_sasl_security_options forbid plaintext)");
        log_warn(NULL, "%s", why + 6);
        return -1;
    }
    char text[600] = "connection lost";
    int code = exchange(io, mech, secret, colon + 1, text, sizeof text);
    OPENSSL_cleanse(secret, sizeof secret);
    if (code == 235)
        return 0;
    snprintf(why, len, "4.7.0 SASL authentication failed; server %s said: %s", t->relay, text);
    log_warn(NULL, "%s", why + 6);
    return -1;
}
