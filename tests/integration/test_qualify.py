"""Address qualification with Postfix's myorigin, mydomain,
append_at_myorigin and append_dot_mydomain: MAIL FROM and RCPT TO addresses
of clients in mynetworks are completed ("alice" -> alice@$myorigin, with
append_dot_mydomain "carol@sub" -> carol@sub.$mydomain); from any other
client they stay as sent (and an address without a domain is refused as
before). "postmaster" alone is this server's postmaster for everyone."""
import os
import smtplib
import subprocess

from kptest import KEYPOST

DESTS = "example.org, sub.example.org, $myhostname"


def session(kp):
    s = smtplib.SMTP("127.0.0.1", kp.smtp_port, timeout=30)
    s.ehlo("client.test")
    return s


def head(path):
    return open(path).read().split("\n\n", 1)[0]


def test_local_client_addresses_are_qualified(make_server):
    kp = make_server(tls=False, myorigin="example.org", mydestination=DESTS)
    with session(kp) as s:
        assert s.mail("bob") == (250, b"2.1.0 Ok")
        assert s.rcpt("alice") == (250, b"2.1.5 Ok")
        assert s.rcpt("postmaster") == (250, b"2.1.5 Ok")
        assert s.data(b"Subject: unqualified\r\n\r\nbody\r\n")[0] == 250
    text = head(kp.wait_delivered("alice@example.org")[0])
    assert "Return-Path: <bob@example.org>" in text, text
    assert "Delivered-To: alice@example.org" in text, text
    # "postmaster" is this server's, not $myorigin's.
    kp.wait_delivered("postmaster@mx.keypost.test")
    assert kp.delivered("postmaster@example.org") == []
    m = kp.wait_log(r"(\w{16}): from=<bob@example\.org>, size=\d+, nrcpt=2")
    kp.wait_log(m.group(1) + r": to=<alice@example\.org>, relay=local, delay=\d+, status=sent")


def test_null_sender_and_complete_addresses_unchanged(make_server):
    kp = make_server(tls=False, myorigin="example.org", mydestination=DESTS)
    with session(kp) as s:
        assert s.mail("<>")[0] == 250
        assert s.rcpt("dave@sub.example.org")[0] == 250
        assert s.data(b"Subject: null sender\r\n\r\nbody\r\n")[0] == 250
    text = head(kp.wait_delivered("dave@sub.example.org")[0])
    assert "Return-Path: <>" in text, text


def test_append_dot_mydomain(make_server):
    """Off by default (Postfix 3); on, a bare host name gets .$mydomain."""
    reject = {"smtpd_recipient_restrictions": "reject"}  # the reply shows the address
    kp = make_server(tls=False, myhostname="mx.example.org", mydestination=DESTS, **reject)
    with session(kp) as s:
        assert s.mail("bob@host")[0] == 250
        assert s.rcpt("carol@sub") == (
            554, b"5.7.1 <carol@sub>: Recipient address rejected: Access denied")
        # myorigin defaults to $myhostname.
        assert s.rcpt("alice") == (
            554, b"5.7.1 <alice@mx.example.org>: Recipient address rejected: Access denied")
    kp = make_server(tls=False, myhostname="mx.example.org", mydestination=DESTS,
                     append_dot_mydomain="yes")
    with session(kp) as s:
        assert s.mail("bob@host")[0] == 250
        assert s.rcpt("carol@sub") == (250, b"2.1.5 Ok")
        assert s.data(b"Subject: dot mydomain\r\n\r\nbody\r\n")[0] == 250
    text = head(kp.wait_delivered("carol@sub.example.org")[0])
    # mydomain defaults to $myhostname minus its first label.
    assert "Return-Path: <bob@host.example.org>" in text, text


def test_append_at_myorigin_off(make_server):
    kp = make_server(tls=False, myorigin="example.org", mydestination=DESTS,
                     append_at_myorigin="no")
    with session(kp) as s:
        assert s.mail("bob") == (501, b"5.1.7 Bad sender address syntax")
        assert s.mail("bob@example.org")[0] == 250
        assert s.rcpt("alice") == (501, b"5.1.3 Bad recipient address syntax")


def test_other_clients_are_not_qualified(make_server):
    """Loopback outside mynetworks: addresses stay as sent, as before."""
    kp = make_server(tls=False, myorigin="example.org", mydestination=DESTS,
                     mynetworks="192.0.2.0/24", append_dot_mydomain="yes")
    with session(kp) as s:
        assert s.mail("bob") == (501, b"5.1.7 Bad sender address syntax")
        assert s.mail("bob@host")[0] == 250
        assert s.rcpt("alice") == (501, b"5.1.3 Bad recipient address syntax")
        assert s.rcpt("carol@sub") == (554, b"5.7.1 <carol@sub>: Relay access denied")
        assert s.rcpt("Postmaster") == (250, b"2.1.5 Ok")  # RFC 5321 4.5.1
        assert s.data(b"Subject: to postmaster\r\n\r\nbody\r\n")[0] == 250
    text = head(kp.wait_delivered("postmaster@mx.keypost.test")[0])
    assert "Return-Path: <bob@host>" in text, text


def test_check_refuses_bad_domain_names(tmpbase):
    cf = os.path.join(tmpbase, "bad.cf")
    lines = [f"queue_directory = {tmpbase}/q", "smtpd_listen = 127.0.0.1:2525",
             f"local_transport = maildir:{tmpbase}/m", "myorigin = example..org",
             "mydomain = [192.0.2.1]"]
    with open(cf, "w") as f:
        f.write("\n".join(lines) + "\n")
    r = subprocess.run([KEYPOST, "check", "-c", cf], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1, r
    assert f'{cf}:4: bad value for myorigin: "example..org" (expected a domain name)' in r.stderr
    assert f'{cf}:5: bad value for mydomain: "[192.0.2.1]" (expected a domain name)' in r.stderr
    for bad in ("-example.org", "192.0.2.1", "exa mple.org", ""):
        with open(cf, "w") as f:
            f.write("\n".join(lines[:3] + [f"myorigin = {bad}"]) + "\n")
        r = subprocess.run([KEYPOST, "check", "-c", cf], capture_output=True, text=True,
                           timeout=30)
        assert r.returncode == 1 and f"{cf}:4: bad value for myorigin" in r.stderr, (bad, r)
    with open(cf, "w") as f:
        f.write("\n".join(lines[:3] + ["mydomain = example.net", "myorigin = $mydomain",
                                       "append_dot_mydomain = yes"]) + "\n")
    r = subprocess.run([KEYPOST, "check", "-c", cf], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "configuration OK" in r.stdout, r
