#!/usr/bin/env bash
# Speed of the default model from packed weights (docs/RESULTS.md, "Runtime"): every uniform format
# (RTN) and the mixed plans of scripts/plans.sh, fp32 and int8 activations, one `mpq bench` each
# (prefill 512 tokens, decode after 128, read bandwidth measured in the same run). Run it on a quiet
# machine: timings on 2 shared cores are noisy. Writes $OUT/*.bench.json and prints a table.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
MPQ="${MPQ:-$MPQ_BUILD/mpq}"
MODEL="${MODEL:-$MPQ_DEFAULT_MODEL}"
PLANS="${PLANS:-$MPQ_MODELS/plans}"
OUT="${OUT:-$MPQ_MODELS/runtime}"
SCHEMES="${SCHEMES:-bf16 int8_channel fp8_e4m3_channel int4_g128 nvfp4 mxfp4 int3_g128 int2_g64}"
PLAN_NAMES="${PLAN_NAMES:-tiers-8 channels-4.5 knapsack-4.5}"
mkdir -p "$OUT"
bench() {  # name, dir
  for act in fp32 int8; do
    [ -f "$OUT/$1.$act.bench.json" ] && continue
    "$MPQ" bench "$2" --act "$act" --reps 3 --tg-reps 10 --json > "$OUT/$1.$act.bench.json.tmp"
    mv "$OUT/$1.$act.bench.json.tmp" "$OUT/$1.$act.bench.json"
  done
}
for scheme in $SCHEMES; do
  if [ ! -f "$OUT/$scheme.int8.bench.json" ]; then
    "$MPQ" quantize "$MODEL" --scheme "$scheme:rtn" --out "$OUT/$scheme" --json > /dev/null
    bench "$scheme" "$OUT/$scheme"
    rm -rf "${OUT:?}/$scheme"
  fi
done
for name in $PLAN_NAMES; do
  [ -f "$PLANS/$name.plan.json" ] || continue
  if [ ! -f "$OUT/$name.int8.bench.json" ]; then
    "$MPQ" quantize "$MODEL" --plan "$PLANS/$name.plan.json" --out "$OUT/$name" --json > /dev/null
    bench "$name" "$OUT/$name"
    rm -rf "${OUT:?}/$name"
  fi
done
python3 - "$OUT" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
print("| model | act | file MB | RSS MB | prefill tok/s (512) | decode tok/s | weight MB/token | bandwidth GB/s | decode / roofline |")
print("|---|---|---|---|---|---|---|---|---|")
for f in sorted(out.glob("*.bench.json")):
    j = json.loads(f.read_text())
    name = f.name[: -len(".bench.json")]
    model, act = name.rsplit(".", 1)
    print(f"| {model} | {act} | {j['file_bytes'] / 1e6:.1f} | {j['rss_bytes'] / 1e6:.1f} | {j['pp_tok_s']:.1f} | "
          f"{j['tg_tok_s']:.1f} | {j['weight_bytes_per_token'] / 1e6:.1f} | {j['bandwidth_gb_s']:.1f} | "
          f"{100 * j['roofline_fraction']:.1f}% |")
PY
