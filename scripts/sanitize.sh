#!/usr/bin/env bash
# The whole unit-test suite in the Clang ASan+UBSan build (build-clang-asan/): a memory error,
# a leak or undefined behaviour anywhere the tests reach fails the test that triggered it. This
# is also the proof that the project builds and passes its tests with Clang.
#
#   scripts/sanitize.sh [CTEST ARGS...]   e.g. -R Gguf to run a subset
#
# Like scripts/test.sh it fetches the default model (tests on it skip, saying so, when
# MPQ_SKIP_MODEL=1) and reads ../shared in place. The sanitizers slow the code several times, so
# each test gets up to 3000 s instead of test.sh's 900.
source "$(dirname "${BASH_SOURCE[0]}")/clang_asan.sh"
mpq_build_clang_asan
if [ "${MPQ_SKIP_MODEL:-0}" != 1 ]; then mpq_fetch_default_model; fi
cd "$MPQ_ASAN_BUILD"
start=$SECONDS
set +e
ctest --output-on-failure -j"$(nproc)" --timeout 3000 "$@"
rc=$?
set -e
echo "== sanitized test suite: exit $rc, $((SECONDS - start)) s"
exit $rc
