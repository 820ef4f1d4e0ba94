/* localsubmit: who submits through the local socket, and which envelope
 * senders they may use (see localsubmit.h for the design). */
#include "smtpd/localsubmit.h"

#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "addr/addrclass.h"
#include "table/table.h"
#include "table/tablelist.h"
#include "util/strutil.h"

static struct table_list sender_maps;

/* authorized_submit_users: names, !names and static:anyone only. A table
 * would be looked up in the worker, at the greeting, synchronously: keypost
 * has no need for that yet, so it is refused rather than half supported. */
static int check_submit_users(struct conf_errors *errs)
{
    char *copy = strdup(conf_str(P_AUTHORIZED_SUBMIT_USERS));
    char *items[64];
    int n = copy ? str_split_list(copy, items, 64) : 0, bad = 0;
    for (int i = 0; i < n; i++) {
        const char *it = items[i][0] == '!' ? items[i] + 1 : items[i];
        if (strchr(it, ':') && strcmp(items[i], "static:anyone") != 0) {
            conf_error(errs, "%s: %s: \"%s\": only login names, !name and static:anyone are "
                       "supported", conf_origin(P_AUTHORIZED_SUBMIT_USERS),
                       conf_name(P_AUTHORIZED_SUBMIT_USERS), items[i]);
            bad = -1;
        }
    }
    free(copy);
    return bad;
}

int localsubmit_init(struct conf_errors *errs)
{
    localsubmit_free();
    table_list_open(&sender_maps, P_LOCAL_LOGIN_SENDER_MAPS, 0, errs);
    int bad = check_submit_users(errs);
    for (int i = 0; i < sender_maps.n; i++)
        if (sender_maps.t[i] && table_is_remote(sender_maps.t[i])) {
            conf_error(errs, "%s: %s: %s: only local tables (texthash, inline, lmdb) are "
                       "supported here", conf_origin(P_LOCAL_LOGIN_SENDER_MAPS),
                       conf_name(P_LOCAL_LOGIN_SENDER_MAPS), sender_maps.spec[i]);
            bad = -1;
        }
    const char *dir = conf_str(P_LOCAL_SOCKET_DIRECTORY);
    if (*dir && *dir != '/') {
        conf_error(errs, "%s: %s: \"%s\" is not an absolute path",
                   conf_origin(P_LOCAL_SOCKET_DIRECTORY), conf_name(P_LOCAL_SOCKET_DIRECTORY),
                   dir);
        bad = -1;
    }
    return bad;
}

void localsubmit_free(void)
{
    table_list_free(&sender_maps);
}

int localsubmit_socket_path(const char *name, char *out, size_t len)
{
    const char *dir = conf_str(P_LOCAL_SOCKET_DIRECTORY);
    if (*dir != '/')
        return -1;
    int n = snprintf(out, len, "%s/%s", dir, name);
    return n < 0 || (size_t)n >= len ? -1 : 0;
}

int localsubmit_peer(int fd, uid_t *uid, char *login, size_t len)
{
    struct ucred cred;
    socklen_t clen = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) < 0)
        return -1;
    *uid = cred.uid;
    struct passwd pw, *res = NULL;
    char buf[4096];
    if (getpwuid_r(cred.uid, &pw, buf, sizeof buf, &res) != 0 || res == NULL) {
        /* A uid without a name cannot be given a sender address. */
        snprintf(login, len, "uid %u", (unsigned)cred.uid);
        return -1;
    }
    if (str_copy(login, pw.pw_name, len) >= len)
        return -1;
    return 0;
}

int localsubmit_authorized(const char *login)
{
    char *copy = strdup(conf_str(P_AUTHORIZED_SUBMIT_USERS));
    char *items[64];
    int n = copy ? str_split_list(copy, items, 64) : 0, ok = 0;
    for (int i = 0; i < n; i++) {
        if (strcmp(items[i], "static:anyone") == 0) {
            ok = 1;
            break;
        }
        int neg = items[i][0] == '!';
        if (strcmp(items[i] + neg, login) == 0) {
            ok = !neg;
            break;
        }
    }
    free(copy);
    return ok;
}

static int own_address(const char *login, const char *addr)
{
    size_t n = strlen(login);
    if (strcmp(addr, login) == 0) /* append_at_myorigin = no */
        return 1;
    return strncmp(addr, login, n) == 0 && addr[n] == '@' &&
           str_ieq(addr + n + 1, conf_str(P_MYORIGIN));
}

/* One pattern of a local_login_sender_maps value. */
static int pattern_matches(const char *pat, const char *addr)
{
    if (strcmp(pat, "*") == 0)
        return 1;
    if (strcmp(pat, "<>") == 0)
        return *addr == '\0';
    if (*addr == '\0')
        return 0;
    if (pat[0] == '@') {
        const char *at = strrchr(addr, '@');
        return at && str_ieq(at + 1, pat + 1);
    }
    return str_ieq(pat, addr);
}

/* As Postfix, the address extension does not count: bob+news@ is bob@. */
static void without_extension(const char *addr, char *out, size_t len)
{
    const char *at = strrchr(addr, '@');
    size_t local = at ? (size_t)(at - addr) : strlen(addr);
    char part[512];
    snprintf(part, sizeof part, "%.*s", (int)local, addr);
    size_t cut = addrclass_extension_cut(part);
    snprintf(out, len, "%.*s%s", (int)cut, addr, at ? at : "");
}

int localsubmit_sender_ok(const char *login, const char *sender)
{
    char addr[1024];
    without_extension(sender, addr, sizeof addr);
    if (own_address(login, addr))
        return 1;
    const char *value = NULL;
    int r = table_list_get_local(&sender_maps, login, &value);
    if (r <= 0)
        return r;
    char *copy = strdup(value);
    char *items[64];
    int n = copy ? str_split_list(copy, items, 64) : 0, ok = 0;
    for (int i = 0; i < n && !ok; i++)
        ok = pattern_matches(items[i], addr);
    free(copy);
    return copy ? ok : -1;
}

static int describe_entry(void *arg, const char *key, const char *value, const char *origin)
{
    FILE *out = arg;
    fprintf(out, "local_login_sender_maps: %s may send as: %s (%s)\n", key, value,
            origin && *origin ? origin : "inline");
    return 0;
}

void localsubmit_describe(FILE *out)
{
    for (int i = 0; i < sender_maps.n; i++)
        if (sender_maps.t[i] && table_foreach(sender_maps.t[i], describe_entry, out) < 0)
            fprintf(out, "local_login_sender_maps: %s cannot be listed\n", sender_maps.spec[i]);
    fprintf(out, "local_login_sender_maps: users not listed send as LOGIN@%s only\n",
            conf_str(P_MYORIGIN));
}
