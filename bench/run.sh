#!/bin/sh
# `make bench`: keypost against Debian's Postfix on loopback ports, with the
# same load generator (build/smtpblast) and the same test PKI. Writes
# bench/RESULTS.md and bench/sweep.png.
#
#   BENCH_QUICK=1      a ~2 minute smoke run (short runs, sweep up to 1,000)
#   BENCH_DURATION=S   seconds of load per scenario (default 20)
#   BENCH_SCENARIOS=a,b,...  only these scenarios (a b c d e; d = the sweep)
#   BENCH_SERVERS=keypost,postfix
#   BENCH_POSTFIX_MAXPROC=N  Postfix default_process_limit in the sweep (1000)
#   BENCH_NOTE=TEXT    a note printed at the top of RESULTS.md
#   BENCH_KEEP=1       keep the work directory (logs, configurations, JSON)
#
# Servers listen on 127.0.0.1 only, on free high ports, never port 25.
# Every server started here is stopped at the end, also on failure.
set -eu
cd "$(dirname "$0")/.."
ROOT=$PWD
T0=$(date +%s)

if [ "$(id -u)" != 0 ]; then
    echo "bench: run as root (it installs packages, starts Postfix and keypost, makes cgroups)" >&2
    exit 1
fi

# ---- packages: make bench has run scripts/install-deps.sh (Postfix among
# them); the plot needs gnuplot, installed here if missing.
missing=""
for p in postfix gnuplot-nox python3 openssl gcc libevent-dev libssl-dev; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
        missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "bench: installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    own_policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then # keep the package's Postfix from starting
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        own_policy=1
    fi
    status=0
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing; } \
        >/tmp/keypost-bench-apt.log 2>&1 || status=$?
    [ -n "$own_policy" ] && rm -f /usr/sbin/policy-rc.d
    if [ "$status" != 0 ]; then
        tail -20 /tmp/keypost-bench-apt.log >&2
        echo "bench: package installation failed" >&2
        exit 1
    fi
fi
id keypost >/dev/null 2>&1 ||
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin keypost

# ---- binaries
[ -x build/keypost ] || make all
mkdir -p build
cc -O2 -g -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -o build/smtpblast bench/smtpblast.c \
    -levent_openssl -levent_core -lssl -lcrypto
# keep a private copy: other builds may replace build/keypost during the run
WORK=$(mktemp -d /tmp/keypost-bench.XXXXXX)
chmod 755 "$WORK"
cp build/keypost "$WORK/keypost"
cp build/smtpblast "$WORK/smtpblast"

# ---- stop whatever is left on any exit
cleanup() {
    status=$?
    trap - EXIT INT TERM
    if [ "$BENCH_PID" != none ] && kill -0 "$BENCH_PID" 2>/dev/null; then
        kill -TERM "$BENCH_PID" 2>/dev/null || true # it stops its server in a finally clause
        for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
            kill -0 "$BENCH_PID" 2>/dev/null || break
            sleep 1
        done
    fi
    if [ -f "$WORK/servers" ]; then
        while read -r kind what; do
            case "$kind" in
            keypost)
                if [ -d "/proc/$what" ] && grep -q keypost "/proc/$what/cmdline" 2>/dev/null; then
                    kill -TERM "$what" 2>/dev/null || true
                fi ;;
            postfix)
                postfix -c "$what" status >/dev/null 2>&1 && postfix -c "$what" stop >/dev/null 2>&1
                ;;
            esac
        done < "$WORK/servers"
    fi
    # cgroups this run made (bench.py removes them; this is for a killed run)
    for d in /sys/fs/cgroup/kpbench-*-"$BENCH_PID"-* /sys/fs/cgroup/cpuacct/kpbench-*-"$BENCH_PID"-* \
             /sys/fs/cgroup/unified/kpbench-*-"$BENCH_PID"-*; do
        [ -d "$d" ] || continue
        for p in $(cat "$d/cgroup.procs" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
        sleep 0.2
        rmdir "$d" 2>/dev/null || true
    done
    if [ "${BENCH_KEEP:-}" = 1 ] || [ "$status" != 0 ]; then
        echo "bench: work directory kept: $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$status"
}
BENCH_PID=none
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- file descriptors for the 10,000-session sweep (client and server)
hard=$(ulimit -Hn)
[ "$hard" = unlimited ] && hard=1048576
[ "$hard" -gt 1048576 ] && hard=1048576
ulimit -n "$hard"
if [ "$hard" -lt 10100 ]; then
    echo "bench: warning: ulimit -n is $hard; 10,000 sessions need about 10,100 descriptors per process" >&2
fi

# ---- test PKI: a private CA, a server certificate, a client certificate
PKI="$WORK/pki"
mkdir "$PKI"
chmod 755 "$PKI"
(
    cd "$PKI"
    q() { "$@" >/dev/null 2>&1; }
    q openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout ca.key -out ca.crt -days 30 -subj "/CN=Bench CA" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign
    leaf() { # NAME EKU
        printf 'basicConstraints=critical,CA:FALSE\nextendedKeyUsage=%s\nsubjectAltName=DNS:%s\n' \
            "$2" "$1" > "$1.ext"
        q openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
            -keyout "$1.key" -out "$1.csr" -subj "/CN=$1"
        q openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 \
            -extfile "$1.ext" -out "$1.crt"
        chmod 644 "$1.key" "$1.crt" # a throw-away test key; the servers read it
    }
    leaf mx.bench.test serverAuth
    leaf client.bench.test clientAuth,serverAuth
)

# ---- the runs
CMD="make bench"
[ "${BENCH_QUICK:-}" = 1 ] && CMD="BENCH_QUICK=1 make bench"
echo "bench: work directory $WORK; $(nproc) CPUs; load average $(cut -d' ' -f1-3 /proc/loadavg)"
set -- --work "$WORK" --pki "$PKI" --smtpblast "$WORK/smtpblast" --keypost "$WORK/keypost" \
    --out "$ROOT/bench/RESULTS.md" --command "$CMD" \
    --duration "${BENCH_DURATION:-20}" --postfix-maxproc "${BENCH_POSTFIX_MAXPROC:-1000}" \
    --servers "${BENCH_SERVERS:-keypost,postfix}" --only-scenarios "${BENCH_SCENARIOS:-}" \
    --note "${BENCH_NOTE:-}" --t0 "$T0" --analysis-file "$ROOT/bench/analysis.md"
[ "${BENCH_QUICK:-}" = 1 ] && set -- "$@" --quick
python3 bench/bench.py "$@" &
BENCH_PID=$!
wait "$BENCH_PID" || { s=$?; echo "bench: bench.py failed ($s)" >&2; exit "$s"; }

# ---- the plot
if grep -q '^[0-9]' "$WORK/sweep.dat" 2>/dev/null; then
    gnuplot -e "datafile='$WORK/sweep.dat'; outfile='$ROOT/bench/sweep.png'; pfmax=${BENCH_POSTFIX_MAXPROC:-1000}" \
        bench/plot.gp &&
        echo "bench: wrote bench/sweep.png"
    cp "$WORK/sweep.dat" "$ROOT/bench/sweep.dat"
fi
cp "$WORK/results.json" "$ROOT/bench/results.json"
echo "bench: done in $(( $(date +%s) - T0 )) s; see bench/RESULTS.md"
