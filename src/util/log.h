/* log: one line per event, to stderr or to maillog_file.
 * Every line carries the process role and pid ("keypost/smtpd[123]") and,
 * where the caller has one, an id (session id or queue id) so that a grep for
 * the id shows the whole story of a session or message. */
#ifndef KP_LOG_H
#define KP_LOG_H

#include <stdarg.h>

enum log_level { LOG_LVL_INFO, LOG_LVL_WARN, LOG_LVL_ERR, LOG_LVL_FATAL };

/* Set the role printed on every line ("smtpd", "qmgr", "master", ...). */
void log_set_role(const char *role);
/* Send lines to PATH (appended); NULL or "" means stderr. Returns 0 or -1. */
int log_open_file(const char *path);
/* Hostname printed on each line. */
void log_set_hostname(const char *host);

void log_msg(enum log_level lvl, const char *id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void log_vmsg(enum log_level lvl, const char *id, const char *fmt, va_list ap);

#define log_info(id, ...) log_msg(LOG_LVL_INFO, id, __VA_ARGS__)
#define log_warn(id, ...) log_msg(LOG_LVL_WARN, id, __VA_ARGS__)
#define log_err(id, ...) log_msg(LOG_LVL_ERR, id, __VA_ARGS__)

#endif
