"""The sendmail command (keypost sendmail, and keypost called as sendmail,
mailq and newaliases) as scripts and cron jobs use it: run by unprivileged
users through runuser, submitting over keypost's local socket. The sender
is the user's login qualified with myorigin unless local_login_sender_maps
lets the user name another; mailq shows a user only its own messages; exit
codes are sysexits.h's; a message is in the queue before exit 0."""
import os
import pwd
import re
import subprocess
import time

import pytest

from kptest import KEYPOST, Keypost, free_port

USERS = ("kpsm1", "kpsm2")
MYORIGIN = "mx.keypost.test"
EX_USAGE, EX_DATAERR, EX_NOUSER, EX_TEMPFAIL, EX_NOPERM = 64, 65, 67, 75, 77


@pytest.fixture(scope="module", autouse=True)
def users():
    """Two ordinary local users (no home, no shell)."""
    for u in USERS:
        try:
            pwd.getpwnam(u)
        except KeyError:
            subprocess.run(["useradd", "-M", "-s", "/usr/sbin/nologin", u], check=True)
    yield


def links(base):
    """sendmail, mailq and newaliases as make install links them."""
    d = os.path.join(base, "bin")
    if not os.path.isdir(d):
        os.makedirs(d)
        os.chmod(d, 0o755)
        for name in ("sendmail", "mailq", "newaliases"):
            os.symlink(KEYPOST, os.path.join(d, name))
    return d


def as_user(user, kp, cmd, args, data=b""):
    """Run bin/CMD -C CONFIG ARGS as user (None: root) with data on stdin."""
    prog = os.path.join(links(kp.base), cmd)
    argv = [prog, "-C", kp.config, *args]
    if user:
        argv = ["runuser", "-u", user, "--"] + argv
    return subprocess.run(argv, input=data, capture_output=True, timeout=60)


def sendmail(user, kp, args, data):
    return as_user(user, kp, "sendmail", args, data)


def message(path):
    return open(path, "rb").read()


def queued_ids(kp):
    return re.findall(r"(\w{16}): uid=\d+ from=", kp.log())


def uid(user):
    return pwd.getpwnam(user).pw_uid


def test_cron_script_with_t(make_server):
    """A shell script as cron runs it: sendmail -t from an ordinary user.
    To and Bcc recipients get it, Bcc: is gone, the envelope sender is the
    login qualified with myorigin, and the Received: line names the uid."""
    kp = make_server(tls=False)
    bindir = links(kp.base)
    script = os.path.join(kp.base, "job.sh")
    with open(script, "w") as f:
        f.write(f"""#!/bin/sh
PATH={bindir}:/usr/bin:/bin
sendmail -C {kp.config} -t -oi <<EOF
To: Root <root>, kpsm2@{MYORIGIN}
Bcc: kpsm1
Subject: nightly report

all good
EOF
""")
    os.chmod(script, 0o755)
    r = subprocess.run(["runuser", "-u", "kpsm1", "--", script], capture_output=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    for rcpt in ("root", "kpsm2", "kpsm1"):
        text = message(kp.wait_delivered(f"{rcpt}@{MYORIGIN}")[0])
        assert text.startswith(f"Return-Path: <kpsm1@{MYORIGIN}>".encode()), text
        assert f"(keypost, from userid {uid('kpsm1')})".encode() in text, text
        assert b"Bcc:" not in text, text
        assert b"\nSubject: nightly report\n" in text.replace(b"\r\n", b"\n"), text
        assert f"From: <kpsm1@{MYORIGIN}>".encode() in text, text
    kp.wait_log(rf"\w{{16}}: uid={uid('kpsm1')} from=<kpsm1@{MYORIGIN}>")
    # No setuid program: a root-owned directory with sockets open to all.
    run = os.path.join(kp.base, "run")
    st = os.stat(run)
    assert st.st_uid == 0 and st.st_mode & 0o777 == 0o755, oct(st.st_mode)
    for name in ("submit", "showq"):
        assert os.stat(os.path.join(run, name)).st_mode & 0o777 == 0o666
    assert os.stat(KEYPOST).st_mode & 0o6000 == 0


def test_socket_directory_others_could_change_is_refused(tmpbase):
    """serve makes sockets open to all there: a directory another user owns
    or may write is refused, with one clear line, and serve exits 2."""
    kp = Keypost(tmpbase)
    run = os.path.join(tmpbase, "run")
    os.makedirs(run)
    for owner, mode in ((uid("kpsm1"), 0o755), (0, 0o777)):
        os.chown(run, owner, 0)
        os.chmod(run, mode)
        with pytest.raises(RuntimeError, match="keypost exited"):
            kp.start()
        assert kp.proc.wait() == 2
        kp.stderr.close()
        want = (f"local_socket_directory: {run} must belong to the user keypost starts as "
                "and be writable only by it")
        assert kp.output().count(want) == 1, kp.output()
        os.unlink(kp.logfile)


def test_f_from_untrusted_user_is_refused(make_server):
    kp = make_server(tls=False, recipient_delimiter="+")
    r = sendmail("kpsm1", kp, ["-f", "boss@example.org", "root"], b"Subject: x\n\nfake\n")
    assert r.returncode == EX_NOPERM, r
    assert b"553 5.7.1 <boss@example.org>: Sender address rejected: not owned by user kpsm1" \
        in r.stderr, r.stderr
    assert b"nothing was sent" in r.stderr
    # Its own address is fine, given in full or as the login.
    r = sendmail("kpsm1", kp, ["-f", "kpsm1", "-F", "Kay Pe", "root"], b"Subject: y\n\nok\n")
    assert r.returncode == 0, r.stderr
    text = message(kp.wait_delivered(f"root@{MYORIGIN}")[0])
    assert text.startswith(f"Return-Path: <kpsm1@{MYORIGIN}>".encode()), text
    assert f'From: "Kay Pe" <kpsm1@{MYORIGIN}>'.encode() in text, text
    # An address extension is the user's own too; the null sender is not.
    r = sendmail("kpsm1", kp, ["-f", f"kpsm1+cron@{MYORIGIN}", "kpsm2"], b"Subject: z\n\next\n")
    assert r.returncode == 0, r.stderr
    text = message(kp.wait_delivered(f"kpsm2@{MYORIGIN}")[0])
    assert text.startswith(f"Return-Path: <kpsm1+cron@{MYORIGIN}>".encode()), text
    r = sendmail("kpsm1", kp, ["-f", "<>", "root"], b"Subject: n\n\nnull\n")
    assert r.returncode == EX_NOPERM, r
    assert b"553 5.7.1 <>: Sender address rejected: not owned by user kpsm1" in r.stderr, r
    assert len(queued_ids(kp)) == 2, kp.log()


def test_f_from_trusted_users(make_server):
    """root may name any sender (keypost's default local_login_sender_maps);
    the table can let a user use a domain; keypost check -v says who."""
    kp = make_server(tls=False, local_login_sender_maps="inline:{ root=*, kpsm2=@example.org }")
    r = sendmail(None, kp, ["-f", "alerts@elsewhere.test", "root"], b"Subject: a\n\nroot\n")
    assert r.returncode == 0, r.stderr
    r = sendmail("kpsm2", kp, ["-f", "<ops@example.org>", "root"], b"Subject: b\n\nops\n")
    assert r.returncode == 0, r.stderr
    r = sendmail("kpsm2", kp, ["-f", "ops@other.test", "root"], b"Subject: c\n\nno\n")
    assert r.returncode == EX_NOPERM, r
    r = sendmail(None, kp, ["-f", "<>", "-F", "Ops", "kpsm1"], b"Subject: d\n\nnull sender\n")
    assert r.returncode == 0, r.stderr
    text = message(kp.wait_delivered(f"kpsm1@{MYORIGIN}")[0])
    assert text.startswith(b"Return-Path: <>\n"), text
    assert f'From: "Ops" <root@{MYORIGIN}>'.encode() in text, text
    files = kp.wait_delivered(f"root@{MYORIGIN}", count=2)
    paths = sorted(message(f).split(b"\n")[0] for f in files)
    assert paths == [b"Return-Path: <alerts@elsewhere.test>", b"Return-Path: <ops@example.org>"]
    r = kp.cli("check", "-v", "-c", kp.config)
    assert "configuration OK" in r.stdout, r.stderr
    assert "local_login_sender_maps: kpsm2 may send as: @example.org" in r.stdout, r.stdout
    assert "local_login_sender_maps: root may send as: *" in r.stdout, r.stdout
    assert "authorized_submit_users: static:anyone" in r.stdout, r.stdout


def test_bs_speaks_smtp_with_the_login_enforced(make_server):
    kp = make_server(tls=False)
    dialogue = (b"EHLO me\r\nMAIL FROM:<root@example.org>\r\nMAIL FROM:<kpsm1>\r\n"
                b"RCPT TO:<root>\r\nDATA\r\nSubject: bs\r\n\r\nover bs\r\n.\r\nQUIT\r\n")
    r = sendmail("kpsm1", kp, ["-bs"], dialogue)
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert out.startswith("220 "), out
    assert "553 5.7.1 <root@example.org>: Sender address rejected: not owned by user kpsm1" \
        in out, out
    assert re.search(r"250 2\.0\.0 Ok: queued as \w{16}", out), out
    assert "221 2.0.0 Bye" in out, out
    text = message(kp.wait_delivered(f"root@{MYORIGIN}")[0])
    assert text.startswith(f"Return-Path: <kpsm1@{MYORIGIN}>".encode()), text
    assert b"over bs" in text


def held_server(make_server):
    """Remote mail to a next hop that never answers stays in the queue."""
    dead = free_port()
    return make_server(tls=False, transport_maps=f"inline:{{ remote.test=smtp:[127.0.0.1]:{dead} }}",
                       minimal_backoff_time="300s", maximal_backoff_time="600s")


def submit_verbose(user, kp, rcpt, body=b"Subject: q\n\nqueued\n"):
    r = sendmail(user, kp, ["-v", rcpt], body)
    assert r.returncode == 0, r.stderr
    return re.search(rb"queued as (\w{16})", r.stderr).group(1).decode()


def test_message_is_durable_before_exit(make_server):
    """Exit 0 comes after the 250, which comes after the fsyncs: the file is
    in active/ by then (this next hop never takes it)."""
    kp = held_server(make_server)
    qid = submit_verbose("kpsm1", kp, "someone@remote.test")
    path = os.path.join(kp.queue, "active", qid)
    assert os.path.isfile(path), os.listdir(os.path.join(kp.queue, "active"))
    head = open(path, "rb").read().split(b"\n\n", 1)[0]
    assert f"sender kpsm1@{MYORIGIN}\n".encode() in head + b"\n", head
    assert f"localuid {uid('kpsm1')}".encode() in head, head


def test_mailq_shows_a_user_only_its_own_mail(make_server):
    kp = held_server(make_server)
    mine = submit_verbose("kpsm1", kp, "a@remote.test")
    theirs = submit_verbose("kpsm2", kp, "b@remote.test")
    by_root = submit_verbose(None, kp, "c@remote.test")
    r = as_user("kpsm1", kp, "mailq", [])
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert mine in out and f"<kpsm1@{MYORIGIN}>" in out and "a@remote.test" in out, out
    assert theirs not in out and by_root not in out and "b@remote.test" not in out, out
    r = as_user("kpsm2", kp, "sendmail", ["-bp"])
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert theirs in out and mine not in out and by_root not in out, out
    r = as_user(None, kp, "mailq", [])
    out = r.stdout.decode()
    assert r.returncode == 0 and all(q in out for q in (mine, theirs, by_root)), out
    # The queue itself stays closed to them.
    r = subprocess.run(["runuser", "-u", "kpsm1", "--", "ls", os.path.join(kp.queue, "active")],
                       capture_output=True)
    assert r.returncode != 0 and b"Permission denied" in r.stderr, r


def test_mailq_of_a_user_with_nothing_queued(make_server):
    kp = held_server(make_server)
    submit_verbose("kpsm1", kp, "a@remote.test")
    r = as_user("kpsm2", kp, "mailq", [])
    assert r.returncode == 0 and r.stdout == b"Mail queue is empty\n", r


def test_lone_dot_ends_the_message_unless_i(make_server):
    kp = make_server(tls=False)
    body = b"Subject: dots\n\nbefore\n.\nafter\n..two\n"
    assert sendmail("kpsm1", kp, ["kpsm1"], body).returncode == 0
    text = message(kp.wait_delivered(f"kpsm1@{MYORIGIN}")[0])
    assert text.endswith(b"before\r\n") or text.endswith(b"before\n"), text
    assert b"after" not in text
    assert sendmail("kpsm1", kp, ["-i", "kpsm2"], body).returncode == 0
    text = message(kp.wait_delivered(f"kpsm2@{MYORIGIN}")[0]).replace(b"\r\n", b"\n")
    assert text.endswith(b"\nbefore\n.\nafter\n..two\n"), text
    assert sendmail("kpsm1", kp, ["-oi", "root"], body).returncode == 0
    text = message(kp.wait_delivered(f"root@{MYORIGIN}")[0]).replace(b"\r\n", b"\n")
    assert text.endswith(b"\nbefore\n.\nafter\n..two\n"), text


def test_8bit_and_no_trailing_newline(make_server):
    kp = make_server(tls=False)
    body = "Subject: Grüße\n\nÄpfel und Öl\nlast line without newline".encode()
    r = sendmail("kpsm1", kp, ["root"], body)
    assert r.returncode == 0, r.stderr
    text = message(kp.wait_delivered(f"root@{MYORIGIN}")[0]).replace(b"\r\n", b"\n")
    assert "Subject: Grüße\n".encode() in text, text
    assert text.endswith("\n\nÄpfel und Öl\nlast line without newline\n".encode()), text


def test_bare_cr_is_normalized_as_keypost_does(make_server):
    kp = make_server(tls=False)
    r = sendmail("kpsm1", kp, ["root"], b"Subject: cr\n\none\rtwo\n")
    assert r.returncode == 0, r.stderr
    text = message(kp.wait_delivered(f"root@{MYORIGIN}")[0])
    assert b"one\r\ntwo\r\n" in text or b"one\ntwo\n" in text, text
    kp.wait_log(r"bare <CR> normalized to <CR><LF> in message from localhost\[127\.0\.0\.1\]")


def test_bare_cr_refused_when_keypost_rejects_bare_newlines(make_server):
    kp = make_server(tls=False, smtpd_forbid_bare_newline="reject")
    r = sendmail("kpsm1", kp, ["root"], b"Subject: cr\n\none\rtwo\n")
    assert r.returncode == EX_DATAERR, r
    assert b"550 5.5.2 Error: bare <CR> received" in r.stderr, r.stderr
    # Plain LF line ends are the command's input format, not bare newlines.
    r = sendmail("kpsm1", kp, ["root"], b"Subject: lf\n\nfine\n")
    assert r.returncode == 0, r.stderr
    kp.wait_delivered(f"root@{MYORIGIN}")
    assert len(queued_ids(kp)) == 2 and len(kp.delivered(f"root@{MYORIGIN}")) == 1


def test_oversized_message_is_refused_and_nothing_queued(make_server):
    kp = make_server(tls=False, message_size_limit="4000")
    r = sendmail("kpsm1", kp, ["root"], b"Subject: big\n\n" + (b"x" * 70 + b"\n") * 70)
    assert r.returncode == EX_DATAERR, r
    assert b"larger than message_size_limit (4000 bytes)" in r.stderr, r.stderr
    # Under the limit as read, over it once every line ends in CRLF: the
    # server's 552 says so.
    r = sendmail("kpsm1", kp, ["root"], b"Subject: big\n\n" + b"\n" * 3900)
    assert r.returncode == EX_DATAERR, r
    assert b"552 5.3.4" in r.stderr, r.stderr
    assert kp.queue_files() == [] and kp.queue_files("tmp") == []
    time.sleep(0.5)
    assert kp.delivered(f"root@{MYORIGIN}") == []
    assert not re.search(r"from=<kpsm1@\S+>, size=\d+, nrcpt=1 \(queue", kp.log()), kp.log()


def test_unknown_recipient_and_missing_recipients(make_server):
    kp = make_server(tls=False, local_recipient_maps="inline:{ root=1 }")
    r = sendmail("kpsm1", kp, ["nosuchuser"], b"Subject: x\n\nx\n")
    assert r.returncode == EX_NOUSER, r
    assert b"550 5.1.1" in r.stderr, r.stderr
    r = sendmail("kpsm1", kp, ["-t"], b"Subject: x\n\nno To\n")
    assert r.returncode == EX_USAGE, r
    assert b"no recipients specified" in r.stderr, r.stderr
    r = sendmail("kpsm1", kp, ["-t"], b"To: root, a\rb\nSubject: x\n\nx\n")
    assert r.returncode == EX_DATAERR, r
    assert b'bad address in To:, Cc: or Bcc: "a?b"' in r.stderr, r.stderr
    r = sendmail("kpsm1", kp, ["root\r\nRCPT TO:<kpsm2>"], b"Subject: x\n\nx\n")
    assert r.returncode == EX_USAGE, r
    assert not re.search(r": uid=\d+ from=", kp.log()), kp.log()


def test_unauthorized_user_is_refused(make_server):
    kp = make_server(tls=False, authorized_submit_users="!kpsm2, static:anyone")
    r = sendmail("kpsm2", kp, ["root"], b"Subject: x\n\nx\n")
    assert r.returncode == EX_NOPERM, r
    assert b"user kpsm2 is not allowed to submit mail (authorized_submit_users)" in r.stderr
    assert sendmail("kpsm1", kp, ["root"], b"Subject: y\n\ny\n").returncode == 0
    kp.wait_delivered(f"root@{MYORIGIN}")


def test_keypost_not_running_is_a_temporary_failure(make_server):
    kp = make_server(tls=False)
    assert kp.stop() == 0
    r = sendmail("kpsm1", kp, ["root"], b"Subject: x\n\nx\n")
    assert r.returncode == EX_TEMPFAIL, r
    assert b"(is keypost running?); nothing was sent" in r.stderr, r.stderr
    r = as_user("kpsm1", kp, "mailq", [])
    assert r.returncode == EX_TEMPFAIL, r


def test_newaliases_says_what_it_does(make_server, tmpbase):
    aliases = os.path.join(tmpbase, "aliases")
    with open(aliases, "w") as f:
        f.write("postmaster root\n")
    kp = make_server(tls=False, alias_maps=f"texthash:{aliases}")
    r = as_user(None, kp, "newaliases", [])
    assert r.returncode == 0, r.stderr
    assert f"alias_maps texthash:{aliases} is read by keypost when it starts and on reload " \
        "(SIGHUP): nothing to build" in r.stdout.decode(), r.stdout
    r = as_user(None, kp, "sendmail", ["-bi"])
    assert r.returncode == 0 and b"nothing to build" in r.stdout, r


def test_keypost_sendmail_subcommand_and_bad_options(make_server):
    kp = make_server(tls=False)
    r = subprocess.run(["runuser", "-u", "kpsm1", "--", KEYPOST, "sendmail", "-C", kp.config,
                        "-B", "8BITMIME", "-N", "never", "-oem", "-odi", "root"],
                       input=b"Subject: sub\n\nvia keypost sendmail\n", capture_output=True)
    assert r.returncode == 0, r.stderr
    kp.wait_delivered(f"root@{MYORIGIN}")
    r = sendmail("kpsm1", kp, ["x" * 3000 + "@example.org"], b"Subject: long\n\nx\n")
    assert r.returncode == EX_DATAERR, r
    assert b"address too long for an SMTP command; nothing was sent" in r.stderr, r.stderr
    for bad in (["-B", "9BIT"], ["-N", "sometimes"], ["-bz"]):
        r = sendmail("kpsm1", kp, bad + ["root"], b"x\n")
        assert r.returncode == EX_USAGE, (bad, r)
