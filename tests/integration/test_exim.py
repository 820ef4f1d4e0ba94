"""Debian's Exim as a receiving peer of keypost's SMTP client.

Debian's exim4-daemon-light conflicts with the installed postfix package
(each is the system MTA), so it is never installed: the test fetches the
.deb files with `apt-get download` into a cache directory, unpacks them with
`dpkg -x` into a private directory and runs that exim4 binary with its own
configuration (`-C`) as a foreground daemon (`-bdf`) on a loopback port, with
its spool, log and Maildirs in a temporary directory. Only the ordinary
shared libraries exim4 links against are apt-get installed when missing.

The Exim peer offers STARTTLS, asks for a client certificate
(tls_try_verify_hosts) and admits keypost at RCPT only when the SHA-256
digest of keypost's certificate matches its pin. Exim 4.96 cannot pin a
public key: ${certextract} has no subject-public-key field and a certificate
variable only hashes as the whole certificate (${sha256:$tls_in_peercert}),
so this is a certificate pin, unlike the public-key pin of the Postfix test
in test_relay.py.

  1. pinned: keypost delivers, Exim logs TLS with keypost's certificate
     (CV=no, DN=...) and writes the message to its Maildir;
  2. pin changed: Exim answers 550 at RCPT, keypost bounces and the local
     sender gets an RFC 3464 DSN;
  3. Exim answers 451 at RCPT: keypost defers and keeps the message queued.

Needs root (apt-get, exim's -C with root privilege) and the keypost user,
which Exim runs as."""
import glob
import hashlib
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile

import pytest

from kptest import PKI, free_port, make_tmpdir
from postfix_peer import accepts, read, wait_for
from test_relay import SENDER, check_dsn, message, queue_list, result, submit

DEB_CACHE = os.environ.get("KEYPOST_DEB_CACHE", "/var/cache/keypost-test-debs")
EXIM_DEBS = ("exim4-daemon-light", "exim4-base")
EXIM_USER = "keypost"  # made by scripts/install-deps.sh; Exim runs as it throughout
DOMAIN = "x.test"


# ---- fetching and unpacking Debian's Exim ----------------------------------

def apt(*args, timeout=600):
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    # Waits for another apt or dpkg run (a concurrent install) to finish.
    return subprocess.run(["apt-get", "-o", "DPkg::Lock::Timeout=300", *args],
                          capture_output=True, text=True, env=env, timeout=timeout)


def apt_update():
    r = apt("update", "-qq")
    if r.returncode != 0:
        pytest.fail(f"apt-get update failed (needed to fetch Debian's Exim):\n"
                    f"{r.stdout}{r.stderr}", pytrace=False)


def cached_debs():
    found = {}
    for name in EXIM_DEBS:
        debs = sorted(glob.glob(os.path.join(DEB_CACHE, f"{name}_*.deb")))
        if debs:
            found[name] = debs[-1]
    return found


def fetch_exim_debs():
    """The .deb of each EXIM_DEBS package, downloaded once into DEB_CACHE.
    Runs `apt-get update` and tries again when apt knows no such package
    (empty package lists on a fresh machine)."""
    found = cached_debs()
    if len(found) == len(EXIM_DEBS):
        return found
    os.makedirs(DEB_CACHE, exist_ok=True)
    # Into a private directory first, then renamed: an interrupted download
    # never leaves a truncated .deb in the cache.
    tmp = tempfile.mkdtemp(prefix=".download-", dir=DEB_CACHE)
    # Root downloads into a root-owned directory: no _apt sandbox user.
    cmd = ["apt-get", "-q", "-o", "APT::Sandbox::User=root", "download", *EXIM_DEBS]
    try:
        r = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            first = r.stdout + r.stderr
            apt_update()
            r = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=600)
            if r.returncode != 0:
                pytest.fail(f"cannot fetch Debian's Exim: `{' '.join(cmd)}` failed, also after "
                            f"apt-get update:\n{first}{r.stdout}{r.stderr}", pytrace=False)
        for deb in glob.glob(os.path.join(tmp, "*.deb")):
            os.rename(deb, os.path.join(DEB_CACHE, os.path.basename(deb)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    found = cached_debs()
    if len(found) != len(EXIM_DEBS):
        pytest.fail(f"apt-get download left no .deb for {set(EXIM_DEBS) - set(found)} "
                    f"in {DEB_CACHE}:\n{r.stdout}{r.stderr}", pytrace=False)
    return found


def installed(pkg):
    r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True,
                       text=True)
    return r.returncode == 0 and "install ok installed" in r.stdout


def library_depends(deb):
    """The lib* packages a .deb depends on (the first of each alternative)."""
    r = subprocess.run(["dpkg-deb", "-f", deb, "Depends"], capture_output=True, text=True,
                       check=True)
    libs = []
    for dep in r.stdout.split(","):
        name = dep.split("|")[0].strip().split(" ")[0].split(":")[0]
        if name.startswith("lib"):
            libs.append(name)
    return libs


def install_libraries(deb):
    """apt-get install the shared libraries exim4 links against (ordinary
    libraries such as libidn12, not an MTA) that this machine lacks."""
    missing = [p for p in library_depends(deb) if not installed(p)]
    if not missing:
        return
    args = ("install", "-y", "-qq", "--no-install-recommends", *missing)
    r = apt(*args)
    if r.returncode != 0:
        apt_update()
        r = apt(*args)
        if r.returncode != 0:
            pytest.fail(f"cannot install Exim's libraries {missing}:\n{r.stdout}{r.stderr}",
                        pytrace=False)


class EximBinary:
    """Debian's exim4, unpacked under root. Debian builds it with
    EXIM_USER=ref:Debian-exim, which exim looks up before it reads any
    configuration (`failed to find uid for user name "Debian-exim"`); the
    package's postinst would add that user. Instead every exim command runs
    in a private mount namespace whose /etc/passwd and /etc/group (bind
    mounts of copies) name EXIM_USER's ids Debian-exim as well, so the
    machine's user database is left alone."""

    def __init__(self, root):
        self.root = root
        self.path = os.path.join(root, "usr", "sbin", "exim4")
        user = pwd.getpwnam(EXIM_USER)
        self.passwd = os.path.join(root, "passwd")
        self.group = os.path.join(root, "group")
        with open(self.passwd, "w") as f:
            f.write(read("/etc/passwd") +
                    f"Debian-exim:x:{user.pw_uid}:{user.pw_gid}::/nonexistent:/usr/sbin/nologin\n")
        with open(self.group, "w") as f:
            f.write(read("/etc/group") + f"Debian-exim:x:{user.pw_gid}:\n")
        for f in (self.passwd, self.group):
            os.chmod(f, 0o644)

    def command(self, *args):
        """argv that runs `exim4 ARGS` (exec'd: same pid) in the namespace."""
        script = ('mount --bind "$1" /etc/passwd && mount --bind "$2" /etc/group && '
                  'shift 2 && exec "$@"')
        return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script,
                "sh", self.passwd, self.group, self.path, *args]


@pytest.fixture(scope="module")
def exim_bin():
    """Debian's exim4, fetched, unpacked privately and runnable here."""
    if os.geteuid() != 0:
        pytest.fail("the Exim peer needs root (apt-get, exim -C with privilege); "
                    "run the integration tests as root", pytrace=False)
    try:
        pwd.getpwnam(EXIM_USER)
    except KeyError:
        pytest.fail(f"no user {EXIM_USER}: run scripts/install-deps.sh as root", pytrace=False)
    debs = fetch_exim_debs()
    root = make_tmpdir("kp-exim-root-")
    try:
        for deb in debs.values():
            subprocess.run(["dpkg", "-x", deb, root], check=True, capture_output=True)
        exim = EximBinary(root)
        assert os.access(exim.path, os.X_OK), f"no usr/sbin/exim4 in {list(debs.values())}"
        install_libraries(debs["exim4-daemon-light"])
        ldd = subprocess.run(["ldd", exim.path], capture_output=True, text=True)
        assert "not found" not in ldd.stdout, f"exim4 lacks libraries:\n{ldd.stdout}"
        r = subprocess.run(exim.command("-bV"), capture_output=True, text=True, timeout=30)
        # Without -C exim reads Debian's /etc/exim4 config, which is not
        # there: only the version banner matters here.
        if "Exim version 4." not in r.stdout:
            pytest.fail("cannot run Debian's exim4 in a private mount namespace "
                        f"(unshare/mount):\n{r.stdout}{r.stderr}", pytrace=False)
        yield exim
    finally:
        shutil.rmtree(root, ignore_errors=True)


# ---- a private Exim receiver -----------------------------------------------

EXIM_CONF = """\
# A private receiving Exim for keypost's integration tests.
# Reception and delivery both run as exim_user: Debian's Exim keeps root
# privilege for -C only for configurations listed in its TRUSTED_CONFIG_LIST,
# so the delivery process, re-executed with -C, would lose root anyway.
exim_path = @EXIM@
primary_hostname = mx.@DOMAIN@
qualify_domain = @DOMAIN@
domainlist local_domains = @DOMAIN@
exim_user = @USER@
exim_group = @USER@
deliver_drop_privilege = true
never_users = root
keep_environment =

spool_directory = @SPOOL@
log_file_path = @LOGDIR@/%slog
log_selector = +tls_peerdn +tls_certificate_verified +tls_cipher +received_recipients \\
  +smtp_confirmation
local_interfaces = <; 127.0.0.1
daemon_smtp_ports = @PORT@
host_lookup =
rfc1413_hosts =
rfc1413_query_timeout = 0s

tls_advertise_hosts = *
tls_certificate = @CRT@
tls_privatekey = @KEY@
tls_verify_certificates = @VERIFY@
tls_try_verify_hosts = *

acl_smtp_rcpt = acl_check_rcpt

begin acl

acl_check_rcpt:
  warn    logwrite = RCPT <$local_part@$domain> from client certificate \\
            ${if def:tls_in_peercert {sha256=${sha256:$tls_in_peercert}}{none}} \\
            verified=$tls_in_certificate_verified
  deny    message = 5.7.1 <$local_part@$domain>: TLS required
          !encrypted = *
  deny    message = 5.7.1 <$local_part@$domain>: relay not permitted
          !domains = +local_domains
  deny    message = 5.7.1 <$local_part@$domain>: client certificate not pinned
          !condition = ${if def:tls_in_peercert \\
            {${if eq{${sha256:$tls_in_peercert}}{@PIN@}}}{false}}
@EXTRA@  accept

begin routers

x_test:
  driver = accept
  domains = +local_domains
  # Exim >= 4.94 refuses a tainted $local_part in a file name; a match in
  # local_parts gives the untainted $local_part_data.
  local_parts = user
  transport = x_maildir
  no_more

begin transports

x_maildir:
  driver = appendfile
  directory = @MAILDIR@/$local_part_data
  maildir_format
  create_directory
  delivery_date_add
  envelope_to_add
  return_path_add
  user = @USER@
  group = @USER@
  mode = 0600

begin retry

*  *  F,1h,5m
"""

DEFER_AT_RCPT = """\
  defer   message = 4.7.1 <$local_part@$domain>: greylisted, try again later
"""


def cert_sha256(crt):
    """The certificate's SHA-256 digest as ${sha256:$tls_in_peercert} gives it."""
    der = subprocess.run(["openssl", "x509", "-in", crt, "-outform", "DER"],
                         capture_output=True, check=True).stdout
    return hashlib.sha256(der).hexdigest().upper()


class EximReceiver:
    """`exim4 -C FILE -bdf`: accepts mail for x.test over STARTTLS from a
    client whose certificate digest is pin, into DIR/mail/LOCALPART (Maildir)."""

    def __init__(self, exim, server_cert, server_key, verify_ca, pin, extra=""):
        self.exim = exim
        user = pwd.getpwnam(EXIM_USER)
        self.dir = make_tmpdir("kp-exim-rx-")
        self.spool = os.path.join(self.dir, "spool")
        self.logdir = os.path.join(self.dir, "log")
        self.maildir = os.path.join(self.dir, "mail")
        tls = os.path.join(self.dir, "tls")
        for d in (self.spool, self.logdir, self.maildir, tls):
            os.makedirs(d)
        for d in (self.spool, self.logdir, self.maildir):
            os.chown(d, user.pw_uid, user.pw_gid)
            os.chmod(d, 0o750)
        # Exim reads its key after giving up root: a copy owned by exim_user.
        crt, key, ca = (os.path.join(tls, n) for n in ("server.crt", "server.key", "ca.crt"))
        for src, dst in ((server_cert, crt), (server_key, key), (verify_ca, ca)):
            shutil.copyfile(src, dst)
            os.chown(dst, user.pw_uid, user.pw_gid)
            os.chmod(dst, 0o600)
        self.port = free_port()
        self.config = os.path.join(self.dir, "exim.conf")
        with open(self.config, "w") as f:
            conf = EXIM_CONF
            for name, value in (("EXIM", exim.path), ("DOMAIN", DOMAIN), ("USER", EXIM_USER),
                                ("SPOOL", self.spool), ("LOGDIR", self.logdir),
                                ("PORT", self.port), ("CRT", crt), ("KEY", key), ("VERIFY", ca),
                                ("PIN", pin), ("MAILDIR", self.maildir), ("EXTRA", extra)):
                conf = conf.replace(f"@{name}@", str(value))
            assert "@" not in conf.replace("$local_part@$domain", ""), conf
            f.write(conf)
        os.chmod(self.config, 0o644)
        self.pidfile = os.path.join(self.dir, "exim.pid")
        self.proc = None

    def check_config(self):
        r = subprocess.run(self.exim.command("-C", self.config, "-bV"), capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == 0, f"exim -bV rejects the configuration:\n{r.stdout}{r.stderr}"
        return r.stdout

    def start(self):
        self.check_config()
        self.out = open(os.path.join(self.dir, "stderr"), "w")
        self.proc = subprocess.Popen(self.exim.command("-C", self.config, "-bdf", "-oP",
                                                       self.pidfile),
                                     stdout=self.out, stderr=subprocess.STDOUT,
                                     start_new_session=True)

        def listening():
            if self.proc.poll() is not None:
                raise AssertionError(f"exim exited with {self.proc.returncode}:\n{self.output()}")
            return accepts(self.port)
        wait_for(listening, lambda: "exim does not listen:\n" + self.output(), timeout=15)
        return self

    def log(self):
        return read(os.path.join(self.logdir, "mainlog"))

    def output(self):
        return (read(os.path.join(self.dir, "stderr")) + self.log() +
                read(os.path.join(self.logdir, "paniclog")) +
                read(os.path.join(self.logdir, "rejectlog")))

    def wait_log(self, pattern, timeout=15, kp=None):
        return wait_for(lambda: re.search(pattern, self.log()),
                        lambda: f"no Exim log line matching {pattern!r}; exim logs:\n"
                                f"{self.output()}\nkeypost log:\n{kp.log() if kp else ''}",
                        timeout=timeout)

    def delivered(self, local="user"):
        return sorted(glob.glob(os.path.join(self.maildir, local, "new", "*")))

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is not None:
            self.out.close()
            return
        # The daemon's session leader; SIGTERM to the group also ends any
        # reception or delivery process still running.
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.out.close()


@pytest.fixture(scope="module")
def exim_pki():
    """A "public CA" that issues serverAuth-only leaves, and an unrelated CA
    that Exim trusts for client certificates: keypost's certificate cannot
    be verified by Exim (CV=no), only its pin admits it."""
    d = make_tmpdir("kp-exim-pki-")
    p = PKI(d)
    p.ca("exim-public-ca")
    p.ca("exim-unrelated-ca")
    for name in ("kp.relay.test", "other.relay.test", f"mx.{DOMAIN}"):
        p.leaf(name, issuer="exim-public-ca", eku="serverAuth")
    for f in os.listdir(d):
        os.chmod(os.path.join(d, f), 0o644)  # keypost reads its key after dropping root
    yield p
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def make_exim(exim_bin, exim_pki):
    """make_exim(pin=..., extra=ACL lines before the final accept)."""
    started = []

    def factory(pin, extra=""):
        p = exim_pki
        rx = EximReceiver(exim_bin, p.path(f"mx.{DOMAIN}", "crt"), p.path(f"mx.{DOMAIN}", "key"),
                          p.path("exim-unrelated-ca", "crt"), pin, extra)
        started.append(rx)
        return rx.start()

    yield factory
    for rx in started:
        rx.stop()
        shutil.rmtree(rx.dir, ignore_errors=True)


def to_exim(rx, pki, name="kp.relay.test"):
    return {"transport_maps": f"inline:{{ {DOMAIN}=smtp:[127.0.0.1]:{rx.port} }}",
            "smtp_tls_security_level": "encrypt",
            "smtp_tls_cert_file": pki.path(name, "crt"),
            "smtp_tls_key_file": pki.path(name, "key")}


# ---- the tests -------------------------------------------------------------

def test_exim_accepts_keypost_by_certificate_pin(make_server, make_exim, exim_pki):
    crt = exim_pki.path("kp.relay.test", "crt")
    pin = cert_sha256(crt)
    # keypost's own view of the same certificate digest.
    assert exim_pki.fingerprints(crt)["cert_fingerprint"].replace(":", "").upper() == pin
    rx = make_exim(pin)
    kp = make_server(**to_exim(rx, exim_pki))
    rcpt = f"user@{DOMAIN}"
    qid = submit(kp, [rcpt], message("to exim", "tok-exim-ok", to=rcpt))
    m = result(kp, qid, rcpt, "sent", timeout=20)
    assert m.group(1) == f"127.0.0.1[127.0.0.1]:{rx.port}", m.group(0)
    eid = re.fullmatch(r"250 OK id=(\S+)", m.group(2))
    assert eid, m.group(0)
    eid = eid.group(1)
    kp.wait_log(rf"TLS connection established to 127\.0\.0\.1\[127\.0\.0\.1\]:{rx.port}: "
                r"TLSv1\.[23] with cipher")
    # Exim got keypost's certificate over TLS: not verifiable (unrelated CA),
    # admitted by its digest.
    rx.wait_log(rf"RCPT <{re.escape(rcpt)}> from client certificate sha256={pin} "
                r"verified=0", kp=kp)
    arrival = rx.wait_log(rf"{re.escape(eid)} <= {re.escape(SENDER)} .*", kp=kp).group(0)
    assert " H=(mx.keypost.test) [127.0.0.1] " in arrival, arrival
    assert re.search(r" P=esmtps ", arrival), arrival
    assert re.search(r" X=TLS1\.[23]:\S+ ", arrival), arrival
    assert " CV=no " in arrival, arrival
    assert re.search(r' DN="CN=kp\.relay\.test"', arrival), arrival
    assert re.search(rf" for {re.escape(rcpt)}$", arrival), arrival
    rx.wait_log(rf"{re.escape(eid)} => user <{re.escape(rcpt)}> R=x_test T=x_maildir", kp=kp)
    rx.wait_log(rf"{re.escape(eid)} Completed", kp=kp)
    files = wait_for(rx.delivered, lambda: "nothing in Exim's Maildir:\n" + rx.output())
    assert len(files) == 1, files
    stored = read(files[0])
    assert f"Return-path: <{SENDER}>" in stored, stored[:1500]  # Exim's spelling
    assert f"Envelope-to: {rcpt}" in stored, stored[:1500]
    assert "Subject: to exim" in stored
    # The body arrives byte for byte, the dot-stuffed line unstuffed.
    body = stored.split("\n\n", 1)[1]
    assert body == "token tok-exim-ok\n.a line with a leading dot\n\nend\n", repr(body)
    # Exim's Received header records the TLS session.
    assert re.search(r"by mx\.x\.test with esmtps\s+\(TLS1\.[23]\)", stored), stored[:1500]
    kp.wait_log(qid + r": removed")
    assert qid not in queue_list(kp)
    assert "rejected RCPT" not in rx.log()


def test_exim_rejects_unpinned_keypost_and_sender_gets_dsn(make_server, make_exim, exim_pki):
    # Exim pins another certificate from the same CA: keypost's is refused.
    rx = make_exim(cert_sha256(exim_pki.path("other.relay.test", "crt")))
    kp = make_server(**to_exim(rx, exim_pki))
    rcpt = f"user@{DOMAIN}"
    subject = "to exim unpinned"
    qid = submit(kp, [rcpt], message(subject, "tok-exim-no", to=rcpt))
    m = result(kp, qid, rcpt, "bounced", timeout=20)
    reply = rf"550 5\.7\.1 <{re.escape(rcpt)}>: client certificate not pinned"
    assert re.fullmatch(reply, m.group(2)), m.group(0)
    pin = cert_sha256(exim_pki.path("kp.relay.test", "crt"))
    rx.wait_log(rf"RCPT <{re.escape(rcpt)}> from client certificate sha256={pin} verified=0",
                kp=kp)
    rx.wait_log(r'H=\(mx\.keypost\.test\) \[127\.0\.0\.1\] X=TLS1\.[23]:\S+ CV=no '
                rf'DN="CN=kp\.relay\.test" F=<{re.escape(SENDER)}> rejected RCPT '
                rf"<{re.escape(rcpt)}>: 5\.7\.1 <{re.escape(rcpt)}>: client certificate not pinned",
                kp=kp)
    dsn = kp.wait_log(qid + r": sender non-delivery notification: (\w+)").group(1)
    kp.wait_log(dsn + rf": to=<{re.escape(SENDER)}>, relay=local, .*status=sent")
    check_dsn(kp, rcpt, r"5\.7\.1", r"^smtp; " + reply, subject)
    kp.wait_log(qid + r": removed")
    assert rx.delivered() == []
    assert not re.search(r" <= ", rx.log()), rx.log()


def test_exim_defers_at_rcpt_and_keypost_keeps_the_message(make_server, make_exim, exim_pki):
    rx = make_exim(cert_sha256(exim_pki.path("kp.relay.test", "crt")), extra=DEFER_AT_RCPT)
    kp = make_server(**to_exim(rx, exim_pki))
    rcpt = f"user@{DOMAIN}"
    qid = submit(kp, [rcpt], message("to exim greylisted", "tok-exim-451", to=rcpt))
    m = result(kp, qid, rcpt, "deferred", timeout=20)
    reply = rf"451 4\.7\.1 <{re.escape(rcpt)}>: greylisted, try again later"
    assert re.fullmatch(reply, m.group(2)), m.group(0)
    rx.wait_log(r'H=\(mx\.keypost\.test\) \[127\.0\.0\.1\] X=TLS1\.[23]:\S+ CV=no '
                rf'DN="CN=kp\.relay\.test" F=<{re.escape(SENDER)}> temporarily rejected RCPT '
                rf"<{re.escape(rcpt)}>: 4\.7\.1 <{re.escape(rcpt)}>: greylisted, try again later",
                kp=kp)
    # keypost retries after minimal_backoff_time (1s) and is deferred again;
    # the message stays queued, nothing bounces.
    wait_for(lambda: len(re.findall(rf"{qid}: to=<{re.escape(rcpt)}>, .*status=deferred "
                                    rf"\({reply}\)", kp.log())) >= 2,
             lambda: "no second deferral:\n" + kp.log(), timeout=20)
    listing = queue_list(kp)
    assert re.search(rf"(?m)^{qid} .*<{re.escape(SENDER)}>$", listing), listing
    assert f"    {rcpt}\n" in listing, listing
    assert not re.search(rf"{qid}: to=<[^>]*>, .*status=(sent|bounced)", kp.log()), kp.log()
    assert f"{qid}: sender non-delivery notification" not in kp.log()
    assert kp.delivered(SENDER) == []
    assert rx.delivered() == []
