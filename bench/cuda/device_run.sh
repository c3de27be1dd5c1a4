#!/usr/bin/env bash
# Runs on the GPU machine from a copy of the tree holding a build made on the
# dev machine in BUILD (default build; libstem.so, tests/test_conformance,
# tools/stem, stem_cuda_bench):
#   bench/cuda/device_run.sh check|final OUTDIR
# check: CUDA conformance (every case) + a short bench of the sm90 and mma
#        kernels at 8K and 32K.
# final: conformance (cuda), compute-sanitizer memcheck / racecheck on a few
#        cases per kernel family, stem_cuda_bench for the sm90 kernel and the
#        mma.sync kernel at 8K-128K, the SDPA peers (FA2, cuDNN), all in one call.
set -uo pipefail
mode=$1 out=$2
B="${BUILD:-build}"
export LD_LIBRARY_PATH=$PWD/$B:${LD_LIBRARY_PATH:-}
export PYTHONUNBUFFERED=1
log=$out/log
mkdir -p "$out"
{ date -u; nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader;
  echo "commit $(cat COMMIT 2>/dev/null)"; "$B/tools/stem" info; } 2>&1 | tee -a "$log"

conformance() { # conformance LABEL SECONDS ENV...
    local label=$1 secs=$2; shift 2
    env "$@" STEM_TEST_ONLY=cuda STEM_TEST_REQUIRE=cuda timeout "$secs" "$B/tests/test_conformance" \
        > "$out/conf-$label.log" 2>&1
    echo "conformance $label rc=$? $(grep -E 'cuda: [0-9]+ passed' "$out/conf-$label.log" | tail -1)" | tee -a "$log"
    grep -E '^\[  FAILED  \]' "$out/conf-$label.log" | head -20 | tee -a "$log"
}
sanitize() { # sanitize FILTER [ENV...]
    local f=$1; shift
    for tool in memcheck racecheck; do
        env "$@" STEM_TEST_ONLY=cuda STEM_TEST_FILTER=$f timeout 90 compute-sanitizer --tool $tool \
            --error-exitcode 9 "$B/tests/test_conformance" > "$out/san.log" 2>&1
        echo "sanitizer $tool $f $* rc=$? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$out/san.log" | tail -1) $(grep -E 'cuda: [0-9]+ passed' "$out/san.log")" | tee -a "$log"
    done
}

if [ "$mode" = check ]; then
    conformance b128 90 STEM_TEST_FILTER=_b128_
    if grep -q '^\[  FAILED  \]' "$out/conf-b128.log" || ! grep -qE 'cuda: [0-9]+ passed' "$out/conf-b128.log"; then
        grep -B3 -A12 'FAILED' "$out/conf-b128.log" | head -120 > "$out/fail.log"
        tail -30 "$out/conf-b128.log"
        exit 1
    fi
    conformance b128-sm90s 60 STEM_TEST_FILTER=_b128_ STEM_CUDA_ATTN=sm90s
    echo "== bench sm90" | tee -a "$log"
    timeout 60 "$B/stem_cuda_bench" 8192 32768 2>&1 | tee -a "$log"
    echo "== bench sm90s (serial softmax)" | tee -a "$log"
    STEM_CUDA_ATTN=sm90s timeout 40 "$B/stem_cuda_bench" 32768 2>&1 | tee -a "$log"
    echo "== bench mma (baseline)" | tee -a "$log"
    STEM_CUDA_ATTN=mma timeout 40 "$B/stem_cuda_bench" 32768 2>&1 | tee -a "$log"
    conformance all 150
    grep -B3 -A12 '^\[  FAILED  \]' "$out/conf-all.log" | head -80 > "$out/fail.log"
    exit 0
fi

# final: quick check first; the benches and peers run either way (baselines).
conformance b128 90 STEM_TEST_FILTER=_b128_
ok=1
if grep -q '^\[  FAILED  \]' "$out/conf-b128.log" || ! grep -qE 'cuda: [0-9]+ passed' "$out/conf-b128.log"; then
    ok=0
    grep -B3 -A12 'FAILED' "$out/conf-b128.log" | head -150 > "$out/fail.log"
    tail -20 "$out/conf-b128.log"
    conformance b128-sm90s 60 STEM_TEST_FILTER=_b128_ STEM_CUDA_ATTN=sm90s
    conformance b128-mma 60 STEM_TEST_FILTER=_b128_ STEM_CUDA_ATTN=mma
fi
echo "== stem_cuda_bench (default kernels)" | tee -a "$log"
timeout 150 "$B/stem_cuda_bench" 2>&1 | tee -a "$log"
echo "== SDPA peers" | tee -a "$log"
timeout 100 python3 bench/cuda/sdpa_peers.py 2>&1 | tee -a "$log"
echo "== bf16 GEMM peak (cuBLAS 8192^3, the floor's rate)" | tee -a "$log"
timeout 30 python3 -c "
import torch
a=torch.randn(8192,8192,device='cuda',dtype=torch.bfloat16); b=torch.randn_like(a)
for _ in range(3): a@b
e0=torch.cuda.Event(enable_timing=True); e1=torch.cuda.Event(enable_timing=True)
ts=[]
for _ in range(10):
    e0.record(); a@b; e1.record(); torch.cuda.synchronize(); ts.append(e0.elapsed_time(e1))
ts.sort(); print('gemm bf16 8192^3: %.3f ms, %.1f TFLOP/s' % (ts[5], 2*8192**3/ts[5]/1e9))
" 2>&1 | tee -a "$log"
echo "== STEM_CUDA_ATTN=mma (previous kernel)" | tee -a "$log"
STEM_CUDA_ATTN=mma timeout 60 "$B/stem_cuda_bench" 8192 32768 2>&1 | tee -a "$log"
[ $ok = 1 ] || exit 1
echo "== STEM_CUDA_ATTN=sm90s (serial softmax)" | tee -a "$log"
STEM_CUDA_ATTN=sm90s timeout 40 "$B/stem_cuda_bench" 8192 32768 2>&1 | tee -a "$log"
echo "== dense_above_density 0.5" | tee -a "$log"
STEM_BENCH_DENSE_ABOVE=0.5 timeout 30 "$B/stem_cuda_bench" 8192 16384 2>&1 | grep -E "stem|N " | tee -a "$log"
conformance all 150
grep -B3 -A12 '^\[  FAILED  \]' "$out/conf-all.log" | head -80 > "$out/fail.log"
sanitize stem_d128_h1x1_n127_b128_s4_bf16
sanitize stem_d64_h4x1_n127_b128_s4_f16
sanitize stem_d128_h1x1_n127_b128_s4_bf16 STEM_CUDA_ATTN=mma
echo "== STEM_CUDA_ATTN=sm90p (ping-pong)" | tee -a "$log"
conformance b128-sm90p 40 STEM_TEST_FILTER=_b128_ STEM_CUDA_ATTN=sm90p
grep -q '^\[  FAILED  \]' "$out/conf-b128-sm90p.log" ||
    STEM_CUDA_ATTN=sm90p timeout 30 "$B/stem_cuda_bench" 8192 32768 2>&1 | tee -a "$log"
