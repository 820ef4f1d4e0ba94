"""MTA-STS (RFC 8461) in keypost's SMTP client, smtp_mta_sts = yes.

Everything runs on loopback and is made by the test:
  - a test CA (openssl) that keypost trusts through smtp_mta_sts_CAfile;
  - a private Unbound (keypost's dns_resolver) serving sts.test: for each
    domain D the TXT record _mta-sts.D "v=STSv1; id=1", mta-sts.D -> 127.0.11.1
    and D's MX records;
  - an HTTPS server of the tests' own (http.server + ssl) on 127.0.11.1:443
    serving each domain's policy with a certificate for mta-sts.D (chosen by
    SNI), one of them expired;
  - receiving MTAs (test_relay.Peer) on port 25 of
      127.0.11.2  mx.good.sts.test    STARTTLS, certificate for its name
      127.0.11.3  mx.badcert.sts.test STARTTLS, certificate for another name
      127.0.11.4  mx.notls.sts.test   no STARTTLS
The addresses 127.0.11.x keep clear of the other tests' 127.0.0.x."""
import http.server
import os
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time

import pytest

from kptest import KEYPOST, PKI, free_port, make_tmpdir
from postfix_peer import need, need_root, read, wait_for
from test_relay import Peer, dns_query, message, result, submit

HTTPS_ADDR = "127.0.11.1"
SILENT_ADDR = "127.0.11.5"  # mta-sts.slow.sts.test: accepts TCP, never speaks TLS
MX = {"mx.good.sts.test": "127.0.11.2", "mx.badcert.sts.test": "127.0.11.3",
      "mx.notls.sts.test": "127.0.11.4"}

ENFORCE_NOWHERE = "version: STSv1\nmode: enforce\nmx: mx.nowhere.example\nmax_age: 86400\n"

# domain: (its MX host, (HTTP status, Content-Type, policy text))
DOMAINS = {
    "good": ("mx.good.sts.test",
             (200, "text/plain", "version: STSv1\r\nmode: enforce\r\nmx: *.good.sts.test\r\n"
                                 "max_age: 86400\r\n")),
    "mismatch": ("mx.good.sts.test", (200, "text/plain", ENFORCE_NOWHERE)),
    "badcert": ("mx.badcert.sts.test",
                (200, "text/plain", "version: STSv1\nmode: enforce\nmx: mx.badcert.sts.test\n"
                                    "max_age: 86400\n")),
    "notls": ("mx.notls.sts.test",
              (200, "text/plain", "version: STSv1\nmode: enforce\nmx: mx.notls.sts.test\n"
                                  "max_age: 86400\n")),
    "testing": ("mx.badcert.sts.test",
                (200, "text/plain", "version: STSv1\nmode: testing\nmx: mx.testing.sts.test\n"
                                    "max_age: 86400\n")),
    "testnotls": ("mx.notls.sts.test",
                  (200, "text/plain", "version: STSv1\nmode: testing\nmx: mx.notls.sts.test\n"
                                      "max_age: 86400\n")),
    # Each of these would defer the mail if keypost used it (enforce, the MX
    # matches nothing); keypost must not, and must say why.
    "malformed": ("mx.badcert.sts.test",
                  (200, "text/plain", "version: STSv1\nmode: enforce\nmx: mx.nowhere.example\n")),
    "expired": ("mx.badcert.sts.test", (200, "text/plain", ENFORCE_NOWHERE)),
    "redirect": ("mx.badcert.sts.test", (301, "text/plain", ENFORCE_NOWHERE)),
    "html": ("mx.badcert.sts.test", (200, "text/html", ENFORCE_NOWHERE)),
    "big": ("mx.badcert.sts.test",
            (200, "text/plain", ENFORCE_NOWHERE + "x-padding: " + "x" * 70000 + "\n")),
    # mta-sts.slow.sts.test is an address where nothing answers after TCP.
    "slow": ("mx.badcert.sts.test", (200, "text/plain", ENFORCE_NOWHERE)),
    # Their TXT records are broken (TXT_RECORDS): no policy, and no fetch.
    "badtxt": ("mx.badcert.sts.test", (200, "text/plain", ENFORCE_NOWHERE)),
    "twotxt": ("mx.badcert.sts.test", (200, "text/plain", ENFORCE_NOWHERE)),
    # For the cache tests.
    "cached": ("mx.good.sts.test", (200, "text/plain", ENFORCE_NOWHERE)),
    "rotate": ("mx.good.sts.test", (200, "text/plain", ENFORCE_NOWHERE)),
    "short": ("mx.good.sts.test",
              (200, "text/plain", ENFORCE_NOWHERE.replace("max_age: 86400", "max_age: 2"))),
}


TXT_RECORDS = {"badtxt": ["v=STSv1; id=not-alnum"], "twotxt": ["v=STSv1; id=1", "v=STSv1; id=2"]}


def zone():
    rrs = [f"{name}. A {addr}" for name, addr in MX.items()]
    for d, (mx, _) in DOMAINS.items():
        rrs += [f"{d}.sts.test. MX 10 {mx}.",
                f"mta-sts.{d}.sts.test. A {SILENT_ADDR if d == 'slow' else HTTPS_ADDR}"]
        # TTL 0: the test changes this one (keypost's resolver must not cache it)
        rrs += [f'_mta-sts.{d}.sts.test. {0 if d == "rotate" else 3600} TXT "{txt}"'
                for txt in TXT_RECORDS.get(d, ["v=STSv1; id=1"])]
    # A domain with a policy host but no TXT record: no policy, no fetch.
    rrs += ["notxt.sts.test. MX 10 mx.badcert.sts.test.", f"mta-sts.notxt.sts.test. A {HTTPS_ADDR}"]
    return rrs


class Unbound:
    """`unbound -d`: a private server on 127.0.0.1 answering sts.test from
    local-data."""

    def __init__(self):
        self.bin = need("unbound")
        self.dir = make_tmpdir("kp-sts-unbound-")
        self.port = free_port()
        self.conf = os.path.join(self.dir, "unbound.conf")
        data = "".join(f"    local-data: '{rr}'\n" for rr in zone())
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
    use-syslog: no
    logfile: "{self.dir}/unbound.log"
    num-threads: 1
    access-control: 127.0.0.0/8 allow
    module-config: "iterator"
    local-zone: "sts.test." static
{data}
remote-control:
    control-enable: yes
    control-interface: "{self.dir}/control.sock"
    control-use-cert: no
""")
        self.proc = None

    def set_txt(self, domain, policy_id):
        """Replace _mta-sts.DOMAIN's TXT record (TTL 0) while running."""
        name = f"_mta-sts.{domain}.sts.test."
        ctl = [need("unbound-control"), "-c", self.conf]
        subprocess.run(ctl + ["local_data_remove", name], check=True, capture_output=True)
        subprocess.run(ctl + ["local_data", f'{name} 0 TXT "v=STSv1; id={policy_id}"'],
                       check=True, capture_output=True)
        assert dns_query(self.port, name, 16) == (0, 1)

    def start(self):
        with open(os.path.join(self.dir, "stderr"), "w") as err:
            self.proc = subprocess.Popen([self.bin, "-d", "-c", self.conf],
                                         stdout=subprocess.DEVNULL, stderr=err,
                                         start_new_session=True)

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError("unbound exited: " + read(f"{self.dir}/stderr"))
            try:
                return dns_query(self.port, "_mta-sts.good.sts.test", 16) == (0, 1)
            except OSError:
                return False
        wait_for(ready, lambda: "unbound does not answer: " + read(f"{self.dir}/stderr"))
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def sts_pki():
    d = make_tmpdir("kp-sts-pki-")
    p = PKI(d)
    p.ca("stsca")
    for dom in DOMAINS:
        p.leaf(f"mta-sts.{dom}.sts.test", issuer="stsca", eku="serverAuth",
               expired=(dom == "expired"))
    p.leaf("mx.good.sts.test", issuer="stsca", eku="serverAuth")
    p.leaf("mx.other.sts.test", issuer="stsca", eku="serverAuth")
    yield p
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def dns():
    need_root("binding port 25 and 443 on 127.0.11.x")
    u = Unbound().start()
    try:
        # The zone answers as the tests below assume.
        assert dns_query(u.port, "good.sts.test", 15) == (0, 1)
        assert dns_query(u.port, "_mta-sts.notxt.sts.test", 16) == (3, 0)
        yield u
    finally:
        u.stop()


def tls_ctx(pki, name):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki.path(name, "crt"), pki.path(name, "key"))
    return ctx


@pytest.fixture(scope="module")
def mx_peers(sts_pki):
    for addr in MX.values():
        try:
            socket.create_connection((addr, 25), timeout=1).close()
            pytest.fail(f"something already listens on {addr}:25", pytrace=False)
        except OSError:
            pass
    peers = {"mx.good.sts.test": Peer(host=MX["mx.good.sts.test"], port=25,
                                      tls=tls_ctx(sts_pki, "mx.good.sts.test")),
             "mx.badcert.sts.test": Peer(host=MX["mx.badcert.sts.test"], port=25,
                                         tls=tls_ctx(sts_pki, "mx.other.sts.test")),
             "mx.notls.sts.test": Peer(host=MX["mx.notls.sts.test"], port=25)}
    yield peers
    for p in peers.values():
        p.stop()


class PolicyServer:
    """HTTPS on 127.0.11.1:443: the policy of the domain named by Host,
    with the certificate of the name the client sent in SNI."""

    def __init__(self, pki):
        self.requests = []
        self.override = {}  # domain: (status, Content-Type, text), instead of DOMAINS
        outer = self
        contexts = {f"mta-sts.{d}.sts.test": tls_ctx(pki, f"mta-sts.{d}.sts.test")
                    for d in DOMAINS}
        default = tls_ctx(pki, "mta-sts.good.sts.test")

        def pick(sslobj, name, _ctx):
            if name in contexts:
                sslobj.context = contexts[name]
        default.sni_callback = pick

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                host = self.headers.get("Host", "")
                outer.requests.append(host)
                dom = host.removeprefix("mta-sts.").removesuffix(".sts.test")
                status, ctype, body = outer.override.get(dom) or \
                    DOMAINS.get(dom, (None, (404, "text/plain", "none\n")))[1]
                if self.path != "/.well-known/mta-sts.txt":
                    status, body = 404, "not here\n"
                data = body.encode()
                self.send_response(status)
                if status == 301:
                    self.send_header("Location", f"https://{host}/elsewhere.txt")
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        class Server(http.server.ThreadingHTTPServer):
            allow_reuse_address = True
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass  # the expired certificate's refused handshakes

        self.server = Server((HTTPS_ADDR, 443), Handler)
        self.server.socket = default.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.running = True

    def count(self, domain):
        return self.requests.count(f"mta-sts.{domain}.sts.test")

    def stop(self):
        if self.running:
            self.server.shutdown()
            self.server.server_close()
            self.running = False


@pytest.fixture
def https(sts_pki):
    s = PolicyServer(sts_pki)
    yield s
    s.stop()


@pytest.fixture
def sender(make_server, dns, mx_peers, sts_pki):
    def start(**params):
        # The test zones are not signed under the root key: no validation.
        params = {"dns_resolver": f"127.0.0.1@{dns.port}", "smtp_mta_sts": "yes",
                  "dns_trust_anchor_file": "",
                  "smtp_mta_sts_CAfile": sts_pki.path("stsca", "crt"),
                  "smtp_tls_security_level": "may", "smtp_connect_timeout": "5s",
                  "smtp_mta_sts_timeout": "5s", **params}
        return make_server(**params)
    return start


def send(kp, domain, token):
    rcpt = f"user@{domain}.sts.test"
    return rcpt, submit(kp, [rcpt], message(f"sts {token}", token, to=rcpt))


def wait_peer(peer, token, timeout=15):
    wait_for(lambda: peer.count(token) == 1, lambda: f"{token} not received", timeout=timeout)
    return [m for m in peer.messages if token.encode() in m["data"]][0]


# ---- the cases ------------------------------------------------------------------

def test_pki_and_https_server(https, sts_pki):
    """The harness itself: the good policy verifies against the test CA with
    the right name, the expired one does not; so keypost's results below are
    its own."""
    ctx = ssl.create_default_context(cafile=sts_pki.path("stsca", "crt"))
    with socket.create_connection((HTTPS_ADDR, 443), timeout=5) as s:
        with ctx.wrap_socket(s, server_hostname="mta-sts.good.sts.test") as t:
            t.sendall(b"GET /.well-known/mta-sts.txt HTTP/1.0\r\n"
                      b"Host: mta-sts.good.sts.test\r\n\r\n")
            assert b"mode: enforce" in t.recv(4096) + t.recv(4096)
    with socket.create_connection((HTTPS_ADDR, 443), timeout=5) as s:
        with pytest.raises(ssl.SSLCertVerificationError, match="expired"):
            ctx.wrap_socket(s, server_hostname="mta-sts.expired.sts.test")


def test_enforce_matching_mx_valid_cert_is_delivered(sender, https, mx_peers):
    kp = sender()
    rcpt, qid = send(kp, "good", "tok-sts-good")
    m = result(kp, qid, rcpt, "sent", timeout=20)
    assert m.group(1) == "mx.good.sts.test[127.0.11.2]:25", m.group(0)
    msg = wait_peer(mx_peers["mx.good.sts.test"], "tok-sts-good")
    assert msg["tls"] is True
    assert re.search(r"MTA-STS policy of good\.sts\.test: mode enforce, id 1, max_age 86400",
                     kp.log()), kp.log()
    assert re.search(r"Verified TLS connection established to "
                     r"mx\.good\.sts\.test\[127\.0\.11\.2\]:25", kp.log()), kp.log()
    assert https.count("good") == 1
    # The policy was stored for the next delivery, durably.
    cache = os.path.join(kp.queue, "mta-sts", "good.sts.test")
    text = read(cache)
    assert text.startswith("keypost-mta-sts 1\nid 1\nfetched ") and "mx: *.good.sts.test" in text
    # A second message uses the cached policy (same TXT id): no new fetch.
    rcpt, qid = send(kp, "good", "tok-sts-good2")
    result(kp, qid, rcpt, "sent", timeout=20)
    assert https.count("good") == 1


def test_enforce_mx_not_matching_defers(sender, https, mx_peers):
    kp = sender()
    rcpt, qid = send(kp, "mismatch", "tok-sts-mismatch")
    m = result(kp, qid, rcpt, "deferred", timeout=20)
    assert m.group(2) == ("4.7.5 MTA-STS policy of mismatch.sts.test: MX host "
                          "mx.good.sts.test matches no mx pattern of the policy"), m.group(0)
    time.sleep(1)
    assert mx_peers["mx.good.sts.test"].count("tok-sts-mismatch") == 0
    assert qid in kp.queue_files()


def test_enforce_invalid_certificate_defers(sender, https, mx_peers):
    kp = sender()
    rcpt, qid = send(kp, "badcert", "tok-sts-badcert")
    m = result(kp, qid, rcpt, "deferred", timeout=20)
    assert m.group(1) == "mx.badcert.sts.test[127.0.11.3]:25", m.group(0)
    assert m.group(2) == ("4.7.5 TLS policy MTA-STS not met by mx.badcert.sts.test"
                          "[127.0.11.3]:25: MTA-STS policy of badcert.sts.test: server "
                          "certificate not valid for mx.badcert.sts.test: hostname mismatch"), \
        m.group(0)
    time.sleep(1)
    peer = mx_peers["mx.badcert.sts.test"]
    assert peer.count("tok-sts-badcert") == 0
    # keypost stopped after STARTTLS: no MAIL on any session, not even in the
    # clear after the failure.
    assert qid in kp.queue_files()


def test_enforce_without_starttls_defers(sender, https, mx_peers):
    kp = sender()
    rcpt, qid = send(kp, "notls", "tok-sts-notls")
    m = result(kp, qid, rcpt, "deferred", timeout=20)
    assert m.group(2).startswith("4.7.4 TLS is required, but was not offered by host "
                                 "mx.notls.sts.test[127.0.11.4]:25"), m.group(0)
    time.sleep(1)
    assert mx_peers["mx.notls.sts.test"].count("tok-sts-notls") == 0


def test_testing_mode_delivers_and_logs(sender, https, mx_peers):
    kp = sender()
    rcpt, qid = send(kp, "testing", "tok-sts-testing")
    result(kp, qid, rcpt, "sent", timeout=20)
    wait_peer(mx_peers["mx.badcert.sts.test"], "tok-sts-testing")
    log = kp.log()
    assert re.search(r"MTA-STS policy of testing\.sts\.test \(testing\): MX host "
                     r"mx\.badcert\.sts\.test matches no mx pattern; delivering anyway", log), log
    assert re.search(r"MTA-STS policy of testing\.sts\.test \(testing\): server certificate "
                     r"not valid for mx\.badcert\.sts\.test: hostname mismatch; delivering "
                     r"anyway", log), log
    assert re.search(r"Untrusted TLS connection established to mx\.badcert", log), log


def test_testing_mode_without_tls_logs(sender, https, mx_peers):
    kp = sender()
    rcpt, qid = send(kp, "testnotls", "tok-sts-testnotls")
    result(kp, qid, rcpt, "sent", timeout=20)
    assert wait_peer(mx_peers["mx.notls.sts.test"], "tok-sts-testnotls")["tls"] is False
    assert re.search(r"warning: MTA-STS policy of testnotls\.sts\.test \(testing\): no TLS "
                     r"session with mx\.notls\.sts\.test; delivering anyway", kp.log()), kp.log()


@pytest.mark.parametrize("level", ["none", "encrypt", "dane"])
def test_enforce_applies_over_default_levels(sender, https, mx_peers, level):
    """smtp_tls_security_level none, encrypt or dane (dane is may until DANE
    is built): an enforced policy still verifies the MX certificate, and
    defers where it does not verify."""
    kp = sender(smtp_tls_security_level=level)
    rcpt, qid = send(kp, "good", f"tok-sts-level-{level}")
    result(kp, qid, rcpt, "sent", timeout=20)
    assert wait_peer(mx_peers["mx.good.sts.test"], f"tok-sts-level-{level}")["tls"] is True
    assert re.search(r"Verified TLS connection established to mx\.good\.sts\.test", kp.log())
    rcpt, qid = send(kp, "badcert", f"tok-sts-level-bad-{level}")
    m = result(kp, qid, rcpt, "deferred", timeout=20)
    assert "server certificate not valid for mx.badcert.sts.test" in m.group(2), m.group(0)
    rcpt, qid = send(kp, "notls", f"tok-sts-level-notls-{level}")
    m = result(kp, qid, rcpt, "deferred", timeout=20)
    assert m.group(2).startswith("4.7.4 TLS is required, but was not offered"), m.group(0)


@pytest.mark.parametrize("domain,why", [
    ("malformed", r"malformed policy at https://mta-sts\.malformed\.sts\.test/\.well-known/"
                  r"mta-sts\.txt: no max_age field"),
    ("expired", r"https://mta-sts\.expired\.sts\.test/\.well-known/mta-sts\.txt: TLS "
                r"handshake: certificate: certificate has expired"),
    ("redirect", r"HTTP 301: redirects are not followed \(RFC 8461 3\.3\)"),
    ("html", r"Content-Type text/html, not text/plain"),
    ("big", r"policy larger than 65536 bytes"),
])
def test_unusable_policy_means_no_policy(sender, https, mx_peers, domain, why):
    """Each served policy says enforce with an MX that matches nothing: had
    keypost used it, the mail would be deferred. With no cached policy, a
    policy that cannot be fetched or parsed is no policy (RFC 8461 5.1)."""
    kp = sender()
    token = f"tok-sts-{domain}"
    rcpt, qid = send(kp, domain, token)
    result(kp, qid, rcpt, "sent", timeout=20)
    wait_peer(mx_peers["mx.badcert.sts.test"], token)
    assert re.search(rf"warning: MTA-STS policy of {domain}\.sts\.test: [^\n]*{why}; "
                     r"no policy used \(RFC 8461 5\.1\)", kp.log()), kp.log()
    assert not os.path.exists(os.path.join(kp.queue, "mta-sts", f"{domain}.sts.test"))


@pytest.mark.parametrize("domain,why", [
    ("badtxt", "1 STSv1 records, 1 of them malformed"),
    ("twotxt", "2 STSv1 records, 0 of them malformed"),
])
def test_broken_txt_record_means_no_policy(sender, https, mx_peers, domain, why):
    kp = sender()
    rcpt, qid = send(kp, domain, f"tok-sts-{domain}")
    result(kp, qid, rcpt, "sent", timeout=20)
    assert https.count(domain) == 0
    assert re.search(rf"warning: MTA-STS policy of {domain}\.sts\.test: _mta-sts\.{domain}\."
                     rf"sts\.test: {why} \(exactly one valid record needed\); no policy used",
                     kp.log()), kp.log()


def test_no_txt_record_no_fetch(sender, https, mx_peers):
    kp = sender()
    rcpt, qid = send(kp, "notxt", "tok-sts-notxt")
    result(kp, qid, rcpt, "sent", timeout=20)
    assert https.count("notxt") == 0
    assert "MTA-STS" not in kp.log()


def test_cache_survives_restart(sender, https, mx_peers):
    kp = sender()
    rcpt, qid = send(kp, "cached", "tok-sts-cached1")
    m = result(kp, qid, rcpt, "deferred", timeout=20)
    assert "MTA-STS policy of cached.sts.test" in m.group(2), m.group(0)
    assert https.count("cached") == 1
    https.stop()
    assert kp.stop() == 0
    before = len(kp.log())
    kp.start()
    rcpt, qid2 = send(kp, "cached", "tok-sts-cached2")
    pattern = (rf"{qid2}: to=<{re.escape(rcpt)}>, relay=\S+, delay=\d+, status=deferred "
               r"\(4\.7\.5 MTA-STS policy of cached\.sts\.test: MX host mx\.good\.sts\.test "
               r"matches no mx pattern of the policy\)")
    kp.wait_log(pattern, timeout=20)
    after = kp.log()[before:]
    assert "MTA-STS policy of cached.sts.test: mode enforce, id 1" in after, after
    assert "no policy used" not in after, after
    time.sleep(1)
    assert mx_peers["mx.good.sts.test"].count("tok-sts-cached") == 0


def test_max_age_expiry(sender, https, mx_peers):
    """max_age 2: enforced while fresh; once expired, with the policy server
    gone, the domain has no policy and the mail goes out (RFC 8461 5.1)."""
    kp = sender()
    rcpt, qid = send(kp, "short", "tok-sts-short1")
    m = result(kp, qid, rcpt, "deferred", timeout=20)
    assert "MTA-STS policy of short.sts.test" in m.group(2), m.group(0)
    https.stop()
    fetched = int(re.search(r"fetched (\d+)",
                            read(os.path.join(kp.queue, "mta-sts", "short.sts.test"))).group(1))
    while time.time() < fetched + 3:
        time.sleep(0.1)
    rcpt, qid2 = send(kp, "short", "tok-sts-short2")
    result(kp, qid2, rcpt, "sent", timeout=20)
    wait_peer(mx_peers["mx.good.sts.test"], "tok-sts-short2")
    log = kp.log()
    assert re.search(r"MTA-STS: cached policy of short\.sts\.test \(id 1\) expired", log), log
    assert re.search(r"warning: MTA-STS policy of short\.sts\.test: https://mta-sts\.short"
                     r"\.sts\.test/\.well-known/mta-sts\.txt: connect: Connection refused; "
                     r"no policy used", log), log


def test_explicit_policy_entry_is_not_overridden(sender, https, mx_peers):
    """A destination with its own smtp_tls_policy_maps entry keeps it: the
    MTA-STS policy (MX matches nothing) is neither fetched nor applied."""
    kp = sender(smtp_tls_policy_maps="inline:{ mismatch.sts.test=may }")
    rcpt, qid = send(kp, "mismatch", "tok-sts-explicit")
    result(kp, qid, rcpt, "sent", timeout=20)
    assert https.count("mismatch") == 0


def test_off_by_default(make_server, dns, https, mx_peers):
    kp = make_server(dns_resolver=f"127.0.0.1@{dns.port}", smtp_tls_security_level="may",
                     dns_trust_anchor_file="")
    rcpt, qid = send(kp, "mismatch", "tok-sts-off")
    result(kp, qid, rcpt, "sent", timeout=20)
    assert https.count("mismatch") == 0
    assert not os.path.exists(os.path.join(kp.queue, "mta-sts"))


@pytest.fixture
def silent_https():
    """127.0.11.5:443 completes TCP handshakes (the backlog) and never reads."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((SILENT_ADDR, 443))
    s.listen(16)
    yield s
    s.close()


def test_fetch_is_bounded_by_timeout(sender, https, mx_peers, silent_https):
    """A policy host that never answers costs smtp_mta_sts_timeout, then the
    domain has no policy (none cached) and the mail goes out."""
    kp = sender(smtp_mta_sts_timeout="2s")
    start = time.time()
    rcpt, qid = send(kp, "slow", "tok-sts-slow")
    result(kp, qid, rcpt, "sent", timeout=20)
    elapsed = time.time() - start
    assert 1.9 <= elapsed < 10, elapsed
    assert re.search(r"warning: MTA-STS policy of slow\.sts\.test: https://mta-sts\.slow\.sts"
                     r"\.test/\.well-known/mta-sts\.txt: TLS handshake: timed out; no policy "
                     r"used", kp.log()), kp.log()


GOOD_ROTATE = "version: STSv1\nmode: enforce\nmx: mx.good.sts.test\nmax_age: 86400\n"


def test_new_txt_id_refetches_failed_refetch_keeps_cache(sender, https, mx_peers, dns):
    kp = sender()
    try:
        https.override["rotate"] = (200, "text/plain", GOOD_ROTATE)
        rcpt, qid = send(kp, "rotate", "tok-sts-rot1")
        result(kp, qid, rcpt, "sent", timeout=20)
        assert https.count("rotate") == 1
        # A new policy is served under a new id: fetched, and enforced.
        https.override["rotate"] = (200, "text/plain", ENFORCE_NOWHERE)
        dns.set_txt("rotate", "2")
        rcpt, qid = send(kp, "rotate", "tok-sts-rot2")
        m = result(kp, qid, rcpt, "deferred", timeout=20)
        assert "MTA-STS policy of rotate.sts.test: MX host mx.good.sts.test matches no" in \
            m.group(2), m.group(0)
        assert https.count("rotate") == 2
        assert "id 2\n" in read(os.path.join(kp.queue, "mta-sts", "rotate.sts.test"))
        # Yet another id, but the policy server is gone: the cached policy
        # (unexpired) stays in force; the permissive one is never seen.
        https.override["rotate"] = (200, "text/plain", GOOD_ROTATE)
        https.stop()
        dns.set_txt("rotate", "3")
        rcpt, qid = send(kp, "rotate", "tok-sts-rot3")
        m = result(kp, qid, rcpt, "deferred", timeout=20)
        assert "matches no mx pattern" in m.group(2), m.group(0)
        assert re.search(r"warning: MTA-STS policy of rotate\.sts\.test: https://mta-sts\.rotate"
                         r"\.sts\.test/\.well-known/mta-sts\.txt: connect: Connection refused; "
                         r"keeping the cached policy", kp.log()), kp.log()
        assert mx_peers["mx.good.sts.test"].count("tok-sts-rot3") == 0
    finally:
        dns.set_txt("rotate", "1")


def test_check_reports_bad_cafile(tmpbase):
    cf = os.path.join(tmpbase, "check.cf")
    with open(cf, "w") as f:
        f.write(f"queue_directory = {tmpbase}/q\nsmtpd_listen = 127.0.0.1:2525\n"
                f"local_transport = maildir:{tmpbase}/m\nsmtp_mta_sts = yes\n"
                f"smtp_mta_sts_CAfile = {tmpbase}/missing.pem\n")
    r = subprocess.run([KEYPOST, "check", "-c", cf], capture_output=True, text=True)
    assert r.returncode == 1, r.stdout + r.stderr
    assert re.search(rf"check\.cf:5: smtp_mta_sts_CAfile {re.escape(tmpbase)}/missing\.pem: ",
                     r.stderr), r.stderr
