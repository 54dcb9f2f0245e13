#!/usr/bin/env bash
# Uniform baselines on a model (default: the default model): every scheme x quantizer of the formats issue,
# quantized (calibration: WikiText-2 validation split) and evaluated on WikiText-2 test
# (llama.cpp protocol, first $CHUNKS chunks of 512 tokens; 32 calibration sequences of 512 tokens) against the fp reference's logits.
# Quantized models are evaluated with an fp32 KV cache (`--kv-cache f32`), like the reference, so
# that the numbers measure the weights alone. Writes one JSON per run into $OUT and the Markdown
# table to $OUT/table.md.
#   bash scripts/baselines.sh                 # all 28 runs
#   SCHEMES="int4_g128" QUANTIZERS="rtn gptq" bash scripts/baselines.sh
#   MODEL=models/gemma-3-270m.Q4_K_M.gguf SCHEMES="int8_channel fp8_e4m3_channel nvfp4 int4_g128" \
#     QUANTIZERS="rtn gptq" bash scripts/baselines.sh      # results in models/baselines-gemma-3-270m.Q4_K_M
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
MPQ="${MPQ:-$MPQ_BUILD/mpq}"
MODEL="${MODEL:-$MPQ_DEFAULT_MODEL}"
TEXT="${TEXT:-$MPQ_ROOT/../shared/text/wikitext-2-raw-v1/wiki.test.raw}"
CHUNKS="${CHUNKS:-30}"
CALIB_ARGS="${CALIB_ARGS:---calib-samples 32 --calib-len 512}"
# Another model's results go to their own folder (the reference logits are the model's own).
if [ "$MODEL" = "$MPQ_DEFAULT_MODEL" ]; then DEFAULT_OUT="$MPQ_MODELS/baselines"; else DEFAULT_OUT="$MPQ_MODELS/baselines-$(basename "$MODEL" .gguf)"; fi
OUT="${OUT:-$DEFAULT_OUT}"
SCHEMES="${SCHEMES:-int4_g128 int3_g128 int2_g64 nvfp4 mxfp4 fp8_e4m3_channel int8_channel}"
QUANTIZERS="${QUANTIZERS:-rtn gptq hqq rtn_clip}"
mkdir -p "$OUT"
if [ ! -f "$OUT/ref.logits" ]; then
  "$MPQ" ppl "$MODEL" --text "$TEXT" --chunks "$CHUNKS" --save-logits "$OUT/ref.logits" --json > "$OUT/ref.json"
fi
for scheme in $SCHEMES; do
  for quantizer in $QUANTIZERS; do
    name="$scheme-$quantizer"
    [ -f "$OUT/$name.ppl.json" ] && continue
    echo "== $name"
    # Results are renamed into place only when complete, so an interrupted run is redone.
    "$MPQ" quantize "$MODEL" --scheme "$scheme:$quantizer" $CALIB_ARGS --out "$OUT/$name" --json > "$OUT/$name.quant.json.tmp"
    mv "$OUT/$name.quant.json.tmp" "$OUT/$name.quant.json"
    "$MPQ" ppl "$OUT/$name" --kv-cache f32 --text "$TEXT" --chunks "$CHUNKS" --kl-base "$OUT/ref.logits" --json > "$OUT/$name.ppl.json.tmp"
    mv "$OUT/$name.ppl.json.tmp" "$OUT/$name.ppl.json"
    rm -rf "${OUT:?}/$name"  # keep the numbers, not the 100+ MB directories
  done
done
python3 "$MPQ_ROOT/scripts/baselines_table.py" "$OUT" | tee "$OUT/table.md"
