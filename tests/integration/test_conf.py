"""`keypost conf` (as postconf), `keypost conf --man` (keypost.cf(5)'s
PARAMETERS section) and `keypost check` on bad parameters: all from the one
list in src/conf/params.def."""
import os
import re
import shutil
import signal
import smtplib
import socket
import subprocess

import pytest

from kptest import KEYPOST


def keypost(*args):
    return subprocess.run([KEYPOST, *args], capture_output=True, text=True)


def write(tmpbase, name, text):
    path = os.path.join(tmpbase, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def pairs(out):
    """{name: value} from `name = value` lines, every line of that form."""
    lines = out.splitlines()
    assert all(re.fullmatch(r"[A-Za-z_]+ =( .*)?", line) for line in lines), out
    return {line.split(" =", 1)[0]: line.split(" =", 1)[1].strip() for line in lines}


CONF = ("myhostname = mx.example.org\n"
        "smtpd_timeout = 60s\n"
        "# a comment\n"
        "smtpd_banner = $myhostname ESMTP\n"
        "mynetworks = 10.0.0.0/8,\n"
        "    192.168.0.0/16\n")


def test_conf_prints_every_parameter_sorted(tmpbase):
    cf = write(tmpbase, "k.cf", CONF)
    r = keypost("conf", "-c", cf)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    names = [line.split(" =")[0] for line in r.stdout.splitlines()]
    assert names == sorted(names) and len(names) == len(set(names))
    values = pairs(r.stdout)
    assert values["smtpd_timeout"] == "60s"
    assert values["smtpd_banner"] == "$myhostname ESMTP"  # as written, as postconf
    assert values["mynetworks"] == "10.0.0.0/8, 192.168.0.0/16"
    assert values["queue_directory"] == "/var/spool/keypost"  # a default
    assert values["mydomain"] == "example.org"  # derived from myhostname
    assert set(values) == set(pairs(keypost("conf", "-d").stdout))


def test_conf_n_shows_only_the_file(tmpbase):
    cf = write(tmpbase, "k.cf", CONF)
    r = keypost("conf", "-n", "-c", cf)
    assert r.returncode == 0, r.stderr
    assert r.stdout == ("myhostname = mx.example.org\n"
                        "mynetworks = 10.0.0.0/8, 192.168.0.0/16\n"
                        "smtpd_banner = $myhostname ESMTP\n"
                        "smtpd_timeout = 60s\n")
    r = keypost("conf", "-n", "-x", "-c", cf, "smtpd_banner", "queue_directory")
    assert r.returncode == 0 and r.stdout == "smtpd_banner = mx.example.org ESMTP\n"


def test_conf_d_shows_the_defaults(tmpbase):
    cf = write(tmpbase, "k.cf", CONF)
    r = keypost("conf", "-d", "-c", cf)
    assert r.returncode == 0, r.stderr
    values = pairs(r.stdout)
    assert values["smtpd_timeout"] == "300s"
    assert values["smtpd_banner"] == "$myhostname ESMTP keypost"
    assert values["myhostname"] == socket.gethostname()
    assert values["relayhost"] == ""
    assert values["smtpd_tls_security_level"] == "none"
    # -d reads no file: one that does not exist is no error.
    assert keypost("conf", "-d", "-c", os.path.join(tmpbase, "none.cf")).stdout == r.stdout


def test_conf_names(tmpbase):
    cf = write(tmpbase, "k.cf", CONF)
    r = keypost("conf", "-c", cf, "smtpd_timeout", "message_size_limit")
    assert r.returncode == 0
    assert r.stdout == "smtpd_timeout = 60s\nmessage_size_limit = 10240000\n"  # as asked
    r = keypost("conf", "-c", cf, "smtpd_timout", "smtpd_timeout", "no_such_parameter")
    assert r.returncode == 1
    assert r.stdout == "smtpd_timeout = 60s\n"
    assert r.stderr == ('keypost conf: unknown parameter "smtpd_timout" '
                        '(did you mean smtpd_timeout?)\n'
                        'keypost conf: unknown parameter "no_such_parameter"\n')


def test_conf_refuses_a_broken_or_missing_file(tmpbase):
    cf = write(tmpbase, "k.cf", "smtpd_timeout = 0\n")
    r = keypost("conf", "-c", cf)
    assert r.returncode == 1 and r.stdout == ""
    assert f'{cf}:1: bad value for smtpd_timeout: "0" (must be at least 1s)' in r.stderr
    missing = os.path.join(tmpbase, "missing.cf")
    r = keypost("conf", "-c", missing)
    assert r.returncode == 1 and r.stdout == ""
    assert f"{missing}:0: cannot open configuration: No such file or directory" in r.stderr
    assert keypost("conf", "-n", "-d").returncode == 1  # usage


def check(tmpbase, text):
    cf = write(tmpbase, "check.cf",
               f"queue_directory = {tmpbase}/q\nsmtpd_listen = 127.0.0.1:2525\n"
               f"local_transport = maildir:{tmpbase}/m\n"
               "local_recipient_maps = inline:{ postmaster=1 }\n" + text)
    return cf, keypost("check", "-c", cf)


def test_check_names_each_bad_parameter(tmpbase):
    cf, r = check(tmpbase, "smtpd_timeout = -5s\n"              # 5
                           "smtpd_recipient_limit = 0\n"        # 6
                           "smtpd_tiemout = 60s\n"              # 7
                           "smtp_tls_security_level = secure\n"  # 8
                           "smtp_tls_security_level = verify\n"  # 9
                           "smtpd_tls_security_level = maybe\n"  # 10
                           "smtpd_session_limit = 0\n"          # 11: 0 is no limit
                           "smtpd_session_limit = 0\n")         # 12
    assert r.returncode == 1 and "configuration OK" not in r.stdout
    errors = [line for line in r.stderr.splitlines() if not line.startswith("warning: ")]
    assert sorted(errors) == sorted([
        f'{cf}:5: bad value for smtpd_timeout: "-5s" (must be at least 1s)',
        f'{cf}:6: bad value for smtpd_recipient_limit: "0" (must be at least 1)',
        f'{cf}:7: unknown parameter "smtpd_tiemout" (did you mean smtpd_timeout?)',
        f'{cf}:9: smtp_tls_security_level is set twice with different values: "verify" here, '
        f'"secure" at {cf}:8',
        f'{cf}:10: bad value for smtpd_tls_security_level: "maybe" (expected one of '
        'none|may|encrypt)']), r.stderr
    assert (f"warning: {cf}:12: smtpd_session_limit is set again with the same value "
            f"(first at {cf}:11)") in r.stderr


def test_check_same_value_twice_is_only_a_warning(tmpbase):
    cf, r = check(tmpbase, "smtpd_timeout = 60s\nsmtpd_timeout = 60s\n")
    assert r.returncode == 0 and "configuration OK" in r.stdout, r.stderr
    assert f"warning: {cf}:6: smtpd_timeout is set again with the same value" in r.stderr


def test_check_unreadable_file(tmpbase):
    r = keypost("check", "-c", tmpbase)  # a directory opens but cannot be read
    assert r.returncode == 1
    assert f"{tmpbase}:0: cannot read configuration: Is a directory" in r.stderr


def test_serve_refuses_to_start_on_bad_parameters(tmpbase):
    cf, _ = check(tmpbase, "smtpd_timeout = 0\n")
    r = subprocess.run([KEYPOST, "serve", "-c", cf], capture_output=True, text=True, timeout=20)
    assert r.returncode != 0
    assert f'{cf}:5: bad value for smtpd_timeout: "0" (must be at least 1s)' in r.stderr


# ---- the manual -------------------------------------------------------------

def man_params():
    r = keypost("conf", "--man")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    return r.stdout


def test_manual_documents_every_parameter_conf_prints():
    man = man_params()
    documented = re.findall(r"^\.TP\n\.B (\S+)$", man, re.M)
    assert len(documented) == len(set(documented))
    assert set(documented) == set(pairs(keypost("conf", "-d").stdout))
    groups = re.findall(r'^\.SS "(.+)"$', man, re.M)
    assert "SMTP server" in groups and "TLS client" in groups and "Queue" in groups
    # The bounds and choices are the ones conf enforces.
    entry = man.split(".B smtpd_timeout\n", 1)[1].split(".TP", 1)[0]
    assert "at least 1s" in entry and "default: \\fB300s\\fR" in entry
    entry = man.split(".B smtpd_tls_security_level\n", 1)[1].split(".TP", 1)[0]
    assert "\\fBnone\\fR, \\fBmay\\fR, \\fBencrypt\\fR" in entry


def test_manual_renders_without_warnings(tmpbase):
    if shutil.which("man") is None:
        pytest.fail("man (man-db) is not installed: run scripts/install-deps.sh as root")
    page = write(tmpbase, "keypost.cf.5",
                 ".TH KEYPOST.CF 5 2026-11-30 keypost\n.SH NAME\n"
                 "keypost.cf \\- keypost configuration parameters\n" + man_params())
    env = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8")
    r = subprocess.run(["man", "--warnings", "-l", page], capture_output=True, text=True,
                       env=env)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    text = re.sub(r".\x08", "", r.stdout)
    assert "PARAMETERS" in text and "smtpd_tls_security_level" in text
    assert "default: 300s" in text


def test_reload_with_a_duplicate_keeps_the_running_configuration(make_server):
    kp = make_server(smtpd_banner="$myhostname ESMTP first")
    kp.params["smtpd_banner"] = "$myhostname ESMTP second"
    kp.write_config()
    with open(kp.config, "a") as f:
        f.write("smtpd_banner = $myhostname ESMTP third\n")
    kp.signal(signal.SIGHUP)
    kp.wait_log(r"reload refused: the configuration has errors; still running the old one")
    kp.wait_log(r"reload: .*smtpd_banner is set twice with different values")
    assert kp.proc.poll() is None
    s = smtplib.SMTP(timeout=10)
    try:
        code, banner = s.connect("127.0.0.1", kp.smtp_port)
        assert code == 220 and banner.endswith(b"ESMTP first"), banner
    finally:
        s.close()
