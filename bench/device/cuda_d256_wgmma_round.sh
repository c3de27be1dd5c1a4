#!/usr/bin/env bash
# One GPU-machine call for the sm90 (wgmma + TMA) head_dim 256 kernels:
# K / V in half-block tiles of 64 keys, two stages (issue 14). They are
# opt-in (STEM_CUDA_ATTN=sm90p) until this call has passed; every d256 step
# below names the family.
#   1. stem_cuda_persist_check --d256: the wgmma kernel against the mma.sync
#      one (already through the suite) on bf16 / f16, dense, random lists with
#      empty rows, batch 2, MHA, chunked calls, 100 tokens; then the
#      persistent-vs-per-tile bitwise check (the shared producer changed);
#   2. in parallel: the CUDA suite (default; STEM_CUDA_PERSISTENT=1) and
#      compute-sanitizer memcheck / racecheck on head_dim 256 block-128 cases;
#   (the persistent check and suite use STEM_CUDA_PERSISTENT=2, head-major items)
#   3. timings: head_dim 256 (Hq 16, Hkv 4) sm90p against mma.sync beside SDPA
#      flash and cuDNN; the previous library (OLD) against this one at d 128,
#      alternated, 32K and 128K; ncu of the d256 dense attention at 32K.
# DEADLINE seconds (default 570). Carry as cuda_d256_round.sh.
set -uo pipefail
cd "$(dirname "$0")/../.."
B=$PWD/${BUILD:-build-dev-carry}; OLD=$B/old; O=${OUT:-/tmp/cuda-d256w-round}; L=/tmp/cuda-d256w-logs
mkdir -p "$O" "$L"; S=$O/summary.txt; : > "$S"
say() { echo "$*" | tee -a "$S"; }
finish() { say "total $((SECONDS - t0)) s"; tar czf "$O/logs.tgz" -C "$L" . 2>/dev/null; }
t0=$SECONDS
trap finish EXIT
for f in .devdeps/*.deb; do [ -f "$f" ] && dpkg -x "$f" /; done; ldconfig
DEADLINE=${DEADLINE:-570}
left() { [ $((SECONDS - t0 + $1)) -le "$DEADLINE" ] || { say "(skipped: $2, $((SECONDS - t0)) s used)"; return 1; }; }
export PYTHONUNBUFFERED=1
say "date $(date -u +%FT%TZ) commit $(cat COMMIT 2>/dev/null) old $(cat "$OLD/COMMIT" 2>/dev/null)"
say "gpu $(nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader)"
CS=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
NCU=$(command -v ncu || ls /usr/local/cuda*/bin/ncu 2>/dev/null | head -1)
new() { LD_LIBRARY_PATH=$B "$@"; }
old() { LD_LIBRARY_PATH=$OLD "$@"; }

say "== 1. d256: wgmma against mma.sync; persistent against per-tile"
new timeout -k 5 90 "$B/stem_cuda_persist_check" --d256 > "$L/d256-check.log" 2>&1
drc=$?; cat "$L/d256-check.log" >> "$S"; say "d256 check rc=$drc"
STEM_CUDA_PERSISTENT=2 new timeout -k 5 120 "$B/stem_cuda_persist_check" 8192 32768 > "$L/persist-check.log" 2>&1
prc=$?; cat "$L/persist-check.log" >> "$S"; say "persist check (head-major) rc=$prc"

say "== 2. suites and sanitizers, in parallel"
suite() { # suite LABEL SECONDS ENV...
    local l=$1 s=$2; shift 2
    env "$@" LD_LIBRARY_PATH=$B STEM_TEST_ONLY=cuda STEM_TEST_REQUIRE=cuda OMP_NUM_THREADS=4 \
        timeout -k 5 "$s" "$B/tests/test_conformance" > "$L/conf-$l.log" 2>&1
    echo "rc=$?" >> "$L/conf-$l.log"
}
san() { # san TOOL FILTER ENV...
    local t=$1 f=$2; shift 2
    env "$@" LD_LIBRARY_PATH=$B STEM_TEST_ONLY=cuda STEM_TEST_REQUIRE=cuda STEM_TEST_FILTER=$f \
        OMP_NUM_THREADS=2 timeout 150 "$CS" --tool "$t" --error-exitcode 7 \
        "$B/tests/test_conformance" > "$L/san-$t-$f-$#.log" 2>&1
    echo "rc=$?" >> "$L/san-$t-$f-$#.log"
}
sans() {
    san memcheck xattention_d256_h4x1_n1000_b128_s8_bf16 STEM_CUDA_ATTN=sm90p
    san racecheck xattention_d256_h4x1_n1000_b128_s8_bf16 STEM_CUDA_ATTN=sm90p
    san memcheck stem_d256_h4x1_n1000_b128 STEM_CUDA_ATTN=sm90p
    san racecheck stem_d128_h1x1_n1000_b128_s8_bf16
}
suite default 200 &
suite persistent2 200 STEM_CUDA_PERSISTENT=2 &
suite sm90p 200 STEM_CUDA_ATTN=sm90p &
sans &
wait
say "suites and sanitizers $((SECONDS - t0)) s"
for f in "$L"/conf-*.log; do
    say "$(basename "$f" .log): ok=$(grep -c '^\[       OK \]' "$f") failed=$(grep -c '^\[  FAILED  \]' "$f") $(grep -E '^cuda: [0-9]+ passed' "$f" | tail -1) $(tail -1 "$f")"
    grep -E '^\[  FAILED  \]' "$f" | sort -u | head -12 >> "$S"
    say "  d256 cases ok: $(grep -c '^\[       OK \].*_d256_' "$f")"
done
for f in "$L"/san-*.log; do
    say "$(basename "$f" .log): $(grep -E '^cuda: [0-9]+ passed' "$f" | tail -1) $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$f" | tail -1) $(tail -1 "$f")"
done

say "== 3. timings"
if left 80 "d256 sm90p"; then
    say "== head_dim 256 (Hq 16, Hkv 4), STEM_CUDA_ATTN=sm90p: 8K 16K 32K 64K"
    STEM_CUDA_ATTN=sm90p STEM_BENCH_SHAPE=16,4,256 new timeout 80 "$B/stem_cuda_bench" 8192 16384 32768 65536 >> "$S" 2>&1
fi
if left 60 "d256 peers"; then
    say "== SDPA peers, head_dim 256"
    SDPA_SHAPE=16,4,256 timeout 70 python3 bench/cuda/sdpa_peers.py 8192 16384 32768 65536 >> "$S" 2>&1
fi
if [ $prc = 0 ] && left 40 "persistent 2 bench"; then
    say "== this library, STEM_CUDA_PERSISTENT=2 (head-major persistent), d 128, 32K 128K"
    STEM_CUDA_PERSISTENT=2 new timeout 40 "$B/stem_cuda_bench" 32768 131072 >> "$S" 2>&1
fi
if left 50 "d256 mma"; then
    say "== head_dim 256, mma.sync (STEM_CUDA_ATTN=mma): 8K 32K"
    STEM_CUDA_ATTN=mma STEM_BENCH_SHAPE=16,4,256 new timeout 50 "$B/stem_cuda_bench" 8192 32768 >> "$S" 2>&1
fi
for r in 1 2; do
    left 45 "A/B d128 32K round $r" || break
    say "== A/B d128 32K round $r: previous, then this library"
    old timeout 30 "$OLD/stem_cuda_bench" 32768 >> "$S" 2>&1
    new timeout 30 "$B/stem_cuda_bench" 32768 >> "$S" 2>&1
done
SEC="--section SpeedOfLight --section LaunchStats --section Occupancy --section WarpStateStats --section SchedulerStats"
if left 70 "ncu d256"; then
    say "== ncu, d256 32K dense attention (launch 0)"
    STEM_CUDA_ATTN=sm90p STEM_BENCH_SHAPE=16,4,256 new timeout 70 "$NCU" $SEC -k regex:stem_k_attn -c 1 "$B/stem_cuda_bench" 32768 > "$L/ncu-d256.txt" 2>&1
    say "ncu rc=$?"; sed -n '/stem_k_attn/,$p' "$L/ncu-d256.txt" | grep -vE '^ *-+ *$|^ *$|OPT |^ *(See|This|The|Check|is|to|of) |^ {10}' | head -60 >> "$S"
fi
if left 45 "A/B 128K"; then
    say "== previous / this library, d 128, 128K"
    old timeout 40 "$OLD/stem_cuda_bench" 131072 >> "$S" 2>&1
    new timeout 40 "$B/stem_cuda_bench" 131072 >> "$S" 2>&1
fi
