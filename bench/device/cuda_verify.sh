#!/usr/bin/env bash
# A short GPU-machine call after a CUDA change (BUILD as in cuda_round.sh):
# the whole CUDA suite on the default kernels, compute-sanitizer racecheck
# with its full report on the d64 / d128 block-128 cases (chunked and fresh),
# and ncu counters of the attention and scoring kernels at 32K (tensor pipe,
# DRAM and L2). Output: $OUT/summary.txt and $OUT/racecheck-*.txt. ~2-3 minutes.
set -uo pipefail
cd "$(dirname "$0")/../.."
B=$PWD/${BUILD:-build-dev-carry}; O=${OUT:-/tmp/cuda-verify}
mkdir -p "$O"; S=$O/summary.txt
say() { echo "$*" | tee -a "$S"; }
for f in .devdeps/*.deb; do dpkg -x "$f" /; done; ldconfig
export LD_LIBRARY_PATH=$B:${LD_LIBRARY_PATH:-} STEM_FIXTURE_DIR=$PWD/tests/fixtures/smollm2
say "date $(date -u +%FT%TZ) commit $(cat COMMIT 2>/dev/null) gpu $(nvidia-smi --query-gpu=name --format=csv,noheader)"
t0=$SECONDS
STEM_TEST_ONLY=cuda STEM_TEST_REQUIRE=cuda OMP_NUM_THREADS=4 timeout 150 "$B/tests/test_conformance" > "$O/conf-cuda.log" 2>&1
say "conf-cuda rc=$? ok=$(grep -c '^\[       OK \]' "$O/conf-cuda.log") failed=$(grep -c '^\[  FAILED  \]' "$O/conf-cuda.log") ($((SECONDS - t0)) s)"
grep -E '^\[  FAILED  \]|^ERROR' "$O/conf-cuda.log" | sort -u | head -12 >> "$S"
CS=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
for filt in chunked_c3_unaligned_visible_f16_d64_b128 uniform_d64_h32x8_n1000_b128_s8_f16 \
            chunked_c3_unaligned_visible_bf16_d128_b128; do
    STEM_TEST_ONLY=cuda STEM_TEST_REQUIRE=cuda STEM_TEST_FILTER=$filt OMP_NUM_THREADS=2 \
        timeout 60 "$CS" --tool racecheck --racecheck-report all --print-limit 20 \
        "$B/tests/test_conformance" > "$O/racecheck-$filt.txt" 2>&1
    say "racecheck $filt: rc=$? $(grep -E 'RACECHECK SUMMARY' "$O/racecheck-$filt.txt" | tail -1)"
    grep -m3 -E 'hazard|Race|at .* in ' "$O/racecheck-$filt.txt" | head -6 >> "$S"
done
NCU=$(command -v ncu || ls /usr/local/cuda*/bin/ncu 2>/dev/null | head -1)
say "== ncu at 32K (first dense attention launch; scoring kernels of the first Stem call)"
M=sm__pipe_tensor_op_gmma_cycles_active.avg.pct_of_peak_sustained_active,sm__throughput.avg.pct_of_peak_sustained_elapsed,dram__throughput.avg.pct_of_peak_sustained_elapsed,lts__t_sector_hit_rate.pct,gpu__time_duration.sum,sm__warps_active.avg.pct_of_peak_sustained_active
timeout 60 "$NCU" --metrics $M -k regex:stem_k_attn -c 1 "$B/stem_cuda_bench" 32768 > "$O/ncu.txt" 2>&1
timeout 60 "$NCU" --metrics $M -k regex:'stem_k_(phase|group|score|select|value)' -c 7 \
    "$B/stem_cuda_bench" 32768 >> "$O/ncu.txt" 2>&1
say "ncu rc=$?"
grep -E 'stem_k_|gmma|sm__throughput|dram__|lts__|gpu__time|warps_active' "$O/ncu.txt" | head -80 >> "$S"
say "total $((SECONDS - t0)) s"
