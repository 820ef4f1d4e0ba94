/* qualify: Postfix's append_at_myorigin and append_dot_mydomain. */
#include "util/qualify.h"

#include <string.h>

/* The '@' before the domain: the last one outside a quoted local part, so
 * that "a@b"@c has the domain c and "a@b" alone has none. */
static const char *domain_at(const char *addr)
{
    const char *at = NULL;
    int quoted = 0;
    for (const char *p = addr; *p; p++) {
        if (*p == '\\' && quoted && p[1])
            p++;
        else if (*p == '"')
            quoted = !quoted;
        else if (*p == '@' && !quoted)
            at = p;
    }
    return at;
}

/* Append sep and word to out; -1 when they do not fit. */
static int append(char *out, size_t outlen, char sep, const char *word)
{
    size_t have = strlen(out), add = strlen(word);
    if (have + 1 + add >= outlen)
        return -1;
    out[have] = sep;
    memcpy(out + have + 1, word, add + 1);
    return 0;
}

/* A domain that append_dot_mydomain completes: a bare host name. An empty
 * domain is an error for the caller to refuse, not to complete, and an
 * address literal is complete as it stands. */
static int partial_domain(const char *domain)
{
    return *domain && *domain != '[' && strchr(domain, '.') == NULL;
}

int qualify_address(const char *addr, const char *myorigin, const char *mydomain,
                    unsigned flags, char *out, size_t outlen)
{
    if (outlen == 0)
        return -1;
    size_t n = strlen(addr);
    if (n >= outlen) {
        out[0] = '\0';
        return -1;
    }
    memcpy(out, addr, n + 1);
    if (n == 0)
        return 0; /* the null sender stays null */
    int r = 0;
    if (domain_at(out) == NULL && (flags & QUALIFY_APPEND_AT_MYORIGIN) && *myorigin)
        r = append(out, outlen, '@', myorigin);
    const char *at = domain_at(out);
    if (r == 0 && at && partial_domain(at + 1) && (flags & QUALIFY_APPEND_DOT_MYDOMAIN) &&
        *mydomain)
        r = append(out, outlen, '.', mydomain);
    if (r < 0) {
        out[0] = '\0';
        return -1;
    }
    return strcmp(out, addr) != 0;
}
