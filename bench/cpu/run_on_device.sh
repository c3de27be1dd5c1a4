#!/usr/bin/env bash
# CPU backend on the GPU machine's Xeon (AVX-512, AMX), in one call:
# `stem info` and the conformance suite under each ISA cap (amx, avx512,
# avx2, scalar; in parallel, 4 threads each), the FMA / AMX peak probe, then
# `stem bench --backend cpu` (dense and Stem) at 4K-32K for f32, bf16 and
# f16, d 128 and 64, and torch CPU SDPA on the same shapes. Outputs in
# /tmp/stem-cpu-device, packed into $OUT/cpu-device.tgz when OUT is set.
# Run from a folder holding bench/cpu/ and a build (BUILD, default build:
# tools/stem, tests/test_conformance, libstem.so*), with devdeps/*.deb
# (libcmocka0) beside them when the test binary needs it:
#   BUILD=bin bash bench/cpu/run_on_device.sh
# CONF_S (default 120) limits each conformance run; NS_SMALL / NS_BIG pick
# the sizes timed with warm-up (SMALL_RUNS, default 2 runs after 1) and
# without (1 run); PEAK_S (default 0.25) is the peak probe's time per run.
set -uo pipefail
cd "$(dirname "$0")/../.."
out=/tmp/stem-cpu-device
build="${BUILD:-build}"
mkdir -p "$out"
log="$out/steps.log"
step() { # step NAME SECONDS CMD...: run with a timeout, log rc and time
    local name=$1 secs=$2
    shift 2
    local t0=$SECONDS
    echo "== $name (limit ${secs}s)" | tee -a "$log" >&2
    timeout -k 5 "$secs" "$@"
    local rc=$?
    echo "== $name: rc=$rc, $((SECONDS - t0)) s" | tee -a "$log" >&2
}

{
    date -u +%FT%TZ
    cat COMMIT 2>/dev/null || git rev-parse --short HEAD 2>/dev/null || echo "commit unknown"
    lscpu | grep -E "Model name|^CPU\(s\)|Thread|Core|Socket|L1d|L2|L3|MHz"
    grep -o -w -E "avx512f|avx512bw|avx512vl|avx512_bf16|avx512_fp16|amx_tile|amx_bf16|amx_fp16|amx_int8" /proc/cpuinfo | sort -u | tr '\n' ' '
    echo
    uname -r
    nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null || true
} > "$out/machine.txt" 2>&1
cat "$out/machine.txt"

if ls devdeps/*.deb >/dev/null 2>&1; then # libcmocka for the test binary
    mkdir -p /tmp/devdeps && for f in devdeps/*.deb; do dpkg -x "$f" /tmp/devdeps; done
    export LD_LIBRARY_PATH="$(find /tmp/devdeps -name '*.so*' -printf '%h\n' | sort -u | tr '\n' ':')${LD_LIBRARY_PATH:-}"
fi
export LD_LIBRARY_PATH="$(cd "$build" && pwd):${LD_LIBRARY_PATH:-}"
stem="$build/tools/stem"
for cap in default amx avx512 avx2 scalar; do
    if [ $cap = default ]; then "$stem" info; else STEM_CPU_MAX_ISA=$cap "$stem" info; fi |
        grep -E "isa=" | sed "s/^/$cap: /"
done | tee "$out/stem-info.txt"

# Conformance, every CPU case, under each cap at once (4 threads each).
t0=$SECONDS
for cap in amx avx512 avx2 scalar; do
    STEM_TEST_ONLY=cpu STEM_TEST_REQUIRE=cpu STEM_CPU_MAX_ISA=$cap OMP_NUM_THREADS=4 \
        timeout -k 5 "${CONF_S:-120}" "$build/tests/test_conformance" \
        --summary "$out/conf-$cap-summary.txt" > "$out/conf-$cap.log" 2>&1 &
done
wait
echo "== conformance x4: $((SECONDS - t0)) s" | tee -a "$log"
for cap in amx avx512 avx2 scalar; do
    echo "$cap: $(grep -h '^cpu:' "$out/conf-$cap-summary.txt" 2>/dev/null || echo 'cut off:') ok=$(grep -c '^\[       OK \]' "$out/conf-$cap.log") failed=$(grep -c '^\[  FAILED  \]' "$out/conf-$cap.log")"
    grep -h -A3 "FAILED \]" "$out/conf-$cap.log" | head -12
done | tee -a "$log"

# Peaks: fp32 FMA (AVX2, AVX-512) and bf16 AMX, 1 thread and all.
if cc -O2 -fopenmp bench/cpu/fma_peak.c -o /tmp/fma_peak 2>"$out/fma_peak-build.txt"; then
    step peak 30 /tmp/fma_peak "${PEAK_S:-0.25}" | tee "$out/peak.tsv"
fi

# stem bench (Llama-3-8B layer: Hq 32, Hkv 8), then torch on the same shapes.
small="${NS_SMALL:-4096,8192}"
big="${NS_BIG:-16384,32768}"
for dt in f32 bf16 f16; do
    for d in 128 64; do
        step "stem-$dt-d$d" 90 bash -c "
            '$stem' bench --backend cpu --hq 32 --hkv 8 --markdown --quiet --dtype $dt --d $d --n $small ${SMALL_RUNS:---warmup 1 --repeat 2}
            '$stem' bench --backend cpu --hq 32 --hkv 8 --markdown --quiet --dtype $dt --d $d --n $big --warmup 0 --repeat 1 | grep '^| [0-9]'" \
            2>&1 | tee "$out/stem-$dt-d$d.md"
    done
done
if python3 -c "import torch" 2>/dev/null; then
    for dt in fp32 bf16 fp16; do
        step "torch-$dt" $([ $dt = fp16 ] && echo 60 || echo 90) env PYTHONUNBUFFERED=1 python3 bench/cpu/torch_sdpa.py --n "$small,$big" \
            --d 128,64 --dtypes $dt --warmup 1 --warmup-max-n 8192 --repeat 1 2>&1 |
            tee "$out/torch-$dt.tsv"
    done
else
    echo "no torch: peer not timed" | tee -a "$log"
fi
[ -n "${OUT:-}" ] && tar czf "$OUT/cpu-device.tgz" -C "$out" .
echo "done; outputs in $out"
