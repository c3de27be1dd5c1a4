#!/usr/bin/env bash
# One GPU-machine call for the CUDA backend and the CPU's AMX table, from a
# dev-machine build (BUILD, default build-dev-carry: libstem.so*,
# tests/test_conformance, tools/stem, stem_cuda_bench; .devdeps/*.deb for
# libcmocka0). In order:
#   1. conformance: CUDA default kernels (every case), the mma family on the
#      block-128 and chunked cases, the sm90s / sm90p families on block 128;
#      the CPU suite on the default (best) ISA, at the same time;
#   2. compute-sanitizer memcheck / racecheck on a few sm90 and chunked cases;
#   3. test_wrap_native, python/tests/device_check.py;
#   4. benches, one at a time: stem_cuda_bench per family (8K-128K), the
#      dense threshold, SDPA flash / cuDNN, the per-kernel profile, chunked
#      prefill vs one-shot; CPU bf16 (AMX, AVX-512) beside torch.
# Output: $OUT/summary.txt and $OUT/logs.tgz. About 8 minutes.
set -uo pipefail
cd "$(dirname "$0")/../.."
B=$PWD/${BUILD:-build-dev-carry}; O=${OUT:-/tmp/cuda-round}; L=/tmp/cuda-round-logs
mkdir -p "$O" "$L"; S=$O/summary.txt
say() { echo "$*" | tee -a "$S"; }
for f in .devdeps/*.deb; do dpkg -x "$f" /; done; ldconfig
export LD_LIBRARY_PATH=$B:${LD_LIBRARY_PATH:-} PYTHONUNBUFFERED=1 STEM_FIXTURE_DIR=$PWD/tests/fixtures/smollm2
say "date $(date -u +%FT%TZ) commit $(cat COMMIT 2>/dev/null)"
say "gpu $(nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader) cpu $(lscpu | sed -n 's/^Model name: *//p') x $(nproc)"
"$B/tools/stem" info | sed -n '/^devices/,$p' >> "$S" 2>&1
t0=$SECONDS
suite() { # suite LABEL SECONDS ENV...
    local l=$1 s=$2; shift 2
    env "$@" timeout -k 5 "$s" "$B/tests/test_conformance" > "$L/conf-$l.log" 2>&1
    echo "rc=$?" >> "$L/conf-$l.log"
}
( suite cuda 150 STEM_TEST_ONLY=cuda STEM_TEST_REQUIRE=cuda OMP_NUM_THREADS=2
  suite cuda-mma 90 STEM_TEST_ONLY=cuda STEM_TEST_REQUIRE=cuda STEM_CUDA_ATTN=mma STEM_TEST_FILTER=_b128_ OMP_NUM_THREADS=2
  suite cuda-mma-chunked 60 STEM_TEST_ONLY=cuda STEM_TEST_REQUIRE=cuda STEM_CUDA_ATTN=mma STEM_TEST_FILTER=chunked_ OMP_NUM_THREADS=2
  suite cuda-sm90p 90 STEM_TEST_ONLY=cuda STEM_TEST_REQUIRE=cuda STEM_CUDA_ATTN=sm90p STEM_TEST_FILTER=_b128_ OMP_NUM_THREADS=2
  suite cuda-sm90s 90 STEM_TEST_ONLY=cuda STEM_TEST_REQUIRE=cuda STEM_CUDA_ATTN=sm90s STEM_TEST_FILTER=_b128_ OMP_NUM_THREADS=2
  suite cuda-score-tc 120 STEM_TEST_ONLY=cuda STEM_TEST_REQUIRE=cuda STEM_CUDA_SCORE_GEMM=tc OMP_NUM_THREADS=2 ) &
suite cpu 200 STEM_TEST_ONLY=cpu STEM_TEST_REQUIRE=cpu OMP_NUM_THREADS=10 &
wait
say "suites $((SECONDS - t0)) s"
for f in "$L"/conf-*.log; do
    say "$(basename "$f" .log): ok=$(grep -c '^\[       OK \]' "$f") failed=$(grep -c '^\[  FAILED  \]' "$f") $(tail -1 "$f")"
    grep -E '^\[  FAILED  \]|^ERROR' "$f" | sort -u | head -12 >> "$S"
done
say "== compute-sanitizer"
CS=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
sanit() { # sanit TOOL FILTER
    local out
    out=$(STEM_TEST_ONLY=cuda STEM_TEST_REQUIRE=cuda STEM_TEST_FILTER=$2 OMP_NUM_THREADS=2 \
          timeout 60 "$CS" --tool $1 --error-exitcode 7 "$B/tests/test_conformance" 2>&1)
    say "$1 $2: rc=$? $(echo "$out" | grep -E '^cuda: [0-9]+ passed' | tail -1) $(echo "$out" | grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' | tail -1)"
}
sanit memcheck chunked_c3_unaligned_visible_bf16_d128_b128
sanit memcheck stem_d128_h1x1_n1000_b128_s8_bf16
sanit racecheck stem_d128_h1x1_n1000_b128_s8_bf16
sanit racecheck chunked_c3_unaligned_visible_f16_d64_b128
W=/tmp/cuda-round-work; mkdir -p $W
( gcc -O2 -std=c11 -D_GNU_SOURCE -Iapi -Itests/reference -Itests/common tests/interop/test_wrap_native.c \
    tests/reference/stem_ref.c tests/common/stem_synth.c -L"$B" -lstem -ldl -lm -o $W/test_wrap_native &&
  STEM_TEST_ONLY=cuda,cpu STEM_TEST_REQUIRE=cuda timeout 60 $W/test_wrap_native; echo "rc=$?" ) > "$L/wrap_native.log" 2>&1
say "wrap_native: $(tail -1 $L/wrap_native.log)"; grep -E '^FAIL|cuda:' "$L/wrap_native.log" | head -5 >> "$S"
say "== python/tests/device_check.py"
(cd /tmp && STEM_LIBRARY=$B/libstem.so PYTHONPATH=$OLDPWD/python timeout 90 python3 $OLDPWD/python/tests/device_check.py) >> "$S" 2>&1
say "device_check rc=$?"
NS="8192 16384 32768 65536 131072"
for fam in sm90 sm90p mma; do
    say "== stem_cuda_bench STEM_CUDA_ATTN=$fam"
    STEM_CUDA_ATTN=$fam timeout 100 "$B/stem_cuda_bench" $NS >> "$S" 2>&1
done
say "== stem_cuda_bench sm90, STEM_CUDA_SCORE_GEMM=tc"
STEM_CUDA_SCORE_GEMM=tc timeout 100 "$B/stem_cuda_bench" $NS >> "$S" 2>&1
say "== stem_cuda_bench sm90, STEM_BENCH_DENSE_ABOVE=0.8"
STEM_BENCH_DENSE_ABOVE=0.8 timeout 60 "$B/stem_cuda_bench" 8192 16384 32768 >> "$S" 2>&1
say "== SDPA peers"; timeout 120 python3 bench/cuda/sdpa_peers.py $NS >> "$S" 2>&1
say "== per-kernel profile"
(cd /tmp && STEM_LIBRARY=$B/libstem.so PYTHONPATH=$OLDPWD/python timeout 90 python3 $OLDPWD/bench/cuda/profile_stages.py 8192 32768 131072) >> "$S" 2>&1
say "== per-kernel profile, STEM_CUDA_SCORE_GEMM=tc"
(cd /tmp && STEM_CUDA_SCORE_GEMM=tc STEM_LIBRARY=$B/libstem.so PYTHONPATH=$OLDPWD/python timeout 60 python3 $OLDPWD/bench/cuda/profile_stages.py 8192 131072) 2>&1 | grep -E '^####|score|phase' >> "$S"
say "== chunked prefill vs one-shot (CUDA, 8K chunks)"
timeout 90 "$B/tools/stem" bench --backend cuda --n 32768,131072 --chunk 8192 --markdown --quiet \
    --warmup 1 --repeat 3 >> "$S" 2>&1
say "== CPU bf16: default ISA (AMX) and AVX-512, torch"
timeout 100 "$B/tools/stem" bench --backend cpu --hq 32 --hkv 8 --d 128 --dtype bf16 --n 8192,16384,32768 \
    --markdown --quiet --warmup 1 --repeat 2 >> "$S" 2>&1
STEM_CPU_MAX_ISA=avx512 timeout 60 "$B/tools/stem" bench --backend cpu --hq 32 --hkv 8 --d 128 --dtype bf16 \
    --n 8192,16384 --markdown --quiet --warmup 1 --repeat 2 2>&1 | grep -E '^\| [0-9]' >> "$S"
timeout 120 python3 bench/cpu/torch_sdpa.py --n 8192 --n 16384 --n 32768 --d 128 --dtypes bf16 \
    --warmup 1 --repeat 2 >> "$S" 2>&1
say "total $((SECONDS - t0)) s"
tar czf "$O/logs.tgz" -C "$L" .
