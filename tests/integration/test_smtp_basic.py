"""The receive path end to end: real clients (smtplib, swaks, openssl
s_client) talk to a real keypost; mail lands in the Maildir."""
import smtplib
import ssl
import subprocess

import pytest


def tls_client_context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def test_ehlo_advertises_extensions(make_server):
    kp = make_server()
    with smtplib.SMTP("127.0.0.1", kp.smtp_port) as s:
        code, _ = s.ehlo("client.test")
        assert code == 250
        for ext in ("pipelining", "size", "starttls", "enhancedstatuscodes", "8bitmime",
                    "smtputf8"):
            assert s.has_extn(ext), ext
        assert s.esmtp_features["size"] == "10240000"


def test_starttls_delivery_to_maildir(make_server):
    kp = make_server()
    with smtplib.SMTP("127.0.0.1", kp.smtp_port) as s:
        s.starttls(context=tls_client_context())
        s.ehlo("client.test")
        assert not s.has_extn("starttls")  # not offered twice
        s.sendmail("bob@remote.test", ["alice@example.org"], b"Subject: hi\r\n\r\nbody\r\n")
    files = kp.wait_delivered("alice@example.org")
    text = open(files[0]).read()
    assert "Subject: hi" in text
    assert "Return-Path: <bob@remote.test>" in text
    assert "with ESMTPS id" in text and "(using TLSv1.3 with cipher" in text
    kp.wait_log(r"Anonymous TLS connection established from unknown\[127\.0\.0\.1\]: "
                r"TLSv1\.3 with cipher \S+ \(\d+/\d+ bits\)")
    m = kp.wait_log(r"(\w{16}): from=<bob@remote\.test>, size=\d+, nrcpt=1")
    kp.wait_log(m.group(1) + r": to=<alice@example\.org>, relay=local, delay=\d+, status=sent")


def test_swaks_sends_over_starttls(make_server):
    kp = make_server()
    r = subprocess.run(["swaks", "--server", f"127.0.0.1:{kp.smtp_port}", "--tls",
                        "--from", "carol@remote.test", "--to", "dave@example.org",
                        "--header", "Subject: via swaks"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "250 2.0.0 Ok: queued as" in r.stdout
    files = kp.wait_delivered("dave@example.org")
    assert "Subject: via swaks" in open(files[0]).read()


def test_relay_denied_for_unknown_client(make_server):
    # 127.0.0.1 is not in mynetworks here: a foreign domain must be refused.
    kp = make_server(mynetworks="192.0.2.0/24")
    with smtplib.SMTP("127.0.0.1", kp.smtp_port) as s:
        s.ehlo("client.test")
        s.mail("bob@remote.test")
        code, msg = s.rcpt("someone@elsewhere.test")
        assert code == 554
        assert b"5.7.1 <someone@elsewhere.test>: Relay access denied" in msg
        code, _ = s.rcpt("alice@example.org")
        assert code == 250
    kp.wait_log(r"NOQUEUE: reject: RCPT from unknown\[127\.0\.0\.1\]: 554 5\.7\.1 "
                r"<someone@elsewhere\.test>: Relay access denied; from=<bob@remote\.test> "
                r"to=<someone@elsewhere\.test> proto=ESMTP helo=<client\.test>")


def test_mynetworks_may_relay(make_server):
    kp = make_server()  # default mynetworks includes 127.0.0.0/8
    with smtplib.SMTP("127.0.0.1", kp.smtp_port) as s:
        s.ehlo("client.test")
        s.mail("bob@example.org")
        code, _ = s.rcpt("someone@elsewhere.test")
        assert code == 250


def test_restriction_reject_and_defer(make_server):
    kp = make_server(smtpd_recipient_restrictions="reject")
    with smtplib.SMTP("127.0.0.1", kp.smtp_port) as s:
        s.ehlo("client.test")
        s.mail("bob@remote.test")
        code, msg = s.rcpt("alice@example.org")
        assert code == 554 and b"5.7.1" in msg
    kp2 = make_server(smtpd_client_restrictions="defer")
    with smtplib.SMTP("127.0.0.1", kp2.smtp_port) as s:
        s.ehlo("client.test")
        s.mail("bob@remote.test")
        code, msg = s.rcpt("alice@example.org")
        assert code == 450 and b"4.7.1" in msg


def test_implicit_tls_and_submission(make_server):
    from kptest import free_port
    smtps, sub = free_port(), free_port()
    kp = make_server(start=False, smtps_listen=f"127.0.0.1:{smtps}",
                     submission_listen=f"127.0.0.1:{sub}")
    kp.start(wait_ports=[kp.smtp_port, smtps, sub])
    with smtplib.SMTP_SSL("127.0.0.1", smtps, context=tls_client_context()) as s:
        s.ehlo("client.test")
        assert not s.has_extn("starttls")
        s.sendmail("bob@example.org", ["erin@example.org"], b"Subject: smtps\r\n\r\nx\r\n")
    kp.wait_delivered("erin@example.org")
    with smtplib.SMTP("127.0.0.1", sub) as s:
        s.ehlo("client.test")
        code, msg = s.mail("bob@example.org")
        assert code == 530 and b"5.7.0 Must issue a STARTTLS command first" in msg
        s.starttls(context=tls_client_context())
        s.ehlo("client.test")
        s.sendmail("bob@example.org", ["frank@example.org"], b"Subject: sub\r\n\r\nx\r\n")
    kp.wait_delivered("frank@example.org")


def test_ipv6_listener(make_server):
    from kptest import free_port
    port = free_port()
    kp = make_server(smtpd_listen=f"[::1]:{port}", start=False)
    kp.smtp_port = port
    kp.write_config()
    kp.proc = subprocess.Popen([__import__("kptest").KEYPOST, "serve", "-c", kp.config],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import socket
    import time
    deadline = time.time() + 10
    while True:
        try:
            socket.create_connection(("::1", port), timeout=1).close()
            break
        except OSError:
            assert time.time() < deadline, kp.log()
            time.sleep(0.05)
    kp.stderr = open("/dev/null", "w")
    with smtplib.SMTP("::1", port) as s:
        s.ehlo("client.test")
        s.sendmail("bob@example.org", ["gina@example.org"], b"Subject: v6\r\n\r\nx\r\n")
    files = kp.wait_delivered("gina@example.org")
    assert "[::1]" in open(files[0]).read()


def test_openssl_s_client_starttls(make_server):
    kp = make_server()
    # -crlf turns each LF into CRLF on the wire.
    script = ("EHLO client.test\nMAIL FROM:<bob@example.org>\nRCPT TO:<hal@example.org>\n"
              "DATA\nSubject: s_client\n\nhello\n.\nQUIT\n")
    r = subprocess.run(["openssl", "s_client", "-starttls", "smtp", "-crlf", "-quiet",
                        "-connect", f"127.0.0.1:{kp.smtp_port}"], input=script,
                       capture_output=True, text=True, timeout=30)
    assert "250 2.0.0 Ok: queued as" in r.stdout, r.stdout + r.stderr
    kp.wait_delivered("hal@example.org")


def test_check_config_ok_and_errors(tmpbase, pki):
    import os
    from kptest import KEYPOST
    good = os.path.join(tmpbase, "good.cf")
    with open(good, "w") as f:
        f.write(f"queue_directory = {tmpbase}/q\nsmtpd_listen = 127.0.0.1:2525\n"
                f"local_transport = maildir:{tmpbase}/m\n")
    r = subprocess.run([KEYPOST, "check", "-c", good], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "configuration OK", r.stderr
    bad = os.path.join(tmpbase, "bad.cf")
    other_key = pki.key("unrelated")
    with open(bad, "w") as f:
        f.write("# comment\n"
                "no_such_parameter = 1\n"
                "message_size_limit = lots\n"
                "smtpd_timeout = 5 minutes\n"
                f"smtpd_tls_cert_file = {pki.path('mx.keypost.test', 'crt')}\n"
                f"smtpd_tls_key_file = {other_key}\n"
                "smtpd_tls_security_level = sometimes\n"
                "smtpd_relay_restrictions = permit_mynetworks,\n"
                "    reject_everything\n")
    r = subprocess.run([KEYPOST, "check", "-c", bad], capture_output=True, text=True)
    assert r.returncode == 1
    err = r.stderr
    assert f"{bad}:2: unknown parameter \"no_such_parameter\"" in err, err
    assert f"{bad}:3: bad value for message_size_limit" in err, err
    assert f"{bad}:4: bad value for smtpd_timeout" in err, err
    assert f"{bad}:7: bad value for smtpd_tls_security_level" in err, err
    assert f"{bad}:8: smtpd_relay_restrictions: unknown restriction \"reject_everything\"" in err
    missing = os.path.join(tmpbase, "missing.cf")
    r = subprocess.run([KEYPOST, "check", "-c", missing], capture_output=True, text=True)
    assert r.returncode == 1 and f"{missing}:0: cannot open configuration" in r.stderr


def test_key_mismatch_is_an_error(tmpbase, pki):
    import os
    from kptest import KEYPOST
    other_key = pki.key("unrelated2")
    cf = os.path.join(tmpbase, "mismatch.cf")
    with open(cf, "w") as f:
        f.write(f"queue_directory = {tmpbase}/q\nsmtpd_listen = 127.0.0.1:2525\n"
                f"local_transport = maildir:{tmpbase}/m\n"
                f"smtpd_tls_cert_file = {pki.path('mx.keypost.test', 'crt')}\n"
                f"smtpd_tls_key_file = {other_key}\n")
    for cmd in ("check", "serve"):
        r = subprocess.run([KEYPOST, cmd, "-c", cf], capture_output=True, text=True, timeout=10)
        assert r.returncode == 1, (cmd, r.stderr)
        assert f"{cf}:4: private key {other_key} does not match certificate" in r.stderr


def _tls12_cert_for(port, cipher):
    """The server certificate's key type chosen for a TLS 1.2 cipher suite."""
    ctx = tls_client_context()
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(cipher)
    with smtplib.SMTP("127.0.0.1", port) as s:
        s.starttls(context=ctx)
        der = s.sock.getpeercert(binary_form=True)
        version = s.sock.version()
    out = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-text"], input=der,
                         capture_output=True, check=True).stdout.decode()
    return version, out


def test_chain_files_rsa_and_ecdsa_side_by_side(make_server, pki, tmpbase):
    import os
    files = []
    for kind in ("rsa", "ec"):
        crt, key = pki.leaf(f"mx-{kind}.keypost.test", issuer="rootca", eku="serverAuth",
                            kind=kind)
        path = os.path.join(tmpbase, f"chain-{kind}.pem")
        with open(path, "w") as f:  # Postfix's form: key, then certificate chain
            f.write(open(key).read() + open(crt).read() + open(pki.path("rootca", "crt")).read())
        files.append(path)
    kp = make_server(smtpd_tls_cert_file="", smtpd_tls_chain_files=", ".join(files))
    version, text = _tls12_cert_for(kp.smtp_port, "ECDHE-RSA-AES128-GCM-SHA256")
    assert version == "TLSv1.2" and "rsaEncryption" in text and "mx-rsa.keypost.test" in text
    version, text = _tls12_cert_for(kp.smtp_port, "ECDHE-ECDSA-AES128-GCM-SHA256")
    assert version == "TLSv1.2" and "id-ecPublicKey" in text and "mx-ec.keypost.test" in text


def test_old_tls_versions_refused(make_server):
    kp = make_server()
    r = subprocess.run(["openssl", "s_client", "-starttls", "smtp", "-tls1_1", "-connect",
                        f"127.0.0.1:{kp.smtp_port}"], input="", capture_output=True, text=True,
                       timeout=30)
    assert r.returncode != 0, r.stdout
    assert "Cipher    : 0000" in r.stdout  # no TLS 1.1 session was made
    kp.wait_log(r"TLS handshake failed: .*(unsupported protocol|no protocols available|"
                r"version too low|wrong version)")
    r = subprocess.run(["openssl", "s_client", "-starttls", "smtp", "-tls1_2", "-connect",
                        f"127.0.0.1:{kp.smtp_port}"], input="QUIT\n", capture_output=True,
                       text=True, timeout=30)
    assert "Protocol  : TLSv1.2" in r.stdout or "Protocol: TLSv1.2" in r.stdout, r.stdout


def test_tls_security_level_encrypt_requires_starttls(make_server):
    kp = make_server(smtpd_tls_security_level="encrypt")
    with smtplib.SMTP("127.0.0.1", kp.smtp_port) as s:
        s.ehlo("client.test")
        code, msg = s.mail("bob@example.org")
        assert code == 530 and b"5.7.0" in msg
        s.starttls(context=tls_client_context())
        s.ehlo("client.test")
        code, _ = s.mail("bob@example.org")
        assert code == 250


def test_tls_security_level_none_offers_no_starttls(make_server):
    kp = make_server(smtpd_tls_security_level="none", smtpd_tls_cert_file="",
                     smtpd_tls_key_file="")
    with smtplib.SMTP("127.0.0.1", kp.smtp_port) as s:
        s.ehlo("client.test")
        assert not s.has_extn("starttls")
        code, _ = s.docmd("STARTTLS")
        assert code == 502


def test_help_vrfy_noop_rset(make_server):
    kp = make_server()
    with smtplib.SMTP("127.0.0.1", kp.smtp_port) as s:
        s.ehlo("client.test")
        assert s.docmd("HELP")[0] == 214
        code, msg = s.docmd("VRFY", "alice@example.org")
        assert code == 252
        assert s.docmd("NOOP") == (250, b"2.0.0 Ok")
        s.mail("bob@example.org")
        assert s.docmd("RSET")[0] == 250
        assert s.rcpt("alice@example.org")[0] == 503  # RSET ended the transaction
