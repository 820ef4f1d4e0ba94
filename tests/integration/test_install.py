"""`make install` and `make uninstall` into a staging root (DESTDIR), file by
file; the installed manual pages read with man(1); the installed systemd unit
checked by systemd-analyze and its ExecStart line run with the unit's
capability bounding set and NoNewPrivileges (setpriv), with NOTIFY_SOCKET on
a datagram socket of the test: READY=1 when the port accepts, RELOADING=1
and READY=1 around a SIGHUP reload, STOPPING=1 on SIGTERM."""
import glob
import os
import pwd
import re
import shlex
import signal
import smtplib
import socket
import stat
import subprocess
import time

import pytest

import kptest
from kptest import KEYPOST, ROOT, Keypost, free_port, make_tmpdir

BUILD = os.path.dirname(os.path.abspath(KEYPOST))
UNIT = "lib/systemd/system/keypost.service"
SPOOL = "var/spool/keypost"
QUEUE_SUBDIRS = ["tmp", "active", "hold", "state"]
VMAIL_UID = 5000

# Every file and directory `make install DESTDIR=...` makes (PREFIX=/usr):
# path -> (kind, mode).
INSTALLED = {
    "usr/sbin/keypost": ("f", 0o755),
    "usr/share/man/man8/keypost.8": ("f", 0o644),
    "usr/share/man/man5/keypost.cf.5": ("f", 0o644),
    UNIT: ("f", 0o644),
    "etc/keypost/keypost.cf": ("f", 0o644),
    "etc/keypost/keypost.cf.example": ("f", 0o644),
    "usr/share/doc/keypost/examples/certbot-deploy-hook": ("f", 0o755),
    SPOOL: ("d", 0o700),
    **{f"{SPOOL}/{d}": ("d", 0o700) for d in QUEUE_SUBDIRS},
}


def make(*args, check=True):
    r = subprocess.run(["make", "-s", "-C", ROOT, f"BUILD={BUILD}", *args],
                       capture_output=True, text=True)
    if check:
        assert r.returncode == 0, r.stdout + r.stderr
    return r


def install(destdir, *args):
    return make("install", f"DESTDIR={destdir}", *args)


def tree(root):
    """Every file, link and directory below root, as relative paths."""
    out = set()
    for d, dirs, files in os.walk(root):
        for name in dirs + files:
            out.add(os.path.relpath(os.path.join(d, name), root))
    return out


def parents(paths):
    """The directories that lead to paths."""
    out = set()
    for p in paths:
        while "/" in p:
            p = p.rsplit("/", 1)[0]
            out.add(p)
    return out


@pytest.fixture
def destdir():
    d = make_tmpdir("kp-destdir-")
    yield d
    subprocess.run(["rm", "-rf", d])


# ---- files --------------------------------------------------------------------

def test_install_puts_each_file_in_place_with_its_mode(destdir):
    r = install(destdir)
    # Not the build machine's /etc/passwd: what to do on the target is printed.
    assert "the user keypost was not created" in r.stdout, r.stdout
    assert "useradd --system --user-group" in r.stdout
    want = set(INSTALLED)
    assert tree(destdir) == want | parents(want), sorted(tree(destdir) ^ (want | parents(want)))
    for path, (kind, mode) in INSTALLED.items():
        st = os.lstat(os.path.join(destdir, path))
        assert (stat.S_ISDIR(st.st_mode) if kind == "d" else stat.S_ISREG(st.st_mode)), path
        assert stat.S_IMODE(st.st_mode) == mode, f"{path}: {oct(stat.S_IMODE(st.st_mode))}"
    for d in parents(want) - want:
        assert stat.S_IMODE(os.stat(os.path.join(destdir, d)).st_mode) == 0o755, d
    same = {"usr/sbin/keypost": KEYPOST, "etc/keypost/keypost.cf": "etc/keypost.cf",
            "etc/keypost/keypost.cf.example": "etc/keypost.cf",
            "usr/share/man/man8/keypost.8": "man/keypost.8",
            "usr/share/doc/keypost/examples/certbot-deploy-hook": "contrib/certbot-deploy-hook"}
    for path, src in same.items():
        with open(os.path.join(destdir, path), "rb") as a, \
                open(os.path.join(ROOT, src), "rb") as b:
            assert a.read() == b.read(), path


def test_installed_example_configuration_passes_check(destdir):
    install(destdir)
    conf = os.path.join(destdir, "etc/keypost/keypost.cf")
    r = subprocess.run([KEYPOST, "check", "-c", conf], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout == "configuration OK\n", r.stdout + r.stderr
    # It changes nothing, so the documentation's defaults are what runs.
    r = subprocess.run([KEYPOST, "conf", "-n", "-c", conf], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout == "", r.stdout + r.stderr
    # Every commented "#name = value" line names a parameter keypost knows.
    names = re.findall(r"^#([a-z_A-Z]+) = ", open(conf).read(), re.M)
    assert len(names) >= 15
    known = subprocess.run([KEYPOST, "conf", "-d", *names], capture_output=True, text=True)
    assert known.returncode == 0, known.stderr


def test_install_never_overwrites_the_configuration(destdir):
    install(destdir)
    conf = os.path.join(destdir, "etc/keypost/keypost.cf")
    with open(conf, "w") as f:
        f.write("myhostname = mx.example.com\n")
    r = install(destdir)
    assert f"keeping the existing {conf}" in r.stdout, r.stdout
    assert open(conf).read() == "myhostname = mx.example.com\n"
    # The example is the current one all the same.
    assert open(conf + ".example").read() == open(os.path.join(ROOT, "etc/keypost.cf")).read()


def test_install_with_prefix_and_sysconfdir(destdir):
    install(destdir, "PREFIX=/usr/local", "SYSCONFDIR=/usr/local/etc")
    for path in ["usr/local/sbin/keypost", "usr/local/share/man/man8/keypost.8",
                 "usr/local/share/man/man5/keypost.cf.5", "usr/local/etc/keypost/keypost.cf",
                 "usr/local/lib/systemd/system/keypost.service", SPOOL]:
        assert os.path.exists(os.path.join(destdir, path)), path
    assert not os.path.exists(os.path.join(destdir, "usr/sbin"))
    unit = open(os.path.join(destdir, "usr/local/lib/systemd/system/keypost.service")).read()
    assert re.search(r"^ExecStart=/usr/local/sbin/keypost serve -c "
                     r"/usr/local/etc/keypost/keypost.cf$", unit, re.M), unit
    make("uninstall", f"DESTDIR={destdir}", "PREFIX=/usr/local", "SYSCONFDIR=/usr/local/etc")
    assert not os.path.exists(os.path.join(destdir, "usr/local/sbin/keypost"))


def test_uninstall_removes_what_install_put_but_not_config_or_queue(destdir):
    install(destdir)
    # A message still in the queue must survive.
    msg = os.path.join(destdir, SPOOL, "active", "6B0430310C21F629")
    with open(msg, "w") as f:
        f.write("KEYPOST-QUEUE 1\n")
    r = make("uninstall", f"DESTDIR={destdir}")
    assert "kept" in r.stdout and "the queue" in r.stdout, r.stdout
    files = {p for p in tree(destdir) if not os.path.isdir(os.path.join(destdir, p))}
    assert files == {"etc/keypost/keypost.cf", f"{SPOOL}/active/6B0430310C21F629"}, files
    for d in QUEUE_SUBDIRS:
        assert os.path.isdir(os.path.join(destdir, SPOOL, d)), d


def test_sendmail_links_are_opt_in_and_never_replace_another_mta(destdir):
    install(destdir)
    assert not os.path.lexists(os.path.join(destdir, "usr/sbin/sendmail"))
    install(destdir, "SENDMAIL_LINKS=yes")
    for link in ["usr/sbin/sendmail", "usr/bin/mailq", "usr/bin/newaliases"]:
        path = os.path.join(destdir, link)
        assert os.path.islink(path) and os.readlink(path) == "/usr/sbin/keypost", link
    install(destdir, "SENDMAIL_LINKS=yes")  # again: its own links are fine
    make("uninstall", f"DESTDIR={destdir}")
    for link in ["usr/sbin/sendmail", "usr/bin/mailq", "usr/bin/newaliases"]:
        assert not os.path.lexists(os.path.join(destdir, link)), link

    # Another MTA's sendmail stays, install says why it stops, uninstall
    # leaves the other MTA's file alone.
    other = os.path.join(destdir, "usr/sbin/sendmail")
    with open(other, "w") as f:
        f.write("#!/bin/sh\n# postfix\n")
    r = make("install", f"DESTDIR={destdir}", "SENDMAIL_LINKS=yes", check=False)
    assert r.returncode != 0
    assert f"{other} exists and is not keypost's" in r.stderr, r.stderr
    make("uninstall", f"DESTDIR={destdir}")
    assert open(other).read() == "#!/bin/sh\n# postfix\n"


# ---- manual pages -------------------------------------------------------------

def man(page, **env):
    e = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8", **env)
    r = subprocess.run(["man", "--warnings", *page], capture_output=True, text=True, env=e)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    return re.sub(r".\x08", "", r.stdout)


def test_installed_manual_pages_render_without_warnings(destdir):
    install(destdir)
    mandir = os.path.join(destdir, "usr/share/man")
    k8 = man(["-l", os.path.join(mandir, "man8/keypost.8")])
    k5 = man(["-l", os.path.join(mandir, "man5/keypost.cf.5")])
    for section in ["SYNOPSIS", "COMMANDS", "SIGNALS", "FILES", "EXIT STATUS", "ENVIRONMENT"]:
        assert re.search(rf"^{section}$", k8, re.M), section
    for section in ["DESCRIPTION", "PARAMETERS", "FILES"]:
        assert re.search(rf"^{section}$", k5, re.M), section
    # As `man keypost.cf` finds them on the target.
    assert "PARAMETERS" in man(["keypost.cf"], MANPATH=mandir)
    assert "SIGHUP" in man(["8", "keypost"], MANPATH=mandir)


def test_keypost_8_documents_every_command_of_the_usage():
    r = subprocess.run([KEYPOST], capture_output=True, text=True)
    commands = set(re.findall(r"keypost (\w+)", r.stderr))
    assert {"serve", "check", "conf", "fingerprint", "queue", "map"} <= commands
    page = open(os.path.join(ROOT, "man/keypost.8")).read()
    for c in commands:
        assert re.search(rf"^\.B keypost {c}\b", page, re.M), c
        assert re.search(rf"^\.TP\n\.B {c}\b", page, re.M), c
    for sig in ["SIGHUP", "SIGTERM"]:
        assert re.search(rf"^\.B.* {sig}\b|^\.B {sig}$", page, re.M), sig
    for status in ["0", "1", "2"]:
        assert re.search(rf"^\.TP\n\.B {status}\n", page, re.M), status


def test_keypost_cf_5_documents_every_parameter_conf_prints(destdir):
    install(destdir)
    page = open(os.path.join(destdir, "usr/share/man/man5/keypost.cf.5")).read()
    assert "@PARAMETERS@" not in page
    # The generated section, whole, in place of the marker.
    generated = subprocess.run([KEYPOST, "conf", "--man"], capture_output=True,
                               text=True).stdout
    assert generated and generated in page
    names = [line.split(" =")[0] for line in
             subprocess.run([KEYPOST, "conf", "-d"], capture_output=True,
                            text=True).stdout.splitlines()]
    assert len(names) > 100
    text = man(["-l", os.path.join(destdir, "usr/share/man/man5/keypost.cf.5")])
    for name in names:
        assert f"\n.TP\n.B {name}\n" in page, name
        assert re.search(rf"^       {re.escape(name)}$", text, re.M), name


# ---- the systemd unit -------------------------------------------------------------

def unit_service(destdir):
    """The [Service] section of the installed unit as name -> [values]."""
    out = {}
    section = None
    for line in open(os.path.join(destdir, UNIT)).read().splitlines():
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            out.setdefault(k, []).append(v)
    return out


def test_unit_passes_systemd_analyze_verify(destdir):
    install(destdir)
    svc = unit_service(destdir)
    assert svc["Type"] == ["notify"]
    assert svc["ExecStart"] == ["/usr/sbin/keypost serve -c /etc/keypost/keypost.cf"]
    assert svc["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    for key, value in [("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"),
                       ("ProtectHome", "yes"), ("PrivateTmp", "yes"),
                       ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
                       ("ReadWritePaths", "/var/spool/keypost -/var/mail")]:
        assert svc[key] == [value], key
    assert "CAP_NET_BIND_SERVICE" in svc["CapabilityBoundingSet"][0].split()
    # systemd-analyze checks that ExecStart exists: point it at the staged
    # binary; the Documentation= pages are looked up in the staged manual.
    copy = os.path.join(destdir, "keypost.service")
    text = open(os.path.join(destdir, UNIT)).read()
    with open(copy, "w") as f:
        f.write(text.replace("ExecStart=/usr/sbin/", f"ExecStart={destdir}/usr/sbin/"))
    env = dict(os.environ, MANPATH=os.path.join(destdir, "usr/share/man"))
    r = subprocess.run(["systemd-analyze", "verify", copy], capture_output=True, text=True,
                       env=env)
    assert r.returncode == 0 and r.stdout + r.stderr == "", r.stdout + r.stderr
    # ... and it does complain about a unit it cannot read, so silence means something.
    with open(copy, "a") as f:
        f.write("ProtectSytem=strict\n")
    r = subprocess.run(["systemd-analyze", "verify", copy], capture_output=True, text=True,
                       env=env)
    assert "ProtectSytem" in r.stderr


class Notify:
    """The service manager's end: a datagram socket at a path or @abstract."""

    def __init__(self, base, abstract):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            self.name = f"@kp-notify-{os.getpid()}-{time.monotonic_ns()}"
            self.sock.bind("\0" + self.name[1:])
        else:
            self.name = os.path.join(base, "notify")
            self.sock.bind(self.name)
        self.messages = []

    def next(self, kp, timeout=15):
        """The next message; fails at once, with the log, if keypost exits."""
        deadline = time.monotonic() + timeout
        self.sock.settimeout(0.2)
        while True:
            try:
                data = self.sock.recv(4096).decode()
                break
            except socket.timeout:
                assert kp.proc.poll() is None, f"keypost exited ({kp.proc.returncode}):\n" + \
                    kp.output()
                assert time.monotonic() < deadline, "no notification; log:\n" + kp.output()
        fields = dict(line.split("=", 1) for line in data.split("\n") if line)
        self.messages.append(fields)
        return fields

    def close(self):
        self.sock.close()


def unit_command(destdir, svc, conf):
    """ExecStart with the staged paths, run as the unit would run it:
    capability bounding set and NoNewPrivileges applied by setpriv."""
    argv = shlex.split(svc["ExecStart"][0])
    assert argv[1:3] == ["serve", "-c"]
    argv = [destdir + argv[0], "serve", "-c", conf]
    caps = svc["CapabilityBoundingSet"][0].split()
    bounding = "-all," + ",".join("+" + c[len("CAP_"):].lower() for c in caps)
    prefix = ["setpriv", f"--bounding-set={bounding}"]
    if svc.get("NoNewPrivileges") == ["yes"]:
        prefix.append("--no-new-privs")
    return prefix + argv


def greeting(addr, port):
    with socket.create_connection((addr, port), timeout=5) as s:
        return s.recv(512).decode()


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_unit_command_notifies_ready_reload_and_stop(destdir, abstract):
    install(destdir)
    svc = unit_service(destdir)
    base = make_tmpdir("kp-unit-")
    # Port 25 on an address of its own: binding it needs CAP_NET_BIND_SERVICE
    # from the bounding set, as on a real server.
    addr = f"127.{os.getpid() % 200 + 20}.{int(time.time()) % 250 + 1}.25"
    conf = os.path.join(destdir, "etc/keypost/keypost.cf")
    # A virtual mailbox too: the helper that keeps root writes it as its
    # owner (setfsuid) within the same bounding set.
    vmail = os.path.join(base, "vmail")
    os.mkdir(vmail)
    os.chown(vmail, VMAIL_UID, VMAIL_UID)
    os.chmod(vmail, 0o770)
    boxes = os.path.join(base, "vmailbox")
    with open(boxes, "w") as f:
        f.write("carol@virt.test virt.test/carol/\n")
    kp = Keypost(base, queue_directory=os.path.join(destdir, SPOOL),
                 smtpd_listen=f"{addr}:25", virtual_mailbox_domains="virt.test",
                 virtual_mailbox_base=vmail, virtual_mailbox_maps=f"texthash:{boxes}",
                 virtual_uid_maps=f"static:{VMAIL_UID}", virtual_gid_maps=f"static:{VMAIL_UID}")
    kp.config = conf
    kp.queue = os.path.join(destdir, SPOOL)
    kp.write_config()
    notify = Notify(base, abstract)
    try:
        kp.stderr = open(os.path.join(base, "stderr"), "w")
        env = dict(os.environ, NOTIFY_SOCKET=notify.name)
        kp.proc = subprocess.Popen(unit_command(destdir, svc, conf), env=env,
                                   stdout=kp.stderr, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        ready = notify.next(kp)
        # READY=1 comes when the port already takes connections.
        assert ready.get("READY") == "1", (ready, kp.output())
        assert greeting(addr, 25).startswith("220 mx.keypost.test ESMTP"), kp.output()
        assert ready.get("STATUS") == "accepting mail"

        # The installed queue works: serve gave it to mail_owner, and mail
        # goes through it.
        owner = pwd.getpwnam("keypost").pw_uid
        for d in ["", *QUEUE_SUBDIRS]:
            st = os.stat(os.path.join(destdir, SPOOL, d))
            assert st.st_uid == owner and stat.S_IMODE(st.st_mode) == 0o700, d
        with smtplib.SMTP(addr, 25, timeout=10) as s:
            s.sendmail("bob@remote.test", ["alice@example.org", "carol@virt.test"],
                       "Subject: t\r\n\r\nhi\r\n")
        kp.wait_delivered("alice@example.org")
        kp.wait_log(r"to=<carol@virt.test>.*status=sent")
        [box] = glob.glob(os.path.join(vmail, "virt.test/carol/new/*"))
        assert os.stat(box).st_uid == VMAIL_UID

        before = time.monotonic_ns() // 1000
        kp.signal(signal.SIGHUP)
        reloading = notify.next(kp)
        assert reloading.get("RELOADING") == "1", reloading
        stamp = int(reloading["MONOTONIC_USEC"])
        assert before <= stamp <= time.monotonic_ns() // 1000
        ready = notify.next(kp)
        assert ready.get("READY") == "1", ready
        assert ready["STATUS"] == "accepting mail; configuration reloaded"
        kp.wait_log(r"reload: configuration, certificates and tables re-read")
        assert greeting(addr, 25).startswith("220 ")

        # A broken file: systemd hears that the reload ended, and why.
        with open(conf, "a") as f:
            f.write("smtpd_timeout = -5s\n")
        kp.signal(signal.SIGHUP)
        assert notify.next(kp).get("RELOADING") == "1"
        ready = notify.next(kp)
        assert ready.get("READY") == "1", ready
        assert ready["STATUS"] == "accepting mail; reload refused, old configuration kept"
        assert greeting(addr, 25).startswith("220 ")

        kp.signal(signal.SIGTERM)
        stopping = notify.next(kp)
        assert stopping.get("STOPPING") == "1", stopping
        assert kp.proc.wait(timeout=30) == 0, kp.output()
        kp.stderr.close()
        kp.check_sanitizers()
        # Nothing failed for lack of a capability the unit does not grant.
        log = kp.output()
        assert "Operation not permitted" not in log and "restarting in" not in log, log
        assert [m for m in notify.messages if "READY" in m or "RELOADING" in m
                or "STOPPING" in m] == notify.messages
    finally:
        if kp.proc and kp.proc.poll() is None:
            kp.proc.kill()
            kp.proc.wait()
        if kp.proc:
            # What the master left behind when it failed (its own group only).
            try:
                os.killpg(kp.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        notify.close()
        subprocess.run(["rm", "-rf", base])


def test_bad_notify_socket_is_logged_and_mail_still_flows(make_server):
    kp = make_server(start=False)
    os.environ["NOTIFY_SOCKET"] = "/nonexistent/notify"
    try:
        kp.start()
    finally:
        del os.environ["NOTIFY_SOCKET"]
    kp.wait_log(r"cannot tell the service manager READY=1.*NOTIFY_SOCKET=/nonexistent/notify: "
                r"No such file or directory")
    with smtplib.SMTP("127.0.0.1", kp.smtp_port, timeout=10) as s:
        s.sendmail("bob@remote.test", ["alice@example.org"], "Subject: t\r\n\r\nhi\r\n")
    kp.wait_delivered("alice@example.org")


# ---- the certbot deploy hook --------------------------------------------------

def test_certbot_hook_reloads_only_for_keypost_certificates(tmpbase):
    fake = os.path.join(tmpbase, "bin")
    os.makedirs(fake)
    calls = os.path.join(tmpbase, "calls")
    for name in ["keypost", "systemctl"]:
        path = os.path.join(fake, name)
        with open(path, "w") as f:
            f.write(f'#!/bin/sh\necho "{name} $*" >> {calls}\n')
        os.chmod(path, 0o755)
    conf = os.path.join(tmpbase, "keypost.cf")
    with open(conf, "w") as f:
        f.write("smtpd_tls_cert_file = /etc/letsencrypt/live/mx.example.com/fullchain.pem\n")
    hook = os.path.join(ROOT, "contrib/certbot-deploy-hook")

    def run(lineage):
        if os.path.exists(calls):
            os.unlink(calls)
        env = dict(os.environ, PATH=fake + ":" + os.environ["PATH"], KEYPOST_CONF=conf,
                   RENEWED_LINEAGE=lineage)
        r = subprocess.run([hook], capture_output=True, text=True, env=env)
        assert r.returncode == 0, r.stderr
        return open(calls).read().splitlines() if os.path.exists(calls) else []

    assert run("/etc/letsencrypt/live/www.example.com") == []
    assert run("/etc/letsencrypt/live/mx.example.com") == [
        f"keypost check -c {conf}", "systemctl is-active --quiet keypost",
        "systemctl reload keypost"]


# ---- the documentation names the installed paths ------------------------------

def test_readme_and_manual_name_the_paths_install_uses(destdir):
    install(destdir, "SENDMAIL_LINKS=yes")
    readme = open(os.path.join(ROOT, "README.md")).read()
    section = readme.split("\n## Install\n", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^    (/\S+)", section, re.M)
    assert len(listed) >= 8, listed
    for path in listed:
        assert os.path.lexists(destdir + path), path
    for path in re.findall(r"`(/usr/s?bin/\w+)`", section):
        assert os.path.lexists(destdir + path), path
    page = open(os.path.join(ROOT, "man/keypost.8")).read()
    files = page.split("\n.SH FILES\n", 1)[1].split("\n.SH ", 1)[0]
    named = re.findall(r"^\.I (/\S+)$", files, re.M)
    for path in named:
        if path.startswith(("/etc/keypost", "/var/spool", "/lib/systemd")):
            assert os.path.lexists(destdir + path), path
    unit = open(os.path.join(destdir, UNIT)).read()
    assert "/lib/systemd/system/keypost.service" in named
    assert "ReadWritePaths=/var/spool/keypost" in unit and "/var/spool/keypost" in named


# ---- without DESTDIR: the user and the queue owner --------------------------------

def paths_under(root):
    """make variables that put every installed path below root (DESTDIR empty)."""
    return [f"PREFIX={root}/usr", f"SYSCONFDIR={root}/etc", f"SPOOLDIR={root}/spool",
            f"UNITDIR={root}/unit", "DESTDIR="]


def test_install_as_root_gives_the_queue_to_the_keypost_user(destdir):
    r = make("install", *paths_under(destdir))
    assert "DESTDIR is set" not in r.stdout
    owner = pwd.getpwnam("keypost")
    for d in ["", *QUEUE_SUBDIRS]:
        st = os.stat(os.path.join(destdir, "spool", d))
        assert (st.st_uid, st.st_gid) == (owner.pw_uid, owner.pw_gid), d
        assert stat.S_IMODE(st.st_mode) == 0o700, d
    unit = open(os.path.join(destdir, "unit/keypost.service")).read()
    assert f"ReadWritePaths={destdir}/spool -/var/mail" in unit
    assert f"ExecStart={destdir}/usr/sbin/keypost serve -c {destdir}/etc/keypost/keypost.cf" \
        in unit


def test_install_creates_a_missing_user_as_a_system_account(destdir, tmpbase):
    # A useradd that only records what it was asked: the machine's users
    # stay as they are, and install must stop when the user is not there.
    fake = os.path.join(tmpbase, "bin")
    os.makedirs(fake)
    calls = os.path.join(tmpbase, "useradd.args")
    with open(os.path.join(fake, "useradd"), "w") as f:
        f.write(f'#!/bin/sh\necho "$*" > {calls}\n')
    os.chmod(os.path.join(fake, "useradd"), 0o755)
    env = dict(os.environ, PATH=fake + ":" + os.environ["PATH"])
    r = subprocess.run(["make", "-s", "-C", ROOT, f"BUILD={BUILD}", "install",
                        "KEYPOST_USER=kp-no-such-user", *paths_under(destdir)],
                       capture_output=True, text=True, env=env)
    assert open(calls).read().split() == [
        "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
        "--shell", "/usr/sbin/nologin", "kp-no-such-user"]
    # The fake made no user: nothing to give the queue to, and install says so.
    assert r.returncode != 0
    assert "useradd did not create the user kp-no-such-user" in r.stderr, r.stderr
    assert not os.path.exists(os.path.join(destdir, "spool"))
