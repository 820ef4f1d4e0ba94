"""keypost under resource pressure: a client that never reads its replies,
descriptors running out, clients that trickle bytes to hold a session, and
memory after a burst of sessions. Each measures the real daemon's processes
(CPU ticks and RSS from /proc)."""
import os
import re
import socket
import subprocess
import time

import pytest

TICKS = os.sysconf("SC_CLK_TCK")


def smtpd_pid(kp):
    """The smtpd worker's pid (the tests run one worker), from its log line."""
    with socket.create_connection(("127.0.0.1", kp.smtp_port), timeout=5) as s:
        s.recv(100)
        s.sendall(b"QUIT\r\n")
        s.recv(100)
    return int(kp.wait_log(r"keypost/smtpd\[(\d+)\]: connect from").group(1))


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_kb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def read_line(sock, buf):
    while b"\r\n" not in buf[0]:
        data = sock.recv(65536)
        if not data:
            raise EOFError(buf[0])
        buf[0] += data
    line, buf[0] = buf[0].split(b"\r\n", 1)
    return line


def test_client_that_does_not_read_costs_no_cpu(make_server):
    kp = make_server(smtpd_worker_processes="1")
    pid = smtpd_pid(kp)
    s = socket.create_connection(("127.0.0.1", kp.smtp_port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.setblocking(False)
    sent, payload, progress = 0, b"NOOP\r\n" * 10000, time.time()
    while sent < 6_000_000 and time.time() - progress < 2:  # until the server pushes back
        try:
            sent += s.send(payload[sent % len(payload):])
            progress = time.time()
        except BlockingIOError:
            time.sleep(0.01)
    assert sent > 1_000_000, sent  # the server took a lot before pushing back
    before = cpu_seconds(pid)
    time.sleep(4)
    used = cpu_seconds(pid) - before
    assert used < 0.3, f"worker used {used:.2f}s of CPU in 4s for a client that does not read"
    # Once the client reads, the session goes on (the first 5,000 replies:
    # all of them would take minutes through the client's small window).
    s.setblocking(True)
    s.settimeout(20)
    f = s.makefile("rb")
    assert f.readline().startswith(b"220")
    for _ in range(5000):
        assert f.readline() == b"250 2.0.0 Ok\r\n"
    s.close()


def flood_without_reading(kp, head=b"", limit=6_000_000):
    s = socket.create_connection(("127.0.0.1", kp.smtp_port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall(head)
    s.setblocking(False)
    sent, payload, progress = 0, b"NOOP\r\n" * 10000, time.time()
    while sent < limit and time.time() - progress < 2:
        try:
            sent += s.send(payload[sent % len(payload):])
            progress = time.time()
        except BlockingIOError:
            time.sleep(0.01)
    return s, sent


def test_flood_through_timeout_and_421_costs_no_cpu(make_server):
    """The flooding client is timed out and its 421 flushed: no spinning
    while that happens either."""
    kp = make_server(smtpd_worker_processes="1", smtpd_timeout="3s")
    pid = smtpd_pid(kp)
    before = cpu_seconds(pid)
    s, sent = flood_without_reading(kp)
    time.sleep(8)  # past the timeout and the 5 s flush window
    used = cpu_seconds(pid) - before
    assert used < 0.5, f"worker used {used:.2f}s of CPU for a flood of {sent} bytes"
    kp.wait_log(r"timeout after NOOP from unknown")
    s.close()


def test_input_while_waiting_for_policy_costs_no_cpu(make_server):
    """A RCPT waits for a policy service that does not answer while the
    client pipelines 300 KB more: the worker waits without spinning."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    held = []
    import threading

    def accept():
        while True:
            try:
                held.append(silent.accept()[0])
            except OSError:
                return
    threading.Thread(target=accept, daemon=True).start()
    try:
        port = silent.getsockname()[1]
        kp = make_server(smtpd_worker_processes="1", smtpd_policy_service_timeout="20s",
                         smtpd_recipient_restrictions=f"check_policy_service inet:127.0.0.1:{port}")
        pid = smtpd_pid(kp)
        head = b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<x@example.org>\r\n"
        s, sent = flood_without_reading(kp, head, limit=360_000)
        assert sent >= 300_000, sent
        time.sleep(1)
        before = cpu_seconds(pid)
        time.sleep(4)
        used = cpu_seconds(pid) - before
        assert used < 0.3, f"worker used {used:.2f}s of CPU while waiting for the policy server"
        s.close()
    finally:
        silent.close()
        for c in held:
            c.close()


def test_descriptor_exhaustion_pauses_and_answers_421(make_server):
    kp = make_server(smtpd_worker_processes="1", smtpd_client_connection_count_limit="0")
    pid = smtpd_pid(kp)
    # Lower the running worker's limit (as its own user: no capability needed).
    subprocess.run(["runuser", "-u", "keypost", "--", "prlimit", f"--pid={pid}",
                    "--nofile=40:40"], check=True)
    socks = [socket.create_connection(("127.0.0.1", kp.smtp_port)) for _ in range(80)]
    time.sleep(1)
    before = cpu_seconds(pid)
    time.sleep(3)
    used = cpu_seconds(pid) - before
    assert used < 0.3, f"worker used {used:.2f}s of CPU in 3s while out of descriptors"
    greetings = {}
    for s in socks:
        s.settimeout(5)
        code = s.recv(200)[:3]
        greetings[code] = greetings.get(code, 0) + 1
    assert greetings.get(b"220", 0) > 10 and greetings.get(b"421", 0) > 10, greetings
    assert set(greetings) <= {b"220", b"421"}, greetings  # nobody left without an answer
    for s in socks:
        s.close()
    time.sleep(1.5)
    with socket.create_connection(("127.0.0.1", kp.smtp_port), timeout=5) as s:
        assert s.recv(200).startswith(b"220")  # serving again
    warnings = re.findall(r"warning: cannot accept: Too many open files", kp.log())
    assert len(warnings) == 1, kp.log()[-2000:]
    assert os.path.getsize(os.path.join(kp.base, "stderr")) < 4096


def test_session_limit(make_server):
    kp = make_server(smtpd_worker_processes="1", smtpd_session_limit="5",
                     smtpd_client_connection_count_limit="0")
    time.sleep(0.5)  # the start-up probe's session is gone
    socks = [socket.create_connection(("127.0.0.1", kp.smtp_port), timeout=5)
             for _ in range(5)]
    for s in socks:
        assert s.recv(200).startswith(b"220")
    with socket.create_connection(("127.0.0.1", kp.smtp_port), timeout=5) as s:
        assert s.recv(200).startswith(b"421 4.7.0 mx.keypost.test Error: too many sessions")
    for s in socks:
        s.close()


def trickle(kp, data, every, limit):
    """Send data a byte at a time; return (reply, seconds) when the server
    answers or closes."""
    s = socket.create_connection(("127.0.0.1", kp.smtp_port), timeout=limit)
    assert s.recv(200).startswith(b"220")
    t0 = time.time()
    s.setblocking(False)
    got = b""
    for i in range(len(data)):
        try:
            s.send(data[i:i + 1])
        except OSError:
            break
        end = time.time() + every
        while time.time() < end:
            try:
                chunk = s.recv(4096)
                if not chunk:
                    return got, time.time() - t0
                got += chunk
            except BlockingIOError:
                time.sleep(0.05)
        if got and b"421" in got:
            return got, time.time() - t0
    return got, time.time() - t0


def test_trickling_command_meets_request_deadline(make_server):
    kp = make_server(smtpd_timeout="3s")
    got, took = trickle(kp, b"NOOP NOOP NOOP\r\n", 0.7, 20)
    assert got.startswith(b"421 4.4.2 mx.keypost.test Error: timeout exceeded"), got
    assert 2.5 < took < 6, took
    kp.wait_log(r"request deadline exceeded \(smtpd_timeout with smtpd_per_request_deadline\)")


def test_busy_client_meets_session_deadline(make_server):
    kp = make_server(smtpd_timeout="3s", smtpd_session_deadline="4s")
    s = socket.create_connection(("127.0.0.1", kp.smtp_port), timeout=10)
    buf = [b""]
    assert read_line(s, buf).startswith(b"220")
    t0, replies = time.time(), []
    while time.time() - t0 < 10:
        s.sendall(b"NOOP\r\n")
        line = read_line(s, buf)
        replies.append(line)
        if line.startswith(b"421"):
            break
        time.sleep(0.5)
    took = time.time() - t0
    assert replies[-1].startswith(b"421 4.4.2"), replies
    assert 3.5 < took < 6, took
    assert len(replies) >= 5
    kp.wait_log(r"session deadline exceeded \(smtpd_session_deadline\)")


def test_data_below_minimum_rate_is_cut_off(make_server):
    kp = make_server(smtpd_timeout="3s", smtpd_min_data_rate="1000")
    head = b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<slow@example.org>\r\nDATA\r\n"
    s = socket.create_connection(("127.0.0.1", kp.smtp_port), timeout=10)
    s.sendall(head)
    t0, got = time.time(), b""
    s.setblocking(False)
    while time.time() - t0 < 15 and b"421" not in got:
        try:
            s.send(b"x" * 20)  # 40 bytes/s, far below 1000
        except OSError:
            break
        time.sleep(0.5)
        try:
            got += s.recv(4096)
        except BlockingIOError:
            pass
    took = time.time() - t0
    assert b"421 4.4.2" in got, got
    assert took < 7, took
    assert kp.delivered("slow@example.org") == []


def test_data_above_minimum_rate_may_take_longer_than_the_timeout(make_server):
    kp = make_server(smtpd_timeout="2s", smtpd_min_data_rate="1000",
                     message_size_limit="10000000")
    s = socket.create_connection(("127.0.0.1", kp.smtp_port), timeout=10)
    buf = [b""]
    read_line(s, buf)
    for cmd in (b"HELO c", b"MAIL FROM:<a@b.test>", b"RCPT TO:<fast@example.org>", b"DATA"):
        s.sendall(cmd + b"\r\n")
        while True:
            line = read_line(s, buf)
            if line[3:4] != b"-":
                break
    t0 = time.time()
    line = b"y" * 998 + b"\r\n"
    while time.time() - t0 < 4:  # 4s of data at ~40 kB/s: longer than smtpd_timeout
        s.sendall(line * 4)
        time.sleep(0.1)
    s.sendall(b".\r\n")
    assert read_line(s, buf).startswith(b"250 2.0.0 Ok: queued"), buf
    s.close()
    kp.wait_delivered("fast@example.org")


def sanitized(pid):
    return any("libasan" in line for line in open(f"/proc/{pid}/maps"))


def session_burst(kp, count=2000):
    socks = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", kp.smtp_port))
        s.sendall(b"EHLO x\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@example.org>\r\nDATA\r\n" +
                  b"x" * 2000)
        socks.append(s)
    time.sleep(2)
    return socks


def close_all(kp, socks):
    closed = kp.log().count("disconnect from")
    for s in socks:
        s.close()
    deadline = time.time() + 15
    while time.time() < deadline and kp.log().count("disconnect from") < closed + len(socks):
        time.sleep(0.2)
    time.sleep(1)


def test_memory_is_released_after_sessions_end(make_server, monkeypatch):
    # Under ASan, freed memory waits in a quarantine before reuse; without
    # one, reuse can be measured there too.
    monkeypatch.setenv("ASAN_OPTIONS", os.environ.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=0")
    kp = make_server(smtpd_worker_processes="1", smtpd_client_connection_count_limit="0")
    pid = smtpd_pid(kp)
    start = rss_kb(pid)
    socks = session_burst(kp)
    peak = rss_kb(pid)
    assert peak - start > 10_000, (start, peak)  # the sessions did cost memory
    close_all(kp, socks)
    if not sanitized(pid):  # ASan's allocator never gives memory back to the system
        # On a loaded machine the last closes may take a moment more.
        limit = start + (peak - start) / 4
        deadline = time.time() + 10
        while rss_kb(pid) >= limit and time.time() < deadline:
            time.sleep(0.5)
        assert rss_kb(pid) < limit, (start, peak, rss_kb(pid))
    # A second burst reuses what the first one freed: no growth per session.
    socks = session_burst(kp)
    peak2 = rss_kb(pid)
    close_all(kp, socks)
    assert peak2 - start < (peak - start) * 1.3, (start, peak, peak2)


def test_stop_does_not_wait_for_a_stalled_peer(make_server):
    """A next hop that greets and then never answers holds a delivery for
    the SMTP timeouts (300 s); SIGTERM ends it after a short grace period,
    and the message stays queued."""
    import signal
    import smtplib
    from test_relay import Peer
    peer = Peer(mode="stall")
    try:
        kp = make_server(relayhost=f"[127.0.0.1]:{peer.port}")
        with smtplib.SMTP("127.0.0.1", kp.smtp_port, timeout=20) as s:
            s.sendmail("a@example.org", ["b@remote.test"], b"Subject: stalled\r\n\r\nx\r\n")
        deadline = time.time() + 20
        while not peer.commands() and time.time() < deadline:
            time.sleep(0.1)
        assert peer.commands(), "keypost never reached the peer"
        queued = kp.queue_files()
        assert len(queued) == 1
        t0 = time.time()
        kp.signal(signal.SIGTERM)
        assert kp.proc.wait(timeout=40) == 0
        took = time.time() - t0
        assert took < 30, took
        kp.wait_log(r"stopping: 1 deliveries still running after 15s are ended")
        assert kp.queue_files() == queued  # never lost
    finally:
        peer.stop()
