/* keypost conf: the parameters as postconf(1) shows Postfix's, and the
 * PARAMETERS section of keypost.cf(5), both from the table in params.def. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "conf/conf.h"

#define DEFAULT_CONFIG "/etc/keypost/keypost.cf"

struct conf_opts {
    const char *config;
    int only_set;  /* -n */
    int defaults;  /* -d */
    int expand;    /* -x */
};

static int usage(void)
{
    fprintf(stderr, "usage: keypost conf [-c FILE] [-n] [-d] [-x] [NAME...]\n"
                    "       keypost conf --man\n");
    return 1;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(conf_name(*(const enum conf_param *)a), conf_name(*(const enum conf_param *)b));
}

/* Every parameter, in the order of their names. */
static void sorted_params(enum conf_param *out)
{
    for (int i = 0; i < P_COUNT; i++)
        out[i] = (enum conf_param)i;
    qsort(out, P_COUNT, sizeof *out, by_name);
}

static void print_param(enum conf_param p, const struct conf_opts *o)
{
    const char *v = o->expand ? conf_str(p) : conf_raw(p);
    printf("%s =%s%s\n", conf_name(p), *v ? " " : "", v);
}

static void print_messages(const struct conf_errors *e, const char *prefix)
{
    for (int i = 0; i < e->count; i++)
        fprintf(stderr, "%s%s\n", prefix, e->msgs[i]);
}

/* The defaults, or the file on top of them. 0, or 1 when the file has
 * errors: then nothing is printed, since a script would take the values
 * for the ones keypost uses. */
static int load(const struct conf_opts *o)
{
    conf_defaults();
    if (o->defaults)
        return 0;
    struct conf_errors errs = {0};
    int n = conf_load(o->config, &errs);
    print_messages(&errs, "");
    print_messages(conf_warnings(), "warning: ");
    conf_errors_free(&errs);
    return n ? 1 : 0;
}

/* NAME...: in the order asked; an unknown name is an error, the rest are
 * still shown. */
static int print_named(char **names, int n, const struct conf_opts *o)
{
    int rc = 0;
    for (int i = 0; i < n; i++) {
        int p = conf_lookup(names[i]);
        if (p < 0) {
            const char *near = conf_suggest(names[i]);
            fprintf(stderr, "keypost conf: unknown parameter \"%s\"%s%s%s\n", names[i],
                    near ? " (did you mean " : "", near ? near : "", near ? "?)" : "");
            rc = 1;
            continue;
        }
        if (!o->only_set || conf_in_file((enum conf_param)p))
            print_param((enum conf_param)p, o);
    }
    return rc;
}

static int parse_opts(int argc, char **argv, struct conf_opts *o)
{
    int opt;
    optind = 1;
    while ((opt = getopt(argc, argv, "c:ndx")) != -1) {
        switch (opt) {
        case 'c': o->config = optarg; break;
        case 'n': o->only_set = 1; break;
        case 'd': o->defaults = 1; break;
        case 'x': o->expand = 1; break;
        default: return -1;
        }
    }
    /* The defaults are never "set in the file". */
    return o->only_set && o->defaults ? -1 : 0;
}

int cli_conf(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--man") == 0)
        return cli_conf_man(stdout) < 0 ? 2 : 0;
    struct conf_opts o = {.config = DEFAULT_CONFIG};
    if (parse_opts(argc, argv, &o) < 0)
        return usage();
    if (load(&o))
        return 1;
    if (optind < argc)
        return print_named(argv + optind, argc - optind, &o);
    enum conf_param order[P_COUNT];
    sorted_params(order);
    for (int i = 0; i < P_COUNT; i++)
        if (!o.only_set || conf_in_file(order[i]))
            print_param(order[i], &o);
    return 0;
}

/* ---- keypost.cf(5) ------------------------------------------------------ */

/* Text as roff reads it literally: a backslash is \e, and a line that
 * starts with a dot or quote would be a request. */
static void roff_text(FILE *out, const char *s)
{
    if (*s == '.' || *s == '\'')
        fputs("\\&", out);
    for (; *s; s++) {
        if (*s == '\\')
            fputs("\\e", out);
        else
            fputc(*s, out);
    }
}

static void roff_choices(FILE *out, const char *choices)
{
    for (const char *c = choices; *c; c++) {
        if (*c == '|')
            fputs("\\fR, \\fB", out);
        else if (*c == '\\')
            fputs("\\e", out);
        else
            fputc(*c, out);
    }
}

/* "A time, at least 1s." and the like: what the value may be. */
static void roff_kind(FILE *out, const struct conf_def *d)
{
    const char *unit = d->type == CT_TIME ? "s" : "";
    switch (d->type) {
    case CT_BOOL: fputs("yes or no", out); return;
    case CT_LIST: fputs("A list, separated by commas or white space", out); return;
    case CT_STR: fputs("Text", out); return;
    case CT_ENUM:
        fputs("One of \\fB", out);
        roff_choices(out, d->choices);
        fputs("\\fR", out);
        return;
    default: break;
    }
    /* The section's opening says what a time looks like. */
    fputs(d->type == CT_TIME ? "A time" : "A number", out);
    if (d->max == LONG_MAX)
        fprintf(out, ", at least %ld%s", d->min, unit);
    else
        fprintf(out, " from %ld%s to %ld%s", d->min, unit, d->max, unit);
}

static void roff_param(FILE *out, enum conf_param p)
{
    const struct conf_def *d = conf_def(p);
    fprintf(out, ".TP\n.B %s\n", d->name);
    roff_text(out, d->desc);
    fputs("\n", out);
    roff_kind(out, d);
    fputs("; default: ", out);
    if (p == P_MYHOSTNAME) {
        fputs("the system's host name", out);
    } else if (*d->def) {
        fputs("\\fB", out);
        roff_text(out, d->def);
        fputs("\\fR", out);
    } else {
        fputs("empty", out);
    }
    fputs(".\n", out);
}

int cli_conf_man(FILE *out)
{
    enum conf_param order[P_COUNT];
    sorted_params(order);
    fputs(".\\\" Generated by \"keypost conf --man\" from src/conf/params.def; do not edit.\n"
          ".SH PARAMETERS\n"
          /* Long parameter names broken by hyphenation would read as
           * other names. */
          ".nh\n"
          "Each line of the file is \\fIname\\fR \\fB=\\fR \\fIvalue\\fR;\n"
          "\\fB$\\fR\\fIname\\fR in a value stands for another parameter's value.\n"
          "A time is a number of seconds, or a number followed by\n"
          "\\fBs\\fR, \\fBm\\fR, \\fBh\\fR, \\fBd\\fR or \\fBw\\fR.\n",
          out);
    for (int g = 0; g < G_COUNT; g++) {
        fprintf(out, ".SS \"%s\"\n", conf_group_title((enum conf_group)g));
        for (int i = 0; i < P_COUNT; i++)
            if (conf_def(order[i])->group == (enum conf_group)g)
                roff_param(out, order[i]);
    }
    return fflush(out) == 0 && !ferror(out) ? 0 : -1;
}
