/* conf: the parameter table, the main.cf reader and $name expansion. */
#include "conf/conf.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/buf.h"
#include "util/strutil.h"

static const struct conf_def defs[P_COUNT] = {
#define PARAM(id, name, type, def, choices, min, max, group, desc) \
    [P_##id] = {name, type, def, choices, min, max, G_##group, desc},
#include "conf/params.def"
};

static const char *const group_titles[G_COUNT] = {
#define GROUP(id, title) [G_##id] = title,
#include "conf/params.def"
};

struct param_val {
    char *raw;      /* as written, before $ expansion */
    char *value;    /* expanded */
    long number;    /* CT_LONG, CT_TIME, CT_BOOL; CT_ENUM: the choice's index */
    char origin[300];
    int file_line;  /* the line of the last conf_load's file that set it; 0: none */
};

static struct param_val vals[P_COUNT];

static int finish(struct conf_errors *errs);

const char *conf_name(enum conf_param p)
{
    return defs[p].name;
}

const struct conf_def *conf_def(enum conf_param p)
{
    return &defs[p];
}

const char *conf_group_title(enum conf_group g)
{
    return group_titles[g];
}

void conf_error(struct conf_errors *errs, const char *fmt, ...)
{
    struct buf b;
    buf_init(&b, 4096);
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(&b, fmt, ap);
    va_end(ap);
    char **m = realloc(errs->msgs, sizeof(char *) * (size_t)(errs->count + 1));
    if (m == NULL) {
        buf_free(&b);
        return;
    }
    errs->msgs = m;
    errs->msgs[errs->count++] = b.data ? b.data : strdup("");
}

static struct conf_errors warnings;

void conf_warning(const char *fmt, ...)
{
    struct buf b;
    buf_init(&b, 4096);
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(&b, fmt, ap);
    va_end(ap);
    conf_error(&warnings, "%s", buf_str(&b));
    buf_free(&b);
}

struct conf_errors *conf_warnings(void)
{
    return &warnings;
}

void conf_errors_free(struct conf_errors *errs)
{
    for (int i = 0; i < errs->count; i++)
        free(errs->msgs[i]);
    free(errs->msgs);
    errs->msgs = NULL;
    errs->count = 0;
}

int conf_lookup(const char *name)
{
    for (int i = 0; i < P_COUNT; i++)
        if (strcmp(defs[i].name, name) == 0)
            return i;
    return -1;
}

const char *conf_suggest(const char *name)
{
    const char *best = NULL;
    size_t best_d = (size_t)-1;
    for (int i = 0; i < P_COUNT; i++) {
        size_t d = str_edit_distance(name, defs[i].name);
        if (d < best_d) {
            best_d = d;
            best = defs[i].name;
        }
    }
    /* A typo changes a letter or two; more than a quarter of the name
     * changed is another word, and naming a parameter would mislead. */
    size_t len = strlen(name);
    return best && (best_d <= 2 || best_d * 4 <= len) ? best : NULL;
}

/* " (did you mean NAME?)" when a known name is near, else "". */
static const char *did_you_mean(const char *name, char *out, size_t len)
{
    const char *near = conf_suggest(name);
    if (near == NULL)
        return "";
    snprintf(out, len, " (did you mean %s?)", near);
    return out;
}

static void set_raw(int p, const char *value, const char *origin)
{
    free(vals[p].raw);
    vals[p].raw = strdup(value);
    str_copy(vals[p].origin, origin, sizeof vals[p].origin);
    vals[p].file_line = 0;
}

void conf_defaults(void)
{
    conf_errors_free(&warnings);
    char host[256] = "localhost";
    gethostname(host, sizeof host - 1);
    for (int i = 0; i < P_COUNT; i++) {
        set_raw(i, defs[i].def, "default");
        free(vals[i].value);
        vals[i].value = NULL;
    }
    set_raw(P_MYHOSTNAME, host, "default");
    struct conf_errors ignored = {0};
    finish(&ignored);
    conf_errors_free(&ignored);
}

/* Expand $name and ${name}, with a depth bound against loops. */
static int expand(const char *in, struct buf *out, int depth, struct conf_errors *errs,
                  const char *origin)
{
    if (depth > 10) {
        conf_error(errs, "%s: parameter expansion loop", origin);
        return -1;
    }
    for (const char *s = in; *s; s++) {
        if (*s != '$') {
            buf_append(out, s, 1);
            continue;
        }
        char name[128];
        size_t n = 0;
        const char *p = s + 1;
        int braced = *p == '{';
        if (braced)
            p++;
        while ((*p == '_' || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                (*p >= '0' && *p <= '9')) && n < sizeof name - 1)
            name[n++] = *p++;
        name[n] = '\0';
        if (braced && *p != '}')
            n = 0;
        int ref = n ? conf_lookup(name) : -1;
        if (ref < 0) {
            char hint[200];
            conf_error(errs, "%s: unknown parameter in expansion: $%s%s", origin, name,
                       n ? did_you_mean(name, hint, sizeof hint) : "");
            return -1;
        }
        if (expand(vals[ref].raw, out, depth + 1, errs, origin) < 0)
            return -1;
        s = braced ? p : p - 1;
    }
    return 0;
}

/* The position of v in "a|b|c", or -1. */
static int choice_index(const char *choices, const char *v)
{
    size_t n = strlen(v);
    int i = 0;
    for (const char *c = choices; *c; i++) {
        const char *bar = strchr(c, '|');
        size_t len = bar ? (size_t)(bar - c) : strlen(c);
        if (len == n && strncmp(c, v, n) == 0)
            return i;
        if (!bar)
            break;
        c = bar + 1;
    }
    return -1;
}

static long parse_number(enum conf_type type, const char *text)
{
    return type == CT_TIME ? str_parse_time(text) : str_parse_long(text);
}

/* CT_LONG and CT_TIME: a number within the definition's bounds. */
static void check_number(int p, struct conf_errors *errs)
{
    const struct conf_def *d = &defs[p];
    struct param_val *v = &vals[p];
    const char *unit = d->type == CT_TIME ? "s" : "";
    v->number = parse_number(d->type, v->value);
    /* "-5s" is a time below the minimum, and saying so helps more than
     * calling it malformed. */
    int negative = v->number < 0 && v->value[0] == '-' && parse_number(d->type, v->value + 1) > 0;
    if (v->number < 0 && !negative)
        conf_error(errs, "%s: bad value for %s: \"%s\" (expected %s)", v->origin, d->name,
                   v->value, d->type == CT_TIME ? "a time such as 300s or 5m" : "a number");
    else if (negative || v->number < d->min)
        conf_error(errs, "%s: bad value for %s: \"%s\" (must be at least %ld%s)", v->origin,
                   d->name, v->value, d->min, unit);
    else if (v->number > d->max)
        conf_error(errs, "%s: bad value for %s: \"%s\" (must be at most %ld%s)", v->origin,
                   d->name, v->value, d->max, unit);
}

/* A value in error reads as the default from then on: serve refuses to
 * start anyway, and checks that read it later (the TLS set-up reads
 * smtpd_tls_security_level) would otherwise add errors that only repeat
 * this one. It also keeps conf_enum within the choices. */
static void use_default(int p)
{
    const struct conf_def *d = &defs[p];
    struct param_val *v = &vals[p];
    free(v->value);
    v->value = strdup(d->def);
    if (d->type == CT_BOOL)
        v->number = str_parse_bool(d->def);
    else if (d->type == CT_ENUM)
        v->number = choice_index(d->choices, d->def);
    else
        v->number = parse_number(d->type, d->def);
}

static void check_type(int p, struct conf_errors *errs)
{
    const struct conf_def *d = &defs[p];
    struct param_val *v = &vals[p];
    switch (d->type) {
    case CT_BOOL:
        v->number = str_parse_bool(v->value);
        if (v->number < 0)
            conf_error(errs, "%s: bad value for %s: \"%s\" (expected yes or no)", v->origin,
                       d->name, v->value);
        break;
    case CT_LONG:
    case CT_TIME:
        check_number(p, errs);
        break;
    case CT_ENUM:
        v->number = choice_index(d->choices, v->value);
        if (v->number < 0)
            conf_error(errs, "%s: bad value for %s: \"%s\" (expected one of %s)", v->origin,
                       d->name, v->value, d->choices);
        break;
    default:
        break;
    }
}

static void check_value(int p, struct conf_errors *errs)
{
    int before = errs->count;
    check_type(p, errs);
    if (errs->count > before && defs[p].type != CT_STR && defs[p].type != CT_LIST)
        use_default(p);
}

/* Postfix's default for mydomain: $myhostname minus its first label, or
 * "localdomain" when that leaves nothing. Derived at every load, since a
 * file may set myhostname alone. A myhostname written with $mydomain (as
 * "mx.$mydomain") sees "localdomain" here instead of going round in a loop. */
static void derive_mydomain(void)
{
    if (strcmp(vals[P_MYDOMAIN].origin, "default") != 0)
        return;
    set_raw(P_MYDOMAIN, defs[P_MYDOMAIN].def, "default");
    struct conf_errors ignored = {0}; /* reported when myhostname is expanded */
    struct buf host;
    buf_init(&host, 4096);
    buf_puts(&host, "");
    expand(vals[P_MYHOSTNAME].raw, &host, 0, &ignored, vals[P_MYHOSTNAME].origin);
    conf_errors_free(&ignored);
    const char *dot = strchr(buf_str(&host), '.');
    if (dot && dot[1] && strchr(dot, '$') == NULL)
        set_raw(P_MYDOMAIN, dot + 1, "default");
    buf_free(&host);
}

static int finish(struct conf_errors *errs)
{
    int before = errs->count;
    derive_mydomain();
    for (int i = 0; i < P_COUNT; i++) {
        struct buf b;
        buf_init(&b, 65536);
        buf_puts(&b, "");
        expand(vals[i].raw, &b, 0, errs, vals[i].origin);
        free(vals[i].value);
        vals[i].value = b.data ? b.data : strdup("");
        check_value(i, errs);
    }
    return errs->count - before;
}

/* A parameter set again in the same file: one of the two lines is a
 * mistake, and which one keypost would use is not obvious to the reader,
 * so a different value is an error naming both; the same value is only
 * redundant. Returns 1 when the new line may be stored. */
static int repeat_ok(int p, const char *value, const char *origin, struct conf_errors *errs)
{
    if (strcmp(vals[p].raw, value) == 0) {
        conf_warning("%s: %s is set again with the same value (first at %s)", origin,
                     defs[p].name, vals[p].origin);
        return 1;
    }
    conf_error(errs, "%s: %s is set twice with different values: \"%s\" here, \"%s\" at %s",
               origin, defs[p].name, value, vals[p].raw, vals[p].origin);
    return 0;
}

static void store_line(const char *path, int lineno, char *line, struct conf_errors *errs)
{
    char origin[300];
    snprintf(origin, sizeof origin, "%s:%d", path, lineno);
    char *eq = strchr(line, '=');
    if (eq == NULL) {
        conf_error(errs, "%s: missing '=' after parameter name", origin);
        return;
    }
    *eq = '\0';
    char *name = str_trim(line);
    char *value = str_trim(eq + 1);
    int p = conf_lookup(name);
    if (p < 0) {
        char hint[200];
        conf_error(errs, "%s: unknown parameter \"%s\"%s", origin, name,
                   did_you_mean(name, hint, sizeof hint));
        return;
    }
    if (vals[p].file_line && !repeat_ok(p, value, origin, errs))
        return;
    set_raw(p, value, origin);
    vals[p].file_line = lineno;
}

/* Reads logical lines (continuations joined) and stores each. */
static int read_file(FILE *f, const char *path, struct conf_errors *errs)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int lineno = 0, start_line = 0;
    struct buf logical;
    buf_init(&logical, 1 << 20);
    while ((n = getline(&line, &cap, f)) >= 0) {
        lineno++;
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        char *t = line;
        while (*t == ' ' || *t == '\t')
            t++;
        if (*t == '#' || *t == '\0')
            continue;
        if (t != line && logical.len) {
            buf_puts(&logical, " ");
            buf_puts(&logical, t);
            continue;
        }
        if (t != line) {
            conf_error(errs, "%s:%d: continuation line without a parameter before it", path,
                       lineno);
            continue;
        }
        if (logical.len)
            store_line(path, start_line, logical.data, errs);
        buf_reset(&logical);
        if (buf_puts(&logical, line) < 0)
            conf_error(errs, "%s:%d: line too long", path, lineno);
        start_line = lineno;
    }
    /* A directory opens but does not read: without this it would pass as
     * an empty file, all defaults. */
    if (ferror(f))
        conf_error(errs, "%s:%d: cannot read configuration: %s", path, lineno, strerror(errno));
    else if (logical.len)
        store_line(path, start_line, logical.data, errs);
    buf_free(&logical);
    free(line);
    return 0;
}

int conf_load(const char *path, struct conf_errors *errs)
{
    int before = errs->count;
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        conf_error(errs, "%s:0: cannot open configuration: %s", path, strerror(errno));
        return errs->count - before;
    }
    for (int i = 0; i < P_COUNT; i++)
        vals[i].file_line = 0;
    read_file(f, path, errs);
    fclose(f);
    finish(errs);
    return errs->count - before;
}

int conf_set(const char *name, const char *value, struct conf_errors *errs)
{
    int p = conf_lookup(name);
    if (p < 0) {
        char hint[200];
        conf_error(errs, "unknown parameter \"%s\"%s", name, did_you_mean(name, hint, sizeof hint));
        return -1;
    }
    set_raw(p, value, "command line");
    return finish(errs) ? -1 : 0;
}

const char *conf_str(enum conf_param p)
{
    return vals[p].value ? vals[p].value : "";
}

long conf_long(enum conf_param p)
{
    return vals[p].number;
}

int conf_bool(enum conf_param p)
{
    return vals[p].number > 0;
}

int conf_enum(enum conf_param p)
{
    return (int)vals[p].number;
}

const char *conf_raw(enum conf_param p)
{
    return vals[p].raw ? vals[p].raw : "";
}

int conf_in_file(enum conf_param p)
{
    return vals[p].file_line > 0;
}

const char *conf_origin(enum conf_param p)
{
    return vals[p].origin;
}
