#!/usr/bin/env bash
# stem.h compiles on its own, first in every translation unit, as C11 and as
# C++ with -Wall -Wextra -Werror -pedantic, and includes no GPU SDK header.
# usage: header_alone.sh API_DIR C_COMPILER [CXX_COMPILER ...]
set -euo pipefail
api=$1; shift
cc=$1; shift
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
status=0

# Only standard headers; a consumer needs no CUDA/OpenCL/Vulkan headers.
includes=$(sed -nE 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"]([^>"]+)[>"].*/\1/p' "$api/stem.h" | sort -u)
for h in $includes; do
  case $h in
    stddef.h|stdint.h) ;;
    *) echo "FAIL: stem.h includes <$h>; only <stddef.h> and <stdint.h> are allowed" >&2; status=1 ;;
  esac
done

# Uses a few declarations so an unusable header cannot pass by being empty.
cat >"$tmp/use.inc" <<'SRC'
#include <stem.h>
int stem_header_probe(void);
int stem_header_probe(void) {
    stem_config cfg;
    stem_config_init(&cfg);
    stem_tensor t = stem_tensor_bhnd(0, 0, STEM_DTYPE_F32, 1, 1, 1, 1);
    return (int)cfg.block_size + (int)t.dims[0] + (int)STEM_OK + (int)STEM_BACKEND_VULKAN + STEM_LOG_INFO +
           (int)STEM_VERSION + (stem_status_name(STEM_OK) != 0);
}
SRC
cp "$tmp/use.inc" "$tmp/use.c"
cp "$tmp/use.inc" "$tmp/use.cpp"
flags="-Wall -Wextra -Werror -pedantic -fsyntax-only -I$api"
for std in c11 c17; do
  if "$cc" -std=$std $flags "$tmp/use.c"; then echo "ok: $cc -std=$std"
  else echo "FAIL: stem.h as $std with $cc" >&2; status=1; fi
done
for cxx in "$@"; do
  for std in c++11 c++17; do
    if "$cxx" -std=$std $flags "$tmp/use.cpp"; then echo "ok: $cxx -std=$std"
    else echo "FAIL: stem.h as $std with $cxx" >&2; status=1; fi
  done
done
exit $status
