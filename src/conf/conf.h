/* conf: keypost's parameters, defined once in params.def (name, type,
 * default, allowed values, bounds, group, description), and their values.
 * The file format is Postfix's main.cf: "name = value", '#' comments, a line
 * that starts with white space continues the previous one, and "$name" or
 * "${name}" expands to another parameter's value. Where Postfix has the
 * feature, the name, default and meaning are Postfix's. */
#ifndef KP_CONF_H
#define KP_CONF_H

#include <stddef.h>

enum conf_type { CT_STR, CT_BOOL, CT_LONG, CT_TIME, CT_ENUM, CT_LIST };

/* Every parameter is P_NAME, from params.def. */
enum conf_param {
#define PARAM(id, name, type, def, choices, min, max, group, desc) P_##id,
#include "conf/params.def"
    P_COUNT
};

/* The manual's sections (G_NAME), from params.def. */
enum conf_group {
#define GROUP(id, title) G_##id,
#include "conf/params.def"
    G_COUNT
};

/* One parameter's definition, as params.def writes it. */
struct conf_def {
    const char *name;
    enum conf_type type;
    const char *def;     /* as written: "$name" not expanded */
    const char *choices; /* CT_ENUM: "a|b|c" */
    long min, max;       /* CT_LONG, CT_TIME (seconds); LONG_MAX: no upper bound */
    enum conf_group group;
    const char *desc;    /* one sentence, plain text */
};

const struct conf_def *conf_def(enum conf_param p);
const char *conf_group_title(enum conf_group g);
/* The parameter called name, or -1. */
int conf_lookup(const char *name);
/* The known name nearest to an unknown one (a typo), or NULL if none is
 * near enough to be a likely meaning. */
const char *conf_suggest(const char *name);

/* Errors are collected as "FILE:LINE: message" strings. */
struct conf_errors {
    char **msgs;
    int count;
};

/* Reset every parameter to its default. */
void conf_defaults(void);
/* Read FILE on top of the defaults; every error found is added to errs:
 * an unknown name (with the nearest known one), a value of the wrong type,
 * outside its bounds or not among its choices (it then reads as the
 * default), a parameter set twice with different values (the same value
 * twice is a warning), a file that cannot be read. Returns the number of
 * errors (0: the configuration is usable). */
int conf_load(const char *path, struct conf_errors *errs);
/* Set one parameter as if read from a file (used by tests and the demo). */
int conf_set(const char *name, const char *value, struct conf_errors *errs);

const char *conf_str(enum conf_param p);
long conf_long(enum conf_param p);   /* CT_LONG, CT_TIME (seconds), CT_BOOL */
int conf_bool(enum conf_param p);
/* CT_ENUM: the value's position in the choices ("none|may|encrypt":
 * encrypt is 2); a loaded value is always one of them. */
int conf_enum(enum conf_param p);
/* The value as written, before $name expansion ("$myhostname"). */
const char *conf_raw(enum conf_param p);
/* 1 when the value came from the file of the last conf_load. */
int conf_in_file(enum conf_param p);
/* Where the value came from, for error messages: "FILE:LINE" or "default". */
const char *conf_origin(enum conf_param p);
const char *conf_name(enum conf_param p);

void conf_error(struct conf_errors *errs, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void conf_errors_free(struct conf_errors *errs);
/* Warnings: things that work but that an operator should change. They are
 * collected while loading; `check` prints them, `serve` logs them. */
void conf_warning(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
struct conf_errors *conf_warnings(void);

#endif
