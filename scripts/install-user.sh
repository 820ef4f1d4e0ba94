#!/bin/sh
# install-user.sh DESTDIR USER SPOOLDIR SUBDIR...: the part of `make install`
# that touches the system's users: the keypost user and group (a system
# account without a login shell or home), and the queue owned by it, mode
# 0700 (the subdirectories `keypost serve` uses).
# With DESTDIR set, /etc/passwd is left alone (it is the build machine's,
# not the target's): the queue is made in DESTDIR, owned by whoever runs
# make, and the commands to run on the target are printed. `keypost serve`
# gives the queue to mail_owner when it starts, whoever owned it before.
set -eu
destdir=$1 user=$2 spool=$3
shift 3

if [ -n "$destdir" ]; then
    install -d -m 0700 "$destdir$spool"
    for d in "$@"; do install -d -m 0700 "$destdir$spool/$d"; done
    echo "install: DESTDIR is set: the user $user was not created and $destdir$spool is"
    echo "install: not given to it. On the target system, as root:"
    echo "install:     useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin $user"
    echo "install:     chown -R $user:$user $spool"
    exit 0
fi

if [ "$(id -u)" != 0 ]; then
    echo "install: the keypost user and the queue need root; run make install as root," >&2
    echo "install: or set DESTDIR to install into a staging directory" >&2
    exit 1
fi
if ! getent passwd "$user" >/dev/null; then
    if getent group "$user" >/dev/null; then group_opt="--gid $user"; else group_opt="--user-group"; fi
    echo "useradd --system $group_opt --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin $user"
    # shellcheck disable=SC2086
    useradd --system $group_opt --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin "$user"
    if ! getent passwd "$user" >/dev/null; then
        echo "install: useradd did not create the user $user; the queue is not made" >&2
        exit 1
    fi
fi
group=$(id -gn "$user")
echo "install -d -o $user -g $group -m 0700 $spool $*"
install -d -o "$user" -g "$group" -m 0700 "$spool"
for d in "$@"; do install -d -o "$user" -g "$group" -m 0700 "$spool/$d"; done
