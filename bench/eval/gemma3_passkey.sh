#!/usr/bin/env bash
# Passkey retrieval on Gemma-3-270M: one prompt per (length, depth), every
# configuration scored on the five key digits only (all rows before them
# through the sparse global layers, the digits' own rows as well).
# usage: bench/eval/gemma3_passkey.sh TOKENS RESULTS.tsv [CONFIGS] [DEPTHS] [KEYS]
#   e.g. bench/eval/gemma3_passkey.sh 16384 /tmp/pk16k.tsv
set -euo pipefail
cd "$(dirname "$0")/../.."
TOKENS=$1
RESULTS=$2
CONFIGS=${3:-"stem:b=128;uniform:b=128:k=46;xattention:b=128:tau=0.9;stem:b=128:k=24;uniform:b=128:k=20"}
DEPTHS=${4:-"0.1 0.5 0.9"}
KEYS=${5:-"73914 20586"}
STEM=${STEM:-build/tools/stem}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for key in $KEYS; do
    for depth in $DEPTHS; do
        txt="$tmp/pk_${TOKENS}_${depth}_${key}.txt"
        python3 bench/eval/gemma3_passkey.py "$TOKENS" "$depth" "$key" "$txt"
        n=$("$STEM" eval --model gemma3 --text "$txt" --dump-ids "$tmp/ids.npy" |
            sed -n 's/^wrote .*: \([0-9]*\) token ids.*/\1/p')
        if [ "$n" -gt "$TOKENS" ]; then
            echo "gemma3_passkey: prompt has $n tokens, more than $TOKENS" >&2
            exit 1
        fi
        echo "# passkey $key at depth $depth: $n tokens"
        "$STEM" eval --model gemma3 --text "$txt" --tokens "$n" --score-from $((n - 6)) \
            --cache '' --configs "$CONFIGS" --results "$RESULTS"
    done
done
