#!/usr/bin/env bash
# Runs on the GPU machine from a copy of the tree holding a build made on the
# dev machine in BUILD (default build; libstem.so, tests/test_conformance,
# tools/stem, stem_cuda_bench built with
#   gcc -O2 -std=c11 -Iapi -o BUILD/stem_cuda_bench bench/cuda/stem_cuda_bench.c -LBUILD -lstem -lm):
#   bench/cuda/device_run.sh OUTDIR
# One call, about 6-7 minutes on an H100 / H200:
#  1. block-128 cases with each sm_90a family (sm90 = overlapped softmax,
#     sm90s = serial, sm90p = ping-pong; all opt-in via STEM_CUDA_ATTN until
#     they pass here) and with the 3xTF32 score GEMM (STEM_CUDA_SCORE_GEMM=tc);
#  2. stem_cuda_bench for the default (mma.sync) kernels and each family that
#     passed, the SDPA peers (FA2, cuDNN) and a cuBLAS bf16 GEMM (the rate of
#     the floor), all in this call on this card;
#  3. the whole suite with the sm90 family and with the defaults;
#     compute-sanitizer memcheck / racecheck on a few cases per family.
set -uo pipefail
out=$1
B="${BUILD:-build}"
export LD_LIBRARY_PATH=$PWD/$B:${LD_LIBRARY_PATH:-}
export PYTHONUNBUFFERED=1
log=$out/log
mkdir -p "$out"
{ date -u; nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader;
  echo "commit $(cat COMMIT 2>/dev/null)"; "$B/tools/stem" info; } 2>&1 | tee -a "$log"

conformance() { # conformance LABEL SECONDS ENV...; returns 0 when every case passed
    local label=$1 secs=$2; shift 2
    env "$@" STEM_TEST_ONLY=cuda STEM_TEST_REQUIRE=cuda timeout "$secs" "$B/tests/test_conformance" \
        > "$out/conf-$label.log" 2>&1
    local rc=$?
    echo "conformance $label ($*) rc=$rc $(grep -E 'cuda: [0-9]+ passed' "$out/conf-$label.log" | tail -1)" | tee -a "$log"
    grep -B2 -A10 '^\[  FAILED  \]' "$out/conf-$label.log" | head -60 >> "$out/fail.log"
    [ $rc = 0 ] && ! grep -q '^\[  FAILED  \]' "$out/conf-$label.log"
}
sanitize() { # sanitize FILTER [ENV...]
    local f=$1; shift
    for tool in memcheck racecheck; do
        env "$@" STEM_TEST_ONLY=cuda STEM_TEST_FILTER=$f timeout 60 compute-sanitizer --tool $tool \
            --error-exitcode 9 "$B/tests/test_conformance" > "$out/san.log" 2>&1
        echo "sanitizer $tool $f $* rc=$? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$out/san.log" | tail -1) $(grep -E 'cuda: [0-9]+ passed' "$out/san.log")" | tee -a "$log"
    done
}
bench() { # bench LABEL SECONDS ENV... -- N...
    local label=$1 secs=$2; shift 2
    local envs=()
    while [ $# -gt 0 ] && [ "$1" != -- ]; do envs+=("$1"); shift; done
    shift
    echo "== stem_cuda_bench $label (${envs[*]:-defaults})" | tee -a "$log"
    env "${envs[@]}" timeout "$secs" "$B/stem_cuda_bench" "$@" 2>&1 | tee -a "$log"
}

ok90=0; ok90s=0; ok90p=0; oktc=0
conformance b128-sm90 60 STEM_TEST_FILTER=_b128_ STEM_CUDA_ATTN=sm90 && ok90=1
conformance b128-sm90s 60 STEM_TEST_FILTER=_b128_ STEM_CUDA_ATTN=sm90s && ok90s=1
conformance b128-sm90p 60 STEM_TEST_FILTER=_b128_ STEM_CUDA_ATTN=sm90p && ok90p=1
conformance stem-tc 60 STEM_TEST_FILTER=stem_ STEM_CUDA_SCORE_GEMM=tc && oktc=1

bench default 150 -- 8192 16384 32768 65536 131072
[ $ok90 = 1 ] && bench sm90 150 STEM_CUDA_ATTN=sm90 -- 8192 16384 32768 65536 131072
[ $ok90s = 1 ] && bench sm90s 40 STEM_CUDA_ATTN=sm90s -- 8192 32768
[ $ok90p = 1 ] && bench sm90p 40 STEM_CUDA_ATTN=sm90p -- 8192 32768
[ $oktc = 1 ] && bench score-tc 40 STEM_CUDA_SCORE_GEMM=tc -- 8192 32768
bench dense-above-0.8 40 STEM_BENCH_DENSE_ABOVE=0.8 -- 8192 16384
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

[ $ok90 = 1 ] && conformance all-sm90 150 STEM_CUDA_ATTN=sm90
conformance all-default 150
sanitize stem_d128_h1x1_n127_b128_s4_bf16 STEM_CUDA_ATTN=sm90
sanitize stem_d64_h4x1_n127_b128_s4_f16 STEM_CUDA_ATTN=sm90
sanitize stem_d128_h1x1_n127_b128_s4_bf16
sanitize stem_d64_h32x8_n127_b128_s8_f16 STEM_CUDA_SCORE_GEMM=tc
