#!/usr/bin/env bash
# A short one-call check of a dev-machine build (BUILD, default build-dev-carry) on the
# GPU machine, for when little device time is left: the CUDA suite (default
# kernels, and the sm90 family forced on block-128 cases), the CPU suite on the
# best ISA (AMX where present), then CUDA benches (mma.sync vs sm90 kernels) and
# the SDPA peers, and the CPU bf16 bench beside torch, all in the same call.
# BUILD holds libstem.so*, tests/test_conformance, tools/stem and stem_cuda_bench.
# Needs .devdeps/*.deb (libcmocka0). Output: $OUT/summary.txt, $OUT/logs.tgz.
set -uo pipefail
cd "$(dirname "$0")/../.."
B=$PWD/${BUILD:-build-dev-carry}; O=${OUT:-/tmp/short-check}; L=/tmp/short-check-logs
mkdir -p "$O" "$L"; S=$O/summary.txt
say() { echo "$*" | tee -a "$S"; }
for f in .devdeps/*.deb; do dpkg -x "$f" /; done; ldconfig
export LD_LIBRARY_PATH=$B:${LD_LIBRARY_PATH:-} PYTHONUNBUFFERED=1 STEM_FIXTURE_DIR=$PWD/tests/fixtures/smollm2
say "date $(date -u +%FT%TZ) commit $(cat COMMIT 2>/dev/null)"
say "gpu $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader) cpu $(lscpu | sed -n 's/^Model name: *//p') x $(nproc)"
"$B/tools/stem" info >> "$S" 2>&1
suite() { # suite LABEL SECONDS ENV...
    local l=$1 s=$2; shift 2
    ( env "$@" timeout -k 5 "$s" "$B/tests/test_conformance" > "$L/conf-$l.log" 2>&1
      echo "rc=$?" >> "$L/conf-$l.log" ) &
}
t0=$SECONDS
suite cuda 110 STEM_TEST_ONLY=cuda STEM_TEST_REQUIRE=cuda OMP_NUM_THREADS=2
suite cuda-sm90-b128 90 STEM_TEST_ONLY=cuda STEM_TEST_REQUIRE=cuda STEM_CUDA_ATTN=sm90 STEM_TEST_FILTER=_b128_ OMP_NUM_THREADS=2
suite cpu 100 STEM_TEST_ONLY=cpu STEM_TEST_REQUIRE=cpu OMP_NUM_THREADS=8
W=/tmp/short-check-work; mkdir -p $W
( gcc -O2 -std=c11 -Iapi examples/simple_prefill.c -L"$B" -lstem -lm -o $W/simple_prefill &&
  timeout 30 $W/simple_prefill; echo "rc=$?" ) > "$L/example.log" 2>&1 &
( gcc -O2 -std=c11 -D_GNU_SOURCE -Iapi -Itests/reference -Itests/common tests/interop/test_wrap_native.c \
    tests/reference/stem_ref.c tests/common/stem_synth.c -L"$B" -lstem -ldl -lm -o $W/test_wrap_native &&
  STEM_TEST_ONLY=cuda,cpu STEM_TEST_REQUIRE=cuda timeout 60 $W/test_wrap_native; echo "rc=$?" ) > "$L/wrap_native.log" 2>&1 &
wait
say "suites $((SECONDS - t0)) s"
for f in "$L"/conf-*.log; do
    say "$(basename "$f" .log): $(grep -E '^(cuda|cpu): [0-9]+ passed' "$f" | tail -1) $(tail -1 "$f")" \
        "ok=$(grep -c '^\[       OK \]' "$f") failed=$(grep -c '^\[  FAILED  \]' "$f")"
    grep -E '^\[  FAILED  \]' "$f" | head -10 >> "$S"
done
say "example: $(tail -1 $L/example.log); wrap_native: $(tail -1 $L/wrap_native.log)"
tail -4 "$L/wrap_native.log" >> "$S"
say "== python/tests/device_check.py"
(cd /tmp && STEM_LIBRARY=$B/libstem.so PYTHONPATH=$OLDPWD/python timeout 60 python3 $OLDPWD/python/tests/device_check.py) >> "$S" 2>&1
say "device_check rc=$?"
for fam in mma sm90; do
    say "== stem_cuda_bench STEM_CUDA_ATTN=$fam"
    STEM_CUDA_ATTN=$fam timeout 25 "$B/stem_cuda_bench" 8192 32768 >> "$S" 2>&1
done
say "== SDPA peers"; timeout 30 python3 bench/cuda/sdpa_peers.py 8192 32768 >> "$S" 2>&1
say "== stem bench cpu bf16"
timeout 20 "$B/tools/stem" bench --backend cpu --hq 32 --hkv 8 --d 128 --dtype bf16 --n 8192 \
    --markdown --quiet --warmup 0 --repeat 1 >> "$S" 2>&1
say "== torch cpu bf16"
timeout 25 python3 bench/cpu/torch_sdpa.py --n 8192 --d 128 --dtypes bf16 --warmup 0 --repeat 1 >> "$S" 2>&1
say "total $((SECONDS - t0)) s"
tar czf "$O/logs.tgz" -C "$L" .
