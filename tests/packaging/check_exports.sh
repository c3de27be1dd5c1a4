#!/usr/bin/env bash
# The shared library exports exactly the functions stem.h declares with
# STEM_API (no internal symbol leaks, none missing), and its soname is
# libstem.so.<major> (libstem.so.0.<minor> in 0.x).
# usage: check_exports.sh LIBSTEM_SO STEM_H [NM] [READELF]
set -euo pipefail
lib=$1 header=$2 nm=${3:-nm} readelf=${4:-readelf}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Declarations: "STEM_API <type> name(" (the #define lines have no '(' after a name).
# Preprocessor lines dropped, then lines joined so a declaration split after
# STEM_API is still seen.
grep -v '^[[:space:]]*#' "$header" | tr '\n' ' ' | grep -oE 'STEM_API[^;(#]*\(' \
  | sed -E 's/\($//; s/.*[^A-Za-z0-9_]([A-Za-z_][A-Za-z0-9_]*)[[:space:]]*$/\1/' \
  | sort -u >"$tmp/declared"
# Defined dynamic symbols, without version suffixes and the ELF bookkeeping ones.
"$nm" -D --defined-only "$lib" | awk '{print $NF}' | sed 's/@.*//' \
  | grep -vE '^(_init|_fini|_edata|_end|__bss_start)$' | sort -u >"$tmp/exported"

status=0
if [ "$(wc -l <"$tmp/declared")" -lt 10 ]; then
  echo "FAIL: found only $(wc -l <"$tmp/declared") STEM_API declarations in $header" >&2
  status=1
fi
extra=$(comm -13 "$tmp/declared" "$tmp/exported")
missing=$(comm -23 "$tmp/declared" "$tmp/exported")
if [ -n "$extra" ]; then
  echo "FAIL: exported but not declared in stem.h:" $extra >&2
  status=1
fi
if [ -n "$missing" ]; then
  echo "FAIL: declared in stem.h but not exported:" $missing >&2
  status=1
fi
# Every export is a function (no data symbol is part of the API).
nonfunc=$("$nm" -D --defined-only "$lib" | awk '$2 !~ /^[TtWi]$/ && $NF !~ /^(_init|_fini|_edata|_end|__bss_start)$/ {print $NF}')
if [ -n "$nonfunc" ]; then
  echo "FAIL: exported data symbols:" $nonfunc >&2
  status=1
fi

major=$(sed -nE 's/^#define STEM_VERSION_MAJOR ([0-9]+).*/\1/p' "$header")
minor=$(sed -nE 's/^#define STEM_VERSION_MINOR ([0-9]+).*/\1/p' "$header")
# In 0.x a minor release may break the ABI, so the soname names it too.
want=libstem.so.$major
[ "$major" = 0 ] && want=libstem.so.0.$minor
soname=$("$readelf" -d "$lib" | sed -nE 's/.*\(SONAME\).*\[(.*)\]/\1/p')
if [ "$soname" != "$want" ]; then
  echo "FAIL: soname '$soname', expected $want" >&2
  status=1
fi
[ $status -eq 0 ] && echo "exports: $(wc -l <"$tmp/exported") functions, all declared in stem.h; soname $soname"
exit $status
