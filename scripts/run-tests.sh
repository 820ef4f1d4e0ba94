#!/bin/sh
# Runs every keypost test and ends with one line "N passed, N failed":
#  1. unit tests (cmocka) and integration tests (pytest, real daemon on
#     loopback, real peers) against the normal build;
#  2. the same again built with AddressSanitizer and UndefinedBehaviorSanitizer;
#  3. the libFuzzer targets for a bounded time.
set -u
cd "$(dirname "$0")/.."

PYTHON=/usr/bin/python3
passed=0
failed=0
failures=""

count() { # count NAME PASSED FAILED
    passed=$((passed + $2))
    failed=$((failed + $3))
    [ "$3" -gt 0 ] && failures="$failures $1"
    return 0
}

run_unit() { # run_unit BUILD_DIR LABEL
    for t in "$1"/tests/test_*; do
        [ -x "$t" ] || continue
        out=$("$t" 2>&1)
        rc=$?
        echo "$out" | grep -E '^\[  (PASSED|FAILED)|^\[  ERROR' | sed "s|^|$2 $(basename "$t"): |"
        p=$(echo "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' | tail -1)
        f=$(echo "$out" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' | tail -1)
        p=${p:-0}
        f=${f:-0}
        if [ "$rc" != 0 ] && [ "$f" = 0 ]; then
            echo "$out" | tail -20
            f=1
        fi
        count "$2:$(basename "$t")" "$p" "$f"
    done
}

run_integration() { # run_integration KEYPOST_BIN LABEL
    log=$(mktemp)
    (cd tests/integration && KEYPOST_BIN="$1" $PYTHON -m pytest -q -p no:cacheprovider \
        -o junit_family=xunit2 2>&1) > "$log"
    rc=$?
    tail -40 "$log" | grep -vE '^\s*$' | tail -25
    summary=$(grep -E '[0-9]+ (passed|failed)' "$log" | tail -1)
    p=$(echo "$summary" | sed -n 's/.* \([0-9][0-9]*\) passed.*/\1/p; s/^\([0-9][0-9]*\) passed.*/\1/p' | head -1)
    f=$(echo "$summary" | sed -n 's/.* \([0-9][0-9]*\) failed.*/\1/p; s/^\([0-9][0-9]*\) failed.*/\1/p' | head -1)
    e=$(echo "$summary" | sed -n 's/.* \([0-9][0-9]*\) error.*/\1/p' | head -1)
    p=${p:-0}
    f=$(( ${f:-0} + ${e:-0} ))
    if [ "$rc" != 0 ] && [ "$f" = 0 ]; then f=1; fi
    echo "$2 integration: $p passed, $f failed"
    count "$2:integration" "$p" "$f"
    rm -f "$log"
}

echo "== build"
make -s all unit || { echo "0 passed, 1 failed"; exit 1; }

echo "== unit tests"
run_unit build plain
echo "== integration tests"
run_integration "$PWD/build/keypost" plain

echo "== sanitizers (ASan + UBSan)"
SAN="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all"
if make -s BUILD=build-asan CFLAGS="$SAN" all unit; then
    export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:halt_on_error=1"
    export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
    run_unit build-asan asan
    run_integration "$PWD/build-asan/keypost" asan
else
    count "asan:build" 0 1
fi

echo "== fuzzing"
if [ -x scripts/fuzz.sh ] || [ -f scripts/fuzz.sh ]; then
    out=$(FUZZ_SECONDS="${FUZZ_SECONDS:-15}" sh scripts/fuzz.sh 2>&1)
    echo "$out" | grep -E '^fuzz '
    p=$(echo "$out" | grep -cE '^fuzz .*: ok')
    f=$(echo "$out" | grep -cE '^fuzz .*: FAILED')
    [ "$p" = 0 ] && [ "$f" = 0 ] && f=1 && echo "$out" | tail -20
    count fuzz "$p" "$f"
fi

[ -n "$failures" ] && echo "failing:$failures"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
