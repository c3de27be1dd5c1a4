#!/usr/bin/env bash
# OpenCL suite + bench on the GPU machine (the lead runs it there from a
# snapshot, build folder and .devdeps carried; see /work/shared/device.md):
#   bash bench/opencl/run_on_device.sh [BUILD_DIR]      (default: build)
# Writes under $OUT (default ./out-opencl): env.txt, info.txt, conformance.log,
# build_error.log, bench-<device>.md/.json, sdpa.txt. Every step has its own
# timeout; a failing step is recorded and the script goes on.
set -u
cd "$(dirname "$0")/../.."
BUILD=${1:-build}
OUT=${OUT:-$PWD/out-opencl}
mkdir -p "$OUT"
STATUS="$OUT/status.txt"
: > "$STATUS"
step() { # step NAME SECONDS CMD...: run with a timeout, log rc and wall time
    local name=$1 secs=$2; shift 2
    local t0=$(date +%s)
    timeout -k 10 "$secs" "$@"
    local rc=$?
    echo "$name rc=$rc wall_s=$(( $(date +%s) - t0 ))" | tee -a "$STATUS"
    return $rc
}

# 1. The ICD loader (absent there): unpack the carried .deb files.
for f in .devdeps/*.deb; do [ -e "$f" ] && dpkg -x "$f" / ; done
ldconfig 2>/dev/null || true
{ date -u; git rev-parse HEAD 2>/dev/null; nvidia-smi -L 2>/dev/null; lscpu | grep -E 'Model name|^CPU\(s\)'; ls /etc/OpenCL/vendors 2>/dev/null; } > "$OUT/env.txt" 2>&1
step info 60 "$BUILD/tools/stem" info > "$OUT/info.txt" 2>&1

# 2. The conformance suite on every OpenCL device (NVIDIA and PoCL on the
#    Xeon); the failing-kernel-build and program-cache checks.
STEM_TEST_ONLY=opencl STEM_TEST_REQUIRE=opencl \
    step conformance 1500 "$BUILD/tests/test_conformance" --summary "$OUT/conformance-summary.txt" \
    > "$OUT/conformance.log" 2>&1
STEM_TEST_REQUIRE=opencl step build_error 300 "$BUILD/test_opencl_build_error" > "$OUT/build_error.log" 2>&1

# 3. stem bench, Llama-8B layer (Hq 32, Hkv 8, d 128, bf16), dense + Stem,
#    on each OpenCL device by global index; the GPU at 8K..64K, PoCL at 8K.
grep -E '^\s*\[[0-9]+\]\*? *opencl:' "$OUT/info.txt" | while read -r line; do
    idx=$(echo "$line" | sed -E 's/^\s*\[([0-9]+)\].*/\1/')
    name=$(echo "$line" | sed -E 's/.*opencl:[0-9]+ +//; s/[^A-Za-z0-9]+/_/g' | cut -c1-40)
    if echo "$line" | grep -qiE 'nvidia|h100|h200'; then ns=8192,16384,32768,65536; secs=540
    else ns=8192; secs=400; fi
    step "bench_$name" "$secs" "$BUILD/tools/stem" bench --device "$idx" --n "$ns" \
        --hq 32 --hkv 8 --d 128 --dtype bf16 --markdown > "$OUT/bench-$name.md" 2>"$OUT/bench-$name.err"
done

# 4. Peer in the same call: torch SDPA (FlashAttention-2 backend), same shape.
step sdpa 300 python3 - > "$OUT/sdpa.txt" 2>&1 <<'PY'
import torch, torch.nn.functional as F
from torch.nn.attention import sdpa_kernel, SDPBackend
print(torch.cuda.get_device_name())
for n in (8192, 16384, 32768, 65536):
    q = torch.randn(1, 32, n, 128, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(1, 8, n, 128, device="cuda", dtype=torch.bfloat16)
    v = torch.randn_like(k)
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        for _ in range(3):
            F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        ts = []
        for _ in range(5):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record(); F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True); b.record()
            torch.cuda.synchronize(); ts.append(a.elapsed_time(b))
    print(f"sdpa flash bf16 N={n}: {sorted(ts)[2]:.2f} ms")
PY
cat "$STATUS"
