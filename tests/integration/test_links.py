"""Links and permissions in the queue and the Maildir tree.

mail_owner owns the queue and the Maildir base, so whoever runs as mail_owner
can plant symbolic links there. `keypost queue` run as root must never read
through one (it would print a root-only file), the daemon must not either,
and Maildir delivery must not write through a linked domain, mailbox or
tmp/new/cur directory. A user who may not read the queue must hear
"permission denied" with exit status 2, not an empty listing or "no such
message"."""
import os
import pwd
import re
import shutil
import smtplib
import socket
import subprocess

import pytest

from kptest import KEYPOST, free_port

MARKER = "secret-marker@leak.test"
OWNER = pwd.getpwnam("keypost")


def send(kp, sender, rcpt, subject="links"):
    """One message; returns its queue id."""
    body = f"Subject: {subject}\r\n\r\nhello\r\n".encode()
    with smtplib.SMTP("127.0.0.1", kp.smtp_port, timeout=10) as s:
        s.ehlo("client.test")
        assert s.mail(sender)[0] == 250
        code, msg = s.rcpt(rcpt)
        assert code == 250, msg
        code, msg = s.data(body)
        assert code == 250, msg
    m = re.search(rb"queued as ([0-9A-F]{16})", msg)
    assert m, msg
    return m.group(1).decode()


def queued_server(make_server):
    """A server whose local deliveries fail for an hour: messages stay queued."""
    return make_server(local_transport=f"lmtp:inet:127.0.0.1:{free_port()}",
                       minimal_backoff_time="1h", maximal_backoff_time="2h")


def wait_deferred(kp, qid):
    kp.wait_log(re.escape(qid) + r": deferred: 1 recipients left, next attempt in 3600s")


def qcli(kp, *args):
    return kp.cli("queue", *args, "-c", kp.config, check=False)


def as_user(kp, user, group, *args):
    """`keypost queue ARGS` with the given real and effective ids, no groups."""
    return subprocess.run(["setpriv", "--reuid", user, "--regid", group, "--clear-groups",
                           KEYPOST, "queue", *args, "-c", kp.config],
                          capture_output=True, text=True, timeout=30)


def plant_link(target, name):
    """A symbolic link made as mail_owner would make it."""
    os.symlink(target, name)
    os.lchown(name, OWNER.pw_uid, OWNER.pw_gid)


def root_only_copy(kp, qid):
    """A copy of a real queue file, readable by root alone, outside the queue."""
    secret_dir = os.path.join(kp.base, "rootonly")
    os.mkdir(secret_dir, 0o700)
    secret = os.path.join(secret_dir, "queuefile")
    shutil.copyfile(os.path.join(kp.queue, "active", qid), secret)
    os.chmod(secret, 0o600)
    return secret


def scan_notice(kp):
    """Ask the queue manager to scan active/ (as `keypost queue hold` does)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(b"SCAN", os.path.join(kp.queue, "qmgr.sock"))


# ---- links in the queue ----------------------------------------------------


def test_queue_list_as_root_never_reads_through_links(make_server):
    kp = queued_server(make_server)
    qid = send(kp, MARKER, "alice@example.org")
    wait_deferred(kp, qid)
    secret = root_only_copy(kp, qid)
    r = qcli(kp, "delete", qid)
    assert r.returncode == 0, r

    # Premise: the copy is a valid queue file; as a plain file in the queue
    # the listing would show its sender.
    plain = os.path.join(kp.queue, "hold", "00000000000000F0")
    shutil.copyfile(secret, plain)
    r = qcli(kp, "list")
    assert r.returncode == 0 and f"<{MARKER}>" in r.stdout, r
    os.unlink(plain)

    active_link = os.path.join(kp.queue, "active", "00000000000000F1")
    hold_link = os.path.join(kp.queue, "hold", "00000000000000F2")
    plant_link(secret, active_link)
    plant_link(secret, hold_link)
    r = qcli(kp, "list")
    assert MARKER not in r.stdout + r.stderr, r
    assert r.returncode == 0, r
    assert r.stdout == "", r
    for link in (active_link, hold_link):
        assert re.search(rf"warning: skipped {re.escape(link)}: a symbolic link", r.stderr), r

    # The queue manager does not follow the link either, and says so.
    scan_notice(kp)
    kp.wait_log(rf"qmgr\[\d+\]: warning: {re.escape(active_link)}: a symbolic link, "
                r"never followed; skipped, not read")
    about_links = [line for line in kp.log().splitlines()
                   if "00000000000000F1" in line or "00000000000000F2" in line]
    assert about_links and all("warning: " in line and MARKER not in line
                               for line in about_links), about_links
    assert os.path.islink(active_link) and os.path.islink(hold_link)


def test_unreadable_state_file_keeps_the_message_waiting(make_server):
    """A state file the queue manager cannot read must not read as "nothing
    delivered yet": the message waits, with a warning, and is not retried."""
    kp = queued_server(make_server)
    qid = send(kp, "bob@remote.test", "alice@example.org")
    wait_deferred(kp, qid)
    state = os.path.join(kp.queue, "state", qid)
    assert os.path.exists(state)
    os.chmod(state, 0o000)
    attempts = kp.log().count(f"{qid}: to=<alice@example.org>")
    assert qcli(kp, "flush").returncode == 0
    kp.wait_log(r"warning: " + re.escape(qid) + r": cannot read the state file .*: "
                r"Permission denied; the message waits")
    import time
    time.sleep(1)
    assert kp.log().count(f"{qid}: to=<alice@example.org>") == attempts
    assert qid in os.listdir(os.path.join(kp.queue, "active"))
    os.chmod(state, 0o600)


def test_queue_list_as_root_refuses_linked_queue_directory(make_server):
    kp = queued_server(make_server)
    qid = send(kp, MARKER, "alice@example.org")
    wait_deferred(kp, qid)
    secret = root_only_copy(kp, qid)
    assert qcli(kp, "delete", qid).returncode == 0
    # hold/ replaced by a link to a root-only directory holding a queue file.
    elsewhere = os.path.dirname(secret)
    os.rename(secret, os.path.join(elsewhere, "00000000000000F3"))
    hold = os.path.join(kp.queue, "hold")
    os.rename(hold, hold + ".orig")
    plant_link(elsewhere, hold)
    r = qcli(kp, "list")
    assert MARKER not in r.stdout + r.stderr, r
    assert f"warning: skipped {hold}: a symbolic link" in r.stderr, r
    assert r.returncode == 2, r


# ---- a user who may not read the queue -------------------------------------


def test_queue_commands_unprivileged_say_permission_denied(make_server):
    kp = queued_server(make_server)
    a = send(kp, "bob@example.org", "alice@example.org")
    b = send(kp, "carol@example.org", "dave@example.org")
    wait_deferred(kp, a)
    wait_deferred(kp, b)
    assert qcli(kp, "hold", b).returncode == 0
    # Premise: other users have no access to the queue directory at all.
    assert os.stat(kp.queue).st_mode & 0o007 == 0

    for args in (("list",), ("flush",), ("delete", a), ("hold", a), ("release", b)):
        r = as_user(kp, "nobody", "nogroup", *args)
        assert r.returncode == 2, (args, r)
        assert "permission denied" in r.stderr, (args, r)
        assert kp.queue in r.stderr, (args, r)  # the path is named
        assert "no such message" not in r.stderr, (args, r)
        assert "not running" not in r.stderr, (args, r)
        assert r.stdout == "", (args, r)
    # Nothing changed.
    assert a in kp.queue_files("active") and b in kp.queue_files("hold")
    r = qcli(kp, "list")
    assert r.returncode == 0 and a in r.stdout and b in r.stdout, r


def test_queue_list_by_group_member_names_unreadable_file(make_server):
    """In mail_owner's group, a user may enter the queue but not read the
    0600 queue files: the listing must not pretend the queue is empty."""
    kp = queued_server(make_server)
    qid = send(kp, "bob@example.org", "alice@example.org")
    wait_deferred(kp, qid)
    r = as_user(kp, "nobody", "keypost", "list")
    path = os.path.join(kp.queue, "active", qid)
    assert r.returncode == 2, r
    assert f"{path}: permission denied" in r.stderr, r
    # The socket is group-writable: a flush by the group works.
    r = as_user(kp, "nobody", "keypost", "flush")
    assert r.returncode == 0 and "flush requested" in r.stdout, r


# ---- links below the Maildir base ------------------------------------------


def owned_dir(path):
    os.makedirs(path, exist_ok=True)
    os.chown(path, OWNER.pw_uid, OWNER.pw_gid)
    os.chmod(path, 0o700)


def tree(path):
    """Everything below path, as relative names."""
    out = []
    for root, dirs, files in os.walk(path):
        out += [os.path.relpath(os.path.join(root, n), path) for n in dirs + files]
    return out


@pytest.mark.parametrize("linked", ["domain", "mailbox", "tmp", "new", "cur"])
def test_maildir_delivery_refuses_links(make_server, linked):
    kp = make_server(minimal_backoff_time="1h", maximal_backoff_time="2h")
    domain = os.path.join(kp.mail, "example.org")
    mailbox = os.path.join(domain, "alice")
    target = os.path.join(kp.base, "target")
    owned_dir(target)  # mail_owner could write there: only the link stops it
    if linked == "domain":
        link = domain
    elif linked == "mailbox":
        owned_dir(domain)
        link = mailbox
    else:
        for sub in ("tmp", "new", "cur"):
            if sub != linked:
                owned_dir(os.path.join(mailbox, sub))
        owned_dir(domain)
        owned_dir(mailbox)
        link = os.path.join(mailbox, linked)
    plant_link(target, link)

    qid = send(kp, "bob@remote.test", "alice@example.org")
    m = kp.wait_log(r"(?m)" + re.escape(qid) + r": to=<alice@example\.org>, relay=local, "
                    r"delay=\d+, status=(\w+) \((.*)\)$")
    assert tree(target) == [], m.group(0)  # nothing written through the link
    assert m.group(1) == "deferred", m.group(0)
    assert m.group(2) == f"4.2.0 cannot open maildir {link}: a symbolic link, refused"
    wait_deferred(kp, qid)
    assert qid in kp.queue_files("active")
    assert "status=sent" not in kp.log()
    if linked not in ("domain", "mailbox"):
        assert os.listdir(os.path.join(mailbox, "tmp" if linked != "tmp" else "new")) == []

    # Once the link is gone, the same message is delivered on a flush.
    os.unlink(link)
    r = qcli(kp, "flush")
    assert r.returncode == 0, r
    files = kp.wait_delivered("alice@example.org")
    assert len(files) == 1 and b"Subject: links" in open(files[0], "rb").read()
    assert not os.path.islink(link) and os.path.isdir(link)
    assert tree(target) == []
    kp.wait_log(re.escape(qid) + r": removed")
