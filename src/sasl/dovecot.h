/* dovecot: the client side of Dovecot's authentication protocol (version
 * 1.x, as Postfix's smtpd_sasl_type = dovecot speaks it), on the worker's
 * event loop. One connection per authentication: VERSION and CPID out,
 * VERSION/MECH/SPID/CUID/COOKIE/DONE in, then AUTH and CONT out and
 * CONT/OK/FAIL in. The mechanisms Dovecot offers are remembered per worker
 * (every handshake refreshes them) so that EHLO can list them without
 * waiting. A Dovecot that does not answer within DOVECOT_TIMEOUT seconds
 * is a temporary failure. smtpd_sasl_path is "private/auth"-style (a UNIX
 * socket, relative to queue_directory when not absolute), "unix:/PATH" or
 * "inet:HOST:PORT" (an address, never a name: no blocking lookup). */
#ifndef KP_DOVECOT_H
#define KP_DOVECOT_H

struct event_base;
struct dovecot_auth;

#define DOVECOT_TIMEOUT 30
#define DOVECOT_PROBE_TIMEOUT 5  /* an EHLO may wait this long for the list */
#define DOVECOT_RETRY 10         /* after a failed probe, EHLO does not wait */

enum dovecot_answer {
    DA_OK,       /* text: the user name Dovecot authenticated */
    DA_CONT,     /* text: the next challenge, base64 (may be empty) */
    DA_FAIL,     /* text: Dovecot's reason, or "" */
    DA_TEMPFAIL, /* text: why (Dovecot down, timeout, garbled answer) */
};

typedef void (*dovecot_fn)(void *arg, enum dovecot_answer a, const char *text);

/* Use this loop (smtpd workers). */
void dovecot_set_base(struct event_base *base);
/* Check smtpd_sasl_path's form; 0 or -1. */
int dovecot_path_ok(const char *path);
/* The mechanisms last heard from Dovecot that the flag filter allows, space
 * separated ("PLAIN LOGIN"), or NULL when none are known yet (a handshake
 * is then started in the background). noanonymous, noplaintext: leave out
 * mechanisms Dovecot flags "anonymous", "plaintext"; "private" ones are
 * never listed. */
const char *dovecot_mechanisms(int noanonymous, int noplaintext);
/* Learn the mechanism list now (at worker start). */
void dovecot_probe(void);
/* When the list is not known yet: 1 when fn(arg) will be called from the
 * loop once a handshake has ended (well or not), 0 when there is nothing to
 * wait for (known, or Dovecot failed less than DOVECOT_RETRY seconds ago). */
int dovecot_mechanisms_wait(void (*fn)(void *), void *arg);
/* arg goes away: forget its waits. */
void dovecot_mechanisms_cancel(void *arg);
/* Start an authentication. initial: the base64 initial response, or NULL
 * when the client sent none ("" for "="). secured: the connection is
 * encrypted. fn is called from the loop, never from inside this call; after
 * DA_CONT the caller answers with dovecot_auth_continue(); after any other
 * answer the call is over (free it). */
struct dovecot_auth *dovecot_auth_start(const char *mech, const char *initial,
                                        const char *local_ip, const char *remote_ip,
                                        int secured, dovecot_fn fn, void *arg);
/* The client's base64 response to a DA_CONT challenge. */
void dovecot_auth_continue(struct dovecot_auth *a, const char *response);
/* Close and free; no more callbacks. NULL is fine. */
void dovecot_auth_free(struct dovecot_auth *a);

#endif
