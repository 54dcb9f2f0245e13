#!/usr/bin/env bash
# Fresh machine -> built mpq, the default model fetched, and the main job run on it:
# the default model's WikiText-2 perplexity (llama.cpp protocol) and a short generation.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
mpq_install_packages
mpq_build
mpq_fetch_default_model
MPQ="$MPQ_BUILD/mpq"
SHARED="$MPQ_ROOT/../shared"
"$MPQ" info "$MPQ_DEFAULT_MODEL" | head -4
"$MPQ" generate "$MPQ_DEFAULT_MODEL" --prompt "The capital of France is" -n 16
if [ -f "$SHARED/text/wikitext-2-raw-v1/wiki.test.raw" ]; then
  "$MPQ" ppl "$MPQ_DEFAULT_MODEL" --text "$SHARED/text/wikitext-2-raw-v1/wiki.test.raw" \
    --chunks "${MPQ_PPL_CHUNKS:-40}"
else
  echo "note: $SHARED/text/wikitext-2-raw-v1/wiki.test.raw not found; skipping perplexity"
fi
