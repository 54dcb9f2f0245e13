#!/usr/bin/env bash
# Speed of the default model from packed weights (docs/RESULTS.md, "Runtime"): every uniform format
# (RTN) and the mixed plans of scripts/plans.sh, fp32 and int8 activations, one `mpq bench` each
# (prefill 512 tokens, decode after 128, read bandwidth measured in the same run). Every model
# gets the output head format $HEAD (`mpq quantize --head-format`; default bf16, which costs no
# accuracy here, see scripts/head.sh); $EXTRA_HEAD_ROWS adds rows "name:head" with another head.
# OpenMP keeps libgomp's default wait policy (workers spin briefly): OMP_WAIT_POLICY=passive
# makes every small product sleep-and-wake its worker (docs/RUNTIME.md).
# Run it on a quiet machine: timings on 2 shared cores are noisy. Writes $OUT/*.bench.json and
# prints a table.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
MPQ="${MPQ:-$MPQ_BUILD/mpq}"
MODEL="${MODEL:-$MPQ_DEFAULT_MODEL}"
PLANS="${PLANS:-$MPQ_MODELS/plans}"
OUT="${OUT:-$MPQ_MODELS/runtime}"
HEAD="${HEAD:-bf16}"
EXTRA_HEAD_ROWS="${EXTRA_HEAD_ROWS:-int4_g128:int8_channel channels-4.5:int8_channel}"
unset OMP_WAIT_POLICY
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
row() {  # name, head format
  local out="$1.head-$2"
  [ -f "$OUT/$out.int8.bench.json" ] && return 0
  local what=(--scheme "$1:rtn")
  [ -f "$PLANS/$1.plan.json" ] && what=(--plan "$PLANS/$1.plan.json")
  "$MPQ" quantize "$MODEL" "${what[@]}" --head-format "$2" --out "$OUT/$out" --json > /dev/null
  bench "$out" "$OUT/$out"
  rm -rf "${OUT:?}/$out"
}
for name in $SCHEMES $PLAN_NAMES; do row "$name" "$HEAD"; done
for extra in $EXTRA_HEAD_ROWS; do row "${extra%%:*}" "${extra##*:}"; done
python3 - "$OUT" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
print("| model | output head | act | file MB | RSS MB | prefill tok/s (512) | decode tok/s | weight MB/token | bandwidth GB/s | decode / roofline |")
print("|---|---|---|---|---|---|---|---|---|---|")
for f in sorted(out.glob("*.bench.json")):
    j = json.loads(f.read_text())
    name = f.name[: -len(".bench.json")]
    model, act = name.rsplit(".", 1)
    model, head = model.split(".head-") if ".head-" in model else (model, "f32")
    print(f"| {model} | {head} | {act} | {j['file_bytes'] / 1e6:.1f} | {j['rss_bytes'] / 1e6:.1f} | {j['pp_tok_s']:.1f} | "
          f"{j['tg_tok_s']:.1f} | {j['weight_bytes_per_token'] / 1e6:.1f} | {j['bandwidth_gb_s']:.1f} | "
          f"{100 * j['roofline_fraction']:.1f}% |")
PY
