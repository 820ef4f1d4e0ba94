"""Client host names, as Postfix's smtpd finds them: a PTR lookup of the
client address and forward confirmation (an A record of the PTR name must be
the address), made asynchronously before the greeting.

A private Unbound on 127.0.0.1 serves the reverse zone 127.in-addr.arpa
(overriding Unbound's built-in loopback zone) and peer.test; clients connect
from different loopback addresses by binding their socket:

  127.0.0.2  PTR good.peer.test,    A 127.0.0.2           verified
  127.0.0.3  PTR forged.peer.test,  A 127.0.0.33          not confirmed
  127.0.0.4  no PTR (NXDOMAIN)
  127.0.0.5  the PTR query gets SERVFAIL (forwarded to a stub that says so)
  127.0.0.6  PTR flaky.broken.test, whose A query gets SERVFAIL

A second stub never answers at all, for the timeout. The expectations are
Postfix's (smtpd_peer.c, smtpd_check.c): where keypost differs, a test fails."""
import os
import re
import shutil
import smtplib
import socket
import socketserver
import struct
import subprocess
import threading
import time

import pytest

from kptest import free_port, make_tmpdir
from postfix_peer import need, need_root, read, wait_for

SENDER = "sender@example.org"
RCPT = "user@example.org"

ZONE = [
    "2.0.0.127.in-addr.arpa. PTR good.peer.test.",
    "3.0.0.127.in-addr.arpa. PTR forged.peer.test.",
    "6.0.0.127.in-addr.arpa. PTR flaky.broken.test.",
    "good.peer.test. A 127.0.0.2",
    "forged.peer.test. A 127.0.0.33",
]


# ---- DNS: two stubs and Unbound ----------------------------------------------

class DnsStub:
    """A UDP server on 127.0.0.1 that answers every query with SERVFAIL,
    or (silent=True) reads queries and never answers."""

    def __init__(self, silent=False):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.silent = silent
        self.queries = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                data, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            self.queries += 1
            if self.silent or len(data) < 12:
                continue
            qid, flags = struct.unpack(">HH", data[:4])
            # QR, the client's RD, RA, rcode 2 (SERVFAIL); the question echoed
            answer = struct.pack(">HHHHHH", qid, 0x8000 | (flags & 0x0100) | 0x0080 | 2,
                                 1, 0, 0, 0) + data[12:]
            self.sock.sendto(answer, peer)

    def stop(self):
        self.sock.close()


def dns_query(port, name, qtype):
    q = struct.pack(">HHHHHH", 0x5050, 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".")) + b"\0"
    q += struct.pack(">HH", qtype, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(1.0)
        s.sendto(q, ("127.0.0.1", port))
        data, _ = s.recvfrom(4096)
    _, flags, _, ancount, _, _ = struct.unpack(">HHHHHH", data[:12])
    return flags & 0xF, ancount


class Unbound:
    """`unbound -d`: answers 127.in-addr.arpa and peer.test from local data,
    forwards 5.0.0.127.in-addr.arpa and broken.test to the SERVFAIL stub,
    and logs every query it gets."""

    def __init__(self, servfail_port):
        self.bin = need("unbound")
        self.dir = make_tmpdir("kp-unbound-")
        self.port = free_port()
        self.logfile = os.path.join(self.dir, "unbound.log")
        self.conf = os.path.join(self.dir, "unbound.conf")
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
    log-queries: yes
    num-threads: 1
    access-control: 127.0.0.0/8 allow
    module-config: "iterator"
    do-not-query-localhost: no
    # replaces Unbound's built-in loopback reverse zone (localhost only)
    local-zone: "127.in-addr.arpa." static
    local-zone: "5.0.0.127.in-addr.arpa." transparent
    local-zone: "peer.test." static
    local-zone: "broken.test." transparent
{data}
forward-zone:
    name: "5.0.0.127.in-addr.arpa."
    forward-addr: 127.0.0.1@{servfail_port}
forward-zone:
    name: "broken.test."
    forward-addr: 127.0.0.1@{servfail_port}
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
                return dns_query(self.port, "2.0.0.127.in-addr.arpa", 12) == (0, 1)
            except OSError:
                return False
        wait_for(ready, lambda: "unbound does not answer: " + self.output())
        return self

    def output(self):
        return read(os.path.join(self.dir, "stderr")) + read(self.logfile)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def dns():
    need_root("binding client sockets to 127.0.0.x")
    servfail = DnsStub()
    u = Unbound(servfail.port)
    try:
        # the expectations themselves, so that a failure below is keypost's
        u.start()
        assert dns_query(u.port, "4.0.0.127.in-addr.arpa", 12) == (3, 0)
        assert dns_query(u.port, "5.0.0.127.in-addr.arpa", 12)[0] == 2
        assert dns_query(u.port, "flaky.broken.test", 1)[0] == 2
        yield u
    finally:
        u.stop()
        servfail.stop()


@pytest.fixture
def blackhole():
    stub = DnsStub(silent=True)
    yield stub
    stub.stop()


# ---- a policy server that records requests ------------------------------------

class Recorder:
    """A Postfix policy server on 127.0.0.1 answering DUNNO; keeps every
    request's attributes."""

    def __init__(self):
        self.requests = []
        outer = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                attrs = {}
                for raw in self.rfile:
                    line = raw.decode().rstrip("\n")
                    if line:
                        name, _, value = line.partition("=")
                        attrs[name] = value
                        continue
                    outer.requests.append(attrs)
                    attrs = {}
                    self.wfile.write(b"action=DUNNO\n\n")

        class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
            daemon_threads = True
            allow_reuse_address = True
        self.server = Server(("127.0.0.1", 0), Handler)
        self.target = f"inet:127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()

    def for_address(self, addr):
        return [r for r in self.requests if r.get("client_address") == addr]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorder():
    r = Recorder()
    yield r
    r.stop()


# ---- helpers ---------------------------------------------------------------------

def server(make_server, resolver_port, **params):
    """keypost with name lookups on, asking resolver_port."""
    params.setdefault("smtpd_peername_lookup", "yes")
    params.setdefault("smtpd_worker_processes", "1")
    return make_server(dns_resolver=f"127.0.0.1@{resolver_port}", **params)


def client(kp, source, timeout=20):
    return smtplib.SMTP("127.0.0.1", kp.smtp_port, timeout=timeout,
                        source_address=(source, 0))


def rcpt_reply(kp, source):
    with client(kp, source) as s:
        s.ehlo("helo.client.test")
        code, text = s.mail(SENDER)
        assert code == 250, text
        return s.rcpt(RCPT)


UNKNOWN_CHECKS = ("reject_unknown_reverse_client_hostname, reject_unknown_client_hostname")


# ---- the cases -------------------------------------------------------------------

def test_verified_name_everywhere(make_server, dns, recorder):
    """127.0.0.2: PTR and A agree. The name is in the connect line, the
    Received: header, the policy request, and check_client_access finds it
    by its parent domain."""
    kp = server(make_server, dns.port, unknown_client_reject_code="550",
                smtpd_client_restrictions=f"check_policy_service {recorder.target}, "
                                          f"{UNKNOWN_CHECKS}",
                smtpd_recipient_restrictions="check_client_access "
                                             "inline:{ { peer.test = PREPEND X-Peer: by-name } }")
    with client(kp, "127.0.0.2") as s:
        s.ehlo("helo.client.test")
        s.sendmail(SENDER, [RCPT], b"Subject: named\r\n\r\nbody\r\n")
    kp.wait_log(r"connect from good\.peer\.test\[127\.0\.0\.2\]:\d+")
    kp.wait_log(r"disconnect from good\.peer\.test\[127\.0\.0\.2\]")
    text = open(kp.wait_delivered(RCPT)[0]).read()
    assert "X-Peer: by-name" in text, text
    assert re.search(r"Received: from helo\.client\.test \(good\.peer\.test \[127\.0\.0\.2\]\)",
                     text), text
    req = recorder.for_address("127.0.0.2")
    assert req and req[0]["client_name"] == "good.peer.test", req
    assert req[0]["reverse_client_name"] == "good.peer.test", req


def test_unconfirmed_ptr_is_only_the_reverse_name(make_server, dns, recorder):
    """127.0.0.3: the PTR name's A record is another address. Postfix: the
    client is unknown (and name-based access does not apply), the reverse
    name is kept, and reject_unknown_client_hostname says 5.7.25."""
    kp = server(make_server, dns.port, unknown_client_reject_code="550",
                smtpd_client_restrictions=f"check_client_access "
                                          f"inline:{{ peer.test = OK }}, "
                                          f"check_policy_service {recorder.target}, "
                                          f"{UNKNOWN_CHECKS}")
    code, text = rcpt_reply(kp, "127.0.0.3")
    assert (code, text) == (550, b"5.7.25 Client host rejected: cannot find your hostname, "
                                 b"[127.0.0.3]")
    kp.wait_log(r"connect from unknown\[127\.0\.0\.3\]")
    kp.wait_log(r"hostname forged\.peer\.test does not resolve to address 127\.0\.0\.3")
    kp.wait_log(r"NOQUEUE: reject: RCPT from unknown\[127\.0\.0\.3\]: 550 5\.7\.25 ")
    req = recorder.for_address("127.0.0.3")
    assert req and req[0]["client_name"] == "unknown", req
    assert req[0]["reverse_client_name"] == "forged.peer.test", req


@pytest.mark.parametrize("code", [None, "550"])
def test_no_ptr_is_a_permanent_failure(make_server, dns, recorder, code):
    """127.0.0.4: NXDOMAIN. Both names unknown; the reply code is
    unknown_client_reject_code (Postfix's default 450)."""
    params = {"unknown_client_reject_code": code} if code else {}
    kp = server(make_server, dns.port,
                smtpd_client_restrictions=f"check_policy_service {recorder.target}, "
                                          f"{UNKNOWN_CHECKS}", **params)
    reply = rcpt_reply(kp, "127.0.0.4")
    want = code or "450"
    assert reply == (int(want), f"{want[0]}.7.1 Client host rejected: cannot find your "
                                f"reverse hostname, [127.0.0.4]".encode())
    kp.wait_log(r"connect from unknown\[127\.0\.0\.4\]")
    req = recorder.for_address("127.0.0.4")
    assert req and req[0]["client_name"] == "unknown", req
    assert req[0]["reverse_client_name"] == "unknown", req


def test_no_ptr_with_hostname_check_only(make_server, dns):
    kp = server(make_server, dns.port, unknown_client_reject_code="554",
                smtpd_client_restrictions="reject_unknown_client_hostname")
    assert rcpt_reply(kp, "127.0.0.4") == (554, b"5.7.25 Client host rejected: cannot find "
                                                b"your hostname, [127.0.0.4]")


def test_servfail_is_temporary(make_server, dns, recorder):
    """127.0.0.5: SERVFAIL for the PTR. The greeting is not delayed, and the
    rejects are 450 even with unknown_client_reject_code = 550."""
    kp = server(make_server, dns.port, unknown_client_reject_code="550",
                smtpd_client_restrictions=f"check_policy_service {recorder.target}, "
                                          f"{UNKNOWN_CHECKS}")
    start = time.time()
    with client(kp, "127.0.0.5") as s:
        assert time.time() - start < 3
        s.ehlo("helo.client.test")
        s.mail(SENDER)
        assert s.rcpt(RCPT) == (450, b"4.7.1 Client host rejected: cannot find your reverse "
                                     b"hostname, [127.0.0.5]")
    kp.wait_log(r"connect from unknown\[127\.0\.0\.5\]")
    req = recorder.for_address("127.0.0.5")
    assert req and req[0]["reverse_client_name"] == "unknown", req
    kp2 = server(make_server, dns.port, unknown_client_reject_code="550",
                 smtpd_client_restrictions="reject_unknown_client_hostname")
    assert rcpt_reply(kp2, "127.0.0.5")[0] == 450


def test_forward_servfail_keeps_the_reverse_name(make_server, dns, recorder):
    """127.0.0.6: a PTR name whose A lookup fails temporarily: the reverse
    name is known, the client name is unknown for now (450, not 5xx)."""
    kp = server(make_server, dns.port, unknown_client_reject_code="550",
                smtpd_client_restrictions=f"check_policy_service {recorder.target}, "
                                          f"{UNKNOWN_CHECKS}")
    assert rcpt_reply(kp, "127.0.0.6") == (450, b"4.7.25 Client host rejected: cannot find "
                                                b"your hostname, [127.0.0.6]")
    req = recorder.for_address("127.0.0.6")
    assert req and req[0]["reverse_client_name"] == "flaky.broken.test", req
    assert req[0]["client_name"] == "unknown", req


def test_lookup_off_asks_no_dns(make_server, dns):
    """smtpd_peername_lookup = no: no query at all; the client is unknown
    for good (Postfix: a permanent status)."""
    kp = server(make_server, dns.port, smtpd_peername_lookup="no",
                unknown_client_reject_code="550",
                smtpd_client_restrictions="reject_unknown_client_hostname")
    before = len(read(dns.logfile))
    assert rcpt_reply(kp, "127.0.0.2")[0] == 550
    kp.wait_log(r"connect from unknown\[127\.0\.0\.2\]")
    # a query made now shows up in Unbound's log: the log is being written
    dns_query(dns.port, "canary.peer.test", 1)
    wait_for(lambda: "canary.peer.test" in read(dns.logfile)[before:],
             lambda: "unbound logs no queries: " + read(dns.logfile))
    assert "in-addr.arpa" not in read(dns.logfile)[before:]


def test_timeout_greets_in_time_and_defers(make_server, blackhole):
    """A resolver that never answers: every client, even several at once on
    one worker, is greeted within smtpd_peername_lookup_timeout + 1 s; the
    name is unknown for a temporary reason, so 450."""
    kp = server(make_server, blackhole.port, smtpd_peername_lookup_timeout="2s",
                unknown_client_reject_code="550",
                smtpd_client_restrictions="reject_unknown_client_hostname")
    times = {}

    def one(i):
        start = time.time()
        with client(kp, f"127.0.0.{10 + i}") as s:
            times[i] = time.time() - start
            s.ehlo("helo.client.test")
            s.mail(SENDER)
            times[f"rcpt{i}"] = s.rcpt(RCPT)
    threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for i in range(4):
        assert 1.5 <= times[i] <= 3.0, times
        assert times[f"rcpt{i}"] == (450, f"4.7.25 Client host rejected: cannot find your "
                                          f"hostname, [127.0.0.{10 + i}]".encode()), times
    assert blackhole.queries >= 4
    kp.wait_log(r"connect from unknown\[127\.0\.0\.10\]")
    kp.wait_log(r"127\.0\.0\.10: client name lookup timed out")


def test_client_gone_during_lookup(make_server, blackhole):
    """Clients that hang up while their name is looked up, or are still
    waiting when keypost stops, cost nothing and crash nothing (the sanitizer
    build is checked at teardown)."""
    kp = server(make_server, blackhole.port, smtpd_peername_lookup_timeout="3s")
    for i in range(5):
        with socket.create_connection(("127.0.0.1", kp.smtp_port),
                                      source_address=(f"127.0.0.{20 + i}", 0)) as s:
            if i % 2:
                s.sendall(b"EHLO early.client.test\r\n")  # input before the greeting
    kp.wait_log(r"lost connection during the client name lookup of 127\.0\.0\.20")
    # an impatient client that sent early input is served once the name is known
    with socket.create_connection(("127.0.0.1", kp.smtp_port),
                                  source_address=("127.0.0.30", 0), timeout=10) as s:
        s.sendall(b"EHLO early.client.test\r\n")
        data = b""
        while b"250 " not in data:
            chunk = s.recv(4096)
            assert chunk, data
            data += chunk
        assert data.startswith(b"220 "), data
    waiting = socket.create_connection(("127.0.0.1", kp.smtp_port),
                                       source_address=("127.0.0.31", 0), timeout=10)
    time.sleep(0.3)
    assert kp.stop() == 0
    assert waiting.recv(4096).startswith(b"421 4.3.2 "), "no 421 for a waiting client"
    waiting.close()
    kp.check_sanitizers()


def test_implicit_tls_waits_for_the_name(make_server, dns, blackhole):
    """SMTPS: the client's ClientHello arrives while the name is looked up
    and must still be there for the handshake afterwards."""
    import ssl
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    for resolver, timeout, name in ((dns.port, "10s", r"good\.peer\.test"),
                                    (blackhole.port, "1s", "unknown")):
        smtps = free_port()
        kp = server(make_server, resolver, start=False, smtps_listen=f"127.0.0.1:{smtps}",
                    smtpd_peername_lookup_timeout=timeout)
        kp.start(wait_ports=[kp.smtp_port, smtps])
        with smtplib.SMTP_SSL("127.0.0.1", smtps, context=ctx, timeout=20,
                              source_address=("127.0.0.2", 0)) as s:
            assert s.ehlo("helo.client.test")[0] == 250
        kp.wait_log(rf"connect from {name}\[127\.0\.0\.2\]")
        kp.wait_log(rf"TLS connection established from {name}\[127\.0\.0\.2\]")


def test_connection_timeouts_apply_during_lookup(make_server, blackhole):
    """smtpd_timeout shorter than the lookup: the connection ends at its own
    deadline, the pending lookup is cancelled."""
    kp = server(make_server, blackhole.port, smtpd_timeout="1s",
                smtpd_peername_lookup_timeout="30s")
    start = time.time()
    with socket.create_connection(("127.0.0.1", kp.smtp_port),
                                  source_address=("127.0.0.40", 0), timeout=10) as s:
        assert s.recv(4096) == b""
    assert time.time() - start < 5
    kp.wait_log(r"timeout during the client name lookup of 127\.0\.0\.40")
