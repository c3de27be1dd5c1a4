#!/usr/bin/env bash
# One GPU-machine call after head_dim 256 went to the sm90 kernel by default
# (call 9 of bench/results/cuda.md): the CUDA conformance suite on the default
# dispatch, on STEM_CUDA_PERSISTENT=2 and on the mma.sync kernels
# (STEM_CUDA_ATTN=mma), compute-sanitizer memcheck / racecheck on head_dim 256
# cases of both block sizes, and a head_dim 256 bench of the default dispatch.
# DEADLINE seconds (default 570). Set-up, helpers and carry: bench/device/cuda_lib.sh.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROUND=cuda-d256s
. bench/device/cuda_lib.sh

say "== suites and sanitizers, in parallel"
sans() {
    san memcheck xattention_d256_h4x1_n1000_b128_s8_bf16
    san racecheck xattention_d256_h4x1_n1000_b128_s8_bf16
    san memcheck stem_d256_h4x1_n1000_b128
    san racecheck stem_d256_h4x1_n1000_b128
    san memcheck xattention_strict_d256_h4x1_n1000_b64
}
suite default ${SUITE_S:-240} &
suite persistent2 ${SUITE_S:-240} STEM_CUDA_PERSISTENT=2 &
suite mma ${SUITE_S:-240} STEM_CUDA_ATTN=mma &
sans &
wait
say "suites and sanitizers $((SECONDS - t0)) s"
report_checks

if left 60 "d256 default bench"; then
    say "== head_dim 256 (Hq 16, Hkv 4), default dispatch: 8K 32K"
    STEM_BENCH_SHAPE=16,4,256 new timeout 60 "$B/stem_cuda_bench" 8192 32768 >> "$S" 2>&1
fi
# call 9 saw 128K density 0.1 at 23.5 ms (previous library) against 27.4 (this
# one), call 8 24.4 against 25.2: alternate the two twice to separate the
# difference from noise
for r in 1 2; do
    if left 70 "A/B 128K round $r"; then
        say "== A/B d128 128K round $r: previous, then this library"
        old timeout 30 "$OLD/stem_cuda_bench" 131072 >> "$S" 2>&1
        new timeout 30 "$B/stem_cuda_bench" 131072 >> "$S" 2>&1
    fi
done
