#!/usr/bin/env bash
# One GPU-machine call for the sm90 (wgmma + TMA) head_dim 256 kernels:
# K / V in half-block tiles of 64 keys, two stages (issue 14). They are
# opt-in (STEM_CUDA_ATTN=sm90p) until this call has passed; every d256 step
# below names the family.
#   1. stem_cuda_persist_check --d256: the wgmma kernel against the mma.sync
#      one (already through the suite) on bf16 / f16, dense, random lists with
#      empty rows, batch 2, MHA, chunked calls, 100 tokens; then the
#      persistent-vs-per-tile bitwise check (the shared producer changed);
#      (STEM_CUDA_PERSISTENT=2: head-major items);
#   2. in parallel: the CUDA suite (default; STEM_CUDA_PERSISTENT=2;
#      STEM_CUDA_ATTN=sm90p) and compute-sanitizer memcheck / racecheck on
#      head_dim 256 block-128 cases;
#   3. timings: head_dim 256 (Hq 16, Hkv 4) sm90p against mma.sync beside SDPA
#      flash and cuDNN; the previous library (OLD) against this one at d 128,
#      alternated, 32K and 128K; ncu of the d256 dense attention at 32K.
# DEADLINE seconds (default 570). Set-up, helpers and carry: bench/device/cuda_lib.sh.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROUND=cuda-d256w
. bench/device/cuda_lib.sh

say "== 1. d256: wgmma against mma.sync; persistent against per-tile"
new timeout -k 5 90 "$B/stem_cuda_persist_check" --d256 > "$L/d256-check.log" 2>&1
drc=$?; cat "$L/d256-check.log" >> "$S"; say "d256 check rc=$drc"
STEM_CUDA_PERSISTENT=2 new timeout -k 5 120 "$B/stem_cuda_persist_check" 8192 32768 > "$L/persist-check.log" 2>&1
prc=$?; cat "$L/persist-check.log" >> "$S"; say "persist check (head-major) rc=$prc"

say "== 2. suites and sanitizers, in parallel"
sans() {
    san memcheck xattention_d256_h4x1_n1000_b128_s8_bf16 STEM_CUDA_ATTN=sm90p
    san racecheck xattention_d256_h4x1_n1000_b128_s8_bf16 STEM_CUDA_ATTN=sm90p
    san memcheck stem_d256_h4x1_n1000_b128 STEM_CUDA_ATTN=sm90p
    san racecheck stem_d128_h1x1_n1000_b128_s8_bf16
}
suite default 200 &
suite persistent2 200 STEM_CUDA_PERSISTENT=2 &
suite sm90p 200 STEM_CUDA_ATTN=sm90p &
sans &
wait
say "suites and sanitizers $((SECONDS - t0)) s"
report_checks

say "== 3. timings"
if left 80 "d256 sm90p"; then
    say "== head_dim 256 (Hq 16, Hkv 4), STEM_CUDA_ATTN=sm90p: 8K 16K 32K 64K"
    STEM_CUDA_ATTN=sm90p STEM_BENCH_SHAPE=16,4,256 new timeout 80 "$B/stem_cuda_bench" 8192 16384 32768 65536 >> "$S" 2>&1
fi
if left 60 "d256 peers"; then
    say "== SDPA peers, head_dim 256"
    SDPA_SHAPE=16,4,256 timeout 70 python3 bench/cuda/sdpa_peers.py 8192 16384 32768 65536 >> "$S" 2>&1
fi
if [ $prc = 0 ] && left 40 "persistent 2 bench"; then
    say "== this library, STEM_CUDA_PERSISTENT=2 (head-major persistent), d 128, 32K 128K"
    STEM_CUDA_PERSISTENT=2 new timeout 40 "$B/stem_cuda_bench" 32768 131072 >> "$S" 2>&1
fi
if left 50 "d256 mma"; then
    say "== head_dim 256, mma.sync (STEM_CUDA_ATTN=mma): 8K 32K"
    STEM_CUDA_ATTN=mma STEM_BENCH_SHAPE=16,4,256 new timeout 50 "$B/stem_cuda_bench" 8192 32768 >> "$S" 2>&1
fi
for r in 1 2; do
    left 45 "A/B d128 32K round $r" || break
    say "== A/B d128 32K round $r: previous, then this library"
    old timeout 30 "$OLD/stem_cuda_bench" 32768 >> "$S" 2>&1
    new timeout 30 "$B/stem_cuda_bench" 32768 >> "$S" 2>&1
done
SEC="--section SpeedOfLight --section LaunchStats --section Occupancy --section WarpStateStats --section SchedulerStats"
if left 70 "ncu d256"; then
    say "== ncu, d256 32K dense attention (launch 0)"
    STEM_CUDA_ATTN=sm90p STEM_BENCH_SHAPE=16,4,256 new timeout 70 "$NCU" $SEC -k regex:stem_k_attn -c 1 "$B/stem_cuda_bench" 32768 > "$L/ncu-d256.txt" 2>&1
    say "ncu rc=$?"; sed -n '/stem_k_attn/,$p' "$L/ncu-d256.txt" | grep -vE '^ *-+ *$|^ *$|OPT |^ *(See|This|The|Check|is|to|of) |^ {10}' | head -60 >> "$S"
fi
if left 45 "A/B 128K"; then
    say "== previous / this library, d 128, 128K"
    old timeout 40 "$OLD/stem_cuda_bench" 131072 >> "$S" 2>&1
    new timeout 40 "$B/stem_cuda_bench" 131072 >> "$S" 2>&1
fi
