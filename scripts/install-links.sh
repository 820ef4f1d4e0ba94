#!/bin/sh
# install-links.sh install|uninstall DESTDIR SBINDIR BINDIR: the sendmail
# compatibility links (SBINDIR/sendmail, BINDIR/mailq, BINDIR/newaliases),
# each pointing at SBINDIR/keypost. They do something only when keypost
# dispatches on the name it was started as (argv[0]), as its sendmail
# command does. A file of another MTA is never replaced, and uninstall
# removes only links that point at keypost.
set -eu
action=$1 destdir=$2 sbindir=$3 bindir=$4
target=$sbindir/keypost

is_ours() {
    [ -L "$1" ] && { [ "$(readlink "$1")" = "$target" ] || [ "$(readlink "$1")" = keypost ]; }
}

for link in "$sbindir/sendmail" "$bindir/mailq" "$bindir/newaliases"; do
    path=$destdir$link
    case $action in
    install)
        if [ -e "$path" ] || [ -L "$path" ]; then
            if ! is_ours "$path"; then
                echo "install: $path exists and is not keypost's (another MTA's?);" \
                     "remove that MTA first or install without SENDMAIL_LINKS=yes" >&2
                exit 1
            fi
            continue
        fi
        install -d -m 0755 "$(dirname "$path")"
        echo "ln -s $target $path"
        ln -s "$target" "$path"
        ;;
    uninstall)
        if is_ours "$path"; then
            echo "rm -f $path"
            rm -f "$path"
        fi
        ;;
    esac
done
