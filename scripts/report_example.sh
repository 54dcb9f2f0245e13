#!/usr/bin/env bash
# A real run directory for `mpq report`, made by hand from mpq's own commands — what `mpq auto`
# will do in one command: analyze, plan at a budget, quantize each candidate, evaluate each on
# held-out text against the unquantized model, write run.json, draw the report. The screenshots
# in docs/ (docs/REPORT.md) come from its output.
#
#   scripts/report_example.sh [OUT_DIR]     (default /tmp/mpq-report-example; ~15 min on 2 cores)
#
# Environment: MPQ (binary, default build/mpq), MODEL (default the SmolLM2-135M Q4_1 GGUF),
# BITS (budget, default 4.5), CHUNKS (evaluation chunks of 512 tokens, default 8).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MPQ="${MPQ:-$ROOT/build/mpq}"
MODEL="${MODEL:-$ROOT/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
OUT="${1:-/tmp/mpq-report-example}"
BITS="${BITS:-4.5}"
CHUNKS="${CHUNKS:-8}"
CALIB="$ROOT/../shared/text/wikitext-2-raw-v1/wiki.valid.raw"
EVAL="$ROOT/../shared/text/wikitext-2-raw-v1/wiki.test.raw"
export OMP_WAIT_POLICY=passive

mkdir -p "$OUT/plans" "$OUT/candidates" "$OUT/eval"
COMMANDS="$OUT/eval/commands.txt"
: > "$COMMANDS"
run() {  # run and record a command (with the paths as given)
  echo "$*" >> "$COMMANDS"
  "$@"
}
seconds() { python3 -c "import time; print(time.time())"; }

echo "== analyze"
[ -f "$OUT/sensitivity.json" ] || run "$MPQ" analyze "$MODEL" --calib "$CALIB" --calib-samples 8 --calib-len 256 \
  --methods fisher,output,channels,shapley --shapley-permutations 8 --out "$OUT/sensitivity.json"

echo "== plans"
run "$MPQ" plan "$OUT/sensitivity.json" --method knapsack --cost fisher --bits "$BITS" --out "$OUT/plans/knapsack-fisher.json" --force
run "$MPQ" plan "$OUT/sensitivity.json" --method knapsack --cost output --bits "$BITS" --out "$OUT/plans/knapsack-output.json" --force
run "$MPQ" plan "$OUT/sensitivity.json" --method channels --bits "$BITS" --out "$OUT/plans/channels.json" --force
run "$MPQ" plan "$OUT/sensitivity.json" --method rule --out "$OUT/plans/rule.json" --force

echo "== reference"
[ -f "$OUT/eval/reference.json" ] || run "$MPQ" ppl "$MODEL" --text "$EVAL" --ctx 512 --chunks "$CHUNKS" \
  --save-logits "$OUT/eval/reference.logits" --json > "$OUT/eval/reference.json"

# candidate NAME (--plan FILE | --scheme S)
candidate() {
  local name=$1
  shift
  echo "== $name"
  local t0 t1 t2
  t0=$(seconds)
  run "$MPQ" quantize "$MODEL" "$@" --out "$OUT/candidates/$name" --force --json > "$OUT/eval/$name.quantize.json"
  t1=$(seconds)
  run "$MPQ" ppl "$OUT/candidates/$name" --text "$EVAL" --ctx 512 --chunks "$CHUNKS" \
    --kl-base "$OUT/eval/reference.logits" --json > "$OUT/eval/$name.ppl.json"
  t2=$(seconds)
  run "$MPQ" bench "$OUT/candidates/$name" --pp 32 --tg-prompt 16 --reps 1 --tg 16 --tg-reps 5 --bw-mib 0 --json \
    > "$OUT/eval/$name.bench.json"
  python3 -c "import json,sys; json.dump({'quantize': $t1 - $t0, 'evaluate': $t2 - $t1}, open(sys.argv[1], 'w'))" \
    "$OUT/eval/$name.seconds.json"
}
candidate knapsack-fisher --plan "$OUT/plans/knapsack-fisher.json"
candidate knapsack-output --plan "$OUT/plans/knapsack-output.json"
candidate channels --plan "$OUT/plans/channels.json"
candidate rule --plan "$OUT/plans/rule.json"
candidate uniform-int4_g128 --scheme int4_g128:rtn
candidate uniform-int4_g64 --scheme int4_g64:rtn
candidate uniform-nvfp4 --scheme nvfp4:rtn

echo "== run.json"
python3 "$ROOT/scripts/report_example_run.py" "$OUT" "$MODEL" "$BITS" "$CALIB" "$EVAL" "$CHUNKS"
run "$MPQ" report "$OUT"
