"""The daemon's lifecycle and its queue: durability across a crash, retries
with backoff, the queue command, SIGTERM and SIGHUP, privilege separation
and the worker processes. Real keypost, real LMTP peers in threads, all on
loopback."""
import concurrent.futures
import os
import pwd
import re
import signal
import smtplib
import socket
import socketserver
import ssl
import subprocess
import threading
import time

import pytest

from kptest import PKI, free_port

# ---- helpers ---------------------------------------------------------------


def tls_client_context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def wait_until(pred, timeout=10, interval=0.05, what="condition"):
    deadline = time.time() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


def _stat(pid):
    """(state, ppid) of a process, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    rest = s[s.rindex(")") + 2:].split()
    return rest[0], int(rest[1])


def _all_pids():
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def children(pid):
    """Live (non-zombie) direct children of pid."""
    out = []
    for p in _all_pids():
        try:
            state, ppid = _stat(p)
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid and state != "Z":
            out.append(p)
    return sorted(out)


def descendants(pid):
    out, pending = [], [pid]
    while pending:
        for c in children(pending.pop()):
            out.append(c)
            pending.append(c)
    return out


def status_field(pid, name):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(name + ":"):
                return line.split(":", 1)[1].split()
    raise KeyError(name)


def unix_socket_inode(path):
    with open("/proc/net/unix") as f:
        next(f)
        for line in f:
            parts = line.split()
            if len(parts) >= 8 and parts[7] == path:
                return parts[6]
    return None


def holds_socket(pid, inode):
    d = f"/proc/{pid}/fd"
    try:
        for fd in os.listdir(d):
            try:
                if os.readlink(os.path.join(d, fd)) == f"socket:[{inode}]":
                    return True
            except OSError:
                pass
    except OSError:
        pass
    return False


def title(pid):
    """What ps shows for pid: keypost names each process by its role."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")[0].decode()
    except OSError:
        return ""


def roles(kp):
    """(qmgr pids, smtpd pids) among the master's children: the queue manager
    is the child that holds QUEUE/qmgr.sock bound; smtpd workers are named so
    (the log writer, "keypost: postlogd", is neither)."""
    master = kp.proc.pid
    inode = unix_socket_inode(os.path.join(kp.queue, "qmgr.sock"))
    kids = children(master)
    qmgr = [p for p in kids if inode and holds_socket(p, inode)]
    smtpd = [p for p in kids if p not in qmgr and title(p).startswith("keypost: smtpd ")]
    return qmgr, smtpd


def wait_roles(kp, nqmgr, nsmtpd, timeout=10):
    last = [None]

    def ok():
        last[0] = roles(kp)
        return len(last[0][0]) == nqmgr and len(last[0][1]) == nsmtpd

    try:
        wait_until(ok, timeout, what="process tree")
    except AssertionError:
        raise AssertionError(f"wanted {nqmgr} qmgr and {nsmtpd} smtpd children of "
                             f"{kp.proc.pid}, have {last[0]}; log:\n{kp.log()}")
    return last[0]


def processes_of(kp):
    """Every live process whose command line names this server's config."""
    out = []
    for p in _all_pids():
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                cmd = f.read()
            state, _ = _stat(p)
        except (OSError, ValueError, IndexError):
            continue
        # "keypost: ROLE -c CONFIG" (or the unchanged command line of a
        # process that has not set its title yet)
        words = cmd.split(b"\0")
        mine = kp.config.encode() in words or words[0].endswith(b" -c " + kp.config.encode())
        if mine and state != "Z":
            out.append(p)
    return out


def crash(kp):
    """SIGKILL keypost's master and every process below it, as a power cut
    would: freeze first so that nothing forks in between."""
    master = kp.proc.pid
    os.kill(master, signal.SIGSTOP)
    for c in children(master):
        try:
            os.kill(c, signal.SIGSTOP)
        except ProcessLookupError:
            pass
    for p in [master] + descendants(master) + processes_of(kp):
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert kp.proc.wait(timeout=5) == -signal.SIGKILL
    wait_until(lambda: not processes_of(kp), 5, what="killed processes to go away")
    kp.stderr.close()


def restart(kp, **params):
    kp.params.update({k: str(v) for k, v in params.items()})
    if not kp.stderr.closed:
        kp.stderr.close()
    kp.start()


class Raw:
    """A line-level SMTP client, for replies smtplib would hide."""

    def __init__(self, port, timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.f = self.sock.makefile("rb")

    def reply(self):
        lines = []
        while True:
            line = self.f.readline()
            if not line:
                raise EOFError("connection closed; got " + repr(lines))
            lines.append(line.decode(errors="replace").rstrip("\r\n"))
            if line[3:4] != b"-":
                return int(lines[-1][:3]), "\n".join(lines)

    def send(self, data):
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def cmd(self, line):
        self.send(line + "\r\n")
        return self.reply()

    def at_eof(self):
        try:
            return self.f.readline() == b""
        except ConnectionResetError:
            return True

    def close(self):
        self.f.close()
        self.sock.close()


class LMTPServer:
    """A tiny LMTP server in a thread. reply_for(rcpt) gives the RCPT reply;
    every accepted recipient gets its own 250 after the data."""

    def __init__(self, port, reply_for=None):
        self.port = port
        self.reply_for = reply_for or (lambda rcpt: "250 2.1.5 Ok")
        self.messages = []
        self.lock = threading.Lock()
        outer = self

        class Handler(socketserver.StreamRequestHandler):
            timeout = 10

            def w(self, text):
                self.wfile.write(text.encode() + b"\r\n")
                self.wfile.flush()

            def handle(self):
                self.w("220 lmtp.test LMTP ready")
                sender, rcpts = None, []
                while True:
                    raw = self.rfile.readline()
                    if not raw:
                        return
                    line = raw.decode(errors="replace").rstrip("\r\n")
                    up = line.upper()
                    if up.startswith("LHLO "):
                        self.w("250-lmtp.test")
                        self.w("250 ENHANCEDSTATUSCODES")
                    elif up.startswith("MAIL FROM:"):
                        sender = line[10:].strip().split(" ")[0].strip("<>")
                        rcpts = []
                        self.w("250 2.1.0 Ok")
                    elif up.startswith("RCPT TO:"):
                        rcpt = line[8:].strip().split(" ")[0].strip("<>")
                        reply = outer.reply_for(rcpt)
                        if reply.startswith("2"):
                            rcpts.append(rcpt)
                        self.w(reply)
                    elif up == "DATA":
                        self.w("354 End data with <CR><LF>.<CR><LF>")
                        body = []
                        while True:
                            raw = self.rfile.readline()
                            if not raw or raw in (b".\r\n", b".\n"):
                                break
                            body.append(raw[1:] if raw.startswith(b"..") else raw)
                        if not raw:
                            return
                        with outer.lock:
                            outer.messages.append({"sender": sender, "rcpts": list(rcpts),
                                                   "data": b"".join(body)})
                        for r in rcpts:
                            self.w(f"250 2.0.0 <{r}> delivered")
                    elif up == "RSET":
                        sender, rcpts = None, []
                        self.w("250 2.0.0 Ok")
                    elif up == "QUIT":
                        self.w("221 2.0.0 Bye")
                        return
                    else:
                        self.w("500 5.5.2 what?")

        class Server(socketserver.ThreadingTCPServer):
            allow_reuse_address = True
            daemon_threads = True

        self.server = Server(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def snapshot(self):
        with self.lock:
            return list(self.messages)

    def wait_messages(self, n, timeout=10):
        try:
            return wait_until(lambda: len(self.snapshot()) >= n and self.snapshot(), timeout,
                              what=f"{n} LMTP messages")
        except AssertionError:
            raise AssertionError(f"LMTP server got {len(self.snapshot())} messages, "
                                 f"wanted {n}")

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def lmtp_servers():
    started = []

    def factory(port, reply_for=None):
        s = LMTPServer(port, reply_for)
        started.append(s)
        return s

    yield factory
    for s in started:
        s.close()


def send(kp, sender, rcpts, body, port=None):
    """One message in its own session; returns the queue id."""
    with smtplib.SMTP("127.0.0.1", port or kp.smtp_port, timeout=10) as s:
        s.ehlo("client.test")
        code, _ = s.mail(sender)
        assert code == 250
        for r in rcpts:
            code, msg = s.rcpt(r)
            assert code == 250, msg
        code, msg = s.data(body)
        assert code == 250, msg
    m = re.search(rb"queued as ([0-9A-F]{16})", msg)
    assert m, msg
    return m.group(1).decode()


def dead_lmtp():
    """lmtp:inet: to a loopback port where nothing listens."""
    port = free_port()
    return port, f"lmtp:inet:127.0.0.1:{port}"


def queue_ids(kp, sub):
    return [f for f in kp.queue_files(sub) if re.fullmatch(r"[0-9A-F]{16}", f)]


# ---- durability and crash recovery -----------------------------------------


def test_crash_recovery_delivers_exactly_once(make_server):
    port, transport = dead_lmtp()
    kp = make_server(local_transport=transport)
    qid = send(kp, "bob@example.org", ["alice@example.org"],
               b"Subject: survives a crash\r\n\r\nhello\r\n")
    kp.wait_log(qid + r": to=<alice@example\.org>, relay=inet:127\.0\.0\.1:%d, delay=\d+, "
                r"status=deferred" % port)
    kp.wait_log(qid + r": deferred: 1 recipients left, next attempt in 1s \(attempt 1\)")
    assert queue_ids(kp, "active") == [qid]
    # A second client is in the middle of DATA when the power goes: its
    # message was never acknowledged and must never be delivered.
    c = Raw(kp.smtp_port)
    assert c.reply()[0] == 220
    for line, code in (("EHLO client.test", 250), ("MAIL FROM:<bob@example.org>", 250),
                       ("RCPT TO:<ghost@example.org>", 250), ("DATA", 354)):
        assert c.cmd(line)[0] == code, line
    c.send(b"Subject: half a message\r\n\r\n" + b"x" * 998 + b"\r\n" + b"y" * 150000)
    wait_until(lambda: queue_ids(kp, "tmp"), 5, what="a file in tmp/")

    crash(kp)
    c.close()
    # Nothing was lost with the processes: the message is still committed.
    assert queue_ids(kp, "active") == [qid]
    assert len(queue_ids(kp, "tmp")) == 1
    assert kp.delivered("alice@example.org") == []

    restart(kp, local_transport=f"maildir:{kp.mail}")
    files = kp.wait_delivered("alice@example.org")
    kp.wait_log(qid + r": removed")
    time.sleep(1.5)  # a second delivery would come within a backoff period
    files = kp.delivered("alice@example.org")
    assert len(files) == 1, files
    text = open(files[0]).read()
    assert "Subject: survives a crash" in text and "hello" in text
    assert len(re.findall(qid + r": to=<alice@example\.org>, relay=local, .*status=sent",
                          kp.log())) == 1
    assert queue_ids(kp, "active") == []
    assert queue_ids(kp, "state") == []
    assert queue_ids(kp, "tmp") == []  # the half message is gone...
    assert kp.delivered("ghost@example.org") == []  # ...and was never delivered
    assert "ghost@example.org" not in kp.log().split("started:")[-1]


# ---- retries ---------------------------------------------------------------


def test_deferred_then_retried_with_backoff(make_server, lmtp_servers):
    port, transport = dead_lmtp()
    kp = make_server(local_transport=transport, minimal_backoff_time="1s",
                     maximal_backoff_time="2s")
    qid = send(kp, "bob@example.org", ["alice@example.org"],
               b"Subject: retry me\r\n\r\nbody\r\n")
    kp.wait_log(qid + r": to=<alice@example\.org>, relay=inet:127\.0\.0\.1:%d, delay=\d+, "
                r"status=deferred \(connect to inet:127\.0\.0\.1:%d: " % (port, port))
    kp.wait_log(qid + r": deferred: 1 recipients left, next attempt in 1s \(attempt 1\)")
    # The backoff doubles, up to maximal_backoff_time.
    kp.wait_log(qid + r": deferred: 1 recipients left, next attempt in 2s \(attempt 2\)",
                timeout=6)
    assert queue_ids(kp, "active") == [qid]

    lmtp = lmtp_servers(port)
    msgs = lmtp.wait_messages(1, timeout=10)
    assert msgs[0]["sender"] == "bob@example.org"
    assert msgs[0]["rcpts"] == ["alice@example.org"]
    assert b"Subject: retry me" in msgs[0]["data"]
    kp.wait_log(qid + r": to=<alice@example\.org>, relay=inet:127\.0\.0\.1:%d, delay=\d+, "
                r"status=sent \(250 2\.0\.0 <alice@example\.org> delivered\)" % port)
    kp.wait_log(qid + r": removed")
    wait_until(lambda: not queue_ids(kp, "active") and not queue_ids(kp, "state"), 5,
               what="an empty queue")
    time.sleep(1.5)
    assert len(lmtp.snapshot()) == 1  # delivered once, not again


def test_lmtp_per_recipient_bounce_and_sent(make_server, lmtp_servers):
    port = free_port()

    def reply_for(rcpt):
        if rcpt == "nobody@example.org":
            return "550 5.1.1 <nobody@example.org>: Recipient address rejected: no such user"
        return "250 2.1.5 Ok"

    lmtp = lmtp_servers(port, reply_for)
    kp = make_server(local_transport=f"lmtp:inet:127.0.0.1:{port}")
    qid = send(kp, "bob@example.org", ["alice@example.org", "nobody@example.org"],
               b"Subject: half of it\r\n\r\nbody\r\n")
    kp.wait_log(qid + r": to=<nobody@example\.org>, relay=inet:127\.0\.0\.1:%d, delay=\d+, "
                r"status=bounced \(550 5\.1\.1 <nobody@example\.org>" % port)
    kp.wait_log(qid + r": to=<alice@example\.org>, relay=inet:127\.0\.0\.1:%d, delay=\d+, "
                r"status=sent" % port)
    m = kp.wait_log(qid + r": sender non-delivery notification: ([0-9A-F]{16})")
    dsn = m.group(1)
    kp.wait_log(qid + r": removed")
    assert not re.search(qid + r": to=<alice@example\.org>.*status=(deferred|bounced)", kp.log())
    # The original went to alice only; the notice about nobody went to bob
    # with the null sender, through the same LMTP server.
    msgs = lmtp.wait_messages(2)
    orig = [x for x in msgs if x["sender"] == "bob@example.org"]
    notice = [x for x in msgs if x["sender"] == ""]
    assert len(orig) == 1 and orig[0]["rcpts"] == ["alice@example.org"], msgs
    assert len(notice) == 1 and notice[0]["rcpts"] == ["bob@example.org"], msgs
    assert b"nobody@example.org" in notice[0]["data"]
    assert b"alice@example.org" not in notice[0]["data"].split(b"Content-Type: message/delivery")[0]
    kp.wait_log(dsn + r": removed")
    wait_until(lambda: not queue_ids(kp, "active") and not queue_ids(kp, "state"), 5,
               what="an empty queue")


# ---- the queue command -----------------------------------------------------


def test_queue_command_list_hold_release_delete_flush(make_server, lmtp_servers):
    port, transport = dead_lmtp()
    kp = make_server(local_transport=transport, minimal_backoff_time="1h",
                     maximal_backoff_time="2h")
    a = send(kp, "bob@example.org", ["alice@example.org"], b"Subject: A\r\n\r\na\r\n")
    b = send(kp, "carol@example.org", ["dave@example.org", "erin@example.org"],
             b"Subject: B\r\n\r\nb\r\n")
    for qid in (a, b):
        kp.wait_log(qid + r": deferred: \d recipients left, next attempt in 3600s \(attempt 1\)")

    def qcli(*args, check=False):
        return kp.cli("queue", *args, "-c", kp.config, check=check)

    r = qcli("list")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert re.search(rf"^{a}  +\d+ \S+ <bob@example\.org>$", out, re.M), out
    assert re.search(rf"^{b}  +\d+ \S+ <carol@example\.org>$", out, re.M), out
    assert re.search(r"^    alice@example\.org$", out, re.M), out
    assert re.search(r"^    dave@example\.org$", out, re.M), out
    assert re.search(r"^    erin@example\.org$", out, re.M), out
    assert re.search(r"^    attempts=1 next=3\d{3}s$", out, re.M), out

    # Bad ids: refused with a clear message and a failing exit code.
    r = qcli("hold", "not-an-id")
    assert r.returncode != 0 and 'not a queue id' in r.stderr, r
    r = qcli("delete", "0123456789ABCDEF")
    assert r.returncode != 0 and "0123456789ABCDEF: no such message" in r.stderr, r
    r = qcli("release", a)  # not on hold
    assert r.returncode != 0 and "no such message on hold" in r.stderr, r
    r = qcli("hold")
    assert r.returncode != 0 and "usage" in r.stderr, r

    r = qcli("hold", a)
    assert r.returncode == 0 and r.stdout.strip() == f"{a}: held", r
    assert a in queue_ids(kp, "hold") and a not in queue_ids(kp, "active")
    out = qcli("list").stdout
    assert re.search(rf"^{a}! +\d+ \S+ <bob@example\.org>$", out, re.M), out

    r = qcli("delete", b)
    assert r.returncode == 0 and r.stdout.strip() == f"{b}: deleted", r
    assert b not in queue_ids(kp, "active") and b not in queue_ids(kp, "state")
    assert b not in qcli("list").stdout

    # The peer is back. A flush must not touch a held or deleted message.
    lmtp = lmtp_servers(port)
    r = qcli("flush")
    assert r.returncode == 0 and "flush requested" in r.stdout, r
    time.sleep(2)
    assert lmtp.snapshot() == []

    r = qcli("release", a)
    assert r.returncode == 0 and r.stdout.strip() == f"{a}: released", r
    assert a in queue_ids(kp, "active") and a not in queue_ids(kp, "hold")
    out = qcli("list").stdout
    assert re.search(rf"^{a}  +\d+ ", out, re.M) and f"{a}!" not in out, out
    # Released, it keeps its backoff of an hour: no retry yet...
    time.sleep(1.5)
    assert lmtp.snapshot() == []
    # ...until a flush.
    r = qcli("flush")
    assert r.returncode == 0, r
    msgs = lmtp.wait_messages(1, timeout=5)
    assert msgs[0]["rcpts"] == ["alice@example.org"] and b"Subject: A" in msgs[0]["data"]
    kp.wait_log(a + r": to=<alice@example\.org>, relay=inet:127\.0\.0\.1:%d, delay=\d+, "
                r"status=sent" % port)
    kp.wait_log(a + r": removed")
    assert qcli("list").stdout.strip() == ""
    assert queue_ids(kp, "active") == [] and queue_ids(kp, "state") == []
    assert len(lmtp.snapshot()) == 1  # B was deleted: never delivered

    assert kp.stop() == 0
    r = qcli("flush")
    assert r.returncode != 0 and "the queue manager is not running" in r.stderr, r


# ---- SIGTERM ---------------------------------------------------------------


def test_sigterm_idle_sessions_get_421_and_exit_0(make_server):
    kp = make_server()
    c1 = Raw(kp.smtp_port)
    assert c1.reply()[0] == 220
    assert c1.cmd("EHLO client.test")[0] == 250
    c2 = Raw(kp.smtp_port)
    assert c2.reply()[0] == 220
    kp.signal(signal.SIGTERM)
    for c in (c1, c2):
        code, text = c.reply()
        assert code == 421 and "4.3.2" in text, text
        assert c.at_eof()
        c.close()
    assert kp.proc.wait(timeout=10) == 0, kp.output()
    kp.wait_log(r"master\[\d+\]: stopped")


def test_sigterm_mid_data_finishes_message(make_server):
    kp = make_server()
    c = Raw(kp.smtp_port)
    assert c.reply()[0] == 220
    assert c.cmd("EHLO client.test")[0] == 250
    assert c.cmd("MAIL FROM:<bob@example.org>")[0] == 250
    assert c.cmd("RCPT TO:<alice@example.org>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send("Subject: in flight\r\n\r\nfirst half\r\n")
    time.sleep(0.2)
    kp.signal(signal.SIGTERM)
    kp.wait_log(r"stopping: \d+ processes")
    time.sleep(0.3)
    assert kp.proc.poll() is None  # waits for the session to finish
    c.send("second half\r\n.\r\n")
    code, text = c.reply()
    assert code == 250, text
    qid = re.search(r"queued as ([0-9A-F]{16})", text).group(1)
    code, text = c.cmd("NOOP")
    assert code == 421 and "4.3.2" in text, text
    assert c.at_eof()
    c.close()
    assert kp.proc.wait(timeout=10) == 0, kp.output()

    # Not lost: queued or already delivered; after a restart, delivered once.
    assert qid in queue_ids(kp, "active") or kp.delivered("alice@example.org"), kp.log()
    restart(kp)
    files = kp.wait_delivered("alice@example.org")
    kp.wait_log(qid + r": removed")
    time.sleep(1.2)
    files = kp.delivered("alice@example.org")
    assert len(files) == 1
    text = open(files[0]).read()
    assert "first half" in text and "second half" in text
    assert queue_ids(kp, "active") == []


# ---- SIGHUP ----------------------------------------------------------------


def der_of(crt):
    return ssl.PEM_cert_to_DER_cert(open(crt).read())


def peer_cert(kp):
    """The DER certificate a new STARTTLS client sees."""
    with smtplib.SMTP("127.0.0.1", kp.smtp_port, timeout=10) as s:
        s.ehlo("client.test")
        s.starttls(context=tls_client_context())
        der = s.sock.getpeercert(binary_form=True)
        code, _ = s.ehlo("client.test")
        assert code == 250
    return der


def cn_of(der):
    """The subject CN of a DER certificate, via the openssl CLI."""
    r = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-subject",
                        "-nameopt", "multiline"], input=der, capture_output=True, check=True)
    m = re.search(rb"commonName\s*=\s*(\S+)", r.stdout)
    return m.group(1).decode() if m else None


def new_banner(kp):
    s = socket.create_connection(("127.0.0.1", kp.smtp_port), timeout=10)
    try:
        return s.makefile("rb").readline().decode()
    finally:
        s.close()


def test_sighup_reload_certificate_and_refused_reload(make_server, tmpbase):
    d = os.path.join(tmpbase, "hup-pki")
    os.makedirs(d)
    p = PKI(d)
    old_crt, old_key = p.leaf("old.keypost.test", eku="serverAuth")
    new_crt, new_key = p.leaf("new.keypost.test", eku="serverAuth")
    crt, key = os.path.join(d, "server.crt"), os.path.join(d, "server.key")
    for src, dst in ((old_crt, crt), (old_key, key)):
        with open(src, "rb") as i, open(dst, "wb") as o:
            o.write(i.read())
    kp = make_server(smtpd_tls_cert_file=crt, smtpd_tls_key_file=key)
    _, smtpd_before = wait_roles(kp, 1, 2)

    # An open session, on TLS with the old certificate, idle after EHLO.
    a = smtplib.SMTP("127.0.0.1", kp.smtp_port, timeout=10)
    a.ehlo("client.test")
    a.starttls(context=tls_client_context())
    a.ehlo("client.test")
    assert a.sock.getpeercert(binary_form=True) == der_of(old_crt)
    assert cn_of(der_of(old_crt)) == "old.keypost.test"

    # New key and certificate (a different CN), replaced atomically; new banner.
    for src, dst in ((new_key, key), (new_crt, crt)):
        with open(src, "rb") as i, open(dst + ".new", "wb") as o:
            o.write(i.read())
        os.replace(dst + ".new", dst)
    kp.params["smtpd_banner"] = "$myhostname ESMTP reloaded"
    kp.write_config()
    kp.signal(signal.SIGHUP)
    kp.wait_log(r"reload: configuration, certificates and tables re-read")
    time.sleep(0.3)

    # The old session still works.
    a.sendmail("bob@example.org", ["alice@example.org"], b"Subject: across reload\r\n\r\nx\r\n")
    kp.wait_delivered("alice@example.org")
    # New sessions get the new certificate and configuration, every time.
    for _ in range(4):
        assert "ESMTP reloaded" in new_banner(kp)
        der = peer_cert(kp)
        assert der == der_of(new_crt) and cn_of(der) == "new.keypost.test"
    a.quit()
    # The retired worker leaves once its session is over.
    _, smtpd_after = wait_roles(kp, 1, 2)
    assert not set(smtpd_after) & set(smtpd_before)

    # A broken file: reload refused, the old configuration keeps running.
    kp.params["smtpd_banner"] = "$myhostname ESMTP broken"
    kp.write_config()
    with open(kp.config, "a") as f:
        f.write("message_size_limit = lots\n")
    kp.signal(signal.SIGHUP)
    kp.wait_log(r"reload refused: the configuration has errors; still running the old one")
    kp.wait_log(r"reload: .*bad value for message_size_limit")
    time.sleep(0.3)
    assert kp.proc.poll() is None
    assert wait_roles(kp, 1, 2)[1] == smtpd_after  # nothing restarted
    assert "ESMTP reloaded" in new_banner(kp)
    assert peer_cert(kp) == der_of(new_crt)
    send(kp, "bob@example.org", ["frank@example.org"], b"Subject: after refusal\r\n\r\nx\r\n")
    kp.wait_delivered("frank@example.org")


# ---- privileges and processes ----------------------------------------------


def test_children_run_as_mail_owner(make_server):
    assert os.geteuid() == 0, "the privilege drop is tested as root: run the tests as root"
    kp = make_server()
    owner = pwd.getpwnam("keypost")
    qmgr, smtpd = wait_roles(kp, 1, 2)
    master = kp.proc.pid
    assert status_field(master, "Uid") == ["0"] * 4
    for pid in qmgr + smtpd:
        assert status_field(pid, "Uid") == [str(owner.pw_uid)] * 4, pid
        assert status_field(pid, "Gid") == [str(owner.pw_gid)] * 4, pid
        assert int(status_field(pid, "CapEff")[0], 16) == 0, pid
        assert int(status_field(pid, "CapPrm")[0], 16) == 0, pid
        assert status_field(pid, "Groups") in ([], [str(owner.pw_gid)]), pid
    # What they write belongs to the mail owner too.
    qid = send(kp, "bob@example.org", ["alice@example.org"], b"Subject: owner\r\n\r\nx\r\n")
    files = kp.wait_delivered("alice@example.org")
    assert os.stat(files[0]).st_uid == owner.pw_uid
    kp.wait_log(qid + r": removed")


def test_worker_processes_and_concurrent_sessions(make_server):
    n = 50
    kp = make_server(smtpd_worker_processes=2)
    kp.wait_log(r"started: 1 listeners, 2 smtpd workers")
    qmgr, smtpd = wait_roles(kp, 1, 2)
    for pid in smtpd:  # an smtpd worker runs its commit thread besides the loop
        assert int(status_field(pid, "Threads")[0]) >= 2, pid

    barrier = threading.Barrier(n, timeout=20)
    per_session = 2

    def one(i):
        with smtplib.SMTP("127.0.0.1", kp.smtp_port, timeout=20) as s:
            s.ehlo(f"client{i}.test")
            barrier.wait()  # all sessions open at once
            for k in range(per_session):
                refused = s.sendmail(f"sender{i}@example.org", [f"user{i}@example.org"],
                                     f"Subject: concurrent {i}.{k}\r\n\r\nbody\r\n".encode())
                assert refused == {}
        return i

    with concurrent.futures.ThreadPoolExecutor(max_workers=n) as ex:
        done = list(ex.map(one, range(n)))
    assert done == list(range(n))
    committed = re.findall(r"([0-9A-F]{16}): from=<sender\d+@example\.org>", kp.log())
    assert len(committed) == n * per_session

    def all_delivered():
        return all(len(kp.delivered(f"user{i}@example.org")) >= per_session for i in range(n))

    try:
        wait_until(all_delivered, 10, what="every message delivered")
    except AssertionError:
        stuck = [q for q in committed if not re.search(q + r": removed", kp.log())]
        tail = "\n".join(kp.log().splitlines()[-20:])
        raise AssertionError(f"{len(stuck)} of {len(committed)} accepted messages not delivered "
                             f"after 10s, still in active/: {stuck}; log tail:\n{tail}")
    for i in range(n):
        files = kp.delivered(f"user{i}@example.org")
        assert len(files) == per_session
        subjects = sorted(re.search(r"Subject: concurrent (\S+)", open(f).read()).group(1)
                          for f in files)
        assert subjects == sorted(f"{i}.{k}" for k in range(per_session))
    # Only the two smtpd workers took connections.
    connects = re.findall(r"keypost/smtpd\[(\d+)\]: connect from", kp.log())
    assert {int(p) for p in connects} <= set(smtpd), (connects, smtpd)
    assert len(connects) in (n, n + 1)  # n sessions, and the probe of Keypost.start()
    wait_until(lambda: not queue_ids(kp, "active"), 10, what="an empty queue")
