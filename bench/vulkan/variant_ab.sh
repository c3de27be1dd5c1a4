#!/usr/bin/env bash
# One GPU call: A/B of attention_coop.comp's experimental VARIANT bits
# (STEM_VULKAN_ATTN_VARIANT; see the shader's header) against the measured
# kernel (variant 0), on the NV and KHR paths.
#   1. pipeline statistics (register count, spills: STEM_VULKAN_PIPELINE_STATS=1,
#      VK_KHR_pipeline_executable_properties) of every attention pipeline made;
#   2. the Vulkan conformance suite (every case, or SUITE_FILTER), on each
#      (path, variant) pair of SUITES, in parallel, SUITE_S seconds each;
#   3. `stem bench` (Llama-8B layer, f16 and bf16) for each pair of BENCHES,
#      then torch SDPA (cuDNN) in the same call if torch is there.
# Writes $OUT/summary.txt and one file per step. Parts: PARTS (stats,suites,bench,sdpa).
#
# Build (dev machine): cmake -S . -B build-vkab -DCMAKE_BUILD_TYPE=Release -DSTEM_VULKAN=ON
#   && cmake --build build-vkab -j2
# Device call: carry ["build-vkab", ".devdeps", ".gl"], command
#   "BUILD=build-vkab bash bench/vulkan/variant_ab.sh"
set -uo pipefail
cd "$(dirname "$0")/../.."
out="${OUT:-/tmp/stem-vulkan-ab}"
build="${BUILD:-build}"
ns="${NS:-8192,16384,32768}"
parts="${PARTS:-stats,suites,bench,sdpa}"
# path:variant pairs (path: nv or khr-only; variant bits: 1 S as independent
# accumulators, 2 longest rows first, 4 KHR P in the f32 square (64-key tile),
# 8 l summed on the components). f16 benches, bf16 benches, suites:
benches="${BENCHES:-nv:0 nv:1 nv:3 nv:9 nv:11 khr-only:0 khr-only:4 khr-only:5 khr-only:13 khr-only:15}"
benches_bf16="${BENCHES_BF16:-nv:0 nv:11 khr-only:0 khr-only:15}"
suites="${SUITES:-nv:0 nv:1 nv:11 khr-only:0 khr-only:4 khr-only:15}"
suite_s="${SUITE_S:-200}"
suite_filter="${SUITE_FILTER:-}" # STEM_TEST_FILTER; empty: every case (about 100 s a suite)
bench_s="${BENCH_S:-120}"
read -r -a shape <<<"${SHAPE:---hq 32 --hkv 8 --d 128}"
mkdir -p "$out"
S="$out/summary.txt"
: >"$S"
log() { echo "== $*" | tee -a "$S"; }
has() { [[ ",$parts," == *",$1,"* ]]; }

if [ -z "${NO_UNPACK:-}" ]; then
    for f in .gl/*.deb .devdeps/*.deb; do [ -f "$f" ] && dpkg -x "$f" /; done
    ldconfig
fi
export LD_LIBRARY_PATH="$PWD/$build${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export STEM_FIXTURE_DIR="$PWD/tests/fixtures/smollm2"
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -f "$icd" ] && export VK_DRIVER_FILES="$icd"
stem="$build/tools/stem"
{
    echo "date $(date -u +%FT%TZ) commit $(cat COMMIT 2>/dev/null || git rev-parse --short HEAD 2>/dev/null)"
    nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>&1
} | tee -a "$S"

# 1. Registers and spills of each attention pipeline (f16 at d 128, block 128:
# the tiles the Llama benches use; bf16 runs the same pipeline on f16 copies).
if has stats; then
    for pv in $benches; do
        p=${pv%%:*} v=${pv##*:}
        for dt in f16; do
            timeout 60 env STEM_TOOL_LOG=1 STEM_VULKAN_PIPELINE_STATS=1 STEM_VULKAN_PATH="$p" \
                STEM_VULKAN_ATTN_VARIANT="$v" "$stem" bench --backend vulkan --n 1024 --hq 2 \
                --hkv 1 --d 128 --dtype "$dt" --warmup 0 --repeat 1 --quiet \
                >"$out/stats-$p-$v-$dt.txt" 2>&1
            echo "stats $p variant $v $dt: rc=$?" >>"$S"
            grep -hE 'attention on|not taken|left out|VARIANT|statistics|vulkan: pipeline ' \
                "$out/stats-$p-$v-$dt.txt" | sed 's/^stem: vulkan: /   /' | sort -u >>"$S"
        done
    done
fi

# 2. Conformance, one suite per (path, variant), in parallel.
if has suites; then
    export STEM_TEST_ONLY=vulkan STEM_TEST_REQUIRE=vulkan
    [ -n "$suite_filter" ] && export STEM_TEST_FILTER="$suite_filter"
    set -- $suites
    n=$#
    for pv in "$@"; do
        (
            p=${pv%%:*} v=${pv##*:}
            export STEM_VULKAN_PATH="$p" STEM_VULKAN_ATTN_VARIANT="$v" STEM_VULKAN_BF16_COPY=1
            export OMP_NUM_THREADS=$(($(nproc) / n > 0 ? $(nproc) / n : 1))
            timeout -k 5 "$suite_s" "$build/tests/test_conformance" \
                --summary "$out/sum-$p-$v.txt" >"$out/suite-$p-$v.log" 2>&1
            echo "rc=$?" >>"$out/sum-$p-$v.txt"
        ) &
    done
    wait
    for pv in $suites; do
        p=${pv%%:*} v=${pv##*:}
        log "suite $p variant $v: $(grep -E '^vulkan|^rc=' "$out/sum-$p-$v.txt" 2>/dev/null | tr '\n' ' ')" \
            "ok=$(grep -c '^\[       OK \]' "$out/suite-$p-$v.log")" \
            "failed=$(grep -c '^\[  FAILED  \]' "$out/suite-$p-$v.log")"
        grep '^\[  FAILED  \]' "$out/suite-$p-$v.log" | sort -u | head -8 >>"$S"
    done
    unset STEM_TEST_ONLY STEM_TEST_REQUIRE STEM_TEST_FILTER
fi

# 3. Speed: dense and Stem, f16 for each pair of BENCHES, bf16 (through f16
# copies) for each of BENCHES_BF16.
if has bench; then
    for pvd in $(printf '%s:f16 ' $benches) $(printf '%s:bf16 ' $benches_bf16); do
        p=${pvd%%:*} vd=${pvd#*:} v=${vd%%:*} dt=${vd##*:}
        {
            name="bench-$p-$v-$dt"
            t0=$SECONDS
            timeout -k 10 "$bench_s" env STEM_TOOL_LOG=1 STEM_VULKAN_PATH="$p" \
                STEM_VULKAN_ATTN_VARIANT="$v" STEM_VULKAN_BF16_COPY=1 "$stem" bench \
                --backend vulkan "${shape[@]}" --n "$ns" --dtype "$dt" --warmup 1 --repeat 3 \
                --markdown --quiet >"$out/$name.txt" 2>&1
            log "$name: rc=$? after $((SECONDS - t0))s"
            grep -hE 'attention on|not taken|left out|VARIANT' "$out/$name.txt" | sort -u |
                sed 's/^/   /' >>"$S"
            grep -E '^\| *[0-9]' "$out/$name.txt" >>"$S"
        }
    done
fi
if has sdpa && [ -f bench/cuda/sdpa_peers.py ]; then
    for dt in f16 bf16; do
        SDPA_DTYPE=$dt timeout 120 python3 -u bench/cuda/sdpa_peers.py ${ns//,/ } \
            >"$out/sdpa-$dt.txt" 2>&1
        log "sdpa $dt: rc=$?"
        grep -E '^\|' "$out/sdpa-$dt.txt" >>"$S"
    done
fi
log "done at ${SECONDS}s"
