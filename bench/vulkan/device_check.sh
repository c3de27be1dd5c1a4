#!/usr/bin/env bash
# One call on the GPU machine (NVIDIA driver; no glslc, no network there): the
# Vulkan conformance suite on each attention path forced in turn, the caller's
# queue and limits tests, then `stem bench --backend vulkan` for f16, bf16 and
# f32 beside PyTorch SDPA (FA2, cuDNN) in the same call. Writes $OUT/summary.txt
# and one file per step.
#
# Build on the dev machine (the SPIR-V, KHR kernel included, is inside the library):
#   make deps    # .tools/glslang: glslangValidator for the KHR kernel
#   cmake -S . -B build-vkdev -DCMAKE_BUILD_TYPE=Release -DSTEM_VULKAN=ON
#   cmake --build build-vkdev -j2
# Device call: carry ["build-vkdev", ".devdeps", ".gl"],
#   command "BUILD=build-vkdev bash bench/vulkan/device_check.sh"
# .devdeps: libcmocka0 (apt-get download); .gl: libvulkan1 and the glvnd
# libraries the NVIDIA ICD loads (amd64 .debs). Env: BUILD, NS (8192,32768),
# PATHS (khr,nv,plain), SUITE_S (seconds per suite, 180), BENCH_S (per bench, 90),
# VARIANTS (NV tile settings benched at the largest N, e.g. "STEM_VULKAN_COOP_ROWS=64"), SUITE_FILTER (STEM_TEST_FILTER
# for the suites), SHAPE (bench shape flags), NO_UNPACK --
# for a dry run on lavapipe: NO_UNPACK=1 SUITE_FILTER=d64_h1x1 SHAPE="--hq 2 --hkv 1 --d 64" NS=256.
#
# Knobs the library reads (README, environment table): STEM_VULKAN_PATH=khr|khr-only|nv|plain
# (the matrix path: khr runs NV where the KHR modules fail the check against the
# device's matrix list, khr-only the plain kernels there; the log lines "vulkan:
# attention on ..." and "vulkan: VK_KHR_cooperative_matrix not taken: ..." say which
# ran and why, and each suite's path-*.txt keeps them), STEM_VULKAN_F32_MATRIX=1
# (f32 inputs as split hi/lo f16 copies onto the matrix path), STEM_VULKAN_BF16=0 (bf16
# through f16 copies even where bf16 matrices exist), STEM_VULKAN_F16_COPY=1 (f16
# through the same copies: the A/B for the f16 Stem anomaly of 2026-12-07),
# STEM_VULKAN_CONVERT=1.
#
# Order: the NV benches run before anything KHR (a KHR process that crashed or
# hung on 2026-12-07 may have shared the GPU with the next ones), nv-f16 once
# more at the end, and f16 straight beside f16 through copies.
set -uo pipefail
cd "$(dirname "$0")/../.."
out="${OUT:-/tmp/stem-vulkan-check}"
build="${BUILD:-build}"
ns="${NS:-8192,32768}"
paths="${PATHS:-khr,nv,plain}"
suite_s="${SUITE_S:-180}"
bench_s="${BENCH_S:-90}"
suite_filter="${SUITE_FILTER:-}"
read -r -a shape <<<"${SHAPE:---hq 32 --hkv 8 --d 128}"
mkdir -p "$out"
S="$out/summary.txt"
: >"$S"
log() { echo "== $*" | tee -a "$S"; }
step() { # step NAME SECONDS CMD...: time-limited, output kept, never aborts the script
    local name=$1 limit=$2; shift 2
    local t0=$SECONDS
    timeout --kill-after=10 "$limit" "$@" >"$out/$name.txt" 2>&1
    log "$name: rc=$? after $((SECONDS - t0))s (limit ${limit}s)"
}

if [ -z "${NO_UNPACK:-}" ]; then # NO_UNPACK=1: a dry run on a machine with its own loader
    for f in .gl/*.deb .devdeps/*.deb; do [ -f "$f" ] && dpkg -x "$f" /; done
    ldconfig
fi
export LD_LIBRARY_PATH="$PWD/$build${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export STEM_FIXTURE_DIR="$PWD/tests/fixtures/smollm2" # the build's own path is the dev machine's
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -f "$icd" ] && export VK_DRIVER_FILES="$icd"
stem="$build/tools/stem"
{
    echo "date $(date -u +%FT%TZ) commit $(cat COMMIT 2>/dev/null || git rev-parse --short HEAD 2>/dev/null)"
    nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>&1
} | tee -a "$S"
"$stem" info >"$out/info.txt" 2>&1
grep -iE 'vulkan' "$out/info.txt" | head -4 | tee -a "$S"

# Conformance on each path, in parallel (the references use the CPU cores).
# bf16 cases: on khr as bf16 matrices where the driver has VK_KHR_shader_bfloat16
# and the bf16 module passes the check, on nv (and in the "khrcopy" suite,
# STEM_VULKAN_BF16=0, bf16 cases only) through f16 copies. f32 stays on the plain
# kernel unless STEM_VULKAN_F32_MATRIX=1: the "f32mnv" suite (f32 cases only, on
# nv: split hi/lo f16 copies, three products each, f32 accumulation) and "f32m"
# (the same on khr). A khr suite whose modules are refused runs NV; its path line
# says so.
export STEM_TEST_ONLY=vulkan STEM_TEST_REQUIRE=vulkan
suites=()
for p in ${paths//,/ }; do suites+=("$p"); done
for x in ${SUITES_EXTRA:-}; do suites+=("$x"); done
suites+=(f32mnv f32m khrcopy)
suite_env() { # the environment of suite $1, as NAME=VALUE words
    case "$1" in
    f32m) echo STEM_VULKAN_PATH=khr STEM_VULKAN_F32_MATRIX=1 ;;
    f32mnv) echo STEM_VULKAN_PATH=nv STEM_VULKAN_F32_MATRIX=1 ;;
    khrcopy) echo STEM_VULKAN_PATH=khr STEM_VULKAN_BF16=0 STEM_VULKAN_BF16_COPY=1 ;;
    # bf16 reaches the NV matrices only through f16 copies (named here so the
    # suite says so even where the default changes)
    nv) echo STEM_VULKAN_PATH=nv STEM_VULKAN_BF16_COPY=1 ;;
    *) echo "STEM_VULKAN_PATH=$1" ;;
    esac
}
suite_filter_of() { # the cases of suite $1
    case "$1" in
    f32m | f32mnv) echo "${suite_filter:-_f32}" ;;
    khrcopy) echo "${suite_filter:-_bf16}" ;;
    *) echo "$suite_filter" ;;
    esac
}
# Which path each suite's environment really gets (a tiny bench logs it).
for s in "${suites[@]}"; do
    read -r -a se <<<"$(suite_env "$s")"
    timeout 60 env STEM_TOOL_LOG=1 "${se[@]}" "$stem" bench --backend vulkan --n 256 --hq 1 \
        --hkv 1 --d 64 --warmup 0 --repeat 1 --quiet >"$out/path-$s.txt" 2>&1
    rc=$?
    echo "path $s (${se[*]}): rc=$rc $(grep -hE 'attention on|not taken|left out' \
        "$out/path-$s.txt" | sed 's/^.*vulkan: //' | tr '\n' ' ')" | tee -a "$S"
done
for s in "${suites[@]}"; do
    (
        read -r -a se <<<"$(suite_env "$s")"
        export "${se[@]}"
        STEM_TEST_FILTER=$(suite_filter_of "$s")
        export STEM_TEST_FILTER
        # The references run on the CPU cores: a share each, not all of them each.
        export OMP_NUM_THREADS=$(( $(nproc) / ${#suites[@]} > 0 ? $(nproc) / ${#suites[@]} : 1 ))
        timeout -k 5 "$suite_s" "$build/tests/test_conformance" --summary "$out/sum-$s.txt" \
            >"$out/suite-$s.log" 2>&1
        echo "rc=$? ${SECONDS}s" >>"$out/sum-$s.txt"
    ) &
done
wait
for s in "${suites[@]}"; do
    log "suite $s: $(grep -E '^vulkan|^rc=' "$out/sum-$s.txt" 2>/dev/null | tr '\n' ' ')" \
        "ok=$(grep -c '^\[       OK \]' "$out/suite-$s.log") failed=$(grep -c '^\[  FAILED  \]' "$out/suite-$s.log")"
    grep '^\[  FAILED  \]' "$out/suite-$s.log" | sort -u | head -8 >>"$S"
done
unset STEM_TEST_FILTER
# libstem on a caller's VkDevice and queue (stem_vulkan_queue), wrapped VkBuffers.
step wrap-native 60 "$build/tests/test_wrap_native"
tail -n 4 "$out/wrap-native.txt" >>"$S"
[ -x "$build/tests/hardening/test_vk_limits" ] &&
    step vk-limits 120 "$build/tests/hardening/test_vk_limits"
[ -x "$build/tests/test_vk_async" ] && step vk-async 60 "$build/tests/test_vk_async" &&
    tail -n 1 "$out/vk-async.txt" >>"$S"
unset STEM_TEST_ONLY STEM_TEST_REQUIRE

# Llama-3.1-8B layer: Hq 32, Hkv 8, d 128. STEM_TOOL_LOG=1: the path taken goes to the file.
llama=(--backend vulkan "${shape[@]}" --markdown --quiet --warmup 1 --repeat 3)
bench() { # bench NAME ENV... -- ARGS...
    local name=$1; shift
    local envs=()
    while [ "$1" != -- ]; do envs+=("$1"); shift; done
    shift
    step "bench-$name" "$bench_s" env STEM_TOOL_LOG=1 "${envs[@]}" "$stem" bench "${llama[@]}" "$@"
    grep -hE 'attention on|not taken|left out' "$out/bench-$name.txt" | sort -u | sed 's/^/   /' >>"$S"
}
# NV first: f16 straight from the caller's buffers, then f16 through libstem's
# copies (the same kernel on its own buffers, as bf16 runs), then bf16 and f32
# as split copies on NV (STEM_VULKAN_F32_MATRIX=1).
bench nv-f16 STEM_VULKAN_PATH=nv -- --n "$ns" --dtype f16
bench nv-f16copy STEM_VULKAN_PATH=nv STEM_VULKAN_F16_COPY=1 -- --n "$ns" --dtype f16
bench nv-bf16 STEM_VULKAN_PATH=nv STEM_VULKAN_BF16_COPY=1 -- --n "$ns" --dtype bf16
bench nv-f32m STEM_VULKAN_PATH=nv STEM_VULKAN_F32_MATRIX=1 -- --n "$ns" --dtype f32
# Tile variants of the NV path at the largest N (space-separated; ;-joined env lists).
for var in ${VARIANTS:-}; do
    bench "nv-f16-${var//[^A-Za-z0-9]/_}" STEM_VULKAN_PATH=nv ${var//;/ } -- --n "${ns##*,}" --dtype f16
done
# KHR (khr-only: the plain kernels, not NV, where the KHR modules are refused,
# so a khr row is never an NV figure; the path line under each bench says).
for p in ${paths//,/ }; do
    case "$p" in plain | nv) continue ;; esac
    bench "$p-f16" STEM_VULKAN_PATH=khr-only -- --n "$ns" --dtype f16
    bench "$p-bf16" STEM_VULKAN_PATH=khr-only STEM_VULKAN_BF16_COPY=1 -- --n "$ns" --dtype bf16
done
bench khrcopy-bf16 STEM_VULKAN_PATH=khr-only STEM_VULKAN_BF16=0 STEM_VULKAN_BF16_COPY=1 -- --n "$ns" --dtype bf16
bench khr-f32m STEM_VULKAN_PATH=khr-only STEM_VULKAN_F32_MATRIX=1 -- --n "$ns" --dtype f32
# nv-f16 again after everything KHR: equal to the first run unless the KHR
# runs (or anything else) left the GPU busy.
bench nv-f16-again STEM_VULKAN_PATH=nv -- --n "${ns##*,}" --dtype f16
# The plain kernel (f32's default path) is slow: 8K only, fewer repeats.
bench plain-f32 STEM_VULKAN_PATH=plain -- --n "${ns%%,*}" --dtype f32 --warmup 1 --repeat 2
for dt in f16 bf16; do
    SDPA_DTYPE=$dt step "sdpa-$dt" 120 python3 -u bench/cuda/sdpa_peers.py ${ns//,/ }
done

# Ratios: Vulkan dense / cuDNN (same FLOP convention, 2*Hq*N^2*d), and sparse
# attention time against density x dense (dense ms covers the dense prefill).
python3 - "$out" <<'EOF' | tee -a "$S"
import glob, os, re, sys
out = sys.argv[1]
peers = {}
for dt in ("f16", "bf16"):
    try:
        for line in open(os.path.join(out, f"sdpa-{dt}.txt")):
            m = re.match(r"\|\s*(\d+)\s*\|\s*(\S+[^|]*?)\s*\|\s*([\d.]+)\s*\|\s*([\d.]+)\s*\|", line)
            if m:
                peers[(dt, int(m.group(1)), m.group(2).strip())] = float(m.group(4))
    except OSError:
        pass
print("| bench | N | density | score ms | attn ms | dense ms | dense TFLOP/s | cuDNN TFLOP/s | vs cuDNN | attn/(density*dense) | rel err |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for f in sorted(glob.glob(os.path.join(out, "bench-*.txt"))):
    name = os.path.basename(f)[6:-4]
    dt = "bf16" if "bf16" in name else "f16" if "f16" in name else "f32"
    for line in open(f):
        c = [x.strip() for x in line.strip().strip("|").split("|")]
        if len(c) < 12 or not c[0].isdigit():
            continue
        n, dens, attn, dense, dgf = int(c[0]), float(c[2]), float(c[5]), float(c[7]), float(c[10])
        score, err = c[3], c[11]
        cud = next((v for (d, nn, peer), v in peers.items()
                    if d == (dt if dt != "f32" else "bf16") and nn == n and "cudnn" in peer.lower()), None)
        ratio = f"{dgf / 1000 / cud:.2f}" if cud else "-"
        sp = f"{attn / (dens * dense):.2f}" if dens < 1 and dense > 0 else "-"
        print(f"| {name} | {n} | {dens:.4f} | {score} | {attn:.3f} | {dense:.3f} | {dgf / 1000:.1f} | "
              f"{cud if cud else '-'} | {ratio} | {sp} | {err} |")
EOF
log "done at ${SECONDS}s"
