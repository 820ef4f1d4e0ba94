"""TLSRPT (RFC 8460): keypost records the TLS outcome of every session to
a policy domain and reports it, smtp_tls_reporting = yes.

The bed, all on loopback and made here:
  - dnssec.py's signed zone test. served and validated by Unbound on
    127.0.54.1:53 (keypost's dns_resolver, with the zone's trust anchor);
  - receiving MTAs (test_relay.Peer) on one port at
      127.0.54.10  STARTTLS with a test-CA certificate for mx2.stsrpt.test
      127.0.54.11  no STARTTLS
  - an HTTPS server of the test's own on 127.0.54.2:443 (test CA, the
    certificate chosen by SNI): MTA-STS policies for GET, TLSRPT reports
    for POST.
The domains:
  rpt.test      DANE: MX 10 mx1.rpt.test (TLSA 3 1 1 of another key: each
                delivery records tlsa-invalid), MX 20 mx2.rpt.test (TLSA of
                the peer's key: success). _smtp._tls: rua=mailto:tlsrpt@example.org,
                a mailbox of the keypost under test.
  stsrpt.test   MTA-STS enforce: MX 10 mx1.stsrpt.test without STARTTLS
                (starttls-not-supported), MX 20 mx2.stsrpt.test (success).
                _smtp._tls: rua=https://reports.test/v1/tlsrpt.
  stsbogus.test MTA-STS, one success; its _smtp._tls TXT record has a broken
                signature: keypost must not use it (no report).
and, for the other result types (counted with `keypost tlsrpt`), domains
whose last MX host is mx2.stsrpt.test or mx2.rpt.test (success) and whose
first ones fail:
  stscert.test  MTA-STS enforce: certificates for another name (127.0.54.12),
                expired (.13) and self-signed (.14)
  ststest.test  MTA-STS testing, MX without STARTTLS: delivered in plaintext
  stsfetch.test, stswebpki.test, stsinvalid.test: the policy cannot be used
                (HTTP 404, a certificate for another name, malformed)
  dfail.test    DANE: the TLSA RRSIG of its first MX host is broken
  dreq.test     dane-only (smtp_tls_policy_maps): its first MX host has no
                TLSA records
The reports are made with `keypost tlsrpt --send` (and by the queue
manager's daily run, from a day file of yesterday), then read back: MIME
decoded, gunzipped, parsed with Python's json."""
import datetime
import email
import email.policy
import gzip
import http.server
import json
import os
import pwd
import re
import shutil
import socket
import ssl
import threading

import pytest

from dnssec import DnssecBed, spki_digest
from kptest import PKI, free_port, make_tmpdir
from postfix_peer import need_root, wait_for
from test_relay import Peer, message, result, submit

RESOLVER = "127.0.54.1"
HTTPS_ADDR = "127.0.54.2"
TLS_MX = "127.0.54.10"
PLAIN_MX = "127.0.54.11"
WRONGNAME_MX = "127.0.54.12"
EXPIRED_MX = "127.0.54.13"
SELFSIGNED_MX = "127.0.54.14"
ORG = "Keypost Test Org"
POLICY = "version: STSv1\r\nmode: enforce\r\nmx: *.stsrpt.test\r\nmax_age: 86400\r\n"
# mta-sts.DOMAIN: (HTTP status, policy)
POLICIES = {
    "stsrpt.test": (200, POLICY), "stsbogus.test": (200, POLICY),
    "stscert.test": (200, POLICY.replace("max_age", "mx: *.stscert.test\r\nmax_age")),
    "ststest.test": (200, "version: STSv1\nmode: testing\nmx: *.stsrpt.test\nmax_age: 600\n"),
    "stsfetch.test": (404, "not here\n"),
    "stswebpki.test": (200, POLICY),
    "stsinvalid.test": (200, "version: STSv1\nmode: enforce\nmx: *.stsrpt.test\n"),
}
DOMAINS = ("rpt.test", "stscert.test", "ststest.test", "stsfetch.test", "stswebpki.test",
           "stsinvalid.test", "dfail.test", "dreq.test") + tuple(POLICIES)


def zone(port, pki):
    other = spki_digest(pki.path("other.test", "crt"))
    peer = spki_digest(pki.path("mx2.stsrpt.test", "crt"))
    return [
        "rpt.test. MX 10 mx1.rpt.test.", "rpt.test. MX 20 mx2.rpt.test.",
        f"mx1.rpt.test. A {TLS_MX}", f"mx2.rpt.test. A {TLS_MX}",
        f"_{port}._tcp.mx1.rpt.test. TLSA 3 1 1 {other}",
        f"_{port}._tcp.mx2.rpt.test. TLSA 3 1 1 {peer}",
        '_smtp._tls.rpt.test. TXT "v=TLSRPTv1; rua=mailto:tlsrpt@example.org"',
        "stsrpt.test. MX 10 mx1.stsrpt.test.", "stsrpt.test. MX 20 mx2.stsrpt.test.",
        f"mx1.stsrpt.test. A {PLAIN_MX}", f"mx2.stsrpt.test. A {TLS_MX}",
        '_mta-sts.stsrpt.test. TXT "v=STSv1; id=1"', f"mta-sts.stsrpt.test. A {HTTPS_ADDR}",
        '_smtp._tls.stsrpt.test. TXT "v=TLSRPTv1; rua=https://reports.test/v1/tlsrpt"',
        f"reports.test. A {HTTPS_ADDR}",
        "stsbogus.test. MX 10 mx2.stsrpt.test.",
        '_smtp._tls.stsbogus.test. TXT "v=TLSRPTv1; rua=mailto:tlsrpt@example.org"',
        "stscert.test. MX 10 mx1.stscert.test.", "stscert.test. MX 20 mx2.stscert.test.",
        "stscert.test. MX 30 mx3.stscert.test.", "stscert.test. MX 40 mx2.stsrpt.test.",
        f"mx1.stscert.test. A {WRONGNAME_MX}", f"mx2.stscert.test. A {EXPIRED_MX}",
        f"mx3.stscert.test. A {SELFSIGNED_MX}",
        "ststest.test. MX 10 mx1.stsrpt.test.",
        "stsfetch.test. MX 10 mx2.stsrpt.test.", "stswebpki.test. MX 10 mx2.stsrpt.test.",
        "stsinvalid.test. MX 10 mx2.stsrpt.test.",
        # destinations that fail: an HTTP error, a scheme keypost does not use
        '_smtp._tls.stsfetch.test. TXT "v=TLSRPTv1; rua=https://reports.test/fail"',
        '_smtp._tls.stsinvalid.test. TXT "v=TLSRPTv1; rua=ftp://reports.test/"',
        "dfail.test. MX 10 mx.dfail.test.", "dfail.test. MX 20 mx2.rpt.test.",
        f"mx.dfail.test. A {TLS_MX}", f"_{port}._tcp.mx.dfail.test. TLSA 3 1 1 {peer}",
        "dreq.test. MX 10 mx.dreq.test.", "dreq.test. MX 20 mx2.rpt.test.",
        f"mx.dreq.test. A {TLS_MX}",
    ] + [rr for d in POLICIES if d != "stsrpt.test" for rr in
         (f'_mta-sts.{d}. TXT "v=STSv1; id=1"', f"mta-sts.{d}. A {HTTPS_ADDR}")]


class HttpsServer:
    """MTA-STS policies (GET) and TLSRPT reports (POST) on HTTPS_ADDR:443."""

    def __init__(self, pki):
        self.posts = []
        outer = self
        # mta-sts.stswebpki.test gets reports.test's certificate
        names = [f"mta-sts.{d}" for d in POLICIES if d != "stswebpki.test"]
        contexts = {n: self._ctx(pki, n) for n in names + ["reports.test"]}
        default = self._ctx(pki, "reports.test")

        def pick(sslobj, name, _ctx):
            if name in contexts:
                sslobj.context = contexts[name]
        default.sni_callback = pick

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                host = self.headers.get("Host", "").removeprefix("mta-sts.")
                status, text = POLICIES.get(host, (404, "no\n"))
                if self.path != "/.well-known/mta-sts.txt":
                    status, text = 404, "no\n"
                body = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                data = self.rfile.read(n)
                outer.posts.append({"path": self.path, "host": self.headers.get("Host"),
                                    "type": self.headers.get("Content-Type"), "body": data})
                self.send_response(500 if self.path == "/fail" else 200)
                self.send_header("Content-Length", "0")
                self.send_header("Connection", "close")
                self.end_headers()

            def log_message(self, *args):
                pass

        class Server(http.server.ThreadingHTTPServer):
            allow_reuse_address = True
            daemon_threads = True

        self.server = Server((HTTPS_ADDR, 443), Handler)
        self.server.socket = default.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()

    @staticmethod
    def _ctx(pki, name):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(pki.path(name, "crt"), pki.path(name, "key"))
        return ctx

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class Bed:
    pass


@pytest.fixture(scope="module")
def bed():
    need_root("Unbound on port 53, HTTPS on port 443")
    b = Bed()
    b.dir = make_tmpdir("kp-tlsrpt-")
    b.pki = PKI(b.dir)
    b.pki.ca("rptca")
    for name in ["mx2.stsrpt.test", "reports.test", "other.test"] + \
            [f"mta-sts.{d}" for d in POLICIES]:
        b.pki.leaf(name, issuer="rptca", eku="serverAuth")
    b.pki.leaf("mx2.stscert.test", issuer="rptca", eku="serverAuth", expired=True)
    b.pki.leaf("mx3.stscert.test", eku="serverAuth")  # self-signed
    b.port = free_port()
    b.dns = DnssecBed(RESOLVER, zone(b.port, b.pki),
                      bogus=[("_smtp._tls.stsbogus.test.", "TXT"),
                             (f"_{b.port}._tcp.mx.dfail.test.", "TLSA")])
    b.peers = []
    b.https = None
    try:
        b.dns.start()
        for addr, cert in ((TLS_MX, "mx2.stsrpt.test"), (WRONGNAME_MX, "other.test"),
                           (EXPIRED_MX, "mx2.stscert.test"), (SELFSIGNED_MX, "mx3.stscert.test")):
            b.peers.append(Peer(host=addr, port=b.port, tls=HttpsServer._ctx(b.pki, cert)))
        b.peers.append(Peer(host=PLAIN_MX, port=b.port))
        b.https = HttpsServer(b.pki)
        yield b
    finally:
        for p in b.peers:
            p.stop()
        if b.https:
            b.https.stop()
        b.dns.stop()
        shutil.rmtree(b.dir, ignore_errors=True)


def start_keypost(make_server, bed, start=True):
    routes = ", ".join(f"{d}=smtp:{d}:{bed.port}" for d in DOMAINS)
    return make_server(start=start, dns_resolver=f"{RESOLVER}@53",
                       dns_trust_anchor_file=bed.dns.anchor,
                       transport_maps="inline:{ " + routes + " }",
                       smtp_tls_policy_maps="inline:{ dreq.test=dane-only }",
                       smtp_tls_security_level="dane", smtp_connect_timeout="5s",
                       smtp_mta_sts="yes", smtp_mta_sts_CAfile=bed.pki.path("rptca", "crt"),
                       smtp_tls_reporting="yes",
                       smtp_tls_reporting_CAfile=bed.pki.path("rptca", "crt"),
                       smtp_tls_reporting_organization=ORG,
                       smtp_tls_reporting_contact="tls-admin@example.org")


def deliver(kp, domain, token):
    rcpt = f"user@{domain}"
    qid = submit(kp, [rcpt], message(f"tlsrpt {token}", token, to=rcpt))
    result(kp, qid, rcpt, "sent", timeout=30)


def tlsrpt(kp, *args, check=True):
    r = kp.cli("tlsrpt", "-c", kp.config, *args, check=False)
    if check:
        assert r.returncode == 0, r.stdout + r.stderr
    return r


def read_report(path):
    """The mail's headers and the JSON report of its attachment."""
    with open(path, "rb") as f:
        msg = email.message_from_binary_file(f, policy=email.policy.default)
    parts = [p for p in msg.iter_parts() if p.get_content_type() == "application/tlsrpt+gzip"]
    assert len(parts) == 1, msg
    return msg, parts[0], json.loads(gzip.decompress(parts[0].get_payload(decode=True)))


def check_required_fields(report, domain):
    """RFC 8460 4.3/4.4: the fields a report must have."""
    for key in ("organization-name", "date-range", "contact-info", "report-id", "policies"):
        assert key in report, (key, report)
    assert report["organization-name"] == ORG
    assert report["contact-info"] == "tls-admin@example.org"
    rng = report["date-range"]
    start = datetime.datetime.strptime(rng["start-datetime"], "%Y-%m-%dT%H:%M:%SZ")
    end = datetime.datetime.strptime(rng["end-datetime"], "%Y-%m-%dT%H:%M:%SZ")
    assert start <= end and (start.hour, start.minute, start.second) == (0, 0, 0)
    for p in report["policies"]:
        assert p["policy"]["policy-domain"] == domain
        assert p["policy"]["policy-type"] in ("tlsa", "sts", "no-policy-found")
        assert isinstance(p["policy"]["policy-string"], list)
        s = p["summary"]
        assert isinstance(s["total-successful-session-count"], int)
        assert isinstance(s["total-failure-session-count"], int)
        assert sum(d["failed-session-count"] for d in p["failure-details"]) == \
            s["total-failure-session-count"]
        for d in p["failure-details"]:
            for key in ("result-type", "sending-mta-ip", "receiving-mx-hostname",
                        "failed-session-count"):
                assert key in d, (key, d)


def policy(report, ptype, mx=None):
    found = [p for p in report["policies"] if p["policy"]["policy-type"] == ptype and
             (mx is None or p["policy"].get("mx-host") == [mx])]
    assert len(found) == 1, report
    return found[0]


# ---- the cases ---------------------------------------------------------------------

def test_bed_answers_as_assumed(bed):
    """The zone is secure where the cases need it, and the broken record is
    bogus, so the outcomes below are keypost's."""
    q = bed.dns.query
    assert q("rpt.test", 15) == (0, 3, True)                      # 2 MX + RRSIG
    assert q(f"_{bed.port}._tcp.mx1.rpt.test", 52) == (0, 2, True)
    assert q("_smtp._tls.rpt.test", 16) == (0, 2, True)
    assert q("_smtp._tls.stsrpt.test", 16) == (0, 2, True)
    assert q("_smtp._tls.stsbogus.test", 16)[0] == 2               # SERVFAIL
    ctx = ssl.create_default_context(cafile=bed.pki.path("rptca", "crt"))
    with socket.create_connection((HTTPS_ADDR, 443), timeout=5) as s:
        with ctx.wrap_socket(s, server_hostname="mta-sts.stsrpt.test") as t:
            t.sendall(b"GET /.well-known/mta-sts.txt HTTP/1.0\r\n"
                      b"Host: mta-sts.stsrpt.test\r\n\r\n")
            assert b"mode: enforce" in t.recv(4096) + t.recv(4096)


def test_reports_by_mail_and_https(make_server, bed):
    kp = start_keypost(make_server, bed)
    for i in range(2):
        deliver(kp, "rpt.test", f"tok-rpt-{i}")
        deliver(kp, "stsrpt.test", f"tok-sts-{i}")
    deliver(kp, "stsbogus.test", "tok-bogus")
    # the log says why each failure happened
    assert re.search(r"mx1\.rpt\.test\[127\.0\.54\.10\]:\d+: dane: failed no matching DANE "
                     r"TLSA records", kp.log()), kp.log()

    shown = tlsrpt(kp).stdout
    assert "rpt.test policy=tlsa mx=mx1.rpt.test successful=0 failed=2 tlsa-invalid=2\n" \
        in shown, shown
    assert "rpt.test policy=tlsa mx=mx2.rpt.test successful=2 failed=0\n" in shown, shown
    assert "stsrpt.test policy=sts successful=2 failed=2 starttls-not-supported=2\n" \
        in shown, shown
    assert "stsbogus.test policy=sts successful=1 failed=0\n" in shown, shown

    r = tlsrpt(kp, "--send")
    assert re.search(r"report \S+ for rpt\.test: queued as [0-9A-F]{16} to "
                     r"<tlsrpt@example\.org>", r.stdout), r.stdout
    assert re.search(r"report \S+ for stsrpt\.test: posted to "
                     r"https://reports\.test/v1/tlsrpt: HTTP 200", r.stdout), r.stdout
    # the bogus TXT record is not used: no report, and it says why
    assert re.search(r"no report for stsbogus\.test: .*DNSSEC validation failed \(bogus\)",
                     r.stdout), r.stdout
    assert "TLSRPT: report" in kp.log()
    # reported: nothing is left to show
    assert tlsrpt(kp).stdout == ""

    # by mail, into the Maildir of tlsrpt@example.org
    files = kp.wait_delivered("tlsrpt@example.org", timeout=20)
    assert len(files) == 1, files
    msg, part, report = read_report(files[0])
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "tlsrpt"
    assert msg["TLS-Report-Domain"] == "rpt.test"
    # RFC 8460 5.3: the submitter is the reporting host's domain name
    assert msg["TLS-Report-Submitter"] == "mx.keypost.test"
    assert msg["Subject"] == ("Report Domain: rpt.test Submitter: mx.keypost.test "
                              f"Report-ID: <{report['report-id']}>")
    # 5.1: sender!policy-domain!begin!end!unique-id.json.gz, epoch seconds
    name = re.fullmatch(r"mx\.keypost\.test!rpt\.test!(\d+)!(\d+)![0-9A-F]+\.json\.gz",
                        part.get_filename())
    assert name, part.get_filename()
    begin = datetime.datetime.fromtimestamp(int(name.group(1)), datetime.timezone.utc)
    assert begin.strftime("%Y-%m-%dT%H:%M:%SZ") == report["date-range"]["start-datetime"]
    check_required_fields(report, "rpt.test")
    bad = policy(report, "tlsa", "mx1.rpt.test")
    assert bad["summary"] == {"total-successful-session-count": 0,
                              "total-failure-session-count": 2}
    assert [d["result-type"] for d in bad["failure-details"]] == ["tlsa-invalid"]
    d = bad["failure-details"][0]
    assert d["receiving-mx-hostname"] == "mx1.rpt.test"
    assert d["receiving-ip"] == TLS_MX
    assert d["sending-mta-ip"].startswith("127.")
    assert d["failed-session-count"] == 2
    spki = spki_digest(bed.pki.path("other.test", "crt"))
    assert bad["policy"]["policy-string"] == [f"3 1 1 {spki}"]
    good = policy(report, "tlsa", "mx2.rpt.test")
    assert good["summary"] == {"total-successful-session-count": 2,
                               "total-failure-session-count": 0}
    assert good["failure-details"] == []

    # by HTTPS POST
    wait_for(lambda: len(bed.https.posts) == 1, lambda: f"posts: {bed.https.posts}")
    post = bed.https.posts[0]
    assert post["path"] == "/v1/tlsrpt"
    assert post["host"] == "reports.test"
    assert post["type"] == "application/tlsrpt+gzip"
    report = json.loads(gzip.decompress(post["body"]))
    check_required_fields(report, "stsrpt.test")
    sts = policy(report, "sts")
    assert sts["policy"]["policy-string"] == ["version: STSv1", "mode: enforce",
                                              "mx: *.stsrpt.test", "max_age: 86400"]
    assert sts["policy"]["mx-host"] == ["*.stsrpt.test"]
    assert sts["summary"] == {"total-successful-session-count": 2,
                              "total-failure-session-count": 2}
    [d] = sts["failure-details"]
    assert d["result-type"] == "starttls-not-supported"
    assert d["receiving-mx-hostname"] == "mx1.stsrpt.test"
    assert d["receiving-ip"] == PLAIN_MX
    assert d["failed-session-count"] == 2


def test_daily_run_reports_a_finished_day(make_server, bed):
    """The queue manager reports a day that has ended without being asked:
    here a day file of yesterday, found at its first check."""
    kp = start_keypost(make_server, bed, start=False)
    yesterday = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1)
    day = yesterday.strftime("%Y%m%d")
    when = int(yesterday.timestamp())
    lines = [f"1\t{when}\trpt.test\ttlsa\t3 1 1 00\tsuccess\tmx2.rpt.test\t{TLS_MX}\t"
             f"127.0.0.1\t\n"] * 3
    lines += [f"1\t{when}\trpt.test\ttlsa\t3 1 1 00\tcertificate-expired\tmx2.rpt.test\t"
              f"{TLS_MX}\t127.0.0.1\tcertificate%09has \"expired\"\n"]
    rdir = os.path.join(kp.queue, "tlsrpt")
    os.makedirs(rdir)
    with open(os.path.join(rdir, f"day-{day}"), "w") as f:
        f.writelines(lines)
    owner = pwd.getpwnam("keypost")
    for path in (kp.queue, rdir, os.path.join(rdir, f"day-{day}")):
        os.chown(path, owner.pw_uid, owner.pw_gid)
    kp.start()
    files = kp.wait_delivered("tlsrpt@example.org", timeout=30)
    _, _, report = read_report(files[0])
    check_required_fields(report, "rpt.test")
    assert report["date-range"] == {"start-datetime": yesterday.strftime("%Y-%m-%dT00:00:00Z"),
                                    "end-datetime": yesterday.strftime("%Y-%m-%dT23:59:59Z")}
    p = policy(report, "tlsa", "mx2.rpt.test")
    assert p["summary"] == {"total-successful-session-count": 3,
                            "total-failure-session-count": 1}
    assert p["failure-details"][0]["failure-reason-code"] == 'certificate\thas "expired"'
    assert kp.wait_log(r"tlsrpt\[\d+\]: .*TLSRPT: report \S+ for rpt\.test: queued as")
    wait_for(lambda: not os.listdir(rdir) or os.listdir(rdir) == [".lock"],
             lambda: f"left in {rdir}: {os.listdir(rdir)}")


def test_off_by_default_and_command_usage(make_server, bed):
    kp = make_server(start=False, smtp_tls_reporting="yes",
                     smtp_tls_reporting_CAfile="/nonexistent/ca.pem")
    kp.write_config()
    r = kp.cli("check", "-c", kp.config, check=False)
    assert r.returncode == 1 and re.search(
        r":\d+: smtp_tls_reporting_CAfile /nonexistent/ca\.pem: ", r.stderr), r.stderr
    kp = make_server(start=False)
    kp.write_config()
    r = kp.cli("tlsrpt", "-c", kp.config, "--send", check=False)
    assert r.returncode == 1 and "smtp_tls_reporting = no" in r.stderr, r.stderr
    r = kp.cli("tlsrpt", "-c", kp.config, "--bogus", check=False)
    assert r.returncode == 1 and "usage: keypost tlsrpt" in r.stderr, r.stderr


def test_result_types(make_server, bed):
    """One delivery to each domain whose first MX hosts fail in a different
    way: each failure is counted under its RFC 8460 result type, then the
    last MX host takes the mail."""
    kp = start_keypost(make_server, bed)
    for d in ("stscert.test", "ststest.test", "stsfetch.test", "stswebpki.test",
              "stsinvalid.test", "dfail.test", "dreq.test"):
        deliver(kp, d, f"tok-{d}")
    shown = tlsrpt(kp).stdout
    want = [
        "dfail.test policy=tlsa mx=mx.dfail.test successful=0 failed=1 dnssec-invalid=1",
        "dfail.test policy=tlsa mx=mx2.rpt.test successful=1 failed=0",
        "dreq.test policy=tlsa mx=mx.dreq.test successful=0 failed=1 dane-required=1",
        "dreq.test policy=tlsa mx=mx2.rpt.test successful=1 failed=0",
        "stscert.test policy=sts successful=1 failed=3 certificate-host-mismatch=1 "
        "certificate-expired=1 certificate-not-trusted=1",
        "stsfetch.test policy=sts successful=0 failed=1 sts-policy-fetch-error=1",
        "stsinvalid.test policy=sts successful=0 failed=1 sts-policy-invalid=1",
        "ststest.test policy=sts successful=0 failed=1 starttls-not-supported=1",
        "stswebpki.test policy=sts successful=0 failed=1 sts-webpki-invalid=1",
    ]
    assert shown.splitlines() == want, shown + "\n" + kp.log()
    # a destination that fails is named with the reason, and the exit status says so
    posts = len(bed.https.posts)
    r = tlsrpt(kp, "--send", check=False)
    assert r.returncode == 2, r.stdout + r.stderr
    assert re.search(r"warning: report \S+ for stsfetch\.test: https://reports\.test/fail: "
                     r"HTTP status 500", r.stdout), r.stdout
    assert re.search(r"warning: report \S+ for stsinvalid\.test: rua ftp://reports\.test/: "
                     r"not a usable mailto: or https: URI", r.stdout), r.stdout
    assert re.search(r"no report for dfail\.test: no usable TLSRPTv1 record at "
                     r"_smtp\._tls\.dfail\.test", r.stdout), r.stdout
    assert len(bed.https.posts) == posts + 1
    # the testing policy let the mail go in plaintext; the failures deferred nothing
    assert bed.peers[-1].count("tok-ststest.test") == 1
