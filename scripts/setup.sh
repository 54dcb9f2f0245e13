#!/usr/bin/env bash
# Fresh machine -> built mpq, the default model fetched, and the mission run on it in one command:
# `mpq auto` at 4.5 bits per weight for Hugging Face transformers and vLLM's CPU build
# (symmetric int4 in groups of 32 or 64, or kept bf16, with q/k/v and gate/up of a layer alike):
#   1. sensitivity analysis (fisher + channel salience) on WikiText-2 validation text, cached in
#      ~/.cache/mpq (a second budget reuses it);
#   2. the candidates at the budget — knapsack, tiers, bqp, the llama.cpp-style rule, and the
#      uniform int4 schemes of the same size as the comparison — each quantized with GPTQ;
#   3. each evaluated on WikiText-2 *test* (never the calibration text): perplexity, KL divergence
#      and top-1 agreement against the unquantized model, decode speed;
#   4. the lowest-KLD candidate written to models/smollm2-auto-4.5bpw/ with report.html inside.
# Progress lines with the time left go to stderr throughout. Rerunning resumes where it stopped
# (--resume: measured candidates are read back, the settings must be the same).
#
# Knobs (environment): MPQ_AUTO_BITS (4.5), MPQ_CALIB_SAMPLES (16), MPQ_CALIB_LEN (256),
# MPQ_EVAL_CHUNKS (20).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
mpq_install_packages
mpq_build
mpq_fetch_default_model
MPQ="$MPQ_BUILD/mpq"
BITS="${MPQ_AUTO_BITS:-4.5}"
OUT="$MPQ_MODELS/smollm2-auto-${BITS}bpw"
if [ ! -f "$MPQ_ROOT/../shared/text/wikitext-2-raw-v1/wiki.test.raw" ]; then
  echo "error: ../shared/text/wikitext-2-raw-v1 not found: the shared data folder must sit beside the repository" >&2
  exit 1
fi
# (the full tensor list goes to a file: piping into `head` would end mpq with SIGPIPE)
"$MPQ" info "$MPQ_DEFAULT_MODEL" > "$MPQ_MODELS/default-model-info.txt"
head -4 "$MPQ_MODELS/default-model-info.txt"
RESUME=()
if [ -f "$OUT.run/auto-state.json" ]; then RESUME=(--resume); fi
echo "== mpq auto: $BITS bits/weight for transformers and vLLM (CPU)"
start=$(date +%s)
"$MPQ" auto "$MPQ_DEFAULT_MODEL" --bits "$BITS" --target transformers,vllm-cpu \
  --analyze fisher,channels --calib-samples "${MPQ_CALIB_SAMPLES:-16}" --calib-len "${MPQ_CALIB_LEN:-256}" \
  --eval-chunks "${MPQ_EVAL_CHUNKS:-20}" "${RESUME[@]}" --out "$OUT"
echo "== done in $(( ($(date +%s) - start) / 60 )) min $(( ($(date +%s) - start) % 60 )) s"
"$MPQ" generate "$OUT" --prompt "The capital of France is" -n 16
echo "== report: $OUT/report.html"
