#!/bin/sh
# `make run`: keypost's main job on loopback, with a test PKI made here.
# A partner MTA holds a certificate from a "public CA" with the serverAuth
# EKU only, as public CAs issue them since 2026. OpenSSL refuses it as a
# client certificate ("unsuitable certificate purpose"); keypost trusts the
# partner by its public-key pin, lets it relay, and delivers its mail to a
# Maildir. A second server with the same kind of certificate but no pin is
# refused.
set -eu
cd "$(dirname "$0")/.."
KEYPOST="$PWD/build/keypost"
DEMO=$(mktemp -d /tmp/keypost-demo.XXXXXX)
chmod 755 "$DEMO"
cd "$DEMO"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
quiet() { "$@" >/dev/null 2>&1; }

say "test PKI in $DEMO"
quiet openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout publicca.key -out publicca.crt -days 30 -subj "/CN=Demo Public CA" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign
serverauth_leaf() { # NAME: a leaf with EKU serverAuth only, from the public CA
    printf 'basicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:%s\n' \
        "$1" > "$1.ext"
    quiet openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$1.key" -out "$1.csr" -subj "/CN=$1"
    quiet openssl x509 -req -in "$1.csr" -CA publicca.crt -CAkey publicca.key \
        -CAcreateserial -days 30 -extfile "$1.ext" -out "$1.crt"
}
serverauth_leaf mx.keypost.test
serverauth_leaf mx.partner.test
serverauth_leaf mx.stranger.test
echo "partner certificate: $(openssl x509 -in mx.partner.test.crt -noout -ext extendedKeyUsage | tail -1 | tr -s ' ')"

say "keypost fingerprint mx.partner.test.crt"
"$KEYPOST" fingerprint mx.partner.test.crt
PIN=$("$KEYPOST" fingerprint mx.partner.test.crt | sed -n 's/^pubkey_fingerprint=//p')
echo "$PIN mx.partner.test" > peers

PORT=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > keypost.cf <<CF
myhostname = mx.keypost.test
mydestination = example.org
# loopback is not a trusted network here: only the key pin can let a peer relay
mynetworks = 192.0.2.0/24
queue_directory = $DEMO/queue
local_socket_directory = $DEMO/run
local_transport = maildir:$DEMO/mail
maillog_file = $DEMO/maillog
smtpd_listen = 127.0.0.1:$PORT
smtpd_tls_cert_file = $DEMO/mx.keypost.test.crt
smtpd_tls_key_file = $DEMO/mx.keypost.test.key
smtpd_tls_security_level = may
smtpd_tls_ask_ccert = yes
smtpd_tls_CAfile = $DEMO/publicca.crt
relay_clientcerts = texthash:$DEMO/peers
smtpd_relay_restrictions = permit_tls_clientcerts, reject_unauth_destination
smtpd_tls_received_header = yes
CF
say "keypost.cf"
grep -v '^#' keypost.cf
"$KEYPOST" check -c keypost.cf

say "keypost serve -c keypost.cf"
"$KEYPOST" serve -c keypost.cf 2>serve.err &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null || true' EXIT
for i in $(seq 50); do
    /usr/bin/python3 -c "import socket; socket.create_connection(('127.0.0.1',$PORT),1)" 2>/dev/null && break
    sleep 0.1
done

say "mx.partner.test (pinned) sends to alice@example.org and asks to relay"
/usr/bin/python3 "$OLDPWD/scripts/demo_client.py" "$PORT" mx.partner.test relay-ok
say "mx.stranger.test (same public CA, not pinned) asks to relay"
/usr/bin/python3 "$OLDPWD/scripts/demo_client.py" "$PORT" mx.stranger.test relay-denied

for i in $(seq 50); do
    ls mail/example.org/alice/new/* >/dev/null 2>&1 && break
    sleep 0.1
done
say "the log (maillog)"
# Postfix's form: "Nov 30 11:51:10 HOST keypost/smtpd[PID]: text"; show from the role on
sed 's/^[A-Z][a-z][a-z] [ 0-9][0-9] [0-9:]* [^ ]* //' maillog
say "delivered: $(ls mail/example.org/alice/new/*)"
cat mail/example.org/alice/new/*
kill "$SERVER"
wait "$SERVER" || true
trap - EXIT
grep -q 'via=pubkey-pin chain=failed' maillog && grep -q 'unsuitable certificate purpose' maillog &&
    ls mail/example.org/alice/new/* >/dev/null && grep -q 'Relay access denied' maillog ||
    { echo "demo FAILED: see $DEMO"; exit 1; }
say "demo OK: the serverAuth-only partner was refused by OpenSSL's client purpose check, trusted by its key pin, relayed and delivered; the unpinned one was refused"
