#!/usr/bin/env bash
# The d-sliced attention kernel (kernels/attention_slice.cl) beside the
# default block_attention tile, dense bf16 at 16K only (Hq 32, Hkv 8, d 128,
# causal), one `stem bench --selector dense --no-dense` a shape through
# tile_sweep.sh; about 5 s a shape on the H100, capped at TOTAL (85) s:
#   BUILD=build-dev-carry bash bench/opencl/slice_sweep.sh [DEVICE_INDEX]
# Same environment as tile_sweep.sh (TILES, NS, DTYPES, SECS, TOTAL, OUT,
# BUILD_OPTS); the defaults below differ.
#
# Shapes "s,rpt,tx,kpt,bq[,ds[,vs[,pf]]]": rows and keys per item (4 or 8
# each), items per row, rows per work-group; KT = tx * kpt keys a tile; ds
# d-columns per Q / K slice, vs keys per V slice (two buffers of each; the
# 48 KiB NVIDIA limit shrinks them), pf 1 = loads issued a slice ahead.
# Local memory at d 128, items, logits + outputs an item:
#   4,8,4,32             the default kernel (reference point)
#   s,4,8,8,64,8,8,0     28 KiB, 128 items, 4x8 S + 4x16 O (best sliced, 35.2%)
#   s,4,8,8,64,16,16,0   36 KiB, 128 items, same with larger slices
#   s,8,16,4,64,16,16,0  38 KiB, 128 items, 8x4 S + 8x8 O
#   s,8,8,4,64,16,16,0   27 KiB,  64 items, 8x4 S + 8x16 O
#   s,4,16,4,64,8,8,0    30 KiB, 256 items, 4x4 S + 4x8 O (fewest registers)
#   s,4,8,8,64,8,8       28 KiB, the best shape with pf 1
#   s,8,8,8,64,16,16,0   36 KiB,  64 items, 8x8 S + 8x16 O (spills)
set -uo pipefail
cd "$(dirname "$0")/../.."
export TILES="${TILES:-4,8,4,32 s,4,8,8,64,8,8,0 s,4,8,8,64,16,16,0 s,8,16,4,64,16,16,0 s,8,8,4,64,16,16,0 s,4,16,4,64,8,8,0 s,4,8,8,64,8,8 s,8,8,8,64,16,16,0}"
export NS="${NS:-16384}"
export TOTAL="${TOTAL:-85}"
export SECS="${SECS:-20}"
export DENSE_ONLY="${DENSE_ONLY:-1}"
exec bash bench/opencl/tile_sweep.sh "$@"
