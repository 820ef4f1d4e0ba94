#include "util/privs.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

int privs_lookup(const char *user, int *uid, int *gid, char *err, size_t len)
{
    *uid = *gid = -1;
    if (geteuid() != 0)
        return 0;
    struct passwd *pw = getpwnam(user);
    if (pw == NULL) {
        snprintf(err, len, "mail_owner %s: no such user (create it with "
                 "\"useradd --system %s\" or set mail_owner)", user, user);
        return -1;
    }
    if (pw->pw_uid == 0) {
        snprintf(err, len, "mail_owner %s must not be root", user);
        return -1;
    }
    *uid = (int)pw->pw_uid;
    *gid = (int)pw->pw_gid;
    return 0;
}

int privs_drop(int uid, int gid, char *err, size_t len)
{
    if (uid < 0)
        return 0;
    if (setgroups(0, NULL) < 0 || setgid((gid_t)gid) < 0 || setuid((uid_t)uid) < 0) {
        snprintf(err, len, "cannot drop privileges: %s", strerror(errno));
        return -1;
    }
    if (setuid(0) == 0) {
        snprintf(err, len, "privileges could be regained after dropping them");
        return -1;
    }
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    return 0;
}

int privs_is_current_user(const char *user)
{
    struct passwd *pw = getpwnam(user);
    return pw != NULL && pw->pw_uid == geteuid();
}

void privs_current_user(char *name, size_t len)
{
    struct passwd *pw = getpwuid(geteuid());
    if (pw != NULL)
        snprintf(name, len, "%s", pw->pw_name);
    else
        snprintf(name, len, "uid %ld", (long)geteuid());
}
