/* logwriter: the one process that writes maillog_file, as Postfix's
 * postlogd does. Every other process writes its lines into a pipe that the
 * writer empties into the file. The writer runs as mail_owner: after
 * logrotate renamed the file (SIGUSR1 or SIGHUP to the master), the master,
 * root, opens the new file and hands the descriptor over a socket, so the
 * log's directory may stay root's and no process but the master and the
 * mailbox helper keeps root. Lines up to PIPE_BUF bytes cross the pipe
 * whole. */
#ifndef KP_LOGWRITER_H
#define KP_LOGWRITER_H

/* In the master, after log_open() of a file: make the pipe and the socket.
 * 0 or -1. */
int logwriter_prepare(void);
/* 1 when a pipe exists (maillog_file is a file). */
int logwriter_enabled(void);
/* In the master, after log_reopen(): give the writer the new file and wait
 * (2 s at most) until it says it took it; lines written after that go
 * there. 0, or -1 with errno (ETIMEDOUT: no answer). */
int logwriter_send_file(void);
/* In a new child other than the writer: send lines into the pipe. */
void logwriter_attach(void);
/* The writer process's body (already unprivileged): returns never.
 * SIGTERM empties the pipe and ends it. */
__attribute__((noreturn)) void logwriter_run(void);

#endif
