#!/bin/sh
# Installs the Debian 12 packages keypost needs to build, test and run its
# demo, and the unprivileged mail_owner user. Does nothing when all is there.
set -eu

PACKAGES="gcc make pkg-config libevent-dev libssl-dev libcmocka-dev openssl
  python3 python3-pytest swaks clang libunbound-dev unbound liblmdb-dev libpq-dev postgresql postgrey libidn12 libclang-rt-14-dev dovecot-lmtpd postfix procps iproute2
  man-db groff-base ldnsutils dns-root-data util-linux opendkim opendkim-tools rspamd python3-dkim
  pflogsumm fail2ban logrotate systemd dovecot-core zlib1g-dev"

missing=""
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
        missing="$missing $p"
done

if [ -n "$missing" ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "install-deps: missing Debian packages:$missing (run as root to install)" >&2
        exit 1
    fi
    echo "install-deps: installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    # Postfix is installed only as a peer for the tests and benchmarks:
    # no configuration, never started by the package.
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    # Keep the packages' services (Postfix, Dovecot, fail2ban) from starting: the tests
    # start their own instances on loopback ports.
    own_policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        own_policy=1
    fi
    status=0
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends $missing >/tmp/keypost-apt.log 2>&1 || status=$?
    [ -n "$own_policy" ] && rm -f /usr/sbin/policy-rc.d
    if [ "$status" != 0 ]; then
        tail -20 /tmp/keypost-apt.log >&2
        exit 1
    fi
fi

if [ "$(id -u)" = 0 ] && ! id keypost >/dev/null 2>&1; then
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin keypost
fi
exit 0
