#!/usr/bin/env bash
# `pip install ./python` end to end: a fresh virtual environment, the package
# built by pip (setuptools driving CMake, CPU backend only to keep it short),
# then used from outside the source tree: the bundled library must be the
# one loaded. Needs PyPI for the build requirements (setuptools, wheel).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
py=${STEM_TEST_PYTHON:-/usr/bin/python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$py" -m venv --system-site-packages "$work/venv"
# a copy of the sources, so the check leaves no build folder in the tree
mkdir -p "$work/src"
(cd "$root" && git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$work/src")
STEM_BACKENDS= "$work/venv/bin/pip" install -q "$work/src/python"
cd "$work"
STEM_LIBRARY= "$work/venv/bin/python" - <<'PY'
import numpy as np
import stem
path = stem.library_path()
assert "/venv/" in path and path.endswith("stem/_lib/libstem.so"), path
rng = np.random.default_rng(0)
q, k, v = (rng.standard_normal((1, 2, 256, 64), dtype=np.float32) for _ in range(3))
out = stem.prefill(q, k, v, selector="dense", block_size=64)
s = q @ k.transpose(0, 1, 3, 2) / 8.0
s = np.where(np.tril(np.ones((256, 256), bool)), s, -np.inf)
p = np.exp(s - s.max(-1, keepdims=True))
ref = (p / p.sum(-1, keepdims=True)) @ v
err = float(np.abs(out - ref).max())
assert err < 1e-5, err
print(f"pip install ./python: OK (stem {stem.version()} from {path}, max error {err:.1e})")
PY
