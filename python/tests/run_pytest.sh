#!/usr/bin/env bash
# Runs the Python package's tests against a built libstem, without
# installing the package: ctest calls it with the library's path.
#   run_pytest.sh LIBSTEM_SO [SUMMARY_FILE]
# The interpreter is the first of $STEM_TEST_PYTHON, /usr/bin/python3 (the one
# Debian's python3-numpy and python3-pytest serve: scripts/install-deps.sh)
# and python3 that imports numpy and pytest.
set -uo pipefail
lib=$1
summary=${2:-}
here=$(cd "$(dirname "$0")" && pwd)
py=
for cand in ${STEM_TEST_PYTHON:-} /usr/bin/python3 python3; do
  if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import numpy, pytest' 2>/dev/null; then
    py=$cand
    break
  fi
done
if [ -z "$py" ]; then
  echo "python tests: no interpreter with numpy and pytest (scripts/install-deps.sh installs" \
       "python3-numpy and python3-pytest)" >&2
  [ -n "$summary" ] && echo "python: not run (numpy/pytest missing)" > "$summary"
  exit 1
fi
log=$(mktemp)
STEM_LIBRARY=$lib "$py" -m pytest -q -p no:cacheprovider "$here" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
if [ -n "$summary" ]; then
  line=$(grep -E '[0-9]+ (passed|failed|skipped|error)' "$log" | tail -1)
  count() { echo "$line" | grep -oE "[0-9]+ $1" | grep -oE '[0-9]+' || echo 0; }
  echo "python: $(count passed) passed, $(( $(count failed) + $(count error) )) failed," \
       "$(count skipped) skipped ($("$py" --version 2>&1))" > "$summary"
fi
rm -f "$log"
exit "$status"
