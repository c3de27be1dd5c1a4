#!/usr/bin/env bash
# Prose continuation in deployment mode: windows of $TOKENS tokens from the
# three Austen texts at each offset in $OFFSETS; the first $PROMPT tokens are
# the prompt (sparse prefill, plan keyed on it), the rest is scored under
# dense decode (NLL, KL(dense || sparse), top-1). One TSV row per window and
# configuration (nll_sum / kl_sum / rows for bootstrap.py).
#   TOKENS=8192 PROMPT=6656 OFFSETS="0 8192 16384" bash bench/eval/run_prose.sh [out]
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-bench/eval/results/prose.tsv}
STEM=${STEM_BIN:-build/tools/stem}
TEXTS=data/austen/prideprejudice.txt,data/austen/emma.txt,data/austen/persuasion.txt
CONFIGS=${CONFIGS:-"stem:b=64:k=8;uniform:b=64:match=8;xattention:b=64:tau=0.8;\
xattention:b=64:tau=0.9;xattention:b=64:tau=0.95"}
mkdir -p "$(dirname "$OUT")"
for off in ${OFFSETS:-0 8192 16384}; do
    "$STEM" eval --text "$TEXTS" --tokens "${TOKENS:-2048}" --dense-from "${PROMPT:-1536}" \
        --offset "$off" --cache "${CACHE:-}" --configs "$CONFIGS" --results "$OUT" \
        2>&1 | tee -a "$OUT.log"
done
