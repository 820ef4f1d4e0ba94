#include "deliver/virtual.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "addr/addrclass.h"
#include "deliver/mailboxd.h"
#include "deliver/maildir.h"
#include "table/tablelist.h"
#include "util/strutil.h"

/* virtual_uid_maps or virtual_gid_maps: a fixed number or tables. */
struct id_map {
    enum conf_param param;
    long fixed;           /* static:N; -1 when tables are used */
    struct table_list tables;
};

static struct id_map uids = {.param = P_VIRTUAL_UID_MAPS, .fixed = -1};
static struct id_map gids = {.param = P_VIRTUAL_GID_MAPS, .fixed = -1};

/* "N" as a whole number in [0, 2^31), or -1. */
static long parse_id(const char *text)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || end == text || *str_trim(end) != '\0' || v < 0 || v > 0x7fffffffL)
        return -1;
    return v;
}

static void open_id_map(struct id_map *m, struct conf_errors *errs)
{
    table_list_free(&m->tables);
    m->fixed = -1;
    const char *v = conf_str(m->param);
    if (strncmp(v, "static:", 7) == 0) {
        m->fixed = parse_id(v + 7);
        if (m->fixed < 0)
            conf_error(errs, "%s: %s: \"%s\" is not static:NUMBER", conf_origin(m->param),
                       conf_name(m->param), v);
        return;
    }
    table_list_open(&m->tables, m->param, 0, errs);
}

/* Virtual mailboxes are in use: the route "virtual" is configured. */
static int virtual_in_use(void)
{
    const char *domains = conf_str(P_VIRTUAL_MAILBOX_DOMAINS);
    return *domains && strcmp(conf_str(P_VIRTUAL_TRANSPORT), "virtual") == 0;
}

int virtual_init(struct conf_errors *errs)
{
    int before = errs->count;
    open_id_map(&uids, errs);
    open_id_map(&gids, errs);
    if (!virtual_in_use())
        return errs->count - before;
    const char *base = conf_str(P_VIRTUAL_MAILBOX_BASE);
    if (base[0] != '/')
        conf_error(errs, "%s: virtual_mailbox_base must be an absolute directory for "
                   "virtual_transport = virtual", conf_origin(P_VIRTUAL_MAILBOX_BASE));
    for (struct id_map *m = &uids; m; m = m == &uids ? &gids : NULL) {
        if (m->fixed < 0 && m->tables.n == 0)
            conf_error(errs, "%s: %s must be set for virtual_transport = virtual (static:N or "
                       "a table)", conf_origin(m->param), conf_name(m->param));
        if (m == &uids && m->fixed >= 0 && m->fixed < conf_long(P_VIRTUAL_MINIMUM_UID))
            conf_error(errs, "%s: virtual_uid_maps: uid %ld is below virtual_minimum_uid (%ld)",
                       conf_origin(m->param), m->fixed, conf_long(P_VIRTUAL_MINIMUM_UID));
    }
    return errs->count - before;
}

void virtual_free(void)
{
    table_list_free(&uids.tables);
    table_list_free(&gids.tables);
}

/* The address, then without its extension, then "@domain": the order
 * virtual_mailbox_maps uses. 0 found, 1 none, -1 a table failed. */
static int lookup_id(const struct id_map *m, const char *rcpt, long *id)
{
    if (m->fixed >= 0) {
        *id = m->fixed;
        return 0;
    }
    char keys[3][600];
    int n = 0;
    const char *at = strrchr(rcpt, '@');
    str_copy(keys[n++], rcpt, sizeof keys[0]);
    if (at) {
        size_t local = (size_t)(at - rcpt);
        char part[600];
        snprintf(part, sizeof part, "%.*s", (int)local, rcpt);
        size_t cut = addrclass_extension_cut(part);
        if (cut < local)
            snprintf(keys[n++], sizeof keys[0], "%.*s%s", (int)cut, rcpt, at);
        snprintf(keys[n++], sizeof keys[0], "%s", at);
    }
    for (int i = 0; i < n; i++) {
        const char *value = NULL;
        int r = table_list_get(&m->tables, keys[i], &value, NULL);
        if (r < 0)
            return -1;
        if (r > 0) {
            *id = parse_id(value);
            return *id < 0 ? -2 : 0;
        }
    }
    return 1;
}

static int find_owner(const char *rcpt, long *uid, long *gid, struct dresult *r)
{
    const struct id_map *maps[2] = {&uids, &gids};
    long *ids[2] = {uid, gid};
    for (int i = 0; i < 2; i++) {
        int found = lookup_id(maps[i], rcpt, ids[i]);
        const char *name = conf_name(maps[i]->param);
        if (found == -1)
            dresult_set(r, D_DEFERRED, "4.3.0 %s lookup failed for %s", name, rcpt);
        else if (found == -2)
            dresult_set(r, D_DEFERRED, "4.3.5 %s gives no number for %s", name, rcpt);
        else if (found == 1)
            dresult_set(r, D_DEFERRED, "4.3.5 %s has no entry for %s", name, rcpt);
        if (found != 0)
            return -1;
    }
    return 0;
}

/* Write the message into a file the helper (or, as the owner, we) made. */
static int write_file(int fd, const struct dmessage *m, const char *rcpt, char *err,
                      size_t len)
{
    if (maildir_copy_message(fd, m, rcpt) < 0 || fsync(fd) < 0) {
        snprintf(err, len, "4.3.0 cannot write the message: %s", strerror(errno));
        return -1;
    }
    return 0;
}

static int store_as_helper(long uid, long gid, const char *rel, const struct dmessage *m,
                           const char *rcpt, char *err, size_t len)
{
    int file;
    int conn = mailboxd_open((int)uid, (int)gid, rel, &file, err, len);
    if (conn < 0)
        return -1;
    int bad = write_file(file, m, rcpt, err, len);
    close(file);
    if (bad) {
        close(conn); /* the helper removes the file */
        return -1;
    }
    return mailboxd_commit(conn, err, len);
}

static int store_as_self(const char *rel, const struct dmessage *m, const char *rcpt,
                         char *err, size_t len)
{
    struct maildir_slot *sl = maildir_slot_open(conf_str(P_VIRTUAL_MAILBOX_BASE), rel, err,
                                                len);
    if (sl == NULL)
        return -1;
    int bad = write_file(maildir_slot_file(sl), m, rcpt, err, len) < 0 ||
              maildir_slot_commit(sl, err, len) < 0;
    maildir_slot_close(sl);
    return bad ? -1 : 0;
}

void virtual_deliver(const struct dmessage *m, const char *rcpt, struct dresult *r)
{
    str_copy(r->relay, "virtual", sizeof r->relay);
    if (maildir_delivered_before(m, rcpt)) {
        dresult_set(r, D_BOUNCED, "5.4.6 mail forwarding loop for %s", rcpt);
        return;
    }
    char rel[1024], err[600];
    int found = addrclass_mailbox_path(rcpt, rel, sizeof rel);
    if (found != 0) {
        dresult_set(r, found < 0 ? D_DEFERRED : D_BOUNCED, found < 0
                    ? "4.3.0 virtual_mailbox_maps lookup failed for %s"
                    : "5.1.1 %s: user unknown in virtual mailbox table", rcpt);
        return;
    }
    if (!maildir_path_ok(rel)) {
        dresult_set(r, D_DEFERRED, "4.3.5 virtual_mailbox_maps value \"%.200s\" for %s is not "
                    "a Maildir path below virtual_mailbox_base (one ending in /)", rel, rcpt);
        return;
    }
    long uid, gid;
    if (find_owner(rcpt, &uid, &gid, r) < 0)
        return;
    int stored;
    if (mailboxd_available())
        stored = store_as_helper(uid, gid, rel, m, rcpt, err, sizeof err);
    else if (uid == (long)geteuid() && gid == (long)getegid())
        stored = store_as_self(rel, m, rcpt, err, sizeof err);
    else {
        snprintf(err, sizeof err, "4.3.0 cannot write as uid %ld gid %ld: keypost was not "
                 "started as root", uid, gid);
        stored = -1;
    }
    if (stored < 0)
        dresult_set(r, D_DEFERRED, "%s", err);
    else
        dresult_set(r, D_SENT, "delivered to maildir %s/%s", conf_str(P_VIRTUAL_MAILBOX_BASE),
                    rel);
}
