#!/usr/bin/env bash
# Head-to-head against llama.cpp (issue 17): llama-quantize's mixes with an importance matrix
# versus mpq's plans written as GGUF at the same file size, both measured with llama.cpp's own
# ruler (llama-perplexity --kl-divergence against the F32 weights) and speed (llama-bench).
# By hand, not in CI. Resumable: every step is skipped when its output exists, and every output
# is written to a temporary name and renamed when complete, so an interrupted run redoes only
# the step it was in.
#
#   bash scripts/vs_llamacpp.sh                    # everything (llama.cpp half + mpq hooks)
#   TYPES="Q4_K_M Q6_K" bash scripts/vs_llamacpp.sh
#   CHUNKS=20 OUT=/tmp/vs bash scripts/vs_llamacpp.sh
#
# Outputs in $OUT (default models/vs_llamacpp/, git-ignored):
#   ref.gguf                 F32 reference, dequantized from $MODEL by llama-quantize
#   imatrix.gguf             llama-imatrix on WikiText-2 *valid* ($IMATRIX_CHUNKS chunks of $CTX)
#   base.kld                 reference logits on WikiText-2 *test* (first $CHUNKS chunks of $CTX)
#   llama-<T>.gguf           llama-quantize <T> with the imatrix; .quant.log, .kld.log, .bench.json
#   mpq-<T>.gguf             mpq's plan at no more than llama-<T>.gguf's size
#   table.csv, table.md      size, bits per weight, PPL, mean KLD, KLD p99, top-1, pp512/tg128
#   types.md                 the per-tensor type mix of every GGUF
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

MODEL="${MODEL:-$MPQ_DEFAULT_MODEL}"
OUT="${OUT:-$MPQ_MODELS/vs_llamacpp}"
TEST_TEXT="${TEST_TEXT:-$MPQ_ROOT/../shared/text/wikitext-2-raw-v1/wiki.test.raw}"
CALIB_TEXT="${CALIB_TEXT:-$MPQ_ROOT/../shared/text/wikitext-2-raw-v1/wiki.valid.raw}"
CTX="${CTX:-512}"
CHUNKS="${CHUNKS:-60}"                 # evaluation chunks of WikiText-2 test (issue 17 used 60)
IMATRIX_CHUNKS="${IMATRIX_CHUNKS:-64}" # calibration chunks of WikiText-2 valid
THREADS="${THREADS:-2}"
TYPES="${TYPES:-Q2_K Q3_K_M IQ4_XS Q4_K_M Q5_K_M Q6_K Q8_0}"
BENCH="${BENCH:-1}"                    # 0 skips llama-bench (it is the slowest part on a busy box)
MPQ="${MPQ:-$MPQ_BUILD/mpq}"
MPQ_RULER="${MPQ_RULER:-0}"            # 1: also evaluate every GGUF with `mpq ppl --kl-base`

# llama.cpp tools (built once by build_llamacpp.sh; its last line is the bin folder).
LLAMACPP_BIN="${LLAMACPP_BIN:-$(bash "$MPQ_ROOT/scripts/build_llamacpp.sh" | tail -n 1)}"
for tool in llama-quantize llama-imatrix llama-perplexity llama-bench; do
  if [ ! -x "$LLAMACPP_BIN/$tool" ]; then
    echo "error: $LLAMACPP_BIN/$tool: not built (run scripts/build_llamacpp.sh)" >&2
    exit 1
  fi
done
# gguf-py from the same llama.cpp tree, for reading tensor types (numpy from a venv beside it).
LLAMACPP_DIR="$(dirname "$(dirname "$LLAMACPP_BIN")")"
PYTHON="${PYTHON:-$MPQ_ROOT/third_party/venv/bin/python}"
if ! "$PYTHON" -c "import numpy" 2>/dev/null; then
  echo "== making the Python venv for gguf-py ($MPQ_ROOT/third_party/venv)"
  python3 -m venv "$MPQ_ROOT/third_party/venv"
  "$MPQ_ROOT/third_party/venv/bin/pip" install --quiet --disable-pip-version-check numpy
  PYTHON="$MPQ_ROOT/third_party/venv/bin/python"
fi
export PYTHONPATH="$LLAMACPP_DIR/gguf-py${PYTHONPATH:+:$PYTHONPATH}"

mkdir -p "$OUT"
Q="$LLAMACPP_BIN/llama-quantize"
IMATRIX="$LLAMACPP_BIN/llama-imatrix"
PERPLEXITY="$LLAMACPP_BIN/llama-perplexity"
LBENCH="$LLAMACPP_BIN/llama-bench"

# run_logged LOG CMD...: runs CMD with stdout+stderr into LOG.tmp (the command line first),
# renames it to LOG on success; on failure keeps LOG.tmp for reading and stops the script.
run_logged() {
  local log=$1
  shift
  echo "\$ $*" > "$log.tmp"
  if ! "$@" >> "$log.tmp" 2>&1; then
    echo "error: $1 failed; see $log.tmp" >&2
    exit 1
  fi
  mv "$log.tmp" "$log"
}

# ---- llama.cpp side --------------------------------------------------------------------------

# 1. The F32 reference: the source's weights dequantized, the same weights mpq's fp reference uses.
if [ ! -f "$OUT/ref.gguf" ]; then
  echo "== F32 reference from $(basename "$MODEL")"
  run_logged "$OUT/ref.quant.log" "$Q" --allow-requantize "$MODEL" "$OUT/ref.tmp.gguf" F32 "$THREADS"
  mv "$OUT/ref.tmp.gguf" "$OUT/ref.gguf"
fi

# 2. The importance matrix from the calibration split (never the evaluation split).
if [ ! -f "$OUT/imatrix.gguf" ]; then
  echo "== imatrix: $IMATRIX_CHUNKS chunks of $CTX from $(basename "$CALIB_TEXT")"
  run_logged "$OUT/imatrix.log" "$IMATRIX" -m "$OUT/ref.gguf" -f "$CALIB_TEXT" -c "$CTX" \
    --chunks "$IMATRIX_CHUNKS" -t "$THREADS" --output-format gguf -o "$OUT/imatrix.tmp.gguf"
  mv "$OUT/imatrix.tmp.gguf" "$OUT/imatrix.gguf"
fi

# 3. The reference logits: also the F32 model's own perplexity.
if [ ! -f "$OUT/base.kld" ]; then
  echo "== base logits: first $CHUNKS chunks of $CTX from $(basename "$TEST_TEXT")"
  run_logged "$OUT/ref.ppl.log" "$PERPLEXITY" -m "$OUT/ref.gguf" -f "$TEST_TEXT" -c "$CTX" \
    --chunks "$CHUNKS" -t "$THREADS" --kl-divergence-base "$OUT/base.tmp.kld"
  mv "$OUT/base.tmp.kld" "$OUT/base.kld"
fi

# evaluate NAME: KL divergence of $OUT/NAME.gguf against the base logits (the tokens and chunk
# count come from base.kld), then llama-bench pp512/tg128.
evaluate() {
  local name=$1
  if [ ! -f "$OUT/$name.kld.log" ]; then
    echo "== $name: llama-perplexity --kl-divergence"
    run_logged "$OUT/$name.kld.log" "$PERPLEXITY" -m "$OUT/$name.gguf" -c "$CTX" -t "$THREADS" \
      --kl-divergence-base "$OUT/base.kld" --kl-divergence
  fi
  bench "$name"
  mpq_ruler "$name"
}

bench() {
  local name=$1
  [ "$BENCH" = 1 ] || return 0
  [ -f "$OUT/$name.bench.json" ] && return 0
  echo "== $name: llama-bench pp512 tg128, $THREADS threads"
  if ! "$LBENCH" -m "$OUT/$name.gguf" -p 512 -n 128 -t "$THREADS" -o json \
      > "$OUT/$name.bench.json.tmp" 2> "$OUT/$name.bench.log"; then
    echo "error: llama-bench failed on $name.gguf; see $OUT/$name.bench.log" >&2
    exit 1
  fi
  mv "$OUT/$name.bench.json.tmp" "$OUT/$name.bench.json"
}

# mpq_ruler NAME: our ruler on the same file (`mpq ppl --kl-base`), when MPQ_RULER=1. mpq's own
# reference logits come from ref.gguf. A GGUF whose tensor types mpq cannot read yet (IQ4_XS)
# gets a .mpq.err instead of stopping the script.
mpq_ruler() {
  local name=$1
  [ "$MPQ_RULER" = 1 ] || return 0
  if [ ! -x "$MPQ" ]; then
    echo "error: MPQ_RULER=1 but $MPQ is not built" >&2
    exit 1
  fi
  if [ ! -f "$OUT/mpq-ref.logits" ]; then
    echo "== mpq ppl: reference logits"
    "$MPQ" ppl "$OUT/ref.gguf" --kv-cache f32 --text "$TEST_TEXT" --chunks "$CHUNKS" \
      --save-logits "$OUT/mpq-ref.logits.tmp" --json > "$OUT/ref.mpq.json.tmp"
    mv "$OUT/mpq-ref.logits.tmp" "$OUT/mpq-ref.logits"
    mv "$OUT/ref.mpq.json.tmp" "$OUT/ref.mpq.json"
  fi
  [ -f "$OUT/$name.mpq.json" ] || [ -f "$OUT/$name.mpq.err" ] && return 0
  echo "== $name: mpq ppl --kl-base"
  if "$MPQ" ppl "$OUT/$name.gguf" --kv-cache f32 --text "$TEST_TEXT" --chunks "$CHUNKS" \
      --kl-base "$OUT/mpq-ref.logits" --json > "$OUT/$name.mpq.json.tmp" 2> "$OUT/$name.mpq.err.tmp"; then
    mv "$OUT/$name.mpq.json.tmp" "$OUT/$name.mpq.json"
    rm -f "$OUT/$name.mpq.err.tmp"
  else
    mv "$OUT/$name.mpq.err.tmp" "$OUT/$name.mpq.err"
    rm -f "$OUT/$name.mpq.json.tmp"
  fi
}

bench ref
for t in $TYPES; do
  name="llama-$t"
  if [ ! -f "$OUT/$name.gguf" ]; then
    echo "== llama-quantize $t (imatrix)"
    run_logged "$OUT/$name.quant.log" "$Q" --imatrix "$OUT/imatrix.gguf" "$OUT/ref.gguf" \
      "$OUT/$name.tmp.gguf" "$t" "$THREADS"
    mv "$OUT/$name.tmp.gguf" "$OUT/$name.gguf"
  fi
  evaluate "$name"
done

# ---- mpq side (hooks) --------------------------------------------------------------------------
# For each llama.cpp point, mpq's best plan whose whole file is no larger than llama-<T>.gguf:
#   mpq analyze (once) -> mpq plan --size <bytes of llama-<T>.gguf> -> mpq quantize --plan ...
#   --out mpq-<T>.gguf, then `evaluate mpq-<T>` exactly as above.
# Also writes the plan as llama-quantize's --tensor-type-file (mpq plan --llama-tensor-types), so
# that llama-quantize can make the same mix with its own encoders (llama-plan-<T>.gguf).

# mpq's candidates: llama.cpp's types minus q4_1 and q5_1. The default model is a Q4_1 GGUF, so
# q4_1 (and q5_1, which holds the same grid) reproduce its weights exactly: the reference is
# free in them, an artifact of this source, not something a plan should be credited with.
MPQ_FORMATS="${MPQ_FORMATS:-q2_K,q3_K,q4_K,q5_K,q6_K,q8_0,q4_0,q5_0,iq4_nl}"
MPQ_QUANTIZER="${MPQ_QUANTIZER:-gptq}"   # the quantizer of every tensor in mpq's plans

# The sensitivity file (fisher costs of every format, the head's too, and the file's fixed bytes),
# calibrated on the same chunks as the imatrix.
mpq_sensitivity() {
  [ -f "$OUT/mpq-sensitivity.json" ] && return 0
  echo "== mpq analyze: fisher, $IMATRIX_CHUNKS chunks of $CTX from $(basename "$CALIB_TEXT")"
  "$MPQ" analyze "$MODEL" --calib "$CALIB_TEXT" --calib-samples "$IMATRIX_CHUNKS" --calib-len "$CTX" \
    --methods fisher --formats "$MPQ_FORMATS" --out "$OUT/mpq-sensitivity.json"
}

# mpq_gguf_for NAME TARGET_BYTES: writes $OUT/NAME.gguf of at most TARGET_BYTES bytes (the plan's
# whole-file budget; mpq quantize refuses to write more) and the plan as a tensor-type file.
mpq_gguf_for() {
  local name=$1 target_bytes=$2
  mpq_sensitivity
  echo "== $name: mpq plan (knapsack, fisher, whole file <= $target_bytes bytes) and quantize ($MPQ_QUANTIZER)"
  "$MPQ" plan "$OUT/mpq-sensitivity.json" --method knapsack --cost fisher --target llama.cpp \
    --formats "$MPQ_FORMATS" --quantizer "$MPQ_QUANTIZER" --file-size "$target_bytes" --force \
    --out "$OUT/$name.plan.json" --llama-tensor-types "$OUT/$name.tensor-types.txt"
  run_logged "$OUT/$name.quant.log" "$MPQ" quantize "$MODEL" --plan "$OUT/$name.plan.json" \
    --calib "$CALIB_TEXT" --calib-samples "$IMATRIX_CHUNKS" --calib-len "$CTX" --out "$OUT/$name.gguf"
}

# llama_plan_gguf_for NAME TENSOR_TYPE_FILE: llama-quantize (its own encoders, with the imatrix)
# making mpq's per-tensor mix.
llama_plan_gguf_for() {
  local name=$1 types_file=$2
  [ -f "$types_file" ] || return 1
  echo "== $name: llama-quantize with mpq's tensor types"
  run_logged "$OUT/$name.quant.log" "$Q" --imatrix "$OUT/imatrix.gguf" --tensor-type-file "$types_file" \
    "$OUT/ref.gguf" "$OUT/$name.tmp.gguf" Q8_0 "$THREADS"
  mv "$OUT/$name.tmp.gguf" "$OUT/$name.gguf"
}

for t in $TYPES; do
  size=$(stat -c %s "$OUT/llama-$t.gguf")
  if [ -f "$OUT/mpq-$t.gguf" ] || mpq_gguf_for "mpq-$t" "$size"; then
    evaluate "mpq-$t"
  fi
  if [ -f "$OUT/llama-plan-$t.gguf" ] || llama_plan_gguf_for "llama-plan-$t" "$OUT/mpq-$t.tensor-types.txt"; then
    evaluate "llama-plan-$t"
  fi
done

# ---- tables --------------------------------------------------------------------------------------
"$PYTHON" "$MPQ_ROOT/scripts/vs_llamacpp_table.py" "$OUT" --llamacpp-dir "$LLAMACPP_DIR" \
  --chunks "$CHUNKS" --ctx "$CTX" --threads "$THREADS" | tee "$OUT/table.md"
