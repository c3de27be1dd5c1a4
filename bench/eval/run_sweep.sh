#!/usr/bin/env bash
# The accuracy sweep behind docs/accuracy.md: one 8K-token window per text,
# configurations in priority order (the most informative first, so a cut-short
# run still answers the main questions). Appends to $OUT (TSV) and logs to
# $OUT.log. The dense pass is cached per window (.model/cache), so a rerun
# only pays for the sparse forwards.
#   bash bench/eval/run_sweep.sh [texts] [out]
set -euo pipefail
cd "$(dirname "$0")/../.."
TEXTS=${1:-data/austen/prideprejudice.txt}
OUT=${2:-bench/eval/results/sweep.tsv}
STEM=${STEM_BIN:-build/tools/stem}
mkdir -p "$(dirname "$OUT")"
CONFIGS=${CONFIGS:-"stem:b=64:k=16;uniform:b=64:k=14;xattention:b=64:tau=0.9;\
stem:b=64:k=16:beta=0;stem:b=64:k=16:mu=1;stem:b=64;uniform:b=64;stem_paper:b=64:k=16;\
stem:b=64:k=16:dl=0;stem:b=128;xattention:b=64:tau=0.8;uniform:b=128;xattention:b=128:tau=0.9;\
stem:b=64:k=32;uniform:b=64:k=27"}
"$STEM" eval --text "$TEXTS" --tokens "${TOKENS:-8192}" --configs "$CONFIGS" --results "$OUT" \
    2>&1 | tee -a "$OUT.log"
