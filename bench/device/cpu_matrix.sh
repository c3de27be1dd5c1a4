#!/usr/bin/env bash
# The issue-19 call for bench/results/cpu.md: on the GPU machine's Xeon, in
# one run, the FMA / AMX peaks; the lazy-rescaling A/B (this library with
# STEM_CPU_LAZY_RESCALE 1 and 0, and the library before the 2026-12-08
# softmax changes, carried in $BUILD/old-cpu); key tiles of 256 against 128;
# the f32 path's prepacking against packing per item;
# dense and Stem at 4K-32K for bf16, f16 and f32, d 128 and 64, each beside
# torch CPU SDPA in the same
# dtype (bf16 with a warm-up and two timed runs; f16 and f32 one timed run,
# warm-up up to 8K, so the whole matrix fits); then the CPU conformance suite
# under the amx, avx512, avx2 and scalar caps side by side (4 threads each),
# and the kernel unit tests. The deadline cuts steps from the end.
# Carry: BUILD (default build-dev-carry, with fma_peak and old-cpu/), .devdeps, COMMIT.
# DEADLINE seconds (default 540). Output: ${OUT:-/tmp/cpu-matrix}/{summary.txt,cpu.txt,suite-*.log}.
set -uo pipefail
cd "$(dirname "$0")/../.."
B=$PWD/${BUILD:-build-dev-carry}; OLD=$B/old-cpu; O=${OUT:-/tmp/cpu-matrix}
mkdir -p "$O"; S=$O/summary.txt; : > "$S"; C=$O/cpu.txt; : > "$C"
say() { echo "$*" | tee -a "$S"; }
t0=$SECONDS; DEADLINE=${DEADLINE:-540}
for f in .devdeps/*.deb; do [ -f "$f" ] && dpkg -x "$f" /; done; ldconfig
left() { [ $((SECONDS - t0 + $1)) -le "$DEADLINE" ] || { echo "(skipped: $2)" >> "$C"; return 1; }; }
step() { local t=$1; shift; left "$t" "$*" || return 0; echo "== $*" >> "$C"
         timeout -k 5 "$t" "$@" >> "$C" 2>&1; echo "rc=$? $((SECONDS - t0)) s" >> "$C"; }
say "cpu_matrix: date $(date -u +%FT%TZ) commit $(cat COMMIT 2>/dev/null) old $(cat "$OLD/COMMIT" 2>/dev/null)"
lscpu | grep -E "Model name|^CPU\(s\)|Thread|MHz" | tee -a "$S"
for cap in default amx avx512; do
    if [ $cap = default ]; then LD_LIBRARY_PATH=$B "$B/tools/stem" info; else
        STEM_CPU_MAX_ISA=$cap LD_LIBRARY_PATH=$B "$B/tools/stem" info; fi 2>&1 | grep -E "isa=" | sed "s/^/$cap: /" >> "$S"
done
step 30 "$B/fma_peak" 0.25
new=(env LD_LIBRARY_PATH=$B "$B/tools/stem" bench --backend cpu --hq 32 --hkv 8 --markdown --quiet)
old=(env LD_LIBRARY_PATH=$OLD "$B/tools/stem" bench --backend cpu --hq 32 --hkv 8 --markdown --quiet)
R2=(--warmup 1 --repeat 2)
# 1. lazy rescaling A/B at 8K, alternated
for r in 1 2; do
    step 30 "${new[@]}" "${R2[@]}" --d 128 --dtype bf16 --n 8192
    step 30 env STEM_CPU_LAZY_RESCALE=0 "${new[@]}" "${R2[@]}" --d 128 --dtype bf16 --n 8192
    step 30 "${old[@]}" "${R2[@]}" --d 128 --dtype bf16 --n 8192
done
step 30 "${new[@]}" "${R2[@]}" --d 64 --dtype bf16 --n 8192
step 30 env STEM_CPU_LAZY_RESCALE=0 "${new[@]}" "${R2[@]}" --d 64 --dtype bf16 --n 8192
# key tiles of two blocks (STEM_CPU_KEY_TILE=256): half the O loads and stores a key
for r in 1 2; do
    step 30 env STEM_CPU_KEY_TILE=256 "${new[@]}" "${R2[@]}" --d 128 --dtype bf16 --n 8192
    step 30 "${new[@]}" "${R2[@]}" --d 128 --dtype bf16 --n 8192
done
# the f32 path's prepacked K/V (new 2026-12-08) against packing per item
step 40 env STEM_CPU_PREPACK=0 "${new[@]}" "${R2[@]}" --d 128 --dtype f32 --n 8192
step 40 "${new[@]}" "${R2[@]}" --d 128 --dtype f32 --n 8192
# 2. the matrix, ours then torch per (dtype, d)
T=(python3 bench/cpu/torch_sdpa.py --hq 32 --hkv 8)
NS=4096,8192,16384,32768
for d in 128 64; do
    step 90 "${new[@]}" "${R2[@]}" --d $d --dtype bf16 --n $NS
    step 90 "${T[@]}" --n $NS --d $d --dtypes bf16 --warmup 1 --repeat 2
done
for dt in f32 f16; do
    tdt=$([ $dt = f32 ] && echo fp32 || echo fp16)
    for d in 128 64; do
        step 90 "${new[@]}" --warmup 0 --repeat 1 --d $d --dtype $dt --n $NS
        step 90 "${T[@]}" --n $NS --d $d --dtypes $tdt --warmup 1 --warmup-max-n 8192 --repeat 1
    done
done
# 3. correctness: the kernel tests, then the suite under each cap side by side
LD_LIBRARY_PATH=$B timeout 30 "$B/tests/test_cpu_exp2" >> "$C" 2>&1; echo "test_cpu_exp2 rc=$?" >> "$C"
LD_LIBRARY_PATH=$B timeout 30 "$B/tests/test_cpu_amx_layout" > "$O/amx-layout.log" 2>&1
echo "test_cpu_amx_layout rc=$? $(grep -cE '^\[ +OK +\]' "$O/amx-layout.log") ok" >> "$C"
if left 60 "suites"; then
    lim=$((DEADLINE - (SECONDS - t0) - 5))
    for cap in amx avx512 avx2 scalar; do
        env LD_LIBRARY_PATH=$B STEM_TEST_ONLY=cpu STEM_TEST_REQUIRE=cpu STEM_CPU_MAX_ISA=$cap OMP_NUM_THREADS=4 \
            timeout -k 5 $lim "$B/tests/test_conformance" > "$O/suite-$cap.log" 2>&1 &
    done
    wait
    for cap in amx avx512 avx2 scalar; do
        echo "suite $cap: ok=$(grep -c '^\[       OK \]' "$O/suite-$cap.log") failed=$(grep -c '^\[  FAILED  \]' "$O/suite-$cap.log") | $(tail -n 1 "$O/suite-$cap.log")" >> "$C"
    done
    echo "suites done $((SECONDS - t0)) s" >> "$C"
fi
grep -E '^(==|\| *[0-9]|rc=|suite|test_cpu|#|[a-z0-9_ -]+	)' "$C" >> "$S"
say "total $((SECONDS - t0)) s"
