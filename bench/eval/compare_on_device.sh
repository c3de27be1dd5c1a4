#!/usr/bin/env bash
# Checks the C forward of `stem eval` against transformers on the GPU machine.
#
# The GGUF (94 MiB) does not fit one device call (64 MiB carried per call), so
# it travels in three parts; the machine must stay warm between the calls
# (each stage stores its part under /tmp/stem-eval). Here (dev machine):
#     bash bench/eval/compare_on_device.sh prepare
# then three device calls, in one warm session, from the repository root:
#     carry [".model/xfer/1"]                      command: bash bench/eval/compare_on_device.sh stage 1
#     carry [".model/xfer/2"]                      command: bash bench/eval/compare_on_device.sh stage 2
#     carry [".model/xfer/3", ".whl"]              command: bash bench/eval/compare_on_device.sh run
# The last one reassembles the file, checks its sha256, installs the `gguf`
# wheel (.whl, see below) and runs compare_hf.py on the logits in .model/xfer/3.
# Wheels: python3 -m pip download --no-deps -d .whl gguf==0.19.0 (pure Python; its
# needs numpy, pyyaml, requests, tqdm are in the device image's torch venv).
# Run `prepare` in the same checkout the device calls are made from (.model/ is
# ignored, so it travels only through carry).
set -euo pipefail
cd "$(dirname "$0")/../.."
MODEL=.model/SmolLM2-135M-Instruct.Q4_1.gguf
SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
TOKENS=${TOKENS:-128}
TEXT=data/austen/prideprejudice.txt
STORE=/tmp/stem-eval

case "${1:-}" in
prepare)
    [ -f "$MODEL" ] || bash scripts/get-model.sh
    [ -x build/tools/stem ] || { cmake -S . -B build -DSTEM_BUILD_TESTS=OFF >/dev/null && cmake --build build -j2; }
    rm -rf .model/xfer && mkdir -p .model/xfer/1 .model/xfer/2 .model/xfer/3
    split -b 40M -d -a 1 "$MODEL" .model/xfer/part.
    mv .model/xfer/part.0 .model/xfer/1/; mv .model/xfer/part.1 .model/xfer/2/; mv .model/xfer/part.2 .model/xfer/3/
    build/tools/stem eval --text "$TEXT" --tokens "$TOKENS" --cache '' \
        --dump-logits .model/xfer/3/logits.npy | tail -3
    du -sh .model/xfer/* ;;
stage)
    mkdir -p "$STORE" && cp .model/xfer/"$2"/part.* "$STORE"/ && ls -la "$STORE" ;;
run)
    cp .model/xfer/3/part.* "$STORE"/
    cat "$STORE"/part.0 "$STORE"/part.1 "$STORE"/part.2 > "$STORE"/model.gguf
    echo "$SHA  $STORE/model.gguf" | sha256sum -c -
    if ! python3 -c "import gguf" 2>/dev/null; then
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target /tmp/site .whl/gguf-*.whl && export PYTHONPATH=/tmp/site
    fi
    nvidia-smi --query-gpu=name,driver_version --format=csv,noheader || true
    python3 bench/eval/compare_hf.py "$STORE"/model.gguf .model/xfer/3/logits.npy "$TEXT" ;;
*)
    sed -n 2,17p "$0"; exit 2 ;;
esac
