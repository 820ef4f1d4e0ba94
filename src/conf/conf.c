/* conf: the parameter table, the main.cf reader and $name expansion. */
#include "conf/conf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/buf.h"
#include "util/strutil.h"

struct param_def {
    const char *name;
    enum conf_type type;
    const char *def;
    const char *choices; /* CT_ENUM: "a|b|c" */
};

static const struct param_def defs[P_COUNT] = {
    [P_MYHOSTNAME] = {"myhostname", CT_STR, "", NULL},
    [P_MYDESTINATION] = {"mydestination", CT_LIST, "$myhostname, localhost", NULL},
    [P_MYNETWORKS] = {"mynetworks", CT_LIST, "127.0.0.0/8, [::1]/128", NULL},
    [P_RELAYHOST] = {"relayhost", CT_STR, "", NULL},
    [P_QUEUE_DIRECTORY] = {"queue_directory", CT_STR, "/var/spool/keypost", NULL},
    [P_MAIL_OWNER] = {"mail_owner", CT_STR, "keypost", NULL},
    [P_MAILLOG_FILE] = {"maillog_file", CT_STR, "", NULL},
    [P_MESSAGE_SIZE_LIMIT] = {"message_size_limit", CT_LONG, "10240000", NULL},
    [P_SMTPD_RECIPIENT_LIMIT] = {"smtpd_recipient_limit", CT_LONG, "1000", NULL},
    [P_SMTPD_TIMEOUT] = {"smtpd_timeout", CT_TIME, "300s", NULL},
    [P_SMTPD_CLIENT_CONNECTION_COUNT_LIMIT] =
        {"smtpd_client_connection_count_limit", CT_LONG, "50", NULL},
    [P_SMTPD_CLIENT_EVENT_LIMIT_EXCEPTIONS] =
        {"smtpd_client_event_limit_exceptions", CT_LIST, "$mynetworks", NULL},
    [P_SMTPD_FORBID_BARE_NEWLINE] =
        {"smtpd_forbid_bare_newline", CT_ENUM, "normalize", "normalize|yes|reject|no"},
    [P_LINE_LENGTH_LIMIT] = {"line_length_limit", CT_LONG, "2048", NULL},
    [P_SMTPD_HARD_ERROR_LIMIT] = {"smtpd_hard_error_limit", CT_LONG, "20", NULL},
    [P_SMTPD_BANNER] = {"smtpd_banner", CT_STR, "$myhostname ESMTP keypost", NULL},
    [P_SMTPD_LISTEN] = {"smtpd_listen", CT_LIST, "0.0.0.0:25, [::]:25", NULL},
    [P_SUBMISSION_LISTEN] = {"submission_listen", CT_LIST, "", NULL},
    [P_SMTPS_LISTEN] = {"smtps_listen", CT_LIST, "", NULL},
    [P_SMTPD_WORKER_PROCESSES] = {"smtpd_worker_processes", CT_LONG, "0", NULL},
    [P_SMTPD_TLS_CERT_FILE] = {"smtpd_tls_cert_file", CT_STR, "", NULL},
    [P_SMTPD_TLS_KEY_FILE] = {"smtpd_tls_key_file", CT_STR, "$smtpd_tls_cert_file", NULL},
    [P_SMTPD_TLS_CHAIN_FILES] = {"smtpd_tls_chain_files", CT_LIST, "", NULL},
    [P_SMTPD_TLS_SECURITY_LEVEL] =
        {"smtpd_tls_security_level", CT_ENUM, "none", "none|may|encrypt"},
    [P_SMTPD_TLS_ASK_CCERT] = {"smtpd_tls_ask_ccert", CT_BOOL, "no", NULL},
    [P_SMTPD_TLS_REQ_CCERT] = {"smtpd_tls_req_ccert", CT_BOOL, "no", NULL},
    [P_SMTPD_TLS_CAFILE] = {"smtpd_tls_CAfile", CT_STR, "", NULL},
    [P_SMTPD_TLS_CAPATH] = {"smtpd_tls_CApath", CT_STR, "", NULL},
    [P_SMTPD_TLS_CCERT_VERIFYDEPTH] = {"smtpd_tls_ccert_verifydepth", CT_LONG, "9", NULL},
    [P_SMTPD_TLS_FINGERPRINT_DIGEST] =
        {"smtpd_tls_fingerprint_digest", CT_ENUM, "sha256", "sha256|sha1|md5"},
    [P_SMTPD_TLS_RECEIVED_HEADER] = {"smtpd_tls_received_header", CT_BOOL, "no", NULL},
    [P_TLS_TRUST_SERVER_CCERTS] = {"tls_trust_server_ccerts", CT_BOOL, "no", NULL},
    [P_TLS_APPEND_DEFAULT_CA] = {"tls_append_default_CA", CT_BOOL, "no", NULL},
    [P_RELAY_CLIENTCERTS] = {"relay_clientcerts", CT_STR, "", NULL},
    [P_SMTPD_CLIENT_RESTRICTIONS] = {"smtpd_client_restrictions", CT_LIST, "", NULL},
    [P_SMTPD_HELO_RESTRICTIONS] = {"smtpd_helo_restrictions", CT_LIST, "", NULL},
    [P_SMTPD_SENDER_RESTRICTIONS] = {"smtpd_sender_restrictions", CT_LIST, "", NULL},
    [P_SMTPD_RELAY_RESTRICTIONS] = {"smtpd_relay_restrictions", CT_LIST,
                                    "permit_mynetworks, reject_unauth_destination", NULL},
    [P_SMTPD_RECIPIENT_RESTRICTIONS] = {"smtpd_recipient_restrictions", CT_LIST, "", NULL},
    [P_SMTP_TLS_SECURITY_LEVEL] = {"smtp_tls_security_level", CT_ENUM, "none",
                                   "none|may|encrypt|fingerprint|verify|secure|dane"},
    [P_SMTP_TLS_CERT_FILE] = {"smtp_tls_cert_file", CT_STR, "", NULL},
    [P_SMTP_TLS_KEY_FILE] = {"smtp_tls_key_file", CT_STR, "$smtp_tls_cert_file", NULL},
    [P_SMTP_TLS_CAFILE] = {"smtp_tls_CAfile", CT_STR, "", NULL},
    [P_SMTP_TLS_POLICY_MAPS] = {"smtp_tls_policy_maps", CT_STR, "", NULL},
    [P_SMTP_TLS_CHAIN_FILES] = {"smtp_tls_chain_files", CT_LIST, "", NULL},
    [P_SMTP_TLS_FINGERPRINT_DIGEST] =
        {"smtp_tls_fingerprint_digest", CT_ENUM, "sha256", "sha256|sha1|md5"},
    [P_SMTP_CONNECT_TIMEOUT] = {"smtp_connect_timeout", CT_TIME, "30s", NULL},
    [P_SMTP_HELO_TIMEOUT] = {"smtp_helo_timeout", CT_TIME, "300s", NULL},
    [P_SMTP_DATA_DONE_TIMEOUT] = {"smtp_data_done_timeout", CT_TIME, "600s", NULL},
    [P_SMTP_HELO_NAME] = {"smtp_helo_name", CT_STR, "$myhostname", NULL},
    [P_TRANSPORT_MAPS] = {"transport_maps", CT_STR, "", NULL},
    [P_DNS_RESOLVER] = {"dns_resolver", CT_STR, "", NULL},
    [P_BOUNCE_QUEUE_LIFETIME] = {"bounce_queue_lifetime", CT_TIME, "5d", NULL},
    [P_DEFAULT_PROCESS_LIMIT] = {"default_process_limit", CT_LONG, "100", NULL},
    [P_SMTPD_POLICY_SERVICE_TIMEOUT] = {"smtpd_policy_service_timeout", CT_TIME, "100s", NULL},
    [P_SMTPD_POLICY_SERVICE_MAX_IDLE] = {"smtpd_policy_service_max_idle", CT_TIME, "300s", NULL},
    [P_SMTPD_POLICY_SERVICE_MAX_TTL] = {"smtpd_policy_service_max_ttl", CT_TIME, "1000s", NULL},
    [P_SMTPD_POLICY_SERVICE_TRY_LIMIT] = {"smtpd_policy_service_try_limit", CT_LONG, "2", NULL},
    [P_SMTPD_POLICY_SERVICE_RETRY_DELAY] =
        {"smtpd_policy_service_retry_delay", CT_TIME, "1s", NULL},
    [P_SMTPD_POLICY_SERVICE_DEFAULT_ACTION] = {"smtpd_policy_service_default_action", CT_STR,
                                               "451 4.3.5 Server configuration problem", NULL},
    [P_SMTPD_POLICY_SERVICE_POLICY_CONTEXT] =
        {"smtpd_policy_service_policy_context", CT_STR, "", NULL},
    [P_DELIVERY_JOB_DEADLINE] = {"delivery_job_deadline", CT_TIME, "3600s", NULL},
    [P_LOCAL_TRANSPORT] = {"local_transport", CT_STR, "maildir:/var/mail/keypost", NULL},
    [P_MINIMAL_BACKOFF_TIME] = {"minimal_backoff_time", CT_TIME, "300s", NULL},
    [P_MAXIMAL_BACKOFF_TIME] = {"maximal_backoff_time", CT_TIME, "4000s", NULL},
    [P_QUEUE_RUN_DELAY] = {"queue_run_delay", CT_TIME, "300s", NULL},
    [P_MAXIMAL_QUEUE_LIFETIME] = {"maximal_queue_lifetime", CT_TIME, "5d", NULL},
    [P_DEFAULT_DESTINATION_CONCURRENCY_LIMIT] =
        {"default_destination_concurrency_limit", CT_LONG, "20", NULL},
    [P_LMTP_TIMEOUT] = {"lmtp_data_done_timeout", CT_TIME, "600s", NULL},
    [P_SMTP_LINE_LENGTH_LIMIT] = {"smtp_line_length_limit", CT_LONG, "998", NULL},
    /* Postfix's grades; "null" (no encryption) is not offered. keypost's
     * default is AEAD only: every TLS 1.2 CBC suite has a SHA1, SHA256 or
     * SHA384 MAC, while the AEAD suites' MAC is the cipher itself. */
    [P_SMTPD_TLS_CIPHERS] = {"smtpd_tls_ciphers", CT_ENUM, "high", "export|low|medium|high"},
    [P_SMTPD_TLS_EXCLUDE_CIPHERS] =
        {"smtpd_tls_exclude_ciphers", CT_LIST, "SHA1, SHA256, SHA384", NULL},
    [P_SMTPD_PER_REQUEST_DEADLINE] = {"smtpd_per_request_deadline", CT_BOOL, "yes", NULL},
    [P_SMTPD_MIN_DATA_RATE] = {"smtpd_min_data_rate", CT_LONG, "500", NULL},
    /* keypost's own: a whole session ends after this (0: no limit). */
    [P_SMTPD_SESSION_DEADLINE] = {"smtpd_session_deadline", CT_TIME, "3600s", NULL},
    /* keypost's own: sessions one smtpd worker serves at once. */
    [P_SMTPD_SESSION_LIMIT] = {"smtpd_session_limit", CT_LONG, "4000", NULL},
    /* Address classes and recipient validation (addr/addrclass.h). */
    [P_VIRTUAL_ALIAS_DOMAINS] = {"virtual_alias_domains", CT_LIST, "$virtual_alias_maps", NULL},
    [P_VIRTUAL_MAILBOX_DOMAINS] =
        {"virtual_mailbox_domains", CT_LIST, "$virtual_mailbox_maps", NULL},
    [P_RELAY_DOMAINS] = {"relay_domains", CT_LIST, "", NULL},
    /* Postfix's default names the system's users; keypost has none of its
     * own, so empty (every local address exists), with a warning. */
    [P_LOCAL_RECIPIENT_MAPS] = {"local_recipient_maps", CT_LIST, "", NULL},
    [P_VIRTUAL_ALIAS_MAPS] = {"virtual_alias_maps", CT_LIST, "", NULL},
    [P_VIRTUAL_MAILBOX_MAPS] = {"virtual_mailbox_maps", CT_LIST, "", NULL},
    [P_RELAY_RECIPIENT_MAPS] = {"relay_recipient_maps", CT_LIST, "", NULL},
    [P_RECIPIENT_DELIMITER] = {"recipient_delimiter", CT_STR, "", NULL},
    [P_SMTPD_REJECT_UNLISTED_RECIPIENT] =
        {"smtpd_reject_unlisted_recipient", CT_BOOL, "yes", NULL},
    [P_SMTPD_REJECT_UNLISTED_SENDER] = {"smtpd_reject_unlisted_sender", CT_BOOL, "no", NULL},
    /* Empty: relay domains go where other remote mail goes (relayhost or
     * MX); Postfix's "relay" transport is that. */
    [P_RELAY_TRANSPORT] = {"relay_transport", CT_STR, "", NULL},
    [P_ALIAS_MAPS] = {"alias_maps", CT_LIST, "", NULL},
    [P_VIRTUAL_ALIAS_RECURSION_LIMIT] =
        {"virtual_alias_recursion_limit", CT_LONG, "1000", NULL},
    [P_VIRTUAL_ALIAS_EXPANSION_LIMIT] =
        {"virtual_alias_expansion_limit", CT_LONG, "1000", NULL},
    /* Postfix's default is its virtual(8) agent; keypost has none of its
     * own yet, so virtual mailbox domains need one named (Dovecot's LMTP). */
    [P_VIRTUAL_TRANSPORT] = {"virtual_transport", CT_STR, "virtual", NULL},
    [P_CANONICAL_MAPS] = {"canonical_maps", CT_LIST, "", NULL},
    [P_SENDER_CANONICAL_MAPS] = {"sender_canonical_maps", CT_LIST, "", NULL},
    [P_RECIPIENT_CANONICAL_MAPS] = {"recipient_canonical_maps", CT_LIST, "", NULL},
    /* Postfix's defaults are yes; keypost's no (see addr/rewrite.h). */
    [P_SWAP_BANGPATH] = {"swap_bangpath", CT_BOOL, "no", NULL},
    [P_ALLOW_PERCENT_HACK] = {"allow_percent_hack", CT_BOOL, "no", NULL},
    [P_MYORIGIN] = {"myorigin", CT_STR, "$myhostname", NULL},
    /* Derived from myhostname unless set (derive_mydomain). */
    [P_MYDOMAIN] = {"mydomain", CT_STR, "localdomain", NULL},
    [P_APPEND_AT_MYORIGIN] = {"append_at_myorigin", CT_BOOL, "yes", NULL},
    /* Postfix 3.0 and later default to no (with compatibility_level >= 1),
     * Postfix 2 to yes: "user@host" completed with ".$mydomain" can reach
     * a host the sender never named, so the newer, safer default. */
    [P_APPEND_DOT_MYDOMAIN] = {"append_dot_mydomain", CT_BOOL, "no", NULL},
    [P_SMTPD_PEERNAME_LOOKUP] = {"smtpd_peername_lookup", CT_BOOL, "yes", NULL},
    /* keypost's own: how long the greeting may wait for the client's name
     * (Postfix waits as long as the system resolver does). */
    [P_SMTPD_PEERNAME_LOOKUP_TIMEOUT] =
        {"smtpd_peername_lookup_timeout", CT_TIME, "10s", NULL},
    [P_UNKNOWN_CLIENT_REJECT_CODE] = {"unknown_client_reject_code", CT_LONG, "450", NULL},
    /* issue 10: virtual mailboxes */
    [P_VIRTUAL_MAILBOX_BASE] = {"virtual_mailbox_base", CT_STR, "", NULL},
    [P_VIRTUAL_UID_MAPS] = {"virtual_uid_maps", CT_LIST, "", NULL},
    [P_VIRTUAL_GID_MAPS] = {"virtual_gid_maps", CT_LIST, "", NULL},
    [P_VIRTUAL_MINIMUM_UID] = {"virtual_minimum_uid", CT_LONG, "100", NULL},
    /* issue 13: logging */
    [P_SYSLOG_NAME] = {"syslog_name", CT_STR, "keypost", NULL},
    [P_SYSLOG_FACILITY] = {"syslog_facility", CT_ENUM, "mail",
                           "mail|daemon|user|local0|local1|local2|local3|local4|local5|local6|"
                           "local7"},
};

struct param_val {
    char *raw;      /* as written, before $ expansion */
    char *value;    /* expanded */
    long number;
    char origin[300];
};

static struct param_val vals[P_COUNT];

static int finish(struct conf_errors *errs);

const char *conf_name(enum conf_param p)
{
    return defs[p].name;
}

void conf_error(struct conf_errors *errs, const char *fmt, ...)
{
    struct buf b;
    buf_init(&b, 4096);
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(&b, fmt, ap);
    va_end(ap);
    char **m = realloc(errs->msgs, sizeof(char *) * (size_t)(errs->count + 1));
    if (m == NULL) {
        buf_free(&b);
        return;
    }
    errs->msgs = m;
    errs->msgs[errs->count++] = b.data ? b.data : strdup("");
}

static struct conf_errors warnings;

void conf_warning(const char *fmt, ...)
{
    struct buf b;
    buf_init(&b, 4096);
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(&b, fmt, ap);
    va_end(ap);
    conf_error(&warnings, "%s", buf_str(&b));
    buf_free(&b);
}

struct conf_errors *conf_warnings(void)
{
    return &warnings;
}

void conf_errors_free(struct conf_errors *errs)
{
    for (int i = 0; i < errs->count; i++)
        free(errs->msgs[i]);
    free(errs->msgs);
    errs->msgs = NULL;
    errs->count = 0;
}

static int find_param(const char *name)
{
    for (int i = 0; i < P_COUNT; i++)
        if (strcmp(defs[i].name, name) == 0)
            return i;
    return -1;
}

static void set_raw(int p, const char *value, const char *origin)
{
    free(vals[p].raw);
    vals[p].raw = strdup(value);
    str_copy(vals[p].origin, origin, sizeof vals[p].origin);
}

void conf_defaults(void)
{
    conf_errors_free(&warnings);
    char host[256] = "localhost";
    gethostname(host, sizeof host - 1);
    for (int i = 0; i < P_COUNT; i++) {
        set_raw(i, defs[i].def, "default");
        free(vals[i].value);
        vals[i].value = NULL;
    }
    set_raw(P_MYHOSTNAME, host, "default");
    struct conf_errors ignored = {0};
    finish(&ignored);
    conf_errors_free(&ignored);
}

/* Expand $name and ${name}, with a depth bound against loops. */
static int expand(const char *in, struct buf *out, int depth, struct conf_errors *errs,
                  const char *origin)
{
    if (depth > 10) {
        conf_error(errs, "%s: parameter expansion loop", origin);
        return -1;
    }
    for (const char *s = in; *s; s++) {
        if (*s != '$') {
            buf_append(out, s, 1);
            continue;
        }
        char name[128];
        size_t n = 0;
        const char *p = s + 1;
        int braced = *p == '{';
        if (braced)
            p++;
        while ((*p == '_' || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                (*p >= '0' && *p <= '9')) && n < sizeof name - 1)
            name[n++] = *p++;
        name[n] = '\0';
        if (braced && *p != '}')
            n = 0;
        int ref = n ? find_param(name) : -1;
        if (ref < 0) {
            conf_error(errs, "%s: unknown parameter in expansion: $%s", origin, name);
            return -1;
        }
        if (expand(vals[ref].raw, out, depth + 1, errs, origin) < 0)
            return -1;
        s = braced ? p : p - 1;
    }
    return 0;
}

static int contains(const char *choices, const char *v)
{
    size_t n = strlen(v);
    for (const char *c = choices; *c;) {
        const char *bar = strchr(c, '|');
        size_t len = bar ? (size_t)(bar - c) : strlen(c);
        if (len == n && strncmp(c, v, n) == 0)
            return 1;
        if (!bar)
            break;
        c = bar + 1;
    }
    return 0;
}

static void check_value(int p, struct conf_errors *errs)
{
    const struct param_def *d = &defs[p];
    struct param_val *v = &vals[p];
    switch (d->type) {
    case CT_BOOL:
        v->number = str_parse_bool(v->value);
        if (v->number < 0)
            conf_error(errs, "%s: bad value for %s: \"%s\" (expected yes or no)", v->origin,
                       d->name, v->value);
        break;
    case CT_LONG:
        v->number = str_parse_long(v->value);
        if (v->number < 0)
            conf_error(errs, "%s: bad value for %s: \"%s\" (expected a number)", v->origin,
                       d->name, v->value);
        break;
    case CT_TIME:
        v->number = str_parse_time(v->value);
        if (v->number < 0)
            conf_error(errs, "%s: bad value for %s: \"%s\" (expected a time such as 300s or 5m)",
                       v->origin, d->name, v->value);
        break;
    case CT_ENUM:
        if (!contains(d->choices, v->value))
            conf_error(errs, "%s: bad value for %s: \"%s\" (expected one of %s)", v->origin,
                       d->name, v->value, d->choices);
        break;
    default:
        break;
    }
}

/* Postfix's default for mydomain: $myhostname minus its first label, or
 * "localdomain" when that leaves nothing. Derived at every load, since a
 * file may set myhostname alone. A myhostname written with $mydomain (as
 * "mx.$mydomain") sees "localdomain" here instead of going round in a loop. */
static void derive_mydomain(void)
{
    if (strcmp(vals[P_MYDOMAIN].origin, "default") != 0)
        return;
    set_raw(P_MYDOMAIN, defs[P_MYDOMAIN].def, "default");
    struct conf_errors ignored = {0}; /* reported when myhostname is expanded */
    struct buf host;
    buf_init(&host, 4096);
    buf_puts(&host, "");
    expand(vals[P_MYHOSTNAME].raw, &host, 0, &ignored, vals[P_MYHOSTNAME].origin);
    conf_errors_free(&ignored);
    const char *dot = strchr(buf_str(&host), '.');
    if (dot && dot[1] && strchr(dot, '$') == NULL)
        set_raw(P_MYDOMAIN, dot + 1, "default");
    buf_free(&host);
}

static int finish(struct conf_errors *errs)
{
    int before = errs->count;
    derive_mydomain();
    for (int i = 0; i < P_COUNT; i++) {
        struct buf b;
        buf_init(&b, 65536);
        buf_puts(&b, "");
        expand(vals[i].raw, &b, 0, errs, vals[i].origin);
        free(vals[i].value);
        vals[i].value = b.data ? b.data : strdup("");
        check_value(i, errs);
    }
    return errs->count - before;
}

static void store_line(const char *path, int lineno, char *line, struct conf_errors *errs)
{
    char origin[300];
    snprintf(origin, sizeof origin, "%s:%d", path, lineno);
    char *eq = strchr(line, '=');
    if (eq == NULL) {
        conf_error(errs, "%s: missing '=' after parameter name", origin);
        return;
    }
    *eq = '\0';
    char *name = str_trim(line);
    char *value = str_trim(eq + 1);
    int p = find_param(name);
    if (p < 0) {
        conf_error(errs, "%s: unknown parameter \"%s\"", origin, name);
        return;
    }
    set_raw(p, value, origin);
}

/* Reads logical lines (continuations joined) and stores each. */
static int read_file(FILE *f, const char *path, struct conf_errors *errs)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int lineno = 0, start_line = 0;
    struct buf logical;
    buf_init(&logical, 1 << 20);
    while ((n = getline(&line, &cap, f)) >= 0) {
        lineno++;
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        char *t = line;
        while (*t == ' ' || *t == '\t')
            t++;
        if (*t == '#' || *t == '\0')
            continue;
        if (t != line && logical.len) {
            buf_puts(&logical, " ");
            buf_puts(&logical, t);
            continue;
        }
        if (t != line) {
            conf_error(errs, "%s:%d: continuation line without a parameter before it", path,
                       lineno);
            continue;
        }
        if (logical.len)
            store_line(path, start_line, logical.data, errs);
        buf_reset(&logical);
        if (buf_puts(&logical, line) < 0)
            conf_error(errs, "%s:%d: line too long", path, lineno);
        start_line = lineno;
    }
    if (logical.len)
        store_line(path, start_line, logical.data, errs);
    buf_free(&logical);
    free(line);
    return 0;
}

int conf_load(const char *path, struct conf_errors *errs)
{
    int before = errs->count;
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        conf_error(errs, "%s:0: cannot open configuration: %s", path, strerror(errno));
        return errs->count - before;
    }
    read_file(f, path, errs);
    fclose(f);
    finish(errs);
    return errs->count - before;
}

int conf_set(const char *name, const char *value, struct conf_errors *errs)
{
    int p = find_param(name);
    if (p < 0) {
        conf_error(errs, "unknown parameter \"%s\"", name);
        return -1;
    }
    set_raw(p, value, "command line");
    return finish(errs) ? -1 : 0;
}

const char *conf_str(enum conf_param p)
{
    return vals[p].value ? vals[p].value : "";
}

long conf_long(enum conf_param p)
{
    return vals[p].number;
}

int conf_bool(enum conf_param p)
{
    return vals[p].number > 0;
}

const char *conf_origin(enum conf_param p)
{
    return vals[p].origin;
}
