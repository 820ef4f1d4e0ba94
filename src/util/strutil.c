#include "util/strutil.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

size_t str_copy(char *dst, const char *src, size_t size)
{
    size_t n = strlen(src);
    if (size) {
        size_t c = n < size - 1 ? n : size - 1;
        memcpy(dst, src, c);
        dst[c] = '\0';
    }
    return n;
}

void str_lower(char *s)
{
    for (; *s; s++)
        *s = (char)tolower((unsigned char)*s);
}

char *str_trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

int str_ieq(const char *a, const char *b)
{
    return strcasecmp(a, b) == 0;
}

int str_iprefix(const char *s, const char *prefix)
{
    return strncasecmp(s, prefix, strlen(prefix)) == 0;
}

static int is_list_sep(char c)
{
    return c == ',' || isspace((unsigned char)c);
}

int str_split_list(char *s, char **out, int max)
{
    int n = 0;
    while (*s) {
        while (*s && is_list_sep(*s))
            s++;
        if (!*s)
            break;
        char *start = s;
        int depth = 0;
        while (*s && (depth > 0 || !is_list_sep(*s))) {
            if (*s == '{')
                depth++;
            else if (*s == '}' && depth > 0)
                depth--;
            s++;
        }
        if (*s)
            *s++ = '\0';
        if (n < max)
            out[n++] = start;
    }
    return n;
}

int str_parse_bool(const char *s)
{
    if (str_ieq(s, "yes") || str_ieq(s, "true") || strcmp(s, "1") == 0)
        return 1;
    if (str_ieq(s, "no") || str_ieq(s, "false") || strcmp(s, "0") == 0)
        return 0;
    return -1;
}

long str_parse_long(const char *s)
{
    if (!isdigit((unsigned char)*s))
        return -1;
    errno = 0;
    char *end;
    long v = strtol(s, &end, 10);
    if (errno || *end)
        return -1;
    return v;
}

long str_parse_time(const char *s)
{
    if (!isdigit((unsigned char)*s))
        return -1;
    errno = 0;
    char *end;
    long v = strtol(s, &end, 10);
    if (errno)
        return -1;
    long mult = 1;
    switch (*end) {
    case '\0': case 's': mult = 1; break;
    case 'm': mult = 60; break;
    case 'h': mult = 3600; break;
    case 'd': mult = 86400; break;
    case 'w': mult = 604800; break;
    default: return -1;
    }
    if (*end && end[1])
        return -1;
    if (v > LONG_MAX / mult)
        return -1;
    return v * mult;
}

int str_has_8bit(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80)
            return 1;
    return 0;
}

void str_rfc5322_date(time_t t, char *out, size_t len)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, len, "%a, %d %b %Y %H:%M:%S +0000", &tm);
}

const char *str_first_word(const char *s, char *word, size_t len)
{
    size_t n = strcspn(s, " \t\n");
    size_t c = n < len - 1 ? n : len - 1;
    memcpy(word, s, c);
    word[c] = '\0';
    s += n;
    return s + strspn(s, " \t");
}

static size_t min3(size_t a, size_t b, size_t c)
{
    size_t m = a < b ? a : b;
    return m < c ? m : c;
}

/* Damerau-Levenshtein distance in its "optimal string alignment" form,
 * kept to three rows of the table: a swapped pair of letters, the most
 * common typo, counts as one edit instead of two. */
size_t str_edit_distance(const char *a, const char *b)
{
    enum { MAX = 128 };
    size_t la = strlen(a), lb = strlen(b);
    if (la >= MAX || lb >= MAX)
        return (size_t)-1 / 2;
    size_t rows[3][MAX];
    size_t *prev2 = rows[0], *prev = rows[1], *cur = rows[2];
    for (size_t j = 0; j <= lb; j++)
        prev[j] = j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t cost = a[i - 1] != b[j - 1];
            cur[j] = min3(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost);
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                prev2[j - 2] + 1 < cur[j])
                cur[j] = prev2[j - 2] + 1;
        }
        size_t *t = prev2;
        prev2 = prev;
        prev = cur;
        cur = t;
    }
    return prev[lb];
}
