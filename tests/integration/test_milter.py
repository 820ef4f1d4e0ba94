"""Mail filters against the real programs: opendkim signs what keypost
receives (the signature verified with Debian's python3-dkim), rspamd
rejects GTUBE and adds its headers; and hostile filters of the tests' own
(garbage, oversized packets, a filter that hangs up mid-message, changes
that make no sense) meet milter_default_action, never a crash or a lost
message."""
import glob
import os
import re
import shutil
import smtplib
import socket
import struct
import subprocess
import threading
import time

import pytest

from kptest import free_port, make_tmpdir
from postfix_peer import wait_for

GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


def send(kp, sender, rcpts, body, subject="hello", from_hdr=None):
    msg = (f"From: {from_hdr or sender}\r\nTo: {rcpts[0]}\r\nSubject: {subject}\r\n"
           f"Message-ID: <{time.time()}@test>\r\n\r\n{body}\r\n").encode()
    with smtplib.SMTP("127.0.0.1", kp.smtp_port, timeout=60) as s:
        s.ehlo("client.test")
        return s.sendmail(sender, rcpts, msg)


def wait_port(port, proc, what, timeout=60):
    def up():
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited: {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False
    wait_for(up, f"{what} did not listen on {port}", timeout=timeout)


# ---- opendkim -----------------------------------------------------------------

@pytest.fixture(scope="module")
def opendkim():
    if not shutil.which("opendkim") or not shutil.which("opendkim-genkey"):
        pytest.fail("opendkim is not installed: run scripts/install-deps.sh as root")
    d = make_tmpdir("kp-dkim-")
    r = subprocess.run(["opendkim-genkey", "-b", "2048", "-d", "example.org", "-s", "kp",
                        "-D", d], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    os.chmod(os.path.join(d, "kp.private"), 0o600)
    port = free_port()
    conf = os.path.join(d, "opendkim.conf")
    with open(conf, "w") as f:
        f.write(f"Syslog no\nSocket inet:{port}@127.0.0.1\nDomain example.org\n"
                f"Selector kp\nKeyFile {d}/kp.private\nMode sv\n"
                "Canonicalization relaxed/relaxed\nInternalHosts 127.0.0.1\n"
                f"PidFile {d}/pid\nBackground no\n"
                # the test directory lies below /tmp, which everyone may write
                "RequireSafeKeys false\n")
    proc = subprocess.Popen(["opendkim", "-f", "-x", conf], stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT)
    try:
        wait_port(port, proc, "opendkim")
        record = open(os.path.join(d, "kp.txt")).read()
        pubkey = "".join(re.findall(r'"([^"]*)"', record))
        yield port, pubkey
    finally:
        proc.terminate()
        proc.wait(20)
        shutil.rmtree(d, ignore_errors=True)


def verify_dkim(raw, pubkey):
    import dkim

    def dns(name, timeout=5):
        assert name == b"kp._domainkey.example.org.", name
        return pubkey.encode()
    msg = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return dkim.verify(msg, dnsfunc=dns)


def test_opendkim_signs_received_mail(make_server, opendkim):
    port, pubkey = opendkim
    kp = make_server(smtpd_milters=f"inet:127.0.0.1:{port}")
    assert send(kp, "alice@example.org", ["bob@example.org"], "signed, I hope") == {}
    files = kp.wait_delivered("bob@example.org", timeout=20)
    raw = open(files[0], "rb").read()
    assert b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.org; s=kp" \
        in raw.replace(b"\n\t", b" "), raw[:800]
    assert verify_dkim(raw, pubkey), raw[:1500]
    # The same id from the client= line to the delivery: one queue file.
    m = re.search(r"(\w+): client=unknown\[127\.0\.0\.1\]", kp.log())
    kp.wait_log(m.group(1) + r": to=<bob@example\.org>.*status=sent")


def test_a_dead_filter_means_tempfail_by_default(make_server):
    kp = make_server(smtpd_milters=f"inet:127.0.0.1:{free_port()}")
    with smtplib.SMTP("127.0.0.1", kp.smtp_port, timeout=30) as s:
        code, msg = s.ehlo("client.test")
        assert (code, msg) == (451, b"4.7.1 Service unavailable - try again later"), msg
        code, _ = s.mail("alice@example.org")
        assert code == 451
    kp.wait_log(r"milter inet:127\.0\.0\.1:\d+: connection lost; default_action=tempfail")
    assert kp.queue_files() == []


def test_a_dead_filter_is_passed_over_with_default_action_accept(make_server):
    kp = make_server(smtpd_milters=f"inet:127.0.0.1:{free_port()}",
                     milter_default_action="accept")
    assert send(kp, "alice@example.org", ["bob@example.org"], "through") == {}
    kp.wait_delivered("bob@example.org")


# ---- rspamd ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def rspamd():
    if not shutil.which("rspamd"):
        pytest.fail("rspamd is not installed: run scripts/install-deps.sh as root")
    d = make_tmpdir("kp-rspamd-")
    local = os.path.join(d, "local")
    os.makedirs(os.path.join(local, "local.d"))
    for sub in ("db", "run", "log"):
        os.makedirs(os.path.join(d, sub))
        shutil.chown(os.path.join(d, sub), "_rspamd", "_rspamd")
    proxy, normal, controller = free_port(), free_port(), free_port()
    files = {
        "worker-proxy.inc": f'bind_socket = "127.0.0.1:{proxy}";\nmilter = yes;\n'
                            'timeout = 120s;\nupstream "local" {\n  default = yes;\n'
                            '  self_scan = yes;\n}\n',
        "worker-normal.inc": f'bind_socket = "127.0.0.1:{normal}";\n',
        "worker-controller.inc": f'bind_socket = "127.0.0.1:{controller}";\n',
        # No network here: no DNS lists, a resolver that fails at once.
        "options.inc": 'dns {\n  nameserver = ["127.0.0.1:9"];\n  timeout = 0.2s;\n'
                       '  retransmits = 1;\n}\n',
        "milter_headers.conf": 'use = ["x-spamd-result", "x-spam-status"];\n'
                               'skip_local = false;\n'
                               'authenticated_headers = [];\n',
        "logging.inc": 'type = "console";\nlevel = "error";\n',
    }
    for name, text in files.items():
        with open(os.path.join(local, "local.d", name), "w") as f:
            f.write(text)
    os.chmod(d, 0o755)
    proc = subprocess.Popen(
        ["rspamd", "-f", "-u", "_rspamd", "-g", "_rspamd", "-c", "/etc/rspamd/rspamd.conf",
         f"--var=LOCAL_CONFDIR={local}", f"--var=DBDIR={d}/db", f"--var=RUNDIR={d}/run",
         f"--var=LOGDIR={d}/log"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        wait_port(proxy, proc, "rspamd", timeout=120)
        yield proxy
    finally:
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(d, ignore_errors=True)


def test_rspamd_rejects_gtube_and_adds_headers(make_server, rspamd):
    kp = make_server(smtpd_milters=f"inet:127.0.0.1:{rspamd}",
                     milter_content_timeout="60s")
    with pytest.raises(smtplib.SMTPDataError) as e:
        send(kp, "spammer@remote.test", ["bob@example.org"], GTUBE, subject="buy now")
    assert e.value.smtp_code == 554 or e.value.smtp_code == 550, e.value
    kp.wait_log(r"milter-reject: END-OF-MESSAGE from unknown\[127\.0\.0\.1\]: 5\d\d ")
    assert send(kp, "friend@remote.test", ["bob@example.org"], "just a note") == {}
    files = kp.wait_delivered("bob@example.org", timeout=30)
    raw = open(files[0], "rb").read()
    assert b"X-Spamd-Result:" in raw, raw[:1500]
    assert kp.delivered("bob@example.org") == files  # the GTUBE message is nowhere


# ---- hostile filters of the tests' own ------------------------------------------

class FakeMilter:
    """A milter that negotiates, then misbehaves as told at a command."""

    def __init__(self, at, answer):
        self.at, self.answer = at, answer
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.seen = []
        self.packets = []
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.session, args=(c,), daemon=True).start()

    def respond(self, c, cmd, body):
        c.sendall(self.packet(b"c"))

    @staticmethod
    def packet(cmd, data=b""):
        return struct.pack("!I", len(data) + 1) + cmd + data

    def session(self, c):
        f = c.makefile("rb")
        try:
            while True:
                head = f.read(4)
                if len(head) < 4:
                    return
                data = f.read(struct.unpack("!I", head)[0])
                cmd, body = data[:1], data[1:]
                self.seen.append(cmd)
                self.packets.append((cmd, body))
                if cmd == b"O":
                    c.sendall(self.packet(b"O", struct.pack("!III", 6, 0x1ff, 0)))
                elif cmd in (b"D", b"A"):
                    continue
                elif cmd == b"Q":
                    return
                elif cmd == self.at:
                    if self.answer is None:
                        c.close()
                        return
                    c.sendall(self.answer)
                else:
                    self.respond(c, cmd, body)
        except OSError:
            return


@pytest.mark.parametrize("name,at,answer,expect", [
    ("garbage", b"M", b"\x00\x00\x00\x02zz", 451),
    ("too long", b"R", struct.pack("!I", 50 * 1024 * 1024) + b"c", 451),
    ("hangs up in the body", b"B", None, 451),
    ("a bad reply code", b"M", FakeMilter.packet(b"y", b"250 fine\x00"), 451),
    ("a malformed recipient to add", b"E",
     FakeMilter.packet(b"+", b"<not an address>\x00") + FakeMilter.packet(b"a"), 451),
])
def test_hostile_filter_meets_default_action(make_server, name, at, answer, expect):
    fm = FakeMilter(at, answer)
    kp = make_server(smtpd_milters=f"inet:127.0.0.1:{fm.port}", milter_command_timeout="5s",
                     milter_content_timeout="5s")
    with smtplib.SMTP("127.0.0.1", kp.smtp_port, timeout=30) as s:
        s.ehlo("client.test")
        try:
            s.sendmail("alice@example.org", ["bob@example.org"],
                       b"Subject: x\r\n\r\n" + b"line\r\n" * 100)
            code = 250
        except smtplib.SMTPRecipientsRefused as e:
            code = list(e.recipients.values())[0][0]
        except smtplib.SMTPSenderRefused as e:
            code = e.smtp_code
        except smtplib.SMTPDataError as e:
            code = e.smtp_code
    assert code == expect, (name, code, kp.log())
    kp.wait_log(r"default_action=tempfail")
    assert kp.queue_files() == [] and kp.delivered("bob@example.org") == []


def test_filter_changes_are_applied(make_server):
    """Header changes (one for a header that is not there), a recipient
    added and one deleted, the sender changed, quarantine: all in one
    queue file under one id."""
    p = FakeMilter.packet
    changes = (p(b"h", b"X-Added\x00yes\x00") +
               p(b"i", struct.pack("!I", 0) + b"X-First\x00top\x00") +
               p(b"m", struct.pack("!I", 1) + b"Subject\x00changed\x00") +
               p(b"m", struct.pack("!I", 1) + b"X-Not-There\x00appended\x00") +
               p(b"m", struct.pack("!I", 1) + b"X-Drop\x00\x00") +
               p(b"+", b"<carol@example.org>\x00") + p(b"-", b"<bob@example.org>\x00") +
               p(b"e", b"<new-sender@example.org>\x00") + p(b"c"))
    fm = FakeMilter(b"E", changes)
    kp = make_server(smtpd_milters=f"inet:127.0.0.1:{fm.port}")
    with smtplib.SMTP("127.0.0.1", kp.smtp_port, timeout=30) as s:
        s.sendmail("alice@example.org", ["bob@example.org"],
                   b"Subject: original\r\nX-Drop: me\r\n\r\nbody line\r\n")
    files = kp.wait_delivered("carol@example.org")
    raw = open(files[0], "rb").read().decode()
    head = raw.split("\n\n", 1)[0]
    assert "Return-Path: <new-sender@example.org>" in head
    assert re.search(r"(?m)^X-First: top$", head) and "X-Added: yes" in head
    assert "Subject: changed" in head and "Subject: original" not in head
    assert "X-Not-There: appended" in head and "X-Drop" not in head
    assert raw.rstrip().endswith("body line")
    assert kp.delivered("bob@example.org") == []
    ids = set(re.findall(r"([0-9A-F]{16}): (?:client=|from=|to=)", kp.log()))
    assert len(ids) == 1, kp.log()
    assert not glob.glob(os.path.join(kp.queue, "tmp", "*"))


def test_quarantine_and_discard(make_server):
    p = FakeMilter.packet
    fm = FakeMilter(b"E", p(b"q", b"looks odd\x00") + p(b"a"))
    kp = make_server(smtpd_milters=f"inet:127.0.0.1:{fm.port}")
    assert send(kp, "alice@example.org", ["bob@example.org"], "held") == {}
    kp.wait_log(r"milter-hold: END-OF-MESSAGE .*milter triggers HOLD action \(looks odd\)")
    wait_for(lambda: kp.queue_files("hold"), lambda: kp.log())
    assert kp.delivered("bob@example.org") == []
    fm2 = FakeMilter(b"R", p(b"d"))
    kp2 = make_server(smtpd_milters=f"inet:127.0.0.1:{fm2.port}")
    assert send(kp2, "alice@example.org", ["bob@example.org"], "gone") == {}
    kp2.wait_log(r"discard")
    time.sleep(1)
    assert kp2.delivered("bob@example.org") == [] and kp2.queue_files() == []


def test_reject_codes_at_rcpt(make_server):
    fm = FakeMilter(b"R", FakeMilter.packet(b"y", b"550 5.7.1 not for you\x00"))
    kp = make_server(smtpd_milters=f"inet:127.0.0.1:{fm.port}")
    with smtplib.SMTP("127.0.0.1", kp.smtp_port, timeout=30) as s:
        s.ehlo("client.test")
        s.mail("alice@example.org")
        code, msg = s.rcpt("bob@example.org")
    assert (code, msg) == (550, b"5.7.1 not for you")
    kp.wait_log(r"NOQUEUE: milter-reject: RCPT from unknown\[127\.0\.0\.1\]: 550 5\.7\.1 not "
                r"for you; from=<alice@example\.org> to=<bob@example\.org> proto=ESMTP "
                r"helo=<client\.test>")


# ---- what a review found: each case once broke ---------------------------------

def smtp_session(kp):
    s = smtplib.SMTP("127.0.0.1", kp.smtp_port, timeout=30)
    s.ehlo("client.test")
    return s


def test_an_idle_filter_is_not_a_late_one(make_server):
    fm = FakeMilter(b"never", None)
    kp = make_server(smtpd_milters=f"inet:127.0.0.1:{fm.port}", milter_command_timeout="2s")
    with smtp_session(kp) as s:
        time.sleep(4)  # longer than the timeout, with nothing asked of the filter
        assert s.mail("alice@example.org")[0] == 250
        assert s.rcpt("bob@example.org")[0] == 250
        time.sleep(3)
        assert s.data(b"Subject: slow client\r\n\r\nhi\r\n")[0] == 250
    assert "timed out" not in kp.log()


def test_a_failed_filter_keeps_failing_no_bypass(make_server):
    fm = FakeMilter(b"M", b"\x00\x00\x00\x02zz")
    kp = make_server(smtpd_milters=f"inet:127.0.0.1:{fm.port}")
    with smtp_session(kp) as s:
        for _ in range(3):
            assert s.mail("alice@example.org")[0] == 451
        assert s.rcpt("bob@example.org")[0] == 503
    assert kp.queue_files() == [] and kp.delivered("bob@example.org") == []


def test_quarantine_as_default_action_holds_the_message(make_server):
    fm = FakeMilter(b"M", b"\x00\x00\x00\x02zz")
    kp = make_server(smtpd_milters=f"inet:127.0.0.1:{fm.port}",
                     milter_default_action="quarantine")
    assert send(kp, "alice@example.org", ["bob@example.org"], "odd filter") == {}
    wait_for(lambda: kp.queue_files("hold"), lambda: kp.log())
    assert kp.delivered("bob@example.org") == []


def test_big_headers_bodies_and_odd_indexes(make_server):
    p = FakeMilter.packet
    body = b"x" * 998 + b"\r\n"
    changes = (p(b"i", struct.pack("!I", 0xFFFFFFFF) + b"X-Last\x00appended\x00") +
               p(b"h", b"X-Spam\x00Yes\x00") +
               b"".join(p(b"b", body * 60) for _ in range(4)) + p(b"c"))
    fm = FakeMilter(b"E", changes)
    kp = make_server(smtpd_milters=f"inet:127.0.0.1:{fm.port}")
    long_ref = "References: " + " ".join(f"<m{i}@example.org>" for i in range(120))
    pads = "".join(f"X-Pad-{i}: {'p' * 90}\r\n" for i in range(700))  # about 70 KB
    with smtplib.SMTP("127.0.0.1", kp.smtp_port, timeout=30) as s:
        s.sendmail("alice@example.org", ["bob@example.org"],
                   (long_ref + "\r\n" + pads + "Subject: big\r\n\r\nsmall body\r\n").encode())
    raw = open(kp.wait_delivered("bob@example.org")[0], "rb").read()
    head, got_body = raw.split(b"\n\n", 1)
    assert b"X-Spam: Yes" in head and b"X-Last: appended" in head
    assert head.count(b"X-Pad-") == 700 and b"X-Pad-699: " + b"p" * 90 in head
    assert got_body == (b"x" * 998 + b"\n") * 240, len(got_body)
    sent = [b for c, b in fm.packets if c == b"L" and b.startswith(b"References\x00")]
    assert sent and sent[0].endswith(b"@example.org>\x00") and len(sent[0]) > 2000


def test_multi_line_reply_is_one_line(make_server):
    reply = b"550-5.7.1 first line\r\n550 5.7.1 last line\x00"
    fm = FakeMilter(b"R", FakeMilter.packet(b"y", reply))
    kp = make_server(smtpd_milters=f"inet:127.0.0.1:{fm.port}")
    with socket.create_connection(("127.0.0.1", kp.smtp_port), timeout=20) as c:
        f = c.makefile("rb")
        f.readline()
        c.sendall(b"EHLO client.test\r\n")
        while not f.readline().startswith(b"250 "):
            pass
        c.sendall(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nNOOP\r\n")
        assert f.readline() == b"250 2.1.0 Ok\r\n"
        assert f.readline() == b"550 5.7.1 last line\r\n"
        assert f.readline().startswith(b"250 ")


def test_deleting_an_aliased_recipient_deletes_its_expansion(make_server, tmpbase):
    p = FakeMilter.packet
    fm = FakeMilter(b"E", p(b"-", b"<sales@example.org>\x00") + p(b"c"))
    kp = make_server(smtpd_milters=f"inet:127.0.0.1:{fm.port}",
                     virtual_alias_maps="inline:{ sales@example.org=alice@example.org }")
    assert send(kp, "x@remote.test", ["sales@example.org", "bob@example.org"], "x") == {}
    kp.wait_delivered("bob@example.org")
    time.sleep(0.5)
    assert kp.delivered("alice@example.org") == []


def test_filters_see_tls_and_queue_id_macros(make_server):
    fm = FakeMilter(b"never", None)
    kp = make_server(smtpd_milters=f"inet:127.0.0.1:{fm.port}")
    import ssl
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP("127.0.0.1", kp.smtp_port, timeout=30) as s:
        s.starttls(context=ctx)
        s.ehlo("client.test")
        s.sendmail("alice@example.org", ["bob@example.org"], b"Subject: tls\r\n\r\nx\r\n")
    qid = re.search(r"([0-9A-F]{16}): client=", kp.log()).group(1)
    macros = b"".join(b for c, b in fm.packets if c == b"D")
    assert b"{tls_version}\x00TLSv1.3\x00" in macros, macros
    assert b"i\x00" + qid.encode() + b"\x00" in macros, macros


# ---- the sendmail command and relayed mail leave signed -----------------------

def test_sendmail_and_relayed_mail_leave_dkim_signed(make_server, opendkim):
    """non_smtpd_milters sign what the sendmail command submits, and what
    keypost relays leaves with the signature, verified at the receiver."""
    from test_relay import Peer
    from test_sendmail import sendmail
    port, pubkey = opendkim
    peer = Peer()
    try:
        kp = make_server(tls=False, non_smtpd_milters=f"inet:127.0.0.1:{port}",
                         relayhost=f"[127.0.0.1]:{peer.port}")
        r = sendmail(None, kp, ["-f", "alice@example.org", "carol@remote.test"],
                     b"From: alice@example.org\nTo: carol@remote.test\nSubject: cron\n\n"
                     b"report\n")
        assert r.returncode == 0, r.stderr
        data = wait_for(lambda: peer.messages and peer.messages[0]["data"],
                        lambda: kp.log(), timeout=30)
        assert b"DKIM-Signature:" in data, data[:600]
        assert verify_dkim(data, pubkey), data[:1500]
    finally:
        peer.stop()


def test_a_slow_filter_holds_only_its_own_session(make_server):
    class Slow(FakeMilter):
        def respond(self, c, cmd, body):
            if cmd == b"R" and b"slow@" in body:
                time.sleep(3)
            FakeMilter.respond(self, c, cmd, body)
    fm = Slow(b"never", None)
    kp = make_server(smtpd_milters=f"inet:127.0.0.1:{fm.port}", smtpd_worker_processes="1")
    took = {}

    def slow():
        with smtp_session(kp) as s:
            s.mail("a@example.org")
            t0 = time.monotonic()
            took["code"] = s.rcpt("slow@example.org")[0]
            took["time"] = time.monotonic() - t0
    th = threading.Thread(target=slow)
    th.start()
    time.sleep(1)
    t0 = time.monotonic()
    with smtp_session(kp) as s:
        assert s.mail("b@example.org")[0] == 250
        assert s.rcpt("fast@example.org")[0] == 250
    fast = time.monotonic() - t0
    th.join(30)
    assert took["code"] == 250 and took["time"] >= 2.5, took
    assert fast < 2, f"another session waited {fast:.1f}s for a slow filter"


def test_progress_extends_the_timeout_and_setsymlist_chooses_macros(make_server):
    """A filter that says "progress" may take longer than
    milter_command_timeout; one that asks for macros with SETSYMLIST gets
    those at RCPT instead of milter_rcpt_macros."""
    class Busy(FakeMilter):
        def session(self, c):
            self.conn = c
            FakeMilter.session(self, c)

        def respond(self, c, cmd, body):
            if cmd == b"R":
                for _ in range(3):
                    time.sleep(1.2)
                    c.sendall(self.packet(b"p"))
            FakeMilter.respond(self, c, cmd, body)
    fm = Busy(b"never", None)
    symlist = struct.pack("!I", 3) + b"{client_addr} {rcpt_addr}\x00"
    orig_packet = FakeMilter.packet

    def negotiate(cmd, data=b""):  # the O answer with a symbol list for RCPT
        if cmd == b"O":
            data = struct.pack("!III", 6, 0x1ff, 0) + symlist
        return orig_packet(cmd, data)
    fm.packet = negotiate
    kp = make_server(smtpd_milters=f"inet:127.0.0.1:{fm.port}", milter_command_timeout="2s")
    with smtp_session(kp) as s:
        assert s.mail("alice@example.org")[0] == 250
        t0 = time.monotonic()
        assert s.rcpt("bob@example.org")[0] == 250
        assert time.monotonic() - t0 >= 3.5  # longer than the timeout, with progress
    assert "timed out" not in kp.log()
    rcpt_macros = [b for c, b in fm.packets if c == b"D" and b.startswith(b"R")]
    assert rcpt_macros == [b"R{client_addr}\x00127.0.0.1\x00{rcpt_addr}\x00bob@example.org\x00"], \
        rcpt_macros
