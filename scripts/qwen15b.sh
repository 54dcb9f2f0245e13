#!/usr/bin/env bash
# The 1.5B results of docs/RESULTS.md ("Qwen2.5-Coder-1.5B"): fp reference perplexity in both
# protocols, analysis ($METHODS on 16 x 512 tokens), and the MixLLM table —
# uniform int4_g128 (RTN, GPTQ) and channel splits at p = 5, 10, 20 % (int8_channel rows for the
# top-p most salient output channels, int4_g128 asymmetric for the rest, GPTQ inside both sets),
# each evaluated in the GPTQ protocol (ctx 2048, first $CHUNKS chunks of WikiText-2 test) with KL
# against the fp model. p = 0 is the GPTQ row (the same int4_g128 matrices). CH_QUANTIZER=rtn
# runs the splits with RTN instead. Wall time and peak
# RSS of every step are kept (/usr/bin/time -v) in $OUT/*.time. Resumable: finished steps are skipped.
#   bash scripts/fetch_models.sh qwen15 && bash scripts/qwen15b.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
MPQ="${MPQ:-$MPQ_BUILD/mpq}"
MODEL="${MODEL:-$MPQ_QWEN15B_MODEL}"
TEXT="${TEXT:-$MPQ_ROOT/../shared/text/wikitext-2-raw-v1/wiki.test.raw}"
CHUNKS="${CHUNKS:-8}"         # GPTQ protocol: 8 x 2048 tokens
LCPP_CHUNKS="${LCPP_CHUNKS:-32}"  # llama.cpp protocol: 32 x 512 tokens
CALIB_ARGS="${CALIB_ARGS:---calib-samples 16 --calib-len 512}"
FRACTIONS="${FRACTIONS:-0.05 0.10 0.20}"
METHODS="${METHODS:-fisher,output,channels}"  # analysis methods (the MixLLM table needs channels only)
OUT="${OUT:-$MPQ_MODELS/q15b}"
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"  # the OpenMP default spins and starves other work
[ -f "$MODEL" ] || { echo "error: $MODEL missing (bash scripts/fetch_models.sh qwen15)" >&2; exit 1; }
mkdir -p "$OUT"
step() {  # name, command...: runs once, its JSON on stdout kept in $OUT/name.json
  local name="$1"; shift
  [ -f "$OUT/$name.json" ] && return 0
  echo "== $name"
  /usr/bin/time -v -o "$OUT/$name.time" "$@" > "$OUT/$name.json.tmp"
  mv "$OUT/$name.json.tmp" "$OUT/$name.json"
}
step fp-gptq "$MPQ" ppl "$MODEL" --protocol gptq --text "$TEXT" --chunks "$CHUNKS" --save-logits "$OUT/ref.logits" --json
step fp-llamacpp "$MPQ" ppl "$MODEL" --text "$TEXT" --chunks "$LCPP_CHUNKS" --json
step analyze "$MPQ" analyze "$MODEL" --methods "$METHODS" $CALIB_ARGS --out "$OUT/S.json" --quiet --json
evaluate() {  # name, quantize args...: quantize to $OUT/name, evaluate, keep the numbers, drop the directory
  local name="$1"; shift
  [ -f "$OUT/$name.ppl.json" ] && return 0
  step "$name.quant" "$MPQ" quantize "$MODEL" "$@" $CALIB_ARGS --out "$OUT/$name" --json
  du -sb "$OUT/$name" | cut -f1 > "$OUT/$name.bytes"
  step "$name.ppl" "$MPQ" ppl "$OUT/$name" --kv-cache f32 --protocol gptq --text "$TEXT" --chunks "$CHUNKS" \
    --kl-base "$OUT/ref.logits" --json
  rm -rf "${OUT:?}/$name"
}
evaluate int4_g128-rtn --scheme int4_g128:rtn
evaluate int4_g128-gptq --scheme int4_g128:gptq
# CH_QUANTIZER=rtn: the same splits with RTN in both sets (against the int4_g128 RTN row).
CH_QUANTIZER="${CH_QUANTIZER:-gptq}"
for p in $FRACTIONS; do
  name="channels-$p"
  [ "$CH_QUANTIZER" = gptq ] || name="channels-$p-$CH_QUANTIZER"
  [ -f "$OUT/$name.plan.json" ] || "$MPQ" plan "$OUT/S.json" --method channels --high-fraction "$p" \
    --quantizer "$CH_QUANTIZER" --target mpq --out "$OUT/$name.plan.json" --json > /dev/null
  evaluate "$name" --plan "$OUT/$name.plan.json"
done
# Decode speed from packed weights against the bandwidth roofline (probed by bench before decoding):
# int4_g128 with an int8_channel head (~4.3 bits per weight over the whole model), int8
# activations, $BENCH_RUNS runs (the table takes the median).
BENCH_RUNS="${BENCH_RUNS:-3}"
if [ ! -f "$OUT/bench.$BENCH_RUNS.json" ]; then
  step bench.quant "$MPQ" quantize "$MODEL" --scheme int4_g128:rtn --head-format int8_channel --out "$OUT/bench-int4" --json
  for run in $(seq "$BENCH_RUNS"); do
    step "bench.$run" "$MPQ" bench "$OUT/bench-int4" --act int8 --reps 1 --tg-reps 10 --json
  done
  rm -rf "${OUT:?}/bench-int4"
fi
python3 "$MPQ_ROOT/scripts/qwen15b_table.py" "$OUT" | tee "$OUT/table.md"
