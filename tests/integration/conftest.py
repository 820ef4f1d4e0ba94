import os
import shutil

import pytest

from kptest import PKI, Keypost, make_tmpdir


@pytest.fixture(scope="session")
def pki():
    """One PKI for the whole run: a server certificate and client material."""
    d = make_tmpdir("kp-pki-")
    p = PKI(d)
    p.ca("rootca")
    p.leaf("mx.keypost.test", issuer="rootca", eku="serverAuth")
    yield p
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def tmpbase():
    d = make_tmpdir()
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def make_server(tmpbase, pki):
    """make_server(**params) starts keypost with TLS material from pki."""
    servers = []

    def factory(start=True, tls=True, **params):
        if tls:
            params.setdefault("smtpd_tls_cert_file", pki.path("mx.keypost.test", "crt"))
            params.setdefault("smtpd_tls_key_file", pki.path("mx.keypost.test", "key"))
            params.setdefault("smtpd_tls_security_level", "may")
        base = os.path.join(tmpbase, f"s{len(servers)}")
        os.makedirs(base)
        os.chmod(base, 0o755)
        kp = Keypost(base, **params)
        servers.append(kp)
        if start:
            kp.start()
        return kp

    yield factory
    for kp in servers:
        rc = kp.stop()
        kp.check_sanitizers()
        assert rc == 0, f"keypost exited with {rc}:\n{kp.output()}"
