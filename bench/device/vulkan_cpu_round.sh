#!/usr/bin/env bash
# One GPU-machine call after cuda_opencl_round.sh: the Vulkan backend on the
# NVIDIA driver (bench/vulkan/device_check.sh: suites on the KHR, NV and plain
# paths, bf16 through bf16 matrices and through f16 copies, f32 through split
# copies; benches beside SDPA), then the CPU backend on the Xeon: the FMA /
# AMX peak probe, dense and Stem beside torch CPU SDPA (bf16 on AMX, f32 on
# AVX-512), and the sparse scaling of the AMX table (fixed k_start sweep).
# Carry: BUILD (default build-dev-carry, with fma_peak), .devdeps, .gl, COMMIT.
# Output: $OUT/summary.txt, $OUT/vulkan.tgz, $OUT/cpu.txt. ~9 minutes.
set -uo pipefail
cd "$(dirname "$0")/../.."
B=${BUILD:-build-dev-carry}; O=${OUT:-/tmp/vulkan-cpu-round}
mkdir -p "$O"; S=$O/summary.txt; : > "$S"
say() { echo "$*" | tee -a "$S"; }
t0=$SECONDS
# 1. CPU on the Xeon first (nothing else running yet).
export LD_LIBRARY_PATH=$PWD/$B:${LD_LIBRARY_PATH:-}
C=$O/cpu.txt; : > "$C"
step() { echo "== $*" >> "$C"; timeout -k 5 "${T:-120}" "$@" >> "$C" 2>&1; echo "rc=$?" >> "$C"; }
lscpu | grep -E "Model name|^CPU\(s\)|Thread|MHz" >> "$C"
for cap in default amx avx512; do
    if [ $cap = default ]; then "$B/tools/stem" info; else STEM_CPU_MAX_ISA=$cap "$B/tools/stem" info; fi 2>&1 |
        grep -E "isa=" | sed "s/^/$cap: /" >> "$C"
done
T=60 step "$B/fma_peak" 0.5
llama=(--backend cpu --hq 32 --hkv 8 --d 128 --markdown --quiet --warmup 1 --repeat 2)
T=120 step "$B/tools/stem" bench "${llama[@]}" --dtype bf16 --n 8192,16384,32768
T=90 step "$B/tools/stem" bench "${llama[@]}" --dtype f32 --n 8192
# sparse scaling on AMX: fixed k_start at 16K (128 blocks per row): all, about 1/4
for k in 128 32; do
    T=60 step "$B/tools/stem" bench "${llama[@]}" --dtype bf16 --n 16384 --k-start $k
done
T=200 step python3 bench/cpu/torch_sdpa.py --n 8192,16384,32768 --d 128 --dtypes bf16 --warmup 1 --repeat 2
T=60 step python3 bench/cpu/torch_sdpa.py --n 8192 --d 128 --dtypes fp32 --warmup 1 --repeat 2
grep -E '^(==|\| *[0-9]|avx|amx|rc=|default|amx:|avx512:)' "$C" >> "$S"
say "cpu part $((SECONDS - t0)) s"
# 2. Vulkan (bf16 on the NV path goes through f16 copies).
OUT=/tmp/vk-check BUILD=$B NS=8192,32768 SUITE_S=${SUITE_S:-110} BENCH_S=60 \
    bash bench/vulkan/device_check.sh > /tmp/vk-check.out 2>&1
cat /tmp/vk-check/summary.txt >> "$S" 2>/dev/null
tar czf "$O/vulkan.tgz" -C /tmp/vk-check . 2>/dev/null
say "vulkan part $((SECONDS - t0)) s"
say "total $((SECONDS - t0)) s"
