#!/usr/bin/env bash
# Attention tile shapes of the OpenCL GPU kernel (block_attention), one
# `stem bench` each, dense Llama-3-8B layer (Hq 32, Hkv 8, d 128, causal,
# block 128), about 10-15 s a shape on the H100:
#   BUILD=build-dev-carry bash bench/opencl/tile_sweep.sh [DEVICE_INDEX]
# DEVICE_INDEX is the global index of `stem info`; without it, the first
# OpenCL device whose name says NVIDIA. Environment:
#   BUILD   build dir holding tools/stem and libstem.so (build-dev-carry)
#   TILES   space-separated STEM_OPENCL_ATTN_TILE values (default: below)
#   DTYPES  space-separated dtypes (bf16)
#   NS      token counts (8192,16384)
#   SECS    timeout per shape in seconds (25)
#   TOTAL   seconds for the whole sweep (140): shapes that would start past
#           it are skipped, the last one gets what is left
#   DENSE_ONLY  1: time only the dense plan (--selector dense --no-dense; its
#           attn ms is the dense time), about half the time a shape
#   BUILD_OPTS  extra OpenCL build options (STEM_OPENCL_BUILD_OPTIONS), e.g.
#           -cl-nv-verbose or -cl-nv-maxrregcount=128 on NVIDIA
# A tile "s,rpt,tx,kpt,bq[,ds[,vs]]" is the d-sliced kernel
# (kernels/attention_slice.cl); bench/opencl/slice_sweep.sh sweeps those.
# Prints one line per shape and dtype: dense ms and TFLOP/s per N, and the
# share of the fp32 peak (CUs x 128 lanes x 2 FLOP x clock, as `stem info`
# reports them; sm_90 has 128 FP32 lanes per SM); then the best shape.
# Raw bench output goes to $OUT/tile_sweep/ when OUT is set.
set -uo pipefail
cd "$(dirname "$0")/../.."
B="${BUILD:-build-dev-carry}"
stem="$B/tools/stem"
[ -x "$stem" ] || { echo "tile_sweep: no $stem (set BUILD)" >&2; exit 2; }
# The GPU machine may lack the ICD loader: unpack the carried packages.
if ! ldconfig -p | grep -q 'libOpenCL.so.1 '; then
    for f in .devdeps/*.deb; do [ -f "$f" ] && dpkg -x "$f" / 2>/dev/null; done
    ldconfig 2>/dev/null
fi
export LD_LIBRARY_PATH="$PWD/$B:${LD_LIBRARY_PATH:-}"
LOG="${OUT:+$OUT/tile_sweep}"
LOG="${LOG:-$(mktemp -d)}"
mkdir -p "$LOG"

"$stem" info > "$LOG/info.txt" 2>&1
dev="${1:-}"
if [ -z "$dev" ]; then
    dev=$(grep -E -A1 '^ *\[[0-9]+\]\*? +opencl:' "$LOG/info.txt" | grep -B1 -i nvidia |
          grep -E '^ *\[[0-9]+\]' | head -1 | sed -E 's/^ *\[([0-9]+)\].*/\1/')
fi
[ -n "$dev" ] || { echo "tile_sweep: no NVIDIA OpenCL device; pass its index" >&2; cat "$LOG/info.txt" >&2; exit 2; }
# Compute units and clock of that device (its line and the one below it).
desc=$(grep -E -A1 "^ *\[$dev\]" "$LOG/info.txt" | tail -1)
cus=$(sed -nE 's/.* ([0-9]+) compute units.*/\1/p' <<< "$desc")
mhz=$(sed -nE 's/.*clock=([0-9]+) MHz.*/\1/p' <<< "$desc")
peak=""
[ -n "$cus" ] && [ -n "$mhz" ] && peak=$(awk -v c="$cus" -v m="$mhz" 'BEGIN { print c * 128 * 2 * m * 1e-6 }')
echo "device [$dev]: $(grep -E "^ *\[$dev\]" "$LOG/info.txt" | sed -E 's/^ *\[[0-9]+\]\*? +//')"
echo "fp32 peak: ${peak:-unknown} TFLOP/s (${cus:-?} CUs, ${mhz:-?} MHz)"
echo "commit $(git rev-parse --short HEAD 2>/dev/null || cat COMMIT 2>/dev/null || echo unknown), $(date -u +%FT%TZ)"

# rpt,tx,kpt,bq[,pf]: rows per item, items per row, keys per item, rows per
# work-group, K/V register prefetch. All fit 48 KiB of local memory at d 128
# (NVIDIA's OpenCL limit), so none is shrunk behind the sweep's back.
# Most promising first, so a cut-short sweep still answers the question.
#   2,8,4,32      the default before 2026-12-07 (128 items, 2x4 logits, 2x16 outputs an item)
#   4,8,4,32      64 items, 4x4 logits, 4x16 outputs: 1/3 fewer local loads a FMA
#   4,16,2,32     128 items, 4x2 logits, 4x8 outputs
#   4,8,2,32      64 items, 16-key tiles: 29 KiB, more work-groups an SM
#   4,8,4,16      32 items (one warp), 4x4 logits
TILES="${TILES:-2,8,4,32 4,8,4,32 4,8,4,32,1 2,8,4,32,1 4,16,2,32 4,16,2,32,1 4,8,2,32,1 4,8,4,16,1}"
DTYPES="${DTYPES:-bf16}"
NS="${NS:-8192,16384}"
SECS="${SECS:-25}"
TOTAL="${TOTAL:-140}"
best="" best_tf=0
sel="--selector stem" dcol=densems
[ "${DENSE_ONLY:-0}" = 1 ] && sel="--selector dense --no-dense" dcol=attnms
for dt in $DTYPES; do
    for t in $TILES; do
        f="$LOG/$dt-${t//,/_}.md"
        left=$((TOTAL - SECONDS))
        if [ "$left" -lt 8 ]; then
            printf '%-5s tile %-16s skipped (sweep past %d s)\n' "$dt" "$t" "$TOTAL"
            continue
        fi
        secs=$((left < SECS ? left : SECS))
        t0=$SECONDS
        STEM_OPENCL_ATTN_TILE="$t" STEM_OPENCL_BUILD_OPTIONS="${BUILD_OPTS:-}" \
            timeout -k 3 "$secs" "$stem" bench --device "$dev" \
            --hq 32 --hkv 8 --d 128 --dtype "$dt" --n "$NS" $sel \
            --markdown --quiet --warmup 1 --repeat 3 > "$f" 2>&1
        rc=$?
        line=$(awk -F'|' -v peak="$peak" -v dcol="$dcol" '
            /^\| *N *\|/ { for (i = 2; i < NF; i++) { h = $i; gsub(/ /, "", h); col[h] = i } next }
            /^\| *[0-9]+ *\|/ && (dcol in col) {
                n = $col["N"] + 0; ms = $col[dcol] + 0
                if (ms <= 0) next
                tf = 2 * 32 * n * n * 128 / (ms * 1e-3) * 1e-12
                pct = peak != "" ? sprintf(" %.1f%%", 100 * tf / peak) : ""
                printf " N=%d %.3f ms %.2f TFLOP/s%s;", n, ms, tf, pct
            }' "$f")
        printf '%-5s tile %-16s rc=%-3s %3ds%s\n' "$dt" "$t" "$rc" $((SECONDS - t0)) "${line:- (no result: $(grep -m1 -iE 'err|fail' "$f" | cut -c1-160))}"
        tf=$(sed -nE 's/.* ([0-9.]+) TFLOP\/s.*/\1/p' <<< "$line" | tail -1)
        if [ -n "$tf" ] && awk -v a="$tf" -v b="$best_tf" 'BEGIN { exit !(a > b) }'; then
            best_tf=$tf
            best="$dt $t"
        fi
    done
done
echo "best (TFLOP/s at the last N): ${best:-none} ${best_tf}"
echo "raw output: $LOG"
