"""keypost's own virtual delivery agent: virtual mailboxes written as the
uid/gid of virtual_uid_maps/virtual_gid_maps (so that an IMAP server
running as vmail reads them), through the mailbox helper that keeps root
for this one job, with the helper's checks: virtual_minimum_uid, no links,
no path outside virtual_mailbox_base, and mail_owner as its only client."""
import glob
import os
import smtplib
import socket
import stat
import subprocess
import sys

import pytest

from kptest import KEYPOST
from postfix_peer import wait_for

VMAIL = 5000


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o644)
    return path


@pytest.fixture
def vbase(tmpbase):
    if os.geteuid() != 0:
        pytest.fail("these tests start keypost as root (mailbox ownership needs it)")
    base = os.path.join(tmpbase, "vmail")
    # The IMAP server's uid owns the tree, as with Dovecot; the domain's
    # directory is shared by its users' uids through the group.
    for d in (base, os.path.join(base, "virt.test")):
        os.mkdir(d)
        os.chmod(d, 0o770)
        os.chown(d, VMAIL, VMAIL)
    return base


def virtual_server(make_server, tmpbase, base, **extra):
    boxes = write(os.path.join(tmpbase, "vmailbox"),
                  "alice@virt.test virt.test/alice/\n"
                  "carol@virt.test virt.test/carol/\n"
                  "root@virt.test virt.test/root/\n"
                  "link@virt.test virt.test/link/\n"
                  "climb@virt.test ../outside/\n"
                  "mbox@virt.test virt.test/mbox\n")
    uids = write(os.path.join(tmpbase, "vuids"),
                 f"@virt.test {VMAIL}\ncarol@virt.test {VMAIL + 1}\nroot@virt.test 0\n")
    params = dict(virtual_mailbox_domains="virt.test", virtual_mailbox_base=base,
                  virtual_mailbox_maps=f"texthash:{boxes}",
                  virtual_uid_maps=f"texthash:{uids}", virtual_gid_maps=f"static:{VMAIL}")
    params.update(extra)
    return make_server(**params)


def send(kp, rcpts, subject="hello"):
    with smtplib.SMTP("127.0.0.1", kp.smtp_port, timeout=20) as s:
        refused = s.sendmail("someone@remote.test", rcpts,
                             f"Subject: {subject}\r\n\r\nbody\r\n".encode())
        assert refused == {}


def delivered(base, box):
    return sorted(glob.glob(os.path.join(base, "virt.test", box, "new", "*")))


def read_as(uid, gid, path):
    """Read path in a process that has only uid/gid (an IMAP server's view)."""
    code = ("import os,sys; os.setgroups([]); os.setgid(%d); os.setuid(%d); "
            "sys.stdout.write(open(sys.argv[1]).read())" % (gid, uid))
    return subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True,
                          timeout=20)


def test_mailboxes_belong_to_their_users(make_server, tmpbase, vbase):
    kp = virtual_server(make_server, tmpbase, vbase)
    send(kp, ["alice@virt.test", "carol@virt.test"], subject="to the boxes")
    for box, uid in (("alice", VMAIL), ("carol", VMAIL + 1)):
        files = wait_for(lambda: delivered(vbase, box), lambda: kp.log())
        st = os.stat(files[0])
        assert (st.st_uid, st.st_gid) == (uid, VMAIL), (box, st)
        assert stat.S_IMODE(st.st_mode) == 0o600
        d = os.stat(os.path.join(vbase, "virt.test", box))
        assert (d.st_uid, stat.S_IMODE(d.st_mode)) == (uid, 0o700)
        r = read_as(uid, VMAIL, files[0])
        assert r.returncode == 0 and "Subject: to the boxes" in r.stdout, r.stderr
        assert "Delivered-To: %s@virt.test" % box in r.stdout
    kp.wait_log(r"keypost/virtual\[\d+\]: \w+: to=<alice@virt\.test>, relay=virtual, "
                r".*status=sent \(delivered to maildir")
    # Unknown users are refused at RCPT, and nothing is made for them.
    with smtplib.SMTP("127.0.0.1", kp.smtp_port, timeout=20) as s:
        s.ehlo("client.test")
        s.mail("someone@remote.test")
        code, msg = s.rcpt("nobody@virt.test")
    assert code == 550 and b"User unknown in virtual mailbox table" in msg, msg
    assert sorted(os.listdir(os.path.join(vbase, "virt.test"))) == ["alice", "carol"]
    # Of keypost's children only the helper keeps root.
    owners = sorted(uid for pid, uid in children(kp.proc.pid))
    assert owners.count(0) == 1 and len(owners) >= 3, owners


def helper_socket(master):
    """The abstract name (autobound by the kernel) the root helper listens on."""
    helper = [pid for pid, uid in children(master) if uid == 0]
    assert len(helper) == 1, children(master)
    inodes = set()
    for fd in glob.glob(f"/proc/{helper[0]}/fd/*"):
        target = os.readlink(fd)
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    for line in open("/proc/net/unix").read().splitlines()[1:]:
        f = line.split()
        if len(f) >= 8 and f[6] in inodes and f[7].startswith("@") and f[3] == "00010000":
            return f[7][1:]
    raise AssertionError("no listening socket of the mailbox helper")


def children(ppid):
    """(pid, real uid) of ppid's child processes."""
    out = []
    for stat_path in glob.glob("/proc/[0-9]*/status"):
        try:
            text = open(stat_path).read()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        if int(fields["PPid"]) == ppid:
            out.append((int(fields["Pid"]), int(fields["Uid"].split()[0])))
    return out


def test_helper_refuses_what_the_maps_must_not_allow(make_server, tmpbase, vbase):
    os.symlink("/etc", os.path.join(vbase, "virt.test", "link"))
    kp = virtual_server(make_server, tmpbase, vbase)
    send(kp, ["root@virt.test", "link@virt.test", "climb@virt.test", "mbox@virt.test"])
    kp.wait_log(r"to=<root@virt\.test>.*status=deferred \(4\.3\.5 uid 0 .*virtual_minimum_uid")
    kp.wait_log(r"to=<link@virt\.test>.*status=deferred .*a symbolic link, refused")
    kp.wait_log(r"to=<climb@virt\.test>.*status=deferred .*not a Maildir path")
    kp.wait_log(r"to=<mbox@virt\.test>.*status=deferred .*not a Maildir path")
    assert not os.path.exists(os.path.join(vbase, "virt.test", "root"))
    assert not os.path.exists(os.path.join(tmpbase, "outside"))
    assert not glob.glob("/etc/new") and not glob.glob("/etc/tmp")


def test_helper_serves_mail_owner_only(make_server, tmpbase, vbase):
    kp = virtual_server(make_server, tmpbase, vbase)
    name = helper_socket(kp.proc.pid)
    code = ("import socket,sys\ns=socket.socket(socket.AF_UNIX)\n"
            "s.connect(b'\\0' + bytes.fromhex('%s'))\ntry:\n"
            "    s.sendall(b'OPEN 5000 5000 virt.test/x/\\n')\n"
            "    sys.stdout.write(repr(s.recv(100)))\n"
            "except OSError:\n    sys.stdout.write(\"b''\")\n" % name.encode().hex())
    # As a uid that is not mail_owner: the helper hangs up without an answer.
    r = subprocess.run([sys.executable, "-c", "import os; os.setgid(65534); os.setuid(65534);"
                        "exec(%r)" % code], capture_output=True, text=True, timeout=20)
    assert r.returncode == 0 and r.stdout == "b''", r.stdout + r.stderr
    kp.wait_log(r"mailbox helper: refused a connection from another user")
    assert not os.path.exists(os.path.join(vbase, "virt.test", "x"))


def test_check_needs_the_owner_maps(tmpbase):
    cf = write(os.path.join(tmpbase, "keypost.cf"),
               "virtual_mailbox_domains = virt.test\n"
               "virtual_mailbox_maps = inline:{ a@virt.test=virt.test/a/ }\n"
               "virtual_uid_maps = static:12\n")
    r = subprocess.run([KEYPOST, "check", "-c", cf], capture_output=True, text=True)
    assert r.returncode == 1
    assert "virtual_mailbox_base must be an absolute directory" in r.stderr, r.stderr
    assert "uid 12 is below virtual_minimum_uid (100)" in r.stderr, r.stderr
    assert "virtual_gid_maps must be set" in r.stderr, r.stderr


def test_without_root_only_keypost_own_uid_is_served(make_server, tmpbase, vbase):
    """Started as mail_owner itself, no helper exists: a mailbox owned by
    another uid is deferred with the reason, never written as mail_owner."""
    import pwd
    owner = pwd.getpwnam("keypost")
    kp = virtual_server(make_server, tmpbase, vbase, start=False, tls=False)
    for d in (kp.queue, kp.mail):
        os.makedirs(d, exist_ok=True)
    kp.write_config()
    for root, dirs, files in os.walk(tmpbase):
        for n in dirs + files:
            p = os.path.join(root, n)
            if not os.path.islink(p) and not p.startswith(vbase):
                os.chown(p, owner.pw_uid, owner.pw_gid)
    os.chown(tmpbase, owner.pw_uid, owner.pw_gid)
    env = dict(os.environ)
    proc = subprocess.Popen(
        [sys.executable, "-c", "import os,sys; os.setgroups([]); os.setgid(%d); os.setuid(%d);"
         "os.execv(sys.argv[1], sys.argv[1:])" % (owner.pw_gid, owner.pw_uid),
         KEYPOST, "serve", "-c", kp.config], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: _listening(kp.smtp_port), lambda: kp.log())
        send(kp, ["alice@virt.test"])
        kp.wait_log(r"to=<alice@virt\.test>.*status=deferred \(4\.3\.0 cannot write as uid "
                    r"5000 gid 5000: keypost was not started as root\)")
        assert delivered(vbase, "alice") == []
    finally:
        proc.terminate()
        proc.wait(30)


def _listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False
