"""keypost map -q KEY TABLE and keypost map -q - TABLE, as postmap -q: the
value on stdout and exit 0, exit 1 and no output for a missing key, exit 2
and a message when the table cannot be opened or cannot answer (a lost
database must never look like a missing key)."""
import os
import shutil
import subprocess

import pytest

from kptest import KEYPOST, make_tmpdir
from test_policy import postgres  # noqa: F401 (a fixture)

TEXT = "Alice@Example.org OK\nbob@example.org REJECT no such user\nlonely\n"


def kmap(*args, stdin=None, user=None):
    cmd = [KEYPOST, "map", *args]
    if user:
        cmd = ["runuser", "-u", user, "--"] + cmd
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=60)


@pytest.fixture
def tdir():
    d = make_tmpdir("kp-map-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def assert_found(r, value):
    assert (r.returncode, r.stdout, r.stderr) == (0, value + "\n", ""), r


def assert_absent(r):
    assert (r.returncode, r.stdout, r.stderr) == (1, "", ""), r


def assert_failed(r, *words):
    assert r.returncode == 2 and r.stdout == "", r
    for w in words:
        assert w in r.stderr, r.stderr


def test_texthash(tdir):
    spec = "texthash:" + write(os.path.join(tdir, "access"), TEXT)
    assert_found(kmap("-q", "alice@example.org", spec), "OK")
    assert_found(kmap("-q", "BOB@EXAMPLE.ORG", spec), "REJECT no such user")
    assert_found(kmap("-q", "lonely", spec), "")  # present, with the empty value
    assert_absent(kmap("-q", "carol@example.org", spec))
    assert_absent(kmap("-q", "alice", spec))


def test_inline():
    spec = "inline:{ Alpha=1, { beta = two words } }"
    assert_found(kmap("-q", "alpha", spec), "1")
    assert_found(kmap("-q", "BETA", spec), "two words")
    assert_absent(kmap("-q", "gamma", spec))


def test_lmdb_built_by_keypost_map(tdir):
    src = write(os.path.join(tdir, "access"), TEXT)
    r = kmap(src)
    assert r.returncode == 0 and r.stdout == "", r
    assert_found(kmap("-q", "Alice@example.ORG", "lmdb:" + src), "OK")
    assert_absent(kmap("-q", "carol@example.org", "lmdb:" + src))
    # Rebuilt, the new contents answer.
    write(src, "carol@example.org OK\n")
    assert kmap(src).returncode == 0
    assert_found(kmap("-q", "carol@example.org", "lmdb:" + src), "OK")
    assert_absent(kmap("-q", "alice@example.org", "lmdb:" + src))


def test_keys_from_stdin(tdir):
    spec = "texthash:" + write(os.path.join(tdir, "access"), TEXT)
    keys = "bob@example.org\nnobody@example.org\nALICE@example.org\r\nlonely\n\n" + "x" * 9000
    r = kmap("-q", "-", spec, stdin=keys)
    assert r.returncode == 0 and r.stderr == "", r
    assert r.stdout == ("bob@example.org\tREJECT no such user\n"
                        "ALICE@example.org\tOK\nlonely\t\n"), r.stdout
    assert_absent(kmap("-q", "-", spec, stdin="nobody\ncarol@example.org\n"))
    assert_absent(kmap("-q", "-", spec, stdin=""))


def test_table_that_cannot_be_opened(tdir):
    missing = os.path.join(tdir, "missing")
    assert_failed(kmap("-q", "x", "texthash:" + missing), "cannot open table", missing)
    assert_failed(kmap("-q", "-", "texthash:" + missing, stdin="x\n"), "cannot open table")
    # A directory reads with an error, not as an empty table.
    assert_failed(kmap("-q", "x", "texthash:" + tdir), "cannot read table", "Is a directory")
    assert_failed(kmap("-q", "x", "lmdb:" + missing), "keypost map " + missing)
    junk = write(os.path.join(tdir, "junk"), "x OK\n")
    write(junk + ".lmdb", "not an lmdb file\n" * 100)
    assert_failed(kmap("-q", "x", "lmdb:" + junk), "cannot open table " + junk + ".lmdb")
    assert_failed(kmap("-q", "x", "nosuchtype:" + junk), "unsupported table type")


def test_unreadable_table(tdir):
    path = write(os.path.join(tdir, "secret"), "x OK\n")
    os.chmod(path, 0o600)
    # root reads any file: ask as an unprivileged user instead.
    user = "nobody" if os.geteuid() == 0 else None
    assert_failed(kmap("-q", "x", "texthash:" + path, user=user), "Permission denied", path)


def test_usage():
    for args in (["-q"], ["-q", "x"], ["-q", "x", "inline:{x=1}", "extra"], []):
        r = kmap(*args)
        assert r.returncode == 1 and "usage:" in r.stderr and r.stdout == "", (args, r)


def test_pgsql_lost_database_is_a_failure_not_a_miss(tdir, postgres):  # noqa: F811
    pg = postgres
    pg.sql("DROP TABLE IF EXISTS aliases; CREATE TABLE aliases (k text PRIMARY KEY, v text)")
    pg.sql("INSERT INTO aliases VALUES ('alice@example.org', 'alice@other.example')")
    cf = write(os.path.join(tdir, "aliases.pgsql"),
               f"hosts = inet:127.0.0.1:{pg.port}\nuser = postgres\ndbname = postgres\n"
               "query = SELECT v FROM aliases WHERE k = '%s'\n")
    spec = "pgsql:" + cf
    assert_found(kmap("-q", "alice@example.org", spec), "alice@other.example")
    assert_absent(kmap("-q", "bob@example.org", spec))
    r = kmap("-q", "-", spec, stdin="bob@example.org\nalice@example.org\n")
    assert (r.returncode, r.stdout) == (0, "alice@example.org\talice@other.example\n"), r
    pg.sql("DROP TABLE aliases")  # the query fails: no answer, not "absent"
    assert_failed(kmap("-q", "bob@example.org", spec), spec, "cannot answer")
    r = pg.stop()
    assert r.returncode == 0, r.stdout + r.stderr
    try:
        for key in ("alice@example.org", "bob@example.org"):
            assert_failed(kmap("-q", key, spec), spec, "cannot answer")
        r = kmap("-q", "-", spec, stdin="alice@example.org\nbob@example.org\n")
        assert r.returncode == 2 and r.stdout == "" and "cannot answer" in r.stderr, r
    finally:
        pg.start()
