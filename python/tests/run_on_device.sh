#!/usr/bin/env bash
# The GPU machine's check of the interop work, one command from the
# repository root:  bash python/tests/run_on_device.sh
#   1. pip install ./python (setuptools builds libstem with the CUDA backend;
#      no network there: --no-build-isolation, the machine's own setuptools);
#      if pip cannot, the same CMake build is used in place (STEM_LIBRARY);
#   2. examples/simple_prefill.c on the best device (the README's example: a
#      GPU here, so host data goes through stem_buffer_create + write);
#   3. tests/interop/test_wrap_native.c on CUDA and the CPU (cuMemAlloc'd
#      memory wrapped in place; the caller's context and stream survive);
#   4. python/tests/device_check.py (CUDA tensors, transformers, overhead);
#   5. the package's CPU tests (pytest, if present).
# Prints one summary; exits non-zero if any part failed.
set -uo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
py=${PYTHON:-python3}
jobs=$(nproc 2>/dev/null || echo 8)
declare -a summary
status=0
step() { # name, status
  if [ "$2" -eq 0 ]; then summary+=("PASS  $1"); else summary+=("FAIL  $1 (exit $2)"); status=1; fi
}
t0=$(date +%s)

echo "== 1. pip install ./python (CUDA backend)"
export STEM_BACKENDS=${STEM_BACKENDS-cuda} STEM_BUILD_JOBS=$jobs
installed=0
for extra in "" "--break-system-packages"; do
  if $py -m pip install --no-build-isolation --no-deps $extra ./python; then installed=1; break; fi
done
work=$(mktemp -d)
if [ $installed -eq 1 ] && (cd "$work" && $py -c 'import stem; print("stem from", stem.library_path())'); then
  lib=$(cd "$work" && $py -c 'import stem; print(stem.library_path())')
  step "pip install ./python" 0
else
  echo "pip install did not work here; using the CMake build in place"
  step "pip install ./python" 1
  lib=$(ls python/build/cmake/libstem.so.*.*.* 2>/dev/null | tail -1)
  if [ -z "$lib" ]; then
    cmake -S . -B python/build/cmake -DCMAKE_BUILD_TYPE=Release -DSTEM_CUDA=ON \
      -DSTEM_BUILD_TESTS=OFF -DSTEM_BUILD_TOOLS=OFF -DSTEM_BUILD_EXAMPLES=OFF >/dev/null &&
      cmake --build python/build/cmake --target stem -j "$jobs" >/dev/null
    lib=$(ls python/build/cmake/libstem.so.*.*.* 2>/dev/null | tail -1)
  fi
  export STEM_LIBRARY=$root/$lib PYTHONPATH=$root/python${PYTHONPATH:+:$PYTHONPATH}
  lib=$root/$lib
fi
echo "libstem: $lib ($(( $(date +%s) - t0 )) s so far)"
libdir=$work/lib
soname=$(readelf -d "$lib" 2>/dev/null | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
mkdir -p "$libdir" && cp "$lib" "$libdir/libstem.so" && ln -sf libstem.so "$libdir/${soname:-libstem.so.0}"

echo; echo "== 2. examples/simple_prefill.c"
gcc -O2 -std=c11 -Iapi examples/simple_prefill.c -L"$libdir" -lstem -lm -o "$work/simple_prefill" &&
  LD_LIBRARY_PATH=$libdir "$work/simple_prefill"
step "README example (examples/simple_prefill.c) on the best device" $?

echo; echo "== 3. tests/interop/test_wrap_native.c (CUDA and CPU)"
gcc -O2 -std=c11 -D_GNU_SOURCE -Iapi -Itests/reference -Itests/common \
  tests/interop/test_wrap_native.c tests/reference/stem_ref.c tests/common/stem_synth.c \
  -L"$libdir" -lstem -ldl -lm -o "$work/test_wrap_native" &&
  STEM_TEST_ONLY=cuda,cpu STEM_TEST_REQUIRE=${STEM_TEST_REQUIRE-cuda} LD_LIBRARY_PATH=$libdir "$work/test_wrap_native"
step "wrap_native test (cuMemAlloc memory in place; caller context and stream)" $?

echo; echo "== 4. python/tests/device_check.py"
(cd "$work" && $py "$root/python/tests/device_check.py")
step "device_check.py (CUDA tensors, transformers, 32K overhead)" $?

echo; echo "== 5. the package's CPU tests"
if $py -c 'import pytest, numpy' 2>/dev/null; then
  (cd "$work" && STEM_LIBRARY=${STEM_LIBRARY:-$lib} $py -m pytest -q -p no:cacheprovider "$root/python/tests")
  step "pytest python/tests" $?
else
  summary+=("SKIP  pytest python/tests (pytest not installed here)")
fi
rm -rf "$work"

echo; echo "================ run_on_device summary ($(( $(date +%s) - t0 )) s) ================"
printf '%s\n' "${summary[@]}"
exit $status
