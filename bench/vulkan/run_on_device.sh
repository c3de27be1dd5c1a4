#!/usr/bin/env bash
# One call on the GPU machine: the Vulkan suite on the NVIDIA driver (both
# attention paths), then Vulkan, our CUDA backend and PyTorch SDPA on the same
# shapes in the same call. No glslc or nvcc there: the build comes from the dev
# machine, configured with -DSTEM_VULKAN=ON -DSTEM_CUDA=ON, e.g.
#   run: carry ["build-dv", ".devdeps", ".gl"],
#        command "BUILD=build-dv bash bench/vulkan/run_on_device.sh"
# .devdeps: libcmocka0 (apt-get download). .gl: the Vulkan loader and the glvnd
# libraries the NVIDIA ICD needs (libvulkan1 libegl1 libglvnd0 libopengl0 libgl1
# libglx0 libgles2, amd64 .debs). Env: BUILD, NS (8192,16384,32768,65536),
# SUITES (coop,plain), SUITE_S (seconds per suite), PLAIN_NS (plain-path bench sizes,
# empty: none), VARIANTS (extra coop runs, each
# a ;-joined env list, e.g. STEM_VULKAN_COOP_ROWS=64). Everything lands in $OUT.
set -uo pipefail
cd "$(dirname "$0")/../.."
out="${OUT:-/tmp/stem-vulkan}"
build="${BUILD:-build}"
ns="${NS:-8192,16384,32768,65536}"
suites="${SUITES:-coop,plain}"
suite_s="${SUITE_S:-200}"
mkdir -p "$out"
S="$out/steps.txt"
log() { echo "== $*" | tee -a "$S"; }
step() { # step NAME SECONDS CMD...: time-limited, output kept, never aborts the script
    local name=$1 limit=$2; shift 2
    log "$name (limit ${limit}s)"
    local t0=$SECONDS
    timeout --kill-after=10 "$limit" "$@" >"$out/$name.txt" 2>&1
    echo "   rc=$? after $((SECONDS - t0))s" | tee -a "$S"
    tail -n 12 "$out/$name.txt" | sed 's/^/   /' | tee -a "$S" >/dev/null
}

for f in .gl/*.deb .devdeps/*.deb; do [ -f "$f" ] && dpkg -x "$f" /; done
ldconfig
export LD_LIBRARY_PATH="$PWD/$build${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -f "$icd" ] && export VK_DRIVER_FILES="$icd"
stem="$build/tools/stem"
{
    echo "date $(date -u +%FT%TZ) commit $(cat COMMIT 2>/dev/null || git rev-parse --short HEAD 2>/dev/null)"
    nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
    lscpu | sed -n 's/^Model name: *//p'
} | tee -a "$S"
"$stem" info >"$out/info.txt" 2>&1
cat "$out/info.txt" >>"$S"
vk=$(grep -E '^ *\[[0-9]+\]\*? +vulkan:' "$out/info.txt" | grep -iv llvmpipe | head -1 |
     sed -E 's/^ *\[([0-9]+)\].*/\1/')
log "vulkan device index: ${vk:-none}"

# Suites: coop (default: cooperative-matrix attention for f16) and plain (STEM_VULKAN_COOP=0).
# VK_DRIVER_FILES names the NVIDIA driver only: lavapipe is CI's job.
export STEM_TEST_ONLY=vulkan STEM_TEST_REQUIRE=vulkan
for s in ${suites//,/ }; do
    coop=1; [ "$s" = plain ] && coop=0
    ( STEM_VULKAN_COOP=$coop timeout -k 5 "$suite_s" \
        "$build/tests/test_conformance" --summary "$out/sum-$s.txt" >"$out/suite-$s.log" 2>&1
      echo "rc=$?" >>"$out/sum-$s.txt" ) &
done
wait
for s in ${suites//,/ }; do
    log "suite $s: $(tr '\n' ' ' <"$out/sum-$s.txt") ok=$(grep -c '^\[       OK \]' "$out/suite-$s.log") failed=$(grep -c '^\[  FAILED  \]' "$out/suite-$s.log")"
    grep '^\[  FAILED  \]' "$out/suite-$s.log" | sort -u | head -12 >>"$S"
done
unset STEM_TEST_ONLY STEM_TEST_REQUIRE
# Long rows (32K keys) and XAttention at N=2048 against references, on the NVIDIA device.
[ -x "$build/tests/hardening/test_vk_limits" ] &&
    step vk-limits 120 "$build/tests/hardening/test_vk_limits"
# The non-finite policy cases on the other GPU backends built in (they share the conformance suite).
for be in cuda opencl; do
    grep -qE "^ +$be +available" "$out/info.txt" &&
        STEM_TEST_ONLY=$be STEM_TEST_FILTER=api_nonfinite step "nonfinite-$be" 60 "$build/tests/test_conformance"
done

# Llama-3.1-8B layer: Hq 32, Hkv 8, d 128, f16 (the cooperative-matrix path's dtype).
llama=(--hq 32 --hkv 8 --d 128 --dtype f16 --markdown --quiet --warmup 2 --repeat 5)
if [ -n "$vk" ]; then
    step bench-vulkan-coop 240 "$stem" bench --device "$vk" --n "$ns" "${llama[@]}"
    # Tuning variants of the coop path, shorter: env settings, space-separated, per variant.
    for var in ${VARIANTS:-}; do
        (export ${var//;/ }; step "bench-vulkan-${var//[^A-Za-z0-9]/_}" 120 \
            "$stem" bench --device "$vk" --n 8192,32768 "${llama[@]}")
    done
    [ -n "${PLAIN_NS-8192,16384}" ] && STEM_VULKAN_COOP=0 step bench-vulkan-plain 120 "$stem" bench \
        --device "$vk" --n "${PLAIN_NS-8192,16384}" "${llama[@]}"
fi
step bench-cuda 120 "$stem" bench --backend cuda --n "$ns" "${llama[@]}"
SDPA_DTYPE=f16 step sdpa-peers 120 python3 -u bench/cuda/sdpa_peers.py ${ns//,/ }
log "done at ${SECONDS}s"
