#!/usr/bin/env bash
# The sensitivity analyses behind docs/RESULTS.md, on the default model (resumable: rerun the same
# command after an interruption and finished work is kept).
#   all.json      fisher, output, channels for every format (the planner's input)
#   kld.json      fisher, output and the ground truth kld for three formats (rank correlations)
#   shapley.json  Shapley values and interactions of layers, int4_g128 -> int2_g64 (bqp's input)
# Then prints the tables of docs/RESULTS.md (scripts/sensitivity_tables.py).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
MPQ="${MPQ:-$MPQ_BUILD/mpq}"
MODEL="${MODEL:-$MPQ_DEFAULT_MODEL}"
OUT="${OUT:-$MPQ_MODELS/sensitivity}"
mkdir -p "$OUT"
CALIB="--calib-samples 16 --calib-len 512 --seed 0"
run() {  # name, args...: skipped when the file exists; --resume continues an interrupted run
  local name="$1"; shift
  [ -f "$OUT/$name.json" ] && return 0
  echo "== $name"
  /usr/bin/time -f "$name: %e s wall, %M KiB max RSS" "$MPQ" analyze "$MODEL" $CALIB "$@" --resume --out "$OUT/$name.json"
}
run all --methods fisher,output,channels
run kld --methods fisher,output,kld --formats int4_g128,int2_g64,nvfp4 --heldout-samples 4 --heldout-len 256
run shapley --methods shapley --shapley-formats int4_g128,int2_g64 --shapley-permutations 32 \
  --shapley-independent --heldout-samples 1 --heldout-len 256
python3 "$MPQ_ROOT/scripts/sensitivity_tables.py" "$OUT" | tee "$OUT/tables.md"
