"""Address classes and recipient validation against real peers: keypost as
the MX of a domain with a list of users (Debian's Postfix sends, receives
the 550 at RCPT and writes its own bounce), and keypost as the gateway for
corp.example in front of an internal Postfix (relay_domains)."""
import os
import re
import smtplib
import subprocess

import pytest

from kptest import KEYPOST, free_port
from postfix_peer import Postfix, wait_for
from test_peers import make_postfix  # noqa: F401 (a fixture)


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o644)
    return path


def rcpt(kp, address, sender="someone@remote.test"):
    with smtplib.SMTP("127.0.0.1", kp.smtp_port, timeout=20) as s:
        s.ehlo("client.test")
        assert s.mail(sender)[0] == 250
        return s.rcpt(address)


def test_mx_refuses_unknown_users_at_rcpt(make_server, make_postfix, tmpbase):
    users = write(os.path.join(tmpbase, "users"), "alice\nbob@example.org\n")
    kp = make_server(local_recipient_maps=f"texthash:{users}",
                     relayhost=f"[127.0.0.1]:{free_port()}")
    pf = make_postfix(kp.smtp_port)
    pf.send("sender@partner.postfix.test", ["alice@example.org", "nobody@example.org"],
            b"Subject: to the users\n\nhello\n")
    kp.wait_delivered("alice@example.org")
    # Postfix got the 550 at RCPT, and wrote the bounce itself.
    pf.wait_log(r"to=<nobody@example\.org>.*status=bounced \(host 127\.0\.0\.1\[127\.0\.0\.1\] "
                r"said: 550 5\.1\.1 <nobody@example\.org>: Recipient address rejected: User "
                r"unknown in local recipient table \(in reply to RCPT TO command\)", kp=kp)
    pf.wait_log(r"sender non-delivery notification", kp=kp)
    log = kp.log()
    assert "non-delivery notification" not in log, log
    assert re.search(r"reject: RCPT from .*550 5\.1\.1 <nobody@example\.org>", log), log
    # No mailbox was made for the unknown address.
    assert not os.path.exists(os.path.join(kp.mail, "example.org", "nobody"))
    assert os.listdir(os.path.join(kp.mail, "example.org")) == ["alice"]


def test_local_recipient_forms(make_server, tmpbase):
    users = write(os.path.join(tmpbase, "users"), "alice\n")
    kp = make_server(local_recipient_maps=f"texthash:{users}", recipient_delimiter="+")
    assert rcpt(kp, "alice@example.org")[0] == 250
    assert rcpt(kp, "ALICE@Example.ORG")[0] == 250
    assert rcpt(kp, "alice+lists@example.org")[0] == 250
    code, msg = rcpt(kp, "alic@example.org")
    assert code == 550 and b"User unknown in local recipient table" in msg, msg


@pytest.fixture
def internal():
    """The company's internal mail server: a Postfix that stores mail for
    carol@corp.example in a Maildir."""
    p = Postfix(smtpd_port=free_port(), mailboxes=["carol@corp.example"],
                myhostname="internal.corp.example", mynetworks="127.0.0.0/8")
    p.start()
    yield p
    p.stop()


def test_gateway_relays_listed_recipients_to_the_internal_server(make_server, internal,
                                                                  tmpbase):
    known = write(os.path.join(tmpbase, "corp_users"), "carol@corp.example\n")
    kp = make_server(mynetworks="192.0.2.0/24",  # loopback is a stranger here
                     relay_domains="corp.example",
                     relay_recipient_maps=f"texthash:{known}",
                     transport_maps=f"inline:{{ corp.example=smtp:[127.0.0.1]:{internal.port} }}")
    code, msg = rcpt(kp, "dave@corp.example")
    assert code == 550, msg
    assert b"User unknown in relay recipient table" in msg
    code, msg = rcpt(kp, "someone@elsewhere.test")
    assert code == 554 and b"Relay access denied" in msg, msg
    with smtplib.SMTP("127.0.0.1", kp.smtp_port, timeout=20) as s:
        s.sendmail("partner@remote.test", ["carol@corp.example"],
                   b"Subject: for carol\r\n\r\nhello carol\r\n")
    files = wait_for(lambda: internal.delivered("carol@corp.example"),
                     lambda: "not delivered inside:\n" + internal.log() + kp.log(), timeout=30)
    assert b"hello carol" in open(files[0], "rb").read()
    kp.wait_log(r"to=<carol@corp\.example>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:\d+, .*status=sent")


def test_permit_auth_destination_and_unlisted_sender(make_server, tmpbase):
    users = write(os.path.join(tmpbase, "users"), "alice\n")
    kp = make_server(mynetworks="192.0.2.0/24", relay_domains="corp.example",
                     smtpd_relay_restrictions="permit_auth_destination, reject",
                     local_recipient_maps=f"texthash:{users}",
                     smtpd_reject_unlisted_sender="yes")
    assert rcpt(kp, "anyone@corp.example")[0] == 250
    code, msg = rcpt(kp, "x@elsewhere.test")
    assert code == 554, msg
    code, msg = rcpt(kp, "alice@example.org", sender="forged@example.org")
    assert code == 550, msg
    assert b"<forged@example.org>: Sender address rejected: User unknown in local recipient " \
           b"table" in msg, msg
    assert rcpt(kp, "alice@example.org", sender="alice@example.org")[0] == 250


def check(tmpbase, lines):
    cf = os.path.join(tmpbase, "check.cf")
    write(cf, f"queue_directory = {tmpbase}/q\nsmtpd_listen = 127.0.0.1:2525\n"
              f"local_transport = maildir:{tmpbase}/m\n" + "\n".join(lines) + "\n")
    return subprocess.run([KEYPOST, "check", "-c", cf], capture_output=True, text=True)


def test_check_names_a_domain_in_two_classes(tmpbase):
    table = write(os.path.join(tmpbase, "vdomains"), "box.test 1\nexample.org 1\n")
    r = check(tmpbase, ["mydestination = example.org", "relay_domains = corp.example",
                        f"virtual_mailbox_domains = texthash:{table}",
                        "local_recipient_maps = inline:{ a=1 }"])
    assert r.returncode == 1
    assert re.search(r"check\.cf:6: example\.org is listed in both mydestination and "
                     r"virtual_mailbox_domains", r.stderr), r.stderr


def test_check_warns_about_empty_local_recipient_maps(tmpbase):
    r = check(tmpbase, ["mydestination = example.org"])
    assert r.returncode == 0
    assert "local_recipient_maps is empty: every address of mydestination is accepted" in \
        r.stderr, r.stderr
    r = check(tmpbase, ["mydestination = example.org", "local_recipient_maps = inline:{ a=1 }"])
    assert "local_recipient_maps is empty" not in r.stderr


def test_unreadable_recipient_table_is_a_config_error(tmpbase):
    r = check(tmpbase, ["local_recipient_maps = lmdb:/nonexistent/users"])
    assert r.returncode == 1 and "local_recipient_maps: cannot open table" in r.stderr, r.stderr


# ---- aliases ----------------------------------------------------------------

def send(kp, sender, rcpts, subject="aliases"):
    with smtplib.SMTP("127.0.0.1", kp.smtp_port, timeout=20) as s:
        return s.sendmail(sender, rcpts, f"Subject: {subject}\r\n\r\nhello\r\n".encode())


def test_aliases_expand_once_with_orig_to(make_server, tmpbase):
    from test_relay import Peer
    peer = Peer(rcpt_reply=lambda a: "550 5.1.1 no such user" if a.startswith("gone") else
                "250 2.1.5 Ok")
    try:
        aliases = write(os.path.join(tmpbase, "aliases"),
                        "postmaster alice\n"
                        "team alice, bob, carol@remote.test, gone@remote.test\n"
                        "alice alice, archive\n")
        valiases = write(os.path.join(tmpbase, "virtual"),
                         "info@alias.test sales@alias.test\n"
                         "sales@alias.test team@example.org\n")
        kp = make_server(alias_maps=f"texthash:{aliases}", virtual_alias_domains="alias.test",
                         virtual_alias_maps=f"texthash:{valiases}",
                         relayhost=f"[127.0.0.1]:{peer.port}")
        send(kp, "sender@example.org", ["info@alias.test"])
        # Unqualified targets take the local domain of their alias.
        for user in ("alice", "bob", "archive"):
            kp.wait_delivered(f"{user}@example.org")
        kp.wait_log(r"to=<alice@example\.org>, orig_to=<info@alias\.test>, relay=local")
        kp.wait_log(r"to=<carol@remote\.test>, orig_to=<info@alias\.test>, relay=127\.0\.0\.1")
        # The remote refusal bounces to the original sender.
        kp.wait_log(r"to=<gone@remote\.test>, orig_to=<info@alias\.test>, .*status=bounced")
        bounce = kp.wait_delivered("sender@example.org")
        assert b"gone@remote.test" in open(bounce[0], "rb").read()
        assert [m["rcpts"] for m in peer.messages] in (
            [["carol@remote.test"]], [["carol@remote.test", "gone@remote.test"]])
        # Each mailbox got the message once, though alice is named three ways.
        assert len(kp.delivered("alice@example.org")) == 1
        # An address that is not in virtual_alias_maps is refused at RCPT.
        code, msg = rcpt(kp, "nobody@alias.test")
        assert code == 550 and b"User unknown in virtual alias table" in msg, msg
    finally:
        peer.stop()


def data_reply(kp, rcpt_addr):
    with smtplib.SMTP("127.0.0.1", kp.smtp_port, timeout=20) as s:
        s.ehlo("client.test")
        s.mail("sender@remote.test")
        assert s.rcpt(rcpt_addr)[0] == 250
        return s.docmd("DATA")


def test_alias_loop_and_huge_alias_are_refused_clearly(make_server, tmpbase):
    big = ", ".join(f"user{i}@far.test" for i in range(10000))
    valiases = write(os.path.join(tmpbase, "virtual"),
                     "a@alias.test b@alias.test\nb@alias.test a@alias.test\n"
                     f"big@alias.test {big}\n")
    aliases = write(os.path.join(tmpbase, "aliases"), "root |/usr/bin/logger\n")
    kp = make_server(virtual_alias_domains="alias.test", virtual_alias_maps=f"texthash:{valiases}",
                     alias_maps=f"texthash:{aliases}", relayhost=f"[127.0.0.1]:{free_port()}")
    code, msg = data_reply(kp, "a@alias.test")
    assert code == 451 and b"alias loop" in msg, msg
    code, msg = data_reply(kp, "big@alias.test")
    assert code == 451 and b"unreasonable virtual_alias_maps map expansion size" in msg, msg
    code, msg = data_reply(kp, "root@example.org")
    assert code == 451 and b"command or file" in msg, msg
    log = kp.log()
    assert log.count("reject: DATA from") == 3, log
    assert kp.queue_files() == []


# ---- virtual mailboxes and maildir: transports ------------------------------

def test_virtual_mailbox_domain_through_dovecot(make_server, tmpbase):
    from test_peers import Dovecot
    dv = Dovecot(users=["carol@box.test"]).start()
    try:
        boxes = write(os.path.join(tmpbase, "vmailbox"), "carol@box.test box.test/carol/\n")
        kp = make_server(virtual_mailbox_domains="box.test",
                         virtual_mailbox_maps=f"texthash:{boxes}",
                         virtual_transport=f"lmtp:inet:127.0.0.1:{dv.port}",
                         mynetworks="192.0.2.0/24")  # a stranger, yet box.test is ours
        code, msg = rcpt(kp, "dave@box.test")
        assert code == 550 and b"User unknown in virtual mailbox table" in msg, msg
        send(kp, "someone@remote.test", ["carol@box.test"], subject="to carol's box")
        files = dv.wait_delivered("carol@box.test", kp=kp)
        assert "Subject: to carol's box" in open(files[0]).read()
    finally:
        dv.stop()


def test_transport_maildir_target_is_created(make_server, tmpbase):
    base = os.path.join(tmpbase, "archive-mail")
    kp = make_server(transport_maps=f"inline:{{ archive.test=maildir:{base} }}",
                     relay_domains="archive.test")
    assert os.path.isdir(base)  # made at start, owned by mail_owner
    send(kp, "someone@example.org", ["keep@archive.test"])
    files = wait_for(lambda: __import__("glob").glob(os.path.join(base, "archive.test", "keep",
                                                                  "new", "*")),
                     lambda: "not delivered:\n" + kp.log())
    assert len(files) == 1


# ---- rewriting and loops -----------------------------------------------------

def test_canonical_maps_rewrite_the_envelope(make_server, tmpbase):
    canon = write(os.path.join(tmpbase, "canonical"),
                  "old@example.org alice@example.org\n@legacy.example.org @example.org\n")
    sender = write(os.path.join(tmpbase, "sender_canonical"), "bob@example.org info@example.org\n")
    kp = make_server(mydestination="example.org, legacy.example.org, $myhostname",
                     canonical_maps=f"texthash:{canon}",
                     sender_canonical_maps=f"texthash:{sender}")
    send(kp, "bob@example.org", ["old@example.org", "carol@legacy.example.org"])
    files = kp.wait_delivered("alice@example.org")
    assert b"Return-Path: <info@example.org>" in open(files[0], "rb").read()
    kp.wait_delivered("carol@example.org")
    kp.wait_log(r"to=<alice@example\.org>, orig_to=<old@example\.org>")
    assert not os.path.exists(os.path.join(kp.mail, "legacy.example.org"))


def test_canonical_maps_rewrite_header_addresses(make_server, tmpbase):
    """As Postfix's canonical_classes say: From/To/Cc addresses too, names
    and the rest of the header kept; an envelope-only class leaves them."""
    canon = write(os.path.join(tmpbase, "canonical"), "old@example.org alice@example.org\n")
    sender = write(os.path.join(tmpbase, "sender_canonical"), "bob@example.org info@example.org\n")
    msg = (b"From: Bob Example <bob@example.org>\r\n"
           b"To: \"Old, Name\" <old@example.org>, carol@example.org\r\n"
           b"Cc: old@example.org (a comment keeps it as it is)\r\n"
           b"Subject: old@example.org stays\r\n\r\nbody old@example.org\r\n")
    for classes, rewritten in ((None, True), ("envelope_sender, envelope_recipient", False)):
        params = dict(canonical_maps=f"texthash:{canon}", sender_canonical_maps=f"texthash:{sender}")
        if classes:
            params["canonical_classes"] = params["sender_canonical_classes"] = classes
        kp = make_server(**params)
        with smtplib.SMTP("127.0.0.1", kp.smtp_port, timeout=20) as s:
            s.sendmail("bob@example.org", ["carol@example.org"], msg)
        raw = open(kp.wait_delivered("carol@example.org")[0], "rb").read().decode()
        head, body = raw.split("\n\n", 1)
        assert "Return-Path: <info@example.org>" in head
        if rewritten:
            assert "From: Bob Example <info@example.org>" in head, head
            assert 'To: "Old, Name" <alice@example.org>, carol@example.org' in head, head
        else:
            assert "From: Bob Example <bob@example.org>" in head, head
            assert 'To: "Old, Name" <old@example.org>' in head, head
        assert "Cc: old@example.org (a comment keeps it as it is)" in head
        assert "Subject: old@example.org stays" in head and "body old@example.org" in body
        ids = set(re.findall(r"([0-9A-F]{16}): (?:client=|from=|to=)", kp.log()))
        assert len(ids) == 1, kp.log()


def test_canonical_value_that_is_not_one_address_is_an_error(tmpbase):
    canon = write(os.path.join(tmpbase, "canonical"), "a@example.org b@x.test\n"
                                                      "c@example.org d@x.test, e@x.test\n")
    r = check(tmpbase, [f"canonical_maps = texthash:{canon}",
                        "local_recipient_maps = inline:{ a=1 }"])
    assert r.returncode == 1
    assert re.search(re.escape(f"{canon}:2: canonical_maps entry for c@example.org: ") +
                     r'"d@x\.test, e@x\.test" is not one address', r.stderr), r.stderr
    assert f"{canon}:1:" not in r.stderr


@pytest.mark.parametrize("enabled", ["no", "yes"])
def test_percent_hack_and_bang_paths(make_server, enabled):
    from test_relay import Peer
    peer = Peer()
    try:
        kp = make_server(allow_percent_hack=enabled, swap_bangpath=enabled,
                         relayhost=f"[127.0.0.1]:{peer.port}",
                         local_recipient_maps="inline:{ user%remote.test=1, remote.test!user=1 }")
        send(kp, "someone@example.org", ["user%remote.test@example.org"])
        if enabled == "no":
            # Postfix rewrites by default; keypost only when asked: the local
            # part is a mailbox name like any other.
            kp.wait_delivered("user%remote.test@example.org")
            assert peer.messages == []
        else:
            wait_for(lambda: peer.messages, lambda: "not relayed:\n" + kp.log())
            assert peer.messages[0]["rcpts"] == ["user@remote.test"]
    finally:
        peer.stop()


def test_delivered_to_loop_bounces(make_server):
    kp = make_server()
    with smtplib.SMTP("127.0.0.1", kp.smtp_port, timeout=20) as s:
        s.sendmail("sender@example.org", ["alice@example.org"],
                   b"Delivered-To: alice@example.org\r\nSubject: looped\r\n\r\nround again\r\n")
    kp.wait_log(r"to=<alice@example\.org>, relay=local, .*status=bounced \(5\.4\.6 mail "
                r"forwarding loop for alice@example\.org\)")
    bounce = kp.wait_delivered("sender@example.org")
    assert b"forwarding loop" in open(bounce[0], "rb").read()
    assert kp.delivered("alice@example.org") == []


def test_percent_hack_is_judged_before_relay_control(make_server):
    """With the percent hack on, "user%elsewhere@local" from a stranger is
    rewritten before the restrictions: relay access denied, not relayed."""
    kp = make_server(allow_percent_hack="yes", mynetworks="192.0.2.0/24",
                     recipient_delimiter="+", local_recipient_maps="inline:{ alice=1 }",
                     relayhost=f"[127.0.0.1]:{free_port()}")
    code, msg = rcpt(kp, "alice+x%evil.test@example.org")
    assert code == 554 and b"Relay access denied" in msg, msg
    assert b"alice+x@evil.test" in msg


def test_unmatched_virtual_alias_target_bounces(make_server, tmpbase):
    valiases = write(os.path.join(tmpbase, "virtual"), "info@alias.test typo@alias.test\n")
    kp = make_server(virtual_alias_domains="alias.test", virtual_alias_maps=f"texthash:{valiases}",
                     relayhost=f"[127.0.0.1]:{free_port()}")
    send(kp, "sender@example.org", ["info@alias.test"])
    kp.wait_log(r"to=<typo@alias\.test>, orig_to=<info@alias\.test>, .*status=bounced "
                r"\(5\.1\.1 User unknown in virtual alias table\)")
    assert b"User unknown in virtual alias table" in \
        open(kp.wait_delivered("sender@example.org")[0], "rb").read()


def test_listed_user_with_a_delimiter_keeps_its_mailbox(make_server):
    kp = make_server(recipient_delimiter="+-", local_recipient_maps="inline:{ john=1, john-doe=1 }")
    send(kp, "sender@remote.test", ["john-doe@example.org", "john+news@example.org",
                                     "owner-list@example.org"], subject="split")
    kp.wait_delivered("john-doe@example.org")
    kp.wait_delivered("john@example.org")
    assert kp.delivered("john-doe@example.org") and len(kp.delivered("john@example.org")) == 1
