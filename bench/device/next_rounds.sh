#!/usr/bin/env bash
# The next GPU-machine calls for issues 17 and 19, written while the pool was
# paused (2026-12-08). Each round fits one call (600 s); run them in order:
#   ROUND=vulkan bash bench/device/next_rounds.sh   # ~540 s
#   ROUND=cpu    bash bench/device/next_rounds.sh   # ~560 s
# Carry: ["build-dev-carry", ".devdeps", ".gl", "COMMIT"], all four made by
# `OLD_CPU=8f143f3 bash bench/device/prep_carry.sh`.
#   vulkan: the 32K bisect (anomaly_bisect.sh), then device_check.sh on the new
#           default (KHR) and NV with the f32 split suites (f32m, f32mnv: the
#           Pl fix of d44a8f2) and the benches beside SDPA, then the d 64 cases
#           under the Khronos validation layer.
#   cpu:    cpu_matrix.sh (issue 19's whole matrix, lazy A/B, suites under four
#           caps), then the OpenCL unroll sweep (GPU-bound, after the CPU work).
set -uo pipefail
cd "$(dirname "$0")/../.."
O=${OUT:-/tmp/next-round}; mkdir -p "$O"
case "${ROUND:-}" in
vulkan)
    OUT=$O timeout 130 bash bench/vulkan/anomaly_bisect.sh > /dev/null 2>&1
    OUT=$O/vk BUILD=build-dev-carry PATHS=khr,nv SUITE_S=150 BENCH_S=40 NS=8192,32768 \
        timeout 360 bash bench/vulkan/device_check.sh > /dev/null 2>&1
    # the d 64 cases on the default (KHR) path under the Khronos validation layer
    # (.gl carries it; device_check.sh unpacked it)
    icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
    [ -f "$icd" ] && export VK_DRIVER_FILES="$icd"
    STEM_TEST_ONLY=vulkan STEM_TEST_FILTER=_d64 LD_LIBRARY_PATH=$PWD/build-dev-carry \
        STEM_FIXTURE_DIR=$PWD/tests/fixtures/smollm2 \
        timeout 60 bash tests/hardening/vk_validation.sh build-dev-carry/tests/test_conformance \
        > "$O/validation.txt" 2>&1
    cat "$O/bisect.txt" "$O/vk/summary.txt" "$O/validation.txt" 2>/dev/null
    ;;
cpu)
    OUT=$O DEADLINE=400 bash bench/device/cpu_matrix.sh > /dev/null 2>&1
    OUT=$O BUILD=build-dev-carry TOTAL=140 timeout 150 bash bench/opencl/unroll_sweep.sh > "$O/unroll.txt" 2>&1
    cat "$O/summary.txt" "$O/unroll.txt"
    ;;
*) echo "ROUND=vulkan or ROUND=cpu" >&2; exit 2 ;;
esac
