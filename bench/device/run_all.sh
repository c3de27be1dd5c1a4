#!/usr/bin/env bash
# One call on the GPU machine: every backend's conformance suite (in
# parallel, each capped), then short benches with the peers in the same call.
# Run from a snapshot holding the dev machine's build in BUILD (default
# build) and .devdeps/*.deb (ocl-icd, libvulkan1, libcmocka0):
#   bash bench/device/run_all.sh
# Output: $OUT/summary.txt (step lines) and $OUT/logs.tgz (every log).
set -uo pipefail
cd "$(dirname "$0")/../.."
B="${BUILD:-build}"
OUT="${OUT:-/tmp/stem-device}"
L=/tmp/stem-device-logs
mkdir -p "$OUT" "$L"
S="$OUT/summary.txt"
say() { echo "$*" | tee -a "$S"; }
t_start=$SECONDS

for f in .devdeps/*.deb; do dpkg -x "$f" /; done
ldconfig
export LD_LIBRARY_PATH="$PWD/$B:${LD_LIBRARY_PATH:-}"
nv_icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -f "$nv_icd" ] && export VK_DRIVER_FILES="$nv_icd"
stem="$B/tools/stem"

say "date $(date -u +%FT%TZ) commit $(cat COMMIT 2>/dev/null || echo unknown)"
say "gpu $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null)"
say "cpu $(lscpu | sed -n 's/^Model name: *//p') x $(nproc)"
"$stem" info > "$L/info.txt" 2>&1
cat "$L/info.txt" >> "$S"

# Global device index of the first device of backend $1 whose line matches $2.
dev() { grep -E "^ *\[[0-9]+\]\*? +$1:" "$L/info.txt" | grep -i -- "$2" | head -1 |
        sed -E 's/^ *\[([0-9]+)\].*/\1/'; }

# ---- phase 1: suites in parallel (16 cores: 4 threads each)
suite() { # suite NAME SECONDS ENV...
    local name=$1 secs=$2; shift 2
    ( env "$@" OMP_NUM_THREADS=4 timeout -k 5 "$secs" "$B/tests/test_conformance" \
        --summary "$L/sum-$name.txt" > "$L/conf-$name.log" 2>&1
      echo "rc=$?" >> "$L/sum-$name.txt" ) &
}
suite cuda 250 STEM_TEST_ONLY=cuda STEM_TEST_REQUIRE=cuda
suite opencl 250 STEM_TEST_ONLY=opencl STEM_TEST_REQUIRE=opencl
suite vulkan 250 STEM_TEST_ONLY=vulkan STEM_TEST_REQUIRE=vulkan
suite cpu-avx512 250 STEM_TEST_ONLY=cpu STEM_TEST_REQUIRE=cpu STEM_CPU_MAX_ISA=avx512
wait
for n in cuda opencl vulkan cpu-avx512; do
    say "== suite $n: $(grep -h -E "^($n|${n%-*}):|rc=" "$L/sum-$n.txt" 2>/dev/null | tr '\n' ' ')" \
        "ok-so-far=$(grep -c '^\[       OK \]' "$L/conf-$n.log") failed=$(grep -c '^\[  FAILED  \]' "$L/conf-$n.log")"
    grep -h '^\[  FAILED  \]' "$L/conf-$n.log" | head -8 >> "$S"
done
say "phase 1 done at $((SECONDS - t_start)) s"

# ---- phase 2: benches, one at a time, peers in the same call
step() { # step NAME SECONDS CMD...
    local name=$1 secs=$2; shift 2
    local t0=$SECONDS
    timeout -k 5 "$secs" "$@" > "$L/$name.txt" 2>&1
    say "== $name rc=$? $((SECONDS - t0)) s"
    cat "$L/$name.txt" >> "$S"
}
llama=(--hq 32 --hkv 8 --d 128 --markdown --quiet)
[ -x "$B/fma_peak" ] && step fma-peak 15 "$B/fma_peak" 0.5
step cpu-f32 60 "$stem" bench --backend cpu "${llama[@]}" --dtype f32 --n 8192,16384 --warmup 0 --repeat 1
step cpu-bf16 40 "$stem" bench --backend cpu "${llama[@]}" --dtype bf16 --n 16384 --warmup 0 --repeat 1
step torch-cpu 60 python3 -u bench/cpu/torch_sdpa.py --n 8192,16384 --d 128 --dtypes fp32,bf16 --repeat 1
[ -x "$B/stem_cuda_bench" ] && step cuda-bench 60 "$B/stem_cuda_bench" 8192 32768 131072
step sdpa-peers 50 python3 -u bench/cuda/sdpa_peers.py 8192 32768 131072
ocl=$(dev opencl nvidia)
[ -n "$ocl" ] && step opencl-nvidia 60 "$stem" bench --device "$ocl" "${llama[@]}" --dtype bf16 --n 8192,16384 --warmup 1 --repeat 3
vk=$(dev vulkan nvidia)
[ -n "$vk" ] && step vulkan-nvidia 60 "$stem" bench --device "$vk" "${llama[@]}" --dtype bf16 --n 8192 --warmup 1 --repeat 3
say "all done at $((SECONDS - t_start)) s"
tar czf "$OUT/logs.tgz" -C "$L" .
