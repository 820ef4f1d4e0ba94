/* libFuzzer target: TLSRPT's disk- and DNS-fed parsers (src/tls/tlsrpt.c's
 * record lines, src/tls/tlsrpt_report.c's aggregation, JSON, TXT record
 * and rua URIs).
 *
 * Input layout: byte 0 picks the input (even: result lines of a day file,
 * odd: _smtp._tls TXT records, one a line), the rest is its text.
 * Invariants checked:
 *   - an accepted line, formatted again, is one line that parses to the
 *     same result;
 *   - every domain's report is valid JSON (RFC 8259: no raw control
 *     characters in strings, valid escapes, valid UTF-8);
 *   - a usable rua URI gives a mailto address without controls, spaces,
 *     quotes or angle brackets, or an https host, port and path. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tls/tlsrpt.h"
#include "tls/tlsrpt_report.h"
#include "util/buf.h"

static const char *value(const char *p, int depth);

static const char *ws(const char *p)
{
    while (*p == ' ' || *p == '\n')
        p++;
    return p;
}

static const char *string(const char *p)
{
    if (*p++ != '"')
        return NULL;
    while (*p != '"') {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20)
            return NULL;
        if (c == '\\') {
            p++;
            if (*p == 'u') {
                for (int i = 1; i <= 4; i++)
                    if (!p[i] || !strchr("0123456789abcdef", p[i]))
                        return NULL;
                p += 5;
            } else if (*p && strchr("\"\\", *p)) {
                p++;
            } else {
                return NULL;
            }
            continue;
        }
        int n = c < 0x80 ? 1 : c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
        if (n == 0 || c > 0xf4)
            return NULL;
        for (int i = 1; i < n; i++)
            if (((unsigned char)p[i] & 0xc0) != 0x80)
                return NULL;
        p += n;
    }
    return p + 1;
}

static const char *container(const char *p, int depth, char close, int object)
{
    p = ws(p + 1);
    if (*p == close)
        return p + 1;
    for (;;) {
        if (object && ((p = string(ws(p))) == NULL || *(p = ws(p)) != ':'))
            return NULL;
        if ((p = value(p + object, depth + 1)) == NULL)
            return NULL;
        p = ws(p);
        if (*p == close)
            return p + 1;
        if (*p++ != ',')
            return NULL;
    }
}

static const char *value(const char *p, int depth)
{
    p = ws(p);
    if (depth > 10)
        return NULL;
    if (*p == '{' || *p == '[')
        return container(p, depth, *p == '{' ? '}' : ']', *p == '{');
    if (*p == '"')
        return string(p);
    if (*p < '0' || *p > '9')
        return NULL;
    while (*p >= '0' && *p <= '9')
        p++;
    return p;
}

static void lines(char *text)
{
    struct tlsrpt_agg *a = tlsrpt_agg_new();
    struct tlsrpt_result r, back;
    char out[16384];
    for (char *save = NULL, *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        if (tlsrpt_parse(l, &r) < 0)
            continue;
        int n = tlsrpt_format(&r, out, sizeof out);
        if (n <= 0 || strchr(out, '\n') != out + n - 1 || tlsrpt_parse(out, &back) < 0 ||
            memcmp(&r, &back, sizeof r) != 0)
            abort();
        if (tlsrpt_agg_add(a, &r) < 0)
            abort();
    }
    struct tlsrpt_meta m = {"org", "c@x.test", "id", 0, 86399};
    for (int i = 0; i < tlsrpt_agg_ndomains(a); i++) {
        struct buf b;
        buf_init(&b, 64 << 20);
        if (tlsrpt_json(a, i, &m, &b) < 0)
            abort();
        const char *end = value(buf_str(&b), 0);
        if (end == NULL || *ws(end) != '\0')
            abort();
        buf_free(&b);
    }
    tlsrpt_agg_free(a);
}

static void txt(const char *text)
{
    char rua[2048];
    if (!tlsrpt_txt_rua(text, rua, sizeof rua))
        return;
    for (char *save = NULL, *u = strtok_r(rua, ",", &save); u; u = strtok_r(NULL, ",", &save)) {
        struct tlsrpt_dest d;
        if (tlsrpt_dest_parse(u, &d) < 0)
            continue;
        if (d.https ? (!d.host[0] || d.port < 1 || d.port > 65535 || d.path[0] != '/')
                    : (strpbrk(d.addr, " <>\"\r\n") || !strchr(d.addr, '@')))
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    char *text = malloc(size);
    if (text == NULL)
        return 0;
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0';
    /* the parsers read C strings: what follows a NUL is not theirs */
    if (data[0] % 2 == 0)
        lines(text);
    else
        txt(text);
    free(text);
    return 0;
}
