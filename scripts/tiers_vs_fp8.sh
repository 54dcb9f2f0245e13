#!/usr/bin/env bash
# Decode speed of the tier plan against uniform FP8 per channel (docs/RESULTS.md, "Runtime"), the
# runtime issue's "tier plan decodes faster than FP8" target. Both models get the same output
# head ($HEAD, default bf16) and fp32 activations (FP8 and FP4 have no int8 kernel); the two run
# `mpq bench` alternately, $ROUNDS rounds (default 9), so that the drift of this shared VM hits
# both alike. Prints each model's median decode tok/s, the ratio of the medians, and in how many
# rounds the tier plan was the faster one; writes $OUT/tiers_vs_fp8.json.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
MPQ="${MPQ:-$MPQ_BUILD/mpq}"
MODEL="${MODEL:-$MPQ_DEFAULT_MODEL}"
PLAN="${PLAN:-$MPQ_MODELS/plans/tiers-8.plan.json}"
OUT="${OUT:-$MPQ_MODELS/runtime}"
HEAD="${HEAD:-bf16}"
ROUNDS="${ROUNDS:-9}"
unset OMP_WAIT_POLICY
[ -f "$PLAN" ] || { echo "tiers_vs_fp8: no plan at $PLAN (run scripts/plans.sh)" >&2; exit 1; }
mkdir -p "$OUT"
work="$(mktemp -d -p "$OUT")"
trap 'rm -rf "$work"' EXIT
"$MPQ" quantize "$MODEL" --scheme fp8_e4m3_channel:rtn --head-format "$HEAD" --out "$work/fp8" --json > /dev/null 2>&1
"$MPQ" quantize "$MODEL" --plan "$PLAN" --head-format "$HEAD" --out "$work/tiers" --json > /dev/null 2>&1
for round in $(seq "$ROUNDS"); do
  for name in fp8 tiers; do
    "$MPQ" bench "$work/$name" --act fp32 --reps 1 --tg-reps 10 --bw-mib 0 --json > "$work/$name.$round.json"
  done
done
python3 - "$work" "$ROUNDS" "$OUT/tiers_vs_fp8.json" "$PLAN" "$HEAD" <<'PY'
import json, pathlib, statistics, sys
work, rounds, out, plan, head = pathlib.Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
runs = {name: [json.loads((work / f"{name}.{r}.json").read_text()) for r in range(1, rounds + 1)] for name in ("fp8", "tiers")}
tok_s = {name: [j["tg_tok_s"] for j in js] for name, js in runs.items()}
result = {
    "plan": plan, "head_format": head, "rounds": rounds,
    "fp8_tg_tok_s": tok_s["fp8"], "tiers_tg_tok_s": tok_s["tiers"],
    "fp8_median": statistics.median(tok_s["fp8"]), "tiers_median": statistics.median(tok_s["tiers"]),
    "fp8_weight_bytes_per_token": runs["fp8"][0]["weight_bytes_per_token"],
    "tiers_weight_bytes_per_token": runs["tiers"][0]["weight_bytes_per_token"],
    "tiers_faster_rounds": sum(t > f for t, f in zip(tok_s["tiers"], tok_s["fp8"])),
}
result["ratio"] = result["tiers_median"] / result["fp8_median"]
pathlib.Path(out).write_text(json.dumps(result, indent=1) + "\n")
print(f"fp8_e4m3_channel: median {result['fp8_median']:.1f} tok/s, {result['fp8_weight_bytes_per_token'] / 1e6:.1f} MB/token")
print(f"tier plan:        median {result['tiers_median']:.1f} tok/s, {result['tiers_weight_bytes_per_token'] / 1e6:.1f} MB/token")
print(f"ratio {result['ratio']:.3f}; tier plan faster in {result['tiers_faster_rounds']} of {rounds} rounds")
PY
