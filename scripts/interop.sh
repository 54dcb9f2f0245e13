#!/usr/bin/env bash
# Do mpq's outputs load in Hugging Face transformers and vLLM (CPU)? docs/RESULTS.md,
# "Interoperability". By hand, not in CI: needs the two venvs of docs/INTEROP.md.
#
#   bash scripts/interop.sh [outputs|check|ct|all]      (default: all)
#
# outputs  every uniform format compressed-tensors can express on the default model (RTN), each
#          quantized for the narrowest target that accepts it; the README's setup command (GPTQ)
#          as is and for --target transformers,vllm-cpu; knapsack plans at 4.5 bpw for each
#          target; tiers plans; a channels plan (--target mpq). Sensitivity: fisher + channels on
#          WikiText-2 validation ($CALIB). Refusals (a format a target cannot run) are recorded in
#          $OUT/refused.txt with mpq's message.
# check    tools/check_interop.py on every output: transformers default and dequantize paths
#          against `mpq logits`, the tokenizer against `mpq tokenize` (WikiText-2 test too), 16
#          greedy tokens in vLLM where its CPU build has a kernel (see check()).
#          The table goes to $OUT/table.md.
# ct       a compressed-tensors W4A16 model written by the compressed-tensors library itself from
#          SmolLM2's weights (tools/make_ct_model.py), and `mpq ppl --kl-base` on it, on the dense
#          export and on mpq's own int4 outputs (first $CHUNKS chunks of WikiText-2 test, KL vs
#          the GGUF's logits). Results in $OUT/ppl.md.
# Resumable: outputs and results that exist are kept.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
MPQ="${MPQ:-$MPQ_BUILD/mpq}"
MODEL="${MODEL:-$MPQ_DEFAULT_MODEL}"
CALIB="${CALIB:-$MPQ_ROOT/../shared/text/wikitext-2-raw-v1/wiki.valid.raw}"
TEXT="${TEXT:-$MPQ_ROOT/../shared/text/wikitext-2-raw-v1/wiki.test.raw}"
CHUNKS="${CHUNKS:-30}"
OUT="${OUT:-$MPQ_BUILD/interop}"
TF_PYTHON="${TF_PYTHON:-/work/venvs/interop/bin/python}"      # torch + transformers + compressed-tensors
VLLM_PYTHON="${VLLM_PYTHON:-/work/venvs/vllm/bin/python}"     # vllm-cpu
THREADS="${THREADS:-2}"
export OMP_WAIT_POLICY=passive
STAGE="${1:-all}"
mkdir -p "$OUT"

# quantize NAME ARGS...: mpq quantize MODEL ARGS --out $OUT/NAME; a refusal is recorded, not fatal.
quantize() {
  local name="$1"; shift
  [ -d "$OUT/$name" ] && return 0
  echo "== $name: mpq quantize $*"
  if ! "$MPQ" quantize "$MODEL" --threads "$THREADS" "$@" --out "$OUT/$name" 2> "$OUT/$name.log"; then
    echo "$name ($*): $(grep 'error' "$OUT/$name.log" | tail -1)" | tee -a "$OUT/refused.txt"
    return 0
  fi
  grep 'note' "$OUT/$name.log" || true
}

plan() {  # NAME ARGS...: mpq plan $OUT/S.json ARGS --out $OUT/NAME.plan.json, then quantize it
  local name="$1"; shift
  if [ ! -f "$OUT/$name.plan.json" ]; then
    if ! "$MPQ" plan "$OUT/S.json" "$@" --out "$OUT/$name.plan.json" > "$OUT/$name.plan.log" 2>&1; then
      echo "$name (mpq plan $*): $(tail -1 "$OUT/$name.plan.log")" | tee -a "$OUT/refused.txt"
      return 0
    fi
  fi
  quantize "$name" --plan "$OUT/$name.plan.json"
}

outputs() {
  rm -f "$OUT/refused.txt"  # refusals are asked again on every run
  # Uniform formats (RTN). Directory name: FORMAT.TARGET.
  quantize int8_channel.transformers --scheme int8_channel --target transformers
  quantize int4sym_g32.transformers,vllm-cpu --scheme int4sym_g32 --target transformers,vllm-cpu
  quantize int4sym_g64.transformers,vllm-cpu --scheme int4sym_g64 --target transformers,vllm-cpu
  quantize int4_g32.vllm-cpu --scheme int4_g32 --target vllm-cpu
  quantize int4_g64.vllm-cpu --scheme int4_g64 --target vllm-cpu
  quantize int3_g32.compressed-tensors --scheme int3_g32
  quantize int3_g64.compressed-tensors --scheme int3_g64
  quantize int2_g32.compressed-tensors --scheme int2_g32
  quantize int2_g64.compressed-tensors --scheme int2_g64
  quantize fp8_e4m3_channel.transformers --scheme fp8_e4m3_channel --target transformers
  quantize nvfp4.transformers --scheme nvfp4 --target transformers
  quantize mxfp4.transformers --scheme mxfp4 --target transformers
  quantize bf16.transformers,vllm-cpu --scheme bf16 --target transformers,vllm-cpu
  # Refused on SmolLM2's 576-wide rows (recorded in refused.txt): 1x128 FP8 blocks, and a
  # format outside the target.
  quantize fp8_e4m3_b128.compressed-tensors --scheme fp8_e4m3_b128
  quantize int8_channel.vllm-cpu --scheme int8_channel --target vllm-cpu
  quantize int4_g64.transformers --scheme int4_g64 --target transformers
  # The README's setup command (scripts/setup.sh) as is (int4_g128 falls back to int4_g64 for
  # the default target), and for both engines (asymmetric int4 is refused by transformers, so the
  # symmetric kind).
  quantize setup-int4_g128-gptq.compressed-tensors --scheme int4_g128:gptq --calib "$CALIB" --calib-samples 32
  quantize setup-int4_g128-gptq.transformers,vllm-cpu --scheme int4_g128:gptq --calib "$CALIB" --calib-samples 32 \
    --target transformers,vllm-cpu
  quantize setup-int4sym_g128-gptq.transformers,vllm-cpu --scheme int4sym_g128:gptq --calib "$CALIB" --calib-samples 32 \
    --target transformers,vllm-cpu
  quantize setup-int4sym_g64-gptq.transformers,vllm-cpu --scheme int4sym_g64:gptq --calib "$CALIB" --calib-samples 32 \
    --target transformers,vllm-cpu

  # Plans (RTN) from one sensitivity file.
  if [ ! -f "$OUT/S.json" ]; then
    "$MPQ" analyze "$MODEL" --threads "$THREADS" --methods fisher,channels --calib "$CALIB" --calib-samples 8 \
      --calib-len 256 --out "$OUT/S.json" --quiet
  fi
  for t in compressed-tensors transformers vllm-cpu transformers,vllm-cpu; do
    plan "knapsack-4.5.$t" --method knapsack --bits 4.5 --target "$t"
  done
  # With the candidates of the file, transformers,vllm-cpu leaves int4sym_g32/g64/g128 and the plan
  # at 4.5 bpw is all int4sym_g32; with bf16 among them it is mixed.
  plan "knapsack-4.5-bf16.transformers,vllm-cpu" --method knapsack --bits 4.5 \
    --formats bf16,int4sym_g32,int4sym_g64,int4sym_g128 --target transformers,vllm-cpu
  plan tiers-8.transformers --method tiers --bits 8 --target transformers
  plan "tiers-5.transformers,vllm-cpu" --method tiers --formats bf16,int4sym_g32,int4sym_g64 --bits 5 \
    --target transformers,vllm-cpu
  plan channels-4.5.compressed-tensors --method channels --bits 4.5    # refused: channel splits are mpq-only
  plan channels-4.5.mpq --method channels --bits 4.5 --target mpq
}

check() {
  # vLLM (16 tokens) where its CPU backend has a kernel: the int4 / bf16 outputs (made for
  # vllm-cpu, the setup command's int4, the library's W4A16) and the channels plan (it must refuse
  # it); the others (int8, int3, int2, FP8, FP4: no CPU kernel) are loaded in transformers only.
  local with=() without=()
  for d in "$OUT"/*/; do
    d="${d%/}"
    case "$(basename "$d")" in
      hf-dense|hf-tokenizer) ;;
      *vllm-cpu*|setup-*|ct-w4a16-*|channels-*) with+=("$d") ;;
      *) without+=("$d") ;;
    esac
  done
  local run=(env OMP_NUM_THREADS="$THREADS" "$TF_PYTHON" "$MPQ_ROOT/tools/check_interop.py" --mpq "$MPQ")
  {
    # The harness row (mpq vs transformers' own GGUF loader) and the tokenizer files on all of
    # WikiText-2 test, once (every output's tokenizer files are written from the same spec).
    "${run[@]}" --source "$MODEL" --tokenize-file "$TEXT" "$OUT/int4sym_g64.transformers,vllm-cpu"
    "${run[@]}" --vllm-python "$VLLM_PYTHON" "${with[@]}" | tail -n +4
    "${run[@]}" "${without[@]}" | tail -n +4
  } | tee "$OUT/table.md.tmp"
  mv "$OUT/table.md.tmp" "$OUT/table.md"
}

ppl_row() {  # NAME DIR: PPL and KLD of DIR against the GGUF's logits
  local name="$1" dir="$2"
  if [ ! -f "$OUT/$name.ppl.json" ]; then
    "$MPQ" ppl "$dir" --threads "$THREADS" --kv-cache f32 --text "$TEXT" --chunks "$CHUNKS" \
      --kl-base "$OUT/ref.logits" --json > "$OUT/$name.ppl.json.tmp"
    mv "$OUT/$name.ppl.json.tmp" "$OUT/$name.ppl.json"
  fi
  python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print(sys.argv[2], json.dumps(j))" \
    "$OUT/$name.ppl.json" "$name" >> "$OUT/ppl.txt"
}

ct() {
  [ -f "$OUT/ref.logits" ] || "$MPQ" ppl "$MODEL" --threads "$THREADS" --text "$TEXT" --chunks "$CHUNKS" \
    --save-logits "$OUT/ref.logits" --json > "$OUT/ref.ppl.json"
  # A dense Hugging Face directory of the same weights (transformers' GGUF loader, float32) with
  # mpq's tokenizer files (transformers' GGUF tokenizer is not SmolLM2's: docs/INTEROP.md).
  [ -d "$OUT/hf-tokenizer" ] || "$MPQ" tokenize "$MODEL" --hf-out "$OUT/hf-tokenizer" --max-context 8192
  if [ ! -d "$OUT/hf-dense" ]; then
    "$TF_PYTHON" "$MPQ_ROOT/tools/make_ct_model.py" dense "$MODEL" "$OUT/hf-dense"
    cp "$OUT"/hf-tokenizer/* "$OUT/hf-dense/"
  fi
  # compressed-tensors W4A16, written by the library: int4 symmetric and asymmetric, groups of 64
  # (the preset's 128 does not divide 576), min-max qparams, float32 model (scales F32) and
  # bfloat16 (what published checkpoints use).
  local name args
  for spec in "ct-w4a16-sym-g64:" "ct-w4a16-asym-g64:--asym" "ct-w4a16-sym-g64-bf16:--dtype bfloat16"; do
    name="${spec%%:*}"; args="${spec#*:}"
    if [ ! -d "$OUT/$name" ]; then
      # shellcheck disable=SC2086
      "$TF_PYTHON" "$MPQ_ROOT/tools/make_ct_model.py" quantize "$OUT/hf-dense" "$OUT/$name" --group-size 64 $args
      cp "$OUT"/hf-tokenizer/* "$OUT/$name/"
    fi
  done
  rm -f "$OUT/ppl.txt"
  ppl_row source "$MODEL"
  ppl_row hf-dense "$OUT/hf-dense"
  for name in ct-w4a16-sym-g64 ct-w4a16-asym-g64 ct-w4a16-sym-g64-bf16; do ppl_row "$name" "$OUT/$name"; done
  ppl_row mpq-int4sym_g64 "$OUT/int4sym_g64.transformers,vllm-cpu"
  ppl_row mpq-int4_g64 "$OUT/int4_g64.vllm-cpu"
  cat "$OUT/ppl.txt"
}

case "$STAGE" in
  outputs) outputs ;;
  check) check ;;
  ct) ct ;;
  all) outputs; ct; check ;;
  *) echo "usage: $0 [outputs|check|ct|all]" >&2; exit 2 ;;
esac
