#!/bin/sh
# XAttention masks of `stem run --selector xattention` against the official
# rule (xattn_official.py) on the SmolLM2 fixtures: both layers, blocks 128
# and 64, tau 0.8 / 0.9 / 0.95, f16 and bf16 runs, the official masses in
# f64 and as the official torch path rounds them (bf16).
# Usage: bench/official/xattn_agreement.sh [STEM_BIN] [OUT_DIR]
set -eu
STEM=${1:-build/tools/stem}
OUT=${2:-/tmp/xattn_agreement}
FIX=tests/fixtures/smollm2
PY=${PYTHON:-python3}
mkdir -p "$OUT"
for L in 02 14; do
    for B in 128 64; do
        for TAU in 0.8 0.9 0.95; do
            for DT in f16 bf16; do
                D="$OUT/l${L}_b${B}_t${TAU}_${DT}"
                "$STEM" run "$FIX/layer${L}_q.npy" "$FIX/layer${L}_k.npy" "$FIX/layer${L}_v.npy" \
                    --selector xattention --block-size "$B" --tau "$TAU" --dtype "$DT" -o "$D" >/dev/null
                EXTRA=""
                [ "$DT" = bf16 ] && EXTRA="--bf16-inputs"
                for M in f64 torch; do
                    printf 'layer %s block %s tau %s run %s official masses %s: ' "$L" "$B" "$TAU" "$DT" "$M"
                    "$PY" "$(dirname "$0")/xattn_official.py" "$FIX/layer${L}_q.npy" \
                        "$FIX/layer${L}_k.npy" --block "$B" --tau "$TAU" --mass "$M" $EXTRA \
                        --stem-blocks "$D/blocks.npy" | tail -1
                done
            done
        done
    done
done
