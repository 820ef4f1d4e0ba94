"""Hostile and broken input on the receive path: every case must end in a
clear SMTP reply (or a clean close), never a crash, a hang, or a lost or
half-queued message. Raw sockets are used wherever smtplib would tidy up
what goes on the wire."""
import os
import re
import smtplib
import socket
import ssl
import time

import pytest

from kptest import free_port

HOST = "mx.keypost.test"


def tls_client_context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Conn:
    """A raw SMTP client: bytes out exactly as given, replies parsed in."""

    opened = []  # closed by the server fixture, so a failed test never stalls

    def __init__(self, port, host="127.0.0.1", timeout=5, banner=True):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        Conn.opened.append(self)
        self.buf = b""
        self.banner = self.expect(220) if banner else None

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError(f"connection closed; unparsed {self.buf!r}")
        self.buf += chunk

    def reply(self):
        """One complete (maybe multi-line) reply as (code, text)."""
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                self._fill()
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line)
            assert re.match(rb"^\d{3}[ -]", line), f"malformed reply line {line!r}"
            if line[3:4] == b" ":
                break
        return int(lines[-1][:3]), b"\n".join(lines).decode("utf-8", "replace")

    def expect(self, code, text=None):
        got = self.reply()
        assert got[0] == code, f"wanted {code}, got {got}"
        if text is not None:
            assert text in got[1], f"wanted {text!r} in {got}"
        return got

    def cmd(self, line, code=None, text=None):
        if isinstance(line, str):
            line = line.encode()
        self.send(line + b"\r\n")
        if code is None:
            return self.reply()
        return self.expect(code, text)

    def replies(self, n):
        return [self.reply() for _ in range(n)]

    def rest_until_close(self, timeout=5):
        """Everything the server still sends, then its close. Raises if the
        server keeps the connection open past timeout."""
        self.sock.settimeout(timeout)
        data = self.buf
        self.buf = b""
        deadline = time.time() + timeout
        while True:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return data
            except socket.timeout:
                raise AssertionError(f"server did not close the connection; got {data!r}")
            if not chunk:
                return data
            data += chunk
            assert time.time() < deadline, f"server did not close the connection; got {data!r}"

    def starttls(self):
        assert self.buf == b"", self.buf
        self.sock = tls_client_context().wrap_socket(self.sock, server_hostname=HOST)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def transaction(c, sender, rcpts, body, helo=True):
    """A plain, well-formed mail transaction; returns the queue id."""
    if helo:
        c.cmd("EHLO client.test", 250)
    c.cmd(f"MAIL FROM:<{sender}>", 250)
    for r in rcpts:
        c.cmd(f"RCPT TO:<{r}>", 250)
    c.cmd("DATA", 354)
    c.send(body + b"\r\n.\r\n")
    _, text = c.expect(250, "2.0.0 Ok: queued as ")
    return text.split()[-1]


def send_ok(port, rcpt, subject):
    """A normal client succeeds: used to show the server still works."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.ehlo("client.test")
        s.sendmail("ok@remote.test", [rcpt], f"Subject: {subject}\r\n\r\nfine\r\n".encode())


def read_mail(path):
    with open(path, "rb") as f:
        return f.read()


def queue_empty(kp):
    return kp.queue_files("tmp") == [] and kp.queue_files("active") == []


def wait_queue_empty(kp, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if queue_empty(kp):
            return
        time.sleep(0.05)
    raise AssertionError(f"queue not empty: tmp={kp.queue_files('tmp')} "
                         f"active={kp.queue_files('active')}\n{kp.log()}")


def settle(kp, sentinel):
    """Send a good message after the bad case and wait until it is delivered:
    anything the bad case queued would have been delivered by then too."""
    send_ok(kp.smtp_port, sentinel, "sentinel")
    kp.wait_delivered(sentinel)
    time.sleep(0.3)


@pytest.fixture
def server(make_server):
    """make_server plus a check that no smtpd worker died during the test."""
    started = []

    def factory(**params):
        params.setdefault("smtpd_hard_error_limit", 100)
        kp = make_server(**params)
        started.append(kp)
        return kp

    yield factory
    while Conn.opened:
        Conn.opened.pop().close()
    for kp in started:
        log = kp.log()
        assert "ended unexpectedly" not in log, log
        assert "AddressSanitizer" not in kp.output()


# ---- command line syntax ---------------------------------------------------

def test_overlong_command_line(server):
    kp = server()
    c = Conn(kp.smtp_port)
    c.cmd("EHLO client.test", 250)
    # One line well over line_length_limit (2048), in several TCP segments.
    c.send(b"NOOP " + b"x" * 1500)
    time.sleep(0.05)
    c.send(b"y" * 1500)
    time.sleep(0.05)
    c.send(b"z" * 1500 + b"\r\n")
    c.expect(500, "5.5.2 Error: line too long")
    # The discarded remainder is not read as commands: the next reply is NOOP's.
    c.cmd("NOOP", 250)
    # A huge line with no line end at all (64 KiB), then the line end.
    c.send(b"A" * 65536)
    c.send(b"\r\nRSET\r\n")
    c.expect(500, "5.5.2 Error: line too long")
    c.expect(250)
    # Just under the limit is a normal command.
    c.cmd(b"NOOP " + b"n" * 2000, 250)
    # The session is still good for mail.
    transaction(c, "bob@remote.test", ["long@example.org"], b"Subject: after long\r\n\r\nok",
                helo=False)
    c.cmd("QUIT", 221)
    c.close()
    assert b"Subject: after long" in read_mail(kp.wait_delivered("long@example.org")[0])


def test_nul_bare_cr_and_8bit_in_commands(server):
    kp = server()
    c = Conn(kp.smtp_port)
    c.cmd("EHLO client.test", 250)
    c.cmd(b"NOOP\x00QUIT", 500, "5.5.2")
    c.cmd(b"NOOP\rQUIT", 500, "5.5.2")
    # A NUL inside MAIL must not let a truncated address through.
    c.cmd(b"MAIL FROM:<bob@remote.test\x00>", 500, "5.5.2")
    c.cmd("RCPT TO:<alice@example.org>", 503, "5.5.1")
    # 8-bit bytes in the verb: unknown command.
    c.cmd(b"NO\xc3\xa9OP", 502, "5.5.2")
    c.cmd(b"\xff\xfe\xfd", 502, "5.5.2")
    # 8-bit or control characters in the HELO name; an overlong HELO name.
    c.cmd(b"EHLO cli\xc3\xa9nt.test", 501, "5.5.4")
    c.cmd(b"EHLO " + b"h" * 300, 501, "5.5.4")
    # UTF-8 addresses need SMTPUTF8.
    c.cmd("MAIL FROM:<jösé@remote.test>", 553, "5.6.7")
    c.cmd("MAIL FROM:<bob@remote.test>", 250)
    c.cmd("RCPT TO:<ünï@example.org>", 553, "5.6.7")
    c.cmd("RSET", 250)
    # Broken UTF-8 is a syntax error even with SMTPUTF8.
    c.cmd(b"MAIL FROM:<j\xff\xfe@remote.test> SMTPUTF8", 501, "5.1.7")
    # With SMTPUTF8 a UTF-8 sender is fine and the mail goes through.
    c.cmd("MAIL FROM:<jösé@remote.test> SMTPUTF8", 250, "2.1.0")
    c.cmd("RCPT TO:<utf8@example.org>", 250)
    c.cmd("DATA", 354)
    c.send("Subject: ünïcödé\r\n\r\nbody\r\n.\r\n".encode())
    c.expect(250, "queued as")
    c.cmd("QUIT", 221)
    c.close()
    text = read_mail(kp.wait_delivered("utf8@example.org")[0])
    assert "Return-Path: <jösé@remote.test>".encode() in text
    assert b"with UTF8SMTP id" in text
    kp.wait_log(r"from=<jösé@remote\.test>, size=\d+, nrcpt=1")


def test_commands_out_of_order(server):
    kp = server()
    c = Conn(kp.smtp_port)
    c.cmd("MAIL FROM:<bob@remote.test>", 503, "5.5.1 Error: send HELO/EHLO first")
    c.cmd("RCPT TO:<alice@example.org>", 503, "5.5.1")
    c.cmd("DATA", 503, "5.5.1")
    c.cmd("EHLO client.test", 250)
    c.cmd("RCPT TO:<alice@example.org>", 503, "5.5.1 Error: need MAIL command")
    c.cmd("DATA", 503, "5.5.1 Error: need MAIL command")
    c.cmd("MAIL FROM:<first@remote.test>", 250)
    c.cmd("DATA", 503, "5.5.1 Error: need RCPT command")
    c.cmd("MAIL FROM:<second@remote.test>", 503, "5.5.1 Error: nested MAIL command")
    c.cmd("STARTTLS", 503, "5.5.1")
    c.cmd("RCPT TO:<order@example.org>", 250)
    c.cmd("DATA", 354)
    c.send(b"Subject: order\r\n\r\nx\r\n.\r\n")
    c.expect(250, "queued as")
    # The transaction is over: DATA and RCPT are out of order again.
    c.cmd("DATA", 503, "5.5.1")
    c.cmd("RCPT TO:<order@example.org>", 503, "5.5.1")
    # RSET clears a transaction.
    c.cmd("MAIL FROM:<third@remote.test>", 250)
    c.cmd("RCPT TO:<reset@example.org>", 250)
    c.cmd("RSET", 250)
    c.cmd("DATA", 503, "5.5.1")
    c.cmd("QUIT", 221)
    c.close()
    files = kp.wait_delivered("order@example.org")
    assert len(files) == 1
    assert b"Return-Path: <first@remote.test>" in read_mail(files[0])
    settle(kp, "sentinel@example.org")
    assert kp.delivered("reset@example.org") == []
    assert not re.search(r"from=<second@remote\.test>, size", kp.log())


def test_mail_parameters_all_checked(server):
    """Every MAIL parameter is checked, however many there are: a SIZE or an
    unknown option after many harmless ones is still checked."""
    kp = server(message_size_limit=2000)
    c = Conn(kp.smtp_port)
    c.cmd("EHLO client.test", 250)
    c.cmd("MAIL FROM:<bob@remote.test> BODY=8BITMIME XBOGUS=1", 555, "5.5.4")
    many = " ".join(["BODY=8BITMIME"] * 16)
    c.cmd(f"MAIL FROM:<bob@remote.test> {many} SIZE=999999", 552, "5.3.4")
    c.cmd(f"MAIL FROM:<bob@remote.test> {many} XBOGUS=1", 555, "5.5.4")
    c.cmd("MAIL FROM:<bob@remote.test> SIZE=100 BODY=7BIT", 250)
    c.cmd("QUIT", 221)
    c.close()


# ---- pipelining ------------------------------------------------------------

def test_pipelined_burst_in_one_write(server):
    kp = server()
    c = Conn(kp.smtp_port)
    c.send(b"EHLO client.test\r\nMAIL FROM:<pipe@remote.test>\r\n"
           b"RCPT TO:<p1@example.org>\r\nRCPT TO:<p2@example.org>\r\n"
           b"RCPT TO:<p3@example.org>\r\nDATA\r\nSubject: burst\r\n\r\nbody\r\n.\r\n"
           b"QUIT\r\n")
    got = c.replies(8)
    assert [code for code, _ in got] == [250, 250, 250, 250, 250, 354, 250, 221], got
    assert "PIPELINING" in got[0][1]
    assert "2.1.0" in got[1][1] and all("2.1.5" in t for _, t in got[2:5])
    assert "queued as" in got[6][1]
    assert c.rest_until_close() == b""
    c.close()
    for r in ("p1@example.org", "p2@example.org", "p3@example.org"):
        files = kp.wait_delivered(r)
        assert len(files) == 1 and b"Subject: burst" in read_mail(files[0])


def test_two_pipelined_messages_in_one_write(server):
    kp = server()
    c = Conn(kp.smtp_port)
    msg = (b"MAIL FROM:<pipe@remote.test>\r\nRCPT TO:<%s@example.org>\r\nDATA\r\n"
           b"Subject: %s\r\n\r\n..dot-stuffed\r\n.\r\n")
    c.send(b"EHLO client.test\r\n" + msg % (b"m1", b"one") + msg % (b"m2", b"two") +
           b"QUIT\r\n")
    got = c.replies(10)
    assert [code for code, _ in got] == [250, 250, 250, 354, 250, 250, 250, 354, 250, 221], got
    ids = {got[4][1].split()[-1], got[8][1].split()[-1]}
    assert len(ids) == 2, got
    c.close()
    one = read_mail(kp.wait_delivered("m1@example.org")[0])
    two = read_mail(kp.wait_delivered("m2@example.org")[0])
    assert b"Subject: one" in one and b"Subject: two" in two
    assert b"\n.dot-stuffed" in one and b"..dot-stuffed" not in one


def test_pipelined_flood_client_not_reading(server):
    """A client that pipelines far more than it reads: the server applies
    back-pressure but loses no command and no reply, in order."""
    import threading
    kp = server()
    n = 40000
    c = Conn(kp.smtp_port, timeout=20)
    c.cmd("EHLO client.test", 250)
    payload = b"".join(b"NOOP %d\r\n" % i for i in range(n)) + b"QUIT\r\n"
    errors = []

    def writer():
        try:
            c.sock.sendall(payload)
        except OSError as e:
            errors.append(e)

    t = threading.Thread(target=writer)
    t.start()
    time.sleep(0.5)  # not reading: the server's output fills up
    got = c.replies(n + 1)
    t.join(10)
    assert not errors, errors
    assert all(code == 250 for code, _ in got[:n]), [g for g in got[:n] if g[0] != 250][:3]
    assert got[n][0] == 221
    assert c.rest_until_close() == b""
    c.close()


# ---- SMTP smuggling and bare LF --------------------------------------------

SMUGGLED = (b"MAIL FROM:<evil@x>\r\nRCPT TO:<victim@example.org>\r\nDATA\r\n"
            b"Subject: smuggled\r\n\r\nevil\r\n")
# Ends of data that only a lax server would take for <CR><LF>.<CR><LF>.
FAKE_ENDS = [b"\n.\n", b"\r\n.\n", b"\n.\r\n", b"\r.\r\n", b"\r\n.\r", b"\r\n.\r\r\n"]


def test_smuggling_normalize_keeps_one_message(server):
    kp = server()  # smtpd_forbid_bare_newline = normalize (the default)
    assert "smtpd_forbid_bare_newline" not in kp.params
    body = b"Subject: carrier\r\n\r\nfirst line"
    for end in FAKE_ENDS:
        body += end + SMUGGLED
    c = Conn(kp.smtp_port)
    c.cmd("EHLO client.test", 250)
    c.cmd("MAIL FROM:<sender@remote.test>", 250)
    c.cmd("RCPT TO:<carrier@example.org>", 250)
    c.cmd("DATA", 354)
    c.send(body + b"\r\n.\r\nQUIT\r\n")
    # Exactly one message: one "queued as", then QUIT's 221, nothing between.
    got = c.replies(2)
    assert got[0][0] == 250 and "2.0.0 Ok: queued as" in got[0][1], got
    assert got[1][0] == 221, got
    assert c.rest_until_close() == b""
    c.close()
    files = kp.wait_delivered("carrier@example.org")
    settle(kp, "sentinel@example.org")
    assert len(kp.delivered("carrier@example.org")) == 1
    assert kp.delivered("victim@example.org") == []
    text = read_mail(files[0])
    assert text.count(b"MAIL FROM:<evil@x>") == len(FAKE_ENDS), text
    assert text.count(b"RCPT TO:<victim@example.org>") == len(FAKE_ENDS), text
    assert b"first line" in text
    log = kp.log()
    assert len(re.findall(r"from=<sender@remote\.test>, size=\d+, nrcpt=1", log)) == 1, log
    assert "evil@x" not in log, log
    assert re.search(r"bare <LF>( and <CR>)? normalized", log), log


def test_smuggling_byte_at_a_time(server):
    """The end-of-data state machine holds across reads: the same hostile
    body fed one byte per segment is still one message."""
    kp = server()
    body = b"Subject: drip\r\n\r\nx"
    for end in FAKE_ENDS:
        body += end + SMUGGLED
    body += b"..stuffed\r\n.\r\n"
    c = Conn(kp.smtp_port)
    c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    c.cmd("EHLO client.test", 250)
    c.cmd("MAIL FROM:<drip@remote.test>", 250)
    c.cmd("RCPT TO:<drip@example.org>", 250)
    c.cmd("DATA", 354)
    for i in range(len(body)):
        c.send(body[i:i + 1])
        if i % 8 == 0:
            time.sleep(0.001)
    c.send(b"QUIT\r\n")
    got = c.replies(2)
    assert [code for code, _ in got] == [250, 221], got
    assert c.rest_until_close() == b""
    c.close()
    files = kp.wait_delivered("drip@example.org")
    settle(kp, "sentinel@example.org")
    assert len(kp.delivered("drip@example.org")) == 1
    assert kp.delivered("victim@example.org") == []
    text = read_mail(files[0])
    assert text.count(b"MAIL FROM:<evil@x>") == len(FAKE_ENDS), text
    assert b"\n.stuffed\n" in text, text


def test_bare_lf_reject_mode(server):
    kp = server(smtpd_forbid_bare_newline="reject")
    # A command ended by a bare LF is refused, and the session ends (as
    # Postfix does): what the client meant by its line ends is unknowable.
    c = Conn(kp.smtp_port)
    c.send(b"EHLO client.test\n")
    c.expect(550, "5.5.2 Error: bare <LF> received")
    assert c.rest_until_close() == b""
    c.close()
    # A message with a bare LF, or a bare CR, is refused at the end of data.
    for bad in (b"line\nnext\r\n" + b"\n.\n", b"line\rnext\r\n" + b"\r.\r"):
        c = Conn(kp.smtp_port)
        c.cmd("EHLO client.test", 250)
        c.cmd("MAIL FROM:<bob@remote.test>", 250)
        c.cmd("RCPT TO:<lf@example.org>", 250)
        c.cmd("DATA", 354)
        c.send(b"Subject: lf\r\n\r\n" + bad + SMUGGLED + b"\r\n.\r\n")
        c.expect(550, "5.5.2 Error: bare <")
        # The smuggled commands were content, never run: the session ends.
        assert c.rest_until_close() == b""
        c.close()
    kp.wait_log(r"bare <CR> received from unknown\[127\.0\.0\.1\]; disconnecting")
    c = Conn(kp.smtp_port)
    transaction(c, "bob@remote.test", ["clean@example.org"], b"Subject: clean\r\n\r\nall CRLF")
    c.cmd("QUIT", 221)
    c.close()
    kp.wait_delivered("clean@example.org")
    settle(kp, "sentinel@example.org")
    assert kp.delivered("lf@example.org") == []
    assert kp.delivered("victim@example.org") == []
    wait_queue_empty(kp)


# ---- size limits -----------------------------------------------------------

def test_message_size_limit(server):
    kp = server(message_size_limit=2000)
    c = Conn(kp.smtp_port)
    _, ehlo = c.cmd("EHLO client.test", 250)
    assert "SIZE 2000" in ehlo
    c.cmd("MAIL FROM:<big@remote.test> SIZE=5000", 552, "5.3.4")
    code, _ = c.cmd("MAIL FROM:<big@remote.test> SIZE=99999999999999999999999")
    assert code in (501, 552), code  # an overflowing SIZE is refused, not wrapped
    c.cmd("RSET", 250)
    c.cmd("MAIL FROM:<big@remote.test> SIZE=1000", 250)  # the client lies
    c.cmd("RCPT TO:<big@example.org>", 250)
    c.cmd("DATA", 354)
    c.send(b"Subject: big\r\n\r\n" + (b"0123456789" * 7 + b"\r\n") * 1500 + b".\r\n")
    c.expect(552, "5.3.4")
    assert queue_empty(kp)
    # The session goes on: a small message is accepted.
    c.cmd("NOOP", 250)
    transaction(c, "small@remote.test", ["small@example.org"], b"Subject: small\r\n\r\nok",
                helo=False)
    c.cmd("QUIT", 221)
    c.close()
    kp.wait_delivered("small@example.org")
    settle(kp, "sentinel@example.org")
    assert kp.delivered("big@example.org") == []
    kp.wait_log(r"reject: END-OF-MESSAGE from .*552 5\.3\.4")
    wait_queue_empty(kp)


# ---- timeouts and lost connections -----------------------------------------

def test_timeout_mid_data(server):
    kp = server(smtpd_timeout="2s")
    c = Conn(kp.smtp_port, timeout=10)
    c.cmd("EHLO client.test", 250)
    c.cmd("MAIL FROM:<slow@remote.test>", 250)
    c.cmd("RCPT TO:<slow@example.org>", 250)
    c.cmd("DATA", 354)
    c.send(b"Subject: slow\r\n\r\nhalf a message\r\n")
    assert kp.queue_files("tmp") != []  # the message is being written
    t0 = time.time()
    rest = c.rest_until_close(timeout=8)
    elapsed = time.time() - t0
    c.close()
    assert 1.5 <= elapsed < 6, elapsed
    kp.wait_log(r"timeout after DATA from unknown\[127\.0\.0\.1\]")
    assert re.match(rb"^421 4\.4\.2 mx\.keypost\.test Error: timeout exceeded\r\n$", rest), rest
    wait_queue_empty(kp)
    settle(kp, "sentinel@example.org")
    assert kp.delivered("slow@example.org") == []


def test_timeout_idle_command(server):
    kp = server(smtpd_timeout="2s")
    c = Conn(kp.smtp_port, timeout=10)
    c.cmd("EHLO client.test", 250)
    t0 = time.time()
    rest = c.rest_until_close(timeout=8)
    assert 1.5 <= time.time() - t0 < 6
    c.close()
    kp.wait_log(r"timeout after EHLO from unknown\[127\.0\.0\.1\]")
    assert re.match(rb"^421 4\.4\.2 mx\.keypost\.test Error: timeout exceeded\r\n$", rest), rest


def test_disconnect_mid_data(server):
    kp = server()
    # Plain disconnect in the middle of the body.
    c = Conn(kp.smtp_port)
    c.cmd("EHLO client.test", 250)
    c.cmd("MAIL FROM:<gone@remote.test>", 250)
    c.cmd("RCPT TO:<gone@example.org>", 250)
    c.cmd("DATA", 354)
    c.send(b"Subject: gone\r\n\r\nhalf a message\r\n")
    c.close()
    kp.wait_log(r"lost connection after DATA from unknown\[127\.0\.0\.1\]")
    # Disconnect right after "<CR><LF>.<CR>": not a complete end of data.
    c = Conn(kp.smtp_port)
    c.cmd("EHLO client.test", 250)
    c.cmd("MAIL FROM:<gone@remote.test>", 250)
    c.cmd("RCPT TO:<gone2@example.org>", 250)
    c.cmd("DATA", 354)
    c.send(b"Subject: gone2\r\n\r\nalmost\r\n.\r")
    time.sleep(0.2)
    c.sock.shutdown(socket.SHUT_WR)
    assert c.rest_until_close() == b""
    c.close()
    deadline = time.time() + 5
    while len(re.findall("lost connection after DATA", kp.log())) < 2:
        assert time.time() < deadline, kp.log()
        time.sleep(0.05)
    wait_queue_empty(kp)
    settle(kp, "sentinel@example.org")
    assert kp.delivered("gone@example.org") == []
    assert kp.delivered("gone2@example.org") == []
    assert "nrcpt" not in "".join(l for l in kp.log().splitlines() if "gone@" in l)


# ---- TLS abuse -------------------------------------------------------------

def half_close(sock):
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass  # the server may already have hung up


def test_garbage_instead_of_client_hello(server):
    smtps = free_port()
    kp = server(smtps_listen=f"127.0.0.1:{smtps}", smtpd_timeout="3s")
    # (the fixture's start() waits only for the smtp port; wait for smtps too)
    deadline = time.time() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", smtps), timeout=1).close()
            break
        except OSError:
            assert time.time() < deadline
            time.sleep(0.05)
    garbage = [b"EHLO client.test\r\n", b"GET / HTTP/1.0\r\n\r\n", b"\x00" + os.urandom(4096),
               b"\x16\x03\x01\xff\xff" + os.urandom(300),  # a record claiming 64 KiB
               b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00"]  # a 1-byte ClientHello
    for junk in garbage:
        # STARTTLS, then junk.
        c = Conn(kp.smtp_port)
        c.cmd("EHLO client.test", 250)
        c.cmd("STARTTLS", 220, "2.0.0 Ready to start TLS")
        c.send(junk)
        if junk.startswith(b"\x16\x03\x01\xff\xff"):
            half_close(c.sock)
        data = c.rest_until_close(timeout=6)
        assert b"250" not in data and b"220" not in data, data
        c.close()
        # Implicit TLS port, junk instead of a ClientHello.
        s = socket.create_connection(("127.0.0.1", smtps), timeout=6)
        s.sendall(junk)
        if junk.startswith(b"\x16\x03\x01\xff\xff"):
            half_close(s)
        t0 = time.time()
        try:
            while s.recv(4096):
                assert time.time() - t0 < 6, "smtps connection kept open"
        except ConnectionResetError:
            pass
        except socket.timeout:
            raise AssertionError("server kept the smtps connection after junk")
        s.close()
    # A client that stalls half-way through a ClientHello does not block others.
    stalled = socket.create_connection(("127.0.0.1", smtps), timeout=8)
    stalled.sendall(b"\x16\x03\x01\x02\x00\x01")
    send_ok(kp.smtp_port, "after-junk@example.org", "after junk")
    with smtplib.SMTP_SSL("127.0.0.1", smtps, context=tls_client_context(), timeout=10) as s:
        s.ehlo("client.test")
        s.sendmail("ok@remote.test", ["after-junk-tls@example.org"],
                   b"Subject: smtps ok\r\n\r\nx\r\n")
    with smtplib.SMTP("127.0.0.1", kp.smtp_port, timeout=10) as s:
        s.starttls(context=tls_client_context())
        s.ehlo("client.test")
        s.sendmail("ok@remote.test", ["after-junk-starttls@example.org"],
                   b"Subject: starttls ok\r\n\r\nx\r\n")
    # ... and is dropped after smtpd_timeout.
    t0 = time.time()
    try:
        assert stalled.recv(4096) == b""
    except ConnectionResetError:
        pass
    assert time.time() - t0 < 6
    stalled.close()
    kp.wait_delivered("after-junk@example.org")
    kp.wait_delivered("after-junk-tls@example.org")
    kp.wait_delivered("after-junk-starttls@example.org")
    kp.wait_log(r"TLS handshake failed")
    kp.wait_log(r"timeout during TLS handshake")


def test_starttls_plaintext_injection(server):
    kp = server()
    c = Conn(kp.smtp_port)
    c.cmd("EHLO client.test", 250)
    # CVE-2011-0411: commands after STARTTLS in the same packet.
    c.send(b"STARTTLS\r\nHELP\r\nEHLO injected.test\r\nMAIL FROM:<inject@remote.test>\r\n"
           b"RCPT TO:<injected@example.org>\r\nDATA\r\nSubject: injected\r\n\r\nx\r\n.\r\n")
    c.expect(220, "Ready to start TLS")
    assert c.buf == b""  # nothing else in plaintext either
    c.starttls()
    # The first reply through TLS answers our EHLO: no 214 from the injected
    # HELP, no 250/354 from the injected transaction.
    _, ehlo = c.cmd("EHLO client.test", 250)
    assert ehlo.startswith(f"250-{HOST}"), ehlo
    assert "STARTTLS" not in ehlo
    c.cmd("NOOP", 250, "2.0.0 Ok")
    # The session state from before STARTTLS (and the injected MAIL) is gone.
    c.cmd("RCPT TO:<injected@example.org>", 503, "5.5.1")
    transaction(c, "legit@remote.test", ["legit@example.org"], b"Subject: legit\r\n\r\nok",
                helo=False)
    c.cmd("QUIT", 221)
    c.close()
    text = read_mail(kp.wait_delivered("legit@example.org")[0])
    assert b"from client.test" in text and b"with ESMTPS" in text
    settle(kp, "sentinel@example.org")
    assert kp.delivered("injected@example.org") == []
    log = kp.log()
    assert "inject@remote.test" not in log and "injected.test" not in log, log


# ---- the queue cannot be written -------------------------------------------

def test_queue_tmp_unwritable(server):
    kp = server()
    tmp = os.path.join(kp.queue, "tmp")
    mode = os.stat(tmp).st_mode & 0o7777
    c = Conn(kp.smtp_port)
    c.cmd("EHLO client.test", 250)
    os.chmod(tmp, 0)
    try:
        c.cmd("MAIL FROM:<bob@remote.test>", 250)
        c.cmd("RCPT TO:<nowrite@example.org>", 250)
        c.cmd("DATA", 451, "4.3.0")
        # No message body is expected now: the client may retry later.
        c.cmd("NOOP", 250)
    finally:
        os.chmod(tmp, mode)
    kp.wait_log(r"cannot create queue file")
    # With the directory back, the same session delivers.
    c.cmd("RSET", 250)
    transaction(c, "bob@remote.test", ["nowrite@example.org"], b"Subject: retry\r\n\r\nok",
                helo=False)
    c.cmd("QUIT", 221)
    c.close()
    files = kp.wait_delivered("nowrite@example.org")
    settle(kp, "sentinel@example.org")
    assert len(kp.delivered("nowrite@example.org")) == 1
    assert b"Subject: retry" in read_mail(files[0])


def test_queue_active_unwritable_at_commit(server):
    kp = server()
    active = os.path.join(kp.queue, "active")
    mode = os.stat(active).st_mode & 0o7777
    c = Conn(kp.smtp_port)
    c.cmd("EHLO client.test", 250)
    os.chmod(active, 0)
    try:
        c.cmd("MAIL FROM:<bob@remote.test>", 250)
        c.cmd("RCPT TO:<nocommit@example.org>", 250)
        c.cmd("DATA", 354)
        c.send(b"Subject: nocommit\r\n\r\nbody\r\n.\r\n")
        code, text = c.reply()
        assert code == 451 and "4.3.0" in text, (code, text)
        assert kp.queue_files("tmp") == []  # the half-made file is gone
        c.cmd("NOOP", 250)
    finally:
        os.chmod(active, mode)
    c.cmd("QUIT", 221)
    c.close()
    settle(kp, "sentinel@example.org")
    assert kp.delivered("nocommit@example.org") == []
    wait_queue_empty(kp)


# ---- limits ----------------------------------------------------------------

def test_recipient_limit(server):
    kp = server(smtpd_recipient_limit=3)
    c = Conn(kp.smtp_port)
    c.cmd("EHLO client.test", 250)
    c.cmd("MAIL FROM:<bob@remote.test>", 250)
    for i in range(3):
        c.cmd(f"RCPT TO:<lim{i}@example.org>", 250)
    c.cmd("RCPT TO:<lim3@example.org>", 452, "4.5.3 Error: too many recipients")
    c.cmd("RCPT TO:<lim4@example.org>", 452, "4.5.3")
    c.cmd("DATA", 354)
    c.send(b"Subject: limit\r\n\r\nx\r\n.\r\n")
    c.expect(250, "queued as")
    c.cmd("QUIT", 221)
    c.close()
    for i in range(3):
        assert len(kp.wait_delivered(f"lim{i}@example.org")) == 1
    settle(kp, "sentinel@example.org")
    assert kp.delivered("lim3@example.org") == [] and kp.delivered("lim4@example.org") == []
    kp.wait_log(r"from=<bob@remote\.test>, size=\d+, nrcpt=3")


def test_hard_error_limit(server):
    kp = server(smtpd_hard_error_limit=5)
    c = Conn(kp.smtp_port)
    c.cmd("EHLO client.test", 250)
    for _ in range(4):
        c.cmd("BOGUS", 502)
    c.cmd("BOGUS", 502)
    c.expect(421, f"4.7.0 {HOST} Error: too many errors")
    assert c.rest_until_close() == b""
    c.close()
    # Pipelined: the errors stop the session; later commands are not run.
    c = Conn(kp.smtp_port)
    c.send(b"EHLO client.test\r\n" + b"BOGUS\r\n" * 10 +
           b"MAIL FROM:<late@remote.test>\r\nRCPT TO:<late@example.org>\r\nDATA\r\n"
           b"Subject: late\r\n\r\nx\r\n.\r\n")
    got = c.replies(7)
    assert [code for code, _ in got] == [250, 502, 502, 502, 502, 502, 421], got
    assert c.rest_until_close() == b""
    c.close()
    kp.wait_log(r"(?m): too many errors after UNKNOWN from unknown\[127\.0\.0\.1\]$")
    settle(kp, "sentinel@example.org")
    assert kp.delivered("late@example.org") == []


def test_connection_count_limit(server):
    kp = server(smtpd_client_connection_count_limit=2, smtpd_client_event_limit_exceptions="")
    time.sleep(0.3)  # the start-up probe connection must be gone
    a = Conn(kp.smtp_port)
    b = Conn(kp.smtp_port)
    for _ in range(2):
        c = Conn(kp.smtp_port, banner=False)
        c.expect(421, f"4.7.0 {HOST} Error: too many connections from 127.0.0.1")
        assert c.rest_until_close() == b""
        c.close()
    # The two admitted sessions still work.
    a.cmd("EHLO a.test", 250)
    b.cmd("EHLO b.test", 250)
    a.cmd("QUIT", 221)
    a.close()
    # Once one has gone, a new client gets in.
    deadline = time.time() + 5
    while True:
        c = Conn(kp.smtp_port, banner=False)
        code, text = c.reply()
        if code == 220:
            break
        c.close()
        assert time.time() < deadline, text
        time.sleep(0.1)
    transaction(c, "bob@remote.test", ["conn@example.org"], b"Subject: conn\r\n\r\nok")
    c.cmd("QUIT", 221)
    c.close()
    b.close()
    kp.wait_delivered("conn@example.org")
    kp.wait_log(r"refusing unknown\[127\.0\.0\.1\]: too many connections")


def test_binary_flood_keeps_server_alive(server):
    kp = server()
    rnd = bytes(b for b in os.urandom(200000) if b not in (10,))  # no line ends
    c = Conn(kp.smtp_port)
    c.cmd("EHLO client.test", 250)
    c.send(rnd + b"\r\n")
    c.expect(500, "line too long")
    # Short random lines: each gets one error reply, none crashes the worker.
    lines = [os.urandom(40).replace(b"\n", b"_") for _ in range(30)]
    c.send(b"".join(l + b"\r\n" for l in lines))
    got = c.replies(30)
    assert all(400 <= code < 600 for code, _ in got), got
    c.cmd("NOOP", 250)
    c.cmd("QUIT", 221)
    c.close()
    send_ok(kp.smtp_port, "flood@example.org", "after flood")
    kp.wait_delivered("flood@example.org")
