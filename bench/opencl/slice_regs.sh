#!/usr/bin/env bash
# Registers and spills of block_attention per tile shape on the NVIDIA
# OpenCL driver (its -cl-nv-verbose build log), d 128 bf16; needs
# BUILD/cl_kernel_info (bench/opencl/cl_kernel_info.c):
#   [NVOPTS=-cl-nv-maxrregcount=128] BUILD=build-ocl2c bash bench/opencl/slice_regs.sh ["OPTS" ...]
# Each argument: the attention -D options of one shape (as ocl_plan_init
# writes them); default: the default tile and the slice_sweep.sh shapes.
set -uo pipefail
cd "$(dirname "$0")/../.."
B="${BUILD:-build-dev-carry}"
K=backends/opencl/kernels
[ $# -gt 0 ] || set -- \
    "-DBQ=32 -DKT=32 -DRPT=4 -DTX=8 -DKPT=4" \
    "-DBQ=64 -DKT=64 -DRPT=8 -DTX=8 -DKPT=8 -DSLICE=1 -DDS=32 -DVS=32 -DSPF=1" \
    "-DBQ=64 -DKT=32 -DRPT=8 -DTX=8 -DKPT=4 -DSLICE=1 -DDS=32 -DVS=32 -DSPF=1" \
    "-DBQ=64 -DKT=64 -DRPT=4 -DTX=8 -DKPT=8 -DSLICE=1 -DDS=32 -DVS=32 -DSPF=1" \
    "-DBQ=64 -DKT=64 -DRPT=8 -DTX=16 -DKPT=4 -DSLICE=1 -DDS=32 -DVS=32 -DSPF=1" \
    "-DBQ=128 -DKT=32 -DRPT=8 -DTX=8 -DKPT=4 -DSLICE=1 -DDS=32 -DVS=32 -DSPF=1"
for o in "$@"; do
    echo "== $o"
    "$B/cl_kernel_info" /tmp/stem_kernel.ptx "-cl-std=CL1.2 -DIN_DTYPE=2 -DHEAD_DIM=128 $o -DSEL_CAP=12256 -DSEL_LS=256 -DHAS_FP64=1 -DHAS_FP16=1 -cl-nv-verbose ${NVOPTS:-}" \
        $K/common.cl $K/score.cl $K/select.cl $K/attention.cl $K/attention_slice.cl 2>&1 |
        grep -iE -A3 "block_attention|FAILED|error" | grep -iE "registers|spill|stack|FAILED|error|private" | head -8
done
