"""keypost's logs as Postfix's tools read them: Debian's pflogsumm counts a
run with deliveries, deferrals, bounces and rejects; fail2ban's postfix
filter finds the clients to ban; an empty maillog_file logs to syslog
(facility mail, ident keypost/ROLE[PID]); maillog_file is reopened after
logrotate renamed it; and ps tells the processes apart by role."""
import os
import pty
import re
import select
import signal
import smtplib
import socket
import subprocess
import time

import pytest

from kptest import KEYPOST, ROOT, free_port


def readme_jail_filter():
    """fail2ban's filter knows Postfix's ident (postfix/smtpd); the jail that
    the README shows names keypost's. Nothing else of the filter changes."""
    text = open(os.path.join(ROOT, "README.md")).read()
    m = re.search(r"(?m)^ +filter = (postfix\[_daemon=keypost/\\w\+\])$", text)
    assert m, "README shows no fail2ban jail for keypost"
    return m.group(1)


MSG = b"Subject: log test\r\n\r\nhello\r\n"


def wait_until(cond, timeout=15, what="a condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def client(kp, addr="127.0.0.1", helo="client.test"):
    s = smtplib.SMTP("127.0.0.1", kp.smtp_port, source_address=(addr, 0), timeout=10)
    s.ehlo(helo)
    return s


def send(kp, sender, rcpt, addr="127.0.0.1"):
    with client(kp, addr) as s:
        s.sendmail(sender, [rcpt], MSG)


def refused_rcpt(kp, addr, rcpt, helo="client.test"):
    with client(kp, addr, helo) as s:
        s.mail("someone@remote.test")
        code, _ = s.rcpt(rcpt)
        assert code >= 500, code


def refused_mail(kp, addr, command):
    with client(kp, addr) as s:
        s.command_encoding = "utf-8"  # for the SMTPUTF8 address
        code, _ = s.docmd(command)
        assert code >= 500, code


def too_big(kp, addr):
    """No SIZE= declared: the limit strikes at the end of the message."""
    with client(kp, addr) as s:
        s.mail("someone@remote.test")
        assert s.rcpt("alice@example.org")[0] == 250
        code, _ = s.data(MSG + b"x" * 30000 + b"\r\n")
        assert code == 552, code


@pytest.fixture
def busy_log(make_server):
    """A log with 4 messages delivered (3 sent, 1 bounce notice), 1 bounced,
    1 deferred and 7 rejects, each refused client on its own address."""
    kp = make_server(
        mynetworks="127.0.0.1/32", message_size_limit="20000",
        local_recipient_maps="inline:{ alice=1, bob=1 }",
        smtpd_client_restrictions="check_client_access inline:{ 127.0.0.5=REJECT }",
        smtpd_helo_restrictions="check_helo_access inline:{ bad.helo.test=REJECT }",
        transport_maps=f"inline:{{ {{ gone.test = error:5.1.1 mailbox gone }}, "
                       f"later.test=smtp:[127.0.0.1]:{free_port()} }}")
    for _ in range(3):
        send(kp, "bob@example.org", "alice@example.org")
    send(kp, "bob@example.org", "x@gone.test")
    send(kp, "bob@example.org", "y@later.test")
    refused_rcpt(kp, "127.0.0.2", "someone@elsewhere.test")         # relay access denied
    refused_rcpt(kp, "127.0.0.3", "alice@example.org", "bad.helo.test")  # HELO
    refused_rcpt(kp, "127.0.0.4", "nobody@example.org")             # user unknown
    refused_rcpt(kp, "127.0.0.5", "alice@example.org")              # client
    refused_mail(kp, "127.0.0.6", "MAIL FROM:<a@remote.test> SIZE=999999")
    refused_mail(kp, "127.0.0.7", "MAIL FROM:<\u00fc@remote.test>")
    too_big(kp, "127.0.0.8")
    kp.wait_delivered("alice@example.org", 3)
    kp.wait_delivered("bob@example.org", 1)  # the notice of the bounce
    kp.wait_log(r"to=<y@later\.test>, relay=.*status=deferred")
    assert kp.stop() == 0
    return kp.log()


def pflogsumm_totals(log_path):
    out = subprocess.run(["pflogsumm", "--syslog-name=keypost", log_path], check=True,
                         capture_output=True, text=True).stdout
    totals = {}
    for name in ("received", "delivered", "deferred", "bounced", "rejected"):
        m = re.search(rf"(?m)^\s*(\d+)\s+{name}\b(.*)$", out)
        assert m, out
        totals[name] = int(m.group(1))
        if name == "deferred":
            d = re.search(r"\((\d+)\s*deferrals\)", m.group(2))
            totals["deferrals"] = int(d.group(1)) if d else 0
    return totals, out


def test_pflogsumm_counts_a_run(busy_log, tmpbase):
    path = os.path.join(tmpbase, "busy.log")
    with open(path, "w") as f:
        f.write(busy_log)
    totals, out = pflogsumm_totals(path)
    # received: the 5 accepted and the one refused at its end (its client=
    # line came first, as with Postfix); delivered: 3 and the bounce notice.
    assert (totals["received"], totals["delivered"], totals["bounced"],
            totals["deferred"], totals["rejected"]) == (6, 4, 1, 1, 7), out
    assert totals["deferrals"] >= 1, out
    # Every reject of the run is one line of Postfix's shape.
    rejects = re.findall(r"(?m)^\w{3} \d\d \d\d:\d\d:\d\d \S+ keypost/smtpd\[\d+\]: "
                         r"(NOQUEUE|[0-9A-F]+): reject: (\S+) from unknown\[[\d.]+\]: "
                         r"[45]\d\d .*; .*proto=E?SMTP.* session=S[0-9A-F]+$", busy_log)
    assert sorted(stage for _, stage in rejects) == \
        ["END-OF-MESSAGE", "MAIL", "MAIL", "RCPT", "RCPT", "RCPT", "RCPT"], busy_log


def postfix_form(line):
    """The line as Postfix would write it: its ident, no session id."""
    return re.sub(r" session=S[0-9A-F]+$", "", line.replace("keypost/smtpd[", "postfix/smtpd["))


def fail2ban_ips(lines, tmpbase, flt):
    path = os.path.join(tmpbase, f"f2b-{len(os.listdir(tmpbase))}.log")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    r = subprocess.run(["fail2ban-regex", "-o", "ip", path, flt], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    return sorted(r.stdout.split())


def test_fail2ban_postfix_filter_bans_the_refused_clients(busy_log, tmpbase):
    lines = busy_log.splitlines()
    rejects = [ln for ln in lines if ": reject: " in ln]
    assert len(rejects) == 7, busy_log
    # The filter bans for the reasons it lists: relay access denied, unknown
    # user, client host rejected. Those three clients, nobody else.
    assert fail2ban_ips(lines, tmpbase, readme_jail_filter()) == ["127.0.0.2", "127.0.0.4",
                                                         "127.0.0.5"], busy_log
    # keypost's reject lines are Postfix's but for the ident and the session
    # id: as Postfix's, the stock filter takes the same three, and passes over
    # the HELO "Access denied", size and SMTPUTF8 refusals, as it does for
    # Postfix's own.
    assert fail2ban_ips([postfix_form(ln) for ln in rejects], tmpbase,
                        "postfix") == ["127.0.0.2", "127.0.0.4", "127.0.0.5"]


# ---- syslog ------------------------------------------------------------------


def private_dev(base, log_socket):
    """A /dev for a private mount namespace: the few devices keypost opens,
    and our datagram socket as /dev/log. The machine's syslog is untouched."""
    dev = os.path.join(base, "dev")
    os.makedirs(dev, exist_ok=True)
    os.chmod(dev, 0o755)
    lines = []
    for name in ("null", "zero", "random", "urandom"):
        open(os.path.join(dev, name), "w").close()
        lines.append(f"mount --bind /dev/{name} {dev}/{name}")
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(target, os.path.join(dev, name))
    if log_socket is not None:
        log_socket.bind(os.path.join(dev, "log"))
        os.chmod(os.path.join(dev, "log"), 0o666)  # the workers run as mail_owner
    lines.append(f"mount --bind {dev} /dev")
    return "; ".join(lines)


def listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def start_in_namespace(kp, setup, stderr=None):
    """Start serve in a private mount namespace; its stderr goes to the
    file kp.output() reads, or to the given descriptor (a terminal)."""
    kp.write_config()
    kp.stderr = open(os.path.join(kp.base, "stderr"), "w")
    kp.proc = subprocess.Popen(
        ["unshare", "-m", "--propagation", "private", "sh", "-c",
         f"set -e; {setup}; exec {KEYPOST} serve -c {kp.config}"],
        stdout=kp.stderr, stderr=kp.stderr if stderr is None else stderr)
    wait_until(lambda: kp.proc.poll() is not None or listening(kp.smtp_port), 10,
               "keypost to listen")
    assert kp.proc.poll() is None, kp.output()


def datagrams(sock, until, timeout=10):
    got = []
    deadline = time.time() + timeout
    sock.settimeout(0.2)
    while time.time() < deadline:
        try:
            got.append(sock.recv(8192).decode())
        except socket.timeout:
            pass
        if any(re.search(until, d) for d in got):
            return got
    raise AssertionError(f"no syslog message matching {until!r}: {got}")


def title(pid):
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().split(b"\0")[0].decode()


def test_empty_maillog_file_logs_to_syslog_mail_facility(make_server, tmpbase):
    kp = make_server(start=False, maillog_file="")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        start_in_namespace(kp, private_dev(tmpbase, sock))
        send(kp, "bob@example.org", "alice@example.org")
        got = datagrams(sock, r"keypost/local\[\d+\]: \w+: to=<alice@example\.org>.*status=sent")
        stamp = r"[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d"
        # <22> is mail.info, <20> mail.warning; glibc adds the time stamp.
        connect = [re.match(rf"<22>{stamp} keypost/smtpd\[(\d+)\]: connect from "
                            rf"unknown\[127\.0\.0\.1\]:\d+ session=S[0-9A-F]+$", d) for d in got]
        pids = {int(m.group(1)) for m in connect if m}
        assert pids, got
        for pid in pids:  # the pid is that of a running smtpd worker
            assert title(pid) == f"keypost: smtpd -c {kp.config}"
        assert any(re.match(rf"<20>{stamp} keypost/master\[{kp.proc.pid}\]: warning: "
                            r"local_recipient_maps is empty", d) for d in got), got
        assert any(re.match(rf"<22>{stamp} keypost/smtpd\[\d+\]: [0-9A-F]+: client=", d)
                   for d in got), got
    finally:
        assert kp.stop() == 0
        sock.close()
    assert not os.path.exists(kp.logfile)
    # Not a terminal: the lines went to syslog only.
    assert "connect from" not in open(os.path.join(kp.base, "stderr")).read()


def test_syslog_lines_are_shown_on_a_terminal(make_server, tmpbase):
    """serve run by hand: the lines also reach the operator's terminal, in
    the file form."""
    kp = make_server(start=False, maillog_file="")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    term, term_slave = pty.openpty()
    try:
        start_in_namespace(kp, private_dev(tmpbase, sock), stderr=term_slave)
        os.close(term_slave)
        send(kp, "bob@example.org", "alice@example.org")
        datagrams(sock, r"keypost/local\[\d+\]: \w+: to=<alice@example\.org>")
        shown = b""
        deadline = time.time() + 10
        while b"status=sent" not in shown and time.time() < deadline:
            if select.select([term], [], [], 0.2)[0]:
                shown += os.read(term, 65536)
        assert re.search(rb"(?m)^[A-Z][a-z]{2} \d\d \d\d:\d\d:\d\d mx\.keypost\.test "
                         rb"keypost/local\[\d+\]: \w+: to=<alice@example\.org>.*status=sent",
                         shown), shown
    finally:
        assert kp.stop() == 0
        sock.close()
        os.close(term)


def test_empty_maillog_file_without_dev_log_says_so(make_server, tmpbase):
    kp = make_server(start=False, maillog_file="")
    start_in_namespace(kp, private_dev(tmpbase, None))
    try:
        send(kp, "bob@example.org", "alice@example.org")
        kp.wait_delivered("alice@example.org")
    finally:
        assert kp.stop() == 0
    out = kp.output()
    warning = ("keypost: warning: maillog_file is empty and /dev/log is missing or not "
               "writable: log lines are lost; set maillog_file = /dev/stderr or a file")
    assert out.count(warning) == 1, out


# ---- reopening maillog_file ---------------------------------------------------


def qid_of(kp, rcpt):
    m = kp.wait_log(rf"(?m)^.*: ([0-9A-F]+): to=<{re.escape(rcpt)}>.*status=sent")
    return m.group(1)


@pytest.mark.parametrize("sig", [signal.SIGUSR1, signal.SIGHUP], ids=["USR1", "HUP"])
def test_signal_reopens_renamed_maillog_file(make_server, sig):
    kp = make_server()
    send(kp, "bob@example.org", "alice@example.org")
    first = qid_of(kp, "alice@example.org")
    old = kp.logfile + ".1"
    os.rename(kp.logfile, old)
    kp.signal(sig)
    kp.wait_log(r"keypost/master\[\d+\]: maillog_file reopened")  # in the new file
    size = os.path.getsize(old)
    send(kp, "bob@example.org", "carol@example.org")
    second = qid_of(kp, "carol@example.org")
    assert kp.stop() == 0
    new_text, old_text = kp.log(), open(old).read()
    assert os.path.getsize(old) == size, old_text[size:]
    assert first in old_text and second not in old_text
    for line in (r"keypost/smtpd\[\d+\]: connect from unknown", rf"{second}: client=",
                 rf"keypost/local\[\d+\]: {second}: to=<carol@example\.org>",
                 r"keypost/master\[\d+\]: stopped"):
        assert re.search(line, new_text), (line, new_text)
    assert first not in new_text
    assert "warning" not in new_text, new_text  # the writer took the file in time


def test_reload_keeps_the_log_where_it_was(make_server):
    kp = make_server()
    other = kp.logfile + ".elsewhere"
    kp.params.update(maillog_file=other, syslog_name="other")
    kp.write_config()
    kp.signal(signal.SIGHUP)
    kp.wait_log(rf"warning: reload: maillog_file changed; the log stays "
                rf"{re.escape(kp.logfile)} until keypost is restarted")
    kp.wait_log(r"keypost/master\[\d+\]: warning: reload: syslog_name and syslog_facility "
                r"stay keypost and mail until keypost is restarted")
    send(kp, "bob@example.org", "alice@example.org")
    qid_of(kp, "alice@example.org")
    assert not os.path.exists(other)


def test_logrotate_example_rotates_and_keypost_follows(make_server, tmpbase):
    """The shipped logrotate file, with this test's paths in it."""
    kp = make_server()
    send(kp, "bob@example.org", "alice@example.org")
    first = qid_of(kp, "alice@example.org")
    text = open(os.path.join(ROOT, "contrib", "logrotate", "keypost")).read()
    assert "/var/log/keypost.log {" in text and r"/etc/keypost/keypost\.cf$" in text
    text = text.replace("/var/log/keypost.log", kp.logfile)
    text = text.replace(r"/etc/keypost/keypost\.cf", re.escape(kp.config))
    conf = os.path.join(tmpbase, "logrotate.conf")
    with open(conf, "w") as f:
        f.write(text)
    r = subprocess.run(["logrotate", "-f", "-s", os.path.join(tmpbase, "state"), conf],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    kp.wait_log(r"maillog_file reopened")
    send(kp, "bob@example.org", "carol@example.org")
    second = qid_of(kp, "carol@example.org")
    assert kp.stop() == 0
    rotated = open(kp.logfile + ".1").read()  # delaycompress: not yet compressed
    assert first in rotated and second not in rotated
    assert second in kp.log() and first not in kp.log()


# ---- process titles ------------------------------------------------------------


def children(pid):
    out = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(rest[1]) == pid and rest[0] != "Z":
            out.append(int(p))
    return out


def test_ps_shows_each_process_role(make_server):
    hang = socket.socket()  # a next hop that takes the connection, never greets
    hang.bind(("127.0.0.1", 0))
    hang.listen(5)
    port = hang.getsockname()[1]
    kp = make_server(transport_maps=f"inline:{{ slow.test=smtp:[127.0.0.1]:{port} }}",
                     smtpd_worker_processes="2")
    try:
        send(kp, "bob@example.org", "x@slow.test")
        suffix = f" -c {kp.config}"
        master = kp.proc.pid
        assert title(master) == "keypost: master" + suffix
        kids = {p: title(p) for p in children(master)}
        assert sorted(kids.values()) == sorted(
            [f"keypost: {r}{suffix}" for r in ("postlogd", "qmgr", "smtpd", "smtpd")]), kids
        for p, t in kids.items():  # top shows the thread name
            role = t.split()[1]
            assert open(f"/proc/{p}/comm").read().strip() == f"keypost-{role}"[:15]
            # The log writer too runs as mail_owner: only the master is root.
            uid = [ln.split()[1] for ln in open(f"/proc/{p}/status") if ln.startswith("Uid:")]
            assert uid != ["0"], (t, uid)
        qmgr = [p for p, t in kids.items() if t.startswith("keypost: qmgr")][0]
        busy = []
        wait_until(lambda: busy.extend(p for p in children(qmgr)
                                       if title(p) == "keypost: deliver smtp" + suffix)
                   or busy, 10, "a delivery agent titled 'deliver smtp'")
    finally:
        hang.close()  # resets the waiting connection: the delivery defers
    kp.wait_log(r"to=<x@slow\.test>.*status=deferred")


def test_a_killed_log_writer_is_replaced_and_no_line_is_lost(make_server):
    """The master holds the pipe open: lines written while no writer runs
    wait in it for the next one."""
    kp = make_server()
    writer = [p for p in children(kp.proc.pid) if title(p).startswith("keypost: postlogd ")]
    assert len(writer) == 1
    os.kill(writer[0], signal.SIGKILL)
    send(kp, "bob@example.org", "alice@example.org")  # while the writer may be gone
    qid = qid_of(kp, "alice@example.org")
    kp.wait_log(rf"{qid}: client=")
    kp.wait_log(r"postlogd process \d+ was killed by signal 9")
    assert [p for p in children(kp.proc.pid)
            if title(p).startswith("keypost: postlogd ") and p != writer[0]]


# ---- syslog_name and syslog_facility -------------------------------------------


def test_check_refuses_a_bad_syslog_name_or_facility(tmpbase):
    cf = os.path.join(tmpbase, "check.cf")
    with open(cf, "w") as f:
        f.write(f"queue_directory = {tmpbase}/q\nsmtpd_listen = 127.0.0.1:2525\n"
                "local_recipient_maps = inline:{ postmaster=1 }\n"
                "syslog_name = key post\nsyslog_facility = kern\n")
    r = subprocess.run([KEYPOST, "check", "-c", cf], capture_output=True, text=True)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"{cf}:4: bad value for syslog_name: \"key post\"" in r.stderr, r.stderr
    assert f"{cf}:5:" in r.stderr and "syslog_facility" in r.stderr, r.stderr


def test_syslog_name_and_facility(make_server, tmpbase):
    """syslog_name = postfix-keypost: Postfix's multi-instance form, which
    fail2ban's stock postfix filter matches as it stands."""
    kp = make_server(start=False, maillog_file="", syslog_name="postfix-keypost",
                     syslog_facility="local3", mynetworks="127.0.0.1/32")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        start_in_namespace(kp, private_dev(tmpbase, sock))
        refused_rcpt(kp, "127.0.0.2", "someone@elsewhere.test")
        got = datagrams(sock, r"Relay access denied")
    finally:
        assert kp.stop() == 0
        sock.close()
    # local3 is facility 19: info is <158>, warning <156>
    reject = [d for d in got if "Relay access denied" in d]
    assert re.match(r"<158>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d postfix-keypost/smtpd\[\d+\]: "
                    r"NOQUEUE: reject: RCPT from unknown\[127\.0\.0\.2\]: 554 5\.7\.1 ",
                    reject[0]), got
    assert any(d.startswith("<156>") and "postfix-keypost/master[" in d for d in got), got
    # The same line in a file, as rsyslog writes it: the stock filter bans.
    line = re.sub(r"^<\d+>", "", reject[0]).replace(" postfix-keypost/", " mx postfix-keypost/")
    assert fail2ban_ips([line], tmpbase, "postfix") == ["127.0.0.2"]


def test_fail2ban_many_errors_jail_sees_the_client(make_server, tmpbase):
    """postfix-many-errors (mode=errors) wants the line to end with the
    client: that line alone carries no session id."""
    kp = make_server(smtpd_hard_error_limit="3")
    s = client(kp, "127.0.0.9")
    codes = [s.docmd("BOGUS")[0] for _ in range(3)] + [s.getreply()[0]]
    s.close()
    assert codes == [502, 502, 502, 421], codes
    kp.wait_log(r"(?m)too many errors after UNKNOWN from unknown\[127\.0\.0\.9\]$")
    flt = readme_jail_filter().replace("postfix[", "postfix[mode=errors, ")
    assert fail2ban_ips(kp.log().splitlines(), tmpbase, flt) == ["127.0.0.9"]
