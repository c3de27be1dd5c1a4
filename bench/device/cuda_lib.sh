# Shared set-up of the CUDA device rounds (sourced, not run): paths, the
# summary log, the time budget and the suite / sanitizer / report helpers.
# The sourcing script sets ROUND (names /tmp/$ROUND-round and -logs) and
# runs from the repository root. Carry: BUILD (default build-dev-carry, with
# old/ holding the previous library for A/B rows), .devdeps, COMMIT.
B=$PWD/${BUILD:-build-dev-carry}; OLD=$B/old; O=${OUT:-/tmp/$ROUND-round}; L=/tmp/$ROUND-logs
mkdir -p "$O" "$L"; S=$O/summary.txt; : > "$S"
say() { echo "$*" | tee -a "$S"; }
finish() { say "total $((SECONDS - t0)) s"; tar czf "$O/logs.tgz" -C "$L" . 2>/dev/null; }
t0=$SECONDS
trap finish EXIT
for f in .devdeps/*.deb; do [ -f "$f" ] && dpkg -x "$f" /; done; ldconfig
DEADLINE=${DEADLINE:-570}
# left SECONDS WHAT: is there time for a step of SECONDS before DEADLINE?
left() { [ $((SECONDS - t0 + $1)) -le "$DEADLINE" ] || { say "(skipped: $2, $((SECONDS - t0)) s used)"; return 1; }; }
export PYTHONUNBUFFERED=1
say "date $(date -u +%FT%TZ) commit $(cat COMMIT 2>/dev/null) old $(cat "$OLD/COMMIT" 2>/dev/null)"
say "gpu $(nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader)"
CS=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
NCU=$(command -v ncu || ls /usr/local/cuda*/bin/ncu 2>/dev/null | head -1)
new() { LD_LIBRARY_PATH=$B "$@"; }
old() { LD_LIBRARY_PATH=$OLD "$@"; }
suite() { # suite LABEL SECONDS ENV...: the CUDA conformance suite, every case
    local l=$1 s=$2; shift 2
    env "$@" LD_LIBRARY_PATH=$B STEM_TEST_ONLY=cuda STEM_TEST_REQUIRE=cuda OMP_NUM_THREADS=4 \
        timeout -k 5 "$s" "$B/tests/test_conformance" > "$L/conf-$l.log" 2>&1
    echo "rc=$?" >> "$L/conf-$l.log"
}
san() { # san TOOL FILTER ENV...: compute-sanitizer on the cases FILTER names
    local t=$1 f=$2; shift 2
    local log="$L/san-$t-$f-$#.log"
    env "$@" LD_LIBRARY_PATH=$B STEM_TEST_ONLY=cuda STEM_TEST_REQUIRE=cuda STEM_TEST_FILTER=$f \
        OMP_NUM_THREADS=2 timeout 150 "$CS" --tool "$t" --error-exitcode 7 \
        "$B/tests/test_conformance" > "$log" 2>&1
    echo "rc=$?" >> "$log"
}
report_checks() { # the suites' and sanitizers' results into the summary
    for f in "$L"/conf-*.log; do
        say "$(basename "$f" .log): ok=$(grep -c '^\[       OK \]' "$f") failed=$(grep -c '^\[  FAILED  \]' "$f") $(grep -E '^cuda: [0-9]+ passed' "$f" | tail -1) $(tail -1 "$f")"
        grep -E '^\[  FAILED  \]' "$f" | sort -u | head -12 >> "$S"
        say "  d256 cases ok: $(grep -c '^\[       OK \].*_d256_' "$f")"
    done
    for f in "$L"/san-*.log; do
        say "$(basename "$f" .log): $(grep -E '^cuda: [0-9]+ passed' "$f" | tail -1) $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$f" | tail -1) $(tail -1 "$f")"
    done
}
