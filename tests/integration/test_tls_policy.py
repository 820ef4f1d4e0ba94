"""The SMTP client's TLS policy never falls back silently: a policy entry
that does not parse, or a policy table that cannot be opened or read, is an
error at `keypost check` and start, and a deferral (4.7.5, naming the entry)
at delivery time; protocols= and ciphers= are applied, not ignored."""
import os
import re
import ssl
import subprocess
import time

import pytest

from kptest import KEYPOST, Keypost
from test_policy import postgres  # noqa: F401 (a fixture)
from test_relay import Peer

SENDER = "bob@example.org"


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def check(tmpbase, lines):
    cf = os.path.join(tmpbase, "check.cf")
    write(cf, f"queue_directory = {tmpbase}/q\nsmtpd_listen = 127.0.0.1:2525\n"
              f"local_transport = maildir:{tmpbase}/m\n" + "\n".join(lines) + "\n")
    return subprocess.run([KEYPOST, "check", "-c", cf], capture_output=True, text=True)


def submit(kp, rcpt="user@b.test", subject="policy"):
    import smtplib
    with smtplib.SMTP("127.0.0.1", kp.smtp_port, timeout=20) as s:
        s.sendmail(SENDER, [rcpt], f"Subject: {subject}\r\n\r\nbody\r\n")


@pytest.fixture
def plain_peer():
    """A next hop that offers no STARTTLS at all."""
    p = Peer()
    yield p
    p.stop()


def server_ctx(pki, maximum=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki.path("mx.keypost.test", "crt"), pki.path("mx.keypost.test", "key"))
    if maximum:
        ctx.maximum_version = maximum
    return ctx


@pytest.mark.parametrize("entry,message", [
    ("encrpyt", 'unknown TLS security level "encrpyt"'),
    ("encrypt protocol=TLSv1.3", 'unsupported TLS policy attribute "protocol"'),
    ("encrypt tafile=/etc/ta.pem", 'unsupported TLS policy attribute "tafile"'),
    ("encrypt protocols=TLSv1.4", 'unknown TLS protocol "TLSv1.4"'),
    ("encrypt protocols=<=TLSv1.1", "leaves neither TLSv1.2 nor TLSv1.3"),
    ("encrypt ciphers=superhigh", 'unknown cipher grade "superhigh"'),
    ("fingerprint", "fingerprint level needs match="),
])
def test_check_names_each_bad_entry(tmpbase, entry, message):
    table = write(os.path.join(tmpbase, "tls_policy"),
                  "# destinations\n[good.test]:25 encrypt\n[bad.test]:25 " + entry + "\n")
    r = check(tmpbase, [f"smtp_tls_policy_maps = texthash:{table}"])
    assert r.returncode == 1, r.stdout + r.stderr
    assert re.search(re.escape(f"{table}:3: smtp_tls_policy_maps texthash:{table} entry for "
                               "[bad.test]:25: ") + ".*" + re.escape(message), r.stderr), r.stderr


def test_check_reports_every_bad_entry_and_inline(tmpbase):
    table = write(os.path.join(tmpbase, "p"), "a.test mya\nb.test encrypt\nc.test secure x\n")
    r = check(tmpbase, [f"smtp_tls_policy_maps = texthash:{table}, "
                        "inline:{ { [d.test]:25 = verify ciphers=none } }"])
    assert r.returncode == 1
    assert f"{table}:1:" in r.stderr and f"{table}:3:" in r.stderr, r.stderr
    assert f"{table}:2:" not in r.stderr
    assert 'unknown cipher grade "none"' in r.stderr, r.stderr


def test_check_refuses_unopenable_table(tmpbase):
    r = check(tmpbase, [f"smtp_tls_policy_maps = texthash:{tmpbase}/missing"])
    assert r.returncode == 1
    assert re.search(r"check\.cf:\d+: smtp_tls_policy_maps: cannot open table .*missing", r.stderr)
    r = check(tmpbase, [f"smtp_tls_policy_maps = lmdb:{tmpbase}/missing"])
    assert r.returncode == 1 and "keypost map" in r.stderr, r.stderr


def test_good_entries_pass_check(tmpbase):
    table = write(os.path.join(tmpbase, "p"),
                  "a.test encrypt protocols=>=TLSv1.2 ciphers=high exclude=SHA1\n"
                  "[b.test]:587 fingerprint match=AA:BB\n[c.test] may protocols=!SSLv3:!TLSv1\n")
    r = check(tmpbase, [f"smtp_tls_policy_maps = texthash:{table}"])
    assert r.returncode == 0, r.stderr


def test_serve_refuses_bad_policy_entry(tmpbase, plain_peer):
    table = write(os.path.join(tmpbase, "p"), f"[127.0.0.1]:{plain_peer.port} encrpyt\n")
    kp = Keypost(tmpbase, relayhost=f"[127.0.0.1]:{plain_peer.port}",
                 smtp_tls_policy_maps=f"texthash:{table}", smtp_tls_security_level="may")
    with pytest.raises(RuntimeError, match='unknown TLS security level "encrpyt"'):
        kp.start()
    assert kp.proc.wait(timeout=10) == 1
    kp.stderr.close()


def test_database_entry_broken_or_lost_defers(make_server, tmpbase, plain_peer, postgres):
    """Policies in PostgreSQL: the destination has no STARTTLS and the
    default level is may, yet nothing goes out in the clear when its row
    does not parse (4.7.5, naming the entry) or the database is down."""
    pg = postgres
    pg.sql("DROP TABLE IF EXISTS tls_policy; CREATE TABLE tls_policy "
           "(dest text PRIMARY KEY, policy text NOT NULL)")
    dest = f"[127.0.0.1]:{plain_peer.port}"
    pg.sql(f"INSERT INTO tls_policy VALUES ('{dest}', 'encrypt')")
    cf = write(os.path.join(tmpbase, "tls_policy.pgsql"),
               f"hosts = inet:127.0.0.1:{pg.port}\nuser = postgres\ndbname = postgres\n"
               "query = SELECT policy FROM tls_policy WHERE dest='%s'\n")
    os.chmod(cf, 0o644)
    kp = make_server(relayhost=dest, smtp_tls_policy_maps=f"pgsql:{cf}",
                     smtp_tls_security_level="may")
    submit(kp, subject="encrypt required")
    kp.wait_log(r"status=deferred \(4\.7\.4 TLS is required, but was not offered")
    pg.sql(f"UPDATE tls_policy SET policy = 'encrpyt' WHERE dest = '{dest}'")
    submit(kp, subject="entry broken")
    kp.wait_log(r"status=deferred \(4\.7\.5 client TLS configuration problem: "
                r"smtp_tls_policy_maps pgsql:\S+ entry for \[127\.0\.0\.1\]:\d+: "
                r'unknown TLS security level "encrpyt"')
    kp.wait_log(r"warning: 4\.7\.5 client TLS configuration problem")
    pg.sql("DROP TABLE tls_policy")  # every lookup now fails
    submit(kp, subject="table lost")
    kp.wait_log(r"status=deferred \(4\.3\.0 TLS policy lookup for \[127\.0\.0\.1\]:\d+ "
                r"failed: pgsql:\S+ cannot answer")
    time.sleep(1)
    assert plain_peer.messages == []
    assert not any(c.upper().startswith("MAIL") for c in plain_peer.commands())


def reload_and_flush(kp, peer):
    """Re-read the policy table, retry the deferred message, and wait until
    the peer has it, over TLS."""
    kp.signal(__import__("signal").SIGHUP)
    kp.wait_log("reload: configuration")
    kp.cli("queue", "-c", kp.config, "flush")
    deadline = time.time() + 20
    while not peer.messages and time.time() < deadline:
        time.sleep(0.1)
    assert peer.messages and peer.messages[0]["tls"], peer.messages


def test_protocols_attribute_is_applied(make_server, tmpbase, pki):
    peer = Peer(tls=server_ctx(pki, maximum=ssl.TLSVersion.TLSv1_2))
    try:
        table = write(os.path.join(tmpbase, "p"),
                      f"[127.0.0.1]:{peer.port} encrypt protocols=TLSv1.3\n")
        kp = make_server(relayhost=f"[127.0.0.1]:{peer.port}",
                         smtp_tls_policy_maps=f"texthash:{table}")
        submit(kp)
        kp.wait_log(r"status=deferred \(4\.7\.5 TLS handshake failed")
        assert peer.messages == []
        # Allowing TLS 1.2 again delivers, over TLS 1.2.
        write(table, f"[127.0.0.1]:{peer.port} encrypt protocols=>=TLSv1.2\n")
        reload_and_flush(kp, peer)
        kp.wait_log(r"TLS connection established to 127\.0\.0\.1\[127\.0\.0\.1\]:\d+: TLSv1\.2")
    finally:
        peer.stop()


def test_ciphers_attribute_is_applied(make_server, tmpbase, pki):
    ctx = server_ctx(pki, maximum=ssl.TLSVersion.TLSv1_2)
    ctx.set_ciphers("ECDHE-ECDSA-AES128-SHA")  # a CBC suite only
    peer = Peer(tls=ctx)
    try:
        table = write(os.path.join(tmpbase, "p"),
                      f"[127.0.0.1]:{peer.port} encrypt ciphers=high exclude=SHA1\n")
        kp = make_server(relayhost=f"[127.0.0.1]:{peer.port}",
                         smtp_tls_policy_maps=f"texthash:{table}")
        submit(kp)
        kp.wait_log(r"status=deferred \(4\.7\.5 TLS handshake failed")
        assert peer.messages == []
        # The same peer without the exclusion: the CBC suite is allowed, and
        # the message goes out (so it was exclude= that stopped it).
        write(table, f"[127.0.0.1]:{peer.port} encrypt ciphers=medium\n")
        reload_and_flush(kp, peer)
        kp.wait_log(r"TLS connection established to .* with cipher ECDHE-ECDSA-AES128-SHA ")
    finally:
        peer.stop()


def test_misspelt_exclude_attribute_warns(tmpbase):
    table = write(os.path.join(tmpbase, "p"), "a.test encrypt exclude=SHA1:TOTALLYBOGUS\n")
    r = check(tmpbase, [f"smtp_tls_policy_maps = texthash:{table}"])
    assert r.returncode == 0, r.stderr
    assert re.search(re.escape(f"warning: {table}:1: smtp_tls_policy_maps texthash:{table} entry "
                               "for a.test: exclude=TOTALLYBOGUS selects no cipher"), r.stderr), \
        r.stderr


def test_default_level_fingerprint_without_match_is_an_error(tmpbase):
    r = check(tmpbase, ["smtp_tls_security_level = fingerprint"])
    assert r.returncode == 1
    assert re.search(r"check\.cf:4: smtp_tls_security_level: fingerprint level needs match=",
                     r.stderr), r.stderr
