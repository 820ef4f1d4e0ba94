"""Policy delegation and access tables, end to end.

* check_policy_service against a policy server written here (TCP and a unix
  socket): the attributes keypost sends must be Postfix's (SMTPD_POLICY_README)
  for plaintext, anonymous TLS, untrusted, pinned and CA-verified client
  certificates; every action a policy server may answer; connection reuse;
  servers that hang, hang up, babble or are not there at all.
* Debian's real postgrey: greylisting with DEFER_IF_PERMIT and PREPEND.
* A real PostgreSQL started here: check_ccert_access pgsql:FILE shared by two
  keypost instances, changes without restart, tempfail when the database is
  down (never a permit), `keypost check` on a dead database.
* lmdb: tables built by `keypost map`, reloaded on SIGHUP.
* check_client/helo/sender/recipient_access with texthash tables.

Every wait is bounded; every process started here is stopped by a fixture.
Expected replies follow Postfix's smtpd_check.c (check_table_result)."""
import glob
import grp
import os
import pwd
import random
import re
import shutil
import signal
import smtplib
import socket
import socketserver
import ssl
import subprocess
import tempfile
import threading
import time

import pytest

from kptest import KEYPOST, free_port, make_tmpdir, run

SENDER = "bob@remote.test"
LOCAL = "alice@example.org"
FOREIGN = "someone@elsewhere.test"

# Everything Postfix 3.x sends in an smtpd_access_policy request.
POSTFIX_ATTRS = {
    "request", "protocol_state", "protocol_name", "helo_name", "queue_id", "sender",
    "recipient", "recipient_count", "client_address", "client_name", "reverse_client_name",
    "client_port", "server_address", "server_port", "instance", "size", "etrn_domain",
    "stress", "sasl_method", "sasl_username", "sasl_sender", "ccert_subject", "ccert_issuer",
    "ccert_fingerprint", "ccert_pubkey_fingerprint", "encryption_protocol",
    "encryption_cipher", "encryption_keysize", "policy_context", "compatibility_level",
    "mail_version",
}


# ---- a policy server ---------------------------------------------------------

SILENT = object()    # read the request, never answer
CLOSE = object()     # read the request, hang up
GARBAGE = object()   # answer without action=


class PolicyServer:
    """A Postfix policy server on 127.0.0.1 or a unix socket. script(attrs)
    returns the action text (or SILENT, CLOSE, GARBAGE); every request is
    recorded with the number of the connection that carried it."""

    def __init__(self, script=None, unix_path=None, hangup_at_once=False):
        self.script = script or (lambda attrs: "DUNNO")
        self.hangup_at_once = hangup_at_once
        self.requests = []       # [(connection number, {attr: value})]
        self.accepts = 0
        self.lock = threading.Lock()
        self.live = set()
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                outer._serve(self.request)

        if unix_path:
            class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
                daemon_threads = True
            self.server = Server(unix_path, Handler)
            os.chmod(unix_path, 0o666)  # keypost's workers run as mail_owner
            self.target = f"unix:{unix_path}"
        else:
            class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
                daemon_threads = True
                allow_reuse_address = True
            self.server = Server(("127.0.0.1", 0), Handler)
            self.port = self.server.server_address[1]
            self.target = f"inet:127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def _serve(self, sock):
        with self.lock:
            self.accepts += 1
            conn = self.accepts
            self.live.add(sock)
        try:
            if self.hangup_at_once:
                return
            f = sock.makefile("rb")
            while True:
                attrs = {}
                while True:
                    line = f.readline()
                    if not line:
                        return
                    line = line.decode("utf-8", "replace").rstrip("\n")
                    if line == "":
                        break
                    name, _, value = line.partition("=")
                    attrs[name] = value
                with self.lock:
                    self.requests.append((conn, attrs))
                answer = self.script(attrs)
                if answer is SILENT:
                    continue
                if answer is CLOSE:
                    return
                if answer is GARBAGE:
                    sock.sendall(b"hello=world\nthis is not a policy answer\n\n")
                    continue
                if isinstance(answer, (list, tuple)):  # raw pieces, sent apart
                    for i, piece in enumerate(answer):
                        if i:
                            time.sleep(0.2)
                        sock.sendall(piece)
                    continue
                sock.sendall(f"action={answer}\n\n".encode())
        except OSError:
            pass
        finally:
            with self.lock:
                self.live.discard(sock)

    def attrs(self):
        with self.lock:
            return [a for _, a in self.requests]

    def for_port(self, client_port):
        return [a for a in self.attrs() if a.get("client_port") == str(client_port)]

    def stop(self):
        self.server.shutdown()
        with self.lock:
            socks = list(self.live)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.server.server_close()


@pytest.fixture
def policy():
    """policy(script=None, unix=False, hangup_at_once=False) -> PolicyServer"""
    servers, dirs = [], []

    def factory(script=None, unix=False, hangup_at_once=False):
        path = None
        if unix:
            d = make_tmpdir("kp-pol-")
            dirs.append(d)
            path = os.path.join(d, "policy.sock")
        srv = PolicyServer(script, path, hangup_at_once)
        servers.append(srv)
        return srv

    yield factory
    for srv in servers:
        srv.stop()
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)


def by_rcpt(table, default="DUNNO"):
    """A script answering by the local part of the recipient."""
    def script(attrs):
        local = attrs.get("recipient", "").split("@")[0]
        answer = table.get(local, default)
        return answer(attrs) if callable(answer) else answer
    return script


# ---- SMTP helpers ------------------------------------------------------------

def tls_context(cert=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if cert is not None:
        ctx.load_cert_chain(certfile=cert[0], keyfile=cert[1])
    return ctx


def connect(kp, tls=False, cert=None, helo="client.test", esmtp=True, source=None,
            timeout=20):
    s = smtplib.SMTP("127.0.0.1", kp.smtp_port, timeout=timeout,
                     source_address=(source, 0) if source else None)
    if esmtp:
        s.ehlo(helo)
    else:
        s.helo(helo)
    if tls:
        s.starttls(context=tls_context(cert))
        s.ehlo(helo)
    return s


def rcpt_reply(kp, rcpt, sender=SENDER, **kw):
    with connect(kp, **kw) as s:
        code, msg = s.mail(sender)
        assert code == 250, msg
        return s.rcpt(rcpt)


def send(kp, rcpt, body="Subject: policy test\r\n\r\nbody\r\n", sender=SENDER, **kw):
    """One message to one recipient: (RCPT reply, end-of-data reply or None)."""
    with connect(kp, **kw) as s:
        code, msg = s.mail(sender)
        assert code == 250, msg
        r = s.rcpt(rcpt)
        if r[0] != 250:
            return r, None
        return r, s.data(body.encode())


def wait_until(pred, timeout=10, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def sentinel_delivered(kp, rcpt="sentinel@example.org"):
    """Send one plain message and wait for it: everything queued before it
    has had its chance to be delivered."""
    (code, msg), done = send(kp, rcpt)
    assert code == 250 and done[0] == 250, (code, msg, done)
    kp.wait_delivered(rcpt)


# ---- certificates ------------------------------------------------------------

@pytest.fixture(scope="module")
def certs(pki):
    """Client certificates from the session PKI (CA "rootca")."""
    c = {}
    for name, issuer in (("pol-trusted", "rootca"), ("pol-untrusted", None),
                         ("pol-pinned", None), ("pg-peer1", None), ("pg-peer2", None),
                         ("pg-peer3", None)):
        crt, key = pki.leaf(name, issuer=issuer)
        c[name] = {"pair": (crt, key), **pki.fingerprints(crt)}
    d = make_tmpdir("kp-polpins-")
    # A CA-verified peer whose CN needs xtext encoding ("+" and space).
    key = pki.key("pol-xtext")
    csr, crt = os.path.join(d, "xtext.csr"), os.path.join(d, "xtext.crt")
    ext = os.path.join(d, "xtext.ext")
    with open(ext, "w") as f:
        f.write("basicConstraints=critical,CA:FALSE\nextendedKeyUsage=clientAuth\n")
    run(["openssl", "req", "-new", "-key", key, "-out", csr, "-subj", "/CN=Peer One=1\\+2"])
    run(["openssl", "x509", "-req", "-in", csr, "-CA", pki.path("rootca", "crt"), "-CAkey",
         pki.path("rootca", "key"), "-CAcreateserial", "-out", crt, "-days", "30",
         "-extfile", ext])
    c["pol-xtext"] = {"pair": (crt, key), **pki.fingerprints(crt)}
    pins = os.path.join(d, "relay_clientcerts")
    with open(pins, "w") as f:
        f.write(f"{c['pol-pinned']['pubkey_fingerprint']} pinned peer\n")
    c["_pins"] = pins
    c["_cafile"] = pki.path("rootca", "crt")
    yield c
    shutil.rmtree(d, ignore_errors=True)


# ---- 1. the request ----------------------------------------------------------

def test_policy_request_attributes(make_server, policy, certs):
    """Each kind of client, asked of a TCP server with the global
    policy_context and of a unix-socket server with its own."""
    tcp = policy()
    unix = policy(unix=True)
    kp = make_server(
        smtpd_tls_ask_ccert="yes",
        smtpd_tls_CAfile=certs["_cafile"],
        relay_clientcerts="texthash:" + certs["_pins"],
        smtpd_policy_service_policy_context="global-ctx",
        smtpd_recipient_restrictions=f"check_policy_service {tcp.target}, "
                                     f"check_policy_service {{ {unix.target}, "
                                     f"policy_context = per-server-ctx }}")
    cases = [
        # label, tls, cert name, esmtp
        ("plaintext", False, None, True),
        ("plaintext-helo", False, None, False),
        ("anonymous-tls", True, None, True),
        ("untrusted-cert", True, "pol-untrusted", True),
        ("pinned-cert", True, "pol-pinned", True),
        ("trusted-cert", True, "pol-trusted", True),
    ]
    for label, tls, cert, esmtp in cases:
        c = certs[cert] if cert else None
        with connect(kp, tls=tls, cert=c["pair"] if c else None, esmtp=esmtp) as s:
            client_port = s.sock.getsockname()[1]
            cipher = s.sock.cipher() if tls else None
            version = s.sock.version() if tls else None
            code, msg = s.mail(SENDER, ["SIZE=1234"] if esmtp else [])
            assert code == 250, (label, msg)
            code, msg = s.rcpt(LOCAL)
            assert code == 250, (label, msg)
        want = {
            "request": "smtpd_access_policy",
            "protocol_state": "RCPT",
            "protocol_name": ("ESMTPS" if tls else "ESMTP") if esmtp else "SMTP",
            "helo_name": "client.test",
            "queue_id": "",
            "sender": SENDER,
            "recipient": LOCAL,
            "recipient_count": "0",
            "client_address": "127.0.0.1",
            "client_name": "unknown",
            "reverse_client_name": "unknown",
            "client_port": str(client_port),
            "server_address": "127.0.0.1",
            "server_port": str(kp.smtp_port),
            "size": "1234" if esmtp else "0",
            "sasl_method": "",
            "sasl_username": "",
            "sasl_sender": "",
            "etrn_domain": "",
            # Postfix: subject and issuer only for a CA-verified chain.
            "ccert_subject": "pol-trusted" if cert == "pol-trusted" else "",
            "ccert_issuer": "rootca" if cert == "pol-trusted" else "",
            "ccert_fingerprint": c["cert_fingerprint"] if c else "",
            "ccert_pubkey_fingerprint": c["pubkey_fingerprint"] if c else "",
            "encryption_protocol": version or "",
            "encryption_cipher": cipher[0] if tls else "",
            "encryption_keysize": str(cipher[2]) if tls else "0",
        }
        for srv, ctx in ((tcp, "global-ctx"), (unix, "per-server-ctx")):
            reqs = wait_until(lambda: srv.for_port(client_port), 5, f"{label} request")
            assert len(reqs) == 1, (label, reqs)
            req = reqs[0]
            assert set(req) == POSTFIX_ATTRS, (label, sorted(set(req) ^ POSTFIX_ATTRS))
            got = {k: req[k] for k in want}
            assert got == {**want}, (label, {k: (got[k], want[k]) for k in want
                                            if got[k] != want[k]})
            assert req["policy_context"] == ctx, (label, req["policy_context"])
            assert req["instance"], label


def test_ccert_subject_is_xtext_encoded(make_server, policy, certs):
    """Postfix sends ccert_subject and ccert_issuer xtext-encoded
    (xtext_quote: "+", space and non-printables become +XX)."""
    pol = policy()
    kp = make_server(smtpd_tls_ask_ccert="yes", smtpd_tls_CAfile=certs["_cafile"],
                     smtpd_recipient_restrictions=f"check_policy_service {pol.target}")
    with connect(kp, tls=True, cert=certs["pol-xtext"]["pair"]) as s:
        port = s.sock.getsockname()[1]
        assert s.mail(SENDER)[0] == 250
        assert s.rcpt(LOCAL)[0] == 250
    req = wait_until(lambda: pol.for_port(port), 5, "the request")[0]
    assert (req["ccert_subject"], req["ccert_issuer"]) == ("Peer+20One=1+2B2", "rootca"), req
    assert req["ccert_pubkey_fingerprint"] == certs["pol-xtext"]["pubkey_fingerprint"]


def test_instance_and_recipient_count(make_server, policy):
    """instance is constant within one MAIL transaction and changes with the
    next; at RCPT Postfix sends recipient_count=0 (the count is only filled
    in at DATA and END-OF-MESSAGE)."""
    pol = policy()
    kp = make_server(smtpd_recipient_restrictions=f"check_policy_service {pol.target}")
    with connect(kp) as s:
        port = s.sock.getsockname()[1]
        assert s.mail(SENDER)[0] == 250
        assert s.rcpt("a@example.org")[0] == 250
        assert s.rcpt("b@example.org")[0] == 250
        assert s.rset()[0] == 250
        assert s.mail(SENDER)[0] == 250
        assert s.rcpt("c@example.org")[0] == 250
    reqs = {r["recipient"]: r for r in wait_until(lambda: len(pol.for_port(port)) == 3 and
                                                  pol.for_port(port), 5, "3 requests")}
    a, b, c = (reqs[f"{x}@example.org"] for x in "abc")
    got = {
        "same instance within a transaction": a["instance"] == b["instance"],
        "new instance after RSET and MAIL": c["instance"] != a["instance"],
        "recipient_count": [a["recipient_count"], b["recipient_count"],
                            c["recipient_count"]],
    }
    assert got == {
        "same instance within a transaction": True,
        "new instance after RSET and MAIL": True,
        "recipient_count": ["0", "0", "0"],
    }, (got, a["instance"], b["instance"], c["instance"])


def test_connection_reuse(make_server, policy):
    """Three messages, two SMTP sessions, one worker: one connection to the
    policy server carries every request."""
    pol = policy()
    kp = make_server(smtpd_worker_processes=1,
                     smtpd_recipient_restrictions=f"check_policy_service {pol.target}")
    with connect(kp) as s:
        for i in range(2):
            s.sendmail(SENDER, [f"reuse{i}@example.org"], b"Subject: reuse\r\n\r\nx\r\n")
    with connect(kp) as s:
        s.sendmail(SENDER, ["reuse2@example.org"], b"Subject: reuse\r\n\r\nx\r\n")
    for i in range(3):
        kp.wait_delivered(f"reuse{i}@example.org")
    assert len(pol.requests) == 3
    assert pol.accepts == 1, pol.requests
    assert {c for c, _ in pol.requests} == {1}


def test_idle_connection_kept_for_max_idle(make_server, policy):
    """smtpd_policy_service_timeout bounds one request; an idle connection
    lives for smtpd_policy_service_max_idle (Postfix's auto_clnt)."""
    pol = policy()
    kp = make_server(smtpd_worker_processes=1,
                     smtpd_policy_service_timeout="2s",
                     smtpd_policy_service_max_idle="300s",
                     smtpd_recipient_restrictions=f"check_policy_service {pol.target}")
    assert rcpt_reply(kp, "idle1@example.org")[0] == 250
    time.sleep(3.2)
    assert rcpt_reply(kp, "idle2@example.org")[0] == 250
    assert len(pol.requests) == 2
    assert pol.accepts == 1, "the idle connection was closed after the request timeout"


@pytest.mark.parametrize("param", ["max_idle", "max_ttl"])
def test_old_connections_are_replaced(make_server, policy, param):
    pol = policy()
    kp = make_server(smtpd_worker_processes=1,
                     **{f"smtpd_policy_service_{param}": "1s"},
                     smtpd_recipient_restrictions=f"check_policy_service {pol.target}")
    assert rcpt_reply(kp, "old1@example.org")[0] == 250
    time.sleep(2.2)
    assert rcpt_reply(kp, "old2@example.org")[0] == 250
    assert len(pol.requests) == 2
    assert pol.accepts == 2, pol.requests


def test_reply_in_pieces(make_server, policy):
    """A reply may arrive in any number of segments: here the action line,
    then (later) the blank line that ends the reply; then extra attributes
    before the action."""
    pol = policy(by_rcpt({
        "split": [b"action=REJECT split reply\n", b"\n"],
        "partial": [b"act", b"ion=REJECT partial line\n\n"],
        "extra": [b"foo=bar\naction=REJECT with extras\nbaz=qux\n\n"],
    }))
    kp = make_server(smtpd_policy_service_timeout="2s",
                     smtpd_recipient_restrictions=f"check_policy_service {pol.target}")
    for local, text in (("partial", "partial line"), ("extra", "with extras"),
                        ("split", "split reply")):
        got = rcpt_reply(kp, f"{local}@example.org")
        assert got == (554, f"5.7.1 <{local}@example.org>: Recipient address rejected: "
                            f"{text}".encode()), (local, got)


# ---- 2. actions --------------------------------------------------------------

ACTIONS = {
    "ok": "OK",
    "dunno": "DUNNO",
    "reject": "REJECT go away",
    "defer": "DEFER come back later",
    "c450": "450 custom soft",
    "c550": "550 custom hard",
    "dip": "DEFER_IF_PERMIT maybe later",
    "hold": "HOLD",
    "discard": "DISCARD",
    "prepend": "PREPEND X-Test: yes",
    "warn": "WARN watch this one",
}


@pytest.fixture
def action_server(make_server, policy):
    pol = policy(by_rcpt(ACTIONS))
    kp = make_server(smtpd_recipient_restrictions=f"check_policy_service {pol.target}")
    return kp, pol


@pytest.mark.parametrize("local,code,text", [
    ("reject", 554, "5.7.1 <reject@example.org>: Recipient address rejected: go away"),
    ("defer", 450, "4.7.1 <defer@example.org>: Recipient address rejected: come back later"),
    ("c450", 450, "4.7.1 <c450@example.org>: Recipient address rejected: custom soft"),
    ("c550", 550, "5.7.1 <c550@example.org>: Recipient address rejected: custom hard"),
    ("dip", 450, "4.7.1 <dip@example.org>: Recipient address rejected: maybe later"),
])
def test_refusing_actions(action_server, local, code, text):
    kp, pol = action_server
    rcpt = f"{local}@example.org"
    got = rcpt_reply(kp, rcpt)
    assert got == (code, text.encode()), got
    kp.wait_log(rf"NOQUEUE: reject: RCPT from unknown\[127\.0\.0\.1\]: {code} "
                + re.escape(text))
    assert [a["recipient"] for a in pol.attrs()] == [rcpt]
    sentinel_delivered(kp)
    assert kp.delivered(rcpt) == []


@pytest.mark.parametrize("local", ["ok", "dunno"])
def test_accepting_actions(action_server, local):
    kp, pol = action_server
    rcpt = f"{local}@example.org"
    (code, msg), done = send(kp, rcpt)
    assert code == 250 and done[0] == 250, (code, msg, done)
    kp.wait_delivered(rcpt)


def test_hold_action(action_server):
    kp, pol = action_server
    (code, msg), done = send(kp, "hold@example.org")
    assert code == 250 and done[0] == 250, (code, msg, done)
    qid = re.search(rb"queued as (\S+)", done[1]).group(1).decode()
    wait_until(lambda: qid in kp.queue_files("hold"), 5, "the message in hold/")
    out = kp.cli("queue", "-c", kp.config, "list").stdout
    assert re.search(rf"(?m)^{re.escape(qid)}!", out), out
    sentinel_delivered(kp)
    assert kp.delivered("hold@example.org") == []
    assert qid in kp.queue_files("hold")


def test_discard_action(action_server):
    kp, pol = action_server
    (code, msg), done = send(kp, "discard@example.org")
    assert code == 250 and done[0] == 250, (code, msg, done)
    sentinel_delivered(kp)
    assert kp.delivered("discard@example.org") == []
    assert kp.queue_files("hold") == []


def test_prepend_action(action_server):
    kp, pol = action_server
    (code, msg), done = send(kp, "prepend@example.org")
    assert code == 250 and done[0] == 250, (code, msg, done)
    text = open(kp.wait_delivered("prepend@example.org")[0]).read()
    head = text.split("\n\n", 1)[0]
    assert re.search(r"(?m)^X-Test: yes$", head), head


def test_warn_action(action_server):
    kp, pol = action_server
    (code, msg), done = send(kp, "warn@example.org")
    assert code == 250 and done[0] == 250, (code, msg, done)
    kp.wait_delivered("warn@example.org")
    kp.wait_log(r"watch this one")


@pytest.mark.parametrize("action,then,code,delivered", [
    # DISCARD is a permit (Postfix: "claim successful delivery") and ends
    # the evaluation: a later reject does not apply.
    ("DISCARD", "reject", 250, False),
    # DEFER_IF_PERMIT defers only when the result would be permit...
    ("DEFER_IF_PERMIT not yet", "reject", 554, False),
    ("DEFER_IF_PERMIT not yet", "permit", 450, False),
    # ...DEFER_IF_REJECT turns a later reject into a deferral.
    ("DEFER_IF_REJECT think again", "reject", 450, False),
    ("DEFER_IF_REJECT think again", "permit", 250, True),
    # HOLD does not protect from a later reject.
    ("HOLD", "reject", 554, False),
])
def test_conditional_actions(make_server, policy, action, then, code, delivered):
    pol = policy(lambda attrs: action)
    kp = make_server(
        smtpd_recipient_restrictions="check_recipient_access "
                                     "inline:{ sentinel@example.org=OK }, "
                                     f"check_policy_service {pol.target}, {then}")
    (got, msg), done = send(kp, "cond@example.org")
    assert got == code, (action, then, got, msg)
    if got == 250:
        assert done[0] == 250, done
    sentinel_delivered(kp)
    assert bool(kp.delivered("cond@example.org")) == delivered


def test_enhanced_status_codes_in_action_text(make_server, policy):
    """Postfix takes an RFC 3463 code at the start of the text (dsn_split):
    "REJECT 5.7.9 text" and "550 5.1.1 text" and the default action
    "451 4.3.5 Server configuration problem"."""
    pol = policy(by_rcpt({"r": "REJECT 5.7.9 policy text", "n": "550 5.1.1 no such user",
                          "d": "DEFER 4.2.2 mailbox full"}))
    kp = make_server(smtpd_recipient_restrictions=f"check_policy_service {pol.target}, "
                                                  f"check_policy_service "
                                                  f"inet:127.0.0.1:{free_port()}")
    assert rcpt_reply(kp, "r@example.org") == (
        554, b"5.7.9 <r@example.org>: Recipient address rejected: policy text")
    assert rcpt_reply(kp, "n@example.org") == (
        550, b"5.1.1 <n@example.org>: Recipient address rejected: no such user")
    assert rcpt_reply(kp, "d@example.org") == (
        450, b"4.2.2 <d@example.org>: Recipient address rejected: mailbox full")
    # DUNNO from the first server, nobody at the second: the default action.
    assert rcpt_reply(kp, "x@example.org") == (
        451, b"4.3.5 <x@example.org>: Recipient address rejected: "
             b"Server configuration problem")


# ---- 3. failures -------------------------------------------------------------

def failing_params(target, **extra):
    params = {
        "smtpd_policy_service_timeout": "2s",
        "smtpd_policy_service_try_limit": "2",
        "smtpd_policy_service_retry_delay": "1s",
        "smtpd_recipient_restrictions": "check_recipient_access "
                                        "inline:{ fast@example.org=OK }, "
                                        f"check_policy_service {target}",
    }
    params.update(extra)
    return params


def assert_policy_failure(code, msg):
    assert code == 451, (code, msg)
    assert msg.startswith(b"4."), msg
    assert b"Server configuration problem" in msg, msg


def test_silent_policy_server_times_out_without_blocking_others(make_server, policy):
    dead = policy(lambda attrs: SILENT)
    # One worker: session B can only finish if the event loop is not blocked.
    kp = make_server(smtpd_worker_processes=1, **failing_params(dead.target))
    result = {}

    def session_a():
        t0 = time.time()
        try:
            result["a"] = rcpt_reply(kp, "slow@example.org", timeout=30)
        finally:
            result["a_time"] = time.time() - t0

    th = threading.Thread(target=session_a, daemon=True)
    th.start()
    wait_until(lambda: dead.requests, 5, "the first policy request")
    t0 = time.time()
    (code, msg), done = send(kp, "fast@example.org")
    b_time = time.time() - t0
    assert code == 250 and done[0] == 250, (code, msg, done)
    assert b_time < 3.0, f"session B took {b_time:.1f}s while A waited for the policy"
    assert "a" not in result, "session A was answered before the policy timeout"
    kp.wait_delivered("fast@example.org")
    th.join(20)
    assert not th.is_alive()
    assert_policy_failure(*result["a"])
    # timeout 2s + retry delay 1s + timeout 2s
    assert 4.0 <= result["a_time"] <= 10.0, result["a_time"]
    assert len(dead.requests) == 2 and dead.accepts == 2, (dead.accepts, dead.requests)
    kp.wait_log(rf"policy service {re.escape(dead.target)}: timeout \(try 1 of 2\)")
    assert kp.delivered("slow@example.org") == []


@pytest.mark.parametrize("mode", ["hangup-at-once", "close-after-request", "garbage",
                                  "nothing-listening"])
def test_broken_policy_server(make_server, policy, mode):
    if mode == "nothing-listening":
        target, pol = f"inet:127.0.0.1:{free_port()}", None
    else:
        pol = policy(lambda attrs: CLOSE if mode == "close-after-request" else GARBAGE,
                     hangup_at_once=mode == "hangup-at-once")
        target = pol.target
    kp = make_server(**failing_params(target))
    t0 = time.time()
    code, msg = rcpt_reply(kp, "broken@example.org")
    elapsed = time.time() - t0
    assert_policy_failure(code, msg)
    assert elapsed < 8, elapsed
    if pol is not None:
        assert pol.accepts == 2, (mode, pol.accepts)   # smtpd_policy_service_try_limit
    sentinel_delivered(kp, "fast@example.org")
    assert kp.delivered("broken@example.org") == []


@pytest.mark.parametrize("mode", ["silent", "garbage", "nothing-listening"])
def test_default_action_dunno(make_server, policy, mode):
    if mode == "nothing-listening":
        target = f"inet:127.0.0.1:{free_port()}"
    else:
        target = policy(lambda attrs: SILENT if mode == "silent" else GARBAGE).target
    kp = make_server(**failing_params(target, smtpd_policy_service_timeout="1s",
                                      smtpd_policy_service_default_action="DUNNO"))
    (code, msg), done = send(kp, "fallback@example.org")
    assert code == 250 and done[0] == 250, (code, msg, done)
    kp.wait_delivered("fallback@example.org")


def test_reject_is_never_accepted(make_server, policy):
    """A policy server that says REJECT, slowly, and hangs up on every other
    request; many concurrent sessions, and one that pipelines: no recipient
    the policy rejected is ever accepted."""
    counter = {"n": 0}
    lock = threading.Lock()

    def script(attrs):
        with lock:
            counter["n"] += 1
            n = counter["n"]
        if attrs["recipient"] in (LOCAL, "sentinel@example.org"):
            return "OK"
        time.sleep(random.uniform(0, 0.2))
        return CLOSE if n % 2 else "REJECT policy says no"

    pol = policy(script)
    kp = make_server(smtpd_recipient_restrictions=f"check_policy_service {pol.target}")
    results = []

    def client(i):
        with connect(kp) as s:
            s.mail(SENDER)
            for j in range(2):
                results.append(s.rcpt(f"no{i}.{j}@example.org"))

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == 16, results
    for code, msg in results:
        assert code in (554, 451), (code, msg)
    # Pipelined: the slow rejection must stay attached to its recipient.
    with connect(kp) as s:
        s.sock.sendall(b"MAIL FROM:<bob@remote.test>\r\nRCPT TO:<nopipe@example.org>\r\n"
                       b"RCPT TO:<alice@example.org>\r\nDATA\r\n")
        replies = [s.getreply() for _ in range(4)]
        assert [c for c, _ in replies] == [250, replies[1][0], 250, 354], replies
        assert replies[1][0] in (554, 451), replies
        s.sock.sendall(b"Subject: pipelined\r\n\r\nx\r\n.\r\n")
        assert s.getreply()[0] == 250
    kp.wait_delivered(LOCAL)
    sentinel_delivered(kp)
    assert not glob.glob(os.path.join(kp.mail, "example.org", "no*"))


# ---- 4. postgrey ---------------------------------------------------------------

@pytest.fixture
def postgrey():
    exe = shutil.which("postgrey") or "/usr/sbin/postgrey"
    if not os.path.exists(exe):
        pytest.fail("postgrey is not installed: run scripts/install-deps.sh as root")
    d = tempfile.mkdtemp(prefix="kp-postgrey-")
    user = None
    if os.geteuid() == 0:
        for name in ("postgrey", "keypost", "nobody"):
            try:
                pw = pwd.getpwnam(name)
            except KeyError:
                continue
            user = pw
            break
        os.chown(d, user.pw_uid, user.pw_gid)
    port = free_port()
    cmd = [exe, f"--inet=127.0.0.1:{port}", "--delay=2", f"--dbdir={d}",
           f"--pidfile={d}/postgrey.pid", "--max-age=1", "--hostname=mx.keypost.test"]
    if user is not None:
        cmd += [f"--user={user.pw_name}", f"--group={grp.getgrgid(user.pw_gid).gr_name}"]
    log = open(os.path.join(d, "postgrey.log"), "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 15
        while True:
            if proc.poll() is not None:
                raise RuntimeError("postgrey exited: " + open(log.name).read())
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline:
                    raise RuntimeError("postgrey did not listen: " + open(log.name).read())
                time.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(d, ignore_errors=True)


def test_postgrey_greylisting(make_server, postgrey):
    kp = make_server(
        smtpd_recipient_restrictions=f"check_policy_service inet:127.0.0.1:{postgrey}")
    sender = f"grey{os.getpid()}@remote.test"
    code, msg = rcpt_reply(kp, "grey@example.org", sender=sender)
    assert code == 450, (code, msg)
    assert msg.startswith(b"4.") and b"Greylisted" in msg, msg
    first = time.time()
    time.sleep(2.5)
    # Up to a few retries: postgrey's clock has one-second granularity.
    deadline = first + 10
    while True:
        (code, msg), done = send(kp, "grey@example.org", sender=sender,
                                 body="Subject: greylisted\r\n\r\nbody\r\n")
        if code == 250 or time.time() > deadline:
            break
        time.sleep(0.5)
    assert code == 250 and done[0] == 250, (code, msg, done)
    text = open(kp.wait_delivered("grey@example.org")[0]).read()
    head = text.split("\n\n", 1)[0]
    assert re.search(r"(?m)^X-Greylist: delayed \d+ seconds by postgrey", head), head


# ---- 5. PostgreSQL -------------------------------------------------------------

class Postgres:
    def __init__(self, bindir, base):
        self.bindir = bindir
        self.base = base
        self.data = os.path.join(base, "data")
        self.port = free_port()
        self.as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def pg(self, tool, *args, timeout=60):
        return subprocess.run(self.as_pg + [os.path.join(self.bindir, tool), *args],
                              capture_output=True, text=True, timeout=timeout)

    def initdb(self):
        r = self.pg("initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "--no-sync",
                    "-E", "UTF8")
        assert r.returncode == 0, r.stdout + r.stderr

    def start(self):
        r = self.pg("pg_ctl", "-D", self.data, "-l", os.path.join(self.base, "log"), "-w",
                    "-t", "30", "-o", f"-k {self.base} -p {self.port} "
                    "-c listen_addresses=127.0.0.1 -c fsync=off", "start")
        assert r.returncode == 0, r.stdout + r.stderr + self.log()

    def stop(self):
        return self.pg("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "-t", "30", "stop")

    def log(self):
        p = os.path.join(self.base, "log")
        return open(p).read() if os.path.exists(p) else ""

    def sql(self, query):
        r = subprocess.run([os.path.join(self.bindir, "psql"), "-h", "127.0.0.1", "-p",
                            str(self.port), "-U", "postgres", "-d", "postgres", "-qAt",
                            "-v", "ON_ERROR_STOP=1", "-c", query],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        return r.stdout


@pytest.fixture(scope="module")
def postgres():
    initdbs = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not initdbs:
        pytest.fail("PostgreSQL server binaries are not installed: run scripts/install-deps.sh as root")
    if os.geteuid() == 0 and not shutil.which("runuser"):
        pytest.fail("runuser (util-linux) is needed to run PostgreSQL as postgres")
    base = tempfile.mkdtemp(prefix="kp-pg-")
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(base, pw.pw_uid, pw.pw_gid)
    pg = Postgres(os.path.dirname(initdbs[-1]), base)
    try:
        pg.initdb()
        pg.start()
        yield pg
    finally:
        pg.stop()
        shutil.rmtree(base, ignore_errors=True)


def test_pgsql_ccert_access_fleet(make_server, postgres, certs):
    pg = postgres
    pg.sql("DROP TABLE IF EXISTS peers; CREATE TABLE peers (fp text PRIMARY KEY, "
           "action text NOT NULL)")
    peer1, peer2, peer3 = certs["pg-peer1"], certs["pg-peer2"], certs["pg-peer3"]
    pg.sql(f"INSERT INTO peers VALUES ('{peer1['pubkey_fingerprint']}', 'OK'), "
           f"('{peer3['pubkey_fingerprint']}', 'REJECT revoked peer')")
    d = make_tmpdir("kp-pgcf-")
    try:
        cf = os.path.join(d, "peers.cf")
        with open(cf, "w") as f:
            f.write(f"hosts = inet:127.0.0.1:{pg.port}\nuser = postgres\ndbname = postgres\n"
                    "query = SELECT action FROM peers WHERE fp='%s'\n")
        os.chmod(cf, 0o644)
        params = {
            "smtpd_tls_ask_ccert": "yes",
            "mynetworks": "192.0.2.0/24",
            "smtpd_relay_restrictions": f"check_ccert_access pgsql:{cf}, "
                                        "reject_unauth_destination",
        }
        fleet = [make_server(**params), make_server(**params)]
        denied = (554, f"5.7.1 <{FOREIGN}>: Relay access denied".encode())

        def ask(kp, peer):
            return rcpt_reply(kp, FOREIGN, tls=True, cert=peer["pair"] if peer else None)

        for kp in fleet:
            assert ask(kp, peer1) == (250, b"2.1.5 Ok")
            assert ask(kp, peer2) == denied
            assert ask(kp, None) == denied
            code, msg = ask(kp, peer3)
            assert code == 554 and b"revoked peer" in msg, (code, msg)
            assert rcpt_reply(kp, LOCAL, tls=True, cert=peer2["pair"])[0] == 250
        # A new peer, no restart.
        pg.sql(f"INSERT INTO peers VALUES ('{peer2['pubkey_fingerprint']}', 'OK')")
        for kp in fleet:
            assert ask(kp, peer2) == (250, b"2.1.5 Ok")
        r = fleet[0].cli("check", "-c", fleet[0].config, check=False)
        assert r.returncode == 0, r.stdout + r.stderr
        # The database goes away: a temporary failure, never a permit.
        r = pg.stop()
        assert r.returncode == 0, r.stdout + r.stderr
        try:
            for kp in fleet:
                for peer in (peer1, peer2):
                    code, msg = ask(kp, peer)
                    assert code == 451, (code, msg)
                    assert msg.startswith(b"4.3.0 ") and b"Temporary lookup failure" in msg, msg
                assert ask(kp, None) == denied
            fleet[0].wait_log(r"pgsql:")
            r = fleet[0].cli("check", "-c", fleet[0].config, check=False)
            assert r.returncode != 0, r.stdout + r.stderr
            assert f"pgsql:{cf}" in r.stderr and "cannot be read" in r.stderr, r.stderr
        finally:
            pg.start()
        # Back again: lookups recover without a restart.
        for kp in fleet:
            wait_until(lambda: ask(kp, peer1)[0] == 250, 15, "pgsql recovery")
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_pgsql_user_and_domain_expansions(make_server, postgres):
    """%u and %d in the query, with keys SQL-quoted."""
    pg = postgres
    pg.sql("DROP TABLE IF EXISTS senders; CREATE TABLE senders (localpart text, "
           "domain text, action text)")
    pg.sql("INSERT INTO senders VALUES ('spam', 'bad.test', 'REJECT spam sender'), "
           "('o''neil', 'bad.test', 'REJECT quoted sender')")
    d = make_tmpdir("kp-pgcf-")
    try:
        cf = os.path.join(d, "senders.cf")
        with open(cf, "w") as f:
            f.write(f"hosts = 127.0.0.1:{pg.port}\nuser = postgres\ndbname = postgres\n"
                    "query = SELECT action FROM senders WHERE localpart='%u' AND "
                    "domain='%d' AND '%s' <> ''\n")
        kp = make_server(smtpd_sender_restrictions=f"check_sender_access pgsql:{cf}")
        assert rcpt_reply(kp, LOCAL, sender="spam@bad.test") == (
            554, b"5.7.1 <spam@bad.test>: Sender address rejected: spam sender")
        assert rcpt_reply(kp, LOCAL, sender="o'neil@bad.test") == (
            554, b"5.7.1 <o'neil@bad.test>: Sender address rejected: quoted sender")
        for sender in ("other@bad.test", "spam@good.test", "x'or'1'='1@bad.test"):
            code, msg = rcpt_reply(kp, LOCAL, sender=sender)
            assert code == 250, (sender, code, msg)
    finally:
        shutil.rmtree(d, ignore_errors=True)


# ---- 6. lmdb -------------------------------------------------------------------

def test_lmdb_recipient_access_and_reload(make_server):
    d = make_tmpdir("kp-lmdb-")
    try:
        src = os.path.join(d, "recipient_access")
        with open(src, "w") as f:
            f.write("blocked@example.org REJECT no such user\nfine@example.org OK\n")
        r = subprocess.run([KEYPOST, "map", src], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        assert os.path.exists(src + ".lmdb")
        kp = make_server(smtpd_recipient_restrictions=f"check_recipient_access lmdb:{src}")
        assert rcpt_reply(kp, "blocked@example.org") == (
            554, b"5.7.1 <blocked@example.org>: Recipient address rejected: no such user")
        assert rcpt_reply(kp, "BLOCKED@Example.ORG")[0] == 554
        assert rcpt_reply(kp, "fine@example.org")[0] == 250
        assert rcpt_reply(kp, "other@example.org")[0] == 250
        with open(src, "w") as f:
            f.write("blocked@example.org OK\nnewly@example.org REJECT gone away\n")
        r = subprocess.run([KEYPOST, "map", src], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        kp.signal(signal.SIGHUP)
        kp.wait_log(r"reload: configuration, certificates and tables re-read")
        wait_until(lambda: rcpt_reply(kp, "blocked@example.org")[0] == 250, 10,
                   "the rebuilt map")
        assert rcpt_reply(kp, "newly@example.org") == (
            554, b"5.7.1 <newly@example.org>: Recipient address rejected: gone away")
        assert rcpt_reply(kp, "blocked@example.org")[0] == 250
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_lmdb_missing_map_is_a_check_error(make_server):
    d = make_tmpdir("kp-lmdb-")
    try:
        src = os.path.join(d, "never_mapped")
        with open(src, "w") as f:
            f.write("x@example.org REJECT\n")
        kp = make_server(start=False,
                         smtpd_recipient_restrictions=f"check_recipient_access lmdb:{src}")
        kp.write_config()
        r = kp.cli("check", "-c", kp.config, check=False)
        assert r.returncode != 0, r.stdout
        assert src + ".lmdb" in r.stderr and f"keypost map {src}" in r.stderr, r.stderr
    finally:
        shutil.rmtree(d, ignore_errors=True)


# ---- 7. texthash access tables -------------------------------------------------

def test_texthash_access_tables(make_server):
    d = make_tmpdir("kp-access-")
    try:
        def table(name, text):
            p = os.path.join(d, name)
            with open(p, "w") as f:
                f.write(text)
            return "texthash:" + p

        kp = make_server(
            smtpd_client_restrictions="check_client_access " + table(
                "client", "127.0.0.1 OK\n127.0.0 REJECT loopback net blocked\n"),
            smtpd_helo_restrictions="check_helo_access " + table(
                "helo", "bad.example REJECT bad helo\n"),
            smtpd_sender_restrictions="check_sender_access " + table(
                "sender", "<> REJECT no bounces\nspammer@ REJECT no spammers\n"
                          "evil.test REJECT evil domain\nok@evil.test OK\n"),
            smtpd_recipient_restrictions="check_recipient_access " + table(
                "rcpt", "blocked@example.org REJECT no such user\n"))
        # Client: the address itself, then its network prefixes ("127.0.0").
        assert rcpt_reply(kp, LOCAL, source="127.0.0.2") == (
            554, b"5.7.1 <unknown[127.0.0.2]>: Client host rejected: loopback net blocked")
        assert rcpt_reply(kp, LOCAL)[0] == 250
        # Helo: the name and its parent domains, but no mere suffix.
        for helo in ("bad.example", "mx.bad.example", "a.b.bad.example"):
            assert rcpt_reply(kp, LOCAL, helo=helo) == (
                554, f"5.7.1 <{helo}>: Helo command rejected: bad helo".encode()), helo
        assert rcpt_reply(kp, LOCAL, helo="notbad.example")[0] == 250
        # Sender: "<>" for the null sender, user@, parent domains.
        assert rcpt_reply(kp, LOCAL, sender="") == (
            554, b"5.7.1 <>: Sender address rejected: no bounces")
        assert rcpt_reply(kp, LOCAL, sender="spammer@anywhere.test") == (
            554, b"5.7.1 <spammer@anywhere.test>: Sender address rejected: no spammers")
        assert rcpt_reply(kp, LOCAL, sender="x@sub.evil.test") == (
            554, b"5.7.1 <x@sub.evil.test>: Sender address rejected: evil domain")
        assert rcpt_reply(kp, LOCAL, sender="ok@evil.test")[0] == 250
        assert rcpt_reply(kp, LOCAL, sender="x@notevil.test")[0] == 250
        # Recipient, without regard to case.
        assert rcpt_reply(kp, "blocked@example.org") == (
            554, b"5.7.1 <blocked@example.org>: Recipient address rejected: no such user")
        assert rcpt_reply(kp, "Blocked@EXAMPLE.org")[0] == 554
        (code, msg), done = send(kp, LOCAL)
        assert code == 250 and done[0] == 250
        kp.wait_delivered(LOCAL)
    finally:
        shutil.rmtree(d, ignore_errors=True)
