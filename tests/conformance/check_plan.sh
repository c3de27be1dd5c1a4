#!/usr/bin/env bash
# make test may leave cases to make test-full, never drop them: for every
# device, each table case the default level runs or defers is run at the full
# level (STEM_TEST_LEVEL=full), on the best ISA and on the lower-ISA reruns.
# usage: check_plan.sh TEST_CONFORMANCE
set -euo pipefail
bin=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
status=0
for isa in "" scalar avx2; do
  env ${isa:+STEM_CPU_MAX_ISA=$isa} STEM_TEST_LEVEL= "$bin" --plan >"$tmp/default"
  env ${isa:+STEM_CPU_MAX_ISA=$isa} STEM_TEST_LEVEL=full "$bin" --plan >"$tmp/full"
  grep -E '^(run|defer) ' "$tmp/default" | sed -E 's/^(run|defer) //' | sort -u \
    >"$tmp/default.cases"
  grep '^run ' "$tmp/full" | sed 's/^run //' | sort -u >"$tmp/full.cases"
  lost=$(comm -23 "$tmp/default.cases" "$tmp/full.cases")
  n_run=$(grep -c '^run ' "$tmp/default" || true)
  n_defer=$(grep -c '^defer ' "$tmp/default" || true)
  n_full=$(wc -l <"$tmp/full.cases")
  if [ "$n_run" -eq 0 ]; then
    echo "FAIL${isa:+ (STEM_CPU_MAX_ISA=$isa)}: the default level runs no table case" >&2
    status=1
  fi
  if [ -n "$lost" ]; then
    echo "FAIL${isa:+ (STEM_CPU_MAX_ISA=$isa)}: run or deferred by make test, not run by make test-full:" >&2
    echo "$lost" | head -20 >&2
    status=1
    continue
  fi
  echo "ok${isa:+ STEM_CPU_MAX_ISA=$isa}: make test runs $n_run and defers $n_defer device cases; make test-full runs $n_full, all of them included"
done
exit $status
