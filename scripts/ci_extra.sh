#!/usr/bin/env bash
# Proposed extra CI stage (not called by .ci/run yet: the lead decides): the Clang ASan+UBSan
# build, a 20 s fuzz smoke run per harness, then the whole unit-test suite in that build.
# Exits non-zero on a fuzz finding or a failing test; prints the wall time of each part.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
status=0
bash scripts/fuzz.sh --smoke || status=1
fuzz_end=$SECONDS
bash scripts/sanitize.sh || status=1
echo "== ci_extra: fuzz smoke (with the build) $((fuzz_end - start)) s, sanitized tests $((SECONDS - fuzz_end)) s, total $((SECONDS - start)) s"
exit $status
