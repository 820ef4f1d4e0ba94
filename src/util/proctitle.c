/* proctitle: rewrites the argv area in place. The kernel reports
 * /proc/PID/cmdline from the memory between the first argument and the end
 * of the argument strings; when the environment strings follow directly,
 * they are taken over too, which gives room for a title longer than
 * "keypost serve -c FILE". */
#include "util/proctitle.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

extern char **environ;

static char *area;      /* the first argument's memory */
static size_t area_len; /* up to the end of the last contiguous string */
static char suffix[1024];
/* The copies of the arguments, held here for the process's life: argv's
 * pointers may be moved about (getopt), and the copies must stay found. */
static char **arg_copies;

/* The end of the contiguous strings that start at argv[0]. */
static char *contiguous_end(int argc, char **argv)
{
    char *end = argv[0] + strlen(argv[0]) + 1;
    for (int i = 1; i < argc; i++)
        if (argv[i] == end)
            end = argv[i] + strlen(argv[i]) + 1;
    for (int i = 0; environ && environ[i]; i++)
        if (environ[i] == end)
            end = environ[i] + strlen(environ[i]) + 1;
    return end;
}

/* Copy the environment to the heap; on failure keep it where it is and
 * leave the area to the arguments alone. Returns 0 or -1. */
static int move_environ(void)
{
    int n = 0;
    while (environ && environ[n])
        n++;
    char **copy = calloc((size_t)n + 1, sizeof *copy);
    if (copy == NULL)
        return -1;
    for (int i = 0; i < n; i++)
        if ((copy[i] = strdup(environ[i])) == NULL)
            return -1; /* the few copies made are leaked: start-up only */
    environ = copy;
    return 0;
}

void proctitle_init(int argc, char **argv)
{
    if (argc < 1 || argv[0] == NULL)
        return;
    char *start = argv[0];
    char *end = contiguous_end(argc, argv);
    char *args_end = argv[argc - 1] + strlen(argv[argc - 1]) + 1;
    if (end > args_end && move_environ() < 0)
        end = args_end;
    arg_copies = calloc((size_t)argc + 1, sizeof *arg_copies);
    for (int i = 0; arg_copies && i < argc; i++)
        if ((arg_copies[i] = strdup(argv[i])) == NULL)
            return; /* no title then: argv keeps pointing at the area */
    if (arg_copies == NULL)
        return;
    for (int i = 0; i < argc; i++)
        argv[i] = arg_copies[i];
    /* glibc's name for messages (getopt's among them) pointed into the area. */
    program_invocation_name = argv[0];
    const char *slash = strrchr(argv[0], '/');
    program_invocation_short_name = slash ? (char *)slash + 1 : argv[0];
    area = start;
    area_len = (size_t)(end - start);
}

void proctitle_suffix(const char *text)
{
    snprintf(suffix, sizeof suffix, "%s", text);
}

void proctitle_set(const char *fmt, ...)
{
    char title[1400];
    int n = snprintf(title, sizeof title, "keypost: ");
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(title + n, sizeof title - (size_t)n, fmt, ap);
    va_end(ap);
    if (m > 0 && *suffix && (size_t)(n + m) < sizeof title)
        snprintf(title + n + m, sizeof title - (size_t)(n + m), " %s", suffix);
    char comm[16]; /* the kernel's limit, with the NUL */
    snprintf(comm, sizeof comm, "keypost-%.*s", (int)strcspn(title + n, " "), title + n);
    prctl(PR_SET_NAME, comm, 0, 0, 0);
    if (area == NULL || area_len < 2)
        return;
    /* The rest is cleared: ps would show old arguments after a NUL-free
     * gap otherwise. */
    memset(area, 0, area_len);
    snprintf(area, area_len, "%s", title);
}
