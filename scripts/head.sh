#!/usr/bin/env bash
# What quantizing the output head costs in accuracy (docs/RESULTS.md, "Output head"): the default
# model in int4_g128 (RTN) with its tied head kept (fp32), or quantized with `--head-format` to
# bf16, fp8_e4m3_channel, int8_channel and int4_g128; perplexity and KL against the fp model on
# the first $CHUNKS WikiText-2 test chunks (reference logits of scripts/baselines.sh; fp32 KV cache,
# as there).
# Resumable: finished rows are skipped. Writes $OUT/*.ppl.json and prints a table.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
MPQ="${MPQ:-$MPQ_BUILD/mpq}"
MODEL="${MODEL:-$MPQ_DEFAULT_MODEL}"
TEXT="${TEXT:-$MPQ_ROOT/../shared/text/wikitext-2-raw-v1/wiki.test.raw}"
CHUNKS="${CHUNKS:-30}"
BASE="${BASE:-$MPQ_MODELS/baselines}"
OUT="${OUT:-$MPQ_MODELS/head}"
HEADS="${HEADS:-keep bf16 fp8_e4m3_channel int8_channel int4_g128}"
[ -f "$BASE/ref.logits" ] || { echo "run scripts/baselines.sh first (reference logits)"; exit 1; }
mkdir -p "$OUT"
for head in $HEADS; do
  [ -f "$OUT/$head.ppl.json" ] && continue
  echo "== head $head"
  args=()
  [ "$head" = keep ] || args=(--head-format "$head")
  "$MPQ" quantize "$MODEL" --scheme int4_g128:rtn "${args[@]}" --out "$OUT/$head" --json > "$OUT/$head.quant.json"
  "$MPQ" ppl "$OUT/$head" --kv-cache f32 --text "$TEXT" --chunks "$CHUNKS" --kl-base "$BASE/ref.logits" --json > "$OUT/$head.ppl.json.tmp"
  mv "$OUT/$head.ppl.json.tmp" "$OUT/$head.ppl.json"
  rm -rf "${OUT:?}/$head"
done
python3 - "$OUT" $HEADS <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
print("| head | model.safetensors MB | PPL | PPL ratio | mean KL vs fp | top-1 agree |")
print("|---|---|---|---|---|---|")
for head in sys.argv[2:]:
    q = json.loads((out / f"{head}.quant.json").read_text())
    p = json.loads((out / f"{head}.ppl.json").read_text())
    print(f"| {head} | {q['file_bytes'] / 1e6:.1f} | {p['ppl']:.3f} | {p['ppl_ratio']:.4f} | {p['kld_mean']:.4f} | {p['top1_agree']:.3f} |")
PY
