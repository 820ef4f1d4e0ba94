#include "addr/hdrrewrite.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "addr/rewrite.h"
#include "util/strutil.h"

#define MAX_ELEMENTS 1000 /* addresses rewritten per header */

static const char *const sender_headers[] = {
    "From", "Sender", "Resent-From", "Resent-Sender", "Return-Receipt-To", "Errors-To", NULL};
static const char *const recipient_headers[] = {
    "To", "Cc", "Bcc", "Resent-To", "Resent-Cc", "Resent-Bcc", "Apparently-To", "Reply-To",
    "Resent-Reply-To", NULL};

static int listed(const char *const *names, const char *name, size_t n)
{
    for (; *names; names++)
        if (strlen(*names) == n && strncasecmp(*names, name, n) == 0)
            return 1;
    return 0;
}

/* The output, and whether anything failed to fit (the caller's bound). */
struct out {
    struct buf *b;
    int full;
};

static void put(struct out *o, const void *p, size_t n)
{
    if (buf_append(o->b, p, n) < 0)
        o->full = 1;
}

/* One element of an address list, as the scanner found it. */
struct element {
    size_t start, end;          /* the element within the value */
    size_t angle_start, angle_end;
    int has_angle, has_quote, has_comment;
};

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* The address span of an element: inside <...>, or the whole element when
 * it is a bare address with nothing that could hide another. */
static int address_span(const char *v, const struct element *e, size_t *a, size_t *b)
{
    if (e->has_angle) {
        *a = e->angle_start;
        *b = e->angle_end;
    } else {
        if (e->has_quote || e->has_comment)
            return 0;
        *a = e->start;
        *b = e->end;
    }
    while (*a < *b && is_space(v[*a]))
        (*a)++;
    while (*b > *a && is_space(v[*b - 1]))
        (*b)--;
    if (*b - *a == 0 || *b - *a >= 500)
        return 0;
    for (size_t i = *a; i < *b; i++)
        if ((unsigned char)v[i] <= ' ' || (unsigned char)v[i] >= 0x7f || v[i] == '"' ||
            v[i] == '<' || v[i] == '>')
            return 0; /* not one plain address: leave it alone */
    return memchr(v + *a, '@', *b - *a) != NULL;
}

/* Append the element, its address rewritten; -1 when a table failed. */
static int emit_element(const char *v, const struct element *e, enum rewrite_class c,
                        struct out *out, int *changed)
{
    size_t a, b;
    if (!address_span(v, e, &a, &b)) {
        put(out, v + e->start, e->end - e->start);
        return 0;
    }
    char addr[512];
    snprintf(addr, sizeof addr, "%.*s", (int)(b - a), v + a);
    char old[512];
    str_copy(old, addr, sizeof old);
    if (rewrite_address(addr, sizeof addr, c) < 0)
        return -1;
    put(out, v + e->start, a - e->start);
    put(out, addr, strlen(addr));
    put(out, v + b, e->end - b);
    *changed |= strcmp(old, addr) != 0;
    return 0;
}

/* Scan one header value (RFC 5322 address list: quoted strings, nested
 * comments, angle addresses, groups) and rewrite each address. */
static int rewrite_value(const char *v, size_t n, enum rewrite_class c, struct out *out,
                         int *changed)
{
    struct element e = {0};
    int quoted = 0, depth = 0, angle = 0, count = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i == n && (quoted || depth || angle)) { /* unbalanced: keep it as written */
            put(out, v + e.start, n - e.start);
            break;
        }
        char ch = i < n ? v[i] : ',';
        if (i < n && (quoted || depth) && ch == '\\') {
            if (i + 1 < n)
                i++; /* the escaped character; never past the end */
            continue;
        }
        if (quoted) {
            quoted = ch != '"';
            continue;
        }
        if (depth) {
            depth += ch == '(' ? 1 : ch == ')' ? -1 : 0;
            continue;
        }
        if (angle) {
            if (ch == '>') {
                angle = 0;
                e.angle_end = i;
            }
            continue;
        }
        switch (ch) {
        case '"': quoted = 1; e.has_quote = 1; break;
        case '(': depth = 1; e.has_comment = 1; break;
        case '<':
            if (!e.has_angle) { /* the first <...> of the element is its address */
                angle = 1;
                e.has_angle = 1;
                e.angle_start = i + 1;
                e.angle_end = i + 1;
            }
            break;
        case ':': /* a group's name: not an address */
        case ',':
        case ';':
            e.end = i;
            if (count++ >= MAX_ELEMENTS)
                put(out, v + e.start, e.end - e.start);
            else if (ch == ':')
                put(out, v + e.start, e.end - e.start);
            else if (emit_element(v, &e, c, out, changed) < 0)
                return -1;
            if (i < n)
                put(out, &ch, 1);
            e = (struct element){.start = i + 1};
            break;
        }
    }
    return 0;
}

int hdr_rewrite_block(const char *block, size_t n, struct buf *outbuf)
{
    int changed = 0;
    size_t pos = 0;
    buf_reset(outbuf);
    struct out o = {outbuf, 0}, *out = &o;
    while (pos < n) {
        /* One header with its folded lines. */
        size_t end = pos;
        do {
            const char *nl = memchr(block + end, '\n', n - end);
            end = nl ? (size_t)(nl - block) + 1 : n;
        } while (end < n && (block[end] == ' ' || block[end] == '\t'));
        const char *colon = memchr(block + pos, ':', end - pos);
        size_t name_len = colon ? (size_t)(colon - (block + pos)) : 0;
        int sender = colon && listed(sender_headers, block + pos, name_len);
        int recipient = colon && listed(recipient_headers, block + pos, name_len);
        if (sender || recipient) {
            size_t vstart = (size_t)(colon - block) + 1;
            put(out, block + pos, vstart - pos);
            if (rewrite_value(block + vstart, end - vstart, sender ? RW_HEADER_SENDER
                                                                     : RW_HEADER_RECIPIENT,
                              out, &changed) < 0)
                return -1;
        } else
            put(out, block + pos, end - pos);
        pos = end;
    }
    return out->full ? -2 : changed;
}
