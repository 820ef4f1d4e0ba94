"""Helpers for keypost's integration tests: a test PKI made with the openssl
CLI, and a real `keypost serve` started on loopback ports with its own queue,
Maildir and log, stopped with SIGTERM at the end of each test."""
import glob
import os
import re
import signal
import socket
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KEYPOST = os.environ.get("KEYPOST_BIN", os.path.join(ROOT, "build", "keypost"))


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_tmpdir(prefix="kp-"):
    d = tempfile.mkdtemp(prefix=prefix)
    os.chmod(d, 0o755)  # the server runs as mail_owner and must get in
    return d


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


class PKI:
    """Certificates for tests: CAs, intermediates and leaves with any EKU."""

    def __init__(self, directory):
        self.dir = directory

    def path(self, name, ext):
        return os.path.join(self.dir, f"{name}.{ext}")

    def key(self, name, kind="ec"):
        out = self.path(name, "key")
        if kind == "ec":
            run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
                 "ec_paramgen_curve:P-256", "-out", out])
        elif kind == "rsa":
            run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt",
                 "rsa_keygen_bits:2048", "-out", out])
        elif kind == "ed25519":
            run(["openssl", "genpkey", "-algorithm", "ED25519", "-out", out])
        else:
            raise ValueError(kind)
        return out

    def _ext_file(self, name, lines):
        ext = self.path(name, "ext")
        with open(ext, "w") as f:
            f.write("\n".join(lines) + "\n")
        return ext

    def ca(self, name, issuer=None, eku=None, kind="ec", days=3650):
        """A CA (self-signed when issuer is None). eku: e.g. "serverAuth"."""
        key = self.key(name, kind)
        crt = self.path(name, "crt")
        lines = ["basicConstraints=critical,CA:TRUE", "keyUsage=critical,keyCertSign,cRLSign",
                 "subjectKeyIdentifier=hash"]
        if eku:
            lines.append(f"extendedKeyUsage={eku}")
        ext = self._ext_file(name, lines)
        if issuer is None:
            run(["openssl", "req", "-x509", "-new", "-key", key, "-out", crt, "-days", str(days),
                 "-subj", f"/CN={name}", "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign"] +
                (["-addext", f"extendedKeyUsage={eku}"] if eku else []))
        else:
            self._sign(name, key, crt, issuer, ext, days)
        return crt

    def _sign(self, name, key, crt, issuer, ext, days, not_before=None):
        csr = self.path(name, "csr")
        run(["openssl", "req", "-new", "-key", key, "-out", csr, "-subj", f"/CN={name}"])
        cmd = ["openssl", "x509", "-req", "-in", csr, "-CA", self.path(issuer, "crt"),
               "-CAkey", self.path(issuer, "key"), "-CAcreateserial", "-out", crt,
               "-extfile", ext]
        if days is not None:
            cmd += ["-days", str(days)]
        run(cmd)

    def leaf(self, name, issuer=None, eku="serverAuth,clientAuth", kind="ec", days=365,
             expired=False, not_yet_valid=False):
        """A leaf certificate. eku=None: no EKU extension. issuer=None:
        self-signed. expired / not_yet_valid use faketime-free openssl ca."""
        key = self.key(name, kind)
        crt = self.path(name, "crt")
        lines = ["basicConstraints=critical,CA:FALSE", f"subjectAltName=DNS:{name}"]
        if eku:
            lines.append(f"extendedKeyUsage={eku}")
        ext = self._ext_file(name, lines)
        if expired or not_yet_valid:
            self._dated(name, key, crt, issuer, ext, expired)
        elif issuer is None:
            cmd = ["openssl", "req", "-x509", "-new", "-key", key, "-out", crt, "-days",
                   str(days), "-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name}"]
            if eku:
                cmd += ["-addext", f"extendedKeyUsage={eku}"]
            run(cmd)
        else:
            self._sign(name, key, crt, issuer, ext, days)
        return crt, key

    def _dated(self, name, key, crt, issuer, ext, expired):
        """openssl x509 -req cannot back-date; use `openssl ca` with dates."""
        cadir = os.path.join(self.dir, f"ca-{name}")
        os.makedirs(cadir, exist_ok=True)
        open(os.path.join(cadir, "index.txt"), "w").close()
        with open(os.path.join(cadir, "serial"), "w") as f:
            f.write("1000\n")
        cnf = os.path.join(cadir, "ca.cnf")
        with open(cnf, "w") as f:
            f.write(f"[ca]\ndefault_ca=d\n[d]\ndir={cadir}\ndatabase={cadir}/index.txt\n"
                    f"serial={cadir}/serial\nnew_certs_dir={cadir}\ndefault_md=sha256\n"
                    "policy=p\ncopy_extensions=none\n[p]\ncommonName=supplied\n")
        csr = self.path(name, "csr")
        run(["openssl", "req", "-new", "-key", key, "-out", csr, "-subj", f"/CN={name}"])
        if expired:
            start, end = "20200101000000Z", "20210101000000Z"
        else:
            start, end = "20400101000000Z", "20410101000000Z"
        signer = issuer
        cmd = ["openssl", "ca", "-batch", "-config", cnf, "-in", csr, "-out", crt,
               "-extfile", ext, "-startdate", start, "-enddate", end, "-notext"]
        if signer is None:
            cmd += ["-selfsign", "-keyfile", key]
        else:
            cmd += ["-cert", self.path(signer, "crt"), "-keyfile", self.path(signer, "key")]
        run(cmd)

    def bundle(self, name, *crts):
        out = self.path(name, "pem")
        with open(out, "w") as f:
            for c in crts:
                f.write(open(c).read())
        return out

    def fingerprints(self, crt, digest="sha256"):
        out = run([KEYPOST, "fingerprint", "-d", digest, crt]).stdout
        return dict(line.split("=", 1) for line in out.split())


class Keypost:
    """A running `keypost serve` with its own directories and ports."""

    def __init__(self, base, **params):
        self.base = base
        self.queue = os.path.join(base, "queue")
        self.mail = os.path.join(base, "mail")
        self.logfile = os.path.join(base, "maillog")
        self.smtp_port = free_port()
        self.config = os.path.join(base, "keypost.cf")
        self.params = {
            "myhostname": "mx.keypost.test",
            "mydestination": "example.org, $myhostname",
            "queue_directory": self.queue,
            "smtpd_listen": f"127.0.0.1:{self.smtp_port}",
            "local_transport": f"maildir:{self.mail}",
            "maillog_file": self.logfile,
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "2s",
            "smtpd_worker_processes": "2",
            # The suite's expectations name clients unknown[ADDR] whatever
            # the machine's resolver and /etc/hosts say; test_peername.py
            # turns name lookups on against its own DNS server.
            "smtpd_peername_lookup": "no",
            # The sendmail command's sockets: one directory per test server.
            "local_socket_directory": os.path.join(base, "run"),
        }
        self.params.update({k: str(v) for k, v in params.items()})
        self.proc = None

    def write_config(self):
        with open(self.config, "w") as f:
            for k, v in self.params.items():
                f.write(f"{k} = {v}\n")

    def start(self, wait_ports=None):
        self.write_config()
        self.stderr = open(os.path.join(self.base, "stderr"), "w")
        self.proc = subprocess.Popen([KEYPOST, "serve", "-c", self.config],
                                     stdout=self.stderr, stderr=subprocess.STDOUT)
        ports = wait_ports or [self.smtp_port]
        deadline = time.time() + 10
        for port in ports:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError("keypost exited: " + self.output())
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.time() > deadline:
                        raise RuntimeError("keypost did not listen: " + self.output())
                    time.sleep(0.05)
        return self

    def output(self):
        path = os.path.join(self.base, "stderr")
        text = open(path).read() if os.path.exists(path) else ""
        return text + self.log()

    def log(self):
        return open(self.logfile).read() if os.path.exists(self.logfile) else ""

    def wait_log(self, pattern, timeout=10):
        """Wait for a log line matching pattern; return the match."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            m = re.search(pattern, self.log())
            if m:
                return m
            time.sleep(0.05)
        raise AssertionError(f"no log line matching {pattern!r}; log:\n{self.log()}")

    def delivered(self, rcpt):
        local, domain = rcpt.lower().split("@")
        return sorted(glob.glob(os.path.join(self.mail, domain, local, "new", "*")))

    def wait_delivered(self, rcpt, count=1, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            files = self.delivered(rcpt)
            if len(files) >= count:
                return files
            time.sleep(0.05)
        raise AssertionError(f"{rcpt}: {len(self.delivered(rcpt))} delivered, wanted {count}"
                             f"; log:\n{self.log()}")

    def queue_files(self, sub="active"):
        d = os.path.join(self.queue, sub)
        return sorted(os.listdir(d)) if os.path.isdir(d) else []

    def cli(self, *args, check=True):
        return subprocess.run([KEYPOST, *args], capture_output=True, text=True, check=check)

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=30):
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("keypost did not stop on SIGTERM:\n" + self.output())
        self.stderr.close()
        return rc

    def check_sanitizers(self):
        """ASan/UBSan reports go to stderr; any report fails the test."""
        out = self.output()
        assert "ERROR: AddressSanitizer" not in out, out
        assert "runtime error:" not in out, out
        assert "ERROR: LeakSanitizer" not in out, out
