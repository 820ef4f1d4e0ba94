"""The SMTP server's TLS settings as an outside probe sees them: the TLS 1.2
cipher suites on offer (smtpd_tls_ciphers, smtpd_tls_exclude_ciphers), and
the checks on the server's key files (mode, key/certificate match), at
`keypost check` and at a SIGHUP reload."""
import os
import re
import shutil
import signal
import smtplib
import ssl
import subprocess

from kptest import KEYPOST

CBC = "ECDHE-ECDSA-AES128-SHA256"
AEAD = "ECDHE-ECDSA-AES128-GCM-SHA256"


def tls12_handshake(port, cipher):
    """The suite a TLS 1.2 STARTTLS handshake offering only `cipher`
    settled on, or None when the server refused it."""
    r = subprocess.run(["openssl", "s_client", "-starttls", "smtp", "-crlf", "-tls1_2",
                        "-cipher", cipher, "-connect", f"127.0.0.1:{port}"],
                       input="QUIT\n", capture_output=True, text=True, timeout=30)
    m = re.search(r"Cipher is (\S+)", r.stdout)
    if r.returncode != 0 or m is None or m.group(1) == "(NONE)":
        return None
    return m.group(1)


def tls12_ecdsa_suites():
    """Every TLS 1.2 suite with ECDSA authentication this OpenSSL knows,
    with its Mac= column (AEAD, or the HMAC of a CBC suite)."""
    out = subprocess.run(["openssl", "ciphers", "-v", "ALL"], capture_output=True, text=True,
                         check=True).stdout
    suites = {}
    for line in out.splitlines():
        f = line.split()
        cols = dict(c.split("=", 1) for c in f[2:] if "=" in c)
        if f[1] == "TLSv1.2" and cols.get("Au") == "ECDSA":
            suites[f[0]] = cols["Mac"]
    return suites


def test_cbc_suites_only_when_configured(make_server):
    kp = make_server()
    assert tls12_handshake(kp.smtp_port, CBC) is None
    kp.wait_log(r"TLS handshake failed: .*no shared cipher")
    assert tls12_handshake(kp.smtp_port, AEAD) == AEAD
    # Postfix's own defaults (grade medium, nothing excluded) bring CBC back.
    kp = make_server(smtpd_tls_ciphers="medium", smtpd_tls_exclude_ciphers="")
    assert tls12_handshake(kp.smtp_port, CBC) == CBC
    assert tls12_handshake(kp.smtp_port, AEAD) == AEAD


def test_default_accepts_only_aead_suites(make_server):
    kp = make_server()
    suites = tls12_ecdsa_suites()
    assert CBC in suites and suites[CBC] == "SHA256", suites
    accepted = {name: mac for name, mac in suites.items()
                if tls12_handshake(kp.smtp_port, name) is not None}
    assert AEAD in accepted, accepted
    assert all(mac == "AEAD" for mac in accepted.values()), accepted


def test_exclusion_by_name(make_server):
    """An exclusion list names suites too, as in Postfix, and replaces the
    default list: the other CBC suites come back."""
    kp = make_server(smtpd_tls_exclude_ciphers=CBC)
    assert tls12_handshake(kp.smtp_port, CBC) is None
    assert tls12_handshake(kp.smtp_port, "ECDHE-ECDSA-AES256-SHA384") == \
        "ECDHE-ECDSA-AES256-SHA384"
    assert tls12_handshake(kp.smtp_port, AEAD) == AEAD


# ---- keypost check ----------------------------------------------------------

def check(tmpbase, lines):
    cf = os.path.join(tmpbase, "check.cf")
    with open(cf, "w") as f:
        f.write(f"queue_directory = {tmpbase}/q\nsmtpd_listen = 127.0.0.1:2525\n"
                f"local_transport = maildir:{tmpbase}/m\nsmtpd_tls_security_level = may\n"
                + "\n".join(lines) + "\n"
                # a user list, so that no warning about accepting every address shows
                "local_recipient_maps = inline:{ postmaster=1 }\n")
    return cf, subprocess.run([KEYPOST, "check", "-c", cf], capture_output=True, text=True,
                              timeout=30)


def own_pair(pki, tmpbase, mode=0o600):
    """A copy of the server's certificate and key that a test may change."""
    crt = os.path.join(tmpbase, "server.crt")
    key = os.path.join(tmpbase, "server.key")
    shutil.copy(pki.path("mx.keypost.test", "crt"), crt)
    shutil.copy(pki.path("mx.keypost.test", "key"), key)
    os.chmod(key, mode)
    return crt, key


def test_bad_cipher_settings_are_errors(tmpbase, pki):
    crt, key = own_pair(pki, tmpbase)
    tls = [f"smtpd_tls_cert_file = {crt}", f"smtpd_tls_key_file = {key}"]
    cf, r = check(tmpbase, tls)
    assert r.returncode == 0 and "configuration OK" in r.stdout, r.stderr
    # Line 7: after the four common lines and the two key lines.
    cf, r = check(tmpbase, tls + ["smtpd_tls_exclude_ciphers = AES+"])
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"{cf}:7: smtpd_tls_exclude_ciphers:" in r.stderr, r.stderr
    cf, r = check(tmpbase, tls + ["smtpd_tls_exclude_ciphers = SHA256, HIGH"])
    assert r.returncode == 1 and f"{cf}:7: smtpd_tls_exclude_ciphers:" in r.stderr, r.stderr
    cf, r = check(tmpbase, tls + ["smtpd_tls_exclude_ciphers = !HIGH"])
    assert r.returncode == 1 and f"{cf}:7: smtpd_tls_exclude_ciphers:" in r.stderr, r.stderr
    cf, r = check(tmpbase, tls + ["smtpd_tls_ciphers = strongest"])
    assert r.returncode == 1 and f"{cf}:7:" in r.stderr and "smtpd_tls_ciphers" in r.stderr, \
        r.stderr


def test_misspelt_exclusion_warns(tmpbase, pki):
    """OpenSSL ignores an exclusion that names nothing: keypost says so."""
    crt, key = own_pair(pki, tmpbase)
    tls = [f"smtpd_tls_cert_file = {crt}", f"smtpd_tls_key_file = {key}"]
    cf, r = check(tmpbase, tls + ["smtpd_tls_exclude_ciphers = SHA1, SHA265, SHA384"])
    assert r.returncode == 0, r.stderr
    assert re.search(rf"warning: {re.escape(cf)}:7: smtpd_tls_exclude_ciphers: SHA265: "
                     "selects no cipher", r.stderr), r.stderr
    cf, r = check(tmpbase, tls)
    assert "selects no cipher" not in r.stderr, r.stderr


def test_world_readable_key_warns(tmpbase, pki):
    crt, key = own_pair(pki, tmpbase, 0o644)
    tls = [f"smtpd_tls_cert_file = {crt}", f"smtpd_tls_key_file = {key}"]
    cf, r = check(tmpbase, tls)
    assert r.returncode == 0 and "configuration OK" in r.stdout, r.stderr
    assert f"warning: {cf}:6: smtpd_tls_key_file {key} is readable by all local users " \
        "(mode 0644)" in r.stderr, r.stderr
    os.chmod(key, 0o604)
    cf, r = check(tmpbase, tls)
    assert f"smtpd_tls_key_file {key} is readable" in r.stderr, r.stderr
    # 0600, and root:GROUP 0640 (Debian's ssl-cert practice): no warning.
    for mode in (0o600, 0o640):
        os.chmod(key, mode)
        cf, r = check(tmpbase, tls)
        assert r.returncode == 0 and "warning" not in r.stderr, (oct(mode), r.stderr)


def test_world_readable_key_warns_when_key_file_is_the_cert_file(tmpbase, pki):
    """smtpd_tls_key_file defaults to $smtpd_tls_cert_file: one file with
    both, blamed on the cert_file line."""
    both = pki.bundle("both", pki.path("mx.keypost.test", "key"),
                      pki.path("mx.keypost.test", "crt"))
    os.chmod(both, 0o644)
    cf, r = check(tmpbase, [f"smtpd_tls_cert_file = {both}"])
    assert r.returncode == 0, r.stderr
    assert f"warning: {cf}:5: smtpd_tls_key_file {both} is readable by all" in r.stderr, \
        r.stderr


def test_world_readable_chain_file_warns(tmpbase, pki):
    chain = os.path.join(tmpbase, "chain.pem")
    with open(chain, "w") as f:
        f.write(open(pki.path("mx.keypost.test", "key")).read() +
                open(pki.path("mx.keypost.test", "crt")).read())
    os.chmod(chain, 0o644)
    cf, r = check(tmpbase, [f"smtpd_tls_chain_files = {chain}"])
    assert r.returncode == 0, r.stderr
    assert f"warning: {cf}:5: smtpd_tls_chain_files {chain} is readable by all local users" \
        in r.stderr, r.stderr
    os.chmod(chain, 0o600)
    cf, r = check(tmpbase, [f"smtpd_tls_chain_files = {chain}"])
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr


def test_mismatched_key_is_named(tmpbase, pki):
    """An RSA key for the EC certificate used to read "no certificate
    assigned"; an EC key of another pair, "key values mismatch"."""
    crt, _ = own_pair(pki, tmpbase)
    for kind in ("rsa", "ec"):
        other = pki.key(f"stray-{kind}", kind)
        cf, r = check(tmpbase, [f"smtpd_tls_cert_file = {crt}",
                                f"smtpd_tls_key_file = {other}"])
        assert r.returncode == 1, r.stdout
        assert f"{cf}:5: private key {other} does not match certificate {crt}" in r.stderr, \
            r.stderr
        assert "smtpd_tls_key_file and smtpd_tls_cert_file must be one key pair" in r.stderr
        assert "no certificate assigned" not in r.stderr and "error:" not in r.stderr, r.stderr
        if kind == "rsa":
            assert "the key is RSA, the certificate's key is EC" in r.stderr, r.stderr


def test_mismatched_chain_file_is_named(tmpbase, pki):
    chain = os.path.join(tmpbase, "chain.pem")
    with open(chain, "w") as f:
        f.write(open(pki.key("stray-chain", "rsa")).read() +
                open(pki.path("mx.keypost.test", "crt")).read())
    os.chmod(chain, 0o600)
    cf, r = check(tmpbase, [f"smtpd_tls_chain_files = {chain}"])
    assert r.returncode == 1, r.stdout
    assert f"{cf}:5: private key in {chain} does not match the certificate in the same file" \
        in r.stderr, r.stderr
    assert "no certificate assigned" not in r.stderr and "error:" not in r.stderr, r.stderr


def test_unreadable_key_is_not_called_a_mismatch(tmpbase, pki):
    crt, _ = own_pair(pki, tmpbase)
    missing = os.path.join(tmpbase, "missing.key")
    cf, r = check(tmpbase, [f"smtpd_tls_cert_file = {crt}", f"smtpd_tls_key_file = {missing}"])
    assert r.returncode == 1
    assert f"{cf}:6: cannot load private key {missing}: " in r.stderr, r.stderr
    assert "No such file or directory" in r.stderr and "does not match" not in r.stderr


# ---- reload -----------------------------------------------------------------

def peer_certificate(port):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        s.starttls(context=ctx)
        s.ehlo("probe.test")
        return s.sock.getpeercert(binary_form=True)


def pem_to_der(path):
    return subprocess.run(["openssl", "x509", "-in", path, "-outform", "DER"],
                          capture_output=True, check=True).stdout


def test_reload_with_replaced_key_is_refused_with_the_reason(make_server, pki, tmpbase):
    crt, key = own_pair(pki, tmpbase)
    kp = make_server(smtpd_tls_cert_file=crt, smtpd_tls_key_file=key)
    assert peer_certificate(kp.smtp_port) == pem_to_der(crt)
    stray = pki.key("stray-reload", "rsa")
    shutil.copy(stray, key)
    kp.signal(signal.SIGHUP)
    kp.wait_log(r"reload refused")
    log = kp.log()
    assert re.search(rf"reload: {re.escape(kp.config)}:\d+: private key {re.escape(key)} "
                     rf"does not match certificate {re.escape(crt)}", log), log
    assert "the key is RSA, the certificate's key is EC (smtpd_tls_key_file and " \
        "smtpd_tls_cert_file must be one key pair)" in log, log
    assert "no certificate assigned" not in log, log
    # Still serving, with the certificate and key loaded before.
    assert peer_certificate(kp.smtp_port) == pem_to_der(crt)
    assert tls12_handshake(kp.smtp_port, AEAD) == AEAD
