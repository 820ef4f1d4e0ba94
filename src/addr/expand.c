#include "addr/expand.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr/addrclass.h"
#include "conf/conf.h"
#include "util/strutil.h"

#define MAX_ADDR 512
#define MAX_DEPTH 64             /* nesting, below virtual_alias_recursion_limit */
#define MAX_LOOKUPS 100000       /* per message: overlapping lists stay cheap */
#define MAX_FINAL 100000         /* final recipients per message */

/* The final addresses of one message, for duplicate removal in O(1). */
struct seen {
    char **slots;
    size_t cap;
};

struct expand_ctx {
    struct expansion *out;
    struct seen *seen;
    long *lookups;
    const char *orig;       /* the recipient given at RCPT */
    int produced;           /* final addresses made from orig */
    const char *path[MAX_DEPTH]; /* the aliases being expanded, for loops */
    int depth;
    char *err;
    size_t len;
};

static size_t hash_lower(const char *s)
{
    size_t h = 5381;
    for (; *s; s++)
        h = h * 33 + (size_t)(*s >= 'A' && *s <= 'Z' ? *s + 32 : *s);
    return h;
}

static int seen_grow(struct seen *st)
{
    size_t cap = st->cap ? st->cap * 2 : 64;
    char **slots = calloc(cap, sizeof *slots);
    if (slots == NULL)
        return -1;
    for (size_t i = 0; i < st->cap; i++) {
        if (st->slots[i] == NULL)
            continue;
        size_t j = hash_lower(st->slots[i]) & (cap - 1);
        while (slots[j])
            j = (j + 1) & (cap - 1);
        slots[j] = st->slots[i];
    }
    free(st->slots);
    st->slots = slots;
    st->cap = cap;
    return 0;
}

static int seen_has(const struct seen *st, const char *addr)
{
    if (st->cap == 0)
        return 0;
    for (size_t i = hash_lower(addr) & (st->cap - 1); st->slots[i]; i = (i + 1) & (st->cap - 1))
        if (str_ieq(st->slots[i], addr))
            return 1;
    return 0;
}

/* Remember addr (the pointer must live as long as st); -1 out of memory. */
static int seen_insert(struct seen *st, size_t count, char *addr)
{
    if ((count + 1) * 2 > st->cap && seen_grow(st) < 0)
        return -1;
    size_t i = hash_lower(addr) & (st->cap - 1);
    while (st->slots[i])
        i = (i + 1) & (st->cap - 1);
    st->slots[i] = addr;
    return 0;
}

static enum expand_status out_of_memory(struct expand_ctx *c, char *a, char *b)
{
    free(a);
    free(b);
    snprintf(c->err, c->len, "out of memory expanding <%s>", c->orig);
    return EXPAND_TEMPFAIL;
}

static enum expand_status add_final(struct expand_ctx *c, const char *addr)
{
    struct expansion *x = c->out;
    if (seen_has(c->seen, addr))
        return EXPAND_OK; /* the same mailbox once, as Postfix does */
    if (++c->produced > conf_long(P_VIRTUAL_ALIAS_EXPANSION_LIMIT) || x->n >= MAX_FINAL) {
        snprintf(c->err, c->len, "unreasonable virtual_alias_maps map expansion size for <%s>"
                 " (virtual_alias_expansion_limit = %ld)", c->orig,
                 conf_long(P_VIRTUAL_ALIAS_EXPANSION_LIMIT));
        return EXPAND_LIMIT;
    }
    char *copy = strdup(addr), *orig = strdup(c->orig);
    if (copy == NULL || orig == NULL)
        return out_of_memory(c, copy, orig);
    char **a = realloc(x->addrs, sizeof(char *) * (size_t)(x->n + 1));
    if (a)
        x->addrs = a;
    char **o = a ? realloc(x->origs, sizeof(char *) * (size_t)(x->n + 1)) : NULL;
    if (o)
        x->origs = o;
    if (a == NULL || o == NULL || seen_insert(c->seen, (size_t)x->n, copy) < 0)
        return out_of_memory(c, copy, orig);
    x->addrs[x->n] = copy;
    x->origs[x->n] = orig;
    x->n++;
    return EXPAND_OK;
}

/* 1 with a copy of the alias's value, 0 no alias, -1 a table failed. */
static int alias_of(const char *addr, char **value)
{
    enum addr_class cls;
    const char *v = NULL;
    if (addrclass_of_address(addr, &cls) < 0)
        return -1;
    int r = addrclass_virtual_alias(addr, &v);
    if (r == 0 && cls == AC_LOCAL)
        r = addrclass_local_alias(addr, &v);
    if (r > 0)
        *value = strdup(v);
    return r;
}

static enum expand_status expand_addr(struct expand_ctx *c, const char *addr);

/* The domain for an alias target without one: the alias's own domain when
 * that is local (Maildirs are kept per domain, DIR/DOMAIN/USER, so
 * "info@example.com: alice" means alice@example.com), else $myorigin. */
static const char *target_domain(const char *alias)
{
    const char *at = strrchr(alias, '@');
    enum addr_class cls;
    if (at && addrclass_of_domain(at + 1, &cls) == 0 && cls == AC_LOCAL)
        return at + 1;
    return conf_str(P_MYORIGIN);
}

/* One target of an alias: qualified, then expanded in its turn. */
static enum expand_status expand_target(struct expand_ctx *c, const char *alias,
                                        const char *target)
{
    char addr[MAX_ADDR];
    if (target[0] == '|' || target[0] == '/' || str_iprefix(target, ":include:")) {
        snprintf(c->err, c->len, "alias <%s> delivers to a command or file (\"%.100s\"): "
                 "keypost does not", alias, target);
        return EXPAND_UNSUPPORTED;
    }
    if (strchr(target, '@'))
        str_copy(addr, target, sizeof addr);
    else
        snprintf(addr, sizeof addr, "%s@%s", target, target_domain(alias));
    if (str_ieq(addr, alias))
        return add_final(c, addr); /* "alice: alice, archive" keeps alice */
    return expand_addr(c, addr);
}

static enum expand_status expand_addr(struct expand_ctx *c, const char *addr)
{
    for (int i = 0; i < c->depth; i++)
        if (str_ieq(c->path[i], addr)) {
            snprintf(c->err, c->len, "alias loop: <%s> expands to itself through <%s>", addr,
                     c->path[c->depth - 1]);
            return EXPAND_LIMIT;
        }
    if (c->depth >= conf_long(P_VIRTUAL_ALIAS_RECURSION_LIMIT) ||
        c->depth >= MAX_DEPTH) {
        snprintf(c->err, c->len, "unreasonable virtual_alias_maps map nesting for <%s>",
                 c->orig);
        return EXPAND_LIMIT;
    }
    if (++*c->lookups > MAX_LOOKUPS) {
        snprintf(c->err, c->len, "unreasonable virtual_alias_maps map expansion size for <%s>"
                 " (more than %d lookups)", c->orig, MAX_LOOKUPS);
        return EXPAND_LIMIT;
    }
    char *value = NULL;
    int r = alias_of(addr, &value);
    if (r < 0) {
        snprintf(c->err, c->len, "alias lookup for <%s> failed", addr);
        return EXPAND_TEMPFAIL;
    }
    if (r == 0)
        return add_final(c, addr);
    c->path[c->depth++] = addr;
    enum expand_status st = EXPAND_OK;
    char *words[1024];
    int n = str_split_list(value, words, 1024);
    if (n == 1024) {
        snprintf(c->err, c->len, "unreasonable virtual_alias_maps map expansion size for <%s>",
                 c->orig);
        st = EXPAND_LIMIT;
    }
    for (int i = 0; i < n && st == EXPAND_OK; i++)
        st = expand_target(c, addr, words[i]);
    c->depth--;
    free(value);
    return st;
}

enum expand_status expand_recipients(char *const *rcpts, char *const *origs, int n,
                                     struct expansion *out, char *err, size_t len)
{
    memset(out, 0, sizeof *out);
    struct seen seen = {NULL, 0};
    long lookups = 0;
    enum expand_status st = EXPAND_OK;
    for (int i = 0; i < n && st == EXPAND_OK; i++) {
        struct expand_ctx c = {out, &seen, &lookups, origs ? origs[i] : rcpts[i], 0, {0}, 0,
                               err, len};
        st = expand_addr(&c, rcpts[i]);
    }
    free(seen.slots); /* the strings belong to out */
    if (st != EXPAND_OK)
        expansion_free(out);
    return st;
}

void expansion_free(struct expansion *x)
{
    for (int i = 0; i < x->n; i++) {
        free(x->addrs[i]);
        free(x->origs[i]);
    }
    free(x->addrs);
    free(x->origs);
    memset(x, 0, sizeof *x);
}
