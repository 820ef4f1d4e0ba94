/* logwriter: the one process that writes maillog_file, as Postfix's
 * postlogd does. Every other process writes its lines into a pipe that the
 * writer empties into the file; so only the writer, which keeps root's
 * rights, has to open the file again when logrotate renamed it (SIGUSR1 or
 * SIGHUP to the master), and the unprivileged workers need no access to
 * the log's directory. Lines up to PIPE_BUF bytes cross the pipe whole. */
#ifndef KP_LOGWRITER_H
#define KP_LOGWRITER_H

/* In the master, after log_open() of a file: make the pipe. 0 or -1. */
int logwriter_prepare(void);
/* 1 when a pipe exists (maillog_file is a file). */
int logwriter_enabled(void);
/* In a new child other than the writer: send lines into the pipe. */
void logwriter_attach(void);
/* The writer process's body: returns never. SIGUSR1 reopens the file;
 * SIGTERM empties the pipe and ends it. */
__attribute__((noreturn)) void logwriter_run(void);

#endif
