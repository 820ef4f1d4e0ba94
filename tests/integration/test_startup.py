"""Start-up and supervision: paths mail_owner cannot use are refused by
`keypost check` and `keypost serve` instead of failing one message at a
time; a child that keeps failing is restarted with a growing delay while
SIGTERM still stops the master at once; the descriptor limit is raised to
what smtpd_session_limit needs, or serve refuses to start."""
import os
import pwd
import re
import signal
import subprocess
import time

import pytest

import kptest
from kptest import KEYPOST, Keypost
from test_lifecycle import children, roles, wait_until

MAIL_OWNER = "keypost"  # the default mail_owner; the tests run as root


def errors(r):
    """The error lines of `keypost check` (warnings, such as the one about
    an empty local_recipient_maps, are not what these tests are about)."""
    return [line for line in r.stderr.splitlines() if not line.startswith("warning:")]


def locked_dir(base, name="locked"):
    """A directory only root can enter, as in the report: 0700 root."""
    d = os.path.join(base, name)
    os.mkdir(d)
    os.chmod(d, 0o700)
    return d


def check(kp):
    kp.write_config()
    return subprocess.run([KEYPOST, "check", "-c", kp.config], capture_output=True, text=True)


def config_line(kp, name):
    """FILE:LINE of a parameter in the configuration Keypost writes."""
    return f"{kp.config}:{list(kp.params).index(name) + 1}"


def refused_start(kp):
    """Start serve, which must exit by itself at once; its exit status."""
    t0 = time.time()
    try:
        kp.start()
    except RuntimeError as e:
        assert "keypost exited" in str(e), e
    else:
        kp.stop()
        raise AssertionError("keypost started:\n" + kp.output())
    rc = kp.proc.wait(timeout=10)
    kp.stderr.close()
    assert time.time() - t0 < 10
    kp.check_sanitizers()
    return rc


# ---- paths mail_owner must use ------------------------------------------------

def test_check_refuses_queue_mail_owner_cannot_enter(tmpbase):
    locked = locked_dir(tmpbase)
    queue = os.path.join(locked, "queue")
    kp = Keypost(tmpbase, queue_directory=queue)
    r = check(kp)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "configuration OK" not in r.stdout
    want = (f"{config_line(kp, 'queue_directory')}: queue_directory {queue}: "
            f"mail_owner {MAIL_OWNER} cannot search {locked}: Permission denied")
    assert errors(r) == [want], r.stderr


def test_serve_refuses_queue_mail_owner_cannot_enter(tmpbase):
    locked = locked_dir(tmpbase)
    queue = os.path.join(locked, "queue")
    kp = Keypost(tmpbase, queue_directory=queue)
    assert refused_start(kp) == 2
    out = kp.output()
    assert (f"error: {config_line(kp, 'queue_directory')}: queue_directory {queue}: "
            f"mail_owner {MAIL_OWNER} cannot search {locked}: Permission denied") in out, out
    # Refused before anything was made or bound: no queue, no 451 state.
    assert not os.path.exists(queue)
    assert "started:" not in out and "restarting" not in out, out


def test_maildir_base_mail_owner_cannot_enter(tmpbase):
    locked = locked_dir(tmpbase)
    mail = os.path.join(locked, "mail")
    kp = Keypost(tmpbase, local_transport=f"maildir:{mail}")
    msg = (f"{config_line(kp, 'local_transport')}: local_transport maildir:{mail}: "
           f"mail_owner {MAIL_OWNER} cannot search {locked}: Permission denied")
    r = check(kp)
    assert r.returncode == 1 and errors(r) == [msg], r.stderr
    assert refused_start(kp) == 2
    assert f"error: {msg}" in kp.output()
    assert not os.path.exists(mail)


def test_check_names_each_unusable_path_and_only_those(tmpbase):
    """A queue directory root owns is fine (serve gives it to mail_owner),
    so is a TLS policy table only root can read (the master opens it before
    the drop), and so is a transport_maps Maildir that does not exist yet
    (serve makes it, as local_transport's); one below a directory mail_owner
    cannot search is not."""
    queue = os.path.join(tmpbase, "queue")
    os.mkdir(queue)
    os.chmod(queue, 0o755)
    policy = os.path.join(tmpbase, "tls_policy")
    with open(policy, "w") as f:
        f.write("[127.0.0.1]:2525 encrypt\n")
    os.chmod(policy, 0o600)
    locked = locked_dir(tmpbase)
    hidden = os.path.join(locked, "far")
    fresh = os.path.join(tmpbase, "near")
    kp = Keypost(tmpbase, transport_maps=f"inline:{{ far.test=maildir:{hidden}, "
                                         f"near.test=maildir:{fresh} }}",
                 smtp_tls_policy_maps=f"texthash:{policy}")
    r = check(kp)
    assert r.returncode == 1, r.stdout + r.stderr
    assert errors(r) == [
        f"{config_line(kp, 'transport_maps')}: transport_maps maildir:{hidden}: "
        f"mail_owner {MAIL_OWNER} cannot search {locked}: Permission denied",
    ], r.stderr
    # Fixed, the same configuration passes, serve starts and makes the bases.
    os.chmod(locked, 0o755)
    r = check(kp)
    assert r.returncode == 0 and "configuration OK" in r.stdout, r.stderr
    kp.start()
    for base in (hidden, fresh):
        assert os.stat(base).st_uid == owner_ids()[0], base
    assert kp.stop() == 0
    kp.check_sanitizers()


def owner_ids():
    pw = pwd.getpwnam(MAIL_OWNER)
    return pw.pw_uid, pw.pw_gid


def run_as(user, *args):
    return subprocess.run(["runuser", "-u", user, "--", KEYPOST, *args],
                          capture_output=True, text=True)


def test_check_without_root(tmpbase):
    """Not root: as mail_owner the test still runs; as anybody else it is
    skipped with a warning that says so, never silently."""
    locked = locked_dir(tmpbase)
    kp = Keypost(tmpbase, queue_directory=os.path.join(locked, "queue"))
    kp.write_config()
    os.chmod(kp.config, 0o644)
    r = run_as(MAIL_OWNER, "check", "-c", kp.config)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"mail_owner {MAIL_OWNER} cannot search {locked}: Permission denied" in r.stderr
    r = run_as("nobody", "check", "-c", kp.config)
    assert r.returncode == 0 and "configuration OK" in r.stdout, r.stderr
    assert re.search(rf"warning: .*mail_owner {MAIL_OWNER}: access check skipped: "
                     r"only root can test", r.stderr), r.stderr


def test_reload_refuses_a_path_mail_owner_cannot_use(tmpbase):
    """SIGHUP re-reads the configuration: a new Maildir target mail_owner
    cannot use is refused like any other error, and the old configuration
    keeps running."""
    kp = Keypost(tmpbase)
    kp.start()
    try:
        locked = locked_dir(tmpbase)
        target = os.path.join(locked, "far")
        kp.params["transport_maps"] = f"inline:{{ far.test=maildir:{target} }}"
        kp.write_config()
        kp.signal(signal.SIGHUP)
        kp.wait_log(r"reload refused")
        assert (f"reload: {config_line(kp, 'transport_maps')}: transport_maps "
                f"maildir:{target}: mail_owner {MAIL_OWNER} cannot search {locked}: "
                "Permission denied") in kp.log(), kp.log()
    finally:
        assert kp.stop() == 0, kp.output()
    kp.check_sanitizers()


# ---- a child that keeps failing ---------------------------------------------

RESTART = (r"qmgr process (\d+) (exited with status 2|was killed by signal 9[^;]*); "
           r"restarting in (\d+)s")


def restarts(kp, seen):
    """(time first seen, delay) of each qmgr restart line. The log's time
    stamps have Postfix's whole seconds, too coarse for 1 s delays: the
    lines are timed as they appear (seen keeps the times between calls)."""
    now = time.time()
    for line in kp.log().splitlines():
        m = re.search(RESTART, line)
        if m and line not in seen:
            seen[line] = (now, int(m.group(3)))
    return sorted(seen.values())


def test_failing_qmgr_restarts_with_growing_delay_and_sigterm_is_prompt(tmpbase):
    kp = Keypost(tmpbase)
    kp.start()
    mode = os.stat(kp.queue).st_mode & 0o7777
    try:
        qmgr, _ = wait_until(lambda: (r := roles(kp)) and len(r[0]) == 1 and r,
                             what="one qmgr")
        # From now on no queue manager can bind QUEUE/qmgr.sock.
        os.chmod(kp.queue, 0o555)
        os.kill(qmgr[0], signal.SIGKILL)
        times = {}
        wait_until(lambda: len(restarts(kp, times)) >= 4, timeout=15, interval=0.02,
                   what="four restarts")
        seen = restarts(kp, times)
        assert [d for _, d in seen[:4]] == [1, 2, 4, 8], kp.log()
        # Each restart came after the delay the one before announced.
        for (t0, d0), (t1, _) in zip(seen, seen[1:4]):
            assert t1 - t0 >= d0 - 0.2, kp.log()
        assert "exited with status 2" in kp.log()
        # Now in an 8 s backoff wait: SIGTERM must stop everything at once.
        t0 = time.time()
        kp.proc.send_signal(signal.SIGTERM)
        rc = kp.proc.wait(timeout=5)
        assert time.time() - t0 < 3, kp.log()
        assert rc == 0, kp.output()
        assert "stopped" in kp.log()
    finally:
        os.chmod(kp.queue, mode)
        kp.stop()
    kp.check_sanitizers()


# ---- the descriptor limit -----------------------------------------------------

@pytest.fixture
def under_prlimit(tmpbase, monkeypatch):
    """Run serve under prlimit --nofile=SOFT:HARD (as a service manager
    would set it) by pointing kptest at a wrapper."""
    def use(soft, hard):
        wrapper = os.path.join(tmpbase, f"prlimit-{soft}-{hard}")
        with open(wrapper, "w") as f:
            f.write(f"#!/bin/sh\nexec prlimit --nofile={soft}:{hard} {KEYPOST} \"$@\"\n")
        os.chmod(wrapper, 0o755)
        monkeypatch.setattr(kptest, "KEYPOST", wrapper)
    return use


def soft_nofile(pid):
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                return int(line.split()[3])
    raise AssertionError("no Max open files line")


def test_hard_limit_below_need_refuses_to_start(tmpbase, under_prlimit):
    under_prlimit(256, 256)
    os.mkdir(os.path.join(tmpbase, "default"))
    kp = Keypost(os.path.join(tmpbase, "default"))
    assert refused_start(kp) == 2
    assert ("the descriptor limit (hard 256) is below the 8064 that smtpd_session_limit = 4000 "
            "needs; raise the limit (ulimit -n, LimitNOFILE=) or lower smtpd_session_limit"
            in kp.output()), kp.output()
    assert "started:" not in kp.output()
    # Under the same limit, a session limit that fits (2 * 50 + 64) starts.
    os.mkdir(os.path.join(tmpbase, "fits"))
    kp = Keypost(os.path.join(tmpbase, "fits"), smtpd_session_limit=50)
    kp.start()
    try:
        # qmgr, two smtpd workers and the log writer
        kids = wait_until(lambda: len(children(kp.proc.pid)) == 4 and children(kp.proc.pid),
                          what="four children")
        assert all(soft_nofile(pid) == 256 for pid in kids)
    finally:
        assert kp.stop() == 0, kp.output()
    kp.check_sanitizers()


def test_soft_limit_is_raised_for_the_workers(tmpbase, under_prlimit):
    under_prlimit(256, 20000)
    kp = Keypost(tmpbase)
    kp.start()
    try:
        qmgr, smtpd = wait_until(lambda: (r := roles(kp)) and len(r[0]) == 1 and
                                 len(r[1]) == 2 and r, what="qmgr and two workers")
        for pid in smtpd + qmgr:
            assert soft_nofile(pid) == 2 * 4000 + 64, pid
    finally:
        assert kp.stop() == 0, kp.output()
    kp.check_sanitizers()
