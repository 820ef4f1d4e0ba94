"""keypost against real peers nobody here wrote: Dovecot's LMTP server as
keypost's local_transport (inet and unix), and Debian's Postfix as a client
relaying to keypost over STARTTLS, presenting a serverAuth-only certificate
that keypost trusts by its public-key pin.

Each test starts private instances: their own configuration, state, queue
and log in a temporary directory, listening on loopback only. The system's
Dovecot and Postfix services are never touched. Missing binaries fail the
tests: run scripts/install-deps.sh."""
import glob
import os
import re
import shutil
import signal
import smtplib
import subprocess

import pytest

from kptest import free_port, make_tmpdir
from postfix_peer import Postfix, accepts, need, need_root, need_user, read, wait_for


def message(subject, token, to="alice@example.org", sender="bob@remote.test", lines=2000):
    """A message with lines SMTP must dot-stuff and a body larger than any
    single buffer on the way, so that a truncation or a lost dot shows."""
    body = [f"token {token}", ".leading dot", "..two leading dots", ".", " . ", ""]
    body += [f"line {i:05d} " + "abcdefghijklmnopqrstuvwxyz" * 3 for i in range(lines)]
    body += [".", f"end {token}"]
    head = [f"From: <{sender}>", f"To: <{to}>", f"Subject: {subject}",
            f"Message-ID: <{token}@peers.keypost.test>"]
    return ("\r\n".join(head) + "\r\n\r\n" + "\r\n".join(body) + "\r\n").encode()


def body_of(raw):
    """The body of a stored message with LF line ends (Dovecot stores LF)."""
    text = raw.replace("\r\n", "\n")
    return text.split("\n\n", 1)[1]


def assert_same_body(stored, sent):
    got, want = body_of(stored), body_of(sent.decode())
    if got != want:
        at = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b),
                  min(len(got), len(want)))
        raise AssertionError(f"body changed on the way: {len(got)} chars stored, {len(want)} "
                             f"sent; first difference at {at}: stored {got[at:at + 80]!r}, "
                             f"sent {want[at:at + 80]!r}")


# ---- a private Dovecot LMTP server -----------------------------------------

class Dovecot:
    """dovecot -F with its own base_dir, state_dir, log and Maildir root.
    users=None: every recipient exists (static userdb); otherwise a
    passwd-file userdb lists only those users, and LMTP refuses the rest."""

    def __init__(self, users=None):
        self.bin = need("dovecot")
        need_root("a private Dovecot instance (it changes to its own users)")
        self.owner = need_user("keypost")
        self.dir = make_tmpdir("kp-dovecot-")
        self.port = free_port()
        self.conf = os.path.join(self.dir, "dovecot.conf")
        self.base = os.path.join(self.dir, "run")
        self.socket = os.path.join(self.base, "lmtp")
        self.vmail = os.path.join(self.dir, "vmail")
        self.logfile = os.path.join(self.dir, "dovecot.log")
        self.proc = None
        os.makedirs(os.path.join(self.dir, "state"))
        os.makedirs(self.vmail)
        os.chown(self.vmail, self.owner.pw_uid, self.owner.pw_gid)
        uid, gid = self.owner.pw_uid, self.owner.pw_gid
        home = f"{self.vmail}/%d/%n"
        if users is None:
            userdb = (f"  driver = static\n"
                      f"  args = uid={uid} gid={gid} home={home} allow_all_users=yes\n")
        else:
            passwd = os.path.join(self.dir, "users")
            with open(passwd, "w") as f:
                for u in users:
                    f.write(f"{u}::{uid}:{gid}::{home}::\n")
            userdb = (f"  driver = passwd-file\n  args = {passwd}\n")
        with open(self.conf, "w") as f:
            f.write(f"""\
base_dir = {self.base}
state_dir = {self.dir}/state
log_path = {self.logfile}
instance_name = kptest-{os.path.basename(self.dir)}
protocols = lmtp
listen = 127.0.0.1
ssl = no
first_valid_uid = {min(uid, 500)}
first_valid_gid = 1
mail_location = maildir:{self.vmail}/%d/%n
passdb {{
  driver = static
  args = nopassword=y
}}
userdb {{
{userdb}}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {self.port}
  }}
  unix_listener lmtp {{
    mode = 0666
  }}
}}
""")

    def start(self):
        out = open(os.path.join(self.dir, "stdout"), "w")
        # Its own session: stop() can end the master and all its children.
        self.proc = subprocess.Popen([self.bin, "-F", "-c", self.conf], stdout=out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        out.close()

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError("dovecot exited: " + self.output())
            return os.path.exists(self.socket) and accepts(self.port)
        wait_for(ready, lambda: "dovecot did not listen: " + self.output())
        return self

    def output(self):
        return read(os.path.join(self.dir, "stdout")) + read(self.logfile)

    def delivered(self, rcpt):
        local, domain = rcpt.lower().split("@")
        return sorted(glob.glob(os.path.join(self.vmail, domain, local, "new", "*")))

    def wait_delivered(self, rcpt, count=1, timeout=15, kp=None):
        return wait_for(lambda: len(self.delivered(rcpt)) >= count and self.delivered(rcpt),
                        lambda: f"{rcpt}: not in Dovecot's Maildir; dovecot log:\n"
                                f"{self.output()}\nkeypost log:\n{kp.log() if kp else ''}",
                        timeout=timeout)

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        try:  # children that outlived their master
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc = None


@pytest.fixture
def make_dovecot():
    started = []

    def factory(users=None, start=True):
        d = Dovecot(users)
        started.append(d)
        return d.start() if start else d

    yield factory
    for d in started:
        d.stop()
    for d in started:
        shutil.rmtree(d.dir, ignore_errors=True)


# ---- a private Postfix instance sending to keypost ------------------------

@pytest.fixture
def make_postfix():
    """make_postfix(relay_port, **params): a Postfix that only sends, relaying
    everything to keypost on relay_port over TLS (encrypt)."""
    started = []

    def factory(relay_port, start=True, **params):
        p = Postfix(**{"myhostname": "partner.postfix.test", "mydomain": "postfix.test",
                       "relayhost": f"[127.0.0.1]:{relay_port}",
                       "smtp_tls_security_level": "encrypt", "smtp_tls_loglevel": "1",
                       **params})
        started.append(p)
        return p.start() if start else p

    yield factory
    for p in started:
        p.stop()
    for p in started:
        shutil.rmtree(p.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def partner(pki):
    """A "public CA" issuing serverAuth-only leaves, as public CAs do now:
    the partner's certificate, and another one whose key is pinned instead."""
    pki.ca("peers-public-ca")
    crt, key = pki.leaf("partner.postfix.test", issuer="peers-public-ca", eku="serverAuth")
    other, _ = pki.leaf("other.partner.test", issuer="peers-public-ca", eku="serverAuth")
    return {"crt": crt, "key": key, "fp": pki.fingerprints(crt),
            "other_fp": pki.fingerprints(other)}


@pytest.fixture
def kp_server(make_server):
    """make_server whose mail for other domains (relayed mail, bounces to
    remote senders) goes to a loopback port nobody listens on: never to DNS
    or the Internet."""
    def factory(**params):
        params.setdefault("relayhost", f"[127.0.0.1]:{free_port()}")
        return make_server(**params)
    return factory


def lmtp_status(kp, rcpt, status, target):
    """keypost's delivery line for rcpt through the LMTP target."""
    return kp.wait_log(rf"(\w+): to=<{re.escape(rcpt)}>, relay=(?:lmtp:)?{re.escape(target)}, "
                       rf"delay=\d+, status={status} \((.*)\)")


# ---- Dovecot LMTP as local_transport --------------------------------------

def test_dovecot_lmtp_inet(kp_server, make_dovecot):
    dv = make_dovecot()
    kp = kp_server(local_transport=f"lmtp:inet:127.0.0.1:{dv.port}")
    msg = message("to dovecot over tcp", "tok-lmtp-inet")
    with smtplib.SMTP("127.0.0.1", kp.smtp_port) as s:
        s.ehlo("client.test")
        s.sendmail("bob@remote.test", ["alice@example.org"], msg)
    files = dv.wait_delivered("alice@example.org", kp=kp)
    assert len(files) == 1
    stored = read(files[0])
    assert "Subject: to dovecot over tcp" in stored
    assert "Return-Path: <bob@remote.test>" in stored  # Dovecot's, from MAIL FROM
    assert "Delivered-To: alice@example.org" in stored  # Dovecot's, from RCPT TO
    assert "by mx.keypost.test" in stored  # keypost's Received
    assert_same_body(stored, msg)
    m = lmtp_status(kp, "alice@example.org", "sent", f"inet:127.0.0.1:{dv.port}")
    assert re.match(r"250 2\.0\.0 <alice@example\.org> \S+ Saved", m.group(2)), m.group(0)
    kp.wait_log(m.group(1) + r": removed")
    assert re.search(r"lmtp\(alice@example\.org\).*saved mail to INBOX", dv.output())


def test_dovecot_lmtp_unix_socket(kp_server, make_dovecot):
    dv = make_dovecot()
    kp = kp_server(local_transport=f"lmtp:unix:{dv.socket}")
    msg = message("to dovecot over a unix socket", "tok-lmtp-unix")
    with smtplib.SMTP("127.0.0.1", kp.smtp_port) as s:
        s.ehlo("client.test")
        s.sendmail("bob@remote.test", ["alice@example.org", "carol@example.org"], msg)
    for rcpt in ("alice@example.org", "carol@example.org"):
        files = dv.wait_delivered(rcpt, kp=kp)
        assert len(files) == 1
        assert_same_body(read(files[0]), msg)
        lmtp_status(kp, rcpt, "sent", f"unix:{dv.socket}")
    assert "Connect from local" in dv.output()


def test_dovecot_refuses_unknown_user(kp_server, make_dovecot):
    dv = make_dovecot(users=["known@example.org"])
    target = f"inet:127.0.0.1:{dv.port}"
    kp = kp_server(local_transport="lmtp:" + target)
    msg = message("one known, one unknown", "tok-lmtp-unknown", lines=10)
    with smtplib.SMTP("127.0.0.1", kp.smtp_port) as s:
        s.ehlo("client.test")
        s.sendmail("bob@remote.test", ["nobody@example.org", "known@example.org"], msg)
    files = dv.wait_delivered("known@example.org", kp=kp)
    assert_same_body(read(files[0]), msg)
    sent = lmtp_status(kp, "known@example.org", "sent", target)
    bounced = lmtp_status(kp, "nobody@example.org", "bounced", target)
    assert bounced.group(1) == sent.group(1)
    assert re.match(r"550 5\.1\.1 <nobody@example\.org> User doesn't exist", bounced.group(2))
    kp.wait_log(sent.group(1) + r": removed")  # both recipients are final
    assert dv.delivered("nobody@example.org") == []
    # Every recipient refused: no DATA, and the refusal is still final.
    with smtplib.SMTP("127.0.0.1", kp.smtp_port) as s:
        s.ehlo("client.test")
        s.sendmail("bob@remote.test", ["ghost@example.org"], msg)
    ghost = lmtp_status(kp, "ghost@example.org", "bounced", target)
    assert re.match(r"550 5\.1\.1 <ghost@example\.org> User doesn't exist", ghost.group(2))
    kp.wait_log(ghost.group(1) + r": removed")
    assert not re.search(ghost.group(1) + r": to=<ghost@example\.org>, .*status=deferred",
                         kp.log())


def test_dovecot_down_then_up_is_retried(kp_server, make_dovecot):
    dv = make_dovecot(start=False)
    target = f"inet:127.0.0.1:{dv.port}"
    kp = kp_server(local_transport="lmtp:" + target)
    msg = message("retried", "tok-lmtp-retry", lines=10)
    with smtplib.SMTP("127.0.0.1", kp.smtp_port) as s:
        s.ehlo("client.test")
        s.sendmail("bob@remote.test", ["alice@example.org"], msg)
    m = lmtp_status(kp, "alice@example.org", "deferred", target)
    assert "Connection refused" in m.group(2), m.group(0)
    kp.wait_log(m.group(1) + r": deferred: .*next attempt in \d+s")
    dv.start()
    files = dv.wait_delivered("alice@example.org", timeout=20, kp=kp)
    assert len(files) == 1
    lmtp_status(kp, "alice@example.org", "sent", target)


# ---- Postfix as a sender relaying to keypost ------------------------------

def test_postfix_relays_to_keypost_over_tls(kp_server, make_postfix):
    kp = kp_server()
    pf = make_postfix(kp.smtp_port)
    msg = message("from postfix", "tok-postfix-plain", sender="sender@postfix.test")
    pf.send("sender@postfix.test", ["alice@example.org"], msg)
    m = pf.wait_log(r"to=<alice@example\.org>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:\d+, .*"
                    r"status=sent \(250 2\.0\.0 Ok: queued as (\w+)\)", kp=kp)
    qid = m.group(1)
    assert re.search(r"Untrusted TLS connection established to 127\.0\.0\.1\[127\.0\.0\.1\]:"
                     r"\d+: TLSv1\.[23]", pf.log())
    kp.wait_log(r"Anonymous TLS connection established from unknown\[127\.0\.0\.1\]")
    kp.wait_log(qid + r": from=<sender@postfix\.test>, size=\d+, nrcpt=1")
    kp.wait_log(qid + r": to=<alice@example\.org>, relay=local, delay=\d+, status=sent")
    files = kp.wait_delivered("alice@example.org")
    stored = read(files[0])
    assert "Return-Path: <sender@postfix.test>" in stored
    # keypost's Received names Postfix's EHLO and the TLS session; Postfix's
    # own Received (from pickup) follows it.
    assert re.search(r"Received: from partner\.postfix\.test \(unknown \[127\.0\.0\.1\]\)\r?\n"
                     r"\t\(using TLSv1\.[23] with cipher \S+ \(\d+/\d+ bits\)\)\r?\n"
                     r"\tby mx\.keypost\.test \(keypost\) with ESMTPS id " + qid, stored), \
        stored[:1500]
    assert "Received: by partner.postfix.test (Postfix" in stored
    assert_same_body(stored, msg)


def ccert_server(kp_server, tmpbase, pins):
    table = os.path.join(tmpbase, "relay_clientcerts")
    with open(table, "w") as f:
        for fp, name in pins:
            f.write(f"{fp} {name}\n")
    os.chmod(table, 0o644)
    # Loopback is not in mynetworks: only the key pin can permit relaying.
    return kp_server(mynetworks="192.0.2.0/24", smtpd_tls_ask_ccert="yes",
                     relay_clientcerts=f"texthash:{table}",
                     smtpd_relay_restrictions="permit_tls_clientcerts, "
                                              "reject_unauth_destination")


def test_postfix_serverauth_cert_relays_by_pubkey_pin(kp_server, make_postfix, tmpbase,
                                                     partner):
    pin = partner["fp"]["pubkey_fingerprint"]
    kp = ccert_server(kp_server, tmpbase, [(pin, "partner.postfix.test")])
    pf = make_postfix(kp.smtp_port, smtp_tls_cert_file=partner["crt"],
                      smtp_tls_key_file=partner["key"])
    msg = message("relayed by key pin", "tok-postfix-pin", to="someone@elsewhere.test",
                  sender="sender@example.org", lines=50)
    pf.send("sender@example.org", ["someone@elsewhere.test"], msg)
    m = pf.wait_log(r"to=<someone@elsewhere\.test>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:\d+, "
                    r".*status=sent \(250 2\.0\.0 Ok: queued as (\w+)\)", kp=kp)
    qid = m.group(1)
    kp.wait_log(r"Untrusted TLS connection established from unknown\[127\.0\.0\.1\]")
    c = kp.wait_log(r"ccert: status=trusted via=pubkey-pin chain=\w+ "
                    r"subject_cn=\"partner\.postfix\.test\" issuer_cn=\"peers-public-ca\" "
                    r"cert_fingerprint=(\S+) pubkey_fingerprint=(\S+)")
    assert c.group(2) == pin
    assert c.group(1) == partner["fp"]["cert_fingerprint"]
    # Accepted and queued; whatever becomes of it next (elsewhere.test does
    # not exist) is not this test's business.
    kp.wait_log(qid + r": from=<sender@example\.org>, size=\d+, nrcpt=1")
    assert "Relay access denied" not in kp.log()


def test_postfix_serverauth_cert_without_pin_is_refused(kp_server, make_postfix, tmpbase,
                                                       partner):
    # The table pins another key from the same CA, not the partner's.
    other = partner["other_fp"]["pubkey_fingerprint"]
    kp = ccert_server(kp_server, tmpbase, [(other, "other.partner.test")])
    pf = make_postfix(kp.smtp_port, smtp_tls_cert_file=partner["crt"],
                      smtp_tls_key_file=partner["key"])
    msg = message("not pinned", "tok-postfix-nopin", to="someone@elsewhere.test",
                  sender="sender@example.org", lines=10)
    pf.send("sender@example.org", ["someone@elsewhere.test"], msg)
    pf.wait_log(r"to=<someone@elsewhere\.test>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:\d+, .*"
                r"status=bounced \(host 127\.0\.0\.1\[127\.0\.0\.1\] said: 554 5\.7\.1 "
                r"<someone@elsewhere\.test>: Relay access denied \(in reply to RCPT TO "
                r"command\)\)", kp=kp)
    kp.wait_log(r"ccert: status=untrusted via=none chain=failed "
                r"subject_cn=\"partner\.postfix\.test\"")
    kp.wait_log(r"NOQUEUE: reject: RCPT from unknown\[127\.0\.0\.1\]: 554 5\.7\.1 "
                r"<someone@elsewhere\.test>: Relay access denied; from=<sender@example\.org> "
                r"to=<someone@elsewhere\.test> proto=ESMTPS helo=<partner\.postfix\.test>")
    # Postfix's bounce (MAIL FROM:<>) goes back through keypost to the local
    # sender: a local recipient needs no relay permission.
    files = kp.wait_delivered("sender@example.org")
    dsn = read(files[0])
    assert "Return-Path: <>" in dsn
    assert "Relay access denied" in dsn and "someone@elsewhere.test" in dsn
