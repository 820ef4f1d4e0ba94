"""Peer authentication by TLS client certificate, end to end: CA cliques,
public-key and certificate pins, tls_trust_server_ccerts (Postfix 3.12),
smtpd_tls_req_ccert, check_ccert_access, the Received header and
`keypost fingerprint`.

Every case is checked three ways: Postfix's "... TLS connection established"
line, keypost's "ccert:" decision line (found through the session id of the
client's source port) and the relay decision for a foreign recipient.

The PKI is made once per module and each configuration runs one server for
all of its cases."""
import hashlib
import os
import re
import shutil
import smtplib
import ssl
import subprocess
import time

import pytest

from kptest import KEYPOST, PKI, Keypost, make_tmpdir, run

FOREIGN = "someone@elsewhere.test"
LOCAL = "alice@example.org"
SENDER = "peer@remote.test"


# ---- PKI -------------------------------------------------------------------

def digest_hex(data, digest):
    return ":".join(f"{b:02X}" for b in hashlib.new(digest, data).digest())


def openssl_fps(crt, digest="sha256"):
    """Both fingerprints computed with openssl + hashlib, independent of
    keypost: (certificate digest, SubjectPublicKeyInfo digest)."""
    der = subprocess.run(["openssl", "x509", "-in", crt, "-outform", "DER"],
                         capture_output=True, check=True).stdout
    pub = subprocess.run(["openssl", "x509", "-in", crt, "-noout", "-pubkey"],
                         capture_output=True, check=True).stdout
    spki = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=pub,
                          capture_output=True, check=True).stdout
    return digest_hex(der, digest), digest_hex(spki, digest)


class Cert:
    def __init__(self, pki, name, crt, key, chain=(), issuer=None):
        self.name = name
        self.issuer = issuer or name  # issuer CN; self-signed when None
        self.crt = crt
        self.key = key
        # What the client sends: the leaf followed by its intermediates.
        self.bundle = pki.bundle(f"{name}-bundle", crt, *chain) if chain else crt
        self.cert_fp, self.pubkey_fp = openssl_fps(crt)


@pytest.fixture(scope="module")
def cc(pki):
    """The clique and every peer certificate the cases use."""
    d = make_tmpdir("kp-ccert-")
    p = PKI(d)
    c = {}

    def leaf(name, chain=(), **kw):
        crt, key = p.leaf(name, **kw)
        c[name] = Cert(p, name, crt, key, [p.path(i, "crt") for i in chain], kw.get("issuer"))

    p.ca("clique-ca")
    p.ca("other-ca")
    p.ca("srv-int", issuer="clique-ca", eku="serverAuth")
    p.ca("deep-int1", issuer="clique-ca")
    p.ca("deep-int2", issuer="deep-int1")
    leaf("peer-both", issuer="clique-ca")
    leaf("peer-srvonly", issuer="clique-ca", eku="serverAuth")
    leaf("peer-under-srvint", issuer="srv-int", eku="serverAuth", chain=["srv-int"])
    leaf("peer-noeku", issuer="clique-ca", eku=None)
    leaf("peer-codesign", issuer="clique-ca", eku="codeSigning")
    leaf("peer-expired", issuer="clique-ca", expired=True)
    leaf("peer-future", issuer="clique-ca", not_yet_valid=True)
    leaf("peer-otherca", issuer="other-ca")
    leaf("peer-pinkey")                      # self-signed, pinned by public key
    leaf("peer-pincert")                     # self-signed, pinned by certificate
    leaf("peer-otherca-pinned", issuer="other-ca", eku="serverAuth")
    leaf("peer-ed25519", issuer="clique-ca", kind="ed25519")
    leaf("peer-rsa", issuer="clique-ca", kind="rsa")
    leaf("peer-deep", issuer="deep-int2", chain=["deep-int2", "deep-int1"])
    leaf("peer-oneint", issuer="deep-int1", chain=["deep-int1"])
    for i in range(10):                      # check_ccert_access subjects
        leaf(f"acc-{i}")
    c["_pki"] = p
    c["_cafile"] = p.path("clique-ca", "crt")
    pins = os.path.join(d, "relay_clientcerts")
    with open(pins, "w") as f:
        f.write("# relay_clientcerts\n"
                f"{c['peer-pinkey'].pubkey_fp}  peer-pinkey by key\n"
                f"{c['peer-pincert'].cert_fp}  peer-pincert by certificate\n"
                f"{c['peer-otherca-pinned'].pubkey_fp.lower()}  lower case works too\n")
    c["_pins"] = pins
    yield c
    shutil.rmtree(d, ignore_errors=True)


# ---- servers ---------------------------------------------------------------

def start_server(pki, base, name, **params):
    d = os.path.join(base, name)
    os.makedirs(d)
    os.chmod(d, 0o755)
    params.setdefault("smtpd_tls_cert_file", pki.path("mx.keypost.test", "crt"))
    params.setdefault("smtpd_tls_key_file", pki.path("mx.keypost.test", "key"))
    params.setdefault("smtpd_tls_security_level", "may")
    return Keypost(d, **params).start()


def stop_server(kp):
    rc = kp.stop()
    kp.check_sanitizers()
    assert rc == 0, f"keypost exited with {rc}:\n{kp.output()}"


@pytest.fixture(scope="module")
def servers_base():
    d = make_tmpdir("kp-ccert-srv-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def clique_params(cc, **extra):
    params = {
        "smtpd_tls_ask_ccert": "yes",
        "smtpd_tls_CAfile": cc["_cafile"],
        "relay_clientcerts": "texthash:" + cc["_pins"],
        "mynetworks": "192.0.2.0/24",
        "smtpd_relay_restrictions": "permit_tls_clientcerts, permit_tls_all_clientcerts, "
                                    "reject_unauth_destination",
        "smtpd_tls_received_header": "yes",
    }
    params.update(extra)
    return params


@pytest.fixture(scope="module", params=["no", "yes"], ids=lambda m: f"trust_server_ccerts={m}")
def mode(request):
    return request.param


@pytest.fixture(scope="module")
def server(mode, pki, cc, servers_base):
    kp = start_server(pki, servers_base, f"main-{mode}",
                      **clique_params(cc, tls_trust_server_ccerts=mode))
    yield kp
    stop_server(kp)


# ---- client ----------------------------------------------------------------

def client_context(cert=None, tls="1.3"):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if tls == "1.2":
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    else:
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    if cert is not None:
        ctx.load_cert_chain(certfile=cert.bundle, keyfile=cert.key)
    return ctx


class Session:
    """What one client connection saw and what the server logged about it."""

    def __init__(self, kp, port):
        self.kp = kp
        self.port = port
        self.rcpt = {}
        m = kp.wait_log(rf"(?m)\]: connect from unknown\[127\.0\.0\.1\]:{port} "
                        rf"session=(S[0-9A-F]+)$")
        self.sid = m.group(1)

    def lines(self, wait=r"ccert: "):
        """The texts of the session's log lines: what follows "ROLE[PID]: ",
        without the " session=ID" that ends each of them."""
        if wait:
            self.kp.wait_log(rf"(?m)\]: {wait}.* session={self.sid}$")
        end = f" session={self.sid}"
        return [ln.split("]: ", 1)[1][:-len(end)]
                for ln in self.kp.log().splitlines() if ln.endswith(end)]

    def line(self, pattern, timeout=10):
        """The first of the session's lines whose text matches pattern from
        its start (a final $ is the end of the text)."""
        deadline = time.time() + timeout
        while True:
            for text in self.lines(wait=None):
                m = re.match(rf"({pattern})", text)
                if m:
                    return m
            if time.time() > deadline:
                raise AssertionError(f"no line {pattern!r} of {self.sid}:\n{self.kp.log()}")
            time.sleep(0.05)


def converse(kp, cert=None, tls="1.3", rcpts=(FOREIGN,), starttls=True):
    """EHLO, STARTTLS (with cert when given), EHLO, MAIL, RCPT..., QUIT."""
    with smtplib.SMTP("127.0.0.1", kp.smtp_port, timeout=10) as s:
        port = s.sock.getsockname()[1]
        s.ehlo("client.test")
        if starttls:
            s.starttls(context=client_context(cert, tls))
            assert s.sock.version() == ("TLSv1.2" if tls == "1.2" else "TLSv1.3")
            s.ehlo("client.test")
        code, msg = s.mail(SENDER)
        assert code == 250, msg
        sess = Session(kp, port)
        for r in rcpts:
            sess.rcpt[r] = s.rcpt(r)
    return sess


def send_message(kp, cert, rcpt, tls="1.3"):
    with smtplib.SMTP("127.0.0.1", kp.smtp_port, timeout=10) as s:
        s.ehlo("client.test")
        s.starttls(context=client_context(cert, tls))
        s.ehlo("client.test")
        s.sendmail(SENDER, [rcpt], f"Subject: ccert {rcpt}\r\n\r\nbody\r\n".encode())
    files = kp.wait_delivered(rcpt)
    text = open(files[0]).read()
    return text[:text.index("\n\n")] if "\n\n" in text else text


# ---- the cases -------------------------------------------------------------

# name: (certificate, label, status, via, chain, reason, relay allowed),
# for tls_trust_server_ccerts = no; YES_OVERRIDES lists what "yes" changes.
# OpenSSL 1.1 says "unsupported", OpenSSL 3 "unsuitable" (X509_V_ERR_INVALID_PURPOSE).
PURPOSE = "(unsupported|unsuitable) certificate purpose"
NO_ISSUER = "unable to get local issuer certificate"
SELF_SIGNED = "self.signed certificate"
CASES = {
    "no-cert": (None, "Anonymous", "none", "none", None, None, False),
    "clientAuth+serverAuth": ("peer-both", "Trusted", "trusted", "chain", "ok", None, True),
    "serverAuth-only": ("peer-srvonly", "Untrusted", "untrusted", "none", "failed", PURPOSE,
                        False),
    "serverAuth-only-intermediate": ("peer-under-srvint", "Untrusted", "untrusted", "none",
                                     "failed", PURPOSE, False),
    "no-EKU": ("peer-noeku", "Trusted", "trusted", "chain", "ok", None, True),
    "codeSigning-only": ("peer-codesign", "Untrusted", "untrusted", "none", "failed", PURPOSE,
                         False),
    "expired": ("peer-expired", "Untrusted", "untrusted", "none", "failed",
                "certificate has expired", False),
    "not-yet-valid": ("peer-future", "Untrusted", "untrusted", "none", "failed",
                      "certificate is not yet valid", False),
    "other-CA": ("peer-otherca", "Untrusted", "untrusted", "none", "failed", NO_ISSUER, False),
    "self-signed-pubkey-pin": ("peer-pinkey", "Untrusted", "trusted", "pubkey-pin", "failed",
                               SELF_SIGNED, True),
    "self-signed-cert-pin": ("peer-pincert", "Untrusted", "trusted", "cert-pin", "failed",
                             SELF_SIGNED, True),
    "other-CA-serverAuth-pubkey-pin": ("peer-otherca-pinned", "Untrusted", "trusted",
                                       "pubkey-pin", "failed", NO_ISSUER, True),
    "Ed25519": ("peer-ed25519", "Trusted", "trusted", "chain", "ok", None, True),
    "RSA": ("peer-rsa", "Trusted", "trusted", "chain", "ok", None, True),
    "two-intermediates-depth-9": ("peer-deep", "Trusted", "trusted", "chain", "ok", None, True),
}
YES_OVERRIDES = {
    "serverAuth-only": ("peer-srvonly", "Trusted", "trusted", "serverauth-chain", "ok", None,
                        True),
    "serverAuth-only-intermediate": ("peer-under-srvint", "Trusted", "trusted",
                                     "serverauth-chain", "ok", None, True),
}


def expected(name, mode):
    return (YES_OVERRIDES if mode == "yes" and name in YES_OVERRIDES else CASES)[name]


def check_session(sess, cc, exp, tls="1.3"):
    certname, label, status, via, chain, reason, allowed = exp
    ver = re.escape("TLSv1.2" if tls == "1.2" else "TLSv1.3")
    lines = sess.lines()  # both lines are written together, at the handshake
    # (a) Postfix's line.
    tls_line = [ln for ln in lines if "TLS connection established" in ln]
    assert len(tls_line) == 1 and re.search(
        rf"^{label} TLS connection established from unknown\[127\.0\.0\.1\]: "
        rf"{ver} with cipher \S+ \(\d+/\d+ bits\)$", tls_line[0]), (label, lines)
    # (b) keypost's decision.
    ccert = [ln for ln in lines if ln.startswith("ccert: ")]
    assert len(ccert) == 1, ccert
    text = ccert[0]
    if certname is None:
        assert text == "ccert: status=none via=none", text
    else:
        cert = cc[certname]
        m = re.fullmatch(r'ccert: status=(\S+) via=(\S+) chain=(\S+) subject_cn="([^"]*)" '
                         r'issuer_cn="([^"]*)" cert_fingerprint=(\S+) pubkey_fingerprint=(\S+) '
                         r'days_left=(-?\d+)(?: reason="([^"]*)")?', text)
        assert m, text
        assert (m.group(1), m.group(2), m.group(3)) == (status, via, chain), text
        assert (m.group(4), m.group(5)) == (certname, cert.issuer), text
        assert m.group(6) == cert.cert_fp and m.group(7) == cert.pubkey_fp, text
        if chain == "ok":
            assert m.group(9) is None, text
        else:
            assert m.group(9) is not None and re.fullmatch(reason, m.group(9)), text
    # (c) the relay decision.
    code, msg = sess.rcpt[FOREIGN]
    if allowed:
        assert code == 250, (code, msg)
    else:
        assert code == 554, (code, msg)
        assert msg == f"5.7.1 <{FOREIGN}>: Relay access denied".encode(), msg
        sess.line(rf"NOQUEUE: reject: RCPT from unknown\[127\.0\.0\.1\]: 554 5\.7\.1 "
                  rf"<{re.escape(FOREIGN)}>: Relay access denied; ")
    # A local recipient is never a relay question.
    code, msg = sess.rcpt[LOCAL]
    assert code == 250, (code, msg)


@pytest.mark.parametrize("tls", ["1.3", "1.2"], ids=lambda v: f"TLSv{v}")
@pytest.mark.parametrize("case", list(CASES))
def test_client_certificate(server, mode, cc, case, tls):
    exp = expected(case, mode)
    cert = cc[exp[0]] if exp[0] else None
    sess = converse(server, cert, tls=tls, rcpts=(FOREIGN, LOCAL))
    check_session(sess, cc, exp, tls)


def test_cert_pin_warns_and_key_pin_does_not(server, cc):
    sess = converse(server, cc["peer-pincert"])
    sess.line(r"warning: peer-pincert is pinned by its certificate digest, which changes at "
              r"every renewal: pin its public key instead: " + cc["peer-pincert"].pubkey_fp)
    sess = converse(server, cc["peer-pinkey"])
    assert not any("pinned by its certificate digest" in ln for ln in sess.lines())


def test_expired_leaf_days_left_negative(server, cc):
    sess = converse(server, cc["peer-expired"])
    m = sess.line(r"ccert: .* days_left=(-\d+) ")
    assert int(m.group(2)) < -365


def test_received_header(server, mode, cc):
    hdr = send_message(server, cc["peer-both"], "rcv-trusted@example.org")
    assert '\t(Client CN "peer-both", Issuer "clique-ca" (verified OK))' in hdr, hdr
    assert "(using TLSv1.3 with cipher" in hdr, hdr
    hdr = send_message(server, cc["peer-pinkey"], "rcv-pinned@example.org", tls="1.2")
    assert '\t(Client CN "peer-pinkey", Issuer "peer-pinkey" (not verified))' in hdr, hdr
    assert "(using TLSv1.2 with cipher" in hdr, hdr
    hdr = send_message(server, cc["peer-otherca"], "rcv-other@example.org")
    assert '(Client CN "peer-otherca", Issuer "other-ca" (not verified))' in hdr, hdr
    hdr = send_message(server, cc["peer-srvonly"], "rcv-srvonly@example.org")
    state = "verified OK" if mode == "yes" else "not verified"
    assert f'(Client CN "peer-srvonly", Issuer "clique-ca" ({state}))' in hdr, hdr
    hdr = send_message(server, None, "rcv-anon@example.org")
    assert "Client CN" not in hdr and "with ESMTPS id" in hdr, hdr


def test_no_starttls_is_not_a_certificate(server):
    sess = converse(server, None, starttls=False, rcpts=(FOREIGN, LOCAL))
    assert sess.rcpt[FOREIGN][0] == 554
    assert sess.rcpt[LOCAL][0] == 250
    assert not any("ccert:" in ln for ln in sess.lines(wait="NOQUEUE: reject: "))


def test_fingerprint_digest_sha1(pki, cc, servers_base, tmp_path):
    """smtpd_tls_fingerprint_digest = sha1: pins, log and tables use SHA-1."""
    key_fp = openssl_fps(cc["peer-pinkey"].crt, "sha1")[1]
    cert_fp = openssl_fps(cc["peer-pincert"].crt, "sha1")[0]
    pins = tmp_path / "pins-sha1"
    pins.write_text(f"{key_fp} peer-pinkey\n{cert_fp} peer-pincert\n"
                    f"{cc['peer-otherca'].pubkey_fp} a sha256 pin pins nobody here\n")
    kp = start_server(pki, servers_base, "sha1",
                      **clique_params(cc, smtpd_tls_fingerprint_digest="sha1",
                                      relay_clientcerts=f"texthash:{pins}"))
    try:
        sess = converse(kp, cc["peer-pinkey"])
        assert sess.rcpt[FOREIGN][0] == 250, sess.rcpt
        sess.line(rf"ccert: status=trusted via=pubkey-pin chain=failed .* "
                  rf"pubkey_fingerprint={key_fp} ")
        sess = converse(kp, cc["peer-pincert"], tls="1.2")
        assert sess.rcpt[FOREIGN][0] == 250, sess.rcpt
        sess.line(rf"ccert: status=trusted via=cert-pin chain=failed .* "
                  rf"cert_fingerprint={cert_fp} ")
        sess = converse(kp, cc["peer-rsa"])
        sess.line(r"ccert: status=trusted via=chain chain=ok ")
        # a SHA-256 pin does not match a SHA-1 digest
        sess = converse(kp, cc["peer-otherca"])
        assert sess.rcpt[FOREIGN][0] == 554, sess.rcpt
        sess.line(r"ccert: status=untrusted via=none chain=failed ")
    finally:
        stop_server(kp)


# ---- smtpd_tls_ccert_verifydepth -----------------------------------------

@pytest.fixture(scope="module")
def depth1_server(pki, cc, servers_base):
    kp = start_server(pki, servers_base, "depth1",
                      **clique_params(cc, smtpd_tls_ccert_verifydepth="1"))
    yield kp
    stop_server(kp)


CHAIN_TOO_LONG = "certificate chain too long"


@pytest.mark.parametrize("case,exp", [
    # depth 1 = the leaf and the CA that issued it, nothing between.
    ("direct", ("peer-both", "Trusted", "trusted", "chain", "ok", None, True)),
    ("two-intermediates", ("peer-deep", "Untrusted", "untrusted", "none", "failed",
                           CHAIN_TOO_LONG, False)),
])
def test_verifydepth(depth1_server, cc, case, exp):
    sess = converse(depth1_server, cc[exp[0]], rcpts=(FOREIGN, LOCAL))
    check_session(sess, cc, exp)


def test_verifydepth_one_intermediate(depth1_server, cc):
    """Postfix: verifydepth N admits certificates at chain depth 0..N (it sets
    OpenSSL's limit to N+1 and fails any depth > N with "certificate chain
    too long"). With N=1 a leaf under one intermediate is too deep."""
    exp = ("peer-oneint", "Untrusted", "untrusted", "none", "failed", CHAIN_TOO_LONG, False)
    sess = converse(depth1_server, cc["peer-oneint"], rcpts=(FOREIGN, LOCAL))
    check_session(sess, cc, exp)


# ---- smtpd_tls_req_ccert -------------------------------------------------

@pytest.fixture(scope="module")
def req_server(pki, cc, servers_base):
    # No smtpd_tls_ask_ccert: smtpd_tls_req_ccert implies it.
    params = clique_params(cc, smtpd_tls_req_ccert="yes", smtpd_tls_security_level="encrypt")
    del params["smtpd_tls_ask_ccert"]
    kp = start_server(pki, servers_base, "req", **params)
    yield kp
    stop_server(kp)


@pytest.mark.parametrize("tls", ["1.3", "1.2"], ids=lambda v: f"TLSv{v}")
@pytest.mark.parametrize("certname,why", [
    (None, "No client certificate presented"),
    ("peer-otherca", "Client certificate not trusted"),
    ("peer-codesign", "Client certificate not trusted"),
])
def test_req_ccert_refuses(req_server, cc, certname, why, tls):
    with smtplib.SMTP("127.0.0.1", req_server.smtp_port, timeout=10) as s:
        port = s.sock.getsockname()[1]
        s.ehlo("client.test")
        code, msg = s.mail(SENDER)
        assert code == 530 and b"5.7.0 Must issue a STARTTLS command first" in msg
        s.starttls(context=client_context(cc[certname] if certname else None, tls))
        code, msg = s.getreply()  # unsolicited, right after the handshake
        assert code == 421, (code, msg)
        assert msg == f"4.7.1 mx.keypost.test Error: {why}".encode(), msg
        with pytest.raises(smtplib.SMTPServerDisconnected):
            s.ehlo("client.test")
            s.mail(SENDER)
    sess = Session(req_server, port)
    sess.line(rf"NOQUEUE: reject: CONNECT from unknown\[127\.0\.0\.1\]: 421 4\.7\.1 "
              rf"mx\.keypost\.test Error: {why}; proto=E?SMTP$")
    sess.line(r"(Anonymous|Untrusted) TLS connection established")


@pytest.mark.parametrize("tls", ["1.3", "1.2"], ids=lambda v: f"TLSv{v}")
@pytest.mark.parametrize("certname", ["peer-both", "peer-pinkey", "peer-pincert"])
def test_req_ccert_admits(req_server, cc, certname, tls):
    sess = converse(req_server, cc[certname], tls=tls, rcpts=(FOREIGN, LOCAL))
    assert sess.rcpt[FOREIGN][0] == 250, sess.rcpt
    assert sess.rcpt[LOCAL][0] == 250, sess.rcpt
    assert not any("reject: CONNECT" in ln for ln in sess.lines())


# ---- check_ccert_access --------------------------------------------------

@pytest.fixture(scope="module")
def access_tables(cc):
    d = os.path.dirname(cc["_cafile"])
    a = {f"acc-{i}": cc[f"acc-{i}"] for i in range(10)}
    plain = os.path.join(d, "ccert_access")
    with open(plain, "w") as f:
        f.write(f"{a['acc-0'].pubkey_fp}  OK\n"
                f"{a['acc-1'].pubkey_fp}  REJECT go away\n"
                f"{a['acc-2'].pubkey_fp}  DEFER\n"
                f"{a['acc-3'].pubkey_fp}  550 custom text\n"
                f"{a['acc-4'].pubkey_fp}  DUNNO\n"
                f"{a['acc-5'].cert_fp}  OK\n"
                # default search order: certificate first, then public key
                f"{a['acc-6'].cert_fp}  OK\n"
                f"{a['acc-6'].pubkey_fp}  REJECT key loses to certificate\n"
                f"{a['acc-7'].pubkey_fp}  REJECT\n")
    keyonly = os.path.join(d, "ccert_access_keyonly")
    with open(keyonly, "w") as f:
        f.write(f"{a['acc-5'].cert_fp}  OK\n"                # must be ignored
                f"{a['acc-0'].pubkey_fp}  OK\n"
                f"{a['acc-6'].cert_fp}  OK\n"                # ignored
                f"{a['acc-6'].pubkey_fp}  REJECT by key only\n"
                f"{a['acc-8'].cert_fp}  REJECT certificate must not match\n")
    return plain, keyonly


@pytest.fixture(scope="module")
def access_server(pki, cc, access_tables, servers_base):
    kp = start_server(pki, servers_base, "access", smtpd_tls_ask_ccert="yes",
                      smtpd_tls_CAfile=cc["_cafile"], mynetworks="192.0.2.0/24",
                      smtpd_relay_restrictions="check_ccert_access texthash:"
                                               f"{access_tables[0]}, reject_unauth_destination")
    yield kp
    stop_server(kp)


@pytest.fixture(scope="module")
def access_keyonly_server(pki, cc, access_tables, servers_base):
    kp = start_server(pki, servers_base, "access-keyonly", smtpd_tls_ask_ccert="yes",
                      mynetworks="192.0.2.0/24",
                      smtpd_relay_restrictions="check_ccert_access { texthash:"
                                               f"{access_tables[1]}, search_order = "
                                               "pubkey_fingerprint }, reject_unauth_destination")
    yield kp
    stop_server(kp)


RELAY_DENIED = (554, f"5.7.1 <{FOREIGN}>: Relay access denied")


def rejected(code, dsn, text):
    return (code, f"{dsn} <{FOREIGN}>: Recipient address rejected: {text}")


@pytest.mark.parametrize("certname,want", [
    ("acc-0", (250, "2.1.5 Ok")),
    ("acc-1", rejected(554, "5.7.1", "go away")),
    ("acc-2", rejected(450, "4.7.1", "Access denied")),
    ("acc-3", rejected(550, "5.7.1", "custom text")),
    ("acc-4", RELAY_DENIED),                  # DUNNO falls through
    ("acc-5", (250, "2.1.5 Ok")),             # certificate fingerprint
    ("acc-6", (250, "2.1.5 Ok")),             # certificate looked up first
    ("acc-7", rejected(554, "5.7.1", "Access denied")),
    ("acc-9", RELAY_DENIED),                  # not listed
    (None, RELAY_DENIED),                     # no certificate
])
def test_check_ccert_access(access_server, cc, certname, want):
    sess = converse(access_server, cc[certname] if certname else None, rcpts=(FOREIGN, LOCAL))
    code, msg = sess.rcpt[FOREIGN]
    assert (code, msg.decode()) == want
    if code != 250:
        sess.line(rf"NOQUEUE: reject: RCPT from unknown\[127\.0\.0\.1\]: {code} ")
    code, msg = sess.rcpt[LOCAL]
    if certname in ("acc-1", "acc-2", "acc-3", "acc-7"):
        assert code == want[0], (code, msg)   # the action applies to every recipient
    else:
        assert code == 250, (code, msg)


@pytest.mark.parametrize("certname,want", [
    ("acc-5", RELAY_DENIED),                  # listed by certificate only: ignored
    ("acc-0", (250, "2.1.5 Ok")),
    ("acc-6", rejected(554, "5.7.1", "by key only")),
    ("acc-8", RELAY_DENIED),
    ("acc-9", RELAY_DENIED),
])
def test_check_ccert_access_search_order(access_keyonly_server, cc, certname, want):
    sess = converse(access_keyonly_server, cc[certname], rcpts=(FOREIGN,))
    code, msg = sess.rcpt[FOREIGN]
    assert (code, msg.decode()) == want


# ---- keypost fingerprint -------------------------------------------------

def ossl_pubkey_dgst(crt, digest):
    """openssl x509 -pubkey | openssl pkey -pubin -outform DER | openssl dgst"""
    pub = subprocess.run(["openssl", "x509", "-in", crt, "-noout", "-pubkey"],
                         capture_output=True, check=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=pub,
                         capture_output=True, check=True).stdout
    out = subprocess.run(["openssl", "dgst", f"-{digest}"], input=der, capture_output=True,
                         check=True).stdout.decode()
    hexd = out.strip().split("= ")[-1]
    return ":".join(hexd[i:i + 2] for i in range(0, len(hexd), 2)).upper()


def ossl_cert_fingerprint(crt, digest):
    out = run(["openssl", "x509", "-in", crt, "-noout", "-fingerprint", f"-{digest}"]).stdout
    return out.strip().split("=", 1)[1]


@pytest.mark.parametrize("digest", ["sha256", "sha1", "md5"])
@pytest.mark.parametrize("certname", ["peer-both", "peer-rsa", "peer-ed25519", "peer-pinkey"])
def test_fingerprint_cli(cc, certname, digest):
    cert = cc[certname]
    args = [KEYPOST, "fingerprint"] + ([] if digest == "sha256" else ["-d", digest])
    want_pub = ossl_pubkey_dgst(cert.crt, digest)
    want_cert = ossl_cert_fingerprint(cert.crt, digest)
    size = {"sha256": 32, "sha1": 20, "md5": 16}[digest]
    assert re.fullmatch(r"([0-9A-F]{2}:){%d}[0-9A-F]{2}" % (size - 1), want_pub)
    r = subprocess.run(args + [cert.crt], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"cert_fingerprint={want_cert}\npubkey_fingerprint={want_pub}\n"
    # The private key gives the same public-key digest (what to pin).
    r = subprocess.run(args + [cert.key], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"pubkey_fingerprint={want_pub}\n"
    # So does the bare public key.
    pub = cert.key + ".pub"
    run(["openssl", "pkey", "-in", cert.key, "-pubout", "-out", pub])
    r = subprocess.run(args + [pub], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"pubkey_fingerprint={want_pub}\n"


def test_fingerprint_cli_errors(cc, tmp_path):
    crt = cc["peer-both"].crt
    r = subprocess.run([KEYPOST, "fingerprint", "-d", "sha512", crt], capture_output=True,
                       text=True)
    assert r.returncode == 1 and 'unknown digest "sha512"' in r.stderr
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    r = subprocess.run([KEYPOST, "fingerprint", str(junk)], capture_output=True, text=True)
    assert r.returncode == 1 and "holds no PEM certificate or key" in r.stderr
    r = subprocess.run([KEYPOST, "fingerprint"], capture_output=True, text=True)
    assert r.returncode == 1 and "usage: keypost fingerprint" in r.stderr
