#!/usr/bin/env bash
# On the GPU machine: build libstem (CPU backend, no tests), then compare its
# block lists with the official Stem code run by Triton on the GPU.
# Needs the official package folder copied to .peer/ (not part of the repo).
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${OUT:-/tmp/stem-official}"
mkdir -p "$out"
peer=.peer/angelslim/compressor/sparsity/algorithms/stem
cmake -S . -B build-device -DCMAKE_BUILD_TYPE=Release -DSTEM_BUILD_TESTS=OFF >/dev/null
cmake --build build-device -j"$(nproc)" >/dev/null
nvidia-smi --query-gpu=name --format=csv,noheader | tee "$out/card.txt"
lscpu | grep "Model name" | tee -a "$out/card.txt"
git rev-parse --short HEAD 2>/dev/null | tee -a "$out/card.txt" || true
PYTHONUNBUFFERED=1 python3 bench/official/compare_official.py "$peer" build-device/tools/stem \
  "$out/work" "$@" | tee "$out/official.md"
rm -rf "$out/work"
