"""A private Postfix instance as a peer of keypost (class Postfix: a sender
relaying to keypost, or a receiver with an smtpd listener and virtual(8)
Maildirs), and the small helpers the peer tests share: need, need_root,
need_user, read, wait_for, accepts."""
import glob
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import time

import pytest

from kptest import make_tmpdir

INSTALL_HINT = "run scripts/install-deps.sh as root (installs postfix, dovecot-lmtpd and unbound)"
SBIN_PATH = os.environ.get("PATH", "") + ":/usr/sbin:/usr/bin:/sbin:/bin"


def need(name):
    path = shutil.which(name, path=SBIN_PATH)
    if path is None:
        pytest.fail(f"{name} not found: {INSTALL_HINT}", pytrace=False)
    return path


def need_root(what):
    if os.geteuid() != 0:
        pytest.fail(f"{what} needs root; run the integration tests as root", pytrace=False)


def need_user(name):
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pytest.fail(f"user {name!r} does not exist: {INSTALL_HINT}", pytrace=False)


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def wait_for(check, what, timeout=15, interval=0.05):
    """Poll check() until it returns something true; fail with what()."""
    deadline = time.time() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.time() > deadline:
            raise AssertionError(what() if callable(what) else what)
        time.sleep(interval)


def accepts(port):
    """Whether something accepts a TCP connection on 127.0.0.1:port."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


# No chroot: the queue directory is a temporary directory.
MASTER_CF = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
{virtual}anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""
SMTPD_CF = "{listen} inet n       -       n       -       -       smtpd\n"
VIRTUAL_CF = "virtual   unix  -       n       n       -       -       virtual\n"


class Postfix:
    """`postfix -c DIR start` with its own main.cf, master.cf, queue and data
    directories and maillog_file, on loopback only. params are main.cf
    parameters over the defaults below (the config is written at start()).
    smtpd_port: an smtpd listens on 127.0.0.1:smtpd_port (else the instance
    only sends). mailboxes: addresses virtual(8) delivers into Maildirs
    under self.vmail, owned by the keypost user."""

    def __init__(self, smtpd_port=None, mailboxes=(), **params):
        self.postfix = need("postfix")
        self.sendmail = need("sendmail")
        need_root("a private Postfix instance (it changes to its own users)")
        owner = need_user("postfix")
        self.dir = make_tmpdir("kp-postfix-")
        self.confdir = os.path.join(self.dir, "conf")
        self.queue = os.path.join(self.dir, "queue")
        data = os.path.join(self.dir, "data")
        self.logfile = os.path.join(self.dir, "maillog")
        for d in (self.confdir, self.queue, data):
            os.makedirs(d)
        os.chown(data, owner.pw_uid, owner.pw_gid)  # master.lock lives there
        self.port = smtpd_port
        self.mailboxes = list(mailboxes)
        self.main = {
            "compatibility_level": "3.6",
            "queue_directory": self.queue,
            "data_directory": data,
            "myorigin": "$myhostname",
            # Postfix refuses a domain listed in both mydestination and
            # virtual_mailbox_domains.
            "mydestination": "",
            "local_transport": "error:5.1.1 local delivery is disabled",
            "alias_maps": "",
            "alias_database": "",
            "inet_interfaces": "loopback-only",
            "inet_protocols": "ipv4",
            "maillog_file": self.logfile,
            "maillog_file_prefixes": self.dir,
            "biff": "no",
        }
        if self.mailboxes:
            vowner = need_user("keypost")  # any unprivileged user owns the mailboxes
            self.vmail = os.path.join(self.dir, "vmail")
            os.makedirs(self.vmail)
            os.chown(self.vmail, vowner.pw_uid, vowner.pw_gid)
            table = self.table("vmailbox", [f"{a} {a.split('@')[1]}/{a.split('@')[0]}/"
                                            for a in self.mailboxes])
            domains = dict.fromkeys(a.split("@")[1] for a in self.mailboxes)
            self.main.update({
                "virtual_mailbox_domains": ", ".join(domains),
                "virtual_mailbox_base": self.vmail,
                "virtual_mailbox_maps": f"texthash:{table}",
                "virtual_uid_maps": f"static:{vowner.pw_uid}",
                "virtual_gid_maps": f"static:{vowner.pw_gid}",
            })
        self.main.update({k: str(v) for k, v in params.items()})
        self.started = False

    def table(self, name, lines):
        """Write a lookup table into the config directory; return its path."""
        path = os.path.join(self.confdir, name)
        with open(path, "w") as f:
            f.writelines(f"{line}\n" for line in lines)
        return path

    def write_config(self):
        with open(os.path.join(self.confdir, "main.cf"), "w") as f:
            for k, v in self.main.items():
                f.write(f"{k} = {v}\n")
        with open(os.path.join(self.confdir, "master.cf"), "w") as f:
            if self.port is not None:
                f.write(SMTPD_CF.format(listen=f"127.0.0.1:{self.port}"))
            f.write(MASTER_CF.format(virtual=VIRTUAL_CF if self.mailboxes else ""))

    def start(self):
        self.write_config()
        r = subprocess.run([self.postfix, "-c", self.confdir, "start"], capture_output=True,
                           text=True, timeout=60)
        self.started = True
        assert r.returncode == 0, f"postfix start failed: {r.stdout}{r.stderr}\n{self.log()}"
        if self.port is not None:
            wait_for(lambda: accepts(self.port),
                     lambda: "postfix smtpd does not listen:\n" + self.log())
        return self

    def send(self, sender, rcpts, msg):
        r = subprocess.run([self.sendmail, "-C", self.confdir, "-i", "-f", sender, "--",
                            *rcpts], input=msg, capture_output=True, timeout=30)
        assert r.returncode == 0, f"sendmail failed: {r.stdout!r} {r.stderr!r}\n{self.log()}"

    def log(self):
        return read(self.logfile)

    def wait_log(self, pattern, timeout=15, kp=None):
        return wait_for(lambda: re.search(pattern, self.log()),
                        lambda: f"no Postfix log line matching {pattern!r}; postfix log:\n"
                                f"{self.log()}\nkeypost log:\n{kp.log() if kp else ''}",
                        timeout=timeout)

    def delivered(self, rcpt=None):
        """The Maildir files of mailbox rcpt (the first of mailboxes by default)."""
        local, domain = (rcpt or self.mailboxes[0]).split("@")
        return sorted(glob.glob(os.path.join(self.vmail, domain, local, "new", "*")))

    def stop(self):
        if not self.started:
            return
        self.started = False
        r = subprocess.run([self.postfix, "-c", self.confdir, "stop"], capture_output=True,
                           text=True, timeout=30)
        if r.returncode != 0:  # postfix-script waits 5 s, then kill -9s the group
            pidfile = os.path.join(self.queue, "pid", "master.pid")
            try:
                pid = int(read(pidfile).split()[0])
                os.killpg(pid, signal.SIGKILL)
            except (ValueError, IndexError, ProcessLookupError, PermissionError):
                pass
