#!/usr/bin/env bash
# Retrieval suite in deployment mode (sparse prefill of the prompt, dense
# decode of the answer): passkey and multi-key needle prompts built from the
# three Austen texts, every (length, key, depth) scored for dense and each
# configuration. Appends to $OUT (TSV), logs to $OUT.log.
#   TASK=passkey LENGTHS=2048,4096,8000 KEYS=6 bash bench/eval/run_retrieval.sh [out]
# KEY_FROM=K resumes a stopped run at key index K on the same prompts.
# Full suite on SmolLM2 (8K context): LENGTHS=2048,4096,8000 KEYS=6, 5 depths:
# 90 prompts x (1 + configurations) forwards; ~20 s per forward at 2K and
# ~2 min at 8K on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
TASK=${TASK:-passkey}
OUT=${1:-bench/eval/results/${TASK}.tsv}
STEM=${STEM_BIN:-build/tools/stem}
TEXTS=data/austen/prideprejudice.txt,data/austen/emma.txt,data/austen/persuasion.txt
CONFIGS=${CONFIGS:-"stem:b=64:k=8;uniform:b=64:match=8;xattention:b=64:tau=0.9"}
mkdir -p "$(dirname "$OUT")"
"$STEM" eval --task "$TASK" --lengths "${LENGTHS:-2048}" --depths "${DEPTHS:-10,30,50,70,90}" \
    --keys "${KEYS:-6}" --key-from "${KEY_FROM:-0}" --seed "${SEED:-1}" --needles "${NEEDLES:-4}" --text "$TEXTS" \
    --configs "$CONFIGS" --results "$OUT" 2>&1 | tee -a "$OUT.log"
