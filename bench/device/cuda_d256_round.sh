#!/usr/bin/env bash
# One GPU-machine call for two CUDA changes of issue 14:
#  - head_dim 256 on tensor cores (the mma.sync kernels, one m16 tile per
#    warp, 32-key tiles), which Gemma-3's global layers take;
#  - the sm90 per-tile and persistent kernels sharing one producer row walk
#    and one consumer row body (no more copied mainloop).
# Correctness first, timings after, so a call cut short still says what is
# safe:
#   1. stem_cuda_persist_check: persistent vs per-tile outputs bitwise equal;
#   2. in parallel: the CUDA suite (default, and STEM_CUDA_PERSISTENT=1) and
#      compute-sanitizer memcheck / racecheck on head_dim 256 cases of both
#      blocks and on a per-tile sm90 case;
#   3. timings: the previous library (OLD, commit in OLD/COMMIT) against this
#      one at d 128 (stem_cuda_bench, same card, same call); head_dim 256
#      (Hq 16, Hkv 4: the FLOPs of the Llama layer) beside SDPA flash and cuDNN,
#      and the generic f32 kernel it replaces; ncu of the density-0.1
#      attention launch at 32K; SDPA peers at d 128.
# Steps past the time budget (DEADLINE seconds, default 570) are skipped.
# Set-up and helpers: bench/device/cuda_lib.sh.
# Carry: BUILD (default build-dev-carry: libstem.so*, tests/test_conformance,
# stem_cuda_bench, stem_cuda_persist_check, old/ with the previous library and
# bench), .devdeps, COMMIT. Output: $OUT/summary.txt and $OUT/logs.tgz.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROUND=cuda-d256
. bench/device/cuda_lib.sh

say "== 1. persistent vs per-tile, bitwise (stem_cuda_persist_check 8192 32768)"
new timeout -k 5 120 "$B/stem_cuda_persist_check" 8192 32768 > "$L/persist-check.log" 2>&1
prc=$?; cat "$L/persist-check.log" >> "$S"; say "persist check rc=$prc"

say "== 2. suites and sanitizers, in parallel"
sans() {
    san memcheck xattention_d256_h4x1_n1000_b128_s8_bf16
    san racecheck xattention_d256_h4x1_n1000_b128_s8_bf16
    san memcheck xattention_strict_d256_h4x1_n1000_b64
    san racecheck stem_d128_h1x1_n1000_b128_s8_bf16
    san racecheck stem_d128_h1x1_n1000_b128_s8_bf16 STEM_CUDA_PERSISTENT=1
}
suite default 200 &
suite persistent 200 STEM_CUDA_PERSISTENT=1 &
sans &
wait
say "suites and sanitizers $((SECONDS - t0)) s"
report_checks

say "== 3. timings"
if left 60 "A/B d128 8K 32K"; then
    say "== previous library ($(cat "$OLD/COMMIT" 2>/dev/null)), d 128, 8K 32K"
    old timeout 60 "$OLD/stem_cuda_bench" 8192 32768 >> "$S" 2>&1
    say "== this library, d 128, 8K 32K"
    new timeout 60 "$B/stem_cuda_bench" 8192 32768 >> "$S" 2>&1
fi
if left 90 "d256"; then
    say "== head_dim 256 (Hq 16, Hkv 4), this library: 8K 16K 32K 64K"
    STEM_BENCH_SHAPE=16,4,256 new timeout 80 "$B/stem_cuda_bench" 8192 16384 32768 65536 >> "$S" 2>&1
fi
if left 60 "d256 peers"; then
    say "== SDPA peers, head_dim 256"
    SDPA_SHAPE=16,4,256 timeout 70 python3 bench/cuda/sdpa_peers.py 8192 16384 32768 65536 >> "$S" 2>&1
fi
if left 40 "d256 generic"; then
    say "== head_dim 256, the generic f32 kernel (STEM_CUDA_ATTN=generic), 8K"
    STEM_CUDA_ATTN=generic STEM_BENCH_SHAPE=16,4,256 new timeout 40 "$B/stem_cuda_bench" 8192 >> "$S" 2>&1
fi
SEC="--section SpeedOfLight --section LaunchStats --section Occupancy --section WarpStateStats --section SchedulerStats"
# stem_cuda_bench 32768 launches the attention 9 times per row (2 warm-up + 7):
# dense, Stem, fixed 0.5, 0.25, 0.1: launch 36 is the first at density 0.1.
if left 80 "ncu p=0.1"; then
    say "== ncu, 32K, density 0.1 attention (launch 36) and dense (launch 0)"
    new timeout 80 "$NCU" $SEC -k regex:stem_k_attn --launch-skip 36 -c 1 "$B/stem_cuda_bench" 32768 > "$L/ncu-p01.txt" 2>&1
    say "ncu rc=$?"; sed -n '/stem_k_attn/,$p' "$L/ncu-p01.txt" | grep -vE '^ *-+ *$|^ *$|OPT |^ *(See|This|The|Check|is|to|of) ' | head -70 >> "$S"
fi
if left 70 "ncu dense"; then
    new timeout 70 "$NCU" $SEC -k regex:stem_k_attn -c 1 "$B/stem_cuda_bench" 32768 > "$L/ncu-dense.txt" 2>&1
    say "ncu rc=$?"; sed -n '/stem_k_attn/,$p' "$L/ncu-dense.txt" | grep -vE '^ *-+ *$|^ *$|OPT |^ *(See|This|The|Check|is|to|of) ' | head -70 >> "$S"
fi
if left 70 "d128 peers"; then
    say "== SDPA peers, d 128"
    timeout 70 python3 bench/cuda/sdpa_peers.py 8192 32768 131072 >> "$S" 2>&1
fi
if left 45 "A/B 128K"; then
    say "== previous / this library, d 128, 128K"
    old timeout 40 "$OLD/stem_cuda_bench" 131072 >> "$S" 2>&1
    new timeout 40 "$B/stem_cuda_bench" 131072 >> "$S" 2>&1
fi
