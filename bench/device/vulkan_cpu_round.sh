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
# A/B of the attention path in the same call: the previous code path, and the
# new one without the AMX/vector overlap (STEM_CPU_* switches, cpu_attention.c).
T=120 step env STEM_CPU_ATTN_LEGACY=1 "$B/tools/stem" bench "${llama[@]}" --dtype bf16 --n 8192,16384,32768
T=120 step env STEM_CPU_PIPE=0 "$B/tools/stem" bench "${llama[@]}" --dtype bf16 --n 8192,16384,32768
T=60 step "$B/tools/stem" bench "${llama[@]}" --dtype f16 --n 8192,16384
T=60 step "$B/tools/stem" bench --backend cpu --hq 32 --hkv 8 --d 64 --markdown --quiet --warmup 1 --repeat 2 --dtype bf16 --n 8192,16384
T=90 step "$B/tools/stem" bench "${llama[@]}" --dtype f32 --n 8192
# sparse scaling on AMX: fixed k_start at 16K (128 blocks per row): all, about 1/4
for k in 128 32; do
    T=60 step "$B/tools/stem" bench "${llama[@]}" --dtype bf16 --n 16384 --k-start $k
done
T=200 step python3 bench/cpu/torch_sdpa.py --n 8192,16384,32768 --d 128 --dtypes bf16 --warmup 1 --repeat 2
T=60 step python3 bench/cpu/torch_sdpa.py --n 8192 --d 128 --dtypes fp32 --warmup 1 --repeat 2
T=90 step python3 bench/cpu/torch_sdpa.py --n 8192,16384 --d 128 --dtypes fp16 --warmup 1 --repeat 2
T=90 step python3 bench/cpu/torch_sdpa.py --n 8192,16384 --d 64 --dtypes bf16 --warmup 1 --repeat 2
grep -E '^(==|\| *[0-9]|avx|amx|rc=|default|amx:|avx512:)' "$C" >> "$S"
say "cpu part $((SECONDS - t0)) s"
# CPU conformance under each ISA cap, beside the Vulkan part (which is GPU
# bound; the benches above are done): the new default path, its overlap in
# 16-row strips with grouped packing, and the previous path on AMX.
cpu_suites() {
    local spec
    for spec in amx:80: amx:60:STEM_CPU_PIPE=16,STEM_CPU_PREPACK_MB=0 amx:60:STEM_CPU_ATTN_LEGACY=1 \
                avx512:60: avx2:40: scalar:40:; do
        local cap=${spec%%:*} rest=${spec#*:}; local sec=${rest%%:*} extra=${rest#*:}
        local log=$O/cpu-suite-$cap${extra:+-${extra//[=,]/_}}.log
        env ${extra//,/ } STEM_TEST_ONLY=cpu STEM_TEST_REQUIRE=cpu STEM_CPU_MAX_ISA=$cap OMP_NUM_THREADS=8 \
            timeout -k 5 "$sec" "$B/tests/test_conformance" > "$log" 2>&1
        echo "rc=$?" >> "$log"
    done
    timeout 60 "$B/tests/test_cpu_amx_layout" > "$O/cpu-amx-layout.log" 2>&1; echo "rc=$?" >> "$O/cpu-amx-layout.log"
}
cpu_suites & cpu_pid=$!
# 2. Vulkan (bf16 on the NV path goes through f16 copies).
OUT=/tmp/vk-check BUILD=$B NS=8192,32768 SUITE_S=${SUITE_S:-110} BENCH_S=60 \
    bash bench/vulkan/device_check.sh > /tmp/vk-check.out 2>&1
cat /tmp/vk-check/summary.txt >> "$S" 2>/dev/null
tar czf "$O/vulkan.tgz" -C /tmp/vk-check . 2>/dev/null
say "vulkan part $((SECONDS - t0)) s"
wait $cpu_pid
for f in "$O"/cpu-suite-*.log "$O/cpu-amx-layout.log"; do
    say "$(basename "$f" .log): ok=$(grep -c '^\[       OK \]' "$f") failed=$(grep -c '^\[  FAILED  \]' "$f") $(grep -E '^cpu: [0-9]+ passed' "$f" | tail -1) $(tail -1 "$f")"
    grep -E '^\[  FAILED  \]' "$f" | sort -u | head -8 >> "$S"
done
say "total $((SECONDS - t0)) s"
