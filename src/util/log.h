/* log: one line per event, in Postfix's line shapes, so that the tools an
 * administrator runs on Postfix logs (pflogsumm, fail2ban, greps for a queue
 * id) work on keypost's.
 *
 * Where lines go, as log_open() is told by maillog_file:
 *   ""     syslog, facility mail, ident "keypost/ROLE" with the pid, as
 *          Postfix's "postfix/smtpd[PID]" (and a copy on stderr when stderr
 *          is a terminal, for an operator running serve by hand);
 *   PATH   appended to PATH, each line prefixed as Postfix's maillog_file
 *          does: "Nov 30 11:51:10 HOST keypost/ROLE[PID]: " (local time);
 *          /dev/stderr is a path like any other.
 * Before log_open() lines go to stderr in the file form (commands, errors
 * found at start).
 *
 * "keypost" and "mail" are the defaults of syslog_name and syslog_facility
 * (Postfix's parameters), see log_set_syslog().
 *
 * A line about a queued message starts with its queue id ("QID: to=<...>"),
 * as Postfix writes it. A line about an SMTP session ends with
 * " session=ID" (log_session): Postfix has no session id, since its smtpd
 * serves one client per process; keypost's workers serve many at once, and
 * the id at the end keeps the part that Postfix's parsers read unchanged. */
#ifndef KP_LOG_H
#define KP_LOG_H

#include <stdarg.h>
#include <stddef.h>

enum log_level { LOG_LVL_INFO, LOG_LVL_WARN, LOG_LVL_ERR, LOG_LVL_FATAL };

/* Set the role printed on every line ("smtpd", "qmgr", "master", ...); in
 * syslog mode it becomes the ident "keypost/ROLE". */
void log_set_role(const char *role);
const char *log_get_role(void);
/* The ident's first part (syslog_name: "NAME/ROLE", in both forms) and the
 * syslog facility by name (syslog_facility); call before log_open().
 * Returns 0, or -1 (nothing changed) for a name that log_name_ok() refuses
 * or a facility it does not know. */
int log_set_syslog(const char *name, const char *facility);
/* 1 when name suits syslog_name: 1 to 32 letters, digits, '.', '_', '-'. */
int log_name_ok(const char *name);
/* Hostname printed on each line of the file form. */
void log_set_hostname(const char *host);
/* Choose the destination from maillog_file (see above). Returns 0, or -1
 * with errno when PATH cannot be opened. */
int log_open(const char *maillog_file);
/* Open maillog_file's path again (after logrotate renamed it); lines go on
 * to the old file when that fails. No-op in syslog mode. 0 or -1. */
int log_reopen(void);
/* The file's descriptor (to hand to the log writer), or -1. */
int log_file_fd(void);
/* Write to fd from now on, in place of the file (the log writer, given the
 * reopened file by the master). fd is consumed. 0 or -1. */
int log_adopt_file(int fd);
/* 1 when lines go to a file (maillog_file set), 0 for syslog or stderr. */
int log_to_file(void);
/* Write finished lines to fd instead (a pipe to the process that owns the
 * file, see master/logwriter.h); fd < 0 goes back to the own file. */
void log_use_fd(int fd);
/* Write one finished line (with its '\n') where lines go; for the log
 * writer, which passes on what the other processes wrote. */
void log_write_raw(const char *line, size_t len);

void log_msg(enum log_level lvl, const char *id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void log_vmsg(enum log_level lvl, const char *id, const char *fmt, va_list ap);
/* A line about SMTP session sid: " session=SID" is appended. */
void log_session(enum log_level lvl, const char *sid, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_info(id, ...) log_msg(LOG_LVL_INFO, id, __VA_ARGS__)
#define log_warn(id, ...) log_msg(LOG_LVL_WARN, id, __VA_ARGS__)
#define log_err(id, ...) log_msg(LOG_LVL_ERR, id, __VA_ARGS__)
#define log_sinfo(sid, ...) log_session(LOG_LVL_INFO, sid, __VA_ARGS__)
#define log_swarn(sid, ...) log_session(LOG_LVL_WARN, sid, __VA_ARGS__)

#endif
