#!/usr/bin/env bash
# Speed of the default model from packed weights (docs/RESULTS.md, "Runtime"): every uniform format
# (RTN) and the mixed plans of scripts/plans.sh, fp32 and int8 activations, one `mpq bench` each
# (prefill 512 tokens, decode after 128, read bandwidth measured in the same run). Every model
# gets the output head format $HEAD (`mpq quantize --head-format`; default bf16, which costs no
# accuracy here, see scripts/head.sh); $EXTRA_HEAD_ROWS adds rows "name:head" with another head,
# $KV_F32_ROWS (same form) rows decoded with an fp32 KV cache (`--kv-cache f32`, int8 activations;
# the other rows use the default, f16 for these packed quantized models).
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
KV_F32_ROWS="${KV_F32_ROWS:-int4_g128:int8_channel int4_g128:bf16}"
unset OMP_WAIT_POLICY
SCHEMES="${SCHEMES:-bf16 int8_channel fp8_e4m3_channel int4_g128 nvfp4 mxfp4 int3_g128 int2_g64}"
PLAN_NAMES="${PLAN_NAMES:-tiers-8 channels-4.5 knapsack-4.5}"
mkdir -p "$OUT"
bench_one() {  # result name, dir, act, extra bench args...
  local name="$1" dir="$2" act="$3"; shift 3
  [ -f "$OUT/$name.$act.bench.json" ] && return 0
  "$MPQ" bench "$dir" --act "$act" --reps 3 --tg-reps 10 --json "$@" > "$OUT/$name.$act.bench.json.tmp"
  mv "$OUT/$name.$act.bench.json.tmp" "$OUT/$name.$act.bench.json"
}
row() {  # name, head format, kv cache (auto: both activations; f32: int8 activations)
  local out="$1.head-$2"
  [ "$3" = f32 ] && out="$out.kv-f32"
  [ -f "$OUT/$out.int8.bench.json" ] && return 0
  local what=(--scheme "$1:rtn")
  [ -f "$PLANS/$1.plan.json" ] && what=(--plan "$PLANS/$1.plan.json")
  "$MPQ" quantize "$MODEL" "${what[@]}" --head-format "$2" --out "$OUT/$out" --json > /dev/null
  if [ "$3" = f32 ]; then
    bench_one "$out" "$OUT/$out" int8 --kv-cache f32
  else
    bench_one "$out" "$OUT/$out" fp32
    bench_one "$out" "$OUT/$out" int8
  fi
  rm -rf "${OUT:?}/$out"
}
for name in $SCHEMES $PLAN_NAMES; do row "$name" "$HEAD" auto; done
for extra in $EXTRA_HEAD_ROWS; do row "${extra%%:*}" "${extra##*:}" auto; done
for extra in $KV_F32_ROWS; do row "${extra%%:*}" "${extra##*:}" f32; done
python3 - "$OUT" <<'PY'
import json, pathlib, statistics, sys
out = pathlib.Path(sys.argv[1])
rows = []
for f in sorted(out.glob("*.bench.json")):
    j = json.loads(f.read_text())
    name, act = f.name[: -len(".bench.json")].rsplit(".", 1)
    kv = j["kv_cache"]
    name = name.removesuffix(".kv-f32")
    model, head = name.split(".head-") if ".head-" in name else (name, "f32")
    rows.append((model, head, act, kv, j))
median_probe = statistics.median(j["bandwidth_gb_s"] for *_, j in rows)
print(f"median probe of these {len(rows)} runs: {median_probe:.1f} GB/s")
print("| model | output head | act | KV cache | file MB | RSS MB | prefill tok/s (512) | decode tok/s | weight MB/token "
      "| effective GB/s | bandwidth GB/s (run) | decode / roofline (run) | decode / roofline (median probe) |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for model, head, act, kv, j in rows:
    effective = j["weight_bytes_per_token"] * j["tg_tok_s"] / 1e9
    print(f"| {model} | {head} | {act} | {kv} | {j['file_bytes'] / 1e6:.1f} | {j['rss_bytes'] / 1e6:.1f} | "
          f"{j['pp_tok_s']:.1f} | {j['tg_tok_s']:.1f} | {j['weight_bytes_per_token'] / 1e6:.1f} | {effective:.1f} | "
          f"{j['bandwidth_gb_s']:.1f} | {100 * j['roofline_fraction']:.1f}% | {100 * effective / median_probe:.1f}% |")
PY
