#include "tls/tlsopt.h"

#include <openssl/ssl.h>
#include <stdio.h>
#include <string.h>

#include "util/strutil.h"

/* Postfix's tls_*_cipherlist defaults; RC4 and EXPORT no longer exist in
 * OpenSSL 3, so those words select nothing more. */
static const struct {
    const char *grade;
    const char *list;
} grades[] = {
    {"high", "aNULL:-aNULL:HIGH:@STRENGTH"},
    {"medium", "aNULL:-aNULL:HIGH:MEDIUM:@STRENGTH"},
    {"low", "aNULL:-aNULL:HIGH:MEDIUM:LOW:@STRENGTH"},
    {"export", "aNULL:-aNULL:HIGH:MEDIUM:LOW:@STRENGTH"},
};

/* A cipher name, or properties joined by '+' ("kEDH+aRSA"): no empty part. */
static int cipher_word_ok(const char *w)
{
    if (*w == '\0' || *w == '+' || w[strlen(w) - 1] == '+' || strstr(w, "++"))
        return 0;
    for (; *w; w++)
        if (!((*w >= 'A' && *w <= 'Z') || (*w >= 'a' && *w <= 'z') || (*w >= '0' && *w <= '9') ||
              *w == '-' || *w == '+' || *w == '_' || *w == '.'))
            return 0;
    return 1;
}

/* Does OpenSSL accept the list and leave at least one TLS 1.2 cipher? */
static int usable(const char *list)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_method());
    if (ctx == NULL)
        return 0;
    int ok = SSL_CTX_set_cipher_list(ctx, list) == 1;
    SSL_CTX_free(ctx);
    return ok;
}

int tlsopt_cipher_list(const char *grade, const char *exclude, char *out, size_t len,
                       char *err, size_t errlen)
{
    const char *base = NULL;
    for (size_t i = 0; i < sizeof grades / sizeof grades[0]; i++)
        if (strcmp(grade, grades[i].grade) == 0)
            base = grades[i].list;
    if (base == NULL) {
        snprintf(err, errlen, "unknown cipher grade \"%s\" (expected export, low, medium or high)",
                 grade);
        return -1;
    }
    size_t used = str_copy(out, base, len);
    char copy[1024];
    if (str_copy(copy, exclude ? exclude : "", sizeof copy) >= sizeof copy) {
        snprintf(err, errlen, "cipher exclusion list too long");
        return -1;
    }
    for (char *w = strtok(copy, ", \t:"); w; w = strtok(NULL, ", \t:")) {
        if (!cipher_word_ok(w)) {
            snprintf(err, errlen, "bad cipher exclusion \"%s\"", w);
            return -1;
        }
        int n = snprintf(out + used, used < len ? len - used : 0, ":!%s", w);
        used += n > 0 ? (size_t)n : 0;
    }
    if (used >= len) {
        snprintf(err, errlen, "cipher list too long");
        return -1;
    }
    if (!usable(out)) {
        snprintf(err, errlen, "grade %s without \"%s\" leaves no TLS 1.2 cipher", grade,
                 exclude ? exclude : "");
        return -1;
    }
    return 0;
}

/* In version order: ">=" and "<=" compare positions. */
int tlsopt_unmatched(const char *exclude, char *out, size_t len)
{
    char copy[1024], probe[1100];
    int n = 0;
    size_t used = 0;
    if (len)
        out[0] = '\0';
    str_copy(copy, exclude ? exclude : "", sizeof copy);
    for (char *w = strtok(copy, ", \t:"); w; w = strtok(NULL, ", \t:")) {
        /* Security level 0 lets anonymous and NULL suites count as offered. */
        snprintf(probe, sizeof probe, "@SECLEVEL=0:%s", w);
        if (cipher_word_ok(w) && usable(probe))
            continue;
        int k = snprintf(out + used, used < len ? len - used : 0, "%s%s", n ? " " : "", w);
        used += k > 0 ? (size_t)k : 0;
        n++;
    }
    return n;
}

static const struct {
    const char *name;
} protocols[] = {
    {"SSLv2"}, {"SSLv3"}, {"TLSv1"}, {"TLSv1.1"}, {"TLSv1.2"}, {"TLSv1.3"},
};
#define NPROTO ((int)(sizeof protocols / sizeof protocols[0]))

static int protocol_index(const char *name)
{
    for (int i = 0; i < NPROTO; i++)
        if (strcmp(protocols[i].name, name) == 0)
            return i;
    return -1;
}

/* Apply one element to the allowed set; -1 on an unknown name. */
static int protocol_element(const char *w, int *allowed, int *includes_seen)
{
    int op = 0; /* 0 include, '!' exclude, '>' at least, '<' at most */
    if (*w == '!')
        op = '!', w++;
    else if (strncmp(w, ">=", 2) == 0)
        op = '>', w += 2;
    else if (strncmp(w, "<=", 2) == 0)
        op = '<', w += 2;
    int k = protocol_index(w);
    if (k < 0)
        return -1;
    for (int i = 0; i < NPROTO; i++) {
        if (op == '!' && i == k)
            allowed[i] = 0;
        if ((op == '>' && i < k) || (op == '<' && i > k))
            allowed[i] = 0;
    }
    if (op == 0) {
        if (!*includes_seen)
            for (int i = 0; i < NPROTO; i++)
                allowed[i] = 0; /* a positive list names all there is */
        *includes_seen = 1;
        allowed[k] = 2;
    }
    return 0;
}

int tlsopt_protocols(const char *spec, int *min_version, int *max_version, char *err,
                     size_t errlen)
{
    int allowed[NPROTO], includes_seen = 0;
    for (int i = 0; i < NPROTO; i++)
        allowed[i] = 1;
    char copy[512];
    if (str_copy(copy, spec, sizeof copy) >= sizeof copy) {
        snprintf(err, errlen, "protocol list too long");
        return -1;
    }
    for (char *w = strtok(copy, ", \t:"); w; w = strtok(NULL, ", \t:"))
        if (protocol_element(w, allowed, &includes_seen) < 0) {
            snprintf(err, errlen, "unknown TLS protocol \"%s\" (expected SSLv2, SSLv3, TLSv1, "
                     "TLSv1.1, TLSv1.2 or TLSv1.3, with !, >= or <=)", w);
            return -1;
        }
    /* Only TLS 1.2 and 1.3 are left to choose from: adjacent, so no gap. */
    int v12 = allowed[protocol_index("TLSv1.2")], v13 = allowed[protocol_index("TLSv1.3")];
    *min_version = v12 ? TLS1_2_VERSION : v13 ? TLS1_3_VERSION : 0;
    *max_version = v13 ? TLS1_3_VERSION : v12 ? TLS1_2_VERSION : 0;
    if (*min_version == 0) {
        snprintf(err, errlen, "protocol list \"%s\" leaves neither TLSv1.2 nor TLSv1.3", spec);
        return -1;
    }
    return 0;
}
