#!/usr/bin/env bash
# One GPU-machine call for the two CUDA switches of issue 14 that landed
# together: the fused scoring launch (STEM_CUDA_SCORE_FUSE, default on) and
# the persistent sm90 attention (STEM_CUDA_PERSISTENT=1, default off).
# Correctness first, timings after, so a call cut short still says what is
# safe:
#   1. stem_cuda_persist_check: persistent vs per-tile outputs bitwise equal
#      (a hang here skips every later persistent step);
#   2. in parallel: the CUDA suite on the default, the suite with
#      STEM_CUDA_PERSISTENT=1, and the score/select hashes of FUSE=0/1/8 and
#      PDL=1 (must all match FUSE=0);
#   3. compute-sanitizer memcheck (default, chunked), memcheck and racecheck
#      (persistent, one case each);
#   4. stem_cuda_bench default and persistent, FUSE=0 and PDL=1 at 8K-32K,
#      SDPA flash / cuDNN, per-kernel profile of the scoring.
#   5. (VK=1, the default) the Vulkan attention variants of
#      bench/vulkan/variant_ab.sh: suites of VK_SUITES beside the CUDA suites,
#      pipeline statistics and 32K benches of VK_BENCHES after the CUDA timings.
# Steps past the time budget (DEADLINE seconds, default 560) are skipped.
# Carry: BUILD (default build-dev-carry: libstem.so*, tests/test_conformance,
# tools/stem, stem_cuda_bench, stem_cuda_persist_check), .devdeps, .gl, COMMIT.
# Output: $OUT/summary.txt and $OUT/logs.tgz. ~9.5 minutes.
set -uo pipefail
cd "$(dirname "$0")/../.."
B=$PWD/${BUILD:-build-dev-carry}; O=${OUT:-/tmp/cuda-ab-round}; L=/tmp/cuda-ab-logs
mkdir -p "$O" "$L"; S=$O/summary.txt; : > "$S"
say() { echo "$*" | tee -a "$S"; }
finish() { say "total $((SECONDS - t0)) s"; tar czf "$O/logs.tgz" -C "$L" . 2>/dev/null; }
t0=$SECONDS
trap finish EXIT
for f in .devdeps/*.deb .gl/*.deb; do [ -f "$f" ] && dpkg -x "$f" /; done; ldconfig
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -f "$icd" ] && export VK_DRIVER_FILES="$icd"
DEADLINE=${DEADLINE:-560}
left() { [ $((SECONDS - t0 + $1)) -le "$DEADLINE" ] || { say "(skipped: $2, $((SECONDS - t0)) s used)"; return 1; }; }
VK=${VK:-1}
vk_ab() { OUT=$L/vk NO_UNPACK=1 BUILD=${BUILD:-build-dev-carry} bash bench/vulkan/variant_ab.sh; }
export LD_LIBRARY_PATH=$B:${LD_LIBRARY_PATH:-} PYTHONUNBUFFERED=1
say "date $(date -u +%FT%TZ) commit $(cat COMMIT 2>/dev/null)"
say "gpu $(nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader)"
CS=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)

say "== 1. persistent vs per-tile, bitwise (stem_cuda_persist_check 8192 32768)"
timeout -k 5 120 "$B/stem_cuda_persist_check" 8192 32768 > "$L/persist-check.log" 2>&1
prc=$?; cat "$L/persist-check.log" >> "$S"; say "persist check rc=$prc"
P_OK=0; [ $prc = 0 ] && P_OK=1

say "== 2. suites (default; persistent) and score hashes, in parallel"
suite() { # suite LABEL SECONDS ENV...
    local l=$1 s=$2; shift 2
    env "$@" STEM_TEST_ONLY=cuda STEM_TEST_REQUIRE=cuda OMP_NUM_THREADS=5 \
        timeout -k 5 "$s" "$B/tests/test_conformance" > "$L/conf-$l.log" 2>&1
    echo "rc=$?" >> "$L/conf-$l.log"
}
hashes() {
    for cfg in "STEM_CUDA_SCORE_FUSE=0" "STEM_CUDA_SCORE_FUSE=1" "STEM_CUDA_SCORE_FUSE=8" \
               "STEM_CUDA_SCORE_FUSE=1 STEM_CUDA_PDL=1" "STEM_CUDA_SCORE_FUSE=0 STEM_CUDA_SCORE_SPLIT=0"; do
        echo "cfg $cfg"
        (cd /tmp && env $cfg STEM_LIBRARY=$B/libstem.so PYTHONPATH=$OLDPWD/python timeout 100 python3 $OLDPWD/bench/cuda/score_hashes.py
        ) 2>&1 | tail -3
    done
}
suite default 190 &
[ $P_OK = 1 ] && suite persistent 190 STEM_CUDA_PERSISTENT=1 &
hashes > "$L/hashes.log" 2>&1 &
[ "$VK" = 1 ] && PARTS=suites SUITES="${VK_SUITES:-khr-only:15 nv:11}" SUITE_S=190 vk_ab > "$L/vk-suites.log" 2>&1 &
wait
[ "$VK" = 1 ] && grep -E '^== suite|FAILED' "$L/vk/summary.txt" >> "$S"
say "suites and hashes $((SECONDS - t0)) s"
for f in "$L"/conf-*.log; do
    say "$(basename "$f" .log): ok=$(grep -c '^\[       OK \]' "$f") failed=$(grep -c '^\[  FAILED  \]' "$f") $(grep -E '^cuda: [0-9]+ passed' "$f" | tail -1) $(tail -1 "$f")"
    grep -E '^\[  FAILED  \]' "$f" | sort -u | head -12 >> "$S"
done
ref=$(grep -m1 '^HASH' "$L/hashes.log")
grep -E '^(cfg|HASH)' "$L/hashes.log" | while read -r a rest; do
    if [ "$a" = cfg ]; then c=$rest; else say "  $c: $([ "$a $rest" = "$ref" ] && echo SAME || echo DIFFERENT)"; fi
done
echo "$ref" >> "$S"; grep -v -E '^(cfg|HASH)' "$L/hashes.log" | head -5 >> "$S"

san() { # san TOOL FILTER ENV...
    local t=$1 f=$2; shift 2
    out=$(env "$@" STEM_TEST_ONLY=cuda STEM_TEST_REQUIRE=cuda STEM_TEST_FILTER=$f OMP_NUM_THREADS=8 \
          timeout 75 "$CS" --tool "$t" --error-exitcode 7 "$B/tests/test_conformance" 2>&1)
    local rc=$?
    echo "$out" > "$L/san-$t-$f-$#.log"
    say "$t $f $*: rc=$rc $(echo "$out" | grep -E '^cuda: [0-9]+ passed' | tail -1) $(echo "$out" | grep -E 'ERROR SUMMARY' | tail -1)"
}
say "== 3. timings"
NS="8192 16384 32768 65536 131072"
if left 80 "default bench"; then
    say "== stem_cuda_bench default (fused scoring, per-tile attention)"
    timeout 100 "$B/stem_cuda_bench" $NS >> "$S" 2>&1
fi
left 90 "SDPA peers" && { say "== SDPA peers"; timeout 110 python3 bench/cuda/sdpa_peers.py $NS >> "$S" 2>&1; }
if [ $P_OK = 1 ] && left 50 "persistent bench"; then
    say "== stem_cuda_bench STEM_CUDA_PERSISTENT=1, 8K 32K 128K"
    STEM_CUDA_PERSISTENT=1 timeout 70 "$B/stem_cuda_bench" 8192 32768 131072 >> "$S" 2>&1
fi
say "== 4. sanitizers"
left 60 "memcheck chunked" && san memcheck chunked_c3
if [ $P_OK = 1 ]; then
    left 30 "persistent racecheck" && san racecheck stem_d128_h1x1_n1000_b128_s8_bf16 STEM_CUDA_PERSISTENT=1
    left 30 "persistent memcheck" && san memcheck stem_d128_h1x1_n1000_b128_s8_bf16 STEM_CUDA_PERSISTENT=1
fi
if [ "$VK" = 1 ] && left 60 "vulkan stats and benches"; then
    say "== 5. Vulkan variants: pipeline statistics and 32K benches"
    PARTS=stats,bench BENCHES="${VK_BENCHES:-nv:0 nv:11 khr-only:0 khr-only:15}" BENCHES_BF16="${VK_BENCHES_BF16:-khr-only:15}" \
        NS=32768 BENCH_S=40 OUT=$L/vk NO_UNPACK=1 BUILD=${BUILD:-build-dev-carry} \
        timeout 150 bash bench/vulkan/variant_ab.sh > "$L/vk-bench.log" 2>&1
    sed -n '/^== stats\|^stats\|^   \|^== bench\|^|/p' "$L/vk/summary.txt" | grep -v '^== suite' | head -60 >> "$S"
fi
for cfg in "STEM_CUDA_SCORE_FUSE=1:8192 32768" "STEM_CUDA_SCORE_FUSE=0:8192"; do
    left 35 "profile ${cfg%%:*}" || continue
    say "== per-kernel profile, ${cfg%%:*} (scoring kernels)"
    (cd /tmp && env ${cfg%%:*} STEM_LIBRARY=$B/libstem.so PYTHONPATH=$OLDPWD/python timeout 40 python3 $OLDPWD/bench/cuda/profile_stages.py ${cfg#*:}) 2>&1 |
        grep -E '^####|attn|score|phase|value|select|group|prep' >> "$S"
done
if left 25 "PDL bench"; then
    say "== stem_cuda_bench STEM_CUDA_PDL=1, 8K"
    STEM_CUDA_PDL=1 timeout 25 "$B/stem_cuda_bench" 8192 >> "$S" 2>&1
fi
