/* conf: keypost's parameters, one table of name, type, default and check.
 * The file format is Postfix's main.cf: "name = value", '#' comments, a line
 * that starts with white space continues the previous one, and "$name" or
 * "${name}" expands to another parameter's value. Where Postfix has the
 * feature, the name, default and meaning are Postfix's. */
#ifndef KP_CONF_H
#define KP_CONF_H

#include <stddef.h>

enum conf_type { CT_STR, CT_BOOL, CT_LONG, CT_TIME, CT_ENUM, CT_LIST };

enum conf_param {
    P_MYHOSTNAME,
    P_MYDESTINATION,
    P_MYNETWORKS,
    P_RELAYHOST,
    P_QUEUE_DIRECTORY,
    P_MAIL_OWNER,
    P_MAILLOG_FILE,
    P_MESSAGE_SIZE_LIMIT,
    P_SMTPD_RECIPIENT_LIMIT,
    P_SMTPD_TIMEOUT,
    P_SMTPD_CLIENT_CONNECTION_COUNT_LIMIT,
    P_SMTPD_CLIENT_EVENT_LIMIT_EXCEPTIONS,
    P_SMTPD_FORBID_BARE_NEWLINE,
    P_LINE_LENGTH_LIMIT,
    P_SMTPD_HARD_ERROR_LIMIT,
    P_SMTPD_BANNER,
    P_SMTPD_LISTEN,
    P_SUBMISSION_LISTEN,
    P_SMTPS_LISTEN,
    P_SMTPD_WORKER_PROCESSES,
    P_SMTPD_TLS_CERT_FILE,
    P_SMTPD_TLS_KEY_FILE,
    P_SMTPD_TLS_CHAIN_FILES,
    P_SMTPD_TLS_SECURITY_LEVEL,
    P_SMTPD_TLS_ASK_CCERT,
    P_SMTPD_TLS_REQ_CCERT,
    P_SMTPD_TLS_CAFILE,
    P_SMTPD_TLS_CAPATH,
    P_SMTPD_TLS_CCERT_VERIFYDEPTH,
    P_SMTPD_TLS_FINGERPRINT_DIGEST,
    P_SMTPD_TLS_RECEIVED_HEADER,
    P_TLS_TRUST_SERVER_CCERTS,
    P_TLS_APPEND_DEFAULT_CA,
    P_RELAY_CLIENTCERTS,
    P_SMTPD_CLIENT_RESTRICTIONS,
    P_SMTPD_HELO_RESTRICTIONS,
    P_SMTPD_SENDER_RESTRICTIONS,
    P_SMTPD_RELAY_RESTRICTIONS,
    P_SMTPD_RECIPIENT_RESTRICTIONS,
    P_SMTP_TLS_SECURITY_LEVEL,
    P_SMTP_TLS_CERT_FILE,
    P_SMTP_TLS_KEY_FILE,
    P_SMTP_TLS_CAFILE,
    P_SMTP_TLS_POLICY_MAPS,
    P_SMTP_TLS_CHAIN_FILES,
    P_SMTP_TLS_FINGERPRINT_DIGEST,
    P_SMTP_CONNECT_TIMEOUT,
    P_SMTP_HELO_TIMEOUT,
    P_SMTP_DATA_DONE_TIMEOUT,
    P_SMTP_HELO_NAME,
    P_TRANSPORT_MAPS,
    P_DNS_RESOLVER,
    P_BOUNCE_QUEUE_LIFETIME,
    P_DEFAULT_PROCESS_LIMIT,
    P_SMTPD_POLICY_SERVICE_TIMEOUT,
    P_SMTPD_POLICY_SERVICE_MAX_IDLE,
    P_SMTPD_POLICY_SERVICE_MAX_TTL,
    P_SMTPD_POLICY_SERVICE_TRY_LIMIT,
    P_SMTPD_POLICY_SERVICE_RETRY_DELAY,
    P_SMTPD_POLICY_SERVICE_DEFAULT_ACTION,
    P_SMTPD_POLICY_SERVICE_POLICY_CONTEXT,
    P_DELIVERY_JOB_DEADLINE,
    P_LOCAL_TRANSPORT,
    P_MINIMAL_BACKOFF_TIME,
    P_MAXIMAL_BACKOFF_TIME,
    P_QUEUE_RUN_DELAY,
    P_MAXIMAL_QUEUE_LIFETIME,
    P_DEFAULT_DESTINATION_CONCURRENCY_LIMIT,
    P_LMTP_TIMEOUT,
    P_SMTP_LINE_LENGTH_LIMIT,
    P_SMTPD_TLS_CIPHERS,
    P_SMTPD_TLS_EXCLUDE_CIPHERS,
    P_SMTPD_PER_REQUEST_DEADLINE,
    P_SMTPD_MIN_DATA_RATE,
    P_SMTPD_SESSION_DEADLINE,
    P_SMTPD_SESSION_LIMIT,
    P_VIRTUAL_ALIAS_DOMAINS,
    P_VIRTUAL_MAILBOX_DOMAINS,
    P_RELAY_DOMAINS,
    P_LOCAL_RECIPIENT_MAPS,
    P_VIRTUAL_ALIAS_MAPS,
    P_VIRTUAL_MAILBOX_MAPS,
    P_RELAY_RECIPIENT_MAPS,
    P_RECIPIENT_DELIMITER,
    P_SMTPD_REJECT_UNLISTED_RECIPIENT,
    P_SMTPD_REJECT_UNLISTED_SENDER,
    P_RELAY_TRANSPORT,
    P_ALIAS_MAPS,
    P_VIRTUAL_ALIAS_RECURSION_LIMIT,
    P_VIRTUAL_ALIAS_EXPANSION_LIMIT,
    P_VIRTUAL_TRANSPORT,
    P_CANONICAL_MAPS,
    P_SENDER_CANONICAL_MAPS,
    P_RECIPIENT_CANONICAL_MAPS,
    P_SWAP_BANGPATH,
    P_ALLOW_PERCENT_HACK,
    P_MYORIGIN,
    P_MYDOMAIN,
    P_APPEND_AT_MYORIGIN,
    P_APPEND_DOT_MYDOMAIN,
    P_SMTPD_PEERNAME_LOOKUP,
    P_SMTPD_PEERNAME_LOOKUP_TIMEOUT,
    P_UNKNOWN_CLIENT_REJECT_CODE,
    /* issue 10: virtual mailboxes */
    P_VIRTUAL_MAILBOX_BASE,
    P_VIRTUAL_UID_MAPS,
    P_VIRTUAL_GID_MAPS,
    P_VIRTUAL_MINIMUM_UID,
    /* issue 13: logging */
    P_SYSLOG_NAME,
    P_SYSLOG_FACILITY,
    P_COUNT
};

/* Errors are collected as "FILE:LINE: message" strings. */
struct conf_errors {
    char **msgs;
    int count;
};

/* Reset every parameter to its default. */
void conf_defaults(void);
/* Read FILE on top of the defaults; every error found is added to errs.
 * Returns the number of errors (0: the configuration is usable). */
int conf_load(const char *path, struct conf_errors *errs);
/* Set one parameter as if read from a file (used by tests and the demo). */
int conf_set(const char *name, const char *value, struct conf_errors *errs);

const char *conf_str(enum conf_param p);
long conf_long(enum conf_param p);   /* CT_LONG, CT_TIME (seconds), CT_BOOL */
int conf_bool(enum conf_param p);
/* Where the value came from, for error messages: "FILE:LINE" or "default". */
const char *conf_origin(enum conf_param p);
const char *conf_name(enum conf_param p);

void conf_error(struct conf_errors *errs, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void conf_errors_free(struct conf_errors *errs);
/* Warnings: things that work but that an operator should change. They are
 * collected while loading; `check` prints them, `serve` logs them. */
void conf_warning(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
struct conf_errors *conf_warnings(void);

#endif
