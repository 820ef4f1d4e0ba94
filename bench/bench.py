#!/usr/bin/env python3
"""keypost vs Postfix: the scenarios of `make bench`, run by bench/run.sh.

Each scenario starts a fresh server (keypost, then Postfix) on a loopback
port with the same PKI, drives it with build/smtpblast, and measures

  - CPU time of all the server's processes: a cgroup of its own (v2, or the
    v1 cpuacct hierarchy) when one can be made, else utime+stime+cutime+cstime
    summed over the server's process tree in /proc;
  - PSS of all its processes from /proc/PID/smaps_rollup, sampled during the
    run (peak) and while idle sessions are held (memory per session);
  - what smtpblast reports (messages/s, handshakes/s, latency, errors, its own
    CPU).

Results go to WORK/results.json, bench/RESULTS.md and WORK/sweep.dat (for
bench/plot.gp). Every server started here is stopped in a finally clause;
bench/run.sh stops what is listed in WORK/servers if this script dies.
"""
import argparse
import json
import os
import platform
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(f"bench: {msg}", flush=True)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=20, proc=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def read(path, default=""):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return default


# ---- accounting -------------------------------------------------------------

class Meter:
    """CPU and PSS of every process of one server."""

    def __init__(self, name):
        self.name = name
        self.kind = None
        self.dir = None
        self.root_pid = None
        tag = f"kpbench-{name}-{os.getpid()}-{int(time.time() * 1000) % 100000}"
        candidates = []
        if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
            candidates.append(("v2", "/sys/fs/cgroup"))
        if os.path.exists("/sys/fs/cgroup/cpuacct/cpuacct.usage"):
            candidates.append(("v1", "/sys/fs/cgroup/cpuacct"))
        if os.path.exists("/sys/fs/cgroup/unified/cgroup.procs"):
            candidates.append(("v2", "/sys/fs/cgroup/unified"))
        for kind, base in candidates:
            d = os.path.join(base, tag)
            try:
                os.mkdir(d)
            except OSError:
                continue
            probe = os.path.join(d, "cpu.stat" if kind == "v2" else "cpuacct.usage")
            if os.path.exists(probe) and os.access(os.path.join(d, "cgroup.procs"), os.W_OK):
                self.kind, self.dir = kind, d
                break
            try:
                os.rmdir(d)
            except OSError:
                pass
        if self.kind is None:
            self.kind = "proc"

    def describe(self):
        if self.kind == "v1":
            return "cgroup v1 cpuacct (cpuacct.usage of a cgroup holding only the server)"
        if self.kind == "v2":
            return "cgroup v2 (cpu.stat usage_usec of a cgroup holding only the server)"
        return ("/proc/PID/stat utime+stime+cutime+cstime summed over the server's "
                "process tree")

    def wrap(self, cmd):
        """The command, started inside the cgroup."""
        if self.dir is None:
            return cmd
        return ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"',
                os.path.join(self.dir, "cgroup.procs")] + cmd

    def pids(self):
        if self.dir is not None:
            text = read(os.path.join(self.dir, "cgroup.procs"))
            return [int(x) for x in text.split()]
        if self.root_pid is None:
            return []
        children = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            stat = read(f"/proc/{entry}/stat")
            if not stat:
                continue
            fields = stat.rsplit(")", 1)[-1].split()
            children.setdefault(int(fields[1]), []).append(int(entry))
        out, todo = [], [self.root_pid]
        while todo:
            p = todo.pop()
            if os.path.exists(f"/proc/{p}"):
                out.append(p)
            todo.extend(children.get(p, []))
        return out

    def cpu_ns(self):
        if self.kind == "v1":
            return int(read(os.path.join(self.dir, "cpuacct.usage"), "0").strip() or 0)
        if self.kind == "v2":
            for line in read(os.path.join(self.dir, "cpu.stat")).splitlines():
                k, _, v = line.partition(" ")
                if k == "usage_usec":
                    return int(v) * 1000
            return 0
        ticks = 0
        for p in self.pids():
            stat = read(f"/proc/{p}/stat")
            if stat:
                f = stat.rsplit(")", 1)[-1].split()
                ticks += int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
        return ticks * 1_000_000_000 // CLK_TCK

    def pss_kb(self):
        total, n = 0, 0
        for p in self.pids():
            for line in read(f"/proc/{p}/smaps_rollup").splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
                    n += 1
                    break
        return total, n

    def close(self):
        """Kill what is left of the server (only processes in its own cgroup
        or tree), then remove the cgroup."""
        for _ in range(50):
            pids = self.pids()
            if not pids:
                break
            for p in pids:
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.1)
        if self.dir is not None:
            for _ in range(50):
                try:
                    os.rmdir(self.dir)
                    break
                except OSError:
                    time.sleep(0.1)


class Sampler(threading.Thread):
    """Samples a meter's PSS in the background; keeps the peak."""

    def __init__(self, meter, interval=0.5):
        super().__init__(daemon=True)
        self.meter, self.interval = meter, interval
        self.peak_kb, self.peak_procs = 0, 0
        self.stop_evt = threading.Event()

    def run(self):
        while not self.stop_evt.is_set():
            t0 = time.time()
            kb, n = self.meter.pss_kb()
            if kb > self.peak_kb:
                self.peak_kb, self.peak_procs = kb, n
            # reading smaps_rollup of a thousand processes takes a while:
            # do not let the sampler become a load of its own
            self.stop_evt.wait(max(self.interval, 4 * (time.time() - t0)))

    def stop(self):
        self.stop_evt.set()
        self.join()


# ---- servers ------------------------------------------------------------------

class Server:
    name = "?"

    def __init__(self, args, scenario):
        self.args, self.sc = args, scenario
        self.port = free_port()
        self.base = os.path.join(args.work, f"{self.name}-{scenario['id']}")
        os.makedirs(self.base)
        os.chmod(self.base, 0o755)
        self.meter = None

    def register(self, line):
        with open(os.path.join(self.args.work, "servers"), "a") as f:
            f.write(line + "\n")

    def maildirs(self):
        return os.path.join(self.base, "mail")

    def delivered(self):
        base = os.path.join(self.maildirs(), "example.org")
        n, last = 0, 0.0
        if not os.path.isdir(base):
            return 0, 0.0
        for user in os.listdir(base):
            d = os.path.join(base, user, "new")
            try:
                with os.scandir(d) as it:
                    for e in it:
                        n += 1
                        m = e.stat().st_mtime
                        if m > last:
                            last = m
            except OSError:
                pass
        return n, last

    def queue_count(self):
        n = 0
        for sub in self.queue_subdirs():
            for _, _, files in os.walk(os.path.join(self.queue, sub)):
                n += len(files)
        return n


class Keypost(Server):
    name = "keypost"

    def start(self):
        a, sc = self.args, self.sc
        self.queue = os.path.join(self.base, "queue")
        self.config = os.path.join(self.base, "keypost.cf")
        transport = (f"maildir:{self.maildirs()}" if sc["delivery"] == "maildir"
                     else "discard:")
        lines = [
            "myhostname = mx.keypost.test",
            "mydestination = example.org",
            f"queue_directory = {self.queue}",
            f"local_socket_directory = {self.base}/run",
            f"local_transport = {transport}",
            f"maillog_file = {self.base}/maillog",
            f"smtpd_listen = 127.0.0.1:{self.port}",
            f"smtpd_tls_cert_file = {a.pki}/mx.bench.test.crt",
            f"smtpd_tls_key_file = {a.pki}/mx.bench.test.key",
            f"smtpd_tls_CAfile = {a.pki}/ca.crt",
            "smtpd_tls_security_level = may",
            "smtpd_tls_ask_ccert = yes",
            # The sweep holds 10,000 sessions on two workers; the default
            # cap is 4,000 a worker (and 6,000 needs 12,064 descriptors).
            "smtpd_session_limit = 6000",
        ]
        with open(self.config, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.config_text = "\n".join(lines)
        self.meter = Meter(self.name)
        self.stderr = open(os.path.join(self.base, "stderr"), "w")
        self.proc = subprocess.Popen(self.meter.wrap([a.keypost, "serve", "-c", self.config]),
                                     stdout=self.stderr, stderr=subprocess.STDOUT)
        self.meter.root_pid = self.proc.pid
        self.register(f"keypost {self.proc.pid}")
        if not wait_port(self.port, proc=self.proc):
            raise RuntimeError("keypost did not start: " + read(os.path.join(self.base, "stderr")))

    def queue_subdirs(self):
        return ["active", "tmp"]

    def flush_queue(self):
        subprocess.run([self.args.keypost, "queue", "-c", self.config, "flush"],
                       capture_output=True)

    def stop(self):
        if getattr(self, "proc", None) is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                log("keypost did not stop within 30 s of SIGTERM; killing it")
        if self.meter:
            self.meter.close()
        if getattr(self, "proc", None) is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def limits(self):
        return ("no process limit; smtpd_client_connection_count_limit (50) does not apply to "
                "mynetworks (smtpd_client_event_limit_exceptions)")


class Postfix(Server):
    name = "postfix"

    def start(self):
        a, sc = self.args, self.sc
        self.cfdir = os.path.join(self.base, "etc")
        self.queue = os.path.join(self.base, "queue")
        data = os.path.join(self.base, "data")
        for d in (self.cfdir, self.queue, data):
            os.makedirs(d)
            os.chmod(d, 0o755)
        pf = pwd.getpwnam("postfix")
        os.chown(data, pf.pw_uid, pf.pw_gid)
        self.maxproc = sc.get("postfix_maxproc", 100)
        lines = [
            "compatibility_level = 3.6",
            f"queue_directory = {self.queue}",
            f"data_directory = {data}",
            "mail_owner = postfix",
            "setgid_group = postdrop",
            "myhostname = mx.postfix.test",
            "mydomain = postfix.test",
            "myorigin = $myhostname",
            "inet_interfaces = 127.0.0.1",
            "inet_protocols = ipv4",
            "mynetworks = 127.0.0.0/8",
            "alias_maps =",
            "alias_database =",
            "biff = no",
            f"maillog_file = {self.base}/maillog",
            f"maillog_file_prefixes = {self.base}",
            f"default_process_limit = {self.maxproc}",
            f"smtpd_tls_cert_file = {a.pki}/mx.bench.test.crt",
            f"smtpd_tls_key_file = {a.pki}/mx.bench.test.key",
            f"smtpd_tls_CAfile = {a.pki}/ca.crt",
            "smtpd_tls_security_level = may",
            "smtpd_tls_ask_ccert = yes",
            "smtpd_tls_loglevel = 1",
        ]
        if sc["delivery"] == "maildir":
            os.makedirs(self.maildirs())
            kp = pwd.getpwnam("keypost")
            os.chown(self.maildirs(), kp.pw_uid, kp.pw_gid)
            # the same DIR/example.org/userN/ Maildirs as keypost's maildir:DIR
            # (regexp substitution is not allowed in virtual_mailbox_maps)
            vmap = os.path.join(self.cfdir, "vmailbox")
            with open(vmap, "w") as f:
                for i in range(sc.get("users", 10)):
                    f.write(f"user{i}@example.org example.org/user{i}/\n")
            lines += [
                "mydestination =",
                "virtual_mailbox_domains = example.org",
                f"virtual_mailbox_base = {self.maildirs()}",
                f"virtual_mailbox_maps = texthash:{vmap}",
                f"virtual_uid_maps = static:{kp.pw_uid}",
                f"virtual_gid_maps = static:{kp.pw_gid}",
                "virtual_minimum_uid = 1",
            ]
        else:
            lines += [
                "mydestination = example.org",
                "local_recipient_maps =",
                "local_transport = discard",
                "default_transport = discard",
                "relay_transport = discard",
            ]
        with open(os.path.join(self.cfdir, "main.cf"), "w") as f:
            f.write("\n".join(lines) + "\n")
        self.config_text = "\n".join(lines)
        self.write_master_cf()
        self.meter = Meter(self.name)
        self.register(f"postfix {self.cfdir}")
        r = subprocess.run(self.meter.wrap(["postfix", "-c", self.cfdir, "start"]),
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("postfix start failed: " + r.stdout + r.stderr +
                               read(os.path.join(self.base, "maillog")))
        pidfile = os.path.join(self.queue, "pid", "master.pid")
        deadline = time.time() + 10
        while time.time() < deadline and not read(pidfile).strip():
            time.sleep(0.05)
        try:
            self.meter.root_pid = int(read(pidfile).strip())
        except ValueError:
            pass
        if not wait_port(self.port):
            raise RuntimeError("postfix did not listen: " + read(os.path.join(self.base, "maillog")))

    def write_master_cf(self):
        keep = {"pickup", "cleanup", "qmgr", "tlsmgr", "rewrite", "bounce", "defer", "trace",
                "verify", "flush", "proxymap", "proxywrite", "showq", "error", "retry",
                "discard", "local", "virtual", "anvil", "scache", "postlog"}
        out = [f"127.0.0.1:{self.port} inet n - n - - smtpd"]
        for line in read("/usr/share/postfix/master.cf.dist").splitlines():
            if not line or line[0] in "# \t":
                continue
            f = line.split()
            if f[0] in keep and len(f) >= 8:
                f[4] = "n"  # no chroot: the private instance has no chroot set-up
                out.append(" ".join(f))
        with open(os.path.join(self.cfdir, "master.cf"), "w") as fh:
            fh.write("\n".join(out) + "\n")

    def queue_subdirs(self):
        return ["incoming", "active", "deferred", "maildrop", "hold"]

    def flush_queue(self):
        pass

    def stop(self):
        if getattr(self, "cfdir", None):
            subprocess.run(["postfix", "-c", self.cfdir, "stop"], capture_output=True)
            if self.meter:
                deadline = time.time() + 20
                while time.time() < deadline and self.meter.pids():
                    time.sleep(0.1)
        if self.meter:
            self.meter.close()

    def limits(self):
        return (f"default_process_limit = {self.maxproc}: at most {self.maxproc} smtpd "
                "processes, one session each")


# ---- one run ------------------------------------------------------------------

def blast_args(args, sc, port, json_path, ready_path):
    cmd = [args.smtpblast, "-p", str(port), "-c", str(sc["sessions"]),
           "-m", str(sc["per_session"]), "-s", str(sc.get("size", 4096)),
           "-u", str(sc.get("users", 10)), "-t", sc["tls"], "--json", json_path,
           "--ready-file", ready_path, "--label", sc["id"], "--timeout", "60"]
    if sc.get("cert"):
        cmd += ["--cert", f"{args.pki}/client.bench.test.crt",
                "--key", f"{args.pki}/client.bench.test.key"]
    if sc.get("pipelining"):
        cmd.append("-P")
    if sc.get("duration"):
        cmd += ["-d", str(sc["duration"])]
    if sc.get("total"):
        cmd += ["-n", str(sc["total"])]
    if sc.get("hold"):
        cmd += ["--hold", str(sc["hold"]), "--stall", str(sc.get("stall", 5)),
                "--burst", str(sc.get("burst", 200))]
    return cmd


def run_one(args, server_cls, sc):
    srv = server_cls(args, sc)
    res = {"server": srv.name, "scenario": sc["id"]}
    try:
        srv.start()
        res["accounting"] = srv.meter.describe()
        res["limits"] = srv.limits()
        time.sleep(0.5 if args.quick else 1.0)  # let the server settle (Postfix starts some services lazily)
        base_kb, base_n = srv.meter.pss_kb()
        res["pss_idle_kb"], res["procs_idle"] = base_kb, base_n
        sampler = Sampler(srv.meter)
        sampler.start()
        json_path = os.path.join(srv.base, "blast.json")
        ready_path = os.path.join(srv.base, "blast.ready")
        cmd = blast_args(args, sc, srv.port, json_path, ready_path)
        res["command"] = " ".join(cmd)
        cpu0 = srv.meter.cpu_ns()
        t0 = time.time()
        out = open(os.path.join(srv.base, "blast.out"), "w")
        blast = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        held_kb = []
        while blast.poll() is None:
            text = read(ready_path)
            if "held" in text and not held_kb and sc.get("hold"):
                # sample while the sessions sit idle
                end = time.time() + max(0.5, sc["hold"] - 1.0)
                time.sleep(min(1.0, sc["hold"] / 3))
                while time.time() < end and "load" not in read(ready_path) and \
                        blast.poll() is None:
                    held_kb.append(srv.meter.pss_kb())
                    time.sleep(0.3)
                if not held_kb:
                    held_kb.append(srv.meter.pss_kb())
            time.sleep(0.05)
        t_blast_end = time.time()
        out.close()
        # the server's work for the accepted mail is done when its queue is
        # empty (discard) or every message is in the Maildir
        blast_json = json.load(open(json_path))
        res["blast"] = blast_json
        accepted = blast_json["messages"]
        if sc["delivery"] == "maildir":
            deadline = time.time() + sc.get("drain_wait", 30)
            while time.time() < deadline and srv.delivered()[0] < accepted:
                time.sleep(0.1)
            n, last = srv.delivered()
            res["delivered"] = n
            res["delivered_in_window"] = n
            res["e2e_s"] = (last - t0) if n else 0
            res["e2e_msgs_per_s"] = n / (last - t0) if n and last > t0 else 0
        else:
            deadline = time.time() + sc.get("drain_wait", 20)
            last_n, stable_since = None, time.time()
            while time.time() < deadline:
                n = srv.queue_count()
                if n == 0:
                    break
                if n != last_n:
                    last_n, stable_since = n, time.time()
                elif time.time() - stable_since > (2 if args.quick else 3):
                    break  # nothing moves: messages waiting for a queue run
                time.sleep(0.1)
        left = srv.queue_count()
        res["left_in_queue"] = left
        if left:
            # keypost: lost queue-manager notices leave messages for the next
            # queue run (queue_run_delay); ask for it so the CPU of their
            # delivery is counted, and record how many there were
            srv.flush_queue()
            deadline = time.time() + 20
            while time.time() < deadline and srv.queue_count() > 0:
                time.sleep(0.1)
            if sc["delivery"] == "maildir":
                res["delivered"] = srv.delivered()[0]
        cpu1 = srv.meter.cpu_ns()
        t1 = time.time()
        sampler.stop()
        res["cpu_s"] = (cpu1 - cpu0) / 1e9
        res["window_s"] = t1 - t0
        res["blast_s"] = t_blast_end - t0
        res["pss_peak_kb"] = max(sampler.peak_kb, base_kb)
        res["procs_peak"] = sampler.peak_procs
        if held_kb:
            kb = max(k for k, _ in held_kb)
            res["pss_held_kb"] = kb
            res["procs_held"] = max(n for _, n in held_kb)
            held = blast_json["hold"]["held"]
            res["held"] = held
            res["kb_per_session"] = (kb - base_kb) / held if held else 0
        msgs = blast_json["messages"]
        hs = blast_json["handshakes"]
        res["cpu_ms_per_msg"] = 1000 * res["cpu_s"] / msgs if msgs else None
        res["cpu_ms_per_hs"] = 1000 * res["cpu_s"] / hs if hs else None
        res["server_cores"] = res["cpu_s"] / res["blast_s"]
        res["config"] = srv.config_text
        log(f"{sc['id']} {srv.name}: {msgs} msgs {blast_json['messages_per_s']:.1f}/s, "
            f"{hs} hs {blast_json['handshakes_per_s']:.1f}/s, server CPU {res['cpu_s']:.2f} s"
            + (f" ({res['cpu_ms_per_msg']:.3f} ms/msg)" if msgs else "")
            + f", peak PSS {res['pss_peak_kb'] / 1024:.1f} MB"
            + (f", held {res['held']}, {res['kb_per_session']:.1f} KB/session"
               if "held" in res else "")
            + (f", {left} left in queue" if left else "")
            + (f", errors {blast_json['errors']['total']}" if blast_json['errors']['total']
               else ""))
    except Exception as e:  # record and go on with the next run
        res["error"] = f"{type(e).__name__}: {e}"
        log(f"{sc['id']} {srv.name}: FAILED: {res['error']}")
    finally:
        try:
            srv.stop()
        except Exception as e:
            log(f"stopping {srv.name}: {e}")
    return res


# ---- scenarios -----------------------------------------------------------------

def scenarios(args):
    q = args.quick
    dur = 2 if q else args.duration
    tls = {"tls": "starttls", "cert": True, "pipelining": True}
    sc = [
        dict(id="a", title="STARTTLS + client certificate, 20 sessions x 10 messages",
             sessions=20, per_session=10, duration=dur, delivery="discard", **tls),
        dict(id="b", title="STARTTLS + client certificate, one message per connection "
             "(handshake-bound), 20 concurrent", sessions=20, per_session=1, duration=dur,
             delivery="discard", **tls),
        dict(id="c", title="plain SMTP, 20 sessions x 10 messages", sessions=20,
             per_session=10, duration=dur, delivery="discard", tls="plain", pipelining=True),
    ]
    steps = [10, 100, 1000] if q else [10, 100, 1000, 10000]
    for n in steps:
        sc.append(dict(id=f"d{n}", title=f"concurrency sweep: {n} sessions "
                       "(STARTTLS + client certificate; idle hold, then 10 messages per session)",
                       sessions=n, per_session=10, duration=dur if q else max(8, dur // 2),
                       hold=1.5 if q else 4, stall=3 if q else 5, burst=200, delivery="discard",
                       postfix_maxproc=args.postfix_maxproc, drain_wait=30, **tls))
    sc.append(dict(id="e", title="delivery to Maildir (10 mailboxes), 20 sessions x 10 messages, "
                   "STARTTLS + client certificate", sessions=20, per_session=10,
                   duration=dur, delivery="maildir", drain_wait=60 if not q else 20, **tls))
    if args.only_scenarios:
        want = args.only_scenarios.split(",")
        sc = [s for s in sc if s["id"] in want or s["id"].rstrip("0123456789") in want]
    return sc


# ---- report ------------------------------------------------------------------

def machine():
    model = ""
    for line in read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem = ""
    for line in read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal"):
            mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    load = read("/proc/loadavg").split()[:3]
    return {"nproc": os.cpu_count(), "cpu": model, "memory": mem,
            "kernel": platform.release(), "loadavg_before": " ".join(load)}


def versions(args):
    def out(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT).stdout.strip()
        except OSError:
            return "?"
    rev = out(["git", "rev-parse", "--short", "HEAD"])
    dirty = out(["git", "status", "--porcelain", "--untracked-files=no", "--", "src"])
    return {
        "keypost": rev + (" (with uncommitted changes in src/)" if dirty else ""),
        "postfix": out(["postconf", "-d", "-h", "mail_version"]),
        "openssl": out(["openssl", "version"]),
        "libevent": out(["dpkg-query", "-W", "-f=${Version}", "libevent-2.1-7"]),
    }


def f1(x, nd=1):
    return "-" if x is None else f"{x:.{nd}f}"


def ratio(k, p, nd=2):
    if k is None or p is None or p == 0:
        return "-"
    return f"{k / p:.{nd}f}"


def get(r, *path):
    for p in path:
        if r is None or p not in r:
            return None
        r = r[p]
    return r


def write_report(args, all_res, meta, path):
    by = {(r["scenario"], r["server"]): r for r in all_res}
    L = []
    L.append("# keypost vs Postfix: benchmark results\n")
    L.append(f"Generated by `{meta['command']}` (bench/run.sh) on {meta['date']}, "
             f"total run time {meta['elapsed_min']:.1f} min"
             + (" — **BENCH_QUICK=1 smoke run: short runs, not for conclusions**"
                if args.quick else "") + ".\n")
    m, v = meta["machine"], meta["versions"]
    L.append(f"- Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory']} RAM, Linux "
             f"{m['kernel']}; load average before the run: {m['loadavg_before']}")
    if meta.get("note"):
        L.append(f"- **Note:** {meta['note']}")
    L.append(f"- keypost {v['keypost']}; Postfix {v['postfix']} (Debian package); "
             f"{v['openssl']}; libevent {v['libevent']}")
    L.append("- Client and servers share the machine: build/smtpblast (one thread) takes CPU "
             "from the server under test; its own CPU is reported per scenario.")
    acc = next((r.get("accounting") for r in all_res if r.get("accounting")), "?")
    L.append(f"- Server CPU: {acc}, from before the load to when the server's queue is empty "
             "(or every message is in the Maildir), so it includes the queue manager and "
             "delivery (discard or Maildir). Memory: sum of PSS (/proc/PID/smaps_rollup) of "
             "the server's processes, sampled every 0.5 s; peak over the run.")
    L.append("- Both servers: the queue file is fsynced before `250` (keypost: file and "
             "`active/` directory, group-committed; Postfix: cleanup(8) fsyncs the queue file). "
             "Default logging to a file (Postfix via postlogd, `smtpd_tls_loglevel = 1`). "
             "Same certificates: ECDSA P-256 server key, client certificate from a private CA "
             "(`smtpd_tls_CAfile`, `smtpd_tls_ask_ccert = yes`). smtpblast negotiates TLS 1.3, "
             "does not verify the server, and does not resume sessions; it pipelines MAIL/RCPT/"
             "DATA (both servers offer PIPELINING). Messages are "
             f"{args.size} bytes, one recipient.")
    L.append("- Mail for `example.org` is discarded after queueing in (a)–(d) (keypost "
             "`local_transport = discard:`, Postfix `local_transport = discard`) and "
             "delivered to `DIR/example.org/userN/new/` Maildirs in (e) (keypost "
             "`maildir:DIR`, Postfix virtual(8)).\n")

    # targets
    L.append("## Targets\n")
    L.append("| target | keypost | Postfix | ratio | met? |")
    L.append("|---|---|---|---|---|")

    def target_row(label, k, p, cmp, limit, fmt="{:.3f}"):
        if k is None or p is None:
            L.append(f"| {label} | {k if k is not None else '-'} | "
                     f"{p if p is not None else '-'} | - | not measured |")
            return
        r = k / p if p else None
        met = r is not None and cmp(r, limit)
        L.append(f"| {label} | {fmt.format(k)} | {fmt.format(p)} | {f1(r, 2)} | "
                 f"{'yes' if met else '**no**'} |")

    ka, pa = by.get(("a", "keypost")), by.get(("a", "postfix"))
    target_row("(a) CPU ms per message, keypost <= 1/5 of Postfix",
               get(ka, "cpu_ms_per_msg"), get(pa, "cpu_ms_per_msg"), lambda r, l: r <= l, 0.2)
    target_row("(a) messages/s, keypost >= 3x Postfix", get(ka, "blast", "messages_per_s"),
               get(pa, "blast", "messages_per_s"), lambda r, l: r >= l, 3.0, "{:.1f}")
    kb, pb = by.get(("b", "keypost")), by.get(("b", "postfix"))
    target_row("(b) CPU ms per handshake, keypost <= 1/3 of Postfix",
               get(kb, "cpu_ms_per_hs"), get(pb, "cpu_ms_per_hs"), lambda r, l: r <= l, 1 / 3)
    sweep = sorted({r["scenario"] for r in all_res if r["scenario"].startswith("d")},
                   key=lambda s: int(s[1:]))
    if sweep:
        top = sweep[-1]
        kt = by.get((top, "keypost"))
        kps = get(kt, "kb_per_session")
        held = get(kt, "held")
        req = int(top[1:])
        ok = kps is not None and kps <= 64 and held == req
        L.append(f"| (d) keypost holds {req} idle TLS sessions at <= 64 KB each | "
                 f"{held} held, {f1(kps)} KB/session | "
                 f"{get(by.get((top, 'postfix')), 'held')} held, "
                 f"{f1(get(by.get((top, 'postfix')), 'kb_per_session'))} KB/session | - | "
                 f"{'yes' if ok else '**no**'} |")
    L.append("")

    # the load generator's own cost
    cl = [(r["scenario"], r["server"], r["blast"]["client_cpu"]) for r in all_res if "blast" in r]
    if cl:
        worst = max(cl, key=lambda x: x[2]["core_fraction"])
        per_msg = [c["ms_per_message"] for _, _, c in cl if c["ms_per_message"] > 0]
        per_hs = [c["ms_per_handshake"] for s, _, c in cl
                  if c["ms_per_handshake"] > 0 and s == "b"]
        L.append("## The load generator\n")
        L.append(
            "build/smtpblast is one thread (libevent, non-blocking OpenSSL). Its own CPU "
            "(getrusage over the load phase) was "
            f"{min(per_msg):.3f}–{max(per_msg):.3f} ms per message"
            + (f" and {min(per_hs):.3f}–{max(per_hs):.3f} ms per handshake in (b)"
               if per_hs else "")
            + f"; at most {100 * worst[2]['core_fraction']:.0f}% of one core "
            f"(scenario {worst[0]} against {worst[1]}). It never saturated its core, so it was "
            "not the bottleneck, but on a 2-CPU machine that CPU is taken from the server "
            "under test (for both servers alike). The client's TLS cost is OpenSSL 3.0's "
            "(handshake set-up, provider look-ups, locks), like the servers'.\n")

    # per scenario tables
    L.append("## Scenarios\n")
    L.append("Server CPU ms/handshake is given where every connection carries one message "
             "(b), and then includes that message. Server cores busy = server CPU seconds / "
             "seconds of load (2.00 would be both CPUs). Latency is measured by smtpblast from "
             "the moment a command (or a pipelined group, or the message's last byte) was "
             "written to the reply; end-of-DATA is the `250` after the message, i.e. the "
             "durable queueing.\n")
    for sc in scenarios(args):
        rows = [by.get((sc["id"], s)) for s in ("keypost", "postfix")]
        if not any(rows):
            continue
        L.append(f"### ({sc['id']}) {sc['title']}\n")
        L.append("| | msg/s | handshakes/s | server CPU ms/msg | server CPU ms/handshake | "
                 "server cores busy | reply latency ms p50 / p99 / max | end-of-DATA 250 ms "
                 "p50 / p99 / max | peak PSS MB | errors | smtpblast CPU ms/msg (share of a core) |")
        L.append("|---|---|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            if r is None:
                continue
            if "error" in r and "blast" not in r:
                L.append(f"| {r['server']} | failed: {r['error']} |||||||||")
                continue
            b = r["blast"]
            lr, ld = b["latency_ms"]["reply"], b["latency_ms"]["data"]
            errs = b["errors"]
            etext = str(errs["total"])
            if errs["total"]:
                parts = [f"{k}:{v}" for k, v in errs["by_code"].items()] + \
                        [f"{k}:{v}" for k, v in errs["by_kind"].items()]
                etext += " (" + ", ".join(parts) + ")"
            L.append(
                f"| {r['server']} | {b['messages_per_s']:.1f} | {b['handshakes_per_s']:.1f} | "
                f"{f1(r.get('cpu_ms_per_msg'), 3)} | "
                f"{f1(r.get('cpu_ms_per_hs') if sc['per_session'] == 1 else None, 3)} | "
                f"{r['server_cores']:.2f} | {lr['p50']:.2f} / {lr['p99']:.2f} / {lr['max']:.1f} | "
                f"{ld['p50']:.2f} / {ld['p99']:.2f} / {ld['max']:.1f} | "
                f"{r['pss_peak_kb'] / 1024:.1f} | {etext} | "
                f"{b['client_cpu']['ms_per_message']:.3f} "
                f"({100 * b['client_cpu']['core_fraction']:.0f}%) |")
        k, p = rows
        if k and p and "blast" in k and "blast" in p:
            L.append("")
            L.append(
                f"keypost/Postfix: throughput {ratio(k['blast']['messages_per_s'], p['blast']['messages_per_s'])}, "
                f"handshakes/s {ratio(k['blast']['handshakes_per_s'], p['blast']['handshakes_per_s'])}, "
                f"CPU per message {ratio(k.get('cpu_ms_per_msg'), p.get('cpu_ms_per_msg'))}, "
                + (f"CPU per handshake {ratio(k.get('cpu_ms_per_hs'), p.get('cpu_ms_per_hs'))}, "
                   if sc["per_session"] == 1 else "") +
                f"end-of-DATA p99 {ratio(k['blast']['latency_ms']['data']['p99'], p['blast']['latency_ms']['data']['p99'])}, "
                f"peak PSS {ratio(k['pss_peak_kb'], p['pss_peak_kb'])}.")
        extra = []
        for r in rows:
            if r is None or "blast" not in r:
                continue
            if "held" in r:
                extra.append(
                    f"{r['server']}: held {r['held']} of {sc['sessions']} idle TLS sessions "
                    f"(ramp {r['blast']['hold']['ramp_s']:.1f} s), PSS idle "
                    f"{r['pss_idle_kb'] / 1024:.1f} MB -> held {r['pss_held_kb'] / 1024:.1f} MB "
                    f"in {r['procs_held']} processes = **{r['kb_per_session']:.1f} KB per session**; "
                    f"{r['limits']}.")
            if sc["delivery"] == "maildir":
                extra.append(
                    f"{r['server']}: {r.get('delivered_in_window', 0)} of {r['blast']['messages']} "
                    f"accepted messages in the Maildirs within the wait; end to end "
                    f"**{r.get('e2e_msgs_per_s', 0):.1f} msg/s** (accepted-to-delivered, from the "
                    f"first connection to the last file's mtime).")
            if r.get("left_in_queue"):
                extra.append(
                    f"{r['server']}: **{r['left_in_queue']} accepted messages were still in the "
                    f"queue** after the load, and nothing had moved for a few seconds (or the "
                    f"wait ended); a queue flush delivered them (their CPU is counted).")
            if r["blast"]["errors"]["first"]:
                extra.append(f"{r['server']}: first error seen by smtpblast: "
                             f"`{r['blast']['errors']['first']}`")
        if extra:
            L.append("")
            for e in extra:
                L.append(f"- {e}")
        L.append("")
        L.append("<details><summary>commands</summary>\n")
        for r in rows:
            if r and r.get("command"):
                L.append(f"    {r['server']}: {r['command']}")
        L.append("\n</details>\n")

    if sweep:
        L.append("## Concurrency sweep\n")
        L.append("Each step opens N STARTTLS sessions with the client certificate (at most 200 "
                 "connecting at once), holds them idle for a few seconds while the servers' PSS "
                 "is sampled (KB/session = (PSS held − PSS idle) / sessions held; at 10 sessions "
                 "this is mostly noise), then every held session sends messages (10 per "
                 "connection, then a new connection) for the load phase. CPU per message in "
                 "the sweep includes the ramp's handshakes. Postfix runs one smtpd process per "
                 "session, so it holds at most `default_process_limit` sessions (raised to "
                 f"{args.postfix_maxproc} for the sweep; a higher limit means one more smtpd "
                 "process, and its PSS, per session); the sessions beyond it wait in the listen "
                 "queue and are given up once the ramp has made no progress for a few seconds."
                 "\n")
        L.append("![throughput and memory against concurrency](sweep.png)\n")
        L.append("| sessions | keypost held | keypost KB/session | keypost msg/s | keypost peak PSS MB "
                 "| Postfix held | Postfix KB/session | Postfix msg/s | Postfix peak PSS MB |")
        L.append("|---|---|---|---|---|---|---|---|---|")
        for s in sweep:
            k, p = by.get((s, "keypost")), by.get((s, "postfix"))

            def cells(r):
                if r is None or "blast" not in r:
                    return "- | - | - | -"
                return (f"{r.get('held', '-')} | {f1(r.get('kb_per_session'))} | "
                        f"{r['blast']['messages_per_s']:.1f} | {r['pss_peak_kb'] / 1024:.1f}")
            L.append(f"| {s[1:]} | {cells(k)} | {cells(p)} |")
        L.append("")

    if meta.get("analysis"):
        L.append("## Analysis\n")
        L.append(meta["analysis"])
        L.append("")

    L.append("## Configurations\n")
    for name in ("keypost", "postfix"):
        r = next((r for r in all_res if r["server"] == name and r.get("config")
                  and r["scenario"] == "a"), None) or \
            next((r for r in all_res if r["server"] == name and r.get("config")), None)
        if r:
            L.append(f"{name} (scenario {r['scenario']}; the sweep raises Postfix's "
                     "default_process_limit, (e) switches to Maildir delivery):\n")
            L.append("    " + r["config"].replace("\n", "\n    ") + "\n")
    L.append("Postfix master.cf: the Debian master.cf.dist internal services without chroot, "
             "and one `127.0.0.1:PORT inet n - n - - smtpd` listener.\n")
    with open(path, "w") as f:
        f.write("\n".join(L) + "\n")


def write_sweep_dat(all_res, path):
    by = {(r["scenario"], r["server"]): r for r in all_res}
    steps = sorted({int(r["scenario"][1:]) for r in all_res if r["scenario"].startswith("d")})
    with open(path, "w") as f:
        f.write("# sessions kp_msgs_s kp_peak_pss_mb kp_held_pss_mb pf_msgs_s pf_peak_pss_mb "
                "pf_held_pss_mb\n")
        for n in steps:
            row = [str(n)]
            for s in ("keypost", "postfix"):
                r = by.get((f"d{n}", s))
                if r is None or "blast" not in r:
                    row += ["NaN", "NaN", "NaN"]
                else:
                    row += [f"{r['blast']['messages_per_s']:.2f}",
                            f"{r['pss_peak_kb'] / 1024:.2f}",
                            f"{r.get('pss_held_kb', 0) / 1024:.2f}"]
            f.write(" ".join(row) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True,
                    help="work directory (with --report-only: where results.json is)")
    ap.add_argument("--pki")
    ap.add_argument("--smtpblast")
    ap.add_argument("--keypost")
    ap.add_argument("--out", default=os.path.join(HERE, "RESULTS.md"))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--duration", type=int, default=20)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--postfix-maxproc", type=int, default=1000)
    ap.add_argument("--servers", default="keypost,postfix")
    ap.add_argument("--only-scenarios", default="")
    ap.add_argument("--command", default="make bench")
    ap.add_argument("--note", default="")
    ap.add_argument("--analysis-file", default="")
    ap.add_argument("--t0", type=float, default=0, help="when make bench began (epoch)")
    ap.add_argument("--report-only", action="store_true",
                    help="rewrite RESULTS.md from WORK/results.json")
    args = ap.parse_args()

    t_start = args.t0 or time.time()
    res_path = os.path.join(args.work, "results.json")
    if args.report_only:
        if not os.path.exists(res_path):
            res_path = os.path.join(args.work, "results.json")
        saved = json.load(open(res_path))
        all_res, meta = saved["results"], saved["meta"]
        if args.note:
            meta["note"] = args.note
    else:
        meta = {"machine": machine(), "versions": versions(args), "command": args.command,
                "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "note": args.note}
        classes = {"keypost": Keypost, "postfix": Postfix}
        all_res = []
        stop = {"flag": False}

        def on_signal(sig, frame):
            stop["flag"] = True
            raise KeyboardInterrupt
        signal.signal(signal.SIGTERM, on_signal)
        for sc in scenarios(args):
            for name in args.servers.split(","):
                log(f"scenario {sc['id']} on {name}: {sc['title']}")
                all_res.append(run_one(args, classes[name], sc))
                json.dump({"results": all_res, "meta": meta}, open(res_path, "w"), indent=1)
                if stop["flag"]:
                    break
        meta["elapsed_min"] = (time.time() - t_start) / 60
    if args.analysis_file and os.path.exists(args.analysis_file):
        meta["analysis"] = read(args.analysis_file).strip()
    if "elapsed_min" not in meta:
        meta["elapsed_min"] = 0
    json.dump({"results": all_res, "meta": meta}, open(res_path, "w"), indent=1)
    write_report(args, all_res, meta, args.out)
    write_sweep_dat(all_res, os.path.join(args.work, "sweep.dat"))
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # SIGINT, or SIGTERM from run.sh: the finally clauses stopped the server
        log("interrupted")
        sys.exit(130)
