/* session: the SMTP server protocol as a state machine, without sockets.
 * The transport feeds it bytes and TLS events; it answers through the
 * session_io callbacks. Commands are dispatched through a table of
 * {verb, states in which it is allowed, handler}. Unit tests and the fuzzer
 * drive it directly. */
#ifndef KP_SESSION_H
#define KP_SESSION_H

#include <stddef.h>
#include <sys/socket.h>

struct tls_peer;
struct smtp_session;

/* LISTEN_LOCAL: the local submission socket of the sendmail command
 * (smtpd/localsubmit.h); LISTEN_SHOWQ: its queue listing socket, served by
 * server.c without a session. */
enum listener_kind { LISTEN_SMTP, LISTEN_SUBMISSION, LISTEN_SMTPS, LISTEN_LOCAL, LISTEN_SHOWQ };

struct session_io {
    /* Queue reply bytes for the client. */
    void (*write)(void *ctx, const char *p, size_t n);
    /* The 220 to STARTTLS is queued: flush it, then start the handshake and
     * call session_tls_established() when it is done. */
    void (*start_tls)(void *ctx);
    /* Flush what is queued, then close the connection. The session must
     * not be fed any more; the transport calls session_release(). */
    void (*close)(void *ctx);
    /* The session waited (for a commit) and can take input again. */
    void (*resume)(void *ctx);
};

struct session_client {
    struct sockaddr_storage addr;
    char addr_text[64];   /* "192.0.2.1" or "2001:db8::1" */
    char name[256];       /* forward-confirmed name, or "unknown" */
    char reverse_name[256]; /* the PTR name (even unconfirmed), or "unknown" */
    int name_tempfail;    /* name unknown for a temporary reason (DNS trouble) */
    int reverse_name_tempfail; /* the same for reverse_name */
    int port;
    char server_addr_text[64];
    int server_port;
    enum listener_kind kind;
    int tls_available;    /* a TLS context exists */
    /* LISTEN_LOCAL: the submitting user, as the kernel names it */
    unsigned local_uid;
    char local_login[64];
};

struct smtp_session *session_new(const struct session_io *io, void *ctx,
                                 const struct session_client *client);
/* Send the greeting (or, when refused, 421 and close). */
void session_start(struct smtp_session *s, const char *refusal);
/* Feed input; returns the bytes consumed. Less than n means the session is
 * waiting (commit, STARTTLS, closing): feed the rest after resume. */
size_t session_feed(struct smtp_session *s, const char *p, size_t n);
/* STARTTLS or implicit TLS handshake finished; peer describes it. */
void session_tls_established(struct smtp_session *s, const struct tls_peer *peer);
void session_timeout(struct smtp_session *s);
/* The server is stopping: end the session at the next safe point. */
void session_shutdown(struct smtp_session *s);
/* 1 while the session waits for the server's own work (a commit, a policy
 * server, a table): the client is not idle then, and no timeout applies. */
int session_waiting(const struct smtp_session *s);
/* 1 between commands (nothing half done). */
int session_is_idle(const struct smtp_session *s);
/* 1 when no command line is partly read and no message content is being
 * read (a transaction may be open): the next byte starts a new request. */
int session_between_requests(const struct smtp_session *s);
/* 1 while message content is read (DATA). */
int session_in_data(const struct smtp_session *s);
/* The transport is gone (EOF, error or after close). Frees the session
 * now (a pending policy or table lookup is cancelled), or once a pending
 * commit has finished. */
void session_release(struct smtp_session *s);
/* Session id used in the logs. */
const char *session_id(const struct smtp_session *s);

#endif
