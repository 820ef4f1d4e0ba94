"""The README's setup examples, run as written: each block marked
`<!-- readme-test: NAME -->` is taken from README.md, only its paths
(/etc/keypost, /var/mail/keypost), addresses and ports are moved to this
test's own, and keypost is checked and started with it."""
import os
import re
import smtplib
import ssl
import subprocess

import pytest

from kptest import KEYPOST, ROOT, Keypost, free_port
from test_relay import Peer

README = os.path.join(ROOT, "README.md")


def block(name):
    """The indented block after the marker, without its indentation."""
    text = open(README).read()
    m = re.search(rf"<!-- readme-test: {re.escape(name)} -->\n((?:    .*\n|\n)+)", text)
    assert m, f"README has no block {name}"
    return "\n".join(line[4:] for line in m.group(1).rstrip("\n").split("\n")) + "\n"


def localize(text, etc, mail, port):
    text = text.replace("/etc/keypost/", etc + "/").replace("/var/mail/keypost", mail)
    return re.sub(r"(?m)^smtpd_listen = .*$", f"smtpd_listen = 127.0.0.1:{port}", text)


def pem(pki, name, etc):
    """A chain file as the README describes: the key, then the certificate."""
    crt, key = pki.leaf(name, issuer="rootca", eku="serverAuth")
    path = os.path.join(etc, name.split(".")[0] + ".pem")
    with open(path, "w") as f:
        f.write(open(key).read() + open(crt).read())
    os.chmod(path, 0o600)
    return path


def start(tmpbase, config):
    """keypost with the README's configuration, plus what a test needs
    (its own queue, log and worker count), checked first."""
    kp = Keypost(tmpbase)
    kp.params = {"queue_directory": kp.queue, "maillog_file": kp.logfile,
                 "smtpd_worker_processes": "1",
                 "local_socket_directory": os.path.join(tmpbase, "run")}
    with open(kp.config, "w") as f:
        f.write(config + "".join(f"{k} = {v}\n" for k, v in kp.params.items()))
    r = subprocess.run([KEYPOST, "check", "-c", kp.config], capture_output=True, text=True)
    assert r.returncode == 0 and "configuration OK" in r.stdout, r.stderr
    assert "warning" not in r.stderr, r.stderr
    kp.write_config = lambda: None  # the file above is the configuration
    return kp


def test_mx_with_users_and_aliases(tmpbase, pki):
    etc, mail = os.path.join(tmpbase, "etc"), os.path.join(tmpbase, "mail")
    os.makedirs(etc)
    port = free_port()
    config = localize(block("mx"), etc, mail, port)
    for name, path in (("mx-users", "users"), ("mx-aliases", "aliases")):
        with open(os.path.join(etc, path), "w") as f:
            f.write(block(name))
    pem(pki, "mx.example.com", etc)
    kp = start(tmpbase, config)
    kp.smtp_port, kp.mail = port, mail
    kp.start()
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=20) as s:
            s.starttls(context=ssl._create_unverified_context())
            s.ehlo("client.test")
            s.mail("sender@remote.test")
            code, msg = s.rcpt("nobody@example.com")
            assert code == 550 and b"User unknown in local recipient table" in msg, msg
            for r in ("alice+lists@example.com", "info@example.com", "postmaster@example.com"):
                assert s.rcpt(r)[0] == 250
            assert s.data(b"Subject: readme\r\n\r\nhello\r\n")[0] == 250
        kp.wait_delivered("alice@example.com")
        kp.wait_delivered("bob@example.com")
        kp.wait_log(r"orig_to=<info@example\.com>")
        assert sorted(os.listdir(os.path.join(mail, "example.com"))) == ["alice", "bob"]
    finally:
        assert kp.stop() == 0


def client_context(pki, name):
    ctx = ssl._create_unverified_context()
    if name:
        crt, key = pki.leaf(name, issuer="rootca", eku="serverAuth")
        ctx.load_cert_chain(crt, key)
    return ctx


def test_gateway_admits_partners_by_key(tmpbase, pki):
    etc = os.path.join(tmpbase, "etc")
    os.makedirs(etc)
    inside = Peer()  # the internal server
    try:
        port = free_port()
        config = localize(block("gateway"), etc, tmpbase, port)
        config = config.replace("[10.1.2.25]:25", f"[127.0.0.1]:{inside.port}")
        with open(os.path.join(etc, "corp-users"), "w") as f:
            f.write(block("gateway-users"))
        pem(pki, "gw.corp.example", etc)
        partner = client_context(pki, "mx.partner.example")
        fp = pki.fingerprints(pki.path("mx.partner.example", "crt"))["pubkey_fingerprint"]
        with open(os.path.join(etc, "peers"), "w") as f:
            f.write(f"{fp} mx.partner.example\n")
        kp = start(tmpbase, config)
        kp.smtp_port = port
        kp.start()
        try:
            def rcpts(ctx, *addrs):
                with smtplib.SMTP("127.0.0.1", port, timeout=20) as s:
                    s.starttls(context=ctx)
                    s.ehlo("client.test")
                    s.mail("someone@partner.example")
                    return [s.rcpt(a) for a in addrs]
            stranger = client_context(pki, "stranger.example")
            got = rcpts(stranger, "carol@corp.example")
            assert got[0][0] == 554 and b"Access denied" in got[0][1], got
            got = rcpts(partner, "carol@corp.example", "erin@corp.example", "x@elsewhere.test")
            assert [c for c, _ in got] == [250, 550, 554], got
            with smtplib.SMTP("127.0.0.1", port, timeout=20) as s:
                s.starttls(context=partner)
                s.sendmail("someone@partner.example", ["carol@corp.example"],
                           b"Subject: to carol\r\n\r\nhi\r\n")
            kp.wait_log(r"to=<carol@corp\.example>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:\d+, "
                        r".*status=sent")
            assert [m["rcpts"] for m in inside.messages] == [["carol@corp.example"]]
        finally:
            assert kp.stop() == 0
    finally:
        inside.stop()


def test_pin_guide_proves_the_pin(tmpbase, pki):
    etc = os.path.join(tmpbase, "etc")
    os.makedirs(etc)
    text = block("pin")
    config, peers = text.split("# /etc/keypost/peers\n")
    port = free_port()
    config = localize(config, etc, os.path.join(tmpbase, "mail"), port)
    # The guide's own instruction: loopback out of mynetworks.
    config += "mynetworks = 192.0.2.0/24\n"
    config += (f"smtpd_listen = 127.0.0.1:{port}\n"
               f"smtpd_tls_chain_files = {pem(pki, 'mx.example.com', etc)}\n"
               f"local_transport = maildir:{tmpbase}/mail\nlocal_recipient_maps = "
               "inline:{ postmaster=1 }\n"
               f"relayhost = [127.0.0.1]:{free_port()}\n")
    crt, key = pki.leaf("partner.example", issuer="rootca", eku="serverAuth")
    fp = pki.fingerprints(crt)["pubkey_fingerprint"]
    assert re.match(r"[0-9A-F:]+ +\S+", peers.strip().replace("...", "AA"))
    with open(os.path.join(etc, "peers"), "w") as f:
        f.write(f"{fp}  mx.partner.example\n")
    kp = start(tmpbase, config)
    kp.smtp_port = port
    kp.start()
    try:
        commands = re.findall(r"(?m)^    (swaks .*?)(?:    # (\d{3}).*)?$",
                              open(README).read().replace("\\\n", ""))
        assert len(commands) == 2, commands
        for cmd, want in commands:
            cmd = cmd.strip().replace("--server 127.0.0.1", f"--server 127.0.0.1:{port}")
            cmd = cmd.replace("partner.crt", crt).replace("partner.key", key)
            r = subprocess.run(cmd.split() + ["--from", "a@partner.example"],
                               capture_output=True, text=True, timeout=60)
            codes = re.findall(r"(?m)^<~? *(\d{3})[ -]", r.stdout)
            rcpt_code = codes[codes.index("250", 3) + 1] if want == "250" else None
            if want == "250":
                assert r.returncode == 0, r.stdout
            else:
                assert "554 5.7.1" in r.stdout and "Relay access denied" in r.stdout, r.stdout
            del rcpt_code
    finally:
        assert kp.stop() == 0
