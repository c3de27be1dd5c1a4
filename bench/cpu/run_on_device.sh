#!/usr/bin/env bash
# CPU backend on the GPU machine's Xeon (AVX-512): conformance per ISA, the
# FMA peak, `stem bench --backend cpu` and torch CPU SDPA on the same shapes,
# everything under $OUT. Run from a snapshot with the dev machine's build
# folder carried (BUILD, default build) and .devdeps/*.deb (libcmocka0).
# Every step has its own timeout and a failing step does not stop the rest;
# the limits add up to 8 minutes.
#   bash bench/cpu/run_on_device.sh
# NS (default 4096,8192,16384) and BIG (default 32768) choose the bench sizes.
set -uo pipefail
cd "$(dirname "$0")/../.."
out="${OUT:-/tmp/stem-cpu-device}"
build="${BUILD:-build}"
mkdir -p "$out"
log="$out/steps.log"
exec 3>&1 # step lines go to the terminal and steps.log, never into a step's output file
step() { # step NAME SECONDS CMD...: run with a timeout, log rc and time
    local name=$1 secs=$2
    shift 2
    local t0=$SECONDS
    echo "== $name (limit ${secs}s)" | tee -a "$log" >&3
    timeout -k 5 "$secs" "$@"
    local rc=$?
    echo "== $name: rc=$rc, $((SECONDS - t0)) s" | tee -a "$log" >&3
}

{
    date -u +%FT%TZ
    git rev-parse --short HEAD 2>/dev/null || echo "commit unknown"
    lscpu | grep -E "Model name|^CPU\(s\)|Thread|Core|Socket|L1d|L2|L3|MHz"
    grep -o -w -E "avx512f|avx512bw|avx512vl|avx512_bf16|avx512_fp16|amx_tile|amx_bf16" /proc/cpuinfo | sort -u | tr '\n' ' '
    echo
    nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null || true
} > "$out/machine.txt" 2>&1
cat "$out/machine.txt"

# Test-time libraries (libcmocka) from the carried .deb files.
if ls .devdeps/*.deb >/dev/null 2>&1; then
    if ! (for f in .devdeps/*.deb; do dpkg -x "$f" / || exit 1; done; ldconfig) 2>/dev/null; then
        mkdir -p /tmp/devdeps && for f in .devdeps/*.deb; do dpkg -x "$f" /tmp/devdeps; done
        export LD_LIBRARY_PATH="$(find /tmp/devdeps -name '*.so*' -printf '%h\n' | sort -u | tr '\n' ':')${LD_LIBRARY_PATH:-}"
    fi
fi

if [ ! -x "$build/tools/stem" ]; then # no carried build: the library and tool only
    step build 120 bash -c "cmake -S . -B '$build' -DCMAKE_BUILD_TYPE=Release -DSTEM_BUILD_TESTS=OFF >/dev/null && cmake --build '$build' -j$(nproc) >/dev/null"
fi
stem="$build/tools/stem"
# The carried binaries' RUNPATH names the dev machine's build folder.
export LD_LIBRARY_PATH="$(cd "$build" && pwd):${LD_LIBRARY_PATH:-}"
"$stem" info > "$out/stem-info.txt" 2>&1
STEM_CPU_MAX_ISA=avx2 "$stem" info >> "$out/stem-info.txt" 2>&1
grep -q "isa=avx512" "$out/stem-info.txt" ||
    echo "WARNING: the CPU backend does not run its AVX-512 kernels here" | tee -a "$log"

# Conformance: the whole suite on AVX-512, a short pass on AVX2.
if [ -x "$build/tests/test_conformance" ]; then
    STEM_TEST_ONLY=cpu STEM_TEST_REQUIRE=cpu STEM_CPU_MAX_ISA=avx512 \
        step conformance-avx512 150 "$build/tests/test_conformance" \
        --summary "$out/conformance-avx512-summary.txt" > "$out/conformance-avx512.log" 2>&1
    STEM_TEST_ONLY=cpu STEM_TEST_REQUIRE=cpu STEM_CPU_MAX_ISA=avx2 STEM_TEST_FILTER=stem_d \
        step conformance-avx2-short 40 "$build/tests/test_conformance" \
        --summary "$out/conformance-avx2-summary.txt" > "$out/conformance-avx2.log" 2>&1
    grep -h -E "^(cpu|total):" "$out"/conformance-*-summary.txt 2>/dev/null | tee -a "$log"
    grep -c "^\[       OK \]" "$out"/conformance-*.log | tee -a "$log" # passed so far, if cut off
    grep -h "FAILED" "$out"/conformance-*.log | head -20 | tee -a "$log"
else
    echo "no $build/tests/test_conformance: conformance not run" | tee -a "$log"
fi

# FMA peak (the ceiling the GFLOP/s are compared with).
if cc -O2 -fopenmp bench/cpu/fma_peak.c -o /tmp/fma_peak 2>"$out/fma_peak-build.txt"; then
    step fma-peak 15 /tmp/fma_peak 0.5 > "$out/fma_peak.tsv" 2>&1
    cat "$out/fma_peak.tsv"
fi

# stem bench, Llama-3-8B layer (Hq 32 / Hkv 8), dense and Stem through the
# same kernels.
ns="${NS:-4096,8192,16384}"
big="${BIG:-32768}"
nmid="${ns#*,}" # the sizes after the first
bench() { # bench NAME SECONDS ARGS...
    local name=$1 secs=$2
    shift 2
    step "bench-$name" "$secs" "$stem" bench --backend cpu --hq 32 --hkv 8 --markdown --quiet \
        "$@" > "$out/bench-$name.md" 2>&1
    cat "$out/bench-$name.md"
}
bench f32-d128 60 --dtype f32 --d 128 --n "$ns" --warmup 1 --repeat 2
bench f32-d128-big 50 --dtype f32 --d 128 --n "$big" --warmup 0 --repeat 1
bench bf16-d128 40 --dtype bf16 --d 128 --n "$nmid" --warmup 1 --repeat 2
bench f32-d64 40 --dtype f32 --d 64 --n "$ns,$big" --warmup 0 --repeat 1

# Torch CPU SDPA on the same shapes (fp32 and bf16, causal, GQA).
if python3 -c "import torch" 2>/dev/null; then
    step torch-d128 45 python3 -u bench/cpu/torch_sdpa.py --n "$ns" --d 128 \
        --dtypes fp32,bf16 --repeat 2 > "$out/torch-d128.tsv" 2>&1
    cat "$out/torch-d128.tsv"
    step torch-big 35 python3 -u bench/cpu/torch_sdpa.py --n "$big" --d 128,64 --dtypes fp32,bf16 \
        --repeat 1 > "$out/torch-big.tsv" 2>&1
    cat "$out/torch-big.tsv"
else
    echo "no torch: peer not timed" | tee -a "$log"
fi
echo "done; outputs in $out"
