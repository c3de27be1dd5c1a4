#!/usr/bin/env bash
# The OpenCL backend on the GPU machine, one call (about 3-4 minutes):
#   bash bench/opencl/device_check.sh BUILD_DIR
# from a checkout holding a dev-machine build in BUILD_DIR (libstem.so*,
# tools/stem, tests/test_conformance; configured with STEM_OPENCL=ON and
# STEM_CUDA=ON; optionally cl_devices from bench/opencl/cl_devices.c) and
# .devdeps/*.deb (ocl-icd-libopencl1, libcmocka0).
#  1. the OpenCL conformance suite on the NVIDIA device and on PoCL (the
#     Xeon), in parallel, each process restricted to its platform through
#     OCL_ICD_VENDORS;
#  2. stem bench on the NVIDIA OpenCL device (Llama-3-8B layer: Hq 32, Hkv 8,
#     d 128; bf16 at 8K and 16K, f32 and f16 at 8K; at 8K the attention tile
#     shapes of STEM_OPENCL_ATTN_TILE, and two with -DKV_PREFETCH=1), our
#     CUDA backend at the same sizes, and the torch SDPA peers
#     (FlashAttention-2, cuDNN);
#  3. stem bench on PoCL and on the CPU backend at the same sizes
#     (N 8192, Hq 8, Hkv 2, d 128; f32, bf16, f16).
# Writes $OUT/summary.txt (every step's output, then the derived figures:
# % of the fp32 peak, PoCL / CPU ratios) and $OUT/logs.tgz. Each step has its
# own timeout; a failing step is recorded and the script goes on.
set -uo pipefail
cd "$(dirname "$0")/../.."
B="${1:-build-dev}"
OUT="${OUT:-/tmp/stem-opencl-check}"
L="$OUT/logs"
mkdir -p "$OUT" "$L"
S="$OUT/summary.txt"
: > "$S"
say() { echo "$*" | tee -a "$S"; }
t_start=$SECONDS

# The ICD loader and cmocka are absent there: unpack the carried packages
# (only where the libraries are missing).
if ! ldconfig -p | grep -q 'libOpenCL.so.1 ' || ! ldconfig -p | grep -q 'libcmocka.so.0 '; then
    for f in .devdeps/*.deb; do dpkg -x "$f" / 2>/dev/null; done
    ldconfig 2>/dev/null
fi
export LD_LIBRARY_PATH="$PWD/$B:${LD_LIBRARY_PATH:-}"
export STEM_FIXTURE_DIR="$PWD/tests/fixtures/smollm2" # the build's own path does not exist there
stem="$B/tools/stem"

say "date $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD 2>/dev/null || cat COMMIT 2>/dev/null || echo unknown)"
say "gpu $(nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader 2>/dev/null)"
say "cpu $(lscpu | sed -n 's/^Model name: *//p') x $(nproc)"
say "icd files: $(ls /etc/OpenCL/vendors 2>/dev/null | tr '\n' ' ')"
"$stem" info > "$L/info.txt" 2>&1
cat "$L/info.txt" >> "$S"
# clocks, local memory, vector width, extensions (bench/opencl/cl_devices.c)
[ -x "$B/cl_devices" ] && "$B/cl_devices" >> "$S" 2>&1

# Global device index of the first device of backend $1 whose lines match $2.
dev() { grep -E -A1 "^ *\[[0-9]+\]\*? +$1:" "$L/info.txt" | grep -B1 -i -E -- "$2" |
        grep -E "^ *\[[0-9]+\]" | head -1 | sed -E 's/^ *\[([0-9]+)\].*/\1/'; }
nv=$(dev opencl 'nvidia')
pocl=$(dev opencl 'portable computing|pocl')
nv_icd=$(grep -l -i nvidia /etc/OpenCL/vendors/*.icd 2>/dev/null | head -1)
pocl_icd=$(grep -l -i pocl /etc/OpenCL/vendors/*.icd 2>/dev/null | head -1)
say "opencl devices: nvidia=[${nv:-none}] (${nv_icd:-no icd}) pocl=[${pocl:-none}] (${pocl_icd:-no icd})"

# ---- 1. conformance, both OpenCL devices in parallel
suite() { # suite NAME ICD
    local name=$1 icd=$2
    ( OCL_ICD_VENDORS="$icd" STEM_TEST_ONLY=opencl STEM_TEST_REQUIRE=opencl OMP_NUM_THREADS=8 \
        timeout -k 5 170 "$B/tests/test_conformance" > "$L/conf-$name.log" 2>&1
      echo "rc=$?" > "$L/conf-$name.rc" ) &
}
[ -n "$nv_icd" ] && suite nvidia "$nv_icd"
[ -n "$pocl_icd" ] && suite pocl "$pocl_icd"
wait
for n in nvidia pocl; do
    [ -f "$L/conf-$n.log" ] || { say "== conformance $n: not run (no icd)"; continue; }
    say "== conformance $n: $(grep -E '^opencl: ' "$L/conf-$n.log" | tail -1) $(cat "$L/conf-$n.rc")" \
        "ok=$(grep -c '^\[       OK \]' "$L/conf-$n.log") failed=$(grep -c '^\[  FAILED  \]' "$L/conf-$n.log")"
    grep -h -A6 '^\[ RUN      \]' "$L/conf-$n.log" | grep -B6 '^\[  FAILED  \]' | head -40 >> "$S"
done
say "phase 1 done at $((SECONDS - t_start)) s"

# ---- 2. benches, one at a time
step() { # step NAME SECONDS CMD...
    local name=$1 secs=$2; shift 2
    local t0=$SECONDS
    timeout -k 5 "$secs" "$@" > "$L/$name.txt" 2>&1
    say "== $name rc=$? $((SECONDS - t0)) s"
    cat "$L/$name.txt" >> "$S"
}
llama=(--hq 32 --hkv 8 --d 128 --markdown --quiet --warmup 1 --repeat 3)
if [ -n "$nv" ]; then
    step ocl-nvidia-bf16 60 "$stem" bench --device "$nv" "${llama[@]}" --dtype bf16 --n 8192,16384
    step ocl-nvidia-f32 40 "$stem" bench --device "$nv" "${llama[@]}" --dtype f32 --n 8192
    step ocl-nvidia-f16 40 "$stem" bench --device "$nv" "${llama[@]}" --dtype f16 --n 8192
    # rows per item, items per row, keys per item, rows per work-group
    for t in 4,8,4,32 4,16,2,32 2,16,2,32 4,8,2,32 2,8,2,32; do
        STEM_OPENCL_ATTN_TILE=$t step "ocl-nvidia-tile-$t" 30 \
            "$stem" bench --device "$nv" "${llama[@]}" --dtype bf16 --n 8192
    done
    # the next K tile read into registers during this tile's P V
    for t in 2,8,4,32 4,8,4,32; do
        STEM_OPENCL_BUILD_OPTIONS=-DKV_PREFETCH=1 STEM_OPENCL_ATTN_TILE=$t \
            step "ocl-nvidia-prefetch-tile-$t" 30 \
            "$stem" bench --device "$nv" "${llama[@]}" --dtype bf16 --n 8192
    done
fi
step cuda-bf16 60 "$stem" bench --backend cuda "${llama[@]}" --dtype bf16 --n 8192,16384
step cuda-f32 40 "$stem" bench --backend cuda "${llama[@]}" --dtype f32 --n 8192
step sdpa-peers 60 python3 -u bench/cuda/sdpa_peers.py 8192 16384

# ---- 3. PoCL against the CPU backend, same sizes, same machine
small=(--n 8192 --hq 8 --hkv 2 --d 128 --markdown --quiet --warmup 1 --repeat 3)
for dt in f32 bf16 f16; do
    [ -n "$pocl" ] && step "pocl-$dt" 90 "$stem" bench --device "$pocl" "${small[@]}" --dtype "$dt"
    step "cpu-$dt" 60 "$stem" bench --backend cpu "${small[@]}" --dtype "$dt"
done

# ---- derived figures
python3 - "$L" "$L/info.txt" >> "$S" 2>&1 <<'PY' || say "derived figures failed"
import re, sys, pathlib
logs, info = pathlib.Path(sys.argv[1]), open(sys.argv[2]).read()

def rows(name):
    """The markdown table of a stem bench log: a list of {column: text}."""
    p = logs / (name + ".txt")
    if not p.exists():
        return []
    lines = [l for l in p.read_text().splitlines() if l.startswith("|")]
    if len(lines) < 3:
        return []
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    return [dict(zip(head, (c.strip() for c in l.strip("|").split("|")))) for l in lines[2:]]

print("\n## derived")
m = re.search(r"opencl:\d+ +NVIDIA[^\n]*\n *GPU, (\d+) compute units[^\n]*clock=(\d+) MHz", info)
peak = None
if m:
    cus, mhz = int(m.group(1)), int(m.group(2))
    # sm_90: 128 FP32 lanes per SM, one FMA (2 FLOP) per lane per clock
    peak = cus * 128 * 2 * mhz * 1e-6
    print(f"fp32 peak = {cus} CUs x 128 lanes x 2 FLOP x {mhz} MHz = {peak:.1f} TFLOP/s")
for name in sorted(p.stem for p in logs.glob("ocl-nvidia-*.txt")):
    for r in rows(name):
        try:
            gf = float(r["dense GF/s"])
        except (KeyError, ValueError):
            continue
        pct = f" = {100 * gf * 1e-3 / peak:.1f}% of fp32 peak" if peak else ""
        print(f"{name} N={r.get('N')}: dense {r.get('dense ms')} ms, {gf:.0f} GFLOP/s{pct};"
              f" stem {r.get('stem ms')} ms (attn {r.get('attn ms')}, density {r.get('density')})")
for dt in ("f32", "bf16", "f16"):
    a, c = rows("pocl-" + dt), rows("cpu-" + dt)
    if a and c:
        for key in ("dense ms", "stem ms"):
            try:
                print(f"pocl / cpu {dt} N={a[0].get('N')} {key}: {a[0][key]} vs {c[0][key]}"
                      f" -> PoCL at {float(c[0][key]) / float(a[0][key]):.2f}x the CPU backend")
            except (KeyError, ValueError, ZeroDivisionError):
                pass
PY
say "all done at $((SECONDS - t_start)) s"
tar czf "$OUT/logs.tgz" -C "$L" . 2>/dev/null
