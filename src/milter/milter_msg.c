/* The message phase: the queued message read back and told to the filters
 * (DATA, headers, end of headers, body chunks, end of body), their changes
 * recorded, and milter_apply() writing the changed message. Also the
 * Sendmail macros. */
#include "milter/milter_int.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "conf/conf.h"
#include "queue/queue.h"
#include "util/strutil.h"


/* ---- macros -------------------------------------------------------------- */

static const char *nonempty(const char *s)
{
    return s && *s ? s : NULL;
}

const char *milter_macro_value(const struct milter_set *set, const char *name)
{
    static char joined[600];
    const struct milter_session *in = set->info;
    struct { const char *name, *value; } table[] = {
        {"j", in->myhostname},        {"{daemon_name}", in->daemon_name},
        {"{daemon_addr}", in->daemon_addr}, {"v", "keypost"},
        {"{client_addr}", in->client_addr}, {"{client_name}", in->client_name},
        {"{client_port}", in->client_port}, {"{tls_version}", in->tls_version},
        {"{cipher}", in->cipher},     {"{cipher_bits}", in->cipher_bits},
        {"{cert_subject}", in->cert_subject}, {"{cert_issuer}", in->cert_issuer},
        {"{auth_type}", in->auth_type}, {"{auth_authen}", in->auth_authen},
        {"i", in->queue_id},          {"{mail_addr}", set->sender},
        {"{rcpt_addr}", set->rcpt},   {"{mail_mailer}", "smtp"},
        {"{rcpt_mailer}", "smtp"},
    };
    if (strcmp(name, "_") == 0) {
        snprintf(joined, sizeof joined, "%s [%s]", in->client_name, in->client_addr);
        return joined;
    }
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (strcmp(table[i].name, name) == 0)
            return nonempty(table[i].value);
    return NULL;
}

/* ---- reading the queued message ---------------------------------------------- */

static int add_header(struct message *m, const char *line, size_t n)
{
    const char *colon = memchr(line, ':', n);
    if (colon == NULL || colon == line || m->nheaders >= MILTER_MAX_HEADERS)
        return -1;
    for (const char *p = line; p < colon; p++)
        if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f)
            return -1;
    struct header *h = realloc(m->headers, sizeof *h * (size_t)(m->nheaders + 1));
    if (h == NULL)
        return -1;
    m->headers = h;
    h[m->nheaders].name = strndup(line, (size_t)(colon - line));
    h[m->nheaders].value = strndup(colon + 1, n - (size_t)(colon + 1 - line));
    m->nheaders++;
    return 0;
}

/* The header block: "Name: value" lines, folded lines joined with CRLF,
 * up to the empty line (or the first line that is not a header, which
 * starts the body, as Postfix's cleanup decides). */
static int read_headers(struct message *m)
{
    char *block = malloc(HEADER_BLOCK_MAX + 1);
    if (block == NULL)
        return -1;
    off_t start = lseek(m->fd, 0, SEEK_CUR); /* the message, after the envelope */
    ssize_t got = start < 0 ? -1 : pread(m->fd, block, HEADER_BLOCK_MAX, start);
    if (got < 0) {
        free(block);
        return -1;
    }
    block[got] = '\0';
    size_t pos = 0, line_start = 0;
    int ended = 0;
    while (pos < (size_t)got) {
        char *nl = memchr(block + pos, '\n', (size_t)got - pos);
        size_t end = nl ? (size_t)(nl - block) + 1 : (size_t)got;
        int continuation = block[pos] == ' ' || block[pos] == '\t';
        if (!continuation && pos > line_start) {
            size_t n = pos - line_start;
            while (n && (block[line_start + n - 1] == '\n' || block[line_start + n - 1] == '\r'))
                n--;
            if (add_header(m, block + line_start, n) < 0)
                break;
            line_start = pos;
        }
        if (!continuation && (block[pos] == '\r' || block[pos] == '\n')) {
            line_start = end; /* the empty line: the body follows */
            ended = 1;
            m->blank_line = 1;
            break;
        }
        if (!continuation)
            line_start = pos;
        pos = end;
    }
    if (!ended && pos >= (size_t)got && line_start < (size_t)got) {
        size_t n = (size_t)got - line_start; /* headers only, no body */
        while (n && (block[line_start + n - 1] == '\n' || block[line_start + n - 1] == '\r'))
            n--;
        if (add_header(m, block + line_start, n) == 0)
            line_start = (size_t)got;
    }
    free(block);
    m->body_start = start + (off_t)line_start;
    return 0;
}

/* ---- the content steps ------------------------------------------------------ */

/* A header as filters read it: the value without its first space (unless
 * the filter asked for it), folded lines joined by LF as Sendmail does. */
static int send_header(struct filter *f, const struct header *h)
{
    struct buf b;
    buf_init(&b, MILTER_MAX_PACKET);
    int bad = buf_append(&b, h->name, strlen(h->name) + 1) < 0;
    const char *v = h->value;
    if (!(f->pflags & SMFIP_HDR_LEADSPC) && *v == ' ')
        v++;
    for (const char *p = v; !bad && *p; p++)
        bad = *p != '\r' && buf_append(&b, p, 1) < 0;
    bad = bad || buf_append(&b, "", 1) < 0;
    if (!bad)
        milter_send(f, 'L', b.data, b.len);
    buf_free(&b);
    return bad ? -1 : 0;
}

static int send_body_chunk(struct milter_set *set, struct filter *f)
{
    struct message *m = &set->msg;
    char *chunk = malloc(MILTER_CHUNK);
    ssize_t n = chunk ? pread(m->fd, chunk, MILTER_CHUNK, m->body_start + m->body_sent) : -1;
    if (n > 0) {
        milter_send(f, 'B', chunk, (size_t)n);
        m->body_sent += n;
        set->expect_reply = !(f->pflags & SMFIP_NR_BODY);
    }
    free(chunk);
    return n > 0;
}

int milter_next_content(struct milter_set *set, struct filter *f)
{
    struct message *m = &set->msg;
    for (;;) {
        switch (set->step) {
        case 0: /* DATA */
            set->stage = MS_MESSAGE;
            m->header_step = 0;
            m->body_sent = 0;
            f->skip_body = 0;
            set->step = 1;
            milter_send_macros(f, MS_DATA, 'T');
            if (!(f->pflags & SMFIP_NODATA)) {
                milter_send(f, 'T', NULL, 0);
                set->expect_reply = !(f->pflags & SMFIP_NR_DATA);
                return 1;
            }
            break;
        case 1: /* headers, one packet each */
            if (!(f->pflags & SMFIP_NOHDRS) && m->header_step < m->nheaders) {
                if (send_header(f, &m->headers[m->header_step++]) < 0) {
                    milter_fail(f, "a header longer than a milter packet");
                    return 0;
                }
                set->expect_reply = !(f->pflags & SMFIP_NR_HDR);
                return 1;
            }
            set->step = 2;
            break;
        case 2: /* end of headers */
            set->step = 3;
            milter_send_macros(f, MS_EOH, 'N');
            if (!(f->pflags & SMFIP_NOEOH)) {
                milter_send(f, 'N', NULL, 0);
                set->expect_reply = !(f->pflags & SMFIP_NR_EOH);
                return 1;
            }
            break;
        case 3: /* body */
            set->stage = MS_BODY;
            if (!(f->pflags & SMFIP_NOBODY) && !f->skip_body && send_body_chunk(set, f))
                return 1;
            set->step = 4;
            break;
        case 4: /* end of body: the changes and the verdict come now */
            set->stage = MS_EOM;
            set->step = 5;
            milter_send_macros(f, MS_EOM_MACROS, 'E');
            milter_send(f, 'E', NULL, 0);
            set->expect_reply = 1;
            return 1;
        default:
            return 0;
        }
    }
}

int milter_message(struct milter_set *set, int fd, struct milter_result *r,
                   milter_done_fn done, void *arg)
{
    milter_message_free(set);
    set->msg.fd = fd;
    if (read_headers(&set->msg) < 0) {
        r->verdict = MV_TEMPFAIL;
        str_copy(r->reply, "451 4.3.0 Error: cannot read the message back", sizeof r->reply);
        return 1;
    }
    return milter_run(set, MS_MESSAGE, r, done, arg);
}

/* ---- changes ------------------------------------------------------------------- */

/* The n-th NUL-terminated string of data (within len), or NULL. */
static const char *field(const char *data, size_t len, int n)
{
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        const char *z = memchr(data + off, '\0', len - off);
        if (z == NULL)
            return NULL;
        off = (size_t)(z - data) + 1;
        if (off >= len)
            return NULL;
    }
    return memchr(data + off, '\0', len - off) ? data + off : NULL;
}

static int header_name_ok(const char *n)
{
    if (*n == '\0' || strlen(n) > 200)
        return 0;
    for (; *n; n++)
        if ((unsigned char)*n <= ' ' || (unsigned char)*n >= 0x7f || *n == ':')
            return 0;
    return 1;
}

/* An address a filter gives: "<a@b>" or "a@b", printable, no spaces. */
static char *address_of(const char *text)
{
    char a[512];
    size_t n = str_copy(a, text + (*text == '<'), sizeof a);
    if (n >= sizeof a)
        return NULL;
    if (*text == '<') {
        if (n == 0 || a[n - 1] != '>')
            return NULL;
        a[--n] = '\0';
    }
    for (const char *p = a; *p; p++)
        if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f || *p == '<' || *p == '>')
            return NULL;
    return strdup(a);
}

static int add_address(char ***list, int *n, const char *text)
{
    char *a = address_of(text);
    char **grown = a && *n < MILTER_MAX_CHANGES ? realloc(*list, sizeof **list * (size_t)(*n + 1))
                                                : NULL;
    if (grown == NULL) {
        free(a);
        return -1;
    }
    *list = grown;
    grown[(*n)++] = a;
    return 0;
}

static int record_header(struct message *m, char kind, const char *data, size_t len,
                         int as_is)
{
    uint32_t index = 0;
    if (kind != 'h') {
        if (len < 4)
            return -1;
        memcpy(&index, data, 4);
        index = ntohl(index);
        data += 4;
        len -= 4;
    }
    const char *name = field(data, len, 0), *value = field(data, len, 1);
    if (name == NULL || value == NULL || !header_name_ok(name) ||
        m->nchanges >= MILTER_MAX_CHANGES)
        return -1;
    struct change *c = realloc(m->changes, sizeof *c * (size_t)(m->nchanges + 1));
    if (c == NULL)
        return -1;
    m->changes = c;
    c[m->nchanges++] = (struct change){kind, index, strdup(name), strdup(value), as_is};
    return 0;
}

int milter_record_change(struct filter *f, char cmd, const char *data, size_t len)
{
    struct milter_set *set = f->set;
    struct message *m = &set->msg;
    const char *a = field(data, len, 0);
    int as_is = (f->pflags & SMFIP_HDR_LEADSPC) != 0;
    switch (cmd) {
    case 'h': case 'i':
        return f->actions & SMFIF_ADDHDRS ? record_header(m, cmd, data, len, as_is) : -1;
    case 'm':
        return f->actions & SMFIF_CHGHDRS ? record_header(m, cmd, data, len, as_is) : -1;
    case 'b':
        if (!(f->actions & SMFIF_CHGBODY) ||
            m->new_body.len + len > (size_t)conf_long(P_MESSAGE_SIZE_LIMIT))
            return -1;
        if (!m->body_replaced)
            buf_init(&m->new_body, (size_t)conf_long(P_MESSAGE_SIZE_LIMIT));
        m->body_replaced = 1;
        return buf_append(&m->new_body, data, len);
    case '+': case '2':
        /* A recipient must be an address with a domain: no "<>", no bare
         * user left for keypost to guess about. */
        if (!(f->actions & (cmd == '+' ? SMFIF_ADDRCPT : SMFIF_ADDRCPT_PAR)) || a == NULL ||
            strchr(a, '@') == NULL)
            return -1;
        return add_address(&m->added, &m->nadded, a);
    case '-':
        return f->actions & SMFIF_DELRCPT && a ? add_address(&m->deleted, &m->ndeleted, a) : -1;
    case 'e': {
        char *s = f->actions & SMFIF_CHGFROM && a ? (*a == '<' && a[1] == '>' ? strdup("")
                                                                               : address_of(a))
                                                  : NULL;
        if (s == NULL)
            return -1;
        free(m->new_sender);
        m->new_sender = s;
        return 0;
    }
    case 'q':
        if (!(f->actions & SMFIF_QUARANTINE))
            return -1;
        set->result.quarantine = 1;
        snprintf(set->result.reason, sizeof set->result.reason, "%s", a ? a : "");
        return 0;
    }
    return -1;
}

int milter_changed(const struct milter_set *set)
{
    const struct message *m = &set->msg;
    return m->nchanges || m->body_replaced || m->new_sender || m->nadded || m->ndeleted;
}

void milter_message_free(struct milter_set *set)
{
    struct message *m = &set->msg;
    if (m->fd > 0)
        close(m->fd);
    for (int i = 0; i < m->nheaders; i++) {
        free(m->headers[i].name);
        free(m->headers[i].value);
    }
    for (int i = 0; i < m->nchanges; i++) {
        free(m->changes[i].name);
        free(m->changes[i].value);
    }
    for (int i = 0; i < m->nadded; i++)
        free(m->added[i]);
    for (int i = 0; i < m->ndeleted; i++)
        free(m->deleted[i]);
    free(m->headers);
    free(m->changes);
    free(m->added);
    free(m->deleted);
    free(m->new_sender);
    if (m->body_replaced)
        buf_free(&m->new_body);
    memset(m, 0, sizeof *m);
}

/* ---- writing the changed message ------------------------------------------------ */

/* A filter's value written into the message: LF and CR become CRLF, and a
 * continuation line always starts with white space. */
static int write_value(struct buf *b, const char *v, int leading_space)
{
    int bad = leading_space && buf_puts(b, " ") < 0;
    for (; !bad && *v; v++) {
        if (*v == '\r')
            continue;
        if (*v == '\n') {
            bad = buf_puts(b, "\r\n") < 0 ||
                  (v[1] != ' ' && v[1] != '\t' && buf_puts(b, "\t") < 0);
            continue;
        }
        bad = buf_append(b, v, 1) < 0;
    }
    return bad ? -1 : 0;
}

/* Apply header changes to a list of (name, value, from_filter) entries. */
struct hline {
    const char *name, *value;
    int from_filter;   /* 1: add a space after the colon; 2: the value as given */
};

static int apply_change(struct hline *h, int *n, int cap, const struct change *c)
{
    if (c->kind == 'm') {
        /* Sendmail and Postfix take index 0 as 1. */
        uint32_t want = c->index ? c->index : 1, seen = 0;
        for (int i = 0; i < *n; i++)
            if (strcasecmp(h[i].name, c->name) == 0 && ++seen == want) {
                if (*c->value == '\0') {
                    memmove(h + i, h + i + 1, sizeof *h * (size_t)(*n - i - 1));
                    (*n)--;
                } else
                    h[i] = (struct hline){c->name, c->value, c->as_is ? 2 : 1};
                return 0;
            }
        if (*c->value == '\0')
            return 0; /* deleting a header that is not there: nothing to do */
    }
    if (*n >= cap)
        return -1;
    /* An index past the end (or one that would be negative as an int)
     * appends, as libmilter documents for smfi_insheader. */
    int at = c->kind == 'i' && c->index < (uint32_t)*n ? (int)c->index : *n;
    memmove(h + at + 1, h + at, sizeof *h * (size_t)(*n - at));
    h[at] = (struct hline){c->name, c->value, c->as_is ? 2 : 1};
    (*n)++;
    return 0;
}

static int write_headers(struct milter_set *set, struct qfile *q)
{
    struct message *m = &set->msg;
    int cap = m->nheaders + m->nchanges, n = m->nheaders;
    struct hline *h = calloc((size_t)cap + 1, sizeof *h);
    if (h == NULL)
        return -1;
    for (int i = 0; i < n; i++)
        h[i] = (struct hline){m->headers[i].name, m->headers[i].value, 0};
    for (int i = 0; i < m->nchanges; i++)
        apply_change(h, &n, cap, &m->changes[i]);
    int r = 0;
    struct buf b; /* one header at a time, each bounded by what came in */
    buf_init(&b, 2 * MILTER_MAX_PACKET + HEADER_BLOCK_MAX);
    for (int i = 0; r == 0 && i < n; i++) {
        buf_reset(&b);
        int bad = buf_printf(&b, "%s:", h[i].name) < 0;
        if (h[i].from_filter)
            bad |= write_value(&b, h[i].value, h[i].from_filter == 1) < 0;
        else
            bad |= buf_puts(&b, h[i].value) < 0;
        bad |= buf_puts(&b, "\r\n") < 0;
        r = bad ? -1 : queue_write(q, b.data, b.len);
    }
    /* The empty line, unless the body began at a line that was no header. */
    if (r == 0 && m->blank_line)
        r = queue_write(q, "\r\n", 2);
    buf_free(&b);
    free(h);
    return r;
}

static int write_body(struct milter_set *set, struct qfile *q)
{
    struct message *m = &set->msg;
    if (m->body_replaced) { /* filters send CRLF lines; make sure of it */
        const char *p = m->new_body.data;
        size_t n = m->new_body.len;
        int r = 0;
        for (size_t i = 0; r == 0 && i < n; i++) {
            int bare_lf = p[i] == '\n' && (i == 0 || p[i - 1] != '\r');
            int bare_cr = p[i] == '\r' && (i + 1 >= n || p[i + 1] != '\n');
            r = bare_lf || bare_cr ? queue_write(q, "\r\n", 2) : queue_write(q, p + i, 1);
        }
        return r; /* queue_write buffers: a byte at a time costs no system call */
    }
    char chunk[65536];
    for (off_t off = m->body_start;;) {
        ssize_t got = pread(m->fd, chunk, sizeof chunk, off);
        if (got < 0)
            return -1;
        if (got == 0)
            return 0;
        if (queue_write(q, chunk, (size_t)got) < 0)
            return -1;
        off += got;
    }
}

static int listed(char **list, int n, const char *a)
{
    for (int i = 0; i < n; i++)
        if (strcasecmp(list[i], a) == 0)
            return 1;
    return 0;
}

struct qfile *milter_apply(struct milter_set *set, struct qfile *old, const struct envelope *env,
                           char *err, size_t len)
{
    struct message *m = &set->msg;
    struct envelope e = *env;
    int cap = env->nrcpt + m->nadded;
    e.rcpts = calloc((size_t)cap + 1, sizeof *e.rcpts);
    e.orig_rcpts = calloc((size_t)cap + 1, sizeof *e.orig_rcpts);
    e.nrcpt = 0;
    struct qfile *q = NULL;
    if (e.rcpts == NULL || e.orig_rcpts == NULL) {
        snprintf(err, len, "out of memory");
        goto out;
    }
    for (int i = 0; i < env->nrcpt; i++) {
        /* The filter knows the recipient as given at RCPT: deleting it
         * deletes what it expanded to, as Postfix does. */
        const char *orig = env->orig_rcpts ? env->orig_rcpts[i] : NULL;
        if (listed(m->deleted, m->ndeleted, env->rcpts[i]) ||
            (orig && listed(m->deleted, m->ndeleted, orig)))
            continue;
        {
            e.orig_rcpts[e.nrcpt] = env->orig_rcpts ? env->orig_rcpts[i] : NULL;
            e.rcpts[e.nrcpt++] = env->rcpts[i];
        }
    }
    for (int i = 0; i < m->nadded; i++)
        if (!listed(e.rcpts, e.nrcpt, m->added[i]))
            e.rcpts[e.nrcpt++] = m->added[i];
    if (e.nrcpt == 0) {
        snprintf(err, len, "the filters removed every recipient");
        goto out;
    }
    if (m->new_sender)
        e.sender = m->new_sender;
    e.hold |= set->result.quarantine;
    q = queue_create_replacement(old, &e);
    if (q == NULL || write_headers(set, q) < 0 || write_body(set, q) < 0) {
        snprintf(err, len, "cannot write the filtered message");
        if (q)
            queue_abort(q);
        q = NULL;
    }
out:
    free(e.rcpts);
    free(e.orig_rcpts);
    return q;
}
