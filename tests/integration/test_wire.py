"""What keypost puts on the wire when it relays: canonical SMTP whatever it
received. Messages carrying every end-of-data look-alike (bare CR, bare LF,
NUL next to the dot, a 100,000-byte line) are submitted for relay; a
loopback SMTP (or LMTP) server records the exact bytes of each DATA phase,
and the test reads them as the most lenient receiver would."""
import glob
import os
import socket
import threading
import time

import pytest

SMUGGLED = (b"MAIL FROM:<smuggled@evil.test>\r\nRCPT TO:<victim@b.test>\r\nDATA\r\n"
            b"Subject: smuggled\r\n\r\nsmuggled body\r\n")

# name -> bytes placed between "before" and the smuggled commands
VARIANTS = {
    "lf-dot-lf": b"\n.\n",
    "lf-dot-cr": b"\n.\r",
    "cr-dot-lf": b"\r.\n",
    "cr-dot-cr": b"\r.\r",
    "lf-dot-crlf": b"\n.\r\n",
    "cr-dot-crlf": b"\r.\r\n",
    "crlf-dot-lf": b"\r\n.\n",
    "crlf-dot-cr": b"\r\n.\r",
    "nul-before-dot": b"\r\n\0.\r\n",
    "nul-after-dot": b"\r\n.\0\r\n",
    "lone-cr": b"\rlone cr\r",
    "lone-lf": b"\nlone lf\n",
}


class WireSink:
    """A loopback SMTP/LMTP server that keeps the raw bytes of every DATA
    phase (up to the strict <CRLF>.<CRLF>) and every command line."""

    def __init__(self, lmtp=False, rcpt_reply=None):
        self.lmtp = lmtp
        self.rcpt_reply = rcpt_reply or (lambda addr: b"250 2.1.5 Ok")
        self.raw = []        # bytes of each DATA phase, end marker included
        self.commands = []   # every command line received
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def stop(self):
        self.sock.close()

    def _session(self, conn):
        conn.settimeout(60)
        buf = b""

        def line():
            nonlocal buf
            while b"\r\n" not in buf:
                data = conn.recv(65536)
                if not data:
                    raise EOFError
                buf += data
            text, buf = buf.split(b"\r\n", 1)
            with self.lock:
                self.commands.append(text)
            return text

        def data_phase():
            nonlocal buf
            while True:
                end = buf.find(b"\r\n.\r\n")
                if end >= 0:
                    raw, buf = buf[:end + 5], buf[end + 5:]
                    return raw
                data = conn.recv(65536)
                if not data:
                    raise EOFError
                buf += data

        try:
            conn.sendall(b"220 sink.test ESMTP\r\n")
            rcpts = 0
            while True:
                cmd = line()
                verb = cmd.split(b" ", 1)[0].upper()
                if verb in (b"EHLO", b"LHLO"):
                    conn.sendall(b"250-sink.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
                elif verb == b"MAIL":
                    rcpts = 0
                    conn.sendall(b"250 2.1.0 Ok\r\n")
                elif verb == b"RCPT":
                    reply = self.rcpt_reply(cmd)
                    rcpts += reply.startswith(b"2")
                    conn.sendall(reply + b"\r\n")
                elif verb == b"DATA" and rcpts == 0:
                    conn.sendall(b"554 5.5.1 Error: no valid recipients\r\n")
                elif verb == b"DATA":
                    conn.sendall(b"354 go ahead\r\n")
                    raw = data_phase()
                    with self.lock:
                        self.raw.append(raw)
                    conn.sendall(b"250 2.0.0 Ok\r\n" * (rcpts if self.lmtp else 1))
                elif verb == b"QUIT":
                    conn.sendall(b"221 2.0.0 Bye\r\n")
                    return
                else:
                    conn.sendall(b"250 2.0.0 Ok\r\n")
        except (EOFError, OSError):
            pass
        finally:
            conn.close()

    def wait(self, count, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                if len(self.raw) >= count:
                    return list(self.raw)
            time.sleep(0.05)
        raise AssertionError(f"sink got {len(self.raw)} messages, wanted {count}")


def lenient_lines(raw):
    """Lines as a receiver that takes CR, LF or CRLF as a line end and strips
    NUL would see them."""
    text = raw.replace(b"\0", b"").replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return text.split(b"\n")


def assert_canonical(raw, limit=998):
    assert raw.endswith(b"\r\n.\r\n"), raw[-20:]
    assert b"\0" not in raw
    body = raw.replace(b"\r\n", b"")
    assert b"\r" not in body and b"\n" not in body, "bare CR or LF on the wire"
    for ln in raw.split(b"\r\n"):
        assert len(ln) <= limit, len(ln)
    lines = lenient_lines(raw)
    dots = [i for i, ln in enumerate(lines) if ln == b"."]
    # Only the real end: the last line before the final empty split.
    assert dots == [len(lines) - 2], [lines[i - 1:i + 2] for i in dots]


def submit_raw(port, sender, rcpt, body):
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    f = s.makefile("rb")

    def expect(code):
        while True:
            ln = f.readline()
            assert ln[:3] == code, ln
            if ln[3:4] != b"-":
                return ln

    expect(b"220")
    for cmd, code in ((b"EHLO client.test", b"250"), (b"MAIL FROM:<" + sender + b">", b"250"),
                      (b"RCPT TO:<" + rcpt + b">", b"250"), (b"DATA", b"354")):
        s.sendall(cmd + b"\r\n")
        expect(code)
    s.sendall(body + b"\r\n.\r\n")
    reply = expect(b"250")
    s.sendall(b"QUIT\r\n")
    s.close()
    return reply


@pytest.fixture
def sink():
    sinks = []

    def factory(**kw):
        s = WireSink(**kw)
        sinks.append(s)
        return s

    yield factory
    for s in sinks:
        s.stop()


def variant_body(name):
    return (b"Subject: " + name.encode() + b"\r\n\r\nbefore" + VARIANTS[name] + SMUGGLED +
            b"after")


@pytest.mark.parametrize("forbid", ["normalize", "no"])
def test_relayed_variants_are_canonical(make_server, sink, forbid):
    rx = sink()
    kp = make_server(relayhost=f"[127.0.0.1]:{rx.port}", smtpd_forbid_bare_newline=forbid)
    for name in VARIANTS:
        submit_raw(kp.smtp_port, b"bob@example.org", b"user@b.test", variant_body(name))
    raws = rx.wait(len(VARIANTS))
    for raw in raws:
        assert_canonical(raw)
        # The smuggled commands stayed content, and only one MAIL came.
        assert b"MAIL FROM:<smuggled@evil.test>" in raw
        # Nothing around them was lost.
        assert b"before" in raw and raw.rstrip(b"\r\n.").endswith(b"after"), raw[-200:]
    mails = [c for c in rx.commands if c.upper().startswith(b"MAIL")]
    assert len(mails) == len(VARIANTS), mails
    assert not any(b"smuggled" in c or b"victim" in c for c in rx.commands), rx.commands
    kp.wait_log(r"bare <CR> normalized")


def test_long_header_is_folded(make_server, sink):
    rx = sink()
    kp = make_server(relayhost=f"[127.0.0.1]:{rx.port}", message_size_limit="1000000")
    long_value = b"Q" * 100000
    submit_raw(kp.smtp_port, b"bob@example.org", b"user@b.test",
               b"X-Long: " + long_value + b"\r\nSubject: long\r\n\r\n" + b"W" * 5000)
    raw = rx.wait(1)[0]
    assert_canonical(raw)
    # Folded with CRLF SPACE: one header, every byte still there.
    assert raw.count(b"Q") == 100000
    assert b"\r\n Q" in raw
    assert raw.count(b"W") == 5000


def test_line_length_limit_parameter(make_server, sink):
    rx = sink()
    kp = make_server(relayhost=f"[127.0.0.1]:{rx.port}", smtp_line_length_limit="100")
    submit_raw(kp.smtp_port, b"bob@example.org", b"user@b.test",
               b"Subject: x\r\n\r\n" + b"Z" * 450)
    raw = rx.wait(1)[0]
    assert_canonical(raw, limit=100)
    assert raw.count(b"Z") == 450


def test_lmtp_gets_canonical_data(make_server, sink):
    rx = sink(lmtp=True)
    kp = make_server(local_transport=f"lmtp:inet:127.0.0.1:{rx.port}")
    for name in ("cr-dot-cr", "nul-before-dot", "lone-cr"):
        submit_raw(kp.smtp_port, b"bob@remote.test", b"alice@example.org", variant_body(name))
    for raw in rx.wait(3):
        assert_canonical(raw)


def test_bounce_text_is_canonical(make_server, sink):
    # The next hop refuses with control bytes in its reply text; the bounce
    # that keypost writes (delivered to a local sender) must not carry them.
    rx = sink(rcpt_reply=lambda cmd: b"550 5.1.1 no such\ruser\x1b[31m here")
    kp = make_server(relayhost=f"[127.0.0.1]:{rx.port}")
    submit_raw(kp.smtp_port, b"bob@example.org", b"user@b.test",
               b"Subject: will bounce\r\n\r\nbody")
    files = kp.wait_delivered("bob@example.org", timeout=20)
    text = open(files[0], "rb").read()
    assert b"no such user" in text, text
    assert b"\x1b" not in text and b"\0" not in text
    assert b"\r" not in text.replace(b"\r\n", b"")
    log = kp.log()
    assert "\x1b" not in log and "such\ruser" not in log
