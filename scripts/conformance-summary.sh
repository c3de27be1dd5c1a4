#!/usr/bin/env bash
# The end of make test: one line per backend ("cpu: N passed, N failed,
# N skipped"), read from the per-backend ctests' summary files
# (conformance-summary-<backend>.txt), then their total, then the extra runs
# (the CPU backend on lower ISAs) under their own headings, then how many
# cases each run left to make test-full. Exits 1 when a backend's summary is
# missing.
# usage: conformance-summary.sh BUILD_DIR
set -u
dir=${1:?usage: conformance-summary.sh BUILD_DIR}
backends="cpu cuda opencl vulkan"
status=0
tp=0 tf=0 ts=0
for b in $backends; do
  f=$dir/conformance-summary-$b.txt
  line=$(grep -m1 "^$b: " "$f" 2>/dev/null)
  if [ -z "$line" ]; then
    echo "$b: conformance summary missing ($f)"
    status=1
    continue
  fi
  echo "$line"
  read -r p f_ s <<<"$(echo "$line" | sed -E 's/^[a-z]+: ([0-9]+) passed, ([0-9]+) failed, ([0-9]+) skipped.*/\1 \2 \3/')"
  tp=$((tp + p)) tf=$((tf + f_)) ts=$((ts + s))
done
echo "total: $tp passed, $tf failed, $ts skipped"
for f in "$dir"/conformance-summary-*.txt; do
  [ -f "$f" ] || continue
  name=${f##*/conformance-summary-}
  case " $backends " in *" ${name%.txt} "*) continue ;; esac
  echo "-- $name"
  cat "$f"
done
deferred=0
for f in "$dir"/conformance-deferred-*.txt; do
  [ -s "$f" ] || continue
  deferred=$((deferred + $(wc -l <"$f")))
done
if [ "$deferred" -gt 0 ]; then
  echo "($deferred case runs left to make test-full: conformance-deferred-*.txt in $dir)"
fi
exit $status
