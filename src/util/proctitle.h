/* proctitle: what `ps` shows for a process ("keypost: smtpd -c FILE"), as
 * Postfix and OpenSMTPD name their processes by role.
 *
 * proctitle_init() must run first thing in main(): it moves argv's strings
 * and the environment to the heap (argv[] and environ then point there), so
 * that the memory the kernel shows as the command line can be rewritten. */
#ifndef KP_PROCTITLE_H
#define KP_PROCTITLE_H

void proctitle_init(int argc, char **argv);
/* Text put after every title, e.g. "-c FILE": it tells instances apart. */
void proctitle_suffix(const char *text);
/* "keypost: " followed by the formatted text, cut to the space that the
 * original command line and environment occupied; the thread name (comm,
 * shown by top) becomes "keypost-" and the first word. */
void proctitle_set(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
