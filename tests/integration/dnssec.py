"""A DNSSEC test bed on loopback, for the DANE tests: the zone `test.`
signed with ldns-signzone (one ECDSA P-256 key, made with ldns-keygen),
unsigned child zones delegated from it without DS (provably insecure), and
one validating Unbound that serves them all to itself (`auth-zone:` with
`for-upstream: yes`) and validates against a trust anchor made from the
zone's DS record. Records can be broken after signing (a bogus signature),
and names can be forwarded to a stub that answers SERVFAIL.

Unbound listens on ADDR port 53, since the resolv.conf that Postfix's tools
read cannot name a port; `resolv_conf()` writes one for them (with
`options trust-ad`, without which glibc drops the AD bit Postfix relies on).
Nothing here touches the machine's own resolver: `in_namespace()` runs a
command in a private mount namespace with that file bind-mounted over
/etc/resolv.conf."""
import base64
import os
import shutil
import socket
import struct
import subprocess
import threading

from kptest import make_tmpdir
from postfix_peer import need, read, wait_for

TTL = 300


def dns_query(addr, port, name, qtype, dnssec=True, timeout=2.0):
    """A minimal DNS client: (rcode, ancount, AD bit)."""
    q = struct.pack(">HHHHHH", 0x6b70, 0x0100 | (0x0020 if dnssec else 0), 1, 0, 0,
                    1 if dnssec else 0)
    q += b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".")) + b"\0"
    q += struct.pack(">HH", qtype, 1)
    if dnssec:  # an OPT record with the DO bit
        q += b"\0" + struct.pack(">HHIH", 41, 4096, 0x8000, 0)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(q, (addr, port))
        data, _ = s.recvfrom(65535)
    _, flags, _, ancount, _, _ = struct.unpack(">HHHHHH", data[:12])
    return flags & 0xF, ancount, bool(flags & 0x0020)


class ServfailStub:
    """A UDP server on 127.0.0.1 that answers every query with SERVFAIL."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                data, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            if len(data) < 12:
                continue
            qid, flags = struct.unpack(">HH", data[:4])
            # the question echoed, no OPT record: QR, RD copied, RA, SERVFAIL
            qend = 12
            while data[qend] != 0:
                qend += data[qend] + 1
            question = data[12:qend + 5]
            answer = struct.pack(">HHHHHH", qid, 0x8000 | (flags & 0x0100) | 0x0080 | 2,
                                 1, 0, 0, 0) + question
            self.sock.sendto(answer, peer)

    def stop(self):
        self.sock.close()


def spki_digest(pem_file, md="sha256", selector=1):
    """TLSA association data computed with the openssl CLI (not keypost):
    selector 1 = the SubjectPublicKeyInfo, 0 = the whole certificate."""
    if selector == 1:
        pub = subprocess.run(["openssl", "x509", "-in", pem_file, "-noout", "-pubkey"],
                             check=True, capture_output=True).stdout
        der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=pub,
                             check=True, capture_output=True).stdout
    else:
        der = subprocess.run(["openssl", "x509", "-in", pem_file, "-outform", "DER"],
                             check=True, capture_output=True).stdout
    out = subprocess.run(["openssl", "dgst", f"-{md}", "-r"], input=der, check=True,
                         capture_output=True).stdout
    return out.split()[0].decode()


class DnssecBed:
    """secure: records (relative or absolute) of the signed zone test.;
    insecure: {child zone: records}, each delegated without DS; bogus:
    (owner, type) pairs whose RRSIG is corrupted after signing; servfail:
    names delegated (without DS) to a stub that answers SERVFAIL. addr: the loopback
    address Unbound answers on, port 53."""

    def __init__(self, addr, secure, insecure=None, bogus=(), servfail=()):
        self.bin = need("unbound")
        self.keygen = need("ldns-keygen")
        self.signzone = need("ldns-signzone")
        self.addr = addr
        self.port = 53
        self.dir = make_tmpdir("kp-dnssec-")
        self.secure = list(secure)
        self.insecure = dict(insecure or {})
        self.bogus = list(bogus)
        self.servfail = list(servfail)
        self.stub = None
        self.proc = None
        self.anchor = os.path.join(self.dir, "test.ds")

    # ---- zones ---------------------------------------------------------------

    def _soa(self, origin):
        return [f"$ORIGIN {origin}", f"$TTL {TTL}",
                f"@ IN SOA ns.test. hostmaster.test. 1 3600 600 86400 {TTL}",
                "@ IN NS ns.test."]

    def _write(self, name, lines):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return path

    def _sign(self):
        r = subprocess.run([self.keygen, "-a", "ECDSAP256SHA256", "-k", "test."],
                           cwd=self.dir, check=True, capture_output=True, text=True)
        key = os.path.join(self.dir, r.stdout.split()[0])
        with open(key + ".ds") as f:
            ds = f.read()
        self._write("test.ds", [ds.strip()])
        lines = self._soa("test.") + ["ns IN A 127.0.0.1"]
        lines += [f"{child} IN NS ns.test." for child in self.insecure]
        # A name that fails must exist in the signed zone (here as an
        # unsigned delegation, to servers that answer SERVFAIL): were it
        # absent, the zone's NSEC records would prove it so, and a
        # validating resolver may answer NXDOMAIN from them (RFC 8198).
        lines += [f"{name} IN NS ns.test." for name in self.servfail]
        lines += self.secure
        zone = self._write("test.zone", lines)
        subprocess.run([self.signzone, "-f", zone + ".signed", zone, key], cwd=self.dir,
                       check=True, capture_output=True, text=True)
        return zone + ".signed"

    def _break(self, signed):
        """Flip bits in the signature of each (owner, type) in self.bogus."""
        with open(signed) as f:
            rrs = f.read().splitlines()
        for owner, rrtype in self.bogus:
            hits = [i for i, rr in enumerate(rrs) if rr.split()[:1] == [owner] and
                    rr.split()[3:5] == ["RRSIG", rrtype]]
            assert hits, f"no RRSIG {rrtype} for {owner} in the signed zone"
            for i in hits:
                fields = rrs[i].split()
                sig = bytearray(base64.b64decode("".join(fields[12:])))
                sig[10] ^= 0xFF
                rrs[i] = " ".join(fields[:12] + [base64.b64encode(bytes(sig)).decode()])
        with open(signed, "w") as f:
            f.write("\n".join(rrs) + "\n")

    def _config(self, signed):
        zones = [("test.", signed)]
        for child, records in self.insecure.items():
            zones.append((child, self._write(child + "zone", self._soa(child) + records)))
        auth = "".join(f"""auth-zone:
    name: "{name}"
    zonefile: "{path}"
    for-downstream: no
    for-upstream: yes
    fallback-enabled: no
""" for name, path in zones)
        fwd = "".join(f"""forward-zone:
    name: "{name}"
    forward-addr: 127.0.0.1@{self.stub.port}
""" for name in self.servfail)
        return self._write("unbound.conf", [f"""server:
    interface: {self.addr}
    port: {self.port}
    do-ip6: no
    do-daemonize: no
    chroot: ""
    username: ""
    directory: "{self.dir}"
    pidfile: "{self.dir}/unbound.pid"
    logfile: "{self.dir}/unbound.log"
    use-syslog: no
    verbosity: 1
    val-log-level: 2
    num-threads: 1
    access-control: 127.0.0.0/8 allow
    module-config: "validator iterator"
    trust-anchor-file: "{self.anchor}"
    # lift Unbound's built-in empty test. zone (RFC 6761)
    local-zone: "test." nodefault
    do-not-query-localhost: no
    # answers come from the zones, never from proofs remembered for others
    aggressive-nsec: no
    qname-minimisation: no
{auth}{fwd}remote-control:
    control-enable: no
"""])

    # ---- the server -----------------------------------------------------------

    def start(self):
        try:
            socket.create_connection((self.addr, 53), timeout=0.5).close()
            raise AssertionError(f"something already listens on {self.addr}:53")
        except OSError:
            pass
        self.stub = ServfailStub()
        signed = self._sign()
        self._break(signed)
        conf = self._config(signed)
        r = subprocess.run([need("unbound-checkconf"), conf], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
        with open(os.path.join(self.dir, "stderr"), "w") as err:
            self.proc = subprocess.Popen([self.bin, "-d", "-c", conf], stdout=subprocess.DEVNULL,
                                         stderr=err, start_new_session=True)

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError("unbound exited: " + self.output())
            try:
                return dns_query(self.addr, self.port, "test", 6)[0] == 0
            except OSError:
                return False
        wait_for(ready, lambda: "unbound does not answer: " + self.output())
        return self

    def query(self, name, qtype):
        return dns_query(self.addr, self.port, name, qtype)

    def resolv_conf(self):
        return self._write("resolv.conf", [f"nameserver {self.addr}", "options trust-ad"])

    def in_namespace(self, argv, timeout=60, env=None):
        """Run argv with this resolver as /etc/resolv.conf, in a private mount
        namespace (the machine's own file is left alone)."""
        script = 'mount --bind "$0" /etc/resolv.conf && exec "$@"'
        return subprocess.run([need("unshare"), "-m", "--propagation", "private", "sh", "-c",
                               script, self.resolv_conf(), *argv],
                              capture_output=True, text=True, timeout=timeout, env=env)

    def output(self):
        return read(os.path.join(self.dir, "stderr")) + read(os.path.join(self.dir,
                                                                          "unbound.log"))

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.stub:
            self.stub.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
