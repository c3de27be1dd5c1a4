#!/usr/bin/env bash
# Runs on the GPU machine from a snapshot holding build/ (built elsewhere):
#   bench/cuda/device_run.sh quick|full OUTDIR
# quick: CUDA conformance + a short bench; full: suite (cpu + cuda), sanitizer
# cases, bench at 8K-128K and the SDPA peers, each log under OUTDIR.
set -uo pipefail
mode=$1 out=$2
export LD_LIBRARY_PATH=$PWD/build:${LD_LIBRARY_PATH:-}
export PYTHONUNBUFFERED=1
log=$out/log
{ date -u; nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv; git_commit=$(cat COMMIT 2>/dev/null); echo "commit $git_commit"; build/tools/stem info; } 2>&1 | tee -a "$log"
if [ "$mode" = quick ]; then
  STEM_TEST_ONLY=cuda STEM_TEST_REQUIRE=cuda timeout 200 build/tests/test_conformance > "$out/conf.log" 2>&1
  echo "conformance rc=$?" | tee -a "$log"
  grep -E "FAILED|ERROR|^\[  FAILED|: [0-9]+ passed" "$out/conf.log" | head -40 | tee -a "$log"
  grep -B2 -A6 "FAILED \]\|ERROR \]" "$out/conf.log" | head -120 > "$out/fail.log"
  timeout 120 build/stem_cuda_bench 8192 32768 2>&1 | tee -a "$log"
  exit 0
fi
if [ "$mode" = wide ]; then
  STEM_CUDA_ATTN_WIDE=1 STEM_TEST_ONLY=cuda STEM_TEST_REQUIRE=cuda timeout 100 build/tests/test_conformance > "$out/conf.log" 2>&1
  echo "conformance (cuda, STEM_CUDA_ATTN_WIDE=1) rc=$? $(grep -E 'cuda: [0-9]+ passed' "$out/conf.log")" | tee -a "$log"
  grep -B2 -A6 "FAILED \]\|ERROR \]" "$out/conf.log" | head -100 > "$out/fail.log"
  echo "== stem_cuda_bench with STEM_CUDA_ATTN_WIDE=1" | tee -a "$log"
  STEM_CUDA_ATTN_WIDE=1 timeout 100 build/stem_cuda_bench 2>&1 | tee -a "$log"
  echo "== stem_cuda_bench default kernels (baseline, same call)" | tee -a "$log"
  timeout 40 build/stem_cuda_bench 32768 2>&1 | tee -a "$log"
  for tool in memcheck racecheck; do
    STEM_CUDA_ATTN_WIDE=1 STEM_TEST_ONLY=cuda STEM_TEST_FILTER=stem_d128_h1x1_n1000_b128_s8_bf16 timeout 40 \
      compute-sanitizer --tool $tool --error-exitcode 9 build/tests/test_conformance > "$out/san.log" 2>&1
    echo "sanitizer $tool (wide) rc=$? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$out/san.log" | tail -1) $(grep -E 'cuda: [0-9]+ passed' "$out/san.log")" | tee -a "$log"
  done
  exit 0
fi
if [ "$mode" = confirm ]; then
  STEM_TEST_ONLY=cuda STEM_TEST_REQUIRE=cuda timeout 90 build/tests/test_conformance > "$out/conf.log" 2>&1
  echo "conformance (cuda, default kernels) rc=$? $(grep -E 'cuda: [0-9]+ passed' "$out/conf.log")" | tee -a "$log"
  timeout 30 build/stem_cuda_bench 32768 2>&1 | tee -a "$log"
  exit 0
fi
if [ "$mode" = profile ]; then
  timeout 120 ncu --section SpeedOfLight -k regex:'stem_k_(phase|group|value|score|select)' -c 7 \
    build/stem_cuda_bench 32768 > "$out/ncu_score.log" 2>&1
  grep -E "stem_k_|Duration|Throughput" "$out/ncu_score.log" | head -60 | tee -a "$log"
  timeout 150 ncu --section SpeedOfLight --section MemoryWorkloadAnalysis --section Occupancy \
    --section WarpStateStats -k regex:stem_k_attn_mma -c 1 build/stem_cuda_bench 16384 > "$out/ncu_attn.log" 2>&1
  grep -vE "^==PROF==|^\|" "$out/ncu_attn.log" | tail -90 | tee -a "$log"
  exit 0
fi
STEM_TEST_ONLY=cuda STEM_TEST_REQUIRE=cuda timeout 150 build/tests/test_conformance > "$out/conf.log" 2>&1
echo "conformance (cuda) rc=$?" | tee -a "$log"
grep -E ": [0-9]+ passed" "$out/conf.log" | tee -a "$log"
grep -B2 -A6 "FAILED \]\|ERROR \]" "$out/conf.log" | head -150 > "$out/fail.log"
echo "== stem_cuda_bench (default kernels)" | tee -a "$log"
timeout 150 build/stem_cuda_bench 2>&1 | tee -a "$log"
echo "== SDPA peers" | tee -a "$log"
timeout 150 python3 bench/cuda/sdpa_peers.py 2>&1 | tee -a "$log"
echo "== stem_cuda_bench with STEM_CUDA_ATTN_QSMEM=1" | tee -a "$log"
STEM_CUDA_ATTN_QSMEM=1 timeout 120 build/stem_cuda_bench 2>&1 | tee -a "$log"
for f in dense_d128_h4x1_n1000_b64_s8_f16_bnhd_shared stem_d128_h1x1_n1000_b128_s8_bf16 \
         xattention_d64_h8x2_n17_b128 stem_d64_h32x8_n17_b64_s16_f16; do
  for tool in memcheck racecheck; do
    STEM_TEST_ONLY=cuda STEM_TEST_FILTER=$f timeout 60 compute-sanitizer --tool $tool --error-exitcode 9 \
      build/tests/test_conformance > "$out/san.log" 2>&1
    echo "sanitizer $tool $f rc=$? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$out/san.log" | tail -1) $(grep -E ': [0-9]+ passed' "$out/san.log" | grep cuda)" | tee -a "$log"
  done
done
STEM_CUDA_ATTN_QSMEM=1 STEM_TEST_ONLY=cuda STEM_TEST_FILTER=d128 timeout 60 build/tests/test_conformance > "$out/conf_qsmem.log" 2>&1
echo "conformance (cuda, d128, STEM_CUDA_ATTN_QSMEM=1) rc=$? $(grep -E 'cuda: [0-9]+ passed' "$out/conf_qsmem.log")" | tee -a "$log"
STEM_TEST_ONLY=cpu STEM_TEST_REQUIRE=cpu timeout 100 build/tests/test_conformance > "$out/conf_cpu.log" 2>&1
echo "conformance (cpu) rc=$? $(grep -E 'cpu: [0-9]+ passed' "$out/conf_cpu.log")" | tee -a "$log"
