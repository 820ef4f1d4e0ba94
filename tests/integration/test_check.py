"""`keypost check`: the guard rails an operator would thank us for."""
import os
import subprocess

from kptest import KEYPOST


def check(tmpbase, lines):
    cf = os.path.join(tmpbase, "check.cf")
    with open(cf, "w") as f:
        f.write(f"queue_directory = {tmpbase}/q\nsmtpd_listen = 127.0.0.1:2525\n"
                f"local_transport = maildir:{tmpbase}/m\n" + "\n".join(lines) + "\n"
                # a user list, so that no warning about accepting every address shows
                "local_recipient_maps = inline:{ postmaster=1 }\n")
    return cf, subprocess.run([KEYPOST, "check", "-c", cf], capture_output=True, text=True)


def server_tls(pki):
    return [f"smtpd_tls_cert_file = {pki.path('mx.keypost.test', 'crt')}",
            f"smtpd_tls_key_file = {pki.path('mx.keypost.test', 'key')}",
            "smtpd_tls_security_level = may"]


def test_trust_server_ccerts_with_a_public_bundle_warns(tmpbase, pki):
    cas = [pki.ca(f"bundleca{i}") for i in range(8)]
    bundle = pki.bundle("manycas", *cas)
    cf, r = check(tmpbase, server_tls(pki) + [
        "smtpd_tls_ask_ccert = yes", f"smtpd_tls_CAfile = {bundle}",
        "tls_trust_server_ccerts = yes"])
    assert r.returncode == 0 and "configuration OK" in r.stdout, r.stderr
    assert "tls_trust_server_ccerts = yes with 8 CAs" in r.stderr
    assert f"{cf}:8:" in r.stderr  # names the CAfile line
    # One clique CA: no warning.
    cf, r = check(tmpbase, server_tls(pki) + [
        "smtpd_tls_ask_ccert = yes", f"smtpd_tls_CAfile = {pki.path('rootca', 'crt')}",
        "tls_trust_server_ccerts = yes"])
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr
    cf, r = check(tmpbase, server_tls(pki) + ["tls_trust_server_ccerts = yes",
                                              "tls_append_default_CA = yes"])
    assert "any server certificate from any public CA is a trusted peer" in r.stderr


def test_malformed_pin_warns(tmpbase, pki):
    fp = pki.fingerprints(pki.path("mx.keypost.test", "crt"))["pubkey_fingerprint"]
    peers = os.path.join(tmpbase, "peers")
    with open(peers, "w") as f:
        f.write(f"{fp} good\nAB:CD:EF typo\n")
    cf, r = check(tmpbase, server_tls(pki) + [f"relay_clientcerts = texthash:{peers}"])
    assert r.returncode == 0, r.stderr
    assert "\"ab:cd:ef\" is not a sha256 fingerprint" in r.stderr
    assert fp.lower() not in r.stderr


def test_req_ccert_without_encrypt_warns(tmpbase, pki):
    cf, r = check(tmpbase, server_tls(pki) + ["smtpd_tls_req_ccert = yes"])
    assert r.returncode == 0
    assert "smtpd_tls_req_ccert = yes has no effect unless smtpd_tls_security_level = encrypt" \
        in r.stderr


def test_remote_pin_table_is_an_error(tmpbase, pki):
    pg = os.path.join(tmpbase, "peers.pgsql")
    with open(pg, "w") as f:
        f.write("hosts = inet:127.0.0.1:9\ndbname = mail\nquery = SELECT 1 WHERE '%s'=''\n")
    cf, r = check(tmpbase, server_tls(pki) + [f"relay_clientcerts = pgsql:{pg}"])
    assert r.returncode == 1
    assert "relay_clientcerts must be a local table" in r.stderr


def test_bad_listen_and_transport_are_errors(tmpbase):
    cf, r = check(tmpbase, ["submission_listen = 127.0.0.1", "relayhost = [mx.example",
                            "transport_maps = inline:{ a.test=smtp:[x]:99999 }"])
    assert r.returncode == 1
    assert f"{cf}:4: submission_listen: bad address \"127.0.0.1\"" in r.stderr
    assert "relayhost" in r.stderr and "transport_maps" in r.stderr
