"""Outbound DANE (RFC 7672): keypost at smtp_tls_security_level = dane and
dane-only against a real DNSSEC setup on loopback (dnssec.py: the zone
test. signed with ldns-signzone, a validating Unbound), delivering to
Debian's Postfix on 127.0.0.1. Every MX host resolves to 127.0.0.1, where
one Postfix smtpd presents a leaf certificate and its CA (the chain), and
each case domain publishes different TLSA records for its MX host:

  ee311     3 1 1 of the leaf's key                    authenticated
  ta211     2 1 1 of the CA's key (DANE-TA, name checked) authenticated
  agile     3 1 1 wrong + 3 1 2 right: digest agility (RFC 7671 9) uses the
            strongest digest only                      authenticated
  weakdigest 3 1 1 right + 3 1 2 wrong: the same rule  deferred
  wrong     3 1 1 of another key                       deferred
  servfail  the TLSA query gets SERVFAIL               deferred
  bogus     the TLSA RRSIG is broken                   deferred
  notlsa    secure zone, no TLSA records               may (dane) / deferred (dane-only)
  unusable  only a 1 1 1 record (PKIX-EE, unusable)    encrypt (dane) / deferred (dane-only)
  insecure  an unsigned zone (its TLSA record is wrong, so that using it
            would show)                                may / deferred
  mixed     a signed MX RRset naming mx2.insecure.test may / deferred
  bogusmx   the MX RRSIG is broken                     deferred
  bogusaaaa the MX host's A RRset is secure, its AAAA RRSIG broken: the AAAA
            records are not used, nor do they hide the A RRset's status
                                                       authenticated (over IPv4)
  cname     mx.cname.test is a CNAME for real.cname.test, whose TLSA record
            is 2 1 1 of the CA: the expanded name is the TLSA base domain
            (RFC 7672 2.2), and the name the certificate must bear
                                                       authenticated
  cname2    a CNAME too, but only the initial name has a (3 1 1) record
                                                       authenticated
  cname3    as cname, but the certificate names only the initial name
            mx.cname3.test, which DANE-TA name checks do not accept
                                                       deferred
  insecmx   insecmx.insecure.test: an insecure MX RRset naming mx.insecmx.test,
            whose TLSA records are secure and right    may / deferred (see below)
  hostee    next hop [mx.hostee.test] (no MX lookup), 3 1 1 right  authenticated
  hostwrong next hop [mx.hostwrong.test], 3 1 1 wrong  deferred

Then Postfix's own DANE client, posttls-finger, is run on every case (in a
private mount namespace whose /etc/resolv.conf names the test resolver) and
its decision must be keypost's. One deliberate difference: for insecmx,
Postfix's default (smtp_tls_dane_insecure_mx_policy = dane) uses the MX
host's TLSA records although the MX RRset was not secure, as RFC 7672 2.2.1
allows; keypost never uses DANE without a secure MX RRset, which is
Postfix's `may` for that parameter, so posttls-finger runs with -M may
there (and with Postfix's default it authenticates the host instead)."""
import os
import re
import shutil
import smtplib
import subprocess

import pytest

from dnssec import DnssecBed, spki_digest
from kptest import KEYPOST, free_port, make_tmpdir, run
from postfix_peer import Postfix, need, need_root, read, wait_for

RESOLVER = "127.0.53.1"  # Unbound on port 53 there (resolv.conf has no port)
SENDER = "sender@example.org"
CASES = ["ee311", "ta211", "agile", "weakdigest", "wrong", "servfail", "bogus", "notlsa",
         "unusable", "insecure", "mixed", "bogusmx", "bogusaaaa", "insecmx", "cname", "cname2",
         "cname3", "hostee", "hostwrong"]
CNAMED = ("cname", "cname2", "cname3")  # mx.CASE.test CNAME real.CASE.test
# cases delivered to a [host] next hop: TLSA of that host, no MX RRset
BRACKET = {"hostee": "mx.hostee.test", "hostwrong": "mx.hostwrong.test"}
# What RFC 7672 and Postfix's documentation say for each case and level:
# verified (DANE-authenticated TLS), deferred, or tls (unauthenticated TLS:
# may or encrypt).
EXPECT = {
    "dane": {"ee311": "verified", "ta211": "verified", "agile": "verified",
             "weakdigest": "deferred", "wrong": "deferred", "servfail": "deferred",
             "bogus": "deferred", "notlsa": "tls", "unusable": "tls", "insecure": "tls",
             "mixed": "tls", "bogusmx": "deferred", "bogusaaaa": "verified",
             "insecmx": "tls",
             "cname": "verified", "cname2": "verified", "cname3": "deferred",
             "hostee": "verified", "hostwrong": "deferred"},
}
EXPECT["dane-only"] = {c: ("deferred" if e == "tls" else e) for c, e in EXPECT["dane"].items()}
# Why keypost defers, per case.
REASON = {
    "wrong": r"4\.7\.5 TLS policy dane(-only)? not met by mx\.wrong\.test\[127\.0\.0\.1\]:\d+: "
             r"Server certificate not trusted \(no matching DANE TLSA records\)",
    "servfail": r"4\.7\.5 TLSA lookup error for mx\.servfail\.test:\d+: lookup of "
                r"_\d+\._tcp\.mx\.servfail\.test failed \(rcode 2\)",
    "bogus": r"4\.7\.5 TLSA lookup error for mx\.bogus\.test:\d+: DNSSEC validation of "
             r"_\d+\._tcp\.mx\.bogus\.test failed: validation failure .*TLSA IN>: "
             r".*signature .*failed.*",
    "notlsa": r"4\.7\.5 TLS policy dane-only: no TLSA records for mx\.notlsa\.test:\d+",
    "unusable": r"4\.7\.5 TLS policy dane-only: no usable TLSA records for "
                r"mx\.unusable\.test:\d+",
    "insecure": r"4\.7\.5 TLS policy dane-only: MX RRset of insecure\.test is insecure",
    "mixed": r"4\.7\.5 TLS policy dane-only: address records of mx2\.insecure\.test are "
             r"insecure",
    "bogusmx": r"4\.4\.3 Host or domain name lookup failed: DNSSEC validation of "
               r"bogusmx\.test failed: validation failure <bogusmx\.test\. MX IN>: .*",
    "insecmx": r"4\.7\.5 TLS policy dane-only: MX RRset of insecmx\.insecure\.test is "
               r"insecure",
}
REASON["weakdigest"] = REASON["wrong"].replace("wrong", "weakdigest")
REASON["cname3"] = (r"4\.7\.5 TLS policy dane(-only)? not met by mx\.cname3\.test\[127\.0\.0\.1\]:"
                    r"\d+: Server certificate not trusted \(hostname mismatch\)")


REASON["hostwrong"] = REASON["wrong"].replace("wrong", "hostwrong")


def host(case):
    """The MX host (or [host] next hop) a case's mail goes to: one per case,
    so that each TLS log line belongs to one case."""
    if case in BRACKET:
        return BRACKET[case]
    return {"insecure": "mx.insecure.test", "mixed": "mx2.insecure.test"}.get(
        case, f"mx.{case}.test")


def domain(case):
    return "insecmx.insecure.test" if case == "insecmx" else f"{case}.test"


def nexthop(case, port):
    """How keypost's transport and posttls-finger name the destination."""
    return f"[{BRACKET[case]}]:{port}" if case in BRACKET else f"{domain(case)}:{port}"


# ---- the setup ------------------------------------------------------------------

def make_pki(d):
    """A CA and a leaf for every MX host name; the chain file Postfix serves."""
    def sh(*argv):
        run(list(argv), cwd=d)
    for name in ("ca", "leaf", "other"):
        sh("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
           "-out", f"{name}.key")
    sh("openssl", "req", "-x509", "-new", "-key", "ca.key", "-out", "ca.crt", "-days", "30",
       "-subj", "/CN=DANE test CA", "-addext", "basicConstraints=critical,CA:TRUE",
       "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    sh("openssl", "req", "-x509", "-new", "-key", "other.key", "-out", "other.crt", "-days",
       "30", "-subj", "/CN=someone else")
    sans = ",".join(sorted({f"DNS:{host(c)}" for c in CASES} | {"DNS:real.cname.test"}))
    with open(os.path.join(d, "leaf.ext"), "w") as f:
        f.write(f"basicConstraints=critical,CA:FALSE\nsubjectAltName={sans}\n"
                "extendedKeyUsage=serverAuth\n")
    sh("openssl", "req", "-new", "-key", "leaf.key", "-out", "leaf.csr", "-subj",
       "/CN=mx.ee311.test")
    sh("openssl", "x509", "-req", "-in", "leaf.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
       "-CAcreateserial", "-out", "leaf.crt", "-extfile", "leaf.ext", "-days", "30")
    chain = os.path.join(d, "chain.pem")
    with open(chain, "w") as f:
        for part in ("leaf.key", "leaf.crt", "ca.crt"):
            f.write(read(os.path.join(d, part)))
    os.chmod(chain, 0o600)
    return {n: os.path.join(d, f"{n}.crt") for n in ("ca", "leaf", "other")} | {
        "chain": chain, "leaf.key": os.path.join(d, "leaf.key")}


def zones(port, pki):
    leaf = spki_digest(pki["leaf"])
    leaf512 = spki_digest(pki["leaf"], "sha512")
    ca = spki_digest(pki["ca"])
    other = spki_digest(pki["other"])
    tlsa = {
        "ee311": [f"3 1 1 {leaf}"],
        "hostee": [f"3 1 1 {leaf}"],
        "insecmx": [f"3 1 1 {leaf}"],
        "bogusmx": [f"3 1 1 {leaf}"],
        "bogusaaaa": [f"3 1 1 {leaf}"],
        "ta211": [f"2 1 1 {ca}"],
        "agile": [f"3 1 1 {other}", f"3 1 2 {leaf512}"],
        "weakdigest": [f"3 1 1 {leaf}", f"3 1 2 {spki_digest(pki['other'], 'sha512')}"],
        "wrong": [f"3 1 1 {other}"],
        "cname": [f"2 1 1 {ca}"],
        "cname2": [f"3 1 1 {leaf}"],
        "cname3": [f"2 1 1 {ca}"],
        "hostwrong": [f"3 1 1 {other}"],
        "servfail": [],
        "bogus": [f"3 1 1 {leaf}"],
        "notlsa": [],
        "unusable": [f"1 1 1 {leaf}"],
    }
    secure = []
    for case, records in tlsa.items():
        secure.append(f"{case}.test. MX 10 mx.{case}.test.")
        if case in CNAMED:
            secure += [f"mx.{case}.test. CNAME real.{case}.test.",
                       f"real.{case}.test. A 127.0.0.1"]
        else:
            secure.append(f"mx.{case}.test. A 127.0.0.1")
        owner = f"real.{case}.test" if case in ("cname", "cname3") else f"mx.{case}.test"
        secure += [f"_{port}._tcp.{owner}. TLSA {r}" for r in records]
    secure.append("mx.bogusaaaa.test. AAAA ::1")
    secure.append("mixed.test. MX 10 mx2.insecure.test.")
    # TLSA records in the insecure zone are wrong: were they used, it would show
    insecure = {"insecure.test.": ["@ MX 10 mx", "mx A 127.0.0.1", "mx2 A 127.0.0.1",
                                   f"_{port}._tcp.mx TLSA 3 1 1 {other}",
                                   f"_{port}._tcp.mx2 TLSA 3 1 1 {other}",
                                   "insecmx MX 10 mx.insecmx.test."]}
    return secure, insecure


class Bed:
    pass


@pytest.fixture(scope="module")
def bed():
    need_root("Unbound on port 53 and a private mount namespace")
    need("posttls-finger")
    b = Bed()
    b.dir = make_tmpdir("kp-dane-")
    b.pki = make_pki(b.dir)
    b.port = free_port()
    secure, insecure = zones(b.port, b.pki)
    b.dns = DnssecBed(RESOLVER, secure, insecure,
                    bogus=[(f"_{b.port}._tcp.mx.bogus.test.", "TLSA"), ("bogusmx.test.", "MX"),
                           ("mx.bogusaaaa.test.", "AAAA")],
                    servfail=[f"_{b.port}._tcp.mx.servfail.test."])
    b.postfix = Postfix(smtpd_port=b.port, mailboxes=[f"user@{domain(c)}" for c in CASES],
                        smtpd_tls_security_level="may", smtpd_tls_chain_files=b.pki["chain"])
    # posttls-finger reads main.cf from MAIL_CONFIG; it needs little
    b.finger_conf = os.path.join(b.dir, "finger")
    os.makedirs(b.finger_conf)
    with open(os.path.join(b.finger_conf, "main.cf"), "w") as f:
        f.write("compatibility_level = 3.6\nsmtp_dns_support_level = dnssec\n")
    try:
        b.dns.start()
        b.postfix.start()
        yield b
    finally:
        b.postfix.stop()
        b.dns.stop()
        shutil.rmtree(b.dir, ignore_errors=True)


def test_testbed_answers_as_the_cases_assume(bed):
    """rcode, answer count and AD bit as the table above says, so that a
    failure below is keypost's (or Postfix's), not the zones'."""
    p = bed.port
    q = bed.dns.query
    assert q("ee311.test", 15) == (0, 2, True)          # MX + RRSIG, secure
    assert q(f"_{p}._tcp.mx.ee311.test", 52) == (0, 2, True)
    assert q(f"_{p}._tcp.mx.agile.test", 52) == (0, 3, True)
    assert q(f"_{p}._tcp.mx.servfail.test", 52)[0] == 2  # SERVFAIL
    assert q(f"_{p}._tcp.mx.bogus.test", 52)[0] == 2     # bogus: SERVFAIL
    assert q(f"_{p}._tcp.mx.notlsa.test", 52)[:2] == (3, 0)  # NXDOMAIN ...
    assert q(f"_{p}._tcp.mx.notlsa.test", 52)[2]             # ... proven
    assert q("insecure.test", 15) == (0, 1, False)      # answered, not secure
    assert q(f"_{p}._tcp.mx.insecure.test", 52) == (0, 1, False)
    assert q("mixed.test", 15) == (0, 2, True)
    assert q("mx2.insecure.test", 1) == (0, 1, False)
    assert q("bogusmx.test", 15)[0] == 2                # bogus: SERVFAIL
    assert q("insecmx.insecure.test", 15) == (0, 1, False)
    assert q(f"_{p}._tcp.mx.insecmx.test", 52) == (0, 2, True)


def test_fingerprint_tlsa_matches_openssl(bed):
    """keypost fingerprint --tlsa gives the record the openssl CLI computes,
    from the certificate and from its key alike."""
    want = f"3 1 1 {spki_digest(bed.pki['leaf'])}\n"
    for f in (bed.pki["leaf"], bed.pki["leaf.key"]):
        r = subprocess.run([KEYPOST, "fingerprint", "--tlsa", f], capture_output=True,
                           text=True)
        assert r.returncode == 0 and r.stdout == want, (f, r.stdout, r.stderr)


# ---- keypost -----------------------------------------------------------------------

def keypost_decisions(kp, port, level):
    """Send one message per case; return {case: (decision, status text)}
    from keypost's log, with decision verified | deferred | tls."""
    for case in CASES:
        with smtplib.SMTP("127.0.0.1", kp.smtp_port, timeout=30) as s:
            s.sendmail(SENDER, [f"user@{domain(case)}"],
                       f"Subject: dane {case}\r\n\r\ntoken-{level}-{case}\r\n")
    out = {}
    for case in CASES:
        m = kp.wait_log(rf"to=<user@{re.escape(domain(case))}>, relay=\S+, delay=\d+, "
                        rf"status=(\w+) \((.*)\)", timeout=30)
        status, text = m.group(1), m.group(2)
        relay = re.escape(f"{host(case)}[127.0.0.1]:{port}")
        if status == "sent":
            verified = re.search(rf"Verified TLS connection established to {relay}: ", kp.log())
            matched = re.search(rf"{relay}: dane: matched [23] [01] [012] [0-9a-f]+ at depth \d",
                                kp.log())
            tls = re.search(rf"(Untrusted|Trusted) TLS connection established to {relay}: ",
                            kp.log())
            assert bool(verified) == bool(matched), kp.log()
            assert verified or tls, f"{case}: sent without TLS?\n{kp.log()}"
            out[case] = ("verified" if verified else "tls", text)
        else:
            out[case] = (status, text)
    return out


def transport(port):
    return "inline:{ " + ", ".join(f"{domain(c)}=smtp:{nexthop(c, port)}" for c in CASES) + " }"


def start_keypost(make_server, bed, **params):
    return make_server(dns_resolver=f"{RESOLVER}@53",
                       dns_trust_anchor_file=bed.dns.anchor,
                       transport_maps=transport(bed.port), smtp_connect_timeout="5s", **params)


# ---- Postfix's DANE client ----------------------------------------------------------

def finger(bed, case, level):
    """posttls-finger's decision: verified, deferred (a TLSA lookup error,
    or TLSA records in force that do not authenticate the server) or tls
    (no DANE: it resorts to another level, which our CA-less setup cannot
    verify). At dane-only, Postfix's smtp(8) defers whatever is not
    DANE-verified, so tls counts as deferred there."""
    insecure_mx = ["-M", "may"] if case == "insecmx" else []
    r = bed.dns.in_namespace([need("posttls-finger"), "-v", "-c", "-l", level, "-t", "5",
                              "-T", "5", *insecure_mx, nexthop(case, bed.port)],
                             env=dict(os.environ, MAIL_CONFIG=bed.finger_conf))
    out = r.stdout + r.stderr
    assert "fatal" not in out and r.returncode == 0, out
    # TLSA records were found (at the host or its CNAME target) and are in force
    tlsa_used = re.search(rf"type TLSA for _{bed.port}\._tcp\.", out) and \
        "resorting to" not in out
    if re.search(r"TLSA lookup error for", out):
        decision = "deferred"
    elif "TLS connection established" not in out:
        # no connection at all, e.g. the MX lookup failed (bogus)
        assert re.search(r"(MX host lookup|Destination address lookup) failed|"
                         r"Failed to establish session", out), out
        decision = "deferred"
    elif re.search(r"Matched DANE (EE|TA) certificate", out) and \
            "Verified TLS connection established" in out:
        decision = "verified"
    elif tlsa_used:
        assert "server certificate verification failed" in out, out
        decision = "deferred"
    else:
        assert re.search(r"(Untrusted|Anonymous) TLS connection established", out), out
        decision = "deferred" if level == "dane-only" else "tls"
    return decision, out


# ---- the cases -------------------------------------------------------------------------

def check_level(make_server, bed, level, kp):
    got = keypost_decisions(kp, bed.port, level)
    mismatches = []
    for case in CASES:
        decision, text = got[case]
        assert decision == EXPECT[level][case], \
            f"{level} {case}: keypost {decision} ({text}), RFC 7672 says " \
            f"{EXPECT[level][case]}\n{kp.log()}"
        token = f"token-{level}-{case}"
        if decision == "deferred":
            assert re.fullmatch(REASON[case], text), f"{level} {case}: {text}"
            assert not [f for f in bed.postfix.delivered(f"user@{domain(case)}")
                        if token in read(f)], f"{level} {case}: deferred, yet delivered"
        else:
            wait_for(lambda: [f for f in bed.postfix.delivered(f"user@{domain(case)}")
                              if token in read(f)],
                     lambda: f"{case}: not in Postfix's mailbox\n{bed.postfix.log()}")
        pf, out = finger(bed, case, level)
        if pf != decision:
            mismatches.append(f"{case}: keypost {decision}, posttls-finger {pf}:\n{out}")
    # The test says so: keypost decided as Postfix's DANE client did, each case.
    assert not mismatches, "\n".join(mismatches)


def test_dane_matches_rfc_and_postfix(make_server, bed):
    kp = start_keypost(make_server, bed, smtp_tls_security_level="dane")
    check_level(make_server, bed, "dane", kp)


def test_dane_only_per_destination(make_server, bed, tmpbase):
    """dane-only from smtp_tls_policy_maps, with may as the default level."""
    table = os.path.join(tmpbase, "tls_policy")
    with open(table, "w") as f:
        # keyed as Postfix keys them: the domain, or [host]:port
        f.writelines(f"{nexthop(c, bed.port) if c in BRACKET else domain(c)} dane-only\n"
                     for c in CASES)
    kp = start_keypost(make_server, bed, smtp_tls_security_level="may",
                       smtp_tls_policy_maps=f"texthash:{table}")
    check_level(make_server, bed, "dane-only", kp)


# ---- configuration ----------------------------------------------------------------------

def check_config(tmpbase, lines):
    cf = os.path.join(tmpbase, "check.cf")
    with open(cf, "w") as f:
        f.write(f"queue_directory = {tmpbase}/q\nsmtpd_listen = 127.0.0.1:2525\n"
                f"local_transport = maildir:{tmpbase}/m\n" + "\n".join(lines) + "\n")
    return subprocess.run([KEYPOST, "check", "-c", cf], capture_output=True, text=True)


def test_check_refuses_missing_trust_anchor(tmpbase):
    r = check_config(tmpbase, ["smtp_tls_security_level = dane",
                               f"dns_trust_anchor_file = {tmpbase}/nosuch.key"])
    assert r.returncode == 1, r.stdout + r.stderr
    assert re.search(r"check\.cf:\d+: dns_trust_anchor_file .*nosuch\.key: cannot read it",
                     r.stderr), r.stderr


def test_check_warns_dane_without_anchor(tmpbase):
    """DANE with validation turned off can never authenticate: say so."""
    table = os.path.join(tmpbase, "tls_policy")
    with open(table, "w") as f:
        f.write("example.net dane-only\n")
    r = check_config(tmpbase, [f"smtp_tls_policy_maps = texthash:{table}",
                               "dns_trust_anchor_file ="])
    assert r.returncode == 0, r.stderr
    assert re.search(r"warning: a TLS security level is dane or dane-only, but there is no "
                     r"DNSSEC trust anchor", r.stderr), r.stderr
    r = check_config(tmpbase, ["smtp_tls_security_level = may", "dns_trust_anchor_file ="])
    assert r.returncode == 0 and "trust anchor" not in r.stderr, r.stderr


def test_check_accepts_dane_only_level(tmpbase):
    r = check_config(tmpbase, ["smtp_tls_security_level = dane-only",
                               f"dns_trust_anchor_file = {tmpbase}/ta.ds"])
    assert r.returncode == 1  # the anchor is missing ...
    with open(os.path.join(tmpbase, "ta.ds"), "w") as f:
        f.write("test. IN DS 38304 13 2 "
                "7067268a655ff3a301df1bd9a63ef064966da83010eb38ae3f095774032f585c\n")
    r = check_config(tmpbase, ["smtp_tls_security_level = dane-only",
                               f"dns_trust_anchor_file = {tmpbase}/ta.ds"])
    assert r.returncode == 0, r.stderr  # ... and then all is well


def test_check_anchor_must_be_readable_by_mail_owner(tmpbase):
    """Delivery agents (mail_owner) read the anchor, not root: check as them."""
    need_root("testing access as mail_owner")
    anchor = os.path.join(tmpbase, "ta.ds")
    with open(anchor, "w") as f:
        f.write("test. IN DS 38304 13 2 "
                "7067268a655ff3a301df1bd9a63ef064966da83010eb38ae3f095774032f585c\n")
    os.chmod(anchor, 0o600)
    r = check_config(tmpbase, [f"dns_trust_anchor_file = {anchor}"])
    assert r.returncode == 1, r.stdout + r.stderr
    assert re.search(r"check\.cf:\d+: dns_trust_anchor_file .*ta\.ds: mail_owner \S+ cannot "
                     r"read .*ta\.ds: Permission denied", r.stderr), r.stderr
    os.chmod(anchor, 0o644)
    r = check_config(tmpbase, [f"dns_trust_anchor_file = {anchor}"])
    assert r.returncode == 0, r.stderr
