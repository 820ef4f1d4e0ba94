"""The address tables in PostgreSQL: mydestination, relay_domains,
local_recipient_maps, virtual_alias_maps and canonical_maps served by a
real PostgreSQL, looked up without blocking the worker (a slow database
delays only the session that waits for it), and a lost database answering
451, never an accept."""
import os
import smtplib
import socket
import threading
import time

from kptest import free_port
from test_policy import postgres  # noqa: F401 (a fixture)

SCHEMA = """
DROP TABLE IF EXISTS kp_domains, kp_users, kp_aliases, kp_canonical;
CREATE TABLE kp_domains (name text, class text);
CREATE TABLE kp_users (address text);
CREATE TABLE kp_aliases (source text, target text);
CREATE TABLE kp_canonical (source text, target text);
INSERT INTO kp_domains VALUES ('db-local.test', 'local'), ('slow.test', 'local'),
    ('corp.test', 'relay');
INSERT INTO kp_users VALUES ('alice@db-local.test'), ('carol@db-local.test'),
    ('slowpoke@slow.test'), ('bob@example.org');
INSERT INTO kp_aliases VALUES ('team@db-local.test', 'alice@db-local.test, carol@db-local.test');
INSERT INTO kp_canonical VALUES ('old@partner.test', 'new@partner.test');
CREATE OR REPLACE FUNCTION kp_local(d text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    IF d = 'slow.test' THEN PERFORM pg_sleep(3); END IF;
    IF EXISTS (SELECT 1 FROM kp_domains WHERE name = d AND class = 'local') THEN
        RETURN d;
    END IF;
    RETURN NULL;
END $$;
"""


def table(tmpbase, name, port, query):
    path = os.path.join(tmpbase, name + ".cf")
    with open(path, "w") as f:
        f.write(f"hosts = inet:127.0.0.1:{port}\nuser = postgres\ndbname = postgres\n"
                f"query = {query}\n")
    os.chmod(path, 0o644)
    return "pgsql:" + path


def db_server(make_server, tmpbase, port, **extra):
    params = dict(
        mydestination="example.org, " + table(
            tmpbase, "local", port,
            "SELECT v FROM (SELECT kp_local('%s') AS v) s WHERE v IS NOT NULL"),
        relay_domains=table(tmpbase, "relay", port,
                            "SELECT name FROM kp_domains WHERE name='%s' AND class='relay'"),
        local_recipient_maps=table(tmpbase, "users", port,
                                   "SELECT address FROM kp_users WHERE address='%s'"),
        virtual_alias_maps=table(tmpbase, "aliases", port,
                                 "SELECT target FROM kp_aliases WHERE source='%s'"),
        sender_canonical_maps=table(tmpbase, "canonical", port,
                                    "SELECT target FROM kp_canonical WHERE source='%s'"),
        relay_transport=f"smtp:[127.0.0.1]:{free_port()}",
        mynetworks="192.0.2.0/24",  # loopback is a stranger: relay control applies
    )
    params.update(extra)
    return make_server(**params)


def rcpt(kp, address, sender="someone@remote.test"):
    with smtplib.SMTP("127.0.0.1", kp.smtp_port, timeout=30) as s:
        s.ehlo("client.test")
        assert s.mail(sender)[0] == 250
        return s.rcpt(address)


def test_classes_and_users_from_the_database(make_server, tmpbase, postgres):
    postgres.sql(SCHEMA)
    kp = db_server(make_server, tmpbase, postgres.port)
    assert kp.cli("check", "-c", kp.config, check=False).returncode == 0
    assert rcpt(kp, "alice@db-local.test")[0] == 250
    # Keys are folded to lower case, as for every table (Postfix does so too).
    assert rcpt(kp, "ALICE@DB-Local.test")[0] == 250
    code, msg = rcpt(kp, "nobody@db-local.test")
    assert (code, msg) == (550, b"5.1.1 <nobody@db-local.test>: Recipient address rejected: "
                                b"User unknown in local recipient table"), msg
    # relay_domains from the database: relayed for anyone; other domains not.
    assert rcpt(kp, "anyone@corp.test")[0] == 250
    code, msg = rcpt(kp, "someone@elsewhere.test")
    assert (code, msg) == (554, b"5.7.1 <someone@elsewhere.test>: Relay access denied")
    # A new row counts at the next command, without a reload.
    postgres.sql("INSERT INTO kp_users VALUES ('dave@db-local.test')")
    assert rcpt(kp, "dave@db-local.test")[0] == 250
    assert not os.path.exists(os.path.join(kp.mail, "db-local.test", "nobody"))


def test_aliases_and_canonical_from_the_database(make_server, tmpbase, postgres):
    postgres.sql(SCHEMA)
    kp = db_server(make_server, tmpbase, postgres.port)
    with smtplib.SMTP("127.0.0.1", kp.smtp_port, timeout=30) as s:
        refused = s.sendmail("old@partner.test", ["team@db-local.test"],
                             b"Subject: to the team\r\n\r\nhello\r\n")
        assert refused == {}
    for user in ("alice", "carol"):
        files = kp.wait_delivered(f"{user}@db-local.test")
        with open(files[0], "rb") as f:
            text = f.read()
        # The sender was rewritten by the database's canonical map.
        assert b"Return-Path: <new@partner.test>" in text, text[:400]
    kp.wait_log(r"to=<alice@db-local\.test>, orig_to=<team@db-local\.test>.*status=sent")
    kp.wait_log(r"to=<carol@db-local\.test>, orig_to=<team@db-local\.test>.*status=sent")


def test_a_slow_database_delays_only_its_own_session(make_server, tmpbase, postgres):
    """kp_local() sleeps 3 s for slow.test. With one worker, a session that
    waits for it must not hold up another session's commands and lookups in
    other tables (lookups of one table share its connection, in order)."""
    postgres.sql(SCHEMA)
    kp = db_server(make_server, tmpbase, postgres.port, smtpd_worker_processes="1")
    slow = {}

    def slow_rcpt():
        t0 = time.monotonic()
        slow["reply"] = rcpt(kp, "slowpoke@slow.test")
        slow["took"] = time.monotonic() - t0

    th = threading.Thread(target=slow_rcpt)
    th.start()
    kp.wait_log(r"connect from", timeout=10)
    time.sleep(0.5)  # the slow lookup is in flight now
    t0 = time.monotonic()
    assert rcpt(kp, "bob@example.org")[0] == 250  # the users table, not mydestination's
    fast = time.monotonic() - t0
    th.join(30)
    assert slow["reply"][0] == 250, slow
    assert slow["took"] >= 2.5, slow
    assert fast < 2.0, f"a session waited {fast:.1f}s behind another's slow lookup"
    # A lookup queued behind the slow one in the same table is answered once
    # the connection is free (it used to wait forever).
    th = threading.Thread(target=slow_rcpt)
    th.start()
    time.sleep(0.5)
    t0 = time.monotonic()
    assert rcpt(kp, "alice@db-local.test")[0] == 250
    assert time.monotonic() - t0 < 10
    th.join(30)
    assert slow["reply"][0] == 250, slow


def test_a_lost_database_is_a_451_never_an_accept(make_server, tmpbase, postgres):
    dead = free_port()
    kp = db_server(make_server, tmpbase, dead)
    for address in ("alice@db-local.test", "anyone@corp.test", "someone@elsewhere.test"):
        code, msg = rcpt(kp, address)
        assert code == 451 and msg.startswith(b"4.3.0"), (address, code, msg)
    # The session still answers at once: nothing blocked the worker.
    with socket.create_connection(("127.0.0.1", kp.smtp_port), timeout=5) as s:
        assert s.recv(512).startswith(b"220")
    assert "pgsql:" in kp.log()


def test_check_reports_an_unreachable_address_table(make_server, tmpbase, postgres):
    kp = db_server(make_server, tmpbase, free_port(), start=False)
    kp.write_config()
    r = kp.cli("check", "-c", kp.config, check=False)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "mydestination" in r.stderr and "cannot be read" in r.stderr, r.stderr
