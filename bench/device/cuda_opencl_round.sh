#!/usr/bin/env bash
# One GPU-machine call: the CUDA backend of two builds side by side (BUILD and
# BUILD/b, a library built from another commit, e.g. a kernel rewrite), the
# varlen / paged-KV cases on CUDA under memcheck, paged and varlen timings,
# and the OpenCL backend on the NVIDIA device. BUILD (default
# build-dev-carry) holds libstem.so*, tests/test_conformance, tools/stem,
# stem_cuda_bench; BUILD/b holds only libstem.so*. .devdeps/*.deb: libcmocka0,
# ocl-icd-libopencl1. Output: $OUT/summary.txt and $OUT/logs.tgz. ~8 minutes.
#   1. conformance in parallel: CUDA (build A), CUDA (build B), OpenCL on the
#      NVIDIA device (every case each);
#   2. memcheck on the paged and varlen cases (build A);
#   3. stem_cuda_bench A then B (8K-128K), SDPA flash / cuDNN, the per-kernel
#      profile of B's scoring;
#   4. paged KV and varlen against contiguous one-shot (CUDA; PAGED=0 skips),
#      chunked;
#   5. OpenCL on NVIDIA: bf16 8K/16K, f32 and f16 8K, the tile sweep
#      (bench/opencl/tile_sweep.sh), beside our CUDA.
set -uo pipefail
cd "$(dirname "$0")/../.."
B=$PWD/${BUILD:-build-dev-carry}; O=${OUT:-/tmp/cuda-opencl-round}; L=/tmp/cuda-opencl-logs
mkdir -p "$O" "$L"; S=$O/summary.txt; : > "$S"
say() { echo "$*" | tee -a "$S"; }
for f in .devdeps/*.deb; do dpkg -x "$f" /; done; ldconfig
export LD_LIBRARY_PATH=$B:${LD_LIBRARY_PATH:-} PYTHONUNBUFFERED=1 STEM_FIXTURE_DIR=$PWD/tests/fixtures/smollm2
say "date $(date -u +%FT%TZ) commit $(cat COMMIT 2>/dev/null) b=$(cat "$B/b/COMMIT" 2>/dev/null)"
say "gpu $(nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader) cpu $(lscpu | sed -n 's/^Model name: *//p') x $(nproc)"
"$B/tools/stem" info > "$L/info.txt" 2>&1; sed -n '/^devices/,$p' "$L/info.txt" >> "$S"
nv=$(grep -E '^ *\[[0-9]+\]\*? +opencl:' -A1 "$L/info.txt" | grep -i -B1 nvidia | grep -E '^ *\[' | head -1 | sed -E 's/^ *\[([0-9]+)\].*/\1/')
[ "${OPENCL:-1}" = 1 ] || nv= # OPENCL=0: CUDA only
nv_icd=$(grep -l -i nvidia /etc/OpenCL/vendors/*.icd 2>/dev/null | head -1)
[ "${OPENCL:-1}" = 1 ] || nv_icd=
say "opencl nvidia device [${nv:-none}] icd ${nv_icd:-none}"
t0=$SECONDS
suite() { # suite LABEL SECONDS ENV...
    local l=$1 s=$2; shift 2
    env "$@" timeout -k 5 "$s" "$B/tests/test_conformance" > "$L/conf-$l.log" 2>&1
    echo "rc=$?" >> "$L/conf-$l.log"
}
suite cuda-a 200 STEM_TEST_ONLY=cuda STEM_TEST_REQUIRE=cuda OMP_NUM_THREADS=5 &
suite cuda-b 200 LD_LIBRARY_PATH=$B/b:$LD_LIBRARY_PATH STEM_TEST_ONLY=cuda STEM_TEST_REQUIRE=cuda OMP_NUM_THREADS=5 &
# Every OpenCL device the loader finds (the suite runs each; PoCL on its thinned
# sweep); only the NVIDIA one where its ICD file is known (the H100 machine of
# 2026-12-07 had none under /etc/OpenCL/vendors, yet its loader found the driver).
if [ -n "$nv_icd" ]; then
    suite opencl-nvidia 200 OCL_ICD_VENDORS=$nv_icd STEM_TEST_ONLY=opencl STEM_TEST_REQUIRE=opencl OMP_NUM_THREADS=5 &
elif [ -n "$nv" ]; then
    suite opencl-all 200 STEM_TEST_ONLY=opencl STEM_TEST_REQUIRE=opencl OMP_NUM_THREADS=5 &
fi
wait
say "suites $((SECONDS - t0)) s"
for f in "$L"/conf-*.log; do
    say "$(basename "$f" .log): ok=$(grep -c '^\[       OK \]' "$f") failed=$(grep -c '^\[  FAILED  \]' "$f") $(grep -E '^(cuda|opencl): [0-9]+ passed' "$f" | tail -1) $(tail -1 "$f")"
    grep -E '^\[  FAILED  \]' "$f" | sort -u | head -12 >> "$S"
    grep -c '^\[       OK \] varlen_' "$f" | sed 's/^/  varlen cases ok: /' >> "$S"
done
CS=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
for filt in varlen_c5_paged varlen_c6_vs_single ${MEMCHECK_EXTRA:-}; do
    out=$(STEM_TEST_ONLY=cuda STEM_TEST_REQUIRE=cuda STEM_TEST_FILTER=$filt OMP_NUM_THREADS=8 \
          timeout 90 "$CS" --tool memcheck --error-exitcode 7 "$B/tests/test_conformance" 2>&1)
    say "memcheck $filt: rc=$? $(echo "$out" | grep -E '^cuda: [0-9]+ passed' | tail -1) $(echo "$out" | grep -E 'ERROR SUMMARY' | tail -1)"
done
NS="8192 16384 32768 65536 131072"
say "== stem_cuda_bench A"; timeout 100 "$B/stem_cuda_bench" $NS >> "$S" 2>&1
say "== stem_cuda_bench B"; LD_LIBRARY_PATH=$B/b:$LD_LIBRARY_PATH timeout 100 "$B/stem_cuda_bench" $NS >> "$S" 2>&1
say "== SDPA peers"; timeout 120 python3 bench/cuda/sdpa_peers.py $NS >> "$S" 2>&1
for v in a b; do
    lib=$B/libstem.so; [ $v = b ] && lib=$B/b/libstem.so
    say "== per-kernel profile, build $v (scoring kernels)"
    (cd /tmp && STEM_LIBRARY=$lib PYTHONPATH=$OLDPWD/python timeout 60 python3 $OLDPWD/bench/cuda/profile_stages.py 8192 32768) 2>&1 |
        grep -E '^####|attn|score|phase|value|select|group' >> "$S"
done
llama=(--backend cuda --hq 32 --hkv 8 --d 128 --markdown --quiet --warmup 1 --repeat 3)
if [ "${PAGED:-1}" = 1 ]; then
say "== paged KV (page 64, 4 sequences of each N) vs contiguous"
timeout 90 "$B/tools/stem" bench "${llama[@]}" --n 8192,32768 --batch 4 --page-size 64 >> "$S" 2>&1
say "== the same, STEM_CUDA_GATHER=memcpy (one driver copy per page)"
STEM_CUDA_GATHER=memcpy timeout 90 "$B/tools/stem" bench "${llama[@]}" --n 8192,32768 --batch 4 --page-size 64 >> "$S" 2>&1
say "== paged KV page 16 and 256, one 32K sequence"
timeout 60 "$B/tools/stem" bench "${llama[@]}" --n 32768 --page-size 16 >> "$S" 2>&1
timeout 60 "$B/tools/stem" bench "${llama[@]}" --n 32768 --page-size 256 >> "$S" 2>&1
say "== varlen (4K, 8K, 16K, 32K) vs separate calls"
timeout 60 "$B/tools/stem" bench "${llama[@]}" --n 32768 --seq-lens 4096,8192,16384,32768 >> "$S" 2>&1
fi
say "== chunked prefill vs one-shot (8K chunks)"
timeout 90 "$B/tools/stem" bench "${llama[@]}" --n 32768,131072 --chunk 8192 >> "$S" 2>&1
say "== chunked prefill vs one-shot (8K chunks), build B"
LD_LIBRARY_PATH=$B/b:$LD_LIBRARY_PATH timeout 90 "$B/tools/stem" bench "${llama[@]}" --n 131072 --chunk 8192 >> "$S" 2>&1
if [ -n "$nv" ]; then
    ocl=(--device "$nv" --hq 32 --hkv 8 --d 128 --markdown --quiet --warmup 1 --repeat 3)
    say "== OpenCL on NVIDIA"
    timeout 90 "$B/tools/stem" bench "${ocl[@]}" --dtype bf16 --n 8192,16384 >> "$S" 2>&1
    timeout 60 "$B/tools/stem" bench "${ocl[@]}" --dtype f32 --n 8192 >> "$S" 2>&1
    timeout 60 "$B/tools/stem" bench "${ocl[@]}" --dtype f16 --n 8192 >> "$S" 2>&1
    if [ -f bench/opencl/tile_sweep.sh ]; then
        say "== OpenCL tile sweep (bench/opencl/tile_sweep.sh)"
        BUILD=$B timeout 200 bash bench/opencl/tile_sweep.sh "$nv" >> "$S" 2>&1
    fi
    say "== our CUDA, same shapes"
    timeout 60 "$B/tools/stem" bench "${llama[@]}" --dtype f32 --n 8192 >> "$S" 2>&1
fi
say "total $((SECONDS - t0)) s"
tar czf "$O/logs.tgz" -C "$L" .
