#!/usr/bin/env bash
# On the GPU machine (no glslc there): run the Vulkan suite and benchmark
# with a build made on the dev machine and carried along, e.g.
#   run: carry ["build", ".devdeps"], command "bash bench/vulkan/run_on_device.sh"
# Needs .devdeps/libvulkan1_*.deb and libcmocka0_*.deb (dev machine: mkdir -p .devdeps
# && cd .devdeps && apt-get download libvulkan1 libcmocka0). Writes everything to $OUT.
# Env: BUILD (default build), NS (default 8192,16384,32768,65536).
set -uo pipefail
cd "$(dirname "$0")/../.."
out="${OUT:-/tmp/stem-vulkan}"
build="${BUILD:-build}"
ns="${NS:-8192,16384,32768,65536}"
mkdir -p "$out"
log() { echo "== $*" | tee -a "$out/steps.txt"; }
step() { # step NAME SECONDS CMD...: run with a time limit, keep its output, never abort the script
    local name=$1 limit=$2; shift 2
    log "$name (limit ${limit}s)"
    local t0=$SECONDS
    timeout --kill-after=10 "$limit" "$@" >"$out/$name.txt" 2>&1
    local rc=$?
    echo "   rc=$rc after $((SECONDS - t0))s" | tee -a "$out/steps.txt"
    tail -n 5 "$out/$name.txt" | sed 's/^/   /'
    return 0
}

# The Vulkan loader from the .deb, unpacked beside the checkout (no root needed).
root="$PWD/.devroot"
mkdir -p "$root"
for f in .devdeps/*.deb; do [ -f "$f" ] && dpkg -x "$f" "$root"; done
loader=$(find "$root" -name 'libvulkan.so.1*' -type f 2>/dev/null | head -n 1)
[ -n "$loader" ] && export STEM_VULKAN_LIBRARY="$loader"
export LD_LIBRARY_PATH="$PWD/$build:$root/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
stem="$build/tools/stem"
{
    nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
    lscpu | grep "Model name"
    git rev-parse --short HEAD 2>/dev/null || echo "commit unknown"
    date -u
    echo "loader: ${STEM_VULKAN_LIBRARY:-system}"
} | tee "$out/card.txt"

# The driver's manifest is outside the loader's default search path on some hosts.
if ! "$stem" info 2>/dev/null | grep -q "vulkan  available"; then
    icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
    [ -f "$icd" ] || icd=$(find / -name 'nvidia_icd*.json' 2>/dev/null | head -n 1)
    export VK_DRIVER_FILES="$icd" VK_ICD_FILENAMES="$icd"
    log "no Vulkan device by default; VK_DRIVER_FILES=$icd"
fi
step info 60 "$stem" info

export STEM_TEST_ONLY=vulkan STEM_TEST_REQUIRE=vulkan
# One run per kernel path: today only the plain path exists (no cooperative-
# matrix kernels yet), so STEM_VULKAN_COOPMAT is not consulted by the library.
step suite 420 "$build/tests/test_conformance"
unset STEM_TEST_ONLY STEM_TEST_REQUIRE

# Llama-3.1-8B layer: Hq 32, Hkv 8, d 128, bf16; Stem and dense through our kernels.
step bench-vulkan 540 "$stem" bench --backend vulkan --n "$ns" --hq 32 --hkv 8 --d 128 \
    --dtype bf16 --warmup 1 --repeat 3 --markdown

# Peer in the same call: PyTorch SDPA (FlashAttention-2 backend), causal, GQA.
cat >"$out/sdpa.py" <<'PY'
import sys, torch
from torch.nn.attention import sdpa_kernel, SDPBackend
import torch.nn.functional as F
print("| N | SDPA flash ms | TFLOP/s (causal) |")
print("|---|---|---|")
for n in [int(x) for x in sys.argv[1].split(",")]:
    q = torch.randn(1, 32, n, 128, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(1, 8, n, 128, device="cuda", dtype=torch.bfloat16)
    v = torch.randn(1, 8, n, 128, device="cuda", dtype=torch.bfloat16)
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        for _ in range(3):
            F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        times = []
        for _ in range(7):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
            b.record()
            torch.cuda.synchronize()
            times.append(a.elapsed_time(b))
    ms = sorted(times)[len(times) // 2]
    flops = 4 * 32 * n * n * 128 / 2
    print(f"| {n} | {ms:.3f} | {flops / ms / 1e9:.1f} |", flush=True)
PY
step sdpa-flash 300 python3 "$out/sdpa.py" "$ns"
log done
