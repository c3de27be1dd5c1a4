#!/usr/bin/env bash
# A CPU-only libstem with the attention phase timers (STEM_CPU_PHASE_TIMERS,
# backends/cpu/cpu_attention.c): each process prints, at exit, the TSC cycles
# of S = Q K^T, the softmax rows, O += P V, whole items and the K/V prepack.
# Profiling only; never the shipped library. Usage: bash bench/cpu/phase_build.sh [DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=${1:-build-phase}
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release -DSTEM_BUILD_TESTS=OFF -DSTEM_BUILD_EXAMPLES=OFF \
      -DCMAKE_C_FLAGS=-DSTEM_CPU_PHASE_TIMERS=1 > /dev/null
cmake --build "$dir" -j"$(nproc)" --target stem > /dev/null
echo "$dir/libstem.so"
