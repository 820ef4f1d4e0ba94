"""keypost sends mail: the relay path end to end.

  * two keypost instances relaying to each other, each trusting the other by
    a public-key pin (the "clique" without a CA);
  * Debian's Postfix as the receiver, admitting keypost by the public-key
    fingerprint of its serverAuth-only client certificate;
  * MX lookups through a private Unbound (explicit MX, implicit MX, MX
    preference walk, null MX, NXDOMAIN, a dead MX);
  * scripted bad peers: 421 and 554 greetings, a stall, garbage, a connection
    lost in DATA, a connection lost after the final 250, mixed RCPT results,
    no SMTPUTF8, a server that requires a client certificate;
  * DSNs (RFC 3464) to local senders, no DSN for a DSN, `keypost queue flush`.

Everything listens on 127.0.0.0/8. Postfix and Unbound run as private
instances from temporary directories (never the system services). The
expectations are Postfix's: where keypost differs, the test fails."""
import email
import email.policy
import hashlib
import os
import re
import shutil
import smtplib
import socket
import ssl
import struct
import subprocess
import threading
import time

import pytest

from kptest import PKI, Keypost, free_port, make_tmpdir
from postfix_peer import Postfix, need, need_root, read, wait_for

SENDER = "sender@example.org"   # local to every sending keypost: DSNs land in its Maildir


# ---- small helpers ---------------------------------------------------------

def message(subject, token, sender=SENDER, to="user@b.test"):
    body = [f"token {token}", ".a line with a leading dot", "", "end"]
    head = [f"From: <{sender}>", f"To: <{to}>", f"Subject: {subject}",
            f"Message-ID: <{token}@relay.keypost.test>"]
    return ("\r\n".join(head) + "\r\n\r\n" + "\r\n".join(body) + "\r\n").encode()


def submit(kp, rcpts, msg, sender=SENDER, mail_options=()):
    """Hand a message to keypost over SMTP from 127.0.0.1; return its queue id."""
    with smtplib.SMTP("127.0.0.1", kp.smtp_port, timeout=30) as s:
        s.ehlo("client.test")
        code, resp = s.mail(sender, list(mail_options))
        assert code == 250, resp
        for r in rcpts:
            code, resp = s.rcpt(r)
            assert code == 250, (r, code, resp)
        code, resp = s.data(msg)
        assert code == 250, resp
    return re.search(rb"queued as (\w+)", resp).group(1).decode()


def result(kp, qid, rcpt, status, timeout=15):
    """keypost's first delivery line for rcpt, which must have this status:
    groups relay, text. Fails as soon as another outcome shows up."""
    m = kp.wait_log(rf"{qid}: to=<{re.escape(rcpt)}>, relay=(\S+), delay=\d+, "
                    rf"status=(\w+) \((.*)\)", timeout)
    assert m.group(2) == status, f"wanted status={status}, got:\n{m.group(0)}\n{kp.log()}"
    return re.search(rf"{qid}: to=<{re.escape(rcpt)}>, relay=(\S+), delay=\d+, "
                     rf"status={status} \((.*)\)", kp.log())


def result_later(kp, qid, rcpt, status, timeout=15):
    """A later delivery line with this status (after deferrals)."""
    return kp.wait_log(rf"{qid}: to=<{re.escape(rcpt)}>, relay=(\S+), delay=\d+, "
                       rf"status={status} \((.*)\)", timeout)


def no_result(kp, qid, status):
    return not re.search(rf"{qid}: to=<[^>]*>, relay=\S+, delay=\d+, status={status} ",
                         kp.log())


def queue_list(kp):
    r = kp.cli("queue", "-c", kp.config, "list")
    return r.stdout


def flush(kp):
    r = kp.cli("queue", "-c", kp.config, "flush")
    assert "flush requested" in r.stdout, r.stdout + r.stderr


def openssl_fps(crt):
    """(certificate sha256, SubjectPublicKeyInfo sha256) in Postfix's form,
    computed without keypost."""
    def hexd(data):
        return ":".join(f"{b:02X}" for b in hashlib.sha256(data).digest())
    der = subprocess.run(["openssl", "x509", "-in", crt, "-outform", "DER"],
                         capture_output=True, check=True).stdout
    pub = subprocess.run(["openssl", "x509", "-in", crt, "-noout", "-pubkey"],
                         capture_output=True, check=True).stdout
    spki = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=pub,
                          capture_output=True, check=True).stdout
    return hexd(der), hexd(spki)


def parse_dsn(path):
    """A DSN in a Maildir file -> (message, per-message fields, {rcpt: fields})."""
    with open(path, "rb") as f:
        msg = email.message_from_binary_file(f, policy=email.policy.compat32)
    assert msg.get_content_type() == "multipart/report", msg.as_string()[:2000]
    assert msg.get_param("report-type") == "delivery-status", msg["Content-Type"]
    parts = msg.get_payload()
    kinds = [p.get_content_type() for p in parts]
    assert kinds[:2] == ["text/plain", "message/delivery-status"], kinds
    assert kinds[2] in ("text/rfc822-headers", "message/rfc822"), kinds
    blocks = parts[1].get_payload()
    per_msg = blocks[0]
    assert per_msg["Reporting-MTA"].startswith("dns;"), per_msg.as_string()
    per_rcpt = {}
    for b in blocks[1:]:
        fr = str(b["Final-Recipient"] or "")
        assert fr and fr.lower().startswith("rfc822;"), b.as_string()
        per_rcpt[fr.split(";", 1)[1].strip()] = b
    return msg, per_msg, per_rcpt


def check_dsn(kp, rcpt, status_re, diag_re, subject, count=1, sender=SENDER):
    """The sender's count-th DSN: one failed recipient rcpt; returns its text."""
    files = kp.wait_delivered(sender, count=count, timeout=15)
    path = files[count - 1]
    msg, _, per_rcpt = parse_dsn(path)
    assert list(per_rcpt) == [rcpt], per_rcpt.keys()
    b = per_rcpt[rcpt]
    assert b["Action"] == "failed", b.as_string()
    assert re.fullmatch(status_re, b["Status"]), b.as_string()
    assert re.search(diag_re, b["Diagnostic-Code"] or ""), b.as_string()
    text = read(path)
    assert "Return-Path: <>" in text, text[:500]
    assert f"Subject: {subject}" in text  # the returned headers
    human = msg.get_payload()[0].get_payload(decode=True).decode()
    assert re.search(re.sub(r"^\^smtp; ", "", diag_re), human), human
    return text


# ---- certificates ----------------------------------------------------------

class Cert:
    def __init__(self, pki, name, **kw):
        self.name = name
        self.crt, self.key = pki.leaf(name, **kw)
        self.cert_fp, self.pubkey_fp = openssl_fps(self.crt)


@pytest.fixture(scope="module")
def certs():
    """A "public CA" that issues serverAuth-only leaves, as public CAs do;
    every relay certificate here is one of those, so only pins can admit a
    client."""
    d = make_tmpdir("kp-relay-pki-")
    p = PKI(d)
    p.ca("relay-public-ca")
    c = {"_pki": p, "_ca": p.path("relay-public-ca", "crt")}
    for name in ("a.relay.test", "b.relay.test", "kp-pinned.relay.test",
                 "kp-unpinned.relay.test", "postfix.p.test", "peer.relay.test"):
        c[name] = Cert(p, name, issuer="relay-public-ca", eku="serverAuth")
    # For the server that verifies client certificates at the TLS level.
    c["client.relay.test"] = Cert(p, "client.relay.test", issuer="relay-public-ca",
                                  eku="serverAuth,clientAuth")
    for f in os.listdir(d):
        os.chmod(os.path.join(d, f), 0o644)  # keypost reads keys after dropping root
    yield c
    shutil.rmtree(d, ignore_errors=True)


# ---- a scripted SMTP peer --------------------------------------------------

class Peer:
    """A loopback SMTP server that misbehaves on purpose. mode is read at
    each connection (a test "fixes" the server by changing it):
      ok                normal ESMTP (PIPELINING, 8BITMIME, ...)
      greet421/554      that greeting, then 503 to everything but QUIT
      stall             greets, then never answers
      garbage-greeting  an SSH banner instead of a greeting
      garbage-reply     greets, then answers EHLO with non-SMTP text
      helo550           greets, then rejects EHLO and HELO with 550
      drop-in-data      354, reads one line of the message, hangs up
      close-after-dot   250 for the message, then hangs up before QUIT
    """

    def __init__(self, mode="ok", host="127.0.0.1", port=0, smtputf8=False, rcpt_reply=None,
                 tls=None):
        self.mode = mode
        self.smtputf8 = smtputf8
        self.rcpt_reply = rcpt_reply or (lambda addr: "250 2.1.5 Ok")
        self.tls = tls
        self.messages = []      # {"sender", "rcpts", "data", "tls"}
        self.sessions = []      # the command lines of each connection
        self.tls_errors = []
        self.lock = threading.Lock()
        self.conns = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.conns.append(conn)
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def stop(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes accept()
        except OSError:
            pass
        self.sock.close()
        with self.lock:
            for c in self.conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                c.close()

    def commands(self):
        with self.lock:
            return [c for s in self.sessions for c in s]

    def count(self, token):
        with self.lock:
            return sum(token.encode() in m["data"] for m in self.messages)

    def _session(self, conn):
        conn.settimeout(60)
        lines = []
        with self.lock:
            self.sessions.append(lines)
        mode = self.mode
        rfile = conn.makefile("rb")

        def send(*reply):
            out = "".join(f"{r[:3]}-{r[4:]}\r\n" for r in reply[:-1]) + reply[-1] + "\r\n"
            conn.sendall(out.encode())

        def command():
            line = rfile.readline(4096)
            if not line:
                raise EOFError
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            lines.append(text)
            return text

        try:
            if mode in ("greet421", "greet554"):
                send("421 4.3.2 peer.relay.test Service not available, closing channel"
                     if mode == "greet421" else "554 5.7.1 peer.relay.test No SMTP service here")
                if mode == "greet421":
                    return
                while command().upper() != "QUIT":
                    send("503 5.5.1 Error: no SMTP service here")
                send("221 2.0.0 Bye")
                return
            if mode == "garbage-greeting":
                send("SSH-2.0-OpenSSH_9.2p1 Debian-2")
                while command():
                    pass
            send("220 peer.relay.test ESMTP scripted")
            if mode == "stall":
                while command():
                    pass
            sender, rcpts, in_tls = None, [], False
            while True:
                cmd = command()
                verb = cmd.split(" ", 1)[0].upper()
                if mode == "garbage-reply":
                    send("Hello there! This is not SMTP, is it?")
                    continue
                if mode == "helo550" and verb in ("EHLO", "HELO"):
                    send("550 5.7.1 peer.relay.test Access denied for your network")
                    continue
                if verb == "EHLO":
                    ext = ["250 peer.relay.test", "250 PIPELINING", "250 SIZE 10240000",
                           "250 8BITMIME", "250 ENHANCEDSTATUSCODES"]
                    if self.smtputf8:
                        ext.append("250 SMTPUTF8")
                    if self.tls and not in_tls:
                        ext.append("250 STARTTLS")
                    send(*ext)
                elif verb == "HELO":
                    send("250 peer.relay.test")
                elif verb == "STARTTLS" and self.tls and not in_tls:
                    send("220 2.0.0 Ready to start TLS")
                    try:
                        conn = self.tls.wrap_socket(conn, server_side=True)
                    except (ssl.SSLError, OSError) as e:
                        self.tls_errors.append(str(e))
                        return
                    rfile = conn.makefile("rb")
                    in_tls = True
                elif verb == "MAIL":
                    sender, rcpts = cmd[10:].split(">", 1)[0].lstrip("<"), []
                    send("250 2.1.0 Ok")
                elif verb == "RCPT":
                    addr = cmd[8:].split(">", 1)[0].lstrip("<")
                    reply = self.rcpt_reply(addr)
                    if reply.startswith("2"):
                        rcpts.append(addr)
                    send(reply)
                elif verb == "DATA":
                    if not rcpts:
                        send("554 5.5.1 Error: no valid recipients")
                        continue
                    send("354 End data with <CR><LF>.<CR><LF>")
                    if mode == "drop-in-data":
                        rfile.readline()
                        conn.shutdown(socket.SHUT_RDWR)
                        return
                    data = b""
                    while True:
                        line = rfile.readline(1 << 20)
                        if not line:
                            raise EOFError
                        if line == b".\r\n":
                            break
                        data += line[1:] if line.startswith(b".") else line
                    with self.lock:
                        self.messages.append({"sender": sender, "rcpts": rcpts, "data": data,
                                              "tls": in_tls})
                        n = len(self.messages)
                    send(f"250 2.0.0 Ok: queued as PEER{n}")
                    if mode == "close-after-dot":
                        conn.shutdown(socket.SHUT_RDWR)
                        return
                    sender, rcpts = None, []
                elif verb == "RSET":
                    sender, rcpts = None, []
                    send("250 2.0.0 Ok")
                elif verb == "NOOP":
                    send("250 2.0.0 Ok")
                elif verb == "QUIT":
                    send("221 2.0.0 Bye")
                    return
                else:
                    send("502 5.5.2 Error: command not recognized")
        except (EOFError, OSError, ValueError):
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass


@pytest.fixture
def make_peer():
    peers = []

    def factory(**kw):
        p = Peer(**kw)
        peers.append(p)
        return p

    yield factory
    for p in peers:
        p.stop()


def relay_to(peer, **params):
    """keypost parameters that send everything non-local to peer."""
    params.setdefault("relayhost", f"[127.0.0.1]:{peer.port}")
    return params


# ==== 1. the keypost clique: A -> B, mutual key pins ========================

def start_b(make_server, certs, pins):
    """B: serverAuth-only certificate, pins A's key; b.test is local and
    c.test is a relay-only destination (only a pinned client may use it)."""
    b = make_server(start=False, myhostname="b.relay.test", mydestination="b.test",
                    smtpd_tls_cert_file=certs["b.relay.test"].crt,
                    smtpd_tls_key_file=certs["b.relay.test"].key,
                    smtpd_tls_ask_ccert="yes", mynetworks="192.0.2.0/24",
                    smtpd_relay_restrictions="permit_tls_clientcerts, "
                                             "reject_unauth_destination")
    table = os.path.join(b.base, "relay_clientcerts")
    with open(table, "w") as f:
        for fp, name in pins:
            f.write(f"{fp} {name}\n")
    os.chmod(table, 0o644)
    b.params["relay_clientcerts"] = f"texthash:{table}"
    b.params["transport_maps"] = f"inline:{{ c.test=maildir:{b.mail} }}"
    return b.start()


def start_a(make_server, certs, b, server_fp, **extra):
    """A: relayhost = B, its own serverAuth-only certificate as client
    certificate, and B pinned by the fingerprint policy."""
    return make_server(myhostname="a.relay.test", relayhost=f"[127.0.0.1]:{b.smtp_port}",
                       smtp_tls_cert_file=certs["a.relay.test"].crt,
                       smtp_tls_key_file=certs["a.relay.test"].key,
                       smtp_tls_policy_maps=f"inline:{{ {{ [127.0.0.1]:{b.smtp_port} = "
                                            f"fingerprint match={server_fp} }} }}",
                       **extra)


def test_clique_relay_with_mutual_key_pins(make_server, certs):
    a_cert, b_cert = certs["a.relay.test"], certs["b.relay.test"]
    b = start_b(make_server, certs, [(a_cert.pubkey_fp, "a.relay.test")])
    a = start_a(make_server, certs, b, b_cert.pubkey_fp)
    msg = message("clique", "tok-clique", to="user@b.test")
    qid = submit(a, ["user@b.test", "relay@c.test"], msg)

    port = b.smtp_port
    tls = a.wait_log(rf"Verified TLS connection established to 127\.0\.0\.1\[127\.0\.0\.1\]:"
                     rf"{port}: (TLSv1\.[23]) with cipher \S+ \(\d+/\d+ bits\)")
    sent = {}
    for rcpt in ("user@b.test", "relay@c.test"):
        m = result(a, qid, rcpt, "sent")
        assert m.group(1) == f"127.0.0.1[127.0.0.1]:{port}", m.group(0)
        sent[rcpt] = re.fullmatch(r"250 2\.0\.0 Ok: queued as (\w+)", m.group(2))
        assert sent[rcpt], m.group(0)
    bqid = sent["user@b.test"].group(1)
    assert sent["relay@c.test"].group(1) == bqid  # one transaction, two recipients
    a.wait_log(qid + r": removed")

    # B: the client certificate was trusted by A's public-key pin (the
    # serverAuth-only chain is not trusted: B has no CA at all).
    c = b.wait_log(r"ccert: status=trusted via=pubkey-pin chain=\w+ "
                   r"subject_cn=\"a\.relay\.test\" issuer_cn=\"relay-public-ca\" "
                   r"cert_fingerprint=(\S+) pubkey_fingerprint=(\S+)")
    assert c.group(2) == a_cert.pubkey_fp and c.group(1) == a_cert.cert_fp
    b.wait_log(rf"{bqid}: from=<{re.escape(SENDER)}>, size=\d+, nrcpt=2")
    for rcpt in ("user@b.test", "relay@c.test"):
        files = b.wait_delivered(rcpt)
        assert len(files) == 1
        stored = read(files[0])
        assert "tok-clique" in stored and "Subject: clique" in stored
        assert f"Return-Path: <{SENDER}>" in stored
        assert "by b.relay.test" in stored and "by a.relay.test" in stored
        assert ".a line with a leading dot" in stored
    assert "Relay access denied" not in b.log()
    assert tls.group(1) in b.log()


def test_clique_wrong_server_fingerprint_defers(make_server, certs):
    a_cert = certs["a.relay.test"]
    b = start_b(make_server, certs, [(a_cert.pubkey_fp, "a.relay.test")])
    wrong = certs["kp-unpinned.relay.test"].pubkey_fp  # a real key, but not B's
    a = start_a(make_server, certs, b, wrong)
    qid = submit(a, ["user@b.test"], message("wrong pin", "tok-wrongpin"))
    m = result(a, qid, "user@b.test", "deferred")
    assert "TLS policy fingerprint not met" in m.group(2), m.group(0)
    a.wait_log(qid + r": deferred: 1 recipients left, next attempt in \d+s")
    assert re.search(r"Untrusted TLS connection established to 127\.0\.0\.1\[127\.0\.0\.1\]:"
                     rf"{b.smtp_port}", a.log())
    # Still deferred at the next attempts, never bounced.
    a.wait_log(qid + r": deferred: 1 recipients left, next attempt in \d+s \(attempt 2\)")
    assert no_result(a, qid, "bounced") and no_result(a, qid, "sent")
    listing = queue_list(a)
    assert re.search(rf"(?m)^{qid} .*<{re.escape(SENDER)}>$", listing), listing
    assert "    user@b.test\n" in listing, listing
    # Nothing reached B: no transaction, no Maildir.
    assert not re.search(r": from=<", b.log()), b.log()
    assert b.delivered("user@b.test") == []


def test_clique_unpinned_client_may_not_relay(make_server, certs):
    """B pins another key, not A's: B still takes mail for its own domain
    but refuses to relay for A; A bounces that recipient to its sender."""
    other = certs["kp-unpinned.relay.test"]
    b = start_b(make_server, certs, [(other.pubkey_fp, "someone else")])
    a = start_a(make_server, certs, b, certs["b.relay.test"].pubkey_fp)
    subject = "not pinned at b"
    qid = submit(a, ["user@b.test", "relay@c.test"], message(subject, "tok-unpinned-a"))
    ok = result(a, qid, "user@b.test", "sent")
    assert ok.group(2).startswith("250 2.0.0 Ok: queued as "), ok.group(0)
    bad = result(a, qid, "relay@c.test", "bounced")
    assert re.search(r"554 5\.7\.1 <relay@c\.test>: Relay access denied", bad.group(2)), \
        bad.group(0)
    b.wait_log(r"ccert: status=untrusted via=none .*subject_cn=\"a\.relay\.test\"")
    check_dsn(a, "relay@c.test", r"5\.7\.1", r"^smtp; 554 5\.7\.1 <relay@c\.test>: Relay "
              r"access denied", subject)
    b.wait_delivered("user@b.test")
    assert b.delivered("relay@c.test") == []


# ==== 2. Debian's Postfix as the receiver ===================================

def postfix_receiver(cert, pinned):
    """`postfix -c DIR start`: an smtpd on 127.0.0.1:PORT that accepts mail
    for p.test only from clients whose certificate's public key is in
    ccert_access, and delivers it with virtual(8) into a Maildir."""
    pf = Postfix(smtpd_port=free_port(), mailboxes=["user@p.test"],
                 myhostname="mx.p.test", mydomain="p.test",
                 # Loopback is NOT trusted: only the certificate pin admits keypost.
                 mynetworks="192.0.2.0/24",
                 smtpd_tls_cert_file=cert.crt,
                 smtpd_tls_key_file=cert.key,
                 smtpd_tls_security_level="may",
                 smtpd_tls_ask_ccert="yes",
                 smtpd_tls_fingerprint_digest="sha256",
                 smtpd_tls_loglevel="2",  # 2 logs both fingerprints of the client cert
                 smtpd_tls_received_header="yes")
    access = pf.table("ccert_access", [f"{fp} OK" for fp in pinned])
    pf.main["smtpd_recipient_restrictions"] = (
        f"check_ccert_access {{ texthash:{access}, "
        f"{{ search_order = pubkey_fingerprint }} }}, reject")
    return pf


@pytest.fixture(scope="module")
def postfix_rx(certs):
    pf = postfix_receiver(certs["postfix.p.test"], [certs["kp-pinned.relay.test"].pubkey_fp])
    try:
        yield pf.start()
    finally:
        pf.stop()
        shutil.rmtree(pf.dir, ignore_errors=True)


def to_postfix(pf, cert):
    return {"transport_maps": f"inline:{{ p.test=smtp:[127.0.0.1]:{pf.port} }}",
            "smtp_tls_security_level": "encrypt",
            "smtp_tls_cert_file": cert.crt, "smtp_tls_key_file": cert.key}


def test_postfix_accepts_keypost_by_pubkey_pin(make_server, certs, postfix_rx):
    pf, cert = postfix_rx, certs["kp-pinned.relay.test"]
    kp = make_server(**to_postfix(pf, cert))
    qid = submit(kp, ["user@p.test"], message("to postfix", "tok-postfix-ok", to="user@p.test"))
    m = result(kp, qid, "user@p.test", "sent", timeout=20)
    assert m.group(1) == f"127.0.0.1[127.0.0.1]:{pf.port}", m.group(0)
    pqid = re.fullmatch(r"250 2\.0\.0 Ok: queued as (\w+)", m.group(2)).group(1)
    kp.wait_log(rf"Untrusted TLS connection established to 127\.0\.0\.1\[127\.0\.0\.1\]:"
                rf"{pf.port}: TLSv1\.[23] with cipher")
    # Postfix saw a client certificate (not verified: no CA) and let it in.
    pf.wait_log(r"Untrusted TLS connection established from localhost\[127\.0\.0\.1\]: "
                r"TLSv1\.[23] with cipher .*client-signature", kp=kp)
    fps = pf.wait_log(r"localhost\[127\.0\.0\.1\]: subject_CN=kp-pinned\.relay\.test, "
                      r"issuer=relay-public-ca, fingerprint=(\S+), pkey_fingerprint=(\S+)")
    assert fps.groups() == (cert.cert_fp, cert.pubkey_fp)  # only the latter is in the table
    pf.wait_log(rf"{pqid}: to=<user@p\.test>, relay=virtual, .*status=sent \(delivered to "
                r"maildir\)", kp=kp)
    files = wait_for(pf.delivered, "nothing in Postfix's mailbox")
    assert len(files) == 1
    stored = read(files[0])
    assert "tok-postfix-ok" in stored and f"Return-Path: <{SENDER}>" in stored
    # Postfix's Received header names the client certificate: admitted by
    # its key although Postfix cannot verify it.
    assert re.search(r'\(Client CN "kp-pinned\.relay\.test", Issuer "relay-public-ca" '
                     r'\(not verified\)\)', stored), stored[:1500]
    assert not re.search(r"NOQUEUE: reject", pf.log())


def test_postfix_rejects_unpinned_keypost_and_sender_gets_dsn(make_server, certs, postfix_rx):
    pf, cert = postfix_rx, certs["kp-unpinned.relay.test"]
    kp = make_server(**to_postfix(pf, cert))
    before = len(pf.delivered())
    subject = "to postfix unpinned"
    qid = submit(kp, ["user@p.test"], message(subject, "tok-postfix-no", to="user@p.test"))
    m = result(kp, qid, "user@p.test", "bounced", timeout=20)
    assert re.search(r"554 5\.7\.1 <user@p\.test>: Recipient address rejected: Access denied",
                     m.group(2)), m.group(0)
    pf.wait_log(r"localhost\[127\.0\.0\.1\]: subject_CN=kp-unpinned\.relay\.test, issuer="
                rf"relay-public-ca, fingerprint=\S+, pkey_fingerprint={cert.pubkey_fp}")
    pf.wait_log(r"NOQUEUE: reject: RCPT from localhost\[127\.0\.0\.1\]: 554 5\.7\.1 "
                r"<user@p\.test>: Recipient address rejected: Access denied; "
                rf"from=<{re.escape(SENDER)}> to=<user@p\.test>", kp=kp)
    dsn = kp.wait_log(qid + r": sender non-delivery notification: (\w+)").group(1)
    kp.wait_log(dsn + rf": to=<{re.escape(SENDER)}>, relay=local, .*status=sent")
    check_dsn(kp, "user@p.test", r"5\.7\.1",
              r"^smtp; 554 5\.7\.1 <user@p\.test>: Recipient address rejected: Access denied",
              subject)
    kp.wait_log(qid + r": removed")
    assert len(pf.delivered()) == before


# ==== 3. MX lookups through a private Unbound ===============================
#
# The zone lives under kp.example: libunbound (keypost's resolver library)
# answers NXDOMAIN for the RFC 6761 names test., invalid., onion. and
# localhost. by itself, without asking the forwarder. The .test records
# below are for the test that says keypost must ask dns_resolver anyway.

D = "kp.example"
ZONE_LOCAL = [f"{D}.", "test."]
ZONE = [
    f"mx.{D}. MX 10 mail1.mx.{D}.",
    f"mail1.mx.{D}. A 127.0.0.2",
    f"implicit.{D}. A 127.0.0.2",           # no MX: the A record is the implicit MX
    f"walk.{D}. MX 10 dead.mx.{D}.",        # the best MX is dead, the next one works
    f"walk.{D}. MX 20 mail1.mx.{D}.",
    f"deadmx.{D}. MX 10 dead.mx.{D}.",
    f"dead.mx.{D}. A 127.0.0.3",            # nothing listens there
    f"nullmx.{D}. MX 0 .",                  # RFC 7505 null MX ...
    f"nullmx.{D}. A 127.0.0.2",             # ... which wins over the implicit MX
    f"relay.{D}. MX 10 mail1.mx.{D}.",      # relayhost = relay.kp.example (MX lookup)
    "mx.test. MX 10 mail1.mx.test.",
    "mail1.mx.test. A 127.0.0.2",
]


def dns_query(port, name, qtype=15, timeout=1.0):
    """A minimal DNS client: (rcode, answer count)."""
    q = struct.pack(">HHHHHH", 0x4b50, 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".")) + b"\0"
    q += struct.pack(">HH", qtype, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(q, ("127.0.0.1", port))
        data, _ = s.recvfrom(4096)
    _, flags, _, ancount, _, _ = struct.unpack(">HHHHHH", data[:12])
    return flags & 0xF, ancount


class Unbound:
    """`unbound -d -c FILE`: a private server on 127.0.0.1:PORT that answers
    only from local-data (module-config iterator, but nothing is recursed)."""

    def __init__(self):
        self.bin = need("unbound")
        self.dir = make_tmpdir("kp-unbound-")
        self.port = free_port()
        self.conf = os.path.join(self.dir, "unbound.conf")
        self.logfile = os.path.join(self.dir, "unbound.log")
        zones = "".join(f'    local-zone: "{z}" static\n' for z in ZONE_LOCAL)
        data = "".join(f'    local-data: "{rr}"\n' for rr in ZONE)
        with open(self.conf, "w") as f:
            f.write(f"""\
server:
    interface: 127.0.0.1
    port: {self.port}
    do-ip6: no
    do-daemonize: no
    chroot: ""
    username: ""
    directory: "{self.dir}"
    pidfile: "{self.dir}/unbound.pid"
    logfile: "{self.logfile}"
    use-syslog: no
    verbosity: 1
    num-threads: 1
    access-control: 127.0.0.0/8 allow
    module-config: "iterator"
{zones}{data}
remote-control:
    control-enable: no
""")
        self.proc = None

    def start(self):
        with open(os.path.join(self.dir, "stderr"), "w") as err:
            self.proc = subprocess.Popen([self.bin, "-d", "-c", self.conf],
                                         stdout=subprocess.DEVNULL, stderr=err,
                                         start_new_session=True)

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError("unbound exited: " + self.output())
            try:
                return dns_query(self.port, f"mx.{D}") == (0, 1)
            except OSError:
                return False
        wait_for(ready, lambda: "unbound does not answer: " + self.output())
        return self

    def output(self):
        return read(os.path.join(self.dir, "stderr")) + read(self.logfile)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def unbound():
    u = Unbound()
    try:
        yield u.start()
    finally:
        u.stop()
        shutil.rmtree(u.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def mx_receiver(pki):
    """keypost on 127.0.0.2:25 (the address of mail1.mx.kp.example), plus a
    loopback port for the harness."""
    need_root("listening on port 25")
    try:
        socket.create_connection(("127.0.0.2", 25), timeout=1).close()
        pytest.fail("something already listens on 127.0.0.2:25", pytrace=False)
    except OSError:
        pass
    base = make_tmpdir("kp-mxrx-")
    kp = Keypost(base, myhostname=f"mail1.mx.{D}",
                 mydestination=", ".join(f"{d}.{D}" for d in
                                         ("mx", "implicit", "walk", "nullmx", "deadmx"))
                 + ", mx.test",
                 smtpd_tls_cert_file=pki.path("mx.keypost.test", "crt"),
                 smtpd_tls_key_file=pki.path("mx.keypost.test", "key"),
                 smtpd_tls_security_level="may")
    kp.params["smtpd_listen"] = f"127.0.0.1:{kp.smtp_port}, 127.0.0.2:25"
    kp.start()
    try:
        yield kp
    finally:
        rc = kp.stop()
        kp.check_sanitizers()
        shutil.rmtree(base, ignore_errors=True)
        assert rc == 0, kp.output()


# The zone above is unsigned and sits where the real root proves nothing
# exists: validated against the root key (dns_trust_anchor_file's default),
# every answer would be bogus and deferred. These tests are about routing,
# so keypost does not validate here; test_dane.py tests validation.
NO_DNSSEC = {"dns_trust_anchor_file": ""}


def mx_sender(make_server, unbound):
    return make_server(dns_resolver=f"127.0.0.1@{unbound.port}", smtp_connect_timeout="5s",
                       **NO_DNSSEC)


def test_dns_resolver_sanity(unbound):
    """The zone answers as the keypost tests below assume."""
    assert dns_query(unbound.port, f"mx.{D}") == (0, 1)
    assert dns_query(unbound.port, f"implicit.{D}") == (0, 0)       # NODATA
    assert dns_query(unbound.port, f"implicit.{D}", 1) == (0, 1)
    assert dns_query(unbound.port, f"nullmx.{D}") == (0, 1)
    assert dns_query(unbound.port, f"nosuch.{D}") == (3, 0)         # NXDOMAIN
    assert dns_query(unbound.port, "mx.test") == (0, 1)


def test_mx_delivery(make_server, unbound, mx_receiver):
    kp = mx_sender(make_server, unbound)
    cases = {f"user@mx.{D}": f"mail1.mx.{D}[127.0.0.2]:25",
             f"user@implicit.{D}": f"implicit.{D}[127.0.0.2]:25",
             f"user@walk.{D}": f"mail1.mx.{D}[127.0.0.2]:25"}
    qids = {}
    for rcpt in cases:
        qids[rcpt] = submit(kp, [rcpt], message(f"mx {rcpt}", f"tok-mx-{rcpt}", to=rcpt))
    for rcpt, relay in cases.items():
        m = result(kp, qids[rcpt], rcpt, "sent", timeout=20)
        assert m.group(1) == relay, m.group(0)
        assert re.fullmatch(r"250 2\.0\.0 Ok: queued as \w+", m.group(2)), m.group(0)
        files = mx_receiver.wait_delivered(rcpt)
        assert [f for f in files if f"tok-mx-{rcpt}" in read(f)]
        kp.wait_log(qids[rcpt] + r": removed")
    # walk: the preferred MX refused the connection; the next one took it in
    # the same attempt.


def test_mx_failures(make_server, unbound, mx_receiver):
    kp = mx_sender(make_server, unbound)
    rcpt = f"user@nullmx.{D}"
    null = submit(kp, [rcpt], message("null mx", "tok-nullmx", to=rcpt))
    m = result(kp, null, rcpt, "bounced", timeout=20)
    assert re.search(r"5\.1\.[02]", m.group(2)) and f"nullmx.{D}" in m.group(2), m.group(0)
    assert re.search(r"does not accept mail", m.group(2)), m.group(0)
    check_dsn(kp, rcpt, r"5\.1\.[02]", r"does not accept mail", "null mx", count=1)
    assert mx_receiver.delivered(rcpt) == []  # the null MX beats the A record

    rcpt = f"user@nosuch.{D}"
    nx = submit(kp, [rcpt], message("nxdomain", "tok-nx", to=rcpt))
    m = result(kp, nx, rcpt, "bounced", timeout=20)
    assert re.search(r"5\.1\.2 .*Host or domain name not found", m.group(2)), m.group(0)
    check_dsn(kp, rcpt, r"5\.1\.2", r"Host or domain name not found", "nxdomain", count=2)

    rcpt = f"user@deadmx.{D}"
    dead = submit(kp, [rcpt], message("dead mx", "tok-dead", to=rcpt))
    m = result(kp, dead, rcpt, "deferred", timeout=20)
    assert re.search(r"connect to dead\.mx\.kp\.example\[127\.0\.0\.3\]:25: .*Connection "
                     r"refused", m.group(2)), m.group(0)
    kp.wait_log(dead + r": deferred: 1 recipients left")
    assert no_result(kp, dead, "bounced")
    assert mx_receiver.delivered(rcpt) == []
    assert dead in queue_list(kp)


def test_relayhost_without_brackets_uses_mx(make_server, unbound, mx_receiver):
    """relayhost = name (no brackets): Postfix looks up the MX of name."""
    kp = make_server(start=False, dns_resolver=f"127.0.0.1@{unbound.port}", **NO_DNSSEC,
                     relayhost=f"relay.{D}")
    kp.write_config()
    r = kp.cli("check", "-c", kp.config, check=False)
    assert r.returncode == 0, f"keypost refuses relayhost = relay.{D}:\n{r.stderr}"
    kp.start()
    rcpt = f"user@mx.{D}"
    qid = submit(kp, [rcpt], message("via relayhost mx", "tok-relaymx", to=rcpt))
    m = result(kp, qid, rcpt, "sent", timeout=20)
    assert m.group(1) == f"mail1.mx.{D}[127.0.0.2]:25", m.group(0)
    assert [f for f in mx_receiver.wait_delivered(rcpt) if "tok-relaymx" in read(f)]


def test_dns_resolver_answers_for_test_tld(make_server, unbound, mx_receiver):
    """dns_resolver forwards every query, like Postfix's resolver does with
    its nameserver: a name under test. (RFC 6761) that the configured
    server answers is not NXDOMAIN."""
    kp = mx_sender(make_server, unbound)
    qid = submit(kp, ["user@mx.test"], message("mx under test.", "tok-mxtest", to="user@mx.test"))
    m = result(kp, qid, "user@mx.test", "sent", timeout=20)
    assert m.group(1) == "mail1.mx.test[127.0.0.2]:25", m.group(0)
    mx_receiver.wait_delivered("user@mx.test")


# ==== 4. bad peers ==========================================================

@pytest.mark.parametrize("mode, status, text", [
    ("greet421", "deferred", r"421 4\.3\.2 peer\.relay\.test Service not available"),
    ("greet554", "bounced", r"554 5\.7\.1 peer\.relay\.test No SMTP service here"),
    ("garbage-greeting", "deferred", r"SSH-2\.0|malformed|greeting"),
    ("garbage-reply", "deferred", r"Hello there|malformed"),
    ("helo550", "bounced", r"550 5\.7\.1 peer\.relay\.test Access denied for your network"),
])
def test_bad_greetings(make_server, make_peer, mode, status, text):
    peer = make_peer(mode=mode)
    kp = make_server(**relay_to(peer))
    subject = f"peer {mode}"
    qid = submit(kp, ["user@far.test"], message(subject, f"tok-{mode}", to="user@far.test"))
    m = result(kp, qid, "user@far.test", status)
    assert re.search(text, m.group(2)), m.group(0)
    if status == "bounced":
        check_dsn(kp, "user@far.test", r"5\.7\.1", text, subject)
        kp.wait_log(qid + r": removed")
        assert len(peer.sessions) == 1  # a 5xx from the only host is final
    else:
        kp.wait_log(qid + r": deferred: 1 recipients left")
        assert no_result(kp, qid, "bounced")
        assert qid in queue_list(kp)
    assert not any(c.upper().startswith("MAIL") for c in peer.commands())


def test_stalled_server_times_out(make_server, make_peer):
    peer = make_peer(mode="stall")
    kp = make_server(**relay_to(peer, smtp_helo_timeout="2s"))
    t0 = time.time()
    qid = submit(kp, ["user@far.test"], message("stall", "tok-stall", to="user@far.test"))
    m = result(kp, qid, "user@far.test", "deferred", timeout=15)
    assert time.time() - t0 < 12, "the deferral took far longer than smtp_helo_timeout"
    assert re.search(r"timeout|timed out|lost connection", m.group(2), re.I), m.group(0)
    kp.wait_log(qid + r": deferred: 1 recipients left")
    assert qid in queue_list(kp)


def test_connection_lost_in_data_is_retried_and_delivered_once(make_server, make_peer):
    peer = make_peer(mode="drop-in-data")
    kp = make_server(**relay_to(peer))
    qid = submit(kp, ["user@far.test"], message("lost in data", "tok-lost", to="user@far.test"))
    m = result(kp, qid, "user@far.test", "deferred")
    assert re.search(r"lost connection", m.group(2)), m.group(0)
    assert peer.count("tok-lost") == 0
    peer.mode = "ok"  # the server is fixed
    m = result_later(kp, qid, "user@far.test", "sent", timeout=15)
    assert re.fullmatch(r"250 2\.0\.0 Ok: queued as PEER1", m.group(2)), m.group(0)
    kp.wait_log(qid + r": removed")
    flush(kp)
    time.sleep(2.5)
    assert peer.count("tok-lost") == 1
    assert len(peer.messages) == 1 and peer.messages[0]["rcpts"] == ["user@far.test"]


def test_connection_lost_after_final_250_is_not_resent(make_server, make_peer):
    peer = make_peer(mode="close-after-dot")
    kp = make_server(**relay_to(peer))
    qid = submit(kp, ["user@far.test"], message("lost after dot", "tok-dot", to="user@far.test"))
    m = result(kp, qid, "user@far.test", "sent")
    assert m.group(2) == "250 2.0.0 Ok: queued as PEER1", m.group(0)
    kp.wait_log(qid + r": removed")
    # Beyond the backoff times, and after a flush: still exactly one copy.
    flush(kp)
    time.sleep(3)
    assert peer.count("tok-dot") == 1, peer.messages
    assert no_result(kp, qid, "deferred")
    assert qid not in queue_list(kp)


def test_mixed_rcpt_results(make_server, make_peer):
    def rcpt_reply(addr):
        if addr.startswith("gone@"):
            return f"550 5.1.1 <{addr}>: Recipient address rejected: User unknown"
        return "250 2.1.5 Ok"
    peer = make_peer(rcpt_reply=rcpt_reply)
    kp = make_server(**relay_to(peer))
    subject = "mixed rcpts"
    qid = submit(kp, ["gone@far.test", "here@far.test"],
                 message(subject, "tok-mixed", to="here@far.test"))
    bad = result(kp, qid, "gone@far.test", "bounced")
    assert re.search(r"550 5\.1\.1 <gone@far\.test>: Recipient address rejected: User unknown",
                     bad.group(2)), bad.group(0)
    good = result(kp, qid, "here@far.test", "sent")
    assert good.group(2) == "250 2.0.0 Ok: queued as PEER1", good.group(0)
    check_dsn(kp, "gone@far.test", r"5\.1\.1",
              r"^smtp; 550 5\.1\.1 <gone@far\.test>: Recipient address rejected: User unknown",
              subject)
    kp.wait_log(qid + r": removed")
    assert len(peer.messages) == 1
    assert peer.messages[0]["rcpts"] == ["here@far.test"]
    assert peer.count("tok-mixed") == 1


def test_smtputf8_required_but_not_offered(make_server, make_peer):
    peer = make_peer(smtputf8=False)
    kp = make_server(**relay_to(peer))
    rcpt = "j\u00f6rg@far.test"
    msg = ("From: <sender@example.org>\r\nTo: <" + rcpt + ">\r\nSubject: utf8\r\n\r\n"
           "tok-utf8\r\n").encode()
    qid = submit(kp, [rcpt], msg, mail_options=["SMTPUTF8"])
    m = kp.wait_log(rf"{qid}: to=<[^>]*>, relay=\S+, delay=\d+, status=bounced \((.*)\)")
    assert "5.6.7" in m.group(1) and "SMTPUTF8" in m.group(1), m.group(0)
    files = kp.wait_delivered(SENDER)
    _, _, per_rcpt = parse_dsn(files[0])
    (block,) = per_rcpt.values()
    assert block["Action"] == "failed" and block["Status"] == "5.6.7", block.as_string()
    kp.wait_log(qid + r": removed")
    assert not any(c.upper().startswith("MAIL") for c in peer.commands()), peer.commands()
    # The same server with SMTPUTF8 takes it.
    peer.smtputf8 = True
    qid = submit(kp, [rcpt], msg.replace(b"tok-utf8", b"tok-utf8-ok"), mail_options=["SMTPUTF8"])
    kp.wait_log(rf"{qid}: to=<[^>]*>, relay=\S+, delay=\d+, status=sent")
    assert any(c.upper().startswith("MAIL FROM:<SENDER@EXAMPLE.ORG>") and
               c.upper().endswith("SMTPUTF8") for c in peer.commands()), peer.commands()
    assert peer.messages[-1]["rcpts"] == [rcpt]


def peer_tls_context(certs, require_client_cert):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certs["peer.relay.test"].crt, certs["peer.relay.test"].key)
    if require_client_cert:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(certs["_ca"])
    return ctx


def test_server_requires_client_certificate(make_server, make_peer, certs):
    """verify level (CA + name via match=) against a server that demands a
    client certificate at the TLS level."""
    peer = make_peer(tls=peer_tls_context(certs, True))
    client = certs["client.relay.test"]
    policy = (f"inline:{{ {{ [127.0.0.1]:{peer.port} = verify match=peer.relay.test }} }}")
    common = relay_to(peer, smtp_tls_policy_maps=policy, smtp_tls_CAfile=certs["_ca"])
    without = make_server(**common)
    qid = submit(without, ["user@far.test"], message("no cert", "tok-nocert", to="user@far.test"))
    m = result(without, qid, "user@far.test", "deferred")
    assert no_result(without, qid, "bounced")
    assert peer.count("tok-nocert") == 0
    with_cert = make_server(smtp_tls_cert_file=client.crt, smtp_tls_key_file=client.key, **common)
    qid = submit(with_cert, ["user@far.test"], message("with cert", "tok-cert", to="user@far.test"))
    result(with_cert, qid, "user@far.test", "sent")
    with_cert.wait_log(rf"Verified TLS connection established to 127\.0\.0\.1\[127\.0\.0\.1\]:"
                       rf"{peer.port}")
    assert peer.count("tok-cert") == 1 and peer.messages[-1]["tls"]
    assert m.group(2).startswith("4."), m.group(0)


# ==== 5. no DSN for a DSN ===================================================

def test_undeliverable_dsn_is_not_bounced_again(make_server, make_peer):
    def rcpt_reply(addr):
        return f"550 5.1.1 <{addr}>: Recipient address rejected: User unknown"
    peer = make_peer(rcpt_reply=rcpt_reply)
    kp = make_server(transport_maps=f"inline:{{ far.test=smtp:[127.0.0.1]:{peer.port}, "
                                    f"nowhere.test=smtp:[127.0.0.1]:{peer.port} }}")
    qid = submit(kp, ["user@far.test"], message("double bounce", "tok-2bounce",
                                                 to="user@far.test"),
                 sender="someone@nowhere.test")
    result(kp, qid, "user@far.test", "bounced")
    dsn = kp.wait_log(qid + r": sender non-delivery notification: (\w+)").group(1)
    m = result(kp, dsn, "someone@nowhere.test", "bounced")
    assert "550 5.1.1" in m.group(2), m.group(0)
    kp.wait_log(dsn + r": a bounce could not be delivered; no notice is sent for a bounce")
    kp.wait_log(dsn + r": removed")
    kp.wait_log(qid + r": removed")
    time.sleep(1.5)
    assert len(re.findall(r"sender non-delivery notification", kp.log())) == 1, kp.log()
    mails = [c for c in peer.commands() if c.upper().startswith("MAIL FROM:")]
    assert mails[0].startswith("MAIL FROM:<someone@nowhere.test>"), mails
    assert mails[1].startswith("MAIL FROM:<>"), mails
    assert len(mails) == 2, mails
    assert queue_list(kp).strip() == ""


# ==== 6. keypost queue flush ================================================

def test_queue_flush_retries_at_once(make_server, make_peer):
    peer = make_peer(mode="greet421")
    kp = make_server(**relay_to(peer, minimal_backoff_time="300s", maximal_backoff_time="600s"))
    qid = submit(kp, ["user@far.test"], message("flush", "tok-flush", to="user@far.test"))
    result(kp, qid, "user@far.test", "deferred")
    kp.wait_log(qid + r": deferred: 1 recipients left, next attempt in 300s")
    peer.mode = "ok"
    time.sleep(2)  # no retry on its own: the next attempt is 300 s away
    assert peer.count("tok-flush") == 0 and len(peer.sessions) == 1
    t0 = time.time()
    flush(kp)
    m = result_later(kp, qid, "user@far.test", "sent", timeout=10)
    assert time.time() - t0 < 8
    assert m.group(2) == "250 2.0.0 Ok: queued as PEER1", m.group(0)
    kp.wait_log(qid + r": removed")
    assert peer.count("tok-flush") == 1


# ==== queue lifetime and routing details ====================================

def test_queue_lifetime_returns_deferred_mail(make_server, make_peer):
    peer = make_peer(mode="greet421")
    kp = make_server(**relay_to(peer, maximal_queue_lifetime="3s"))
    subject = "expires"
    qid = submit(kp, ["user@far.test"], message(subject, "tok-expire", to="user@far.test"))
    result(kp, qid, "user@far.test", "deferred")
    m = result_later(kp, qid, "user@far.test", "bounced", timeout=15)
    assert "421 4.3.2" in m.group(2), m.group(0)  # the last error is kept
    text = check_dsn(kp, "user@far.test", r"[45]\.\d{1,3}\.\d{1,3}", r"421 4\.3\.2", subject)
    assert "Action: failed" in text
    kp.wait_log(qid + r": removed")
    assert qid not in queue_list(kp)


def test_error_routes_keep_their_own_text(make_server):
    """Two recipients of one message with different error: transports: each
    is refused with its own text (one delivery job must not hand the first
    recipient's route to the other)."""
    kp = make_server(transport_maps="inline:{ { gone.test = error:5.1.1 mailbox is gone }, "
                                    "{ closed.test = error:5.7.1 domain is closed } }")
    subject = "two error routes"
    qid = submit(kp, ["a@gone.test", "b@closed.test"], message(subject, "tok-err",
                                                                to="a@gone.test"))
    a = result(kp, qid, "a@gone.test", "bounced")
    b = result(kp, qid, "b@closed.test", "bounced")
    assert a.group(2) == "5.1.1 mailbox is gone", a.group(0)
    assert b.group(2) == "5.7.1 domain is closed", b.group(0)
    files = kp.wait_delivered(SENDER)
    _, _, per_rcpt = parse_dsn(files[0])
    assert per_rcpt["a@gone.test"]["Status"] == "5.1.1"
    assert per_rcpt["b@closed.test"]["Status"] == "5.7.1"
