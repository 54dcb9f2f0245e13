# Shared by fuzz.sh, sanitize.sh and ci_extra.sh: the Clang build with AddressSanitizer and
# UndefinedBehaviorSanitizer in which the library, the CLI, the unit tests and the libFuzzer
# harnesses of fuzz/ are all instrumented (CMake options MPQ_FUZZ / MPQ_SANITIZE). The default
# (GCC) build in build/ is not touched.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

MPQ_ASAN_BUILD="${MPQ_ASAN_BUILD:-$MPQ_ROOT/build-clang-asan}"
# Clang 14 (Debian 12), its sanitizer and libFuzzer runtimes, and the LLVM OpenMP runtime that
# clang's -fopenmp links.
MPQ_CLANG_APT_PACKAGES=(clang libclang-rt-14-dev libomp-dev)

# What the sanitizers do on a report: stop at the first one, with a stack trace. (Undefined
# behaviour is compiled with -fno-sanitize-recover, so it stops whatever these say.)
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"

# mpq_build_clang_asan [TARGET...]: configures and builds the instrumented tree (only the given
# CMake targets when some are given); prints the build's wall time.
mpq_build_clang_asan() {
  local targets=()
  for t in "$@"; do targets+=(--target "$t"); done
  mpq_install_packages "${MPQ_APT_PACKAGES[@]}" "${MPQ_CLANG_APT_PACKAGES[@]}"
  echo "== building the Clang ASan+UBSan tree in $MPQ_ASAN_BUILD"
  local start=$SECONDS
  CC=clang CXX=clang++ cmake -S "$MPQ_ROOT" -B "$MPQ_ASAN_BUILD" -DCMAKE_BUILD_TYPE=Release \
    -DMPQ_FUZZ=ON -DMPQ_BUILD_BENCH=OFF >/dev/null
  cmake --build "$MPQ_ASAN_BUILD" -j"$(nproc)" "${targets[@]}"
  echo "== build took $((SECONDS - start)) s"
}
