#!/bin/sh
# Builds the libFuzzer targets in tests/fuzz/ with clang (ASan + UBSan)
# against keypost's sources (every src/*/*.c but src/main.c) in build-fuzz/,
# writes seed corpora, and runs each target for FUZZ_SECONDS (default 20).
# Prints one line per target:
#   fuzz TARGET: ok (N runs)
#   fuzz TARGET: FAILED
# and exits non-zero when any target fails to build or finds a crash.
# Libraries and include directories are the Makefile's (LIBS, CPPFLAGS), so
# the targets link like build/keypost does.
# Environment: FUZZ_SECONDS, FUZZ_CC (default clang), FUZZ_MAX_LEN (8192),
# FUZZ_LIBS (extra libraries to link).
set -u
cd "$(dirname "$0")/.." || exit 1

SECONDS_PER_TARGET=${FUZZ_SECONDS:-20}
CC=${FUZZ_CC:-clang}
MAX_LEN=${FUZZ_MAX_LEN:-8192}
OUT=build-fuzz
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"

# A variable's value as the Makefile assigns it (":=", "=" or "+=" lines).
make_var() {
    sed -n "s/^$1[[:space:]]*[:+]*=[[:space:]]*//p" Makefile 2>/dev/null | tr '\n' ' '
}
MK_CPPFLAGS=$(make_var CPPFLAGS)
MK_LIBS=$(make_var LIBS)
BASE_LIBS="-levent_openssl -levent_core -levent_pthreads -lssl -lcrypto -lpthread"
CFLAGS="-std=c11 -D_GNU_SOURCE -g -O1 -Wall -Wextra -Isrc $MK_CPPFLAGS $SAN"
LIBS="${MK_LIBS:-$BASE_LIBS} ${FUZZ_LIBS:-}"

TARGETS=""
for f in tests/fuzz/fuzz_*.c; do
    [ -f "$f" ] && TARGETS="$TARGETS $(basename "$f" .c)"
done

status=0
fail_all() { # fail_all REASON
    echo "fuzz.sh: $1" >&2
    for t in $TARGETS; do
        echo "fuzz $t: FAILED"
    done
    exit 1
}

[ -n "$TARGETS" ] || { echo "fuzz.sh: no targets in tests/fuzz/" >&2; exit 1; }
command -v "$CC" >/dev/null 2>&1 || fail_all "$CC not found (apt-get install clang)"
mkdir -p "$OUT/obj" || fail_all "cannot create $OUT"

# ---- build ---------------------------------------------------------------
# Each source file becomes an object (rebuilt when it or any header changed);
# the objects go into an archive so that a target links only what it uses.
stale() { # stale OBJ FILE...: OBJ is missing or older than a FILE
    [ -f "$1" ] || return 0
    obj_=$1
    shift
    [ -n "$(find "$@" -newer "$obj_" 2>/dev/null | head -1)" ]
}
objs=""
build_failed=""
for src in src/*/*.c; do
    [ "$src" = src/main.c ] && continue
    obj="$OUT/obj/$(echo "$src" | sed 's|^src/||; s|/|_|g; s|\.c$|.o|')"
    objs="$objs $obj"
    stale "$obj" "$src" src/*/*.h Makefile || continue
    # shellcheck disable=SC2086
    if ! $CC $CFLAGS -fsanitize=fuzzer-no-link -c -o "$obj" "$src" 2>"$OUT/build.log"; then
        cat "$OUT/build.log" >&2
        rm -f "$obj"
        build_failed="$build_failed $src"
    fi
done
[ -z "$build_failed" ] || fail_all "cannot compile:$build_failed"
rm -f "$OUT/libkeypost-fuzz.a"
# shellcheck disable=SC2086
ar rcs "$OUT/libkeypost-fuzz.a" $objs || fail_all "ar failed"

built=""
for t in $TARGETS; do
    # shellcheck disable=SC2086
    if $CC $CFLAGS -fsanitize=fuzzer -o "$OUT/$t" "tests/fuzz/$t.c" \
        "$OUT/libkeypost-fuzz.a" $LIBS 2>"$OUT/$t.build.log"; then
        built="$built $t"
    else
        cat "$OUT/$t.build.log" >&2
        echo "fuzz $t: FAILED"
        status=1
    fi
done

# ---- seed corpora --------------------------------------------------------
# Session inputs start with two control bytes (options, how to cut the rest);
# data reader inputs with two (size limit, piece size). See the targets.
seed_session() { # seed_session NAME CONTROL-BYTES TEXT
    printf "$2%s" "$3" > "$OUT/corpus-fuzz_session/$1"
}
seed_dataread() {
    printf "$2%s" "$3" > "$OUT/corpus-fuzz_dataread/$1"
}
seed_dataout() {
    printf "$2%s" "$3" > "$OUT/corpus-fuzz_dataout/$1"
}
seed_hdrrewrite() {
    printf "%s" "$2" > "$OUT/corpus-fuzz_hdrrewrite/$1"
}
CRLF=$(printf '\r\n_')
CRLF=${CRLF%_}
LF=$(printf '\n_')
LF=${LF%_}
CR=$(printf '\r')
O_UML=$(printf '\303\266')
U_UML=$(printf '\303\274')
mkdir -p "$OUT/corpus-fuzz_session" "$OUT/corpus-fuzz_dataread" "$OUT/corpus-fuzz_dataout" "$OUT/corpus-fuzz_hdrrewrite"

dialogue="EHLO client.example${CRLF}MAIL FROM:<bob@remote.example> SIZE=100 BODY=8BITMIME${CRLF}\
RCPT TO:<alice@example.org>${CRLF}RCPT TO:<postmaster>${CRLF}DATA${CRLF}\
From: bob@remote.example${CRLF}Subject: hello${CRLF}${CRLF}Hi Alice,${CRLF}..dot${CRLF}.${CRLF}\
RSET${CRLF}NOOP${CRLF}VRFY alice${CRLF}HELP${CRLF}QUIT${CRLF}"
seed_session dialogue '\000\000' "$dialogue"
seed_session dialogue-pieces '\000\007' "$dialogue"
seed_session starttls '\020\000' "EHLO client.example${CRLF}STARTTLS${CRLF}EHLO client.example${CRLF}\
MAIL FROM:<bob@remote.example>${CRLF}RCPT TO:<alice@example.org>${CRLF}DATA${CRLF}x${CRLF}.${CRLF}QUIT${CRLF}"
seed_session smuggle '\001\000' "HELO client.example${CRLF}MAIL FROM:<>${CRLF}RCPT TO:<alice@example.org>${CRLF}\
DATA${CRLF}body${LF}.${LF}MAIL FROM:<evil@x.example>${CRLF}RCPT TO:<v@example.org>${CRLF}DATA${CRLF}x${CRLF}.${CRLF}"
seed_session relay '\004\000' "EHLO localhost${CRLF}MAIL FROM:<a@b.example>${CRLF}\
RCPT TO:<c@other.example>${CRLF}RCPT TO:<\"q> x\"@example.org>${CRLF}DATA${CRLF}.${CRLF}QUIT${CRLF}"
seed_session too-big '\002\003' "EHLO c${CRLF}MAIL FROM:<a@b.example>${CRLF}RCPT TO:<a@example.org>${CRLF}DATA${CRLF}\
0123456789012345678901234567890123456789012345678901234567890123456789${CRLF}\
0123456789012345678901234567890123456789012345678901234567890123456789${CRLF}\
0123456789012345678901234567890123456789012345678901234567890123456789${CRLF}.${CRLF}"
seed_session utf8 '\014\000' "EHLO c${CRLF}MAIL FROM:<j${O_UML}rg@b.example> SMTPUTF8${CRLF}\
RCPT TO:<m${U_UML}ller@example.org>${CRLF}DATA${CRLF}x${CRLF}.${CRLF}"
seed_session smtps '\140\100' "EHLO c${CRLF}MAIL FROM:<a@b.example>${CRLF}RCPT TO:<a@example.org>${CRLF}DATA${CRLF}"

seed_dataread message '\014\000' "Subject: x${CRLF}${CRLF}body${CRLF}..dot${CRLF}.${CRLF}QUIT${CRLF}"
seed_dataread smuggle '\014\003' "a${LF}.${LF}b${CRLF}.${LF}c${LF}.${CRLF}d${CRLF}.${CRLF}"
seed_dataread bare-cr '\014\001' "a${CR}b${CRLF}${CR}.${CRLF}.${CR}x${CRLF}.${CRLF}"
seed_dataread small-limit '\005\002' "0123456789${CRLF}0123456789${CRLF}.${CRLF}"
seed_dataout message '\005\000' "Subject: x${CRLF}${CRLF}body${CRLF}.dot${CRLF}"
seed_dataout smuggle '\000\003' "a${CR}.${CR}${LF}MAIL${LF}.${LF}b${CR}.${CR}c${CRLF}.${CRLF}"
seed_dataout long '\004\000' "0123456789012345678901234567890123456789${CRLF}.012345678901${CR}"
seed_hdrrewrite list "From: A <old@example.org>${CRLF}To: \"B, C\" <x@aaaa.test>, old@example.org,${CRLF}\
 y@aaaa.test (z)${CRLF}Cc: group: old@example.org, <x@aaaa.test>;${CRLF}Subject: old@example.org${CRLF}"
printf '\000\001a\r\n\000.\r\nb\r\n.\000\r\n' > "$OUT/corpus-fuzz_dataout/nul"

# issue 11: MTA-STS. The first byte picks the parser (fuzz_mtasts.c).
mkdir -p "$OUT/corpus-fuzz_mtasts"
seed_mtasts() {
    printf "$2%s" "$3" > "$OUT/corpus-fuzz_mtasts/$1"
}
seed_mtasts policy '\000' "version: STSv1${CRLF}mode: enforce${CRLF}mx: mail.example.com${CRLF}\
mx: *.example.net${CRLF}max_age: 604800${CRLF}"
seed_mtasts policy-lf '\000' "mode: testing${LF}mx: a.example${LF}max_age: 1${LF}version: STSv1${LF}x: y${LF}"
seed_mtasts http '\001' "HTTP/1.1 200 OK${CRLF}Content-Type: text/plain${CRLF}Content-Length: 41${CRLF}${CRLF}\
version: STSv1${LF}mode: none${LF}max_age: 86400${LF}"
seed_mtasts chunked '\002' "HTTP/1.1 200 OK${CRLF}Content-Type: text/plain; charset=utf-8${CRLF}\
Transfer-Encoding: chunked${CRLF}${CRLF}f${CRLF}version: STSv1${LF}${CRLF}0${CRLF}${CRLF}"
seed_mtasts redirect '\001' "HTTP/1.1 301 Moved${CRLF}Location: https://x.example/${CRLF}${CRLF}"
seed_mtasts txt '\003' "v=STSv1; id=20160831085700Z;"
# end issue 11: MTA-STS

# issue 12: the sendmail command's message reader (fuzz_mailmsg.c): the
# first byte is the options (bit 0 -i, bit 1 -t), the rest standard input.
mkdir -p "$OUT/corpus-fuzz_mailmsg"
seed_mailmsg() {
    printf "$2%s" "$3" > "$OUT/corpus-fuzz_mailmsg/$1"
}
seed_mailmsg cron '\002' "To: root, \"A, B\" <a@x.example>${LF}Bcc: (c) b@x.example${LF}Subject: s${LF}${LF}body${LF}.${LF}after"
seed_mailmsg dots '\001' "Subject: d${LF}${LF}.${LF}..${LF}.${CR}${LF}x${CR}.${CR}${LF}.${CRLF}last"
seed_mailmsg group '\003' "Cc: team: a@x.example, b@x.example;${LF} ${LF}To:${LF}${LF}${CR}.${CR}"
# end issue 12: sendmail
# issue 11: TLSRPT. The first byte picks the input (fuzz_tlsrpt.c).
mkdir -p "$OUT/corpus-fuzz_tlsrpt"
TAB=$(printf '\t')
printf '\000%s\n%s\n' \
    "1${TAB}1764460800${TAB}a.test${TAB}sts${TAB}version: STSv1%0Amode: enforce${TAB}success${TAB}mx.a.test${TAB}192.0.2.1${TAB}192.0.2.2${TAB}" \
    "1${TAB}1764460800${TAB}a.test${TAB}tlsa${TAB}3 1 1 00ff${TAB}tlsa-invalid${TAB}mx%22%09.a.test${TAB}::1${TAB}::2${TAB}no%25 match" \
    > "$OUT/corpus-fuzz_tlsrpt/lines"
printf '\001%s\n%s\n' "v=spf1 -all" "v=TLSRPTv1; rua=mailto:r%2Bx@a.test,https://h.test:8443/v1" \
    > "$OUT/corpus-fuzz_tlsrpt/txt"
# end issue 11: TLSRPT

# ---- run -----------------------------------------------------------------
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
for t in $built; do
    log="$OUT/$t.log"
    "./$OUT/$t" -max_total_time="$SECONDS_PER_TARGET" -max_len="$MAX_LEN" -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$OUT/crash-$t-" \
        "$OUT/corpus-$t" >"$log" 2>&1
    rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -1)
    [ -n "$runs" ] || runs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -1)
    if [ "$rc" = 0 ] && [ -n "$runs" ]; then
        echo "fuzz $t: ok ($runs runs)"
    else
        grep -E 'ERROR|SUMMARY|runtime error|fuzz_|Test unit written|#[0-9]+ ' "$log" |
            grep -vE '^#[0-9]+ +(NEW|REDUCE|pulse|INITED|RELOAD)' | head -30 | sed 's/^/  | /' >&2
        echo "fuzz $t: FAILED"
        status=1
    fi
done
exit $status
