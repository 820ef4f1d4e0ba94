"""keypost status and the Prometheus endpoint (metrics_listen): a real
keypost receives, delivers, defers, bounces and rejects mail and does TLS
with a client pinned by its public key; the endpoint is scraped over HTTP,
parsed by a strict parser of the text format written here, and its numbers
are compared with what the test did and with the log; `keypost status`
must tell the same story, and the certificates' expiry openssl reports."""
import calendar
import os
import re
import signal
import smtplib
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from kptest import KEYPOST, PKI, Keypost, free_port, make_tmpdir

SENDER = ""  # the null sender: a bounce sends no report, so counts stay exact


# ---- a strict parser of the Prometheus text format (0.0.4) -----------------

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL_VALUE = r'"((?:[^"\\\n]|\\[\\"n])*)"'


def unescape(v):
    return re.sub(r'\\([\\"n])', lambda m: "\n" if m.group(1) == "n" else m.group(1), v)


def parse_labels(text):
    """'a="x",b="y"' -> {"a": "x", "b": "y"}, refusing anything else."""
    labels = {}
    pos = 0
    while pos < len(text):
        m = re.compile(rf"({NAME})={LABEL_VALUE}(,|$)").match(text, pos)
        assert m, f"bad labels at {text[pos:]!r}"
        assert m.group(1) not in labels, f"label {m.group(1)} twice"
        labels[m.group(1)] = unescape(m.group(2))
        pos = m.end()
    return labels


def parse_exposition(text):
    """{family: {"type", "help", "samples": [(name, labels, value)]}}."""
    assert text.endswith("\n"), "the exposition must end with a newline"
    families = {}
    current = None
    seen = set()
    for line in text.split("\n")[:-1]:
        assert line.strip() == line and line, f"stray white space or empty line: {line!r}"
        m = re.fullmatch(rf"# HELP ({NAME}) (.*)", line)
        if m:
            assert m.group(1) not in families, f"family {m.group(1)} twice"
            current = m.group(1)
            families[current] = {"help": m.group(2), "type": None, "samples": []}
            continue
        m = re.fullmatch(rf"# TYPE ({NAME}) (counter|gauge|histogram|summary|untyped)", line)
        if m:
            assert m.group(1) == current and families[current]["type"] is None, line
            families[current]["type"] = m.group(2)
            continue
        assert not line.startswith("#"), f"unknown comment line {line!r}"
        m = re.fullmatch(rf"({NAME})(?:\{{(.*)\}})? (\S+)", line)
        assert m, f"bad sample line {line!r}"
        name, labels, value = m.group(1), parse_labels(m.group(2) or ""), float(m.group(3))
        assert current and families[current]["type"], f"sample before HELP/TYPE: {line!r}"
        ftype = families[current]["type"]
        allowed = {current} if ftype != "histogram" else \
            {current + "_bucket", current + "_sum", current + "_count"}
        assert name in allowed, f"{name} does not belong to family {current} ({ftype})"
        if ftype == "counter":
            assert name.endswith("_total") and value >= 0, line
        key = (name, tuple(sorted(labels.items())))
        assert key not in seen, f"series twice: {line!r}"
        seen.add(key)
        families[current]["samples"].append((name, labels, value))
    for fam, f in families.items():
        assert f["type"], f"{fam} has no TYPE"
        if f["type"] == "histogram":
            check_histogram(fam, f["samples"])
    return families


def check_histogram(fam, samples):
    """Buckets ascending in le, cumulative, ending with +Inf == _count; a _sum."""
    groups = {}
    for name, labels, value in samples:
        rest = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
        g = groups.setdefault(rest, {"buckets": [], "sum": None, "count": None})
        if name.endswith("_bucket"):
            assert "le" in labels, f"{fam}: bucket without le"
            g["buckets"].append((float(labels["le"]), value))
        elif name.endswith("_sum"):
            g["sum"] = value
        else:
            g["count"] = value
    for rest, g in groups.items():
        les = [le for le, _ in g["buckets"]]
        assert les == sorted(les) and len(set(les)) == len(les), f"{fam}: le order {les}"
        assert les and les[-1] == float("inf"), f"{fam}: no +Inf bucket"
        counts = [c for _, c in g["buckets"]]
        assert all(a <= b for a, b in zip(counts, counts[1:])), f"{fam}: not cumulative"
        assert g["count"] == counts[-1], f"{fam}: _count {g['count']} != +Inf {counts[-1]}"
        assert g["sum"] is not None and g["sum"] >= 0, f"{fam}: no _sum"


def value(families, fam, name=None, **labels):
    for n, lab, v in families[fam]["samples"]:
        if n == (name or fam) and lab == labels:
            return v
    raise AssertionError(f"no {name or fam}{labels}")


def buckets(families, fam):
    return [(float(lab["le"]), v) for n, lab, v in families[fam]["samples"]
            if n == fam + "_bucket"]


def test_parser_refuses_bad_expositions():
    good = ("# HELP h x\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\n"
            "h_sum 3\nh_count 2\n")
    assert parse_exposition(good)["h"]["type"] == "histogram"
    bad = [
        good.replace("h_count 2", "h_count 3"),                         # count != +Inf
        good.replace('h_bucket{le="+Inf"} 2\n', ""),                    # no +Inf
        good.replace('le="1"} 1', 'le="1"} 5'),                         # not cumulative
        "# HELP c x\n# TYPE c counter\nc 1\n",                          # counter w/o _total
        "# HELP c_total x\n# TYPE c_total counter\nc_total{a=\"x\\q\"} 1\n",  # bad escape
        "c_total 1\n",                                                   # no HELP/TYPE
        "# HELP g x\n# TYPE g gauge\ng 1\ng 2\n",                        # series twice
        "# HELP g x\n# TYPE g gauge\ng 1",                               # no final newline
    ]
    for text in bad:
        with pytest.raises(AssertionError):
            parse_exposition(text)
    assert parse_labels(r'a="q\"uo\\te\nx",b=""') == {"a": 'q"uo\\te\nx', "b": ""}


# ---- the server ------------------------------------------------------------

def openssl_not_after(crt):
    out = subprocess.run(["openssl", "x509", "-in", crt, "-noout", "-enddate"],
                         capture_output=True, text=True, check=True).stdout.strip()
    when = out.split("=", 1)[1]  # "Nov 30 12:00:00 2027 GMT"
    return calendar.timegm(time.strptime(when, "%b %d %H:%M:%S %Y %Z"))


@pytest.fixture(scope="module")
def peers(pki):
    """A self-signed client pinned by its public key, and keypost's own
    client certificate (smtp_tls_cert_file) valid for 30 days."""
    d = make_tmpdir("kp-status-")
    p = PKI(d)
    pinned = p.leaf("pinned-client")
    out = p.leaf("out.keypost.test", days=30)
    fp = subprocess.run([KEYPOST, "fingerprint", pinned[0]], capture_output=True, text=True,
                        check=True).stdout
    pubkey = re.search(r"pubkey_fingerprint=(\S+)", fp).group(1)
    pins = os.path.join(d, "pins")
    with open(pins, "w") as f:
        f.write(f"{pubkey} pinned-client\n")
    return {"pinned": pinned, "out": out, "pins": pins}


def scrape(kp, path="/metrics"):
    with urllib.request.urlopen(f"http://127.0.0.1:{kp.metrics_port}{path}", timeout=10) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return parse_exposition(r.read().decode())


def status(kp, check=True):
    r = kp.cli("status", "-c", kp.config, check=False)
    if check:
        assert r.returncode == 0, r.stdout + r.stderr
    lines = {}
    for line in r.stdout.splitlines():
        key, rest = line.split(": ", 1)
        lines.setdefault(key, []).append(rest)
    return r, lines


def fields(text):
    return dict(re.findall(r'(\w+)=("[^"]*"|\S+)', text))


def client_context(cert=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if cert:
        ctx.load_cert_chain(certfile=cert[0], keyfile=cert[1])
    return ctx


def msg(subject):
    return f"Subject: {subject}\r\n\r\nbody\r\n".encode()


@pytest.fixture
def server(make_server, pki, peers):
    metrics_port = free_port()
    closed_port = free_port()  # nobody listens there: delivery is deferred
    kp = make_server(
        start=False,
        metrics_listen=f"127.0.0.1:{metrics_port}",
        mynetworks="192.0.2.0/24",
        local_recipient_maps="inline:{ alice=1, bob=1 }",
        relay_domains="closed.test, gone.test",
        transport_maps=f"inline:{{ {{ closed.test = smtp:[127.0.0.1]:{closed_port} }}, "
                       "{ gone.test = error:5.1.1 mailbox is gone } }",
        smtpd_tls_ask_ccert="yes",
        relay_clientcerts="texthash:" + peers["pins"],
        smtpd_relay_restrictions="permit_tls_clientcerts, reject_unauth_destination",
        smtp_tls_cert_file=peers["out"][0],
        smtp_tls_key_file=peers["out"][1],
        minimal_backoff_time="1h",
        maximal_backoff_time="2h")
    kp.metrics_port = metrics_port
    kp.start(wait_ports=[kp.smtp_port, metrics_port])
    return kp


def test_metrics_and_status(server, pki, peers):
    kp = server
    t0 = time.time()
    # Keypost.start() connected once to see the port open; a worker may
    # accept that connection a little later.
    listener = {"listener": f"127.0.0.1:{kp.smtp_port}", "kind": "smtpd"}
    deadline = time.time() + 10
    while value(before := scrape(kp), "keypost_smtpd_connections_total", **listener) < 1:
        assert time.time() < deadline, kp.log()
        time.sleep(0.05)
    conn0 = value(before, "keypost_smtpd_connections_total", **listener)
    assert conn0 == 1
    assert value(before, "keypost_messages_accepted_total") == 0
    assert value(before, "keypost_queue_readable") == 1
    start = value(before, "keypost_start_time_seconds")
    assert abs(start - time.time()) < 60

    # 1. plain: two local deliveries, an unknown user, a relay attempt.
    with smtplib.SMTP("127.0.0.1", kp.smtp_port, timeout=10) as s:
        s.sendmail(SENDER, ["alice@example.org"], msg("one"))
        s.sendmail(SENDER, ["bob@example.org"], msg("two"))
        s.mail(SENDER)
        assert s.rcpt("nobody@example.org")[0] == 550
        assert s.rcpt("someone@far.test")[0] == 554
        s.rset()
    # 2. TLS with the pinned client: one deferred, one bounced recipient.
    with smtplib.SMTP("127.0.0.1", kp.smtp_port, timeout=10) as s:
        s.starttls(context=client_context(peers["pinned"]))
        s.ehlo("client.test")
        s.sendmail(SENDER, ["x@closed.test", "y@gone.test"], msg("three"))
    # 3. TLS without a client certificate, and a session left open.
    with smtplib.SMTP("127.0.0.1", kp.smtp_port, timeout=10) as s:
        s.starttls(context=client_context())
        s.ehlo("client.test")
        s.noop()
    # The counters move just before the log line, after the Maildir file.
    kp.wait_log(r"to=<alice@example\.org>.*status=sent")
    kp.wait_log(r"to=<bob@example\.org>.*status=sent")
    kp.wait_log(r"to=<x@closed\.test>.*status=deferred")
    kp.wait_log(r"to=<y@gone\.test>.*status=bounced")
    kp.wait_log(r"(?s)ccert: status=trusted via=pubkey-pin.*ccert: status=none via=none")
    # The deferred message's state file is written right after its log line,
    # and a session is counted until its "disconnect" line: wait for both.
    qid = kp.wait_log(r"(\w{16}): to=<x@closed\.test>").group(1)
    deadline = time.time() + 10
    while not os.path.exists(os.path.join(kp.queue, "state", qid)) or \
            len(re.findall(r": disconnect from ", kp.log())) < 4:
        assert time.time() < deadline, kp.log()
        time.sleep(0.05)
    held = socket.create_connection(("127.0.0.1", kp.smtp_port), timeout=10)
    assert held.recv(512).startswith(b"220 ")
    try:
        after = scrape(kp)
        r, st = status(kp)
    finally:
        held.close()
    elapsed = time.time() - t0

    # ---- the endpoint ----
    log = kp.log()
    assert value(after, "keypost_smtpd_connections_total", **listener) - conn0 == 4
    assert value(after, "keypost_smtpd_sessions") == 1
    assert value(after, "keypost_messages_accepted_total") == 3
    assert value(after, "keypost_smtpd_rejects_total", stage="RCPT") == 2
    for stage in ("CONNECT", "HELO", "STARTTLS", "MAIL", "DATA", "END-OF-MESSAGE", "other"):
        assert value(after, "keypost_smtpd_rejects_total", stage=stage) == 0
    for what, n in (("sent", 2), ("deferred", 1), ("bounced", 1)):
        assert value(after, "keypost_deliveries_total", status=what) == n
        assert len(re.findall(rf"status={what} ", log)) == n, log
    assert value(after, "keypost_tls_handshakes_total", result="ok") == 2
    assert value(after, "keypost_tls_handshakes_total", result="failed") == 0
    tls = buckets(after, "keypost_tls_handshake_seconds")
    assert tls[-1] == (float("inf"), 2)
    assert value(after, "keypost_tls_handshake_seconds", "keypost_tls_handshake_seconds_count") \
        == 2
    trust = {(lab["via"], lab["status"]): v for n, lab, v in
             after["keypost_tls_trust_decisions_total"]["samples"]}
    assert trust[("pubkey-pin", "trusted")] == 1
    assert trust[("none", "none")] == 1
    assert sum(trust.values()) == 2
    delay = buckets(after, "keypost_delivery_delay_seconds")
    assert delay[-1] == (float("inf"), 2)
    assert dict(delay)[60.0] == 2, delay  # both delivered within a minute of arrival
    assert value(after, "keypost_delivery_delay_seconds",
                 "keypost_delivery_delay_seconds_sum") < 60
    assert value(after, "keypost_queue_messages", state="deferred") == 1
    assert value(after, "keypost_queue_messages", state="active") == 0
    assert value(after, "keypost_queue_messages", state="hold") == 0
    assert value(after, "keypost_queue_messages", state="incoming") == 0
    arrival = int(qid[:8], 16)
    age = value(after, "keypost_queue_oldest_message_age_seconds")
    assert 0 <= age <= time.time() - arrival + 1

    # ---- keypost status ----
    assert fields(st["status"][0])["pid"] == str(kp.proc.pid), r.stdout
    assert st["status"][0].startswith("running "), r.stdout
    assert st["sessions"] == ["open=1"], r.stdout
    assert fields(st["queue"][0]) == {"incoming": "0", "active": "0", "deferred": "1",
                                      "hold": "0"}, r.stdout
    oldest = fields(st["oldest"][0])
    assert oldest["arrival"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(arrival))
    hour = fields(st["last_hour"][0])
    assert hour == {"sent": "2", "deferred": "1", "bounced": "1", "rejected": "2"}, r.stdout
    if elapsed < 50:
        assert fields(st["last_minute"][0]) == hour, r.stdout
    certs = {}
    for line in st["certificate"]:
        f = fields(line)
        param = next(k for k in f if k.endswith("_file") or k.endswith("_files"))
        certs[param] = f
    assert set(certs) == {"smtpd_tls_cert_file", "smtp_tls_cert_file"}, r.stdout
    for param, crt, days in (("smtpd_tls_cert_file", pki.path("mx.keypost.test", "crt"), 365),
                             ("smtp_tls_cert_file", peers["out"][0], 30)):
        f = certs[param]
        assert f[param] == crt
        not_after = openssl_not_after(crt)
        assert f["not_after"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(not_after))
        assert int(f["days_left"]) in (days - 1, days), f  # made seconds before
        assert int(f["days_left"]) == (not_after - int(time.time())) // 86400 or \
            int(f["days_left"]) == (not_after - int(time.time()) + 2) // 86400
        assert "expired" not in f

    # The endpoint carries the same expiry dates (the master reads the files).
    exp = {lab["parameter"]: (lab["file"], v) for n, lab, v in
           after["keypost_tls_certificate_not_after_seconds"]["samples"]}
    assert exp == {"smtpd_tls_cert_file": (pki.path("mx.keypost.test", "crt"),
                                           openssl_not_after(pki.path("mx.keypost.test", "crt"))),
                   "smtp_tls_cert_file": (peers["out"][0], openssl_not_after(peers["out"][0]))}

    # A message put on hold moves from deferred to hold, in both views.
    kp.cli("queue", "-c", kp.config, "hold", qid)
    again = scrape(kp)
    assert value(again, "keypost_queue_messages", state="hold") == 1
    assert value(again, "keypost_queue_messages", state="deferred") == 0
    _, st = status(kp)
    assert fields(st["queue"][0])["hold"] == "1"


def test_endpoint_answers_only_get_metrics(server):
    kp = server
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"http://127.0.0.1:{kp.metrics_port}/", timeout=10)
    assert e.value.code == 404
    req = urllib.request.Request(f"http://127.0.0.1:{kp.metrics_port}/metrics", data=b"x",
                                 method="POST")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    assert e.value.code == 405
    # A handshake that fails (not TLS at all) and one abandoned half-way.
    for junk in (b"GET / HTTP/1.0\r\n\r\n", None):
        with socket.create_connection(("127.0.0.1", kp.smtp_port), timeout=10) as raw:
            raw.recv(512)
            raw.sendall(b"STARTTLS\r\n")
            assert raw.recv(512).startswith(b"220 ")
            if junk:
                raw.sendall(junk)
                try:
                    raw.recv(512)  # an alert, or a reset
                except ConnectionError:
                    pass
    deadline = time.time() + 10
    while value(scrape(kp), "keypost_tls_handshakes_total", result="failed") < 2:
        assert time.time() < deadline, kp.log()
        time.sleep(0.1)
    fams = scrape(kp)
    assert value(fams, "keypost_tls_handshakes_total", result="failed") == 2
    assert value(fams, "keypost_tls_handshakes_total", result="ok") == 0
    # A client that connects and sends nothing does not stop the next scrape
    # for longer than the request timeout; smtpd does not notice at all.
    idle = socket.create_connection(("127.0.0.1", kp.metrics_port), timeout=10)
    try:
        t = time.time()
        with smtplib.SMTP("127.0.0.1", kp.smtp_port, timeout=10) as s:
            assert s.noop()[0] == 250
        assert time.time() - t < 2
        fams = scrape(kp)
        assert value(fams, "keypost_messages_accepted_total") == 0
    finally:
        idle.close()


def test_reload_keeps_counters(server):
    """SIGHUP replaces the metrics process with the other children; the
    counters live in the master's mapping and go on; a changed
    metrics_listen waits for a restart, with a warning."""
    kp = server
    with smtplib.SMTP("127.0.0.1", kp.smtp_port, timeout=10) as s:
        s.sendmail(SENDER, ["alice@example.org"], msg("before reload"))
    kp.wait_log(r"to=<alice@example\.org>.*status=sent")
    first = scrape(kp)
    kp.params["metrics_listen"] = f"127.0.0.1:{free_port()}"
    kp.write_config()
    kp.signal(signal.SIGHUP)
    kp.wait_log(r"reload: configuration, certificates and tables re-read")
    kp.wait_log(r'metrics_listen changed from "127\.0\.0\.1:\d+" to "127\.0\.0\.1:\d+"; '
                r"the change takes effect when keypost is restarted")
    deadline = time.time() + 10
    while True:
        try:
            second = scrape(kp)
            break
        except (urllib.error.URLError, ConnectionError):
            assert time.time() < deadline, kp.log()
            time.sleep(0.1)
    assert value(second, "keypost_start_time_seconds") == \
        value(first, "keypost_start_time_seconds")
    assert value(second, "keypost_messages_accepted_total") == 1
    assert value(second, "keypost_deliveries_total", status="sent") == 1
    with smtplib.SMTP("127.0.0.1", kp.smtp_port, timeout=10) as s:
        s.sendmail(SENDER, ["bob@example.org"], msg("after reload"))
    kp.wait_log(r"to=<bob@example\.org>.*status=sent")
    third = scrape(kp)
    assert value(third, "keypost_messages_accepted_total") == 2
    assert value(third, "keypost_deliveries_total", status="sent") == 2


def test_crashed_worker_sessions_not_counted(server):
    """The sessions of a worker that dies are no longer counted as open."""
    kp = server
    held = socket.create_connection(("127.0.0.1", kp.smtp_port), timeout=10)
    try:
        assert held.recv(512).startswith(b"220 ")
        port = held.getsockname()[1]
        pid = int(kp.wait_log(rf"smtpd\[(\d+)\]: connect from "
                              rf"unknown\[127\.0\.0\.1\]:{port}\b").group(1))
        assert value(scrape(kp), "keypost_smtpd_sessions") == 1
        os.kill(pid, signal.SIGKILL)
        kp.wait_log(rf"smtpd process {pid} was killed by signal 9")
        assert value(scrape(kp), "keypost_smtpd_sessions") == 0
        _, st = status(kp)
        assert st["sessions"] == ["open=0"]
    finally:
        held.close()


def test_status_without_permission(server):
    """A user who may read neither the counters nor the queue hears so."""
    r = subprocess.run([KEYPOST, "status", "-c", server.config], capture_output=True, text=True,
                       user="nobody")
    assert r.returncode == 2
    assert "status: unknown (" in r.stdout and "permission denied" in r.stdout, r.stdout
    assert "permission denied" in r.stderr, r.stderr


def test_status_when_stopped(server):
    kp = server
    assert kp.stop() == 0
    r, st = status(kp, check=False)
    assert r.returncode == 2, r.stdout + r.stderr
    assert st["status"][0].startswith("not running"), r.stdout
    assert "sessions" not in st and "last_hour" not in st, r.stdout
    assert fields(st["queue"][0])["deferred"] == "0", r.stdout


def test_status_reports_unreadable_certificate(tmpbase):
    cf = os.path.join(tmpbase, "keypost.cf")
    q = os.path.join(tmpbase, "queue")
    with open(cf, "w") as f:
        f.write(f"queue_directory = {q}\nsmtp_tls_cert_file = {tmpbase}/missing.pem\n")
    r = subprocess.run([KEYPOST, "status", "-c", cf], capture_output=True, text=True)
    assert r.returncode == 2
    assert f'certificate: smtp_tls_cert_file={tmpbase}/missing.pem error="' in r.stdout
    assert "No such file or directory" in r.stdout
    assert "status: not running" in r.stdout


def test_metrics_port_taken_refuses_start(tmpbase):
    """A metrics_listen that cannot be bound stops keypost at start, with the
    reason, rather than running without the numbers someone asked for."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        port = taken.getsockname()[1]
        kp = Keypost(tmpbase, metrics_listen=f"127.0.0.1:{port}")
        kp.write_config()
        r = subprocess.run([KEYPOST, "serve", "-c", kp.config], capture_output=True, text=True,
                           timeout=30)
        assert r.returncode == 2, r.stdout + r.stderr + kp.log()
        assert f"metrics_listen: cannot listen on 127.0.0.1:{port}: Address already in use" \
            in kp.log(), kp.log()
    finally:
        taken.close()


@pytest.mark.parametrize("addr,allow,error", [
    ("192.0.2.1:9154", "no", "is not a loopback address"),
    ("[2001:db8::1]:9154", "no", "is not a loopback address"),
    ("192.0.2.1:9154", "yes", None),
    ("[::1]:9154", "no", None),
    ("127.0.0.2:9154", "no", None),
    ("localhost:9154", "no", "bad address"),
    ("127.0.0.1", "no", "bad address"),
])
def test_check_metrics_listen(tmpbase, addr, allow, error):
    cf = os.path.join(tmpbase, "keypost.cf")
    with open(cf, "w") as f:
        f.write(f"myhostname = mx.keypost.test\nqueue_directory = {tmpbase}/q\n"
                f"metrics_listen = {addr}\nmetrics_allow_non_loopback = {allow}\n")
    r = subprocess.run([KEYPOST, "check", "-c", cf], capture_output=True, text=True)
    if error is None:
        assert r.returncode == 0, r.stderr
    else:
        assert r.returncode == 1
        assert re.search(rf"{re.escape(cf)}:3: metrics_listen: .*{error}", r.stderr), r.stderr
