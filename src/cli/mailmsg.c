/* mailmsg: reading a message for the sendmail command (see mailmsg.h). */
#include "cli/mailmsg.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/strutil.h"

#define MAX_HEADERS 10000

static int add_string(char ***list, int *n, const char *p, size_t len)
{
    char **grown = realloc(*list, sizeof **list * (size_t)(*n + 1));
    if (grown == NULL)
        return -1;
    *list = grown;
    char *copy = strndup(p, len);
    if (copy == NULL)
        return -1;
    grown[(*n)++] = copy;
    return 0;
}

/* "Name:" with printable characters and no space before the colon. */
static int starts_header(const char *line, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)line[i];
        if (c == ':')
            return i > 0;
        if (c <= ' ' || c >= 0x7f)
            return 0;
    }
    return 0;
}

static int header_is(const char *field, const char *name)
{
    size_t n = strlen(name);
    return strncasecmp(field, name, n) == 0 && field[n] == ':';
}

/* One element of an address list: "Name <a@b>", "a@b (comment)", "<a@b>". */
static int add_one(struct mailmsg *m, const char *p, size_t len)
{
    char addr[1024];
    size_t o = 0;
    const char *lt = memchr(p, '<', len);
    const char *gt = lt ? memchr(lt, '>', len - (size_t)(lt - p)) : NULL;
    if (lt && gt) {
        p = lt + 1;
        len = (size_t)(gt - lt - 1);
    }
    int depth = 0, quoted = 0;
    for (size_t i = 0; i < len && o + 1 < sizeof addr; i++) {
        char c = p[i];
        if (c == '"' && depth == 0)
            quoted = !quoted;
        if (!quoted && c == '(')
            depth++;
        else if (!quoted && c == ')' && depth > 0)
            depth--;
        else if (depth == 0 && (quoted || (c != ' ' && c != '\t' && c != '\n')))
            addr[o++] = c;
    }
    addr[o] = '\0';
    if (o == 0)
        return 0;
    if (!mailmsg_address_ok(addr)) {
        for (size_t i = 0; i < o; i++)
            if ((unsigned char)addr[i] < 0x20 || addr[i] == 0x7f)
                addr[i] = '?';
        str_copy(m->bad, addr, sizeof m->bad);
        return MAILMSG_BAD_ADDRESS;
    }
    return add_string(&m->rcpts, &m->nrcpt, addr, o) < 0 ? MAILMSG_NO_MEMORY : 0;
}

int mailmsg_address_ok(const char *addr)
{
    for (const unsigned char *p = (const unsigned char *)addr; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return 0;
    return 1;
}

int mailmsg_add_addresses(struct mailmsg *m, const char *v)
{
    int quoted = 0, depth = 0, angle = 0;
    const char *start = v;
    for (const char *p = v;; p++) {
        char c = *p;
        if (c == '\\' && p[1] && (quoted || depth)) {
            p++;
            continue;
        }
        if (c == '"' && depth == 0)
            quoted = !quoted;
        else if (!quoted && c == '(')
            depth++;
        else if (!quoted && c == ')' && depth > 0)
            depth--;
        else if (!quoted && depth == 0 && c == '<')
            angle = 1;
        else if (!quoted && depth == 0 && c == '>')
            angle = 0;
        else if (!quoted && depth == 0 && !angle && c == ':')
            start = p + 1; /* "group: a, b;" */
        if (c == '\0' || (!quoted && depth == 0 && !angle && (c == ',' || c == ';'))) {
            int r = add_one(m, start, (size_t)(p - start));
            if (r < 0)
                return r;
            start = p + 1;
        }
        if (c == '\0')
            return 0;
    }
}

/* RFC 5322 unfolding: the CRLF of a continuation line goes. */
static void unfold(char *v)
{
    char *o = v;
    for (char *p = v; *p; p++)
        if (!(p[0] == '\r' && p[1] == '\n'))
            *o++ = *p;
        else
            p++;
    *o = '\0';
}

/* Collect recipients from To/Cc/Bcc; 1 when the field is to be dropped. */
static int extract_field(struct mailmsg *m, const char *field, int *err)
{
    static const char *const names[] = {"To", "Cc", "Bcc"};
    for (int i = 0; i < 3; i++) {
        if (!header_is(field, names[i]))
            continue;
        char *v = strdup(field + strlen(names[i]) + 1);
        if (v)
            unfold(v);
        int r = v ? mailmsg_add_addresses(m, v) : MAILMSG_NO_MEMORY;
        if (r < 0)
            *err = r;
        free(v);
        return i == 2;
    }
    return 0;
}

struct reader {
    struct mailmsg *m;
    int in_body, ignore_dots, extract, err;
    struct buf field; /* the header field being read (continuations joined) */
};

static void end_field(struct reader *r)
{
    if (r->field.len == 0)
        return;
    int drop = r->extract && extract_field(r->m, r->field.data, &r->err);
    if (!drop && (r->m->nheaders >= MAX_HEADERS ||
                  add_string(&r->m->headers, &r->m->nheaders, r->field.data, r->field.len) < 0))
        r->err = MAILMSG_NO_MEMORY;
    buf_reset(&r->field);
}

static void body_line(struct reader *r, const char *line, size_t len)
{
    if (buf_append(&r->m->body, line, len) < 0 || buf_append(&r->m->body, "\r\n", 2) < 0)
        r->err = MAILMSG_NO_MEMORY;
}

/* One line without its line end. Returns 1 at the lone dot. */
static int take_line(struct reader *r, const char *line, size_t len)
{
    if (!r->ignore_dots && len == 1 && line[0] == '.')
        return 1;
    if (r->in_body) {
        body_line(r, line, len);
        return 0;
    }
    if ((line[0] == ' ' || line[0] == '\t') && len && r->field.len) {
        if (buf_append(&r->field, "\r\n", 2) < 0 || buf_append(&r->field, line, len) < 0)
            r->err = MAILMSG_NO_MEMORY;
        return 0;
    }
    end_field(r);
    if (starts_header(line, len)) {
        if (buf_append(&r->field, line, len) < 0)
            r->err = MAILMSG_NO_MEMORY;
        return 0;
    }
    r->in_body = 1; /* the empty line, or a first line that is not a header */
    if (len)
        body_line(r, line, len);
    return 0;
}

int mailmsg_read(FILE *in, size_t limit, int ignore_dots, int extract, struct mailmsg *m)
{
    memset(m, 0, sizeof *m);
    buf_init(&m->body, limit * 2 + 2);
    struct reader r = {.m = m, .ignore_dots = ignore_dots, .extract = extract};
    buf_init(&r.field, limit * 2 + 2);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while (r.err == 0 && (n = getline(&line, &cap, in)) > 0) {
        m->read += (size_t)n;
        if (m->read > limit) {
            r.err = MAILMSG_TOO_BIG;
            break;
        }
        size_t len = (size_t)n;
        if (len && line[len - 1] == '\n')
            len--;
        if (len && line[len - 1] == '\r' && (size_t)n > len)
            len--; /* CRLF: one line end */
        for (size_t i = 0; i < len; i++)
            m->eightbit |= (unsigned char)line[i] >= 0x80;
        if (take_line(&r, line, len))
            break;
    }
    if (r.err == 0 && ferror(in))
        r.err = MAILMSG_READ_ERROR;
    if (r.err == 0)
        end_field(&r);
    free(line);
    buf_free(&r.field);
    return r.err;
}

int mailmsg_has_header(const struct mailmsg *m, const char *name)
{
    for (int i = 0; i < m->nheaders; i++)
        if (header_is(m->headers[i], name))
            return 1;
    return 0;
}

/* Copy CRLF-ended lines, doubling a leading dot. */
static int put_stuffed(struct buf *out, const char *p, size_t n)
{
    int bol = 1;
    for (size_t i = 0; i < n; i++) {
        if (bol && p[i] == '.' && buf_append(out, ".", 1) < 0)
            return -1;
        if (buf_append(out, p + i, 1) < 0)
            return -1;
        /* A bare CR ends a line for the server's end-of-data check too. */
        bol = p[i] == '\n' || (p[i] == '\r' && (i + 1 == n || p[i + 1] != '\n'));
    }
    return 0;
}

int mailmsg_render(const struct mailmsg *m, const char *extra, struct buf *out)
{
    int bad = 0;
    for (int i = 0; i < m->nheaders && !bad; i++)
        bad = put_stuffed(out, m->headers[i], strlen(m->headers[i])) < 0 ||
              buf_append(out, "\r\n", 2) < 0;
    if (!bad)
        bad = put_stuffed(out, extra, strlen(extra)) < 0 || buf_append(out, "\r\n", 2) < 0 ||
              put_stuffed(out, buf_str(&m->body), m->body.len) < 0;
    return bad ? -1 : 0;
}

void mailmsg_free(struct mailmsg *m)
{
    for (int i = 0; i < m->nheaders; i++)
        free(m->headers[i]);
    free(m->headers);
    for (int i = 0; i < m->nrcpt; i++)
        free(m->rcpts[i]);
    free(m->rcpts);
    buf_free(&m->body);
    memset(m, 0, sizeof *m);
}
