#!/usr/bin/env bash
# Mixed-precision plans vs uniform schemes at matched budgets on the default model (docs/RESULTS.md,
# "Plans"). Needs the sensitivity files of scripts/sensitivity.sh and the reference logits of
# scripts/baselines.sh (same evaluation: first $CHUNKS WikiText-2 test chunks, KL vs the fp model,
# fp32 KV cache).
# Every plan uses $QUANTIZER (default rtn) for all tensors, like the uniform rows it is compared with.
# Resumable: finished plans are skipped.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
MPQ="${MPQ:-$MPQ_BUILD/mpq}"
MODEL="${MODEL:-$MPQ_DEFAULT_MODEL}"
TEXT="${TEXT:-$MPQ_ROOT/../shared/text/wikitext-2-raw-v1/wiki.test.raw}"
CHUNKS="${CHUNKS:-30}"
SENS="${SENS:-$MPQ_MODELS/sensitivity}"
BASE="${BASE:-$MPQ_MODELS/baselines}"
OUT="${OUT:-$MPQ_MODELS/plans}"
QUANTIZER="${QUANTIZER:-rtn}"
CALIB_ARGS="${CALIB_ARGS:---calib-samples 32 --calib-len 512}"
mkdir -p "$OUT"
[ -f "$BASE/ref.logits" ] || { echo "run scripts/baselines.sh first (reference logits)"; exit 1; }
plan_and_eval() {  # name, sensitivity file, plan args...
  local name="$1" sens="$2"; shift 2
  [ -f "$OUT/$name.ppl.json" ] && return 0
  echo "== $name"
  "$MPQ" plan "$sens" "$@" --quantizer "$QUANTIZER" --out "$OUT/$name.plan.json" --json > /dev/null
  "$MPQ" quantize "$MODEL" --plan "$OUT/$name.plan.json" $CALIB_ARGS --out "$OUT/$name" --json > "$OUT/$name.quant.json"
  du -sb "$OUT/$name" | cut -f1 > "$OUT/$name.bytes"
  "$MPQ" ppl "$OUT/$name" --kv-cache f32 --text "$TEXT" --chunks "$CHUNKS" --kl-base "$BASE/ref.logits" --json > "$OUT/$name.ppl.json.tmp"
  mv "$OUT/$name.ppl.json.tmp" "$OUT/$name.ppl.json"
  rm -rf "${OUT:?}/$name"
}
# ~8 bpw: importance tiers (bf16 / fp8 per channel / nvfp4) vs uniform fp8_e4m3_channel.
plan_and_eval tiers-8 "$SENS/all.json" --method tiers --bits 8
# Cheaper tier plans: does any move fewer bytes than FP8 at FP8's accuracy?
for bits in 7.75 7.5 7.25 7; do plan_and_eval "tiers-$bits" "$SENS/all.json" --method tiers --bits "$bits"; done
# ~4.5 bpw: knapsack over every format, MixLLM channels (int8 / int4_g128), llama.cpp's rule vs int4_g128.
plan_and_eval knapsack-4.5 "$SENS/all.json" --method knapsack --bits 4.5 --cost fisher
plan_and_eval channels-4.5 "$SENS/all.json" --method channels --bits 4.5
plan_and_eval rule "$SENS/all.json" --method rule --formats int4_g128,int8_channel
# ~3 bpw: int4_g128 / int2_g64 per layer with Shapley interactions (bqp) vs additive costs.
plan_and_eval bqp-3 "$SENS/shapley.json" --method bqp --cost shapley --bits 3
plan_and_eval knapsack-3-kld "$SENS/kld.json" --method knapsack --bits 3 --cost kld --formats int4_g128,int2_g64
plan_and_eval knapsack-3-fisher "$SENS/all.json" --method knapsack --bits 3 --cost fisher --formats int4_g128,int2_g64
# Uniform schemes that bracket the budgets (the baselines have int4_g128 and int3_g128 only).
uniform() {  # scheme
  local name="${1/:/-}"
  [ -f "$OUT/$name.ppl.json" ] && return 0
  echo "== $name"
  "$MPQ" quantize "$MODEL" --scheme "$1" $CALIB_ARGS --out "$OUT/$name" --json > "$OUT/$name.quant.json"
  "$MPQ" ppl "$OUT/$name" --kv-cache f32 --text "$TEXT" --chunks "$CHUNKS" --kl-base "$BASE/ref.logits" --json > "$OUT/$name.ppl.json.tmp"
  mv "$OUT/$name.ppl.json.tmp" "$OUT/$name.ppl.json"
  rm -rf "${OUT:?}/$name"
}
uniform "int4_g64:$QUANTIZER"
uniform "int4_g32:$QUANTIZER"
uniform "int3_g64:$QUANTIZER"
python3 "$MPQ_ROOT/scripts/plans_table.py" "$OUT" "$BASE" | tee "$OUT/table.md"
