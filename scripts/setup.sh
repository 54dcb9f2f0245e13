#!/usr/bin/env bash
# Fresh machine -> built mpq, the default model fetched, and the main job run on it:
#   1. the fp reference: WikiText-2 test perplexity (llama.cpp protocol, first $MPQ_PPL_CHUNKS
#      chunks) with its logits saved for KL divergence;
#   2. quantization to int4 g128 with GPTQ, calibrated on WikiText-2 validation text;
#   3. the quantized model's perplexity and KL divergence against the reference, and a generation.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
mpq_install_packages
mpq_build
mpq_fetch_default_model
MPQ="$MPQ_BUILD/mpq"
TEXT="$MPQ_ROOT/../shared/text/wikitext-2-raw-v1/wiki.test.raw"
CHUNKS="${MPQ_PPL_CHUNKS:-40}"
OUT="$MPQ_MODELS/smollm2-int4_g128-gptq"
# (the full tensor list goes to a file: piping into `head` would end mpq with SIGPIPE)
"$MPQ" info "$MPQ_DEFAULT_MODEL" > "$MPQ_MODELS/default-model-info.txt"
head -4 "$MPQ_MODELS/default-model-info.txt"
if [ ! -f "$TEXT" ]; then
  echo "error: $TEXT not found: the shared data folder must sit beside the repository" >&2
  exit 1
fi
echo "== fp reference"
"$MPQ" ppl "$MPQ_DEFAULT_MODEL" --text "$TEXT" --chunks "$CHUNKS" --save-logits "$MPQ_MODELS/reference.logits"
echo "== quantize: int4_g128 with GPTQ"
"$MPQ" quantize "$MPQ_DEFAULT_MODEL" --scheme int4_g128:gptq --calib-samples 32 --out "$OUT"
echo "== quantized model"
"$MPQ" ppl "$OUT" --text "$TEXT" --chunks "$CHUNKS" --kl-base "$MPQ_MODELS/reference.logits"
"$MPQ" generate "$OUT" --prompt "The capital of France is" -n 16
