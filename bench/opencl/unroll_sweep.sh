#!/usr/bin/env bash
# The default OpenCL GPU tile (4,8,4,32) with less loop unrolling (kernels/
# attention.cl: S_UNROLL, the Q K^T loop over d, default 4; PV_UNROLL, the
# P V loop over keys, default 2), dense bf16 16K on the NVIDIA device: every
# unrolled step hoists its local loads into registers and the compiler takes
# all 255, so an SM holds 8 warps; fewer registers may buy occupancy. First
# the registers of each build (slice_regs.sh, needs BUILD/cl_kernel_info), then
# one tile_sweep.sh run per setting. About 15 s a setting on the H100:
#   BUILD=build-dev-carry bash bench/opencl/unroll_sweep.sh
# Env: BUILD, SETTINGS (space-separated "S,PV" pairs), TOTAL (seconds, 150).
set -uo pipefail
cd "$(dirname "$0")/../.."
SETTINGS="${SETTINGS:-4,2 1,1 2,1 1,2 2,2 4,1 8,2}"
TOTAL="${TOTAL:-150}"
shape="-DBQ=32 -DKT=32 -DRPT=4 -DTX=8 -DKPT=4"
if [ -x "${BUILD:-build-dev-carry}/cl_kernel_info" ]; then
    args=()
    for s in $SETTINGS; do args+=("$shape -DS_UNROLL=${s%,*} -DPV_UNROLL=${s#*,}"); done
    timeout 60 bash bench/opencl/slice_regs.sh "${args[@]}"
fi
t0=$SECONDS
for s in $SETTINGS; do
    left=$((TOTAL - (SECONDS - t0)))
    [ "$left" -ge 10 ] || { echo "S,PV unroll $s: skipped (past ${TOTAL} s)"; continue; }
    echo "S,PV unroll $s:"
    TILES="4,8,4,32" NS=16384 DENSE_ONLY=1 SECS=$((left < 25 ? left : 25)) TOTAL=$left \
        BUILD_OPTS="-DS_UNROLL=${s%,*} -DPV_UNROLL=${s#*,}" bash bench/opencl/tile_sweep.sh |
        grep -E "tile|fp32 peak"
done
