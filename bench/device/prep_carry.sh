#!/usr/bin/env bash
# Builds build-dev-carry/, the folder GPU-machine calls carry (with .devdeps,
# .gl and COMMIT): libstem with CUDA, OpenCL and Vulkan, tools/stem, the test
# binaries the device scripts run, the CUDA and OpenCL probes, fma_peak, the
# phase-timer CPU library (phase/) and, when OLD_CPU=<commit> is given, that
# commit's library in old-cpu/ for A/B runs. Also fills .devdeps (libcmocka0,
# ocl-icd-libopencl1, libvulkan1) and .gl (the glvnd libraries the NVIDIA
# Vulkan ICD loads, and the Khronos validation layer) with .debs, and writes
# COMMIT. About 5 minutes on 2 cores from scratch.
# Usage: [OLD_CPU=8f143f3] bash bench/device/prep_carry.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ ! -f build-dev/CMakeCache.txt ]; then
    cmake -S . -B build-dev -DCMAKE_BUILD_TYPE=Release -DSTEM_CUDA=ON -DSTEM_OPENCL=ON \
          -DSTEM_VULKAN=ON > /dev/null
fi
cmake --build build-dev -j"$(nproc)" > /dev/null
bash bench/cpu/phase_build.sh build-phase > /dev/null
C=build-dev-carry
mkdir -p $C/tests/hardening $C/tools $C/phase
cp -a build-dev/libstem.so* $C/
for t in test_conformance test_wrap_native test_vk_async test_cpu_amx_layout test_cpu_exp2; do
    [ -f build-dev/tests/$t ] && cp build-dev/tests/$t $C/tests/
done
[ -f build-dev/tests/hardening/test_vk_limits ] && cp build-dev/tests/hardening/test_vk_limits $C/tests/hardening/
cp build-dev/tools/stem $C/tools/
cp -a build-phase/libstem.so* $C/phase/
for x in stem_cuda_bench stem_cuda_persist_check; do
    gcc -O2 bench/cuda/$x.c -Iapi -Lbuild-dev -lstem -lm -o $C/$x
done
gcc -O2 -fopenmp bench/cpu/fma_peak.c -o $C/fma_peak
gcc -O2 bench/opencl/cl_kernel_info.c -o $C/cl_kernel_info -l:libOpenCL.so.1
f=$(find build-dev -name 'attention_sm90*.fatbin' | head -1)
[ -n "$f" ] && cp "$f" $C/attention_sm90.fatbin
if [ -n "${OLD_CPU:-}" ]; then
    wt=$(mktemp -d)
    git worktree add -q "$wt" "$OLD_CPU"
    cmake -S "$wt" -B "$wt/build" -DCMAKE_BUILD_TYPE=Release -DSTEM_BUILD_TESTS=OFF \
          -DSTEM_BUILD_EXAMPLES=OFF > /dev/null
    cmake --build "$wt/build" -j"$(nproc)" --target stem > /dev/null
    mkdir -p $C/old-cpu
    cp -a "$wt"/build/libstem.so* $C/old-cpu/
    git -C "$wt" rev-parse --short HEAD > $C/old-cpu/COMMIT
    git worktree remove --force "$wt"
fi
mkdir -p .devdeps .gl
(cd .devdeps && apt-get download libcmocka0 ocl-icd-libopencl1 libvulkan1 > /dev/null 2>&1) || true
(cd .gl && apt-get download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 \
    vulkan-validationlayers > /dev/null 2>&1) || true
git rev-parse --short HEAD > COMMIT
du -sh $C .devdeps .gl
