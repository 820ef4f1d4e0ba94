"""SASL end to end, against the real programs.

Server: Dovecot's auth service (a passwd-file user database) started here
answers keypost's AUTH (smtpd_sasl_type = dovecot) over a UNIX socket and
over TCP; swaks logs in with PLAIN and LOGIN on the submission port after
STARTTLS; wrong passwords are slowed down and end in a 421; the bad inputs
of issue 12; permit_sasl_authenticated, the sender login checks, the
Received: header, the log line and the policy protocol attributes; AUTH
EXTERNAL with a client certificate made here and no password.

Client: Debian's Postfix as a relay host that wants AUTH (its
smtpd_sasl_type = dovecot, asking the same Dovecot), keypost relaying
through it with smtp_sasl_password_maps; the password in no keypost log line;
a relay host without TLS gets no password unless the security options allow
it."""
import base64
import os
import re
import smtplib
import socket
import ssl
import subprocess
import threading
import time

import pytest

from kptest import free_port, make_tmpdir
from postfix_peer import need, need_root, read, wait_for

PASSWORDS = {"alice": "Secret-alice-1", "bob": "Secret-bob-2"}
LOCAL = "erin@example.org"
FOREIGN = "someone@elsewhere.test"


def tls_ctx(cert=None, key=None):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


def b64(data):
    return base64.b64encode(data).decode()


def plain(user, password):
    return b64(b"\0" + user.encode() + b"\0" + password.encode())


class AuthDovecot:
    """dovecot -F running only its auth service: a UNIX socket (mode 0666,
    keypost's smtpd runs unprivileged) and a TCP listener on 127.0.0.1."""

    def __init__(self, mechanisms="plain login"):
        self.bin = need("dovecot")
        need_root("a private Dovecot instance")
        self.dir = make_tmpdir("kp-dovecot-auth-")
        self.socket = os.path.join(self.dir, "auth")
        self.port = free_port()
        self.logfile = os.path.join(self.dir, "dovecot.log")
        os.makedirs(os.path.join(self.dir, "state"))
        passwd = os.path.join(self.dir, "passwd")
        with open(passwd, "w") as f:
            for user, pw in PASSWORDS.items():
                f.write(f"{user}:{{PLAIN}}{pw}::::::\n")
        self.conf = os.path.join(self.dir, "dovecot.conf")
        with open(self.conf, "w") as f:
            f.write(f"""\
base_dir = {self.dir}/run
state_dir = {self.dir}/state
log_path = {self.logfile}
instance_name = kptest-{os.path.basename(self.dir)}
protocols =
listen = 127.0.0.1
ssl = no
auth_mechanisms = {mechanisms}
# keypost's own delay is what the tests measure
auth_failure_delay = 0
passdb {{
  driver = passwd-file
  args = {passwd}
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home=/nonexistent
}}
service auth {{
  unix_listener {self.socket} {{
    mode = 0666
  }}
  inet_listener {{
    address = 127.0.0.1
    port = {self.port}
  }}
}}
""")
        self.proc = None

    def start(self):
        out = open(os.path.join(self.dir, "stdout"), "w")
        self.proc = subprocess.Popen([self.bin, "-F", "-c", self.conf], stdout=out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        out.close()

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError("dovecot exited: " + self.output())
            return os.path.exists(self.socket) and _accepts(self.port)
        wait_for(ready, lambda: "dovecot auth did not listen: " + self.output())
        return self

    def output(self):
        return read(os.path.join(self.dir, "stdout")) + read(self.logfile)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            self.proc.wait(timeout=15)


def _accepts(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


# One Dovecot per test: its own per-address penalty for failed logins must
# not carry over from one test to the next.
@pytest.fixture
def dovecot():
    d = AuthDovecot().start()
    yield d
    d.stop()


def sasl_server(make_server, dovecot, start=True, **params):
    sub = free_port()
    p = {
        "submission_listen": f"127.0.0.1:{sub}",
        "smtpd_sasl_auth_enable": "yes",
        "smtpd_sasl_path": dovecot.socket,
        "smtpd_sasl_authenticated_header": "yes",
        "mynetworks": "192.0.2.0/24",
        "smtpd_relay_restrictions": "permit_sasl_authenticated, reject_unauth_destination",
        "relayhost": f"[127.0.0.1]:{free_port()}",  # nobody there: relayed mail waits
        "smtpd_sasl_failure_delay": "0",
    }
    p.update(params)
    kp = make_server(start=False, **p)
    kp.sub_port = sub
    if start:
        kp.start(wait_ports=[kp.smtp_port, sub])
    return kp


def submission(kp, tls=True, cert=None, key=None, source="127.0.0.1", port=None):
    s = smtplib.SMTP("127.0.0.1", port or kp.sub_port, timeout=20, source_address=(source, 0))
    s.ehlo("client.test")
    if tls:
        s.starttls(context=tls_ctx(cert, key))
        s.ehlo("client.test")
    return s


def swaks(kp, mech, user, password, to=LOCAL, sender=None, extra=()):
    return subprocess.run(
        [need("swaks"), "--server", f"127.0.0.1:{kp.sub_port}", "--tls", "--auth", mech,
         "--auth-user", user, "--auth-password", password, "--from",
         sender or f"{user}@example.org", "--to", to, "--helo", "client.test",
         "--header", f"Subject: swaks {mech}", *extra],
        capture_output=True, text=True, timeout=60)


# ---- the server -------------------------------------------------------------

@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_swaks_logs_in_after_starttls(make_server, dovecot, mech):
    kp = sasl_server(make_server, dovecot)
    rcpt = f"{mech.lower()}@example.org"
    r = swaks(kp, mech, "alice", PASSWORDS["alice"], to=rcpt)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "235 2.7.0 Authentication successful" in r.stdout
    files = kp.wait_delivered(rcpt)
    text = open(files[0]).read()
    assert "(Authenticated sender: alice)" in text, text
    assert re.search(r"by mx\.keypost\.test \(keypost\) with ESMTPSA id", text), text
    kp.wait_log(rf": client=unknown\[127\.0\.0\.1\], sasl_method={mech}, sasl_username=alice session=S[0-9A-F]+\n")


def test_received_header_without_login_by_default(make_server, dovecot):
    kp = sasl_server(make_server, dovecot, smtpd_sasl_authenticated_header="no")
    r = swaks(kp, "PLAIN", "bob", PASSWORDS["bob"])
    assert r.returncode == 0, r.stdout + r.stderr
    text = open(kp.wait_delivered(LOCAL)[0]).read()
    assert "Authenticated sender" not in text and "with ESMTPSA" in text, text


def test_auth_only_after_starttls(make_server, dovecot):
    kp = sasl_server(make_server, dovecot)
    with submission(kp, tls=False) as s:
        assert not s.has_extn("auth")
        code, msg = s.docmd("AUTH", "PLAIN " + plain("alice", PASSWORDS["alice"]))
        assert code == 538 and b"5.7.11 Encryption required" in msg
        s.starttls(context=tls_ctx())
        s.ehlo("client.test")
        assert s.esmtp_features["auth"].split() == ["PLAIN", "LOGIN"]
        code, msg = s.docmd("AUTH", "PLAIN " + plain("alice", PASSWORDS["alice"]))
        assert code == 235, msg
        s.ehlo("client.test")
        assert not s.has_extn("auth")  # nothing more to offer


def test_auth_before_starttls_when_allowed(make_server, dovecot):
    """smtpd_tls_auth_only = no offers AUTH in the clear (Dovecot decides
    whether it accepts plaintext mechanisms there; on loopback it does)."""
    kp = sasl_server(make_server, dovecot, smtpd_tls_auth_only="no")
    with submission(kp, tls=False, port=kp.smtp_port) as s:  # 587 wants TLS for MAIL
        assert s.esmtp_features["auth"].split() == ["PLAIN", "LOGIN"]
        code, msg = s.docmd("AUTH", "PLAIN " + plain("alice", PASSWORDS["alice"]))
        assert code == 235, msg
        s.sendmail("alice@example.org", [LOCAL], b"Subject: clear\r\n\r\nx\r\n")
    text = open(kp.wait_delivered(LOCAL)[0]).read()
    assert "with ESMTPA id" in text, text


def test_auth_disabled(make_server, dovecot):
    kp = sasl_server(make_server, dovecot, smtpd_sasl_auth_enable="no")
    with submission(kp) as s:
        assert not s.has_extn("auth")
        code, msg = s.docmd("AUTH", "PLAIN " + plain("alice", PASSWORDS["alice"]))
        assert code == 503 and b"authentication not enabled" in msg


def test_wrong_password_is_slowed_then_dropped(make_server, dovecot):
    kp = sasl_server(make_server, dovecot, smtpd_sasl_failure_delay="1s",
                     smtpd_client_auth_failure_limit="3")
    delays = []
    with submission(kp) as s:
        for _ in range(3):
            t = time.monotonic()
            code, msg = s.docmd("AUTH", "PLAIN " + plain("alice", "wrong"))
            delays.append(time.monotonic() - t)
            assert code == 535 and b"5.7.8 Error: authentication failed" in msg, msg
        # the third failure reached the limit: the 421 follows the 535
        line = s.file.readline()
        assert line.startswith(b"421 4.7.0") and b"too many failed AUTH attempts" in line
    assert delays[0] >= 0.9 and delays[1] >= 1.9 and delays[2] >= 3.9, delays
    # The count is the client's, not the session's: a new session is dropped.
    with submission(kp) as s:
        code, msg = s.docmd("AUTH", "PLAIN " + plain("alice", PASSWORDS["alice"]))
        assert code == 421, msg
    log = kp.log()
    assert log.count("SASL PLAIN authentication failed") == 3, log
    assert PASSWORDS["alice"] not in log and "wrong" not in log


def test_worker_serves_others_during_the_delay(make_server, dovecot):
    kp = sasl_server(make_server, dovecot, smtpd_sasl_failure_delay="3s",
                     smtpd_worker_processes="1")
    # The failing client has its own address: Dovecot delays its next
    # logins too (auth penalty), which must not slow the other client down.
    with submission(kp, source="127.0.0.2") as slow:
        slow.putcmd("AUTH", "PLAIN " + plain("bob", "nope"))
        t = time.monotonic()
        with submission(kp) as fast:
            code, _ = fast.docmd("AUTH", "PLAIN " + plain("alice", PASSWORDS["alice"]))
            assert code == 235
        assert time.monotonic() - t < 2.5
        code, _ = slow.getreply()
        assert code == 535


def test_bad_input(make_server, dovecot):
    kp = sasl_server(make_server, dovecot)
    good = plain("alice", PASSWORDS["alice"])
    with submission(kp) as s:
        code, msg = s.docmd("AUTH", "PLAIN not*base64")
        assert code == 501 and b"5.5.2 Cannot decode response" in msg
        code, msg = s.docmd("AUTH", "PLAIN AAA")  # not a multiple of 4
        assert code == 501
        code, msg = s.docmd("AUTH", "CRAM-MD5")
        assert code == 504 and b"5.5.4" in msg
        code, msg = s.docmd("AUTH", "")
        assert code == 501
        # a 100 KB AUTH command line
        code, msg = s.docmd("AUTH", "PLAIN " + "A" * 100000)
        assert code == 500 and b"line too long" in msg
        # cancel the exchange
        code, msg = s.docmd("AUTH", "PLAIN")
        assert code == 334
        code, msg = s.docmd("*")
        assert code == 501 and b"5.7.0 Authentication aborted" in msg
        # invalid base64 as a response
        code, msg = s.docmd("AUTH", "LOGIN")
        assert code == 334 and base64.b64decode(msg) == b"Username:"
        code, msg = s.docmd("%%%")
        assert code == 501 and b"Cannot decode" in msg
        # a 100 KB response line
        code, msg = s.docmd("AUTH", "PLAIN")
        assert code == 334
        code, msg = s.docmd("A" * 100000)
        assert code == 500 and b"5.5.6 Authentication Exchange line is too long" in msg
        # still usable, and AUTH twice is refused
        code, msg = s.docmd("AUTH", "PLAIN =")
        assert code == 535, msg  # an empty response is a failed login
        code, msg = s.docmd("AUTH", "PLAIN " + good)
        assert code == 235, msg
        code, msg = s.docmd("AUTH", "PLAIN " + good)
        assert code == 503 and b"already authenticated" in msg
    with submission(kp) as s:
        code, msg = s.mail("alice@example.org")
        assert code == 250
        code, msg = s.docmd("AUTH", "PLAIN " + good)
        assert code == 503 and b"MAIL transaction in progress" in msg
    with smtplib.SMTP("127.0.0.1", kp.sub_port, timeout=10) as s:
        code, msg = s.docmd("AUTH", "PLAIN " + good)
        assert code == 503 and b"send HELO/EHLO first" in msg


def test_dovecot_over_tcp_and_dovecot_down(make_server, dovecot):
    kp = sasl_server(make_server, dovecot, smtpd_sasl_path=f"inet:127.0.0.1:{dovecot.port}")
    r = swaks(kp, "PLAIN", "bob", PASSWORDS["bob"])
    assert r.returncode == 0, r.stdout + r.stderr
    down = sasl_server(make_server, dovecot, smtpd_sasl_path=f"inet:127.0.0.1:{free_port()}")
    with submission(down) as s:
        assert not s.has_extn("auth")  # nothing to offer while Dovecot is away
        code, msg = s.docmd("AUTH", "PLAIN " + plain("bob", PASSWORDS["bob"]))
        assert code == 454 and b"4.7.0 Temporary authentication failure" in msg, msg
        code, msg = s.noop()
        assert code == 250
    down.wait_log(r"SASL: dovecot auth server inet:127\.0\.0\.1:\d+: connection failed")


def table_file(lines):
    path = os.path.join(make_tmpdir(), "table")
    with open(path, "w") as f:
        f.write("".join(line + "\n" for line in lines))
    return "texthash:" + path


def test_relay_and_sender_login_maps(make_server, dovecot):
    kp = sasl_server(
        make_server, dovecot,
        smtpd_sender_login_maps=table_file(["alice@example.org alice",
                                            "@shared.test alice, bob"]),
        smtpd_sender_restrictions="reject_sender_login_mismatch")
    with submission(kp) as s:
        s.mail("carol@nobody.test")
        code, msg = s.rcpt(FOREIGN)
        assert code == 554 and b"Relay access denied" in msg
        s.rset()
        s.mail("alice@example.org")
        code, msg = s.rcpt(LOCAL)
        assert code == 553 and b"<alice@example.org>: Sender address rejected: not logged in" in msg
        s.rset()
        code, _ = s.docmd("AUTH", "PLAIN " + plain("bob", PASSWORDS["bob"]))
        assert code == 235
        s.mail("alice@example.org")
        code, msg = s.rcpt(FOREIGN)
        assert code == 553 and b"not owned by user bob" in msg, msg
        s.rset()
        s.mail("team@shared.test")
        code, msg = s.rcpt(FOREIGN)
        assert code == 250, msg  # relayed: authenticated, and bob owns @shared.test
        s.rset()
        s.mail("bob@unlisted.test")
        code, msg = s.rcpt(LOCAL)
        assert code == 553 and b"not owned by user bob" in msg


def test_authenticated_mismatch_only_checks_logins(make_server, dovecot):
    kp = sasl_server(make_server, dovecot,
                     smtpd_sender_login_maps=table_file(["alice@example.org alice"]),
                     smtpd_sender_restrictions="reject_authenticated_sender_login_mismatch")
    with submission(kp) as s:
        s.mail("alice@example.org")
        code, _ = s.rcpt(LOCAL)
        assert code == 250  # not logged in: this restriction does not care
        s.rset()
        code, _ = s.docmd("AUTH", "PLAIN " + plain("alice", PASSWORDS["alice"]))
        assert code == 235
        s.mail("alice@example.org")
        assert s.rcpt(LOCAL)[0] == 250
        s.rset()
        s.mail("bob@example.org")
        code, msg = s.rcpt(LOCAL)
        assert code == 553 and b"not owned by user alice" in msg


class RecordingPolicy:
    def __init__(self):
        self.requests = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        f = conn.makefile("rwb")
        attrs = {}
        for line in f:
            line = line.rstrip(b"\n").decode()
            if line:
                k, _, v = line.partition("=")
                attrs[k] = v
                continue
            self.requests.append(attrs)
            attrs = {}
            f.write(b"action=DUNNO\n\n")
            f.flush()


def test_policy_attributes(make_server, dovecot):
    pol = RecordingPolicy()
    kp = sasl_server(make_server, dovecot,
                     smtpd_recipient_restrictions=f"check_policy_service inet:127.0.0.1:{pol.port}")
    with submission(kp) as s:
        # AUTH= from a client that did not log in means nothing
        assert s.mail("x@example.org", ["AUTH=x+40example.org"])[0] == 250
        assert s.rcpt(LOCAL)[0] == 250
        s.rset()
        assert s.docmd("AUTH", "PLAIN " + plain("alice", PASSWORDS["alice"]))[0] == 235
        s.mail("alice@example.org")
        assert s.rcpt(LOCAL)[0] == 250
        s.rset()
        assert s.mail("alice@example.org", ["AUTH=list+2Bowner+40example.org"])[0] == 250
        assert s.rcpt(LOCAL)[0] == 250
        s.rset()
        code, msg = s.mail("alice@example.org", ["AUTH=bad+ZZ"])
        assert code == 501 and b"Bad AUTH parameter syntax" in msg
    assert len(pol.requests) == 3
    before, after, with_sender = pol.requests
    assert before["sasl_method"] == "" and before["sasl_username"] == ""
    assert before["sasl_sender"] == ""
    assert after["sasl_method"] == "PLAIN" and after["sasl_username"] == "alice"
    assert after["sasl_sender"] == ""
    assert after["protocol_name"] == "ESMTPSA"
    assert with_sender["sasl_sender"] == "list+owner@example.org"


@pytest.fixture
def device(pki, make_server, dovecot):
    crt, key = pki.leaf("device1.keypost.test", issuer=None, eku="clientAuth")
    fp = pki.fingerprints(crt)["pubkey_fingerprint"]
    other_crt, other_key = pki.leaf("stranger.keypost.test", issuer=None, eku="clientAuth")
    maps = os.path.join(make_tmpdir(), "external")
    with open(maps, "w") as f:
        f.write(f"{fp} device1\n")
    kp = sasl_server(make_server, dovecot, smtpd_tls_ask_ccert="yes",
                     smtpd_sasl_external_maps=f"texthash:{maps}",
                     smtpd_sender_login_maps=table_file(["device1@example.org device1"]),
                     smtpd_sender_restrictions="reject_sender_login_mismatch")
    return kp, (crt, key), (other_crt, other_key)


def test_external_with_client_certificate(device):
    kp, (crt, key), _ = device
    with submission(kp, cert=crt, key=key) as s:
        assert s.esmtp_features["auth"].split() == ["PLAIN", "LOGIN", "EXTERNAL"]
        code, msg = s.docmd("AUTH", "EXTERNAL =")
        assert code == 235, msg
        s.sendmail("device1@example.org", [FOREIGN, LOCAL], b"Subject: from a device\r\n\r\nx\r\n")
    text = open(kp.wait_delivered(LOCAL)[0]).read()
    assert "(Authenticated sender: device1)" in text
    kp.wait_log(r"client=unknown\[127\.0\.0\.1\], sasl_method=EXTERNAL, sasl_username=device1 session=S[0-9A-F]+\n")
    # without an initial response, and naming its own identity
    with submission(kp, cert=crt, key=key) as s:
        assert s.docmd("AUTH", "EXTERNAL") == (334, b"")
        assert s.docmd(b64(b"device1"))[0] == 235


def test_external_refused(device):
    kp, (crt, key), (other_crt, other_key) = device
    with submission(kp, cert=crt, key=key) as s:
        code, msg = s.docmd("AUTH", "EXTERNAL " + b64(b"alice"))  # someone else
        assert code == 535, msg
    with submission(kp, cert=other_crt, key=other_key) as s:  # key not listed
        assert "EXTERNAL" not in s.esmtp_features["auth"]
        assert s.docmd("AUTH", "EXTERNAL =")[0] == 504
    with submission(kp) as s:  # no certificate
        assert "EXTERNAL" not in s.esmtp_features["auth"]
        assert s.docmd("AUTH", "EXTERNAL =")[0] == 504


def test_check_refuses_bad_sasl_settings(make_server, dovecot):
    kp = sasl_server(make_server, dovecot, start=False,
                     smtpd_sasl_security_options="noanonymous, nosuchthing",
                     smtpd_sasl_path="inet:127.0.0.1")
    kp.write_config()
    r = kp.cli("check", "-c", kp.config, check=False)
    assert r.returncode == 1
    assert 'unknown SASL security option "nosuchthing"' in r.stderr
    assert "smtpd_sasl_path: expected" in r.stderr


# ---- the client -------------------------------------------------------------

RELAY_USER = "alice"


def postfix_relay(pki, dovecot, tls=True):
    """Debian's Postfix as a relay host that relays only for clients that
    log in (its smtpd asks the same Dovecot), delivering p.test itself."""
    from postfix_peer import Postfix
    params = dict(myhostname="relay.p.test", mydomain="p.test",
                  mynetworks="192.0.2.0/24",
                  smtpd_sasl_auth_enable="yes", smtpd_sasl_type="dovecot",
                  smtpd_sasl_path=dovecot.socket,
                  smtpd_relay_restrictions="permit_sasl_authenticated, reject",
                  smtpd_recipient_restrictions="permit_sasl_authenticated, reject")
    if tls:
        params.update(smtpd_tls_cert_file=pki.path("mx.keypost.test", "crt"),
                      smtpd_tls_key_file=pki.path("mx.keypost.test", "key"),
                      smtpd_tls_security_level="may", smtpd_tls_auth_only="yes")
    else:
        params.update(smtpd_tls_security_level="none", smtpd_tls_auth_only="no")
    return Postfix(smtpd_port=free_port(), mailboxes=["user@p.test"], **params).start()


@pytest.fixture
def relay_tls(pki, dovecot):
    pf = postfix_relay(pki, dovecot)
    yield pf
    pf.stop()


@pytest.fixture
def relay_clear(pki, dovecot):
    pf = postfix_relay(pki, dovecot, tls=False)
    yield pf
    pf.stop()


def relaying_keypost(make_server, pf, password, key="[127.0.0.1]:{port}", **params):
    maps = table_file(["[127.0.0.1]:1 nobody:wrong",  # another port's login
                       key.format(port=pf.port) + f" {RELAY_USER}:{password}"])
    p = dict(relayhost=f"[127.0.0.1]:{pf.port}", mynetworks="127.0.0.0/8",
             smtp_sasl_auth_enable="yes", smtp_sasl_password_maps=maps,
             smtp_tls_security_level="encrypt",
             # Postfix's default forbids plaintext mechanisms even over TLS
             smtp_sasl_tls_security_options="noanonymous")
    p.update(params)
    return make_server(**p)


def submit(kp, rcpt, token):
    with smtplib.SMTP("127.0.0.1", kp.smtp_port, timeout=20) as s:
        s.sendmail("sender@example.org", [rcpt],
                   f"Subject: {token}\r\n\r\n{token}\r\n".encode())
    return kp.wait_log(rf"(\w+): from=<sender@example\.org>").group(1)


def assert_password_secret(kp, password):
    out = kp.output()
    assert password not in out, out
    assert b64(password.encode()) not in out
    assert plain(RELAY_USER, password) not in out


@pytest.mark.parametrize("key", ["[127.0.0.1]:{port}", "[127.0.0.1]"])
def test_relay_through_postfix_with_login(make_server, relay_tls, key):
    pf = relay_tls
    kp = relaying_keypost(make_server, pf, PASSWORDS[RELAY_USER], key=key)
    qid = submit(kp, "user@p.test", "tok-sasl-relay")
    kp.wait_log(rf"{qid}: to=<user@p\.test>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:{pf.port}, "
                r".*status=sent", timeout=30)
    pf.wait_log(r"client=localhost\[127\.0\.0\.1\], sasl_method=PLAIN, sasl_username=alice",
                kp=kp)
    files = wait_for(pf.delivered, "nothing in Postfix's mailbox")
    assert "tok-sasl-relay" in read(files[0])
    assert_password_secret(kp, PASSWORDS[RELAY_USER])


def test_wrong_password_defers(make_server, relay_tls):
    pf = relay_tls
    kp = relaying_keypost(make_server, pf, "not-the-password")
    qid = submit(kp, "user@p.test", "tok-sasl-wrong")
    m = kp.wait_log(rf"{qid}: to=<user@p\.test>, .*status=deferred \((.*)\)", timeout=30)
    assert "SASL authentication failed; server 127.0.0.1[127.0.0.1]:" in m.group(1)
    assert "535 5.7.8" in m.group(1), m.group(0)
    assert_password_secret(kp, "not-the-password")
    assert pf.delivered() == []


def test_postfix_default_options_send_no_password(make_server, relay_tls):
    """Postfix's defaults (noplaintext, also over TLS): no mechanism keypost
    has may be used, so the mail waits and no password is sent."""
    pf = relay_tls
    kp = relaying_keypost(make_server, pf, PASSWORDS[RELAY_USER],
                          smtp_sasl_tls_security_options="$smtp_sasl_security_options")
    qid = submit(kp, "user@p.test", "tok-sasl-default")
    m = kp.wait_log(rf"{qid}: to=<user@p\.test>, .*status=deferred \((.*)\)", timeout=30)
    assert "no mechanism available (smtp_sasl_tls_security_options forbid plaintext)" in \
        m.group(1), m.group(0)
    assert "sasl_username" not in pf.log()


def test_relay_without_tls_gets_no_password(make_server, relay_clear):
    pf = relay_clear
    kp = relaying_keypost(make_server, pf, PASSWORDS[RELAY_USER], smtp_tls_security_level="may")
    qid = submit(kp, "user@p.test", "tok-sasl-clear")
    m = kp.wait_log(rf"{qid}: to=<user@p\.test>, .*status=deferred \((.*)\)", timeout=30)
    assert "no mechanism available (no TLS, smtp_sasl_security_options forbid plaintext)" in \
        m.group(1), m.group(0)
    assert "sasl_username" not in pf.log()
    assert pf.delivered() == []


def test_relay_without_tls_when_configured(make_server, relay_clear):
    pf = relay_clear
    kp = relaying_keypost(make_server, pf, PASSWORDS[RELAY_USER], smtp_tls_security_level="none",
                          smtp_sasl_security_options="noanonymous")
    qid = submit(kp, "user@p.test", "tok-sasl-clear-ok")
    kp.wait_log(rf"{qid}: to=<user@p\.test>, .*status=sent", timeout=30)
    pf.wait_log(r"sasl_method=PLAIN, sasl_username=alice", kp=kp)
    assert_password_secret(kp, PASSWORDS[RELAY_USER])


def test_login_mechanism_to_keypost(make_server, pki):
    """keypost relaying through another keypost whose Dovecot offers LOGIN
    only: the client uses LOGIN."""
    dv = AuthDovecot(mechanisms="login").start()
    try:
        rx = make_server(mydestination="p.test", smtpd_sasl_auth_enable="yes",
                         smtpd_sasl_path=dv.socket, mynetworks="192.0.2.0/24",
                         smtpd_relay_restrictions="permit_sasl_authenticated, reject")
        with smtplib.SMTP("127.0.0.1", rx.smtp_port, timeout=10) as s:
            s.starttls(context=tls_ctx())
            s.ehlo("client.test")
            assert s.esmtp_features["auth"].strip() == "LOGIN"
            s.mail("x@example.org")
            assert s.rcpt("user@p.test")[0] == 554  # not logged in
        pf = type("Peer", (), {"port": rx.smtp_port})
        kp = relaying_keypost(make_server, pf, PASSWORDS[RELAY_USER])
        qid = submit(kp, "user@p.test", "tok-sasl-login")
        kp.wait_log(rf"{qid}: to=<user@p\.test>, .*status=sent", timeout=30)
        rx.wait_log(r"client=unknown\[127\.0\.0\.1\], sasl_method=LOGIN, sasl_username=alice")
        assert "tok-sasl-login" in open(rx.wait_delivered("user@p.test")[0]).read()
        assert_password_secret(kp, PASSWORDS[RELAY_USER])
        assert_password_secret(rx, PASSWORDS[RELAY_USER])
    finally:
        dv.stop()


def test_dovecot_gone_during_the_clients_turn(make_server, dovecot):
    kp = sasl_server(make_server, dovecot)
    with submission(kp) as s:
        code, msg = s.docmd("AUTH", "LOGIN")
        assert code == 334
        dovecot.stop()
        kp.wait_log(r"SASL: dovecot auth server .*: connection closed")
        code, msg = s.docmd(b64(b"alice"))  # answered now, not while the client typed
        assert code == 454 and b"4.7.0 Temporary authentication failure" in msg, msg
        assert s.noop()[0] == 250


def test_auth_command_rate_limit(make_server, dovecot):
    kp = sasl_server(make_server, dovecot, smtpd_client_auth_rate_limit="2")
    with submission(kp) as s:
        assert s.docmd("AUTH", "PLAIN " + plain("alice", "wrong"))[0] == 535
        assert s.docmd("AUTH", "PLAIN " + plain("alice", "wrong"))[0] == 535
        code, msg = s.docmd("AUTH", "PLAIN " + plain("alice", PASSWORDS["alice"]))
        assert code == 450 and b"4.7.1 Error: too many AUTH commands from 127.0.0.1" in msg
    kp.wait_log(r"AUTH command rate limit exceeded: 2 from unknown\[127\.0\.0\.1\]")
