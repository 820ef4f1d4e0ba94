"""The SMTP client's TLS security levels (smtp_tls_security_level and
smtp_tls_policy_maps, Postfix's meanings), against a second keypost as the
receiving server."""
import pytest

from kptest import free_port

DOMAIN = "peer.test"


@pytest.fixture
def receiver(make_server, pki):
    """A receiving keypost for peer.test with a certificate for mx.peer.test."""
    pki.leaf("mx.peer.test", issuer="rootca", eku="serverAuth")

    def start(**params):
        p = dict(mydestination=DOMAIN, mynetworks="127.0.0.0/8",
                 smtpd_tls_cert_file=pki.path("mx.peer.test", "crt"),
                 smtpd_tls_key_file=pki.path("mx.peer.test", "key"))
        p.update(params)
        return make_server(**p)
    return start


def sender(make_server, peer, policy, **params):
    route = f"inline:{{ {DOMAIN}=smtp:[127.0.0.1]:{peer.smtp_port} }}"
    maps = f"inline:{{ {{ [127.0.0.1]:{peer.smtp_port} = {policy} }} }}"
    return make_server(transport_maps=route, smtp_tls_policy_maps=maps,
                       maximal_backoff_time="60s", minimal_backoff_time="60s", **params)


def send(kp):
    import smtplib
    with smtplib.SMTP("127.0.0.1", kp.smtp_port) as s:
        s.sendmail("alice@example.org", [f"bob@{DOMAIN}"], b"Subject: tls levels\r\n\r\nhi\r\n")


@pytest.mark.parametrize("policy,label,outcome", [
    ("may", "Untrusted", "sent"),
    ("encrypt", "Untrusted", "sent"),
    ("verify match=mx.peer.test", "Verified", "sent"),
    ("secure match=mx.peer.test", "Verified", "sent"),
    ("verify match=other.example", "Trusted", "deferred"),
    ("secure match=.peer.test", "Verified", "sent"),
])
def test_levels_against_a_tls_server(make_server, receiver, pki, policy, label, outcome):
    peer = receiver()
    kp = sender(make_server, peer, policy, smtp_tls_CAfile=pki.path("rootca", "crt")
                if "verify" in policy or "secure" in policy else "")
    send(kp)
    kp.wait_log(rf"{label} TLS connection established to 127\.0\.0\.1\[127\.0\.0\.1\]:"
                rf"{peer.smtp_port}: TLSv1\.3")
    kp.wait_log(rf"to=<bob@peer\.test>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:{peer.smtp_port}, "
                rf"delay=\d+, status={outcome}")
    if outcome == "sent":
        peer.wait_delivered(f"bob@{DOMAIN}")
    else:
        assert peer.delivered(f"bob@{DOMAIN}") == []
        assert "name does not match" in kp.log()


def test_verify_needs_a_trusted_chain(make_server, receiver, pki):
    peer = receiver()
    other = pki.ca("unrelatedca")
    kp = sender(make_server, peer, "verify match=mx.peer.test", smtp_tls_CAfile=other)
    send(kp)
    kp.wait_log(r"Untrusted TLS connection established to")
    kp.wait_log(r"status=deferred \(4\.7\.5 TLS policy verify not met .*not trusted")
    assert peer.delivered(f"bob@{DOMAIN}") == []


def test_encrypt_refuses_a_server_without_starttls(make_server, receiver):
    peer = receiver(smtpd_tls_security_level="none", smtpd_tls_cert_file="",
                    smtpd_tls_key_file="")
    kp = sender(make_server, peer, "encrypt")
    send(kp)
    kp.wait_log(r"status=deferred \(4\.7\.4 TLS is required, but was not offered")
    assert peer.delivered(f"bob@{DOMAIN}") == []
    # "may" then goes in plaintext.
    kp2 = sender(make_server, peer, "may")
    send(kp2)
    peer.wait_delivered(f"bob@{DOMAIN}")
    assert "TLS connection established to" not in kp2.log()


def test_none_never_starts_tls(make_server, receiver):
    peer = receiver()
    kp = sender(make_server, peer, "none")
    send(kp)
    files = peer.wait_delivered(f"bob@{DOMAIN}")
    assert "with ESMTP id" in open(files[0]).read()  # not ESMTPS
    assert "TLS connection established to" not in kp.log()


def test_fingerprint_level_by_key_and_by_certificate(make_server, receiver, pki):
    peer = receiver()
    fps = pki.fingerprints(pki.path("mx.peer.test", "crt"))
    for fp in (fps["pubkey_fingerprint"], fps["cert_fingerprint"]):
        kp = sender(make_server, peer, f"fingerprint match=AA:BB|{fp}")
        send(kp)
        kp.wait_log(r"Verified TLS connection established to")
        kp.wait_log(r"status=sent")
    assert len(peer.wait_delivered(f"bob@{DOMAIN}", count=2)) == 2


def test_client_presents_its_certificate(make_server, receiver, pki):
    crt, key = pki.leaf("mx.sender.test", issuer="rootca", eku="serverAuth")
    fp = pki.fingerprints(crt)["pubkey_fingerprint"]
    peer = receiver(smtpd_tls_ask_ccert="yes", mynetworks="192.0.2.0/24",
                    smtpd_recipient_restrictions=f"check_ccert_access inline:{{ {fp}=OK }}, reject")
    kp = sender(make_server, peer, "encrypt", smtp_tls_cert_file=crt, smtp_tls_key_file=key)
    send(kp)
    peer.wait_log(r"ccert: status=\w+ via=\S+ chain=\w+ subject_cn=\"mx\.sender\.test\"")
    peer.wait_delivered(f"bob@{DOMAIN}")
