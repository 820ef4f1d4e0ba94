"""Demo peer: an MTA that presents its serverAuth-only certificate as a TLS
client certificate over STARTTLS (usage: demo_client.py PORT NAME MODE)."""
import smtplib
import ssl
import sys

port, name, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.load_cert_chain(f"{name}.crt", f"{name}.key")
with smtplib.SMTP("127.0.0.1", port, local_hostname=name) as s:
    s.starttls(context=ctx)
    s.ehlo(name)
    s.mail(f"postmaster@{name.split('.', 1)[1]}")
    code, msg = s.rcpt("someone@elsewhere.example")
    print(f"  RCPT TO:<someone@elsewhere.example> (a foreign domain) -> {code} {msg.decode()}")
    if (code == 250) != (mode == "relay-ok"):
        sys.exit(f"unexpected relay decision for {name}")
    s.rset()
    if mode == "relay-ok":
        body = (f"From: postmaster@{name.split('.', 1)[1]}\r\nTo: alice@example.org\r\n"
                f"Subject: hello from {name}\r\n\r\nSent with a serverAuth-only certificate.\r\n")
        s.sendmail(f"postmaster@{name.split('.', 1)[1]}", ["alice@example.org"], body)
        print("  message to alice@example.org accepted")
