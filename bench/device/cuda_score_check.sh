#!/usr/bin/env bash
# Short GPU-machine call for a scoring change: the CUDA suite and memcheck on
# the chunked cases (build A = BUILD), stem_cuda_bench of A and of BUILD/b's
# library at 8K-32K, SDPA peers, the per-kernel profile of A. ~4 minutes.
# QUICK=1 (little device time left): benches and peers first, then the suite
# cut at 90 s, no memcheck.
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
say "total $((SECONDS - t0)) s"
