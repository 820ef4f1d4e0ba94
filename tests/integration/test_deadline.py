"""delivery_job_deadline: a next hop that answers one byte at a time never
trips a per-read timeout; the whole delivery request still has a deadline."""
import smtplib
import socket
import threading
import time

from kptest import free_port


def drip_server(port, stop):
    """Greets one byte every 0.3 s, forever: "220 slow..." never ends."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(5)
    srv.settimeout(0.2)
    conns = []
    while not stop.is_set():
        try:
            c, _ = srv.accept()
            conns.append(c)
        except socket.timeout:
            pass
        for c in conns:
            try:
                c.send(b"2")
            except OSError:
                pass
        time.sleep(0.1)
    for c in conns:
        c.close()
    srv.close()


def test_a_dripping_peer_is_cut_off_and_the_message_kept(make_server):
    port = free_port()
    stop = threading.Event()
    t = threading.Thread(target=drip_server, args=(port, stop), daemon=True)
    t.start()
    try:
        kp = make_server(transport_maps=f"inline:{{ slow.test=smtp:[127.0.0.1]:{port} }}",
                         smtp_helo_timeout="2s", delivery_job_deadline="3s",
                         minimal_backoff_time="60s", maximal_backoff_time="60s")
        with smtplib.SMTP("127.0.0.1", kp.smtp_port) as s:
            s.sendmail("alice@example.org", ["bob@slow.test"], b"Subject: slow\r\n\r\nx\r\n")
        kp.wait_log(r"delivery agent \d+ exceeded delivery_job_deadline \(3s\): stopped",
                    timeout=20)
        time.sleep(0.5)
        assert len(kp.queue_files("active")) == 1  # kept for a later attempt, not lost
        out = kp.cli("queue", "-c", kp.config, "list").stdout
        assert "bob@slow.test" in out
    finally:
        stop.set()
        t.join(5)
