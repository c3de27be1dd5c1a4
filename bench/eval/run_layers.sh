#!/usr/bin/env bash
# Per-layer attention-output error against dense on the dense activations
# (teacher-forced, no propagation), both halves of the window, for Stem, its
# equal-cost uniform partner, the test-only oracle under each budget, and
# XAttention: the oracle separates the block estimator from the budget.
#   TOKENS=2048 K=8 bash bench/eval/run_layers.sh [out]
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-bench/eval/results/layers.tsv}
STEM=${STEM_BIN:-build/tools/stem}
K=${K:-8}
CONFIGS=${CONFIGS:-"stem:b=64:k=$K;uniform:b=64:match=$K;oracle:b=64:k=$K;\
oracle_uniform:b=64:match=$K;xattention:b=64:tau=0.9;xattention:b=64:tau=0.95"}
mkdir -p "$(dirname "$OUT")"
"$STEM" eval --text "${TEXT:-data/austen/prideprejudice.txt}" --tokens "${TOKENS:-2048}" \
    --offset "${OFFSET:-0}" --cache '' --layer-error "$CONFIGS" --results "$OUT" \
    2>&1 | tee -a "$OUT.log"
