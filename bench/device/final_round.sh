#!/usr/bin/env bash
# One short GPU-machine call for the CUDA and OpenCL backends together (when
# little device time is left), from a dev-machine build with CUDA and OpenCL
# (BUILD, default build-dev-carry) and .devdeps/*.deb:
#   1. in parallel: the CUDA suite, the OpenCL suite on the NVIDIA device and
#      on PoCL (each process sees one OpenCL platform through OCL_ICD_VENDORS);
#   2. one at a time: stem_cuda_bench 8K-128K, SDPA flash / cuDNN, the
#      per-kernel CUDA profile, stem bench on NVIDIA OpenCL (bf16, f32), PoCL
#      against the CPU backend (f32, bf16; Hq 8, Hkv 2, d 128, 8K).
# Output: $OUT/summary.txt and $OUT/logs.tgz. About 5 minutes.
set -uo pipefail
cd "$(dirname "$0")/../.."
B=$PWD/${BUILD:-build-dev-carry}; O=${OUT:-/tmp/final-round}; L=/tmp/final-round-logs
mkdir -p "$O" "$L"; S=$O/summary.txt
say() { echo "$*" | tee -a "$S"; }
for f in .devdeps/*.deb; do dpkg -x "$f" /; done; ldconfig
export LD_LIBRARY_PATH=$B:${LD_LIBRARY_PATH:-} PYTHONUNBUFFERED=1 STEM_FIXTURE_DIR=$PWD/tests/fixtures/smollm2
stem=$B/tools/stem
say "date $(date -u +%FT%TZ) commit $(cat COMMIT 2>/dev/null)"
say "gpu $(nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader) cpu $(lscpu | sed -n 's/^Model name: *//p') x $(nproc)"
"$stem" info > "$L/info.txt" 2>&1; sed -n '/^devices/,$p' "$L/info.txt" >> "$S"
nv_icd=$(grep -l -i nvidia /etc/OpenCL/vendors/*.icd 2>/dev/null | head -1)
pocl_icd=$(grep -l -i pocl /etc/OpenCL/vendors/*.icd 2>/dev/null | head -1)
t0=$SECONDS
suite() { # suite LABEL SECONDS ENV...
    local l=$1 s=$2; shift 2
    ( env "$@" timeout -k 5 "$s" "$B/tests/test_conformance" > "$L/conf-$l.log" 2>&1
      echo "rc=$?" >> "$L/conf-$l.log" ) &
}
suite cuda 150 STEM_TEST_ONLY=cuda STEM_TEST_REQUIRE=cuda OMP_NUM_THREADS=4
[ -n "$nv_icd" ] && suite opencl-nvidia 150 OCL_ICD_VENDORS=$nv_icd STEM_TEST_ONLY=opencl STEM_TEST_REQUIRE=opencl OMP_NUM_THREADS=4
[ -n "$pocl_icd" ] && suite opencl-pocl 150 OCL_ICD_VENDORS=$pocl_icd STEM_TEST_ONLY=opencl STEM_TEST_REQUIRE=opencl OMP_NUM_THREADS=4
wait
say "suites $((SECONDS - t0)) s"
for f in "$L"/conf-*.log; do
    say "$(basename "$f" .log): ok=$(grep -c '^\[       OK \]' "$f") failed=$(grep -c '^\[  FAILED  \]' "$f") skipped=$(grep -c '^\[  SKIPPED \]' "$f") $(tail -1 "$f")"
    grep -E '^\[  FAILED  \]|^ERROR' "$f" | sort -u | head -12 >> "$S"
done
step() { # step NAME SECONDS CMD...
    local name=$1 secs=$2; shift 2
    local t1=$SECONDS
    timeout -k 5 "$secs" "$@" > "$L/$name.txt" 2>&1
    say "== $name rc=$? $((SECONDS - t1)) s"
    grep -v '^- ' "$L/$name.txt" >> "$S"
}
step cuda-bench 60 "$B/stem_cuda_bench" 8192 16384 32768 65536 131072
step sdpa-peers 50 python3 bench/cuda/sdpa_peers.py 8192 16384 32768 65536 131072
( cd /tmp && STEM_LIBRARY=$B/libstem.so PYTHONPATH=$OLDPWD/python timeout 40 \
  python3 $OLDPWD/bench/cuda/profile_stages.py 8192 32768 ) 2>&1 | grep -E '^####|stem_k' | grep -v 'bare C' > "$L/profile.txt"
say "== profile"; cat "$L/profile.txt" >> "$S"
nv=$(grep -E '^ *\[[0-9]+\]\*? +opencl:' "$L/info.txt" | grep -i nvidia | head -1 | sed -E 's/^ *\[([0-9]+)\].*/\1/')
pocl=$(grep -E -A1 '^ *\[[0-9]+\]\*? +opencl:' "$L/info.txt" | grep -B1 -i 'portable computing' | grep -E '^ *\[' | head -1 | sed -E 's/^ *\[([0-9]+)\].*/\1/')
llama=(--hq 32 --hkv 8 --d 128 --markdown --quiet --warmup 1 --repeat 2)
if [ -n "$nv" ]; then
    step ocl-nvidia-bf16 45 "$stem" bench --device "$nv" "${llama[@]}" --dtype bf16 --n 8192,16384
    step ocl-nvidia-f32 30 "$stem" bench --device "$nv" "${llama[@]}" --dtype f32 --n 8192
fi
small=(--n 8192 --hq 8 --hkv 2 --d 128 --markdown --quiet --warmup 1 --repeat 2)
for dt in f32 bf16; do
    [ -n "$pocl" ] && step "pocl-$dt" 45 "$stem" bench --device "$pocl" "${small[@]}" --dtype "$dt"
    step "cpu-$dt" 30 "$stem" bench --backend cpu "${small[@]}" --dtype "$dt"
done
say "total $((SECONDS - t0)) s"
tar czf "$O/logs.tgz" -C "$L" .
