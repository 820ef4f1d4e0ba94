/* mtasts_parse: the RFC 8461 policy file and TXT record, and MX pattern
 * matching. Pure functions: no I/O, no configuration. */
#include "tls/mtasts.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "util/strutil.h"

static const char *const mode_names[] = {"none", "testing", "enforce"};

const char *mtasts_mode_name(enum mtasts_mode mode)
{
    return mode_names[mode];
}

/* A DNS name as RFC 5321's Domain: labels of letters, digits and inner
 * hyphens, 1..63 bytes each, no empty label, no trailing dot. */
static int domain_ok(const char *d)
{
    size_t total = strlen(d), label = 0;
    if (total == 0 || total > 253)
        return 0;
    for (const char *c = d;; c++) {
        if (*c == '.' || *c == '\0') {
            if (label == 0 || label > 63 || c[-1] == '-')
                return 0;
            if (*c == '\0')
                return 1;
            label = 0;
            continue;
        }
        if (!isalnum((unsigned char)*c) && !(*c == '-' && label > 0))
            return 0;
        label++;
    }
}

/* "*.example.com" or "mx.example.com". */
static int mx_pattern_ok(const char *v)
{
    return domain_ok(strncmp(v, "*.", 2) == 0 ? v + 2 : v);
}

static int parse_max_age(const char *v, long *out)
{
    size_t n = strlen(v);
    if (n == 0 || n > 10 || strspn(v, "0123456789") != n)
        return -1;
    long long x = 0;
    for (size_t i = 0; i < n; i++)
        x = x * 10 + (v[i] - '0');
    if (x > MTASTS_MAX_AGE)
        return -1;
    *out = (long)x;
    return 0;
}

struct seen {
    int version, mode, max_age;
};

/* One "name: value" line (value already trimmed). */
static int parse_field(const char *name, const char *v, struct mtasts_policy *out,
                       struct seen *seen, char *err, size_t errlen)
{
    if (strcmp(name, "version") == 0) {
        if (seen->version++) {
            snprintf(err, errlen, "version repeated");
            return -1;
        }
        if (strcmp(v, "STSv1") != 0) {
            snprintf(err, errlen, "unsupported version \"%.40s\"", v);
            return -1;
        }
    } else if (strcmp(name, "mode") == 0) {
        int m = -1;
        for (int i = 0; i < 3; i++)
            if (strcmp(v, mode_names[i]) == 0)
                m = i;
        if (seen->mode++) {
            snprintf(err, errlen, "mode repeated");
            return -1;
        }
        if (m < 0) {
            snprintf(err, errlen, "unknown mode \"%.40s\"", v);
            return -1;
        }
        out->mode = (enum mtasts_mode)m;
    } else if (strcmp(name, "max_age") == 0) {
        if (seen->max_age++) {
            snprintf(err, errlen, "max_age repeated");
            return -1;
        }
        if (parse_max_age(v, &out->max_age) < 0) {
            snprintf(err, errlen, "max_age \"%.40s\" is not 0..31557600 seconds", v);
            return -1;
        }
    } else if (strcmp(name, "mx") == 0) {
        if (out->nmx >= MTASTS_MAX_MX) {
            snprintf(err, errlen, "more than %d mx patterns", MTASTS_MAX_MX);
            return -1;
        }
        if (!mx_pattern_ok(v)) {
            snprintf(err, errlen, "bad mx pattern \"%.80s\"", v);
            return -1;
        }
        str_copy(out->mx[out->nmx], v, sizeof out->mx[0]);
        str_lower(out->mx[out->nmx++]);
    }
    /* Other names are extensions: ignored (RFC 8461 3.2). */
    return 0;
}

/* Split one line into name and value; -1 when it is not "name: value". */
static int parse_line(char *line, struct mtasts_policy *out, struct seen *seen, char *err,
                      size_t errlen)
{
    char *colon = strchr(line, ':');
    if (colon == NULL || colon == line) {
        snprintf(err, errlen, "line \"%.60s\" is not name: value", line);
        return -1;
    }
    *colon = '\0';
    for (char *c = line; *c; c++)
        if (!isalnum((unsigned char)*c) && *c != '_' && *c != '-' && *c != '.') {
            snprintf(err, errlen, "bad field name \"%.60s\"", line);
            return -1;
        }
    char *v = colon + 1;
    v += strspn(v, " \t");
    size_t n = strlen(v);
    while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        v[--n] = '\0';
    return parse_field(line, v, out, seen, err, errlen);
}

static int check_complete(const struct mtasts_policy *out, const struct seen *seen, char *err,
                          size_t errlen)
{
    const char *missing = !seen->version ? "version" : !seen->mode ? "mode"
                          : !seen->max_age ? "max_age"
                          : (out->mode != STS_NONE && out->nmx == 0) ? "mx" : NULL;
    if (missing) {
        snprintf(err, errlen, "no %s field", missing);
        return -1;
    }
    return 0;
}

int mtasts_parse(const char *text, size_t len, struct mtasts_policy *out, char *err,
                 size_t errlen)
{
    memset(out, 0, sizeof *out);
    struct seen seen = {0, 0, 0};
    size_t i = 0;
    while (i < len) {
        const char *nl = memchr(text + i, '\n', len - i);
        size_t end = nl ? (size_t)(nl - text) : len, n = end - i;
        if (n && text[end - 1] == '\r')
            n--;
        char line[1024];
        if (n >= sizeof line || memchr(text + i, '\0', n) || memchr(text + i, '\r', n)) {
            snprintf(err, errlen, "%s", n >= sizeof line ? "over-long line"
                                                         : "NUL or bare CR in a line");
            return -1;
        }
        memcpy(line, text + i, n);
        line[n] = '\0';
        i = nl ? end + 1 : len;
        if (n == 0) {
            if (strspn(text + i, "\r\n") != len - i) {
                snprintf(err, errlen, "empty line before the end");
                return -1;
            }
            break;
        }
        if (parse_line(line, out, &seen, err, errlen) < 0)
            return -1;
    }
    return check_complete(out, &seen, err, errlen);
}

/* ---- TXT record --------------------------------------------------------- */

int mtasts_txt_parse(const char *txt, char *id, size_t idlen)
{
    if (strncmp(txt, "v=STSv1", 7) != 0 || (txt[7] && txt[7] != ';' && txt[7] != ' ' &&
                                            txt[7] != '\t'))
        return 0;
    char copy[512];
    if (str_copy(copy, txt + 7, sizeof copy) >= sizeof copy)
        return -1;
    int have_id = 0;
    char *rest = copy;
    rest += strspn(rest, " \t");
    if (*rest != ';')
        return -1;
    for (char *save = NULL, *f = strtok_r(rest, ";", &save); f; f = strtok_r(NULL, ";", &save)) {
        f = str_trim(f);
        if (*f == '\0')
            continue; /* a trailing ";" */
        char *eq = strchr(f, '=');
        if (eq == NULL || eq == f)
            return -1;
        *eq = '\0';
        if (strcmp(f, "id") != 0)
            continue; /* extension */
        size_t n = strlen(eq + 1);
        if (have_id++ || n == 0 || n > MTASTS_ID_MAX || n >= idlen)
            return -1;
        for (const char *c = eq + 1; *c; c++)
            if (!isalnum((unsigned char)*c))
                return -1;
        memcpy(id, eq + 1, n + 1);
    }
    return have_id ? 1 : -1;
}

/* ---- MX patterns -------------------------------------------------------- */

int mtasts_mx_match(const struct mtasts_policy *p, const char *host)
{
    char h[256];
    size_t n = str_copy(h, host, sizeof h);
    if (n >= sizeof h || n == 0)
        return 0;
    if (h[n - 1] == '.')
        h[--n] = '\0';
    str_lower(h);
    const char *dot = strchr(h, '.');
    for (int i = 0; i < p->nmx; i++) {
        const char *pat = p->mx[i];
        if (strncmp(pat, "*.", 2) == 0) {
            /* One label, not empty, left of the pattern's domain. */
            if (dot && dot != h && strcmp(dot + 1, pat + 2) == 0)
                return 1;
        } else if (strcmp(h, pat) == 0) {
            return 1;
        }
    }
    return 0;
}
