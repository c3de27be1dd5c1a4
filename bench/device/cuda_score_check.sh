#!/usr/bin/env bash
# Short GPU-machine call for a scoring change: the CUDA suite and memcheck on
# the chunked cases (build A = BUILD), stem_cuda_bench of A and of BUILD/b's
# library at 8K-32K, SDPA peers, the per-kernel profile of A. ~4 minutes.
# QUICK=1 (little device time left): benches and peers first, then the suite
# cut at 90 s, no memcheck. Then (FUSE_AB=1, the default; ~3 minutes more, so
# run FUSE_AB=0 or QUICK=1 where the 10-minute command limit is near) the A/B
# of STEM_CUDA_SCORE_FUSE and STEM_CUDA_PDL, see below.
# Carry: BUILD (default build-dev-carry), .devdeps, COMMIT.
set -uo pipefail
cd "$(dirname "$0")/../.."
B=$PWD/${BUILD:-build-dev-carry}; O=${OUT:-/tmp/cuda-score-check}; mkdir -p "$O"; S=$O/summary.txt; : > "$S"
say() { echo "$*" | tee -a "$S"; }
for f in .devdeps/*.deb; do dpkg -x "$f" /; done; ldconfig
export LD_LIBRARY_PATH=$B:${LD_LIBRARY_PATH:-}
say "date $(date -u +%FT%TZ) commit $(cat COMMIT 2>/dev/null) b=$(cat "$B/b/COMMIT" 2>/dev/null)"
say "gpu $(nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader)"
t0=$SECONDS
suite_and_memcheck() {
STEM_TEST_ONLY=cuda STEM_TEST_REQUIRE=cuda OMP_NUM_THREADS=12 timeout -k 5 "${SUITE_S:-200}" "$B/tests/test_conformance" > "$O/conf-cuda.log" 2>&1
say "suite rc=$? $(grep -E '^cuda: [0-9]+ passed' "$O/conf-cuda.log" | tail -1) ($((SECONDS - t0)) s)"
grep -E '^\[  FAILED  \]' "$O/conf-cuda.log" | sort -u | head -12 >> "$S"
[ "${QUICK:-0}" = 1 ] && return
CS=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
out=$(STEM_TEST_ONLY=cuda STEM_TEST_REQUIRE=cuda STEM_TEST_FILTER=chunked_c3 OMP_NUM_THREADS=12 \
      timeout 90 "$CS" --tool memcheck --error-exitcode 7 "$B/tests/test_conformance" 2>&1)
say "memcheck chunked_c3: rc=$? $(echo "$out" | grep -E '^cuda: [0-9]+ passed' | tail -1) $(echo "$out" | grep -E 'ERROR SUMMARY' | tail -1)"
}
[ "${QUICK:-0}" = 1 ] || suite_and_memcheck
NS=${NS:-"8192 16384 32768"}
say "== stem_cuda_bench A"; timeout 60 "$B/stem_cuda_bench" $NS >> "$S" 2>&1
say "== stem_cuda_bench B"; LD_LIBRARY_PATH=$B/b:$LD_LIBRARY_PATH timeout 60 "$B/stem_cuda_bench" $NS >> "$S" 2>&1
say "== SDPA peers"; timeout 90 python3 bench/cuda/sdpa_peers.py $NS >> "$S" 2>&1
if [ "${QUICK:-0}" = 1 ]; then SUITE_S=90 suite_and_memcheck; fi
say "== per-kernel profile, build A (scoring kernels)"
(cd /tmp && STEM_LIBRARY=$B/libstem.so PYTHONPATH=$OLDPWD/python timeout 60 python3 $OLDPWD/bench/cuda/profile_stages.py 8192 32768) 2>&1 |
    grep -E '^####|attn|score|phase|value|select|group' >> "$S"
# A/B of STEM_CUDA_SCORE_FUSE (0: phase sums, value maxima and bonus as three
# kernels; 1, the default: one stem_k_score_prep launch, 4-row load batches;
# 8: 8-row batches) and STEM_CUDA_PDL=1: bitwise equality of the scores and
# selections against FUSE=0 (sha256 per case), stem_cuda_bench and the profile.
if [ "${FUSE_AB:-1}" = 1 ]; then
say "== score fuse A/B: bitwise (sha256 of scores and index/count per case; must match FUSE=0)"
ref=
for cfg in "STEM_CUDA_SCORE_FUSE=0" "STEM_CUDA_SCORE_FUSE=1" "STEM_CUDA_SCORE_FUSE=8" \
           "STEM_CUDA_SCORE_FUSE=1 STEM_CUDA_PDL=1" "STEM_CUDA_SCORE_FUSE=0 STEM_CUDA_SCORE_SPLIT=0"; do
  (cd /tmp && env $cfg STEM_LIBRARY=$B/libstem.so PYTHONPATH=$OLDPWD/python timeout 120 python3 $OLDPWD/bench/cuda/score_hashes.py
  ) >> "$O/fuse-ab.txt" 2>&1
  res=$(tail -1 "$O/fuse-ab.txt"); ref=${ref:-$res}
  say "$cfg: $([ "$res" = "$ref" ] && echo SAME || echo DIFFERENT) $res"
done
say "== stem_cuda_bench A, STEM_CUDA_SCORE_FUSE=0 (the separate kernels)"
STEM_CUDA_SCORE_FUSE=0 timeout 60 "$B/stem_cuda_bench" $NS >> "$S" 2>&1
say "== stem_cuda_bench A, STEM_CUDA_SCORE_FUSE=8"
STEM_CUDA_SCORE_FUSE=8 timeout 60 "$B/stem_cuda_bench" $NS >> "$S" 2>&1
say "== stem_cuda_bench A, STEM_CUDA_PDL=1"
STEM_CUDA_PDL=1 timeout 60 "$B/stem_cuda_bench" $NS >> "$S" 2>&1
for cfg in "STEM_CUDA_SCORE_FUSE=0:8192 32768" "STEM_CUDA_SCORE_FUSE=8:8192" "STEM_CUDA_PDL=1:8192"; do
  say "== per-kernel profile, build A, ${cfg%%:*} (scoring kernels)"
  (cd /tmp && env ${cfg%%:*} STEM_LIBRARY=$B/libstem.so PYTHONPATH=$OLDPWD/python timeout 60 python3 $OLDPWD/bench/cuda/profile_stages.py ${cfg#*:}) 2>&1 |
      grep -E '^####|attn|score|phase|value|select|group' >> "$S"
done
fi
say "total $((SECONDS - t0)) s"
