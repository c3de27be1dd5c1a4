#!/usr/bin/env bash
# One short GPU-machine call that bisects the Vulkan "slow sparse 32K after a
# smaller plan" effect (bench/results/vulkan.md, 2026-12-07): the same f16
# Stem plan at 32K timed
#   alone in a fresh process                 (--n 32768: fast on 12-07)
#   after a 16K plan in the same process     (--n 16384,32768: slow on 12-07)
#   twice in one process                     (--n 32768,32768)
#   after 16K, then again                    (--n 16384,32768,32768: transient or lasting?)
#   after 16K with every stage waited for    (STEM_VULKAN_SYNC=1)
# each with --repeat 5 and --trace (every run's stage times: a transient shows
# as slow first runs, a lasting effect as slow medians). Dense runs after each
# plan's sparse runs (its figure is the control: it stayed normal on 12-07).
# Carry: BUILD (default build-dev-carry), .devdeps, .gl, COMMIT.
# Output: ${OUT:-/tmp/vk-bisect}/bisect.txt. About 2 minutes.
set -uo pipefail
cd "$(dirname "$0")/../.."
B=$PWD/${BUILD:-build-dev-carry}; O=${OUT:-/tmp/vk-bisect}
mkdir -p "$O"; R=$O/bisect.txt; : > "$R"
for f in .gl/*.deb .devdeps/*.deb; do [ -f "$f" ] && dpkg -x "$f" /; done; ldconfig
export LD_LIBRARY_PATH=$B${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
echo "date $(date -u +%FT%TZ) commit $(cat COMMIT 2>/dev/null)" >> "$R"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader >> "$R" 2>&1
L=(--backend vulkan --hq 32 --hkv 8 --d 128 --dtype f16 --markdown --quiet --trace --warmup 1 --repeat 5)
run() { local name=$1; shift; echo "== $name" >> "$R"; local t=$SECONDS
        timeout -k 5 90 "$@" >> "$R" 2>&1; echo "rc=$? $((SECONDS - t)) s" >> "$R"; }
run "32K alone" "$B/tools/stem" bench "${L[@]}" --n 32768
run "16K then 32K" "$B/tools/stem" bench "${L[@]}" --n 16384,32768
run "32K twice" "$B/tools/stem" bench "${L[@]}" --n 32768,32768
run "16K, 32K, 32K" "$B/tools/stem" bench "${L[@]}" --n 16384,32768,32768
run "16K then 32K, STEM_VULKAN_SYNC=1" env STEM_VULKAN_SYNC=1 "$B/tools/stem" bench "${L[@]}" --n 16384,32768
run "16K then 32K, bf16" "$B/tools/stem" bench "${L[@]/f16/bf16}" --n 16384,32768
run "32K alone, again" "$B/tools/stem" bench "${L[@]}" --n 32768
nvidia-smi --query-gpu=clocks.sm,temperature.gpu,power.draw --format=csv,noheader >> "$R" 2>&1
cat "$R"
