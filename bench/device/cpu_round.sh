#!/usr/bin/env bash
# One GPU-machine call for the CPU backend on the Xeon (issue 19): the FMA /
# AMX peak probe; dense bf16 / f32 (Llama-3-8B layer, Hq 32, Hkv 8) of this
# library against the previous one (OLD: carried in $BUILD/old-cpu, the
# build before the fused-scale softmax and the scalef exp2), alternated,
# beside torch CPU SDPA in the same call; then the CPU conformance suite
# under the amx cap and the kernel unit tests (the deadline cuts steps from
# the end, so the essentials come first).
# Carry: BUILD (default build-dev-carry, with fma_peak, old-cpu/ and phase/), .devdeps, COMMIT.
# DEADLINE seconds (default 560). Output: /tmp/cpu-round/{summary.txt,cpu.txt,suite-*.log}.
set -uo pipefail
cd "$(dirname "$0")/../.."
B=$PWD/${BUILD:-build-dev-carry}; OLD=$B/old-cpu; O=/tmp/cpu-round
mkdir -p "$O"; S=$O/summary.txt; : > "$S"; C=$O/cpu.txt; : > "$C"
say() { echo "$*" | tee -a "$S"; }
t0=$SECONDS; DEADLINE=${DEADLINE:-560}
for f in .devdeps/*.deb; do [ -f "$f" ] && dpkg -x "$f" /; done; ldconfig
left() { [ $((SECONDS - t0 + $1)) -le "$DEADLINE" ] || { echo "(skipped: $2)" >> "$C"; return 1; }; }
step() { local t=$1; shift; left "$t" "$*" || return 0; echo "== $*" >> "$C"
         timeout -k 5 "$t" "$@" >> "$C" 2>&1; echo "rc=$? $((SECONDS - t0)) s" >> "$C"; }
say "date $(date -u +%FT%TZ) commit $(cat COMMIT 2>/dev/null) old $(cat "$OLD/COMMIT" 2>/dev/null)"
lscpu | grep -E "Model name|^CPU\(s\)|Thread|MHz" | tee -a "$S"
for cap in default amx avx512; do
    if [ $cap = default ]; then LD_LIBRARY_PATH=$B "$B/tools/stem" info; else
        STEM_CPU_MAX_ISA=$cap LD_LIBRARY_PATH=$B "$B/tools/stem" info; fi 2>&1 | grep -E "isa=" | sed "s/^/$cap: /" >> "$S"
done
step 30 "$B/fma_peak" 0.25
# (arrays, not functions: step runs them under timeout)
new=(env LD_LIBRARY_PATH=$B "$B/tools/stem" bench)
old=(env LD_LIBRARY_PATH=$OLD "$B/tools/stem" bench)
L=(--backend cpu --hq 32 --hkv 8 --markdown --quiet --warmup 1 --repeat 2)
# essentials first (the deadline cuts from the end)
step 30 "${new[@]}" "${L[@]}" --d 128 --dtype bf16 --n 8192
step 30 "${old[@]}" "${L[@]}" --d 128 --dtype bf16 --n 8192
step 60 python3 bench/cpu/torch_sdpa.py --n 8192,16384 --d 128,64 --dtypes bf16 --warmup 1 --repeat 2
step 30 "${new[@]}" "${L[@]}" --d 128 --dtype bf16 --n 16384
step 30 "${old[@]}" "${L[@]}" --d 128 --dtype bf16 --n 16384
step 30 "${new[@]}" "${L[@]}" --d 64 --dtype bf16 --n 8192,16384
step 30 "${old[@]}" "${L[@]}" --d 64 --dtype bf16 --n 8192,16384
step 30 env STEM_CPU_LAZY_RESCALE=0 "${new[@]}" "${L[@]}" --d 128 --dtype bf16 --n 8192
# correctness on AMX: the kernel unit tests and the suite under the amx cap
LD_LIBRARY_PATH=$B timeout 30 "$B/tests/test_cpu_exp2" >> "$C" 2>&1; echo "test_cpu_exp2 rc=$?" >> "$C"
if left 70 "suite amx"; then
    env LD_LIBRARY_PATH=$B STEM_TEST_ONLY=cpu STEM_TEST_REQUIRE=cpu STEM_CPU_MAX_ISA=amx OMP_NUM_THREADS=16 \
        timeout -k 5 $((DEADLINE - (SECONDS - t0) - 5)) "$B/tests/test_conformance" > "$O/suite-amx.log" 2>&1
    echo "rc=$?" >> "$O/suite-amx.log"
    echo "suite amx: ok=$(grep -c '^\[       OK \]' "$O/suite-amx.log") failed=$(grep -c '^\[  FAILED  \]' "$O/suite-amx.log") $(tail -n 1 "$O/suite-amx.log") $((SECONDS - t0)) s" >> "$C"
fi
step 40 env LD_LIBRARY_PATH=$B/phase "$B/tools/stem" bench "${L[@]}" --d 128 --dtype bf16 --n 8192
step 30 "${new[@]}" "${L[@]}" --d 128 --dtype bf16 --n 8192
step 30 "${old[@]}" "${L[@]}" --d 128 --dtype bf16 --n 8192
step 40 "${new[@]}" "${L[@]}" --d 128 --dtype f32 --n 8192
step 40 python3 bench/cpu/torch_sdpa.py --n 8192 --d 128 --dtypes fp32 --warmup 1 --repeat 2
step 60 "${new[@]}" --backend cpu --hq 32 --hkv 8 --markdown --quiet --warmup 0 --repeat 1 --d 128 --dtype bf16 --n 32768
grep -E '^(==|\| *[0-9]|rc=|phase |suite |test_cpu|[a-z0-9_ -]+	)' "$C" >> "$S"
say "total $((SECONDS - t0)) s"
